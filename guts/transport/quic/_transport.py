"""The ``/quic-v1`` transport: dial and serve QUIC v1 with libp2p TLS.

Theory of operation
-------------------
:meth:`QuicTransport.serve` binds one UDP socket (an :class:`._endpoint.Endpoint`)
and runs its receive loop; every new Initial becomes a server-side
connection, whose handshake a task of ``serve`` drives (under
:attr:`QuicConfig.handshake_timeout`, at most
:attr:`QuicConfig.max_handshakes` at once). Once the handshake is complete
(the client's certificate checked inside it) the connection goes to the
handler as an :class:`UpgradedConnection` and is closed when the handler
returns; the host runs its muxer, which drives it from then on.

:meth:`QuicTransport.dial` gives each dialled connection a UDP socket of
its own, bound to an ephemeral port: its life is the connection's, its
receive loop runs in the connection's ``run`` under the host's nursery,
and dialling needs no listener. Sharing a listening socket would let a
peer behind a NAT reach us back through the same mapping (hole punching),
which Guts does not do yet; it would also tie a dialled connection's
tasks to the listener's. The dialler checks the ``/p2p/`` peer id inside
the handshake: a mismatch aborts it with a ``bad_certificate`` alert.

Keep-alive is the transport's own: a PING every
:attr:`QuicConfig.keep_alive` seconds (10) keeps a quiet connection inside
QUIC's idle timeout (:attr:`QuicConfig.idle_timeout`, 30 s) as long as
the peer answers; the host's ping (every 30 s by default) alone would race
the timeout. A peer that stops answering is gone after the idle timeout.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import trio

from guts.crypto import KeyPair, PublicKey
from guts.errors import DialError, HandshakeError
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.ratelog import RateLimitedLog
from guts.security.tls import TlsIdentity
from guts.transport import ConnectionHandler, UpgradedConnection
from guts.transport.quic._connection import Libp2pQuicConnection, make_configuration
from guts.transport.quic._endpoint import Endpoint, log
from guts.transport.quic._muxer import QuicMuxedConnection

__all__ = ["QuicConfig", "QuicConnection", "QuicTransport"]

#: CONNECTION_CLOSE codes (RFC 9000 §20.1).
_INTERNAL_ERROR = 0x1
_CONNECTION_REFUSED = 0x2
_CRYPTO_ERROR_FIRST, _CRYPTO_ERROR_LAST = 0x100, 0x1FF


@dataclass(frozen=True, slots=True)
class QuicConfig:
    """Limits and sizes of the QUIC transport.

    Attributes:
        max_streams: bidirectional streams the peer may have open at once.
        stream_window: receive window of a stream: bytes it buffers unread, at most.
        connection_window: receive window of a connection, all streams together.
        send_buffer: unacknowledged bytes of a stream before ``send_all`` waits.
        idle_timeout: seconds without a packet before a connection ends.
        keep_alive: seconds between the PINGs that keep a quiet connection
            open (``None``: none; it then ends after ``idle_timeout``).
        handshake_timeout: seconds an inbound handshake may take.
        close_linger: seconds a graceful close waits for what the streams
            queued to be acknowledged before CONNECTION_CLOSE abandons it.
        max_connections: connections one listening socket carries at most.
        max_handshakes: inbound handshakes in progress on one socket at most.
        retry_above: inbound handshakes in progress past which a new client
            is sent a Retry and must come back with its token, proving its
            address, before any state is kept for it (``None``: never).
            Below it a handshake starts at once, a round trip sooner.
    """

    max_streams: int = 256
    stream_window: int = 1 << 20
    connection_window: int = 16 << 20
    send_buffer: int = 1 << 20
    idle_timeout: float = 30.0
    keep_alive: float | None = 10.0
    handshake_timeout: float = 10.0
    close_linger: float = 2.0
    max_connections: int = 1024
    max_handshakes: int = 64
    retry_above: int | None = 16


@dataclass(frozen=True, slots=True)
class _Peer:
    remote_peer: PeerId
    remote_public_key: PublicKey


class QuicConnection(UpgradedConnection):
    """A QUIC connection, authenticated and multiplexed by QUIC itself."""

    __slots__ = ("local_addr", "remote_addr", "secure", "muxer")

    def __init__(self, local_addr: Multiaddr, remote_addr: Multiaddr, secure: _Peer, muxer: QuicMuxedConnection) -> None:
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.secure = secure
        self.muxer = muxer


def quic_target(addr: Multiaddr) -> tuple[str, int] | None:
    """``(ip, port)`` of ``/ip4|ip6/<ip>/udp/<port>/quic-v1[/p2p/<id>]``, else ``None``."""
    protocols = addr.protocols()
    if protocols[-1:] == ("p2p",):
        protocols = protocols[:-1]
    if len(protocols) != 3 or protocols[0] not in ("ip4", "ip6") or protocols[1:] != ("udp", "quic-v1"):
        return None
    ip, port = addr.components[0].value, addr.components[1].value
    assert ip is not None and port is not None
    return ip, int(port)


def _quic_multiaddr(sockaddr: Any) -> Multiaddr:
    ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
    return Multiaddr(((f"ip{ip.version}", str(ip)), ("udp", str(sockaddr[1])), ("quic-v1", None)))


class QuicTransport:
    """QUIC v1 (``/quic-v1``) with libp2p TLS, on Trio.

    Args:
        keypair: the host identity, which the TLS certificate vouches for.
        config: limits and sizes.
        identity: the certificate to present; made from ``keypair`` by
            default (tests pass a crafted one).
    """

    def __init__(self, keypair: KeyPair, config: QuicConfig | None = None, *, identity: TlsIdentity | None = None) -> None:
        self.keypair = keypair
        self.config = config if config is not None else QuicConfig()
        self.identity = identity if identity is not None else TlsIdentity.generate(keypair)
        self._ratelog = RateLimitedLog(log)
        c = self.config
        sizes = dict(idle_timeout=c.idle_timeout, max_data=c.connection_window, max_stream_data=c.stream_window)
        self._client_configuration = make_configuration(self.identity, is_client=True, **sizes)  # type: ignore[arg-type]
        self._server_configuration = make_configuration(self.identity, is_client=False, **sizes)  # type: ignore[arg-type]
        #: Every listening endpoint, for its counters (``dropped``...).
        self.endpoints: list[Endpoint] = []
        #: Asked with a remote IP before its first Initial makes any state
        #: (set by :meth:`guts.reputation.PeerGuard.gate`: a blocked address
        #: costs a dropped datagram, never a handshake).
        self.admit_inbound: Callable[[str], bool] | None = None

    def can_dial(self, addr: Multiaddr) -> bool:
        return quic_target(addr) is not None

    def can_listen(self, addr: Multiaddr) -> bool:
        return quic_target(addr) is not None and addr.peer_id is None

    def _connection(
        self, endpoint: Endpoint, quic: Libp2pQuicConnection, addr: Any, *, own_socket: bool
    ) -> QuicMuxedConnection:
        def on_end() -> None:
            endpoint.forget(conn)
            if own_socket:
                endpoint.close()
            else:
                endpoint.connections -= 1

        conn = QuicMuxedConnection(
            quic,
            addr,
            send=endpoint.send,
            send_now=endpoint.send_now,
            max_streams=self.config.max_streams,
            send_buffer=self.config.send_buffer,
            on_cid=lambda cid, added: endpoint.route(cid, conn, added),
            on_end=on_end,
            receive_loop=endpoint.receive_loop if own_socket else None,
            keep_alive=self.config.keep_alive,
            linger=self.config.close_linger,
        )
        endpoint.route(quic.host_cid, conn, True)
        return conn

    def _upgraded(self, endpoint: Endpoint, conn: QuicMuxedConnection) -> QuicConnection:
        key = conn.remote_public_key
        assert key is not None  # the handshake completed: the certificate checked out
        return QuicConnection(
            _quic_multiaddr(endpoint.local_address), _quic_multiaddr(conn.addr), _Peer(key.peer_id, key), conn
        )

    async def dial(self, addr: Multiaddr) -> QuicConnection:
        target = quic_target(addr)
        if target is None:
            raise DialError(f"cannot dial {addr}: not a QUIC v1 address")
        expected = PeerId.from_string(addr.peer_id) if addr.peer_id is not None else None
        ip, port = target
        # The peer's address as recvfrom reports it (aioquic's client drops
        # datagrams from any other): a 4-tuple for IPv6.
        peer: tuple[str, int] | tuple[str, int, int, int] = (ip, port, 0, 0) if ":" in ip else (ip, port)
        try:
            endpoint = Endpoint.bind("::" if ":" in ip else "0.0.0.0", 0)
        except OSError as exc:
            raise DialError(f"cannot dial {addr}: {exc}") from exc
        quic = Libp2pQuicConnection(
            configuration=self._client_configuration, max_streams=self.config.max_streams, expected_peer=expected
        )
        conn = self._connection(endpoint, quic, peer, own_socket=True)
        try:
            quic.connect(peer, now=trio.current_time())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(endpoint.receive_loop)
                await conn.drive(until=conn.handshake_done)
                nursery.cancel_scope.cancel()
        except BaseException:
            conn.close_with_error(_INTERNAL_ERROR, "dial abandoned")
            raise
        if conn.is_closed:
            error = conn.error
            code = getattr(quic._close_event, "error_code", 0)
            if _CRYPTO_ERROR_FIRST <= code <= _CRYPTO_ERROR_LAST:
                raise HandshakeError(f"QUIC handshake with {addr} failed: {error}") from error
            raise DialError(f"cannot dial {addr}: {error}") from error
        return self._upgraded(endpoint, conn)

    async def serve(
        self,
        addr: Multiaddr,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        target = quic_target(addr)
        if target is None or addr.peer_id is not None:
            raise ValueError(f"cannot listen on {addr}: not a QUIC v1 address")
        c = self.config
        endpoint = Endpoint.bind(
            *target, max_connections=c.max_connections, max_handshakes=c.max_handshakes, ratelog=self._ratelog,
            admit=self.admit_inbound, retry_above=c.retry_above,
        )  # fmt: skip
        self.endpoints.append(endpoint)
        try:
            async with trio.open_nursery() as nursery:

                def on_new(
                    data: bytes, peer: Any, cid: bytes, original_cid: bytes, retry_cid: bytes | None
                ) -> QuicMuxedConnection:
                    quic = Libp2pQuicConnection(
                        configuration=self._server_configuration,
                        original_destination_connection_id=original_cid,
                        retry_source_connection_id=retry_cid,
                        max_streams=c.max_streams,
                    )
                    conn = self._connection(endpoint, quic, peer, own_socket=False)
                    endpoint.route(cid, conn, True)
                    endpoint.connections += 1
                    return conn

                def on_handshake(conn: QuicMuxedConnection) -> None:
                    endpoint.handshakes += 1
                    nursery.start_soon(self._accept, endpoint, conn, handler)

                endpoint.on_new, endpoint.on_handshake = on_new, on_handshake
                nursery.start_soon(endpoint.receive_loop)
                task_status.started([_quic_multiaddr(endpoint.local_address)])
        finally:
            self.endpoints.remove(endpoint)
            endpoint.close()

    async def _accept(self, endpoint: Endpoint, conn: QuicMuxedConnection, handler: ConnectionHandler) -> None:
        try:
            with trio.move_on_after(self.config.handshake_timeout):
                await conn.drive(until=conn.handshake_done)
        finally:
            endpoint.handshakes -= 1
        if conn.is_closed:
            self._ratelog.info(
                conn.addr[0], "handshake failed", "QUIC handshake from %s failed: %s", conn.addr[0], conn.error
            )
            await conn.aclose()
            return
        if not conn.handshake_done.is_set():
            self._ratelog.info(conn.addr[0], "handshake timeout", "QUIC handshake from %s timed out", conn.addr[0])
            conn.close_with_error(_CONNECTION_REFUSED, "handshake timeout")
            return
        upgraded = self._upgraded(endpoint, conn)
        try:
            await handler(upgraded)
        except Exception:
            log.exception("connection handler failed for %s", upgraded.remote_addr)
        finally:
            await upgraded.aclose()
