"""Raw connection -> authenticated, encrypted, multiplexed connection.

The order is fixed and every step is negotiated, as in go-libp2p's
upgrader: multistream-select picks the security protocol on the raw
connection (``/noise``, or libp2p TLS 1.3, ``/tls/1.0.0``), its handshake
authenticates the remote's Ed25519 key (and checks it against the peer id
we meant to dial), and then the muxer is chosen.

Muxer choice follows libp2p's inlined muxer negotiation: we advertise
``/yamux/1.0.0`` in the Noise extensions or in TLS's ALPN; when the remote
lists muxers too, both sides pick from those lists and skip
multistream-select; when it lists none, the muxer is negotiated with
multistream-select inside the encrypted channel. js-libp2p does exactly
this (see INTEROP.md).

The dialer offers its first security protocol lazily: its first handshake
message (Noise's message 1, TLS's ClientHello) travels in the same write
as the multistream proposal, and the listener, seeing it there, sends its
answer in the same write as its own first message. A connection is then
secured a round trip sooner (the listener copes either way, and
js-libp2p listeners accept it too). So a dialer proposes one protocol, the
first of :attr:`Security.protocols` (Noise by default: every libp2p
implementation speaks it), and a listener accepts any of them.

A host builds one :class:`Security` for its key pair: the Noise static key
and its signature, and the TLS certificate, are made once and reused by
every handshake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from guts.crypto import KeyPair
from guts.errors import ConfigError, NegotiationError
from guts.mux.yamux import PROTOCOL_ID as YAMUX
from guts.mux.yamux import YamuxConfig, YamuxConnection
from guts.peer import PeerId
from guts.security.noise import PROTOCOL_ID as NOISE
from guts.security.noise import NoiseIdentity, NoiseStream, noise_handshake
from guts.wire import NegotiatedStream, accept_protocol, select_protocol

if TYPE_CHECKING:  # TLS (aioquic, cryptography's X.509) loads on first use: +20 MiB and 0.1 s otherwise
    from guts.security.tls import TlsIdentity, TlsStream

__all__ = ["MUXERS", "NOISE", "SECURITY", "TLS", "Security", "upgrade_outbound", "upgrade_inbound", "select_muxer"]

#: libp2p TLS 1.3's protocol id (``guts.security.tls.PROTOCOL_ID``, not
#: imported: a host that never speaks TLS never loads it).
TLS = "/tls/1.0.0"

#: Security protocols we speak, by the name a configuration gives them.
SECURITY: dict[str, str] = {"noise": NOISE, "tls": TLS}


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


class Security:
    """The security protocols a host offers, and its identity for each.

    Args:
        keypair: the host's identity.
        protocols: protocol ids, the dialer's proposal first (``NOISE``,
            ``TLS``); a listener accepts each.
        noise: a :class:`NoiseIdentity` for ``keypair`` to reuse.

    Raises:
        ConfigError: no protocol, or one Guts does not speak.
    """

    def __init__(
        self, keypair: KeyPair, protocols: Sequence[str] = (NOISE,), *, noise: NoiseIdentity | None = None
    ) -> None:
        if not protocols:
            raise ConfigError("at least one security protocol is needed")
        for protocol in protocols:
            if protocol not in (NOISE, TLS):
                raise ConfigError(f"unknown security protocol {protocol!r}: Guts speaks {NOISE} and {TLS}")
        if noise is not None and noise.keypair != keypair:
            raise ValueError("the NoiseIdentity belongs to another key pair")
        self.keypair = keypair
        self.protocols = tuple(protocols)
        self._noise = noise
        self._tls: TlsIdentity | None = None

    @property
    def noise(self) -> NoiseIdentity:
        if self._noise is None:
            self._noise = NoiseIdentity(self.keypair)
        return self._noise

    @property
    def tls(self) -> TlsIdentity:
        """The host's certificate, made on first use (valid long enough
        that it is made once per run)."""
        if self._tls is None:
            from guts.security.tls import TlsIdentity

            self._tls = TlsIdentity.generate(self.keypair)
        return self._tls

    async def handshake(
        self, protocol: str, stream: trio.abc.Stream, *, initiator: bool, expected_peer: PeerId | None = None
    ) -> NoiseStream | TlsStream:
        """Secure ``stream`` with ``protocol`` (already chosen, or being
        proposed lazily)."""
        if protocol == TLS:
            from guts.security.tls import tls_handshake

            return await tls_handshake(stream, self.tls, initiator=initiator, expected_peer=expected_peer, muxers=MUXERS)
        return await noise_handshake(stream, self.noise, initiator=initiator, muxers=MUXERS, expected_peer=expected_peer)


async def _muxer(secure: NoiseStream | TlsStream, initiator: bool) -> trio.abc.Stream:
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


def _security(keypair: KeyPair, noise: NoiseIdentity | None, security: Security | None) -> Security:
    if security is None:
        return Security(keypair, (NOISE,), noise=noise)
    if security.keypair != keypair:
        raise ValueError("the Security belongs to another key pair")
    return security


async def upgrade_outbound(
    raw: trio.abc.Stream,
    keypair: KeyPair,
    expected_peer: PeerId | None,
    muxer_config: YamuxConfig,
    *,
    noise: NoiseIdentity | None = None,
    security: Security | None = None,
) -> tuple[NoiseStream | TlsStream, YamuxConnection]:
    """Secure and multiplex a connection we dialled.

    Args:
        raw: the connection.
        keypair: our identity.
        expected_peer: who we meant to reach, if we know.
        muxer_config: settings of the muxer on top.
        noise: the host's :class:`NoiseIdentity` for ``keypair``, whose
            static key every handshake reuses (when no ``security`` is given:
            Noise alone).
        security: the protocols offered and the identities to reuse; the
            first protocol is proposed. Without it (and ``noise``), each
            handshake makes and signs its own Noise key.

    The caller owns ``raw``: on failure it closes it. The caller also sets
    the deadline.
    """
    chosen = _security(keypair, noise, security)
    protocol = chosen.protocols[0]
    negotiated = NegotiatedStream.lazy(raw, protocol)
    secure = await chosen.handshake(protocol, negotiated, initiator=True, expected_peer=expected_peer)
    stream = await _muxer(secure, initiator=True)
    return secure, YamuxConnection(stream, is_initiator=True, config=muxer_config)


async def upgrade_inbound(
    raw: trio.abc.Stream,
    keypair: KeyPair,
    muxer_config: YamuxConfig,
    *,
    noise: NoiseIdentity | None = None,
    security: Security | None = None,
) -> tuple[NoiseStream | TlsStream, YamuxConnection]:
    """Secure and multiplex a connection a remote dialled to us, with
    whichever of our security protocols it proposes.

    Arguments as for :func:`upgrade_outbound`.
    """
    chosen = _security(keypair, noise, security)
    negotiated = await accept_protocol(raw, chosen.protocols, hold_answer=True)
    secure = await chosen.handshake(negotiated.protocol, negotiated.unwrap(), initiator=False)
    stream = await _muxer(secure, initiator=False)
    return secure, YamuxConnection(stream, is_initiator=False, config=muxer_config)
