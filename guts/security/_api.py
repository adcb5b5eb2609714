"""What the host needs of a connection's security, whoever provides it.

A security handshake (Noise over a byte stream, TLS 1.3 over a byte
stream or inside QUIC) ends with the remote's identity key authenticated.
The host reads only that: :class:`SecureChannel`. Noise's
:class:`~guts.security.noise.NoiseStream` is one; a QUIC connection is
another.
"""

from __future__ import annotations

from typing import Protocol

from guts.crypto import PublicKey
from guts.peer import PeerId

__all__ = ["SecureChannel"]


class SecureChannel(Protocol):
    """An authenticated channel to one peer."""

    @property
    def remote_peer(self) -> PeerId:
        """The peer the handshake authenticated."""
        ...

    @property
    def remote_public_key(self) -> PublicKey:
        """That peer's identity key."""
        ...
