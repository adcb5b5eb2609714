"""The host: transports, upgraded connections, protocol handlers, peerstore.

``async with open_host(keypair, transports) as host:`` owns one nursery.
Every task (listeners, connection readers, stream handlers, keep-alives)
lives under it, so leaving the block closes every connection with a yamux
GoAway and leaves no task behind.

One connection per peer: when two connections to the same peer exist
(both sides dialled at once), both sides keep the one dialled by the
peer with the smaller id and close the other, so they agree without
talking about it.

Limits before work: ``host.connmgr`` (:class:`~guts.connmgr.ConnManager`)
is asked before every inbound handshake and every dial and holds a slot
for each connection until it closes; a refused attempt is closed before a
byte of Noise is read. The host tells it when a handshake ends, a peer
identifies and a stream agrees on a protocol; a :class:`~guts.connmgr.ConnWatch`
task closes what it names. Protocols protect the peers they need with
``host.connmgr.protect(peer, tag)``; an inbound stream of a protocol in
``HostConfig.protect_streams`` protects its peer while its handler runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from guts._host_conn import Connection, _abort, _close_forcefully, _within
from guts._host_events import Direction, HostEvent, PeerConnected, PeerDisconnected, PeerIdentified
from guts._netaddrs import expand_unspecified
from guts.connmgr import ConnLimits, ConnManager, ConnWatch, Refusal
from guts.crypto import KeyPair
from guts.errors import DialError, GutsError, HandshakeError, PeerNotFound, ProtocolError
from guts.multiaddr import Multiaddr
from guts.mux import MuxedConnection
from guts.mux.yamux import YamuxConfig
from guts.peer import PeerId
from guts.peerstore import Peerstore
from guts.ratelog import RateLimitedLog
from guts.security import SecureChannel
from guts.transport import RawConnection, Transport, UpgradedConnection
from guts.upgrade import NOISE, TLS, Security, upgrade_inbound, upgrade_outbound
from guts.wire import NegotiatedStream, accept_protocol

__all__ = [
    "Host",
    "HostConfig",
    "Connection",
    "Direction",
    "StreamHandler",
    "HostEvent",
    "PeerConnected",
    "PeerDisconnected",
    "PeerIdentified",
    "open_host",
]

log = logging.getLogger("guts.host")

StreamHandler = Callable[[NegotiatedStream], Awaitable[None]]

#: identify's protocol id: a host that serves it identifies its peers, so
#: a connection that does not identify within the grace period is closed.
_IDENTIFY = "/ipfs/id/1.0.0"


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Limits and timers of a host.

    Attributes:
        max_connections: the hard ceiling: connections open or handshaking
            at once, both directions; inbound ones beyond it are refused
            before their handshake, outbound dials fail with
            :class:`DialError`. 80: the connection manager keeps between
            40 and 60 (:class:`~guts.connmgr.ConnLimits`).
        connection_timeout: seconds for dial plus upgrade (per address).
        keep_alive: seconds between yamux pings on each connection; a ping
            unanswered for that long closes the connection. 0 disables.
        negotiation_timeout: seconds a stream may take to agree on a protocol.
        muxer: yamux settings. The host runs its own keep-alive (with a
            timeout), so the muxer's own periodic ping is off by default.
        connmgr: the connection manager's caps, rates, water marks and
            identify grace.
        protect_streams: protocols whose inbound streams protect the peer
            (tag: the protocol) while their handler runs (a repository
            being served).
        security: security protocols, the one a dial proposes first
            (``/noise``, which every libp2p implementation speaks); an
            inbound connection may choose any of them (``/tls/1.0.0``:
            libp2p TLS 1.3).
        max_streams_per_protocol: inbound streams of one protocol one
            connection may have served at once; past it a new one is
            reset once negotiated, before its handler runs (the muxer's own
            cap, 1,024 streams, bounds them all together; this keeps one
            protocol's handlers from taking them all). 0: no cap.
    """

    max_connections: int = 80
    connection_timeout: float = 10.0
    keep_alive: float = 30.0
    negotiation_timeout: float = 10.0
    muxer: YamuxConfig = field(default_factory=lambda: YamuxConfig(keepalive_interval=None))
    connmgr: ConnLimits = field(default_factory=ConnLimits)
    protect_streams: tuple[str, ...] = ()
    max_streams_per_protocol: int = 64
    security: tuple[str, ...] = (NOISE, TLS)


