"""A QUIC stream as a :class:`guts.mux.MuxedStream`.

Theory of operation
-------------------
The connection (:mod:`._muxer`) feeds each stream what aioquic reported
for it (``_on_data``, ``_on_reset``, ``_on_stop_sending``); the stream
keeps the bytes until :meth:`QuicStream.receive_some` hands them out, and
only then tells aioquic they were consumed, which is what moves the
receive window (credit flow control, :mod:`._connection`): the buffer is
bounded by the stream's window. :meth:`QuicStream.send_all` queues the
bytes in aioquic, ``send_buffer`` bytes at a time, waiting while more
than ``send_buffer`` bytes of this stream are unacknowledged, so a stream
holds at most about twice that unacknowledged. ``send_eof`` sends FIN; :meth:`QuicStream.reset`
sends RESET_STREAM and STOP_SENDING, so the peer's reads and writes break.
"""

from __future__ import annotations

import operator
from typing import Protocol

import trio

from guts.mux import MuxedStream

__all__ = ["QuicStream"]


class _Connection(Protocol):
    """What a stream asks of its connection (:class:`._muxer.QuicMuxedConnection`)."""

    send_buffer: int

    @property
    def is_closed(self) -> bool: ...

    def _send(self, stream: QuicStream, data: bytes, end: bool = False) -> None: ...

    def _unacked(self, stream: QuicStream) -> int: ...

    async def _progress_made(self) -> None: ...

    def _wake_senders(self) -> None: ...

    def _consumed(self, stream: QuicStream, n: int) -> None: ...

    def _stop(self, stream: QuicStream, code: int) -> None: ...

    def _reset(self, stream: QuicStream, code: int) -> None: ...

    def _maybe_forget(self, stream: QuicStream) -> None: ...

#: The application error code of a reset (libp2p defines none for QUIC).
RESET_CODE = 0


class QuicStream(MuxedStream):
    """One bidirectional QUIC stream.

    Attributes:
        stream_id: the QUIC stream id.
    """

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._recv = bytearray()
        self._eof_received = False
        self._reset_received: int | None = None
        self._stop_sending: int | None = None
        self._eof_sent = False
        self._closed = False
        self._readable = trio.Event()
        self._receiving = False
        self._sending = False

    # -- from the connection -------------------------------------------------

    def _on_data(self, data: bytes, end: bool) -> None:
        self._recv += data
        if end:
            self._eof_received = True
        self._readable.set()

    def _on_reset(self, code: int) -> None:
        self._reset_received = code
        self._readable.set()

    def _on_stop_sending(self, code: int) -> None:
        self._stop_sending = code
        self._conn._wake_senders()

    def _on_connection_end(self) -> None:
        self._readable.set()

    @property
    def _done(self) -> bool:
        """Nothing more will happen on this stream in either direction."""
        sent_done = self._eof_sent or self._stop_sending is not None or self._closed
        received_done = (self._eof_received and not self._recv) or self._reset_received is not None or self._closed
        return sent_done and received_done

    # -- trio.abc.ReceiveStream ----------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            while not self._recv:
                if self._closed:
                    raise trio.ClosedResourceError("stream closed")
                if self._reset_received is not None:
                    raise trio.BrokenResourceError(f"stream reset by the peer (code {self._reset_received})")
                if self._eof_received:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return b""
                if self._conn.is_closed:
                    raise trio.BrokenResourceError("connection closed")
                self._readable = trio.Event()
                await self._readable.wait()
            n = len(self._recv) if max_bytes is None else min(max_bytes, len(self._recv))
            out = bytes(self._recv[:n])
            del self._recv[:n]
            self._conn._consumed(self, n)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return out
        finally:
            self._receiving = False

    # -- trio.abc.SendStream -------------------------------------------------

    def _check_send(self) -> None:
        if self._closed or self._eof_sent:
            raise trio.ClosedResourceError("stream closed for sending")
        if self._stop_sending is not None:
            raise trio.BrokenResourceError(f"the peer stopped reading (code {self._stop_sending})")
        if self._conn.is_closed:
            raise trio.BrokenResourceError("connection closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_send()
            view = memoryview(data).cast("B")
            chunk = self._conn.send_buffer
            for start in range(0, len(view), chunk):
                # Queue at most send_buffer at a time: what waits in aioquic is bounded too.
                await self._wait_unacked()
                self._check_send()
                self._conn._send(self, bytes(view[start : start + chunk]))
            await self._wait_unacked()
        finally:
            self._sending = False

    async def _wait_unacked(self) -> None:
        while self._conn._unacked(self) > self._conn.send_buffer:
            self._check_send()
            await self._conn._progress_made()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        while self._conn._unacked(self) > self._conn.send_buffer and not self._conn.is_closed:
            await self._conn._progress_made()
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if not self._eof_sent:
            self._eof_sent = True
            if self._stop_sending is None and not self._conn.is_closed:
                self._conn._send(self, b"", end=True)
        self._conn._maybe_forget(self)
        await trio.lowlevel.cancel_shielded_checkpoint()

    # -- closing -------------------------------------------------------------

    async def aclose(self) -> None:
        """Send FIN if not sent; stop reading (STOP_SENDING if the peer has not finished)."""
        if not self._closed:
            if not self._eof_sent:
                self._eof_sent = True
                if self._stop_sending is None and not self._conn.is_closed:
                    self._conn._send(self, b"", end=True)
            if not self._eof_received and self._reset_received is None:
                self._conn._stop(self, RESET_CODE)
            self._closed = True
            self._recv.clear()
            self._readable.set()
            self._conn._wake_senders()
            self._conn._maybe_forget(self)
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        if not self._closed:
            self._conn._reset(self, RESET_CODE)
            self._closed = True
            self._recv.clear()
            self._readable.set()
            self._conn._wake_senders()
            self._conn._maybe_forget(self)
        await trio.lowlevel.checkpoint()
