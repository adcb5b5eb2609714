"""gossipsub (``/meshsub/1.2.0``, ``/meshsub/1.1.0``, ``/meshsub/1.0.0``)."""
