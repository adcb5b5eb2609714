"""The application's view of one yamux stream: a trio half-closeable stream.

All protocol work happens in :class:`~guts.mux.yamux.YamuxConnection`
(and the session core below it); a :class:`YamuxStream` only buffers what
arrived, waits, and turns stream state into trio's exceptions. See
:mod:`guts.mux.yamux._connection` for the theory of operation.
"""

from __future__ import annotations

import operator
from collections import deque
from typing import Protocol

import trio

from guts.errors import StreamReset
from guts.mux import MuxedStream
from guts.mux.yamux._config import YamuxConfig
from guts.mux.yamux._session import YamuxSession
from guts.wire import NegotiationLimit

__all__ = ["YamuxStream", "YamuxStreamReset"]

#: receive_some(None) joins small buffered chunks up to this size.
_GATHER = 64 * 1024


class YamuxStreamReset(trio.BrokenResourceError, StreamReset):
    """The stream was reset, by the peer or by :meth:`YamuxStream.reset`.

    A :class:`trio.BrokenResourceError` for trio code and a
    :class:`guts.errors.StreamReset` for Guts code.
    """


class _Owner(Protocol):
    """What a stream uses of the connection it belongs to
    (:class:`~guts.mux.yamux.YamuxConnection`, which imports this module)."""

    config: YamuxConfig
    is_initiator: bool
    negotiation_limit: NegotiationLimit
    _session: YamuxSession
    _output_waiters: list[YamuxStream]

    async def _flush(self) -> None: ...
    def _wake_writer(self) -> None: ...
    def _consumed(self, stream: YamuxStream, n: int) -> None: ...
    def _half_close(self, stream: YamuxStream) -> None: ...
    def _reset(self, stream: YamuxStream) -> None: ...
    def _stream_closed(self, stream: YamuxStream) -> None: ...


_SEND_BUSY = "another task is sending on this yamux stream"
_RECV_BUSY = "another task is receiving on this yamux stream"


