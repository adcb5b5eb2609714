"""Raw connection -> authenticated, encrypted, multiplexed connection.

The order is fixed and every step is negotiated, as in go-libp2p's
upgrader: multistream-select picks ``/noise`` on the raw connection, the
Noise XX handshake authenticates the remote's Ed25519 key (and checks it
against the peer id we meant to dial), and then the muxer is chosen.

Muxer choice follows libp2p's inlined muxer negotiation: we advertise
``/yamux/1.0.0`` in the Noise extensions; when the remote lists muxers too,
both sides pick from those lists and skip multistream-select; when it lists
none, the muxer is negotiated with multistream-select inside the encrypted
channel. js-libp2p does exactly this (see INTEROP.md).

The dialer offers ``/noise`` lazily: its Noise message 1 travels in the same
write as the multistream proposal, and the listener, seeing it there,
sends its answer in the same write as message 2. A connection is then
secured in one round trip plus message 3, instead of two plus message 3
(the listener copes either way, and js-libp2p listeners accept it too).

A host builds one :class:`~guts.security.noise.NoiseIdentity` and passes it
as ``noise=``: its static key and signature are reused by every handshake.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from guts.crypto import KeyPair
from guts.errors import NegotiationError
from guts.mux.yamux import PROTOCOL_ID as YAMUX
from guts.mux.yamux import YamuxConfig, YamuxConnection
from guts.peer import PeerId
from guts.security.noise import PROTOCOL_ID as NOISE
from guts.security.noise import NoiseIdentity, NoiseStream, noise_handshake
from guts.wire import NegotiatedStream, accept_protocol, select_protocol

__all__ = ["MUXERS", "upgrade_outbound", "upgrade_inbound", "select_muxer"]

#: Muxers we speak, most preferred first.
MUXERS: tuple[str, ...] = (YAMUX,)


def select_muxer(initiator_muxers: Sequence[str], responder_muxers: Sequence[str]) -> str:
    """Inlined muxer negotiation: the first of the initiator's muxers that the
    responder also lists.

    Raises:
        NegotiationError: the lists have nothing in common.
    """
    for muxer in initiator_muxers:
        if muxer in responder_muxers:
            return muxer
    raise NegotiationError(
        f"no common muxer: initiator offers {list(initiator_muxers)}, responder {list(responder_muxers)}"
    )


async def _muxer(secure: NoiseStream, initiator: bool) -> trio.abc.Stream:
    """Agree on the muxer; return the stream the muxer must run over."""
    if secure.remote_muxers:
        if initiator:
            select_muxer(MUXERS, secure.remote_muxers)
        else:
            select_muxer(secure.remote_muxers, MUXERS)
        return secure
    if initiator:
        negotiated = await select_protocol(secure, MUXERS)
    else:
        negotiated = await accept_protocol(secure, MUXERS)
    # The remote may send its first muxer frame right behind its answer.
    return negotiated.unwrap()


def _identity(keypair: KeyPair, noise: NoiseIdentity | None) -> NoiseIdentity | KeyPair:
    if noise is None:
        return keypair
    if noise.keypair != keypair:
        raise ValueError("the NoiseIdentity belongs to another key pair")
    return noise


async def upgrade_outbound(
    raw: trio.abc.Stream,
    keypair: KeyPair,
    expected_peer: PeerId | None,
    muxer_config: YamuxConfig,
    *,
    noise: NoiseIdentity | None = None,
) -> tuple[NoiseStream, YamuxConnection]:
    """Secure and multiplex a connection we dialled.

    Args:
        raw: the connection.
        keypair: our identity.
        expected_peer: who we meant to reach, if we know.
        muxer_config: settings of the muxer on top.
        noise: the host's :class:`NoiseIdentity` for ``keypair``, whose
            static key every handshake reuses; without it each handshake
            makes and signs its own.

    The caller owns ``raw``: on failure it closes it. The caller also sets
    the deadline.
    """
    identity = _identity(keypair, noise)
    negotiated = NegotiatedStream.lazy(raw, NOISE)
    secure = await noise_handshake(negotiated, identity, initiator=True, muxers=MUXERS, expected_peer=expected_peer)
    stream = await _muxer(secure, initiator=True)
    return secure, YamuxConnection(stream, is_initiator=True, config=muxer_config)


async def upgrade_inbound(
    raw: trio.abc.Stream,
    keypair: KeyPair,
    muxer_config: YamuxConfig,
    *,
    noise: NoiseIdentity | None = None,
) -> tuple[NoiseStream, YamuxConnection]:
    """Secure and multiplex a connection a remote dialled to us.

    Arguments as for :func:`upgrade_outbound`.
    """
    identity = _identity(keypair, noise)
    negotiated = await accept_protocol(raw, [NOISE], hold_answer=True)
    secure = await noise_handshake(negotiated.unwrap(), identity, initiator=False, muxers=MUXERS)
    stream = await _muxer(secure, initiator=False)
    return secure, YamuxConnection(stream, is_initiator=False, config=muxer_config)