class Host:
    """A libp2p host. Build it with :func:`open_host`."""

    def __init__(
        self,
        keypair: KeyPair,
        transports: Sequence[Transport],
        nursery: trio.Nursery,
        config: HostConfig,
    ) -> None:
        self.keypair = keypair
        # One static Noise key per host, signed once (as js and go do).
        self._security = Security(keypair, config.security)
        self.peer_id: PeerId = keypair.peer_id
        self.config = config
        self.peerstore = Peerstore()
        #: Admission, states and trimming of the connections (sans-IO).
        self.connmgr = ConnManager(config.connmgr, config.max_connections)
        self._by_slot: dict[int, Connection] = {}
        self._watch = ConnWatch(self.connmgr, log)
        self._transports = list(transports)
        self._nursery = nursery
        self._handlers: dict[str, StreamHandler] = {}
        self._connections: dict[PeerId, Connection] = {}
        self._dialing: dict[PeerId, trio.Event] = {}
        self._listen_addrs: list[Multiaddr] = []
        self._announce_addrs: list[Multiaddr] = []
        self._event_handlers: list[Callable[[HostEvent], None]] = []
        self._protocol_listeners: list[Callable[[], None]] = []
        self._closing = False
        #: Log lines a peer can cause at will (stream negotiation, lost
        #: connections): one per peer and reason per 10 s, the next one
        #: saying how many were held back.
        self._peer_log = RateLimitedLog(log, interval=10.0, max_keys=4096)

    # -- protocols ---------------------------------------------------------

    def set_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol``: each inbound stream that selects it runs ``handler``
        in its own task; the stream is closed when the handler returns."""
        self._handlers[protocol] = handler
        self._protocols_changed()

    def remove_handler(self, protocol: str) -> None:
        if self._handlers.pop(protocol, None) is not None:
            self._protocols_changed()

    @property
    def protocols(self) -> list[str]:
        """Protocols we serve, as identify announces them."""
        return list(self._handlers)

    def on_protocols_changed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the served protocols change (identify push)."""
        self._protocol_listeners.append(callback)

    def _protocols_changed(self) -> None:
        for cb in self._protocol_listeners:
            cb()

    # -- events --------------------------------------------------------------

    def add_event_handler(self, callback: Callable[[HostEvent], None]) -> None:
        """Call ``callback`` (synchronously) for every :data:`HostEvent`."""
        self._event_handlers.append(callback)

    def emit(self, event: HostEvent) -> None:
        if isinstance(event, PeerIdentified):
            self.connmgr.identified(event.peer_id, trio.current_time())
            self._watch.poke()
        for cb in self._event_handlers:
            try:
                cb(event)
            except Exception:
                log.exception("event handler failed on %r", event)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a background task under the host's nursery."""
        self._nursery.start_soon(fn, *args)

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a service under the host's nursery; return once it reports
        started (``task_status.started(value)``), with that value."""
        return await self._nursery.start(fn, *args)

    # -- listening -----------------------------------------------------------

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """Addresses we listen on, as bound (port 0 resolved)."""
        return list(self._listen_addrs)

    @property
    def announce_addrs(self) -> list[Multiaddr]:
        """What we tell others to dial: the listen addresses with ``0.0.0.0``
        and ``::`` replaced by this machine's addresses."""
        return list(self._announce_addrs)

    async def listen(self, *addrs: Multiaddr) -> list[Multiaddr]:
        """Start listening on each address; return the bound addresses."""
        bound: list[Multiaddr] = []
        for addr in addrs:
            transport = self._transport_for(addr, listen=True)
            got = await self._nursery.start(transport.serve, addr, self._serve_inbound)
            bound.extend(got)
        self._listen_addrs.extend(bound)
        # Computed once here: expanding 0.0.0.0 asks the resolver (blocking).
        self._announce_addrs = expand_unspecified(self._listen_addrs)
        return bound

    def _transport_for(self, addr: Multiaddr, *, listen: bool = False) -> Transport:
        for t in self._transports:
            if (t.can_listen(addr) if listen else t.can_dial(addr)):
                return t
        raise DialError(f"no transport for {addr}")

    async def _serve_inbound(self, raw: RawConnection) -> None:
        now = trio.current_time()
        admitted = self.connmgr.admit_inbound(_ip_of(raw.remote_addr), now)
        if isinstance(admitted, Refusal):
            # Before any handshake: the refusal costs an accept and a close.
            why = admitted.describe(self.connmgr.limits, self.connmgr.max_connections)
            self._log_limited(raw.remote_addr, admitted.value, now, "refusing inbound connection from %s: %s", why)
            await trio.aclose_forcefully(raw)
            return
        slot = admitted
        try:
            try:
                secure: SecureChannel
                muxer: MuxedConnection
                if isinstance(raw, UpgradedConnection):  # the transport's own handshake did it
                    secure, muxer = raw.secure, raw.muxer
                else:
                    with trio.fail_after(self.config.connection_timeout):
                        secure, muxer = await upgrade_inbound(raw, self.keypair, self.config.muxer, security=self._security)
            except trio.TooSlowError:
                self._log_limited(raw.remote_addr, "timeout", trio.current_time(), "closing inbound connection from %s: %s", "upgrade timed out")
                await trio.aclose_forcefully(raw)
                return
            except (GutsError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.warning("closing inbound connection from %s: %s", raw.remote_addr, _reason(exc))
                await trio.aclose_forcefully(raw)
                return
            conn = self._established(Connection(self, raw, secure, muxer, Direction.INBOUND, slot))
            await self._run_connection(conn)
        finally:
            self._release(slot)

    def _established(self, conn: Connection) -> Connection:
        self._by_slot[conn.slot] = conn
        self.connmgr.established(conn.slot, conn.peer_id, trio.current_time(), identify=_IDENTIFY in self._handlers)
        self._watch.poke()
        return conn

    def _release(self, slot: int) -> None:
        self._by_slot.pop(slot, None)
        self.connmgr.release(slot)

    def _log_limited(self, addr: Multiaddr, reason: str, now: float, message: str, *args: object) -> None:
        self._watch.log_limited(_ip_of(addr) or str(addr), reason, now, message, *args)

    # -- dialling ------------------------------------------------------------

    async def connect(self, target: Multiaddr | PeerId) -> Connection:
        """Return the connection to a peer, dialling it if needed.

        ``target`` is a peer id (dialled at its peerstore addresses) or a
        multiaddr, with or without ``/p2p/<id>``; with it, the remote must
        authenticate as that peer.

        Raises:
            PeerNotFound: no address is known for the peer id.
            DialError: every address failed (the reasons are in the message).
        """
        if isinstance(target, PeerId):
            peer: PeerId | None = target
            addrs = list(self.peerstore.addrs(target))
        else:
            text = target.peer_id
            peer = PeerId.from_string(text) if text else None
            addrs = [target]
        if peer is not None:
            if peer == self.peer_id:
                raise DialError("cannot dial ourselves")
            while True:
                existing = self._connections.get(peer)
                if existing is not None and not existing.is_closed:
                    return existing
                pending = self._dialing.get(peer)
                if pending is None:
                    break
                await pending.wait()
            if not addrs:
                raise PeerNotFound(f"no known address for {peer}")
            done = self._dialing[peer] = trio.Event()
            try:
                return await self._dial_addrs(peer, addrs)
            finally:
                del self._dialing[peer]
                done.set()
        return await self._dial_addrs(None, addrs)

    def _dial_order(self, addrs: list[Multiaddr]) -> list[Multiaddr]:
        """``addrs`` with QUIC's first (one round trip less to a usable
        connection, as go-libp2p prefers it), then the rest in their order;
        addresses no transport of ours dials stay, last, so the error says why."""

        def rank(addr: Multiaddr) -> int:
            if not any(t.can_dial(addr) for t in self._transports):
                return 2
            return 0 if any(c.protocol == "quic-v1" for c in addr.components) else 1

        return sorted(addrs, key=rank)

    async def _dial_addrs(self, peer: PeerId | None, addrs: list[Multiaddr]) -> Connection:
        errors: list[str] = []
        for addr in self._dial_order(addrs):
            try:
                return await self._dial_one(peer, addr)
            except (GutsError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                errors.append(f"{addr}: {_reason(exc)}")
        who = str(peer) if peer else "peer"
        raise DialError(f"could not connect to {who}: " + "; ".join(errors))

    async def _dial_one(self, peer: PeerId | None, addr: Multiaddr) -> Connection:
        if self._closing:
            raise DialError("host is shutting down")
        transport = self._transport_for(addr)
        admitted = self.connmgr.admit_outbound(trio.current_time())
        if isinstance(admitted, Refusal):
            raise DialError(admitted.describe(self.connmgr.limits, self.connmgr.max_connections))
        slot = admitted
        try:
            with trio.fail_after(self.config.connection_timeout):
                raw = await transport.dial(addr)
                secure: SecureChannel
                muxer: MuxedConnection
                try:
                    if isinstance(raw, UpgradedConnection):  # authenticated during the transport's handshake
                        secure, muxer = raw.secure, raw.muxer
                        if peer is not None and secure.remote_peer != peer:
                            raise HandshakeError(f"dialled {peer} but the remote is {secure.remote_peer}")
                    else:
                        secure, muxer = await upgrade_outbound(
                            raw, self.keypair, peer, self.config.muxer, security=self._security
                        )
                except BaseException as exc:
                    if isinstance(exc, (GutsError, trio.BrokenResourceError)):
                        log.warning("closing outbound connection to %s: %s", addr, _reason(exc))
                    await trio.aclose_forcefully(raw)
                    raise
            conn = self._established(Connection(self, raw, secure, muxer, Direction.OUTBOUND, slot))
        except BaseException:
            self._release(slot)
            raise
        self.peerstore.add_addrs(conn.peer_id, [addr])
        kept: Connection = await self._nursery.start(self._run_connection, conn)
        return kept

    # -- connection lifecycle -------------------------------------------------

    def _admit(self, conn: Connection) -> bool:
        """Register ``conn``; on a duplicate keep the one the smaller peer id
        dialled. Returns whether ``conn`` is the one kept."""
        old = self._connections.get(conn.peer_id)
        if old is not None and not old.is_closed:
            if old.dialer.to_bytes() <= conn.dialer.to_bytes():
                return False
            self._nursery.start_soon(old.aclose)
        self._connections[conn.peer_id] = conn
        return True

    async def _run_connection(
        self, conn: Connection, *, task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED
    ) -> None:
        peer = conn.peer_id
        if not self._admit(conn):
            kept = self._connections[peer]
            log.debug("closing duplicate connection to %s", peer)
            try:
                await conn.aclose()
            finally:
                self._release(conn.slot)
            task_status.started(kept)
            return
        self.peerstore.set_public_key(peer, conn.secure.remote_public_key)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._run_muxer, conn, nursery)
                nursery.start_soon(self._accept_streams, conn, nursery)
                if self.config.keep_alive > 0:
                    nursery.start_soon(self._keep_alive, conn)
                task_status.started(conn)
                self.emit(PeerConnected(peer, conn.remote_addr, conn.direction))
        except ProtocolError as exc:
            self._peer_log.warning(peer, "closing", "closing connection to %s: %s", peer, _reason(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._peer_log.info(peer, "lost", "connection to %s lost: %s", peer, _reason(exc))
        finally:
            conn.closed.set()
            self._release(conn.slot)
            with trio.CancelScope(shield=True):
                await _close_forcefully(conn.muxer)
            if self._connections.get(peer) is conn:
                del self._connections[peer]
                self.emit(PeerDisconnected(peer))

    async def _run_muxer(
        self, conn: Connection, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # When the muxer stops, the connection's handlers and timers stop too.
        try:
            await conn.muxer.run(task_status=task_status)
        finally:
            conn.closed.set()
            nursery.cancel_scope.cancel()
        error = conn.muxer.error
        if isinstance(error, ProtocolError):
            self._peer_log.warning(conn.peer_id, "closing", "closing connection to %s: %s", conn.peer_id, _reason(error))
        elif error is not None:
            self._peer_log.info(conn.peer_id, "lost", "connection to %s lost: %s", conn.peer_id, _reason(error))

    async def _accept_streams(self, conn: Connection, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await conn.muxer.accept_stream()
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.EndOfChannel):
                return
            nursery.start_soon(self._handle_stream, conn, stream)

    async def _handle_stream(self, conn: Connection, stream: Any) -> None:
        try:
            negotiated = await _within(self.config.negotiation_timeout, accept_protocol(stream, self._handlers))
        except trio.TooSlowError:
            self._peer_log.info(conn.peer_id, "negotiation timed out", "peer %s: stream negotiation timed out", conn.peer_id)
            await _abort(stream)
            return
        except (GutsError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._peer_log.info(
                conn.peer_id, "negotiation failed", "peer %s: stream negotiation failed: %s", conn.peer_id, _reason(exc)
            )
            await _abort(stream)
            return
        negotiated.connection = conn
        handler = self._handlers.get(negotiated.protocol)
        if handler is None:  # removed while negotiating
            await _abort(stream)
            return
        protocol = negotiated.protocol
        serving = conn.serving.get(protocol, 0)
        cap = self.config.max_streams_per_protocol
        if cap and serving >= cap:
            self._peer_log.info(
                conn.peer_id, "streams over cap", "peer %s: %d %s streams already served; resetting another",
                conn.peer_id, serving, protocol,
            )  # fmt: skip
            await _abort(stream)
            return
        self.connmgr.used(conn.slot, protocol, trio.current_time())
        protect = protocol in self.config.protect_streams
        if protect:
            self.connmgr.protect(conn.peer_id, protocol)
        conn.serving[protocol] = serving + 1
        try:
            await self._run_handler(conn, handler, negotiated, stream)
        finally:
            left = conn.serving[protocol] - 1
            if left:
                conn.serving[protocol] = left
            else:
                del conn.serving[protocol]
            if protect:
                self.connmgr.unprotect(conn.peer_id, protocol)

    async def _run_handler(self, conn: Connection, handler: StreamHandler, negotiated: NegotiatedStream, stream: Any) -> None:
        try:
            await handler(negotiated)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("peer %s: %s stream broke: %s", conn.peer_id, negotiated.protocol, exc)
            await _abort(stream)
        except GutsError as exc:
            log.warning("peer %s: %s: %s", conn.peer_id, negotiated.protocol, _reason(exc))
            await _abort(stream)
        except Exception:
            log.exception("peer %s: handler for %s failed", conn.peer_id, negotiated.protocol)
            await _abort(stream)
        else:
            with trio.CancelScope(shield=True):
                try:
                    await negotiated.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def _keep_alive(self, conn: Connection) -> None:
        interval = self.config.keep_alive
        while True:
            await trio.sleep(interval)
            try:
                with trio.fail_after(interval):
                    await conn.muxer.ping()
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, GutsError):
                log.warning("closing connection to %s: keep-alive ping unanswered", conn.peer_id)
                await conn.aclose()
                return

    # -- queries -------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        return [c for c in self._connections.values() if not c.is_closed]

    def connection(self, peer: PeerId) -> Connection | None:
        conn = self._connections.get(peer)
        return conn if conn is not None and not conn.is_closed else None

    async def new_stream(self, peer: PeerId | Multiaddr, protocols: Sequence[str]) -> NegotiatedStream:
        """Connect if needed, open a stream and select one of ``protocols``."""
        conn = await self.connect(peer)
        return await conn.new_stream(protocols)

    async def disconnect(self, peer: PeerId) -> None:
        conn = self._connections.get(peer)
        if conn is not None:
            await conn.aclose()

    def add_addrs(self, peer: PeerId, addrs: Iterable[Multiaddr]) -> None:
        self.peerstore.add_addrs(peer, addrs)

    async def aclose(self) -> None:
        """Close every connection and stop every task; idempotent."""
        self._closing = True
        self.connmgr.closing = True
        with trio.move_on_after(2) as scope:
            scope.shield = True
            async with trio.open_nursery() as nursery:
                for conn in list(self._connections.values()):
                    nursery.start_soon(conn.aclose)
        self._nursery.cancel_scope.cancel()


def _describe(conn: Connection) -> tuple[str, str]:
    return _ip_of(conn.remote_addr) or str(conn.remote_addr), str(conn.peer_id)


def _ip_of(addr: Multiaddr) -> str | None:
    return addr.value_for("ip4") or addr.value_for("ip6")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


@asynccontextmanager
async def open_host(
    keypair: KeyPair,
    transports: Sequence[Transport],
    config: HostConfig | None = None,
) -> AsyncIterator[Host]:
    """Run a host for the duration of the block.

    An exception raised in the block comes out as itself, not wrapped in the
    host nursery's exception group, when it is the only one.
    """
    try:
        async with trio.open_nursery() as nursery:
            host = Host(keypair, transports, nursery, config or HostConfig())
            nursery.start_soon(host._watch.run, host._by_slot.get, nursery.start_soon, _describe)
            try:
                yield host
            finally:
                await host.aclose()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
