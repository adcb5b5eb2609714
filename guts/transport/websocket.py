"""WebSocket transport: ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/ws``.

The byte stream maps onto binary messages the way js-libp2p's
``@libp2p/websockets`` does: every ``send_all`` becomes one message (split
when larger than ``WebSocketConfig.max_send_message_size``), and
``receive_some`` returns payload bytes as they arrive, ignoring message
boundaries (a byte stream has none). The handshake is plain RFC 6455 on
path ``/``, no subprotocol, no extensions; that is what js-libp2p sends
and accepts.

Why wsproto directly rather than trio-websocket (which is itself built on
wsproto): trio-websocket needs a reader task per connection, so ``dial``
could not return a connection without borrowing a long-lived nursery, and
its reader could raise into that nursery; it also waits forever for a
handshake whose TCP connection already closed, and its message queue
forces a task switch per message. Driving the sans-IO wsproto core from
``receive_some``/``send_all`` -- the ``trio.SSLStream`` shape -- needs no
task at all: nothing can outlive a connection, and the reader is whoever
calls ``receive_some``. wsproto is imported lazily (on the first dial or
accepted connection) to keep ``import guts.transport`` fast.

Ping frames are answered from ``receive_some``; libp2p connections always
have a reader (the muxer), so pings never wait long. A pong is never
queued behind a blocked writer: it is handed to the writer instead.

Bytes behind the upgrade request. A client may send its first frames in
the same write as its HTTP request (a lazy multistream proposal does).
wsproto's server keeps whatever follows the request head inside its HTTP
parser and drops it on accepting, which stalled such a connection. So
the server side cuts the request head itself (at the blank line, at most
:data:`MAX_REQUEST_HEAD` bytes), hands wsproto the head, and feeds the
rest to the accepted connection.

An inbound connection whose upgrade fails is closed and logged, at most
one line per remote address per 10 s (:class:`~guts.ratelog.RateLimitedLog`).
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import checkpoint

from guts.errors import DialError, RemoteProtocolError
from guts.multiaddr import Component, Multiaddr
from guts.ratelog import RateLimitedLog
from guts.transport._base import ConnectionHandler, RawConnection, ip_multiaddr, run_handler, serve_listeners
from guts.transport.tcp import connect_tcp, open_listeners, tcp_target

if TYPE_CHECKING:
    import wsproto

__all__ = ["WebSocketConfig", "WebSocketConnection", "WebSocketTransport"]

logger = logging.getLogger("guts.transport")

#: Longest upgrade request head a server accepts (h11's default bound).
MAX_REQUEST_HEAD = 16 * 1024

_WS = (Component("ws", None),)


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """Tuning for :class:`WebSocketTransport`.

    Attributes:
        receive_buffer_size: bytes asked of the socket per read. It also
            bounds what one ``receive_some`` can buffer, since payload
            is handed out as it arrives, never assembled into messages.
        max_send_message_size: ``send_all`` data is split into messages of
            at most this size, so peers with small message limits accept it.
        handshake_timeout: seconds an inbound client gets to complete the
            HTTP upgrade (outbound dials are bounded by the caller).
        close_timeout: seconds ``aclose`` may spend sending the close frame
            before dropping the TCP connection.
    """

    receive_buffer_size: int = 256 * 1024
    max_send_message_size: int = 256 * 1024
    handshake_timeout: float = 10.0
    close_timeout: float = 2.0


class WebSocketConnection(RawConnection):
    """A WebSocket connection seen as a byte stream (no half-close).

    Wraps any trio stream (TCP in production, memory pipes in tests) and a
    wsproto connection. Use :func:`client_handshake` or
    :func:`server_handshake` to get one.

    Attributes:
        transport_stream: the wrapped stream.
    """

    __slots__ = (
        "transport_stream",
        "local_addr",
        "remote_addr",
        "_ws",
        "_head",
        "_config",
        "_incoming",
        "_outgoing",
        "_send_lock",
        "_open",
        "_eof",
        "_broken",
        "_closed",
        "_sending",
        "_receiving",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: wsproto.WSConnection,
        local_addr: Multiaddr,
        remote_addr: Multiaddr,
        config: WebSocketConfig,
    ) -> None:
        self.transport_stream = stream
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self._ws = ws
        #: Server side, until the upgrade request head is whole: what
        #: arrived of it (see "Bytes behind the upgrade request").
        self._head: bytearray | None = None
        self._config = config
        self._incoming = bytearray()  # payload received, not yet returned
        self._outgoing = bytearray()  # control frames waiting for the writer
        self._send_lock = trio.StrictFIFOLock()
        self._open = False  # handshake done
        self._eof = False  # the peer closed (close frame or TCP EOF)
        self._broken: str | None = None  # the peer broke the protocol
        self._closed = False  # we called aclose
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.local_addr} -> {self.remote_addr}>"

    # -- the sans-IO side ------------------------------------------------------

    def _handle_events(self) -> None:
        """Apply every event wsproto has parsed; queue any frames to answer with."""
        from wsproto.connection import ConnectionState
        from wsproto.events import (
            AcceptConnection,
            BytesMessage,
            CloseConnection,
            Ping,
            RejectConnection,
            Request,
            TextMessage,
        )

        ws = self._ws
        for event in ws.events():
            if isinstance(event, BytesMessage):
                self._incoming += event.data
            elif isinstance(event, TextMessage):  # not sent by libp2p; still bytes to us
                self._incoming += event.data.encode("utf-8")
            elif isinstance(event, Ping):
                self._outgoing += ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._outgoing += ws.send(event.response())
                    self._eof = True
                elif ws.state is ConnectionState.OPEN:
                    # wsproto could not parse the peer's frames: say why, then give up.
                    self._outgoing += ws.send(CloseConnection(code=event.code, reason=event.reason))
                    self._broken = f"websocket protocol error: {event.reason} ({event.code})"
                else:  # TCP EOF without a close frame, or the answer to our close
                    self._eof = True
            elif isinstance(event, Request):
                self._outgoing += ws.send(AcceptConnection())
                self._open = True
            elif isinstance(event, AcceptConnection):
                self._open = True
            elif isinstance(event, RejectConnection):
                raise RemoteProtocolError(f"websocket upgrade rejected with HTTP {event.status_code}")
            # Pong and RejectData need nothing.

    def _feed(self, data: bytes | bytearray) -> None:
        """Hand bytes read from the stream (``b""`` at EOF) to wsproto; on
        the server side, the request head alone first, then what followed."""
        head = self._head
        if head is None:
            self._receive(data)
            return
        if not data:
            self._head = None
            self._receive(b"")
            return
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(head) > MAX_REQUEST_HEAD:
                raise RemoteProtocolError(f"websocket upgrade request head over {MAX_REQUEST_HEAD} bytes")
            return
        self._head = None
        self._receive(head[: end + 4])
        rest = head[end + 4 :]
        if rest:
            self._receive(rest)  # frames sent in the same write as the request

    def _receive(self, data: bytes | bytearray) -> None:
        from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

        try:
            self._ws.receive_data(bytes(data) if data else None)
        except WsRemoteProtocolError as exc:  # only raised during the handshake
            if exc.event_hint is not None:
                self._outgoing += self._ws.send(exc.event_hint)
            raise RemoteProtocolError(f"bad websocket handshake: {exc}") from None
        self._handle_events()

    # -- handshake ---------------------------------------------------------------

    async def _handshake(self) -> None:
        try:
            while not self._open:
                data = await self.transport_stream.receive_some(self._config.receive_buffer_size)
                if not data:
                    raise RemoteProtocolError("connection closed during the websocket handshake")
                self._feed(data)
        except RemoteProtocolError:
            if self._outgoing:  # a 400 for a bad request: best effort
                with trio.move_on_after(self._config.close_timeout):
                    try:
                        await self._drain_outgoing()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            raise
        await self._drain_outgoing()  # the server's acceptance

    # -- trio.abc.Stream -----------------------------------------------------------

    async def _write(self, frames: bytes | bytearray) -> None:
        """Write ``frames``, then any control frames the reader queued meanwhile."""
        async with self._send_lock:
            await self.transport_stream.send_all(frames)
            await self._drain_outgoing()

    async def _drain_outgoing(self) -> None:
        while self._outgoing:
            out = bytes(self._outgoing)
            self._outgoing.clear()
            await self.transport_stream.send_all(out)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        from wsproto.events import BytesMessage
        from wsproto.utilities import LocalProtocolError

        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        self._sending = True
        try:
            view = memoryview(data).cast("B")
            if self._closed or not view or self._eof or self._broken:
                await checkpoint()
                if self._closed:
                    raise trio.ClosedResourceError("connection closed")
                if view:
                    raise trio.BrokenResourceError("the peer closed the websocket")
                return
            step = self._config.max_send_message_size
            for start in range(0, len(view), step):
                try:
                    frame = self._ws.send(BytesMessage(data=view[start : start + step]))  # type: ignore[arg-type]
                except LocalProtocolError:  # closed while we were waiting to write
                    if self._closed:
                        raise trio.ClosedResourceError("connection closed") from None
                    raise trio.BrokenResourceError("the peer closed the websocket") from None
                await self._write(frame)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        if self._closed:
            await checkpoint()
            raise trio.ClosedResourceError("connection closed")
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this connection")
        self._receiving = True
        try:
            if self._closed:
                await checkpoint()
                raise trio.ClosedResourceError("connection closed")
            incoming = self._incoming
            if incoming or self._eof or self._broken:
                await checkpoint()
            else:
                while not (incoming or self._eof or self._broken):
                    data = await self.transport_stream.receive_some(self._config.receive_buffer_size)
                    self._feed(data)
                    if self._outgoing and not self._send_lock.locked():
                        # Answer pings and close frames now; if a writer holds
                        # the lock it drains them after its own write.
                        try:
                            async with self._send_lock:
                                await self._drain_outgoing()
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass  # the next send_all reports it
            if incoming:
                if max_bytes is None or max_bytes >= len(incoming):
                    out = bytes(incoming)
                    incoming.clear()
                else:
                    out = bytes(incoming[:max_bytes])
                    del incoming[:max_bytes]
                return out
            if self._broken:
                raise trio.BrokenResourceError(self._broken)
            return b""
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        if self._closed:
            await checkpoint()
            return
        self._closed = True
        self._incoming.clear()
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        try:
            if self._ws.state is ConnectionState.OPEN and self._open:
                self._outgoing += self._ws.send(CloseConnection(code=1000))
            # A writer stuck behind flow control keeps the lock: then skip the
            # close frame; closing the stream below wakes that writer up.
            if self._outgoing and not self._send_lock.locked():
                with trio.move_on_after(self._config.close_timeout):
                    async with self._send_lock:
                        await self._drain_outgoing()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(self.transport_stream)


async def client_handshake(
    stream: trio.abc.Stream,
    host: str,
    local_addr: Multiaddr,
    remote_addr: Multiaddr,
    config: WebSocketConfig | None = None,
) -> WebSocketConnection:
    """Upgrade ``stream`` as the client (``GET /``, ``Host: <host>``).

    Raises:
        RemoteProtocolError: the server refused or broke the handshake.
        trio.BrokenResourceError: the stream failed.
    """
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import Request

    ws = WSConnection(ConnectionType.CLIENT)
    conn = WebSocketConnection(stream, ws, local_addr, remote_addr, config or WebSocketConfig())
    await stream.send_all(ws.send(Request(host=host, target="/")))
    await conn._handshake()
    return conn


async def server_handshake(
    stream: trio.abc.Stream,
    local_addr: Multiaddr,
    remote_addr: Multiaddr,
    config: WebSocketConfig | None = None,
) -> WebSocketConnection:
    """Accept a WebSocket upgrade on ``stream`` (any path, no subprotocol).

    Raises:
        RemoteProtocolError: the client sent something other than a
            WebSocket upgrade (it gets an HTTP 400) or hung up.
        trio.BrokenResourceError: the stream failed.
    """
    from wsproto import ConnectionType, WSConnection

    ws = WSConnection(ConnectionType.SERVER)
    conn = WebSocketConnection(stream, ws, local_addr, remote_addr, config or WebSocketConfig())
    conn._head = bytearray()
    await conn._handshake()
    return conn


def _host_header(kind: str, host: str, port: int) -> str:
    if kind == "ip6":
        host = f"[{host}]"
    return host if port == 80 else f"{host}:{port}"


class WebSocketTransport:
    """The :class:`~guts.transport.Transport` for ``/tcp/<port>/ws``.

    Args:
        config: buffer sizes and timeouts.
    """

    def __init__(self, config: WebSocketConfig | None = None) -> None:
        self.config = config or WebSocketConfig()
        #: Failed inbound upgrades: one line per remote address per 10 s.
        self.failures = RateLimitedLog(logger, interval=10.0, max_keys=1024)

    def can_dial(self, addr: Multiaddr) -> bool:
        return tcp_target(addr, ("ws",)) is not None

    def can_listen(self, addr: Multiaddr) -> bool:
        target = tcp_target(addr, ("ws",))
        return target is not None and target[0] in ("ip4", "ip6") and addr.peer_id is None

    async def dial(self, addr: Multiaddr) -> WebSocketConnection:
        target = tcp_target(addr, ("ws",))
        if target is None:
            raise DialError(f"cannot dial {addr}: not a /tcp/<port>/ws address")
        tcp = await connect_tcp(addr, *target)
        try:
            local = ip_multiaddr(tcp.socket.getsockname(), _WS)
            remote = ip_multiaddr(tcp.socket.getpeername(), _WS)
            return await client_handshake(tcp, _host_header(*target), local, remote, self.config)
        except Exception as exc:  # refused upgrade, reset, a Host header h11 rejects...
            await trio.aclose_forcefully(tcp)
            raise DialError(f"cannot dial {addr}: {exc}") from exc
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise

    async def serve(
        self,
        addr: Multiaddr,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if not self.can_listen(addr):
            raise ValueError(f"cannot listen on {addr}")
        listeners, addrs = await open_listeners(addr, _WS)
        config = self.config

        failures = self.failures

        async def on_accept(tcp: trio.SocketStream) -> None:
            who = "an unknown address"
            try:
                local = ip_multiaddr(tcp.socket.getsockname(), _WS)
                peer = tcp.socket.getpeername()
                who = str(peer[0])
                remote = ip_multiaddr(peer, _WS)
                with trio.fail_after(config.handshake_timeout):
                    conn = await server_handshake(tcp, local, remote, config)
            except (OSError, RemoteProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                reason = str(exc) or f"no upgrade within {config.handshake_timeout:g} s"
                failures.info(who, "upgrade failed", "websocket upgrade from %s on %s failed: %s", who, addrs[0], reason)
                await trio.aclose_forcefully(tcp)
                return
            except Exception:
                logger.exception("websocket handshake on %s failed", addrs[0])
                await trio.aclose_forcefully(tcp)
                return
            await run_handler(handler, conn)

        await serve_listeners(listeners, addrs, on_accept, task_status)
