"""Layer 2: connection security. Guts speaks libp2p Noise
(``guts.security.noise``); :class:`SecureChannel` is what the host needs
of any secured connection."""

from guts.security._api import SecureChannel

__all__ = ["SecureChannel"]
