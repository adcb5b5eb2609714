"""The node's local control API: HTTP + JSON over a Unix socket in
``GUTS_HOME`` (mode 0600), so that ``guts status``, ``guts dht ...`` and
``guts pubsub ...`` drive the running node of the same home.

This package exports the client and the server's parts, which load no
node: a command that only asks a running node imports no more than that.
The parts that hold a node are public submodules:
:mod:`guts.control.node` (:func:`~guts.control.node.open_controlled_node`,
a node with its control API), :mod:`guts.control.dht`,
:mod:`guts.control.pubsub` and :mod:`guts.control.repo` (their routes),
and :mod:`guts.control.keys` (how commands name DHT keys).

See the README for the endpoints and a ``curl`` example.
"""

from guts.control._api import ApiError, ControlApi
from guts.control._client import ControlClient, ControlError
from guts.control._server import serve_control
from guts.control._socket import ControlSocket, bind_control_socket, connect_control

__all__ = [
    "ApiError",
    "ControlApi",
    "ControlClient",
    "ControlError",
    "ControlSocket",
    "bind_control_socket",
    "connect_control",
    "serve_control",
]
