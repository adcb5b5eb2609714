"""Layer 2: connection security. Guts speaks libp2p Noise (``guts.security.noise``)."""