class YamuxStream(MuxedStream):
    """One yamux stream, as a trio half-closeable stream.

    Created by :meth:`YamuxConnection.open_stream` and
    :meth:`YamuxConnection.accept_stream`, never directly.

    Errors follow trio: :class:`trio.ClosedResourceError` after our own
    :meth:`aclose` (or writing after :meth:`send_eof`),
    :class:`YamuxStreamReset` (a :class:`trio.BrokenResourceError`) once
    the stream was reset by either side, plain
    :class:`trio.BrokenResourceError` when the connection is gone, and
    :class:`trio.BusyResourceError` when two tasks send (or two receive)
    at once.

    Attributes:
        stream_id: the yamux stream id (odd when the initiator opened it).
        protocol: the application protocol negotiated on the stream; set
            by the host, ``None`` until then.
    """

    __slots__ = (
        "_conn",
        "stream_id",
        "protocol",
        "_chunks",
        "_head",
        "_buffered",
        "_eof_received",
        "_eof_sent",
        "_closed",
        "_send_reset",
        "_recv_reset",
        "_broken",
        "_recv_waiter",
        "_send_waiter",
        "_sending",
        "_receiving",
    )

    def __init__(self, conn: _Owner, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.protocol: str | None = None
        self._chunks: deque[bytes] = deque()
        self._head = 0
        self._buffered = 0
        self._eof_received = False
        self._eof_sent = False
        self._closed = False
        self._send_reset = False
        self._recv_reset = False
        self._broken = False
        self._recv_waiter: trio.Event | None = None
        self._send_waiter: trio.Event | None = None
        # One task per direction (trio's BusyResourceError otherwise). Plain
        # flags with try/finally: these sit on every call's hot path.
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        return f"<YamuxStream {self.stream_id} protocol={self.protocol!r}>"

    @property
    def negotiation_limit(self) -> NegotiationLimit | None:
        """The connection's count of streams in negotiation, for a stream
        the peer opened (the initiator opens odd ids); ``None`` for ours."""
        opened_by_peer = (self.stream_id % 2 == 1) != self._conn.is_initiator
        return self._conn.negotiation_limit if opened_by_peer else None

    # ------------------------------------------------------------------
    # Sending

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``; waits while the peer's window is exhausted.

        Small writes usually go to the transport from this task (see
        "Direct writes" in :mod:`guts.mux.yamux._connection`); such a write
        is not cancelled once started, so it cannot leave half a frame on
        the wire. Waits for window or queue room are always cancellable.
        """
        if self._sending:
            raise trio.BusyResourceError(_SEND_BUSY)
        self._sending = True
        try:
            self._check_send()
            await trio.lowlevel.checkpoint_if_cancelled()
            if type(data) is not bytes:
                # Snapshot: the bytes sit in the queue after we return.
                data = bytes(data)
            conn = self._conn
            session = conn._session
            sid = self.stream_id
            high_water = conn.config.write_high_water
            total = len(data)
            view: memoryview | None = None
            pos = 0
            blocked = False
            while pos < total:
                pending = session.pending_output
                if pending >= high_water or not session.send_window(sid):
                    blocked = True
                    await self._wait_send_ready()
                    continue
                size = min(total - pos, max(high_water - pending, conn.config.max_frame_payload))
                if size == total:
                    piece: bytes | memoryview = data
                else:
                    if view is None:
                        view = memoryview(data)
                    piece = view[pos : pos + size]
                pos += session.send(sid, piece)
                if pos < total:
                    conn._wake_writer()
            if blocked:
                # Already a checkpoint; the writer takes what is left.
                conn._wake_writer()
            else:
                await conn._flush()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the stream has send credit and the writer has room."""
        if self._sending:
            raise trio.BusyResourceError(_SEND_BUSY)
        self._sending = True
        try:
            self._check_send()
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._send_ready():
                await trio.lowlevel.cancel_shielded_checkpoint()
            else:
                await self._wait_send_ready()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Half-close: send FIN. Reading stays possible; idempotent.

        The FIN may be written from this task, like a small :meth:`send_all`.
        """
        if self._sending:
            raise trio.BusyResourceError(_SEND_BUSY)
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("yamux stream was closed")
            if not self._eof_sent:
                if self._send_reset:
                    raise YamuxStreamReset(f"yamux stream {self.stream_id} was reset")
                if self._broken:
                    raise trio.BrokenResourceError("yamux connection is gone")
                self._eof_sent = True
                self._conn._half_close(self)
            await self._conn._flush()
        finally:
            self._sending = False

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("yamux stream was closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called on this yamux stream")
        if self._send_reset:
            raise YamuxStreamReset(f"yamux stream {self.stream_id} was reset")
        if self._broken:
            raise trio.BrokenResourceError("yamux connection is gone")

    def _send_ready(self) -> bool:
        session = self._conn._session
        return (
            session.send_window(self.stream_id) > 0
            and session.pending_output < self._conn.config.write_high_water
        )

    async def _wait_send_ready(self) -> None:
        while True:
            self._check_send()
            if self._send_ready():
                return
            if self._conn._session.pending_output >= self._conn.config.write_high_water:
                self._conn._output_waiters.append(self)
            waiter = self._send_waiter
            if waiter is None:
                waiter = self._send_waiter = trio.Event()
            await waiter.wait()

    # ------------------------------------------------------------------
    # Receiving

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return the next received bytes, or ``b""`` once the peer sent FIN."""
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError(_RECV_BUSY)
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            blocked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("yamux stream was closed")
                if self._recv_reset:
                    raise YamuxStreamReset(f"yamux stream {self.stream_id} was reset")
                if self._buffered or self._eof_received:
                    break
                if self._broken:
                    raise trio.BrokenResourceError("yamux connection is gone")
                blocked = True
                waiter = self._recv_waiter = trio.Event()
                await waiter.wait()
            data = self._take(max_bytes) if self._buffered else b""
            if data:
                self._conn._consumed(self, len(data))
            if not blocked:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    def _take(self, max_bytes: int | None) -> bytes:
        chunks = self._chunks
        head = self._head
        first = chunks[0]
        avail = len(first) - head
        if max_bytes is not None and avail >= max_bytes:
            end = head + max_bytes
            out = first if (head == 0 and end == len(first)) else first[head:end]
            if end == len(first):
                chunks.popleft()
                self._head = 0
            else:
                self._head = end
            self._buffered -= max_bytes
            return out
        chunks.popleft()
        piece = first if head == 0 else first[head:]
        head = 0
        limit = max_bytes if max_bytes is not None else _GATHER
        total = avail
        parts = [piece]
        while chunks and total < limit:
            nxt = chunks[0]
            room = limit - total
            if len(nxt) <= room:
                parts.append(chunks.popleft())
                total += len(nxt)
            else:
                if max_bytes is None:
                    break
                parts.append(nxt[:room])
                head = room
                total = limit
        self._head = head
        self._buffered -= total
        return piece if len(parts) == 1 else b"".join(parts)

    # ------------------------------------------------------------------
    # Closing

    async def aclose(self) -> None:
        """Stop reading and writing. FIN if the exchange ended cleanly, RST
        if unread data from a still-sending peer is being thrown away.
        Idempotent; the stream is closed even if this call is cancelled."""
        if not self._closed:
            self._closed = True
            self._conn._stream_closed(self)
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        """Abort the stream in both directions (RST).

        Afterwards sending and receiving raise :class:`YamuxStreamReset`.
        Takes effect even if this call is cancelled.
        """
        if not self._closed and not (self._send_reset and self._recv_reset):
            self._send_reset = self._recv_reset = True
            self._drop_buffer()
            self._conn._reset(self)
            self._wake()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------
    # Called by the connection

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            waiter.set()

    def _on_eof(self) -> None:
        self._eof_received = True
        self._wake()

    def _on_reset(self) -> None:
        self._send_reset = True
        if not self._eof_received:
            # The read side had not finished: what is buffered is void.
            self._recv_reset = True
            self._drop_buffer()
        self._wake()

    def _on_connection_lost(self) -> None:
        self._broken = True
        self._wake()

    def _wake_sender(self) -> None:
        waiter = self._send_waiter
        if waiter is not None:
            self._send_waiter = None
            waiter.set()

    def _wake(self) -> None:
        self._wake_sender()
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            waiter.set()

    def _drop_buffer(self) -> None:
        self._chunks.clear()
        self._head = 0
        self._buffered = 0


