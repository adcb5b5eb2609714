"""libp2p Noise (``/noise``): the XX handshake and encrypted streams.

The sans-IO cores (:class:`NoiseHandshake`, :class:`NoiseTransport`) do
not import trio; :func:`noise_handshake` and :class:`NoiseStream` drive
them over a ``trio.abc.Stream``.
"""

from guts.security.noise._handshake import (
    NOISE_PROTOCOL_NAME,
    NoiseHandshake,
    NoiseIdentity,
    NoiseResult,
)
from guts.security.noise._stream import NoiseStream, noise_handshake
from guts.security.noise._transport import MAX_PLAINTEXT, CipherState, NoiseTransport

#: The protocol id negotiated with multistream-select.
PROTOCOL_ID = "/noise"

__all__ = [
    "MAX_PLAINTEXT",
    "NOISE_PROTOCOL_NAME",
    "PROTOCOL_ID",
    "CipherState",
    "NoiseHandshake",
    "NoiseIdentity",
    "NoiseResult",
    "NoiseStream",
    "NoiseTransport",
    "noise_handshake",
]
