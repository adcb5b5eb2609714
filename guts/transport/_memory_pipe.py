"""The memory transport's connections: two bounded pipes with backpressure
(see :mod:`guts.transport.memory`)."""

from __future__ import annotations

import operator

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from guts.multiaddr import Multiaddr
from guts.transport._base import RawConnection

__all__ = ["DEFAULT_BUFFER_SIZE", "MemoryConnection", "memory_connection_pair"]

DEFAULT_BUFFER_SIZE = 64 * 1024


class _Pipe:
    """One direction of a connection: a bounded byte buffer and its waiters."""

    __slots__ = ("buffer", "capacity", "eof", "reader_closed", "readable", "writable")

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.eof = False  # the writer is done: reader gets b"" once drained
        self.reader_closed = False  # the reader is gone: writer gets Broken
        self.readable = ParkingLot()
        self.writable = ParkingLot()

    def push(self, data: memoryview) -> None:
        """Buffer ``data`` for the reader (the caller checked the room)."""
        self.buffer += data
        self.readable.unpark_all()

    def send_eof(self) -> None:
        """The writer is done."""
        self.eof = True
        self.readable.unpark_all()

    def drop(self) -> None:
        """The reader is gone: what it did not read is thrown away."""
        self.reader_closed = True
        self.buffer.clear()


class MemoryConnection(RawConnection, trio.abc.HalfCloseableStream):
    """One end of an in-memory connection.

    Closing an end is like closing a TCP socket: the other end reads what
    was already sent, then ``b""``; its further writes raise
    ``BrokenResourceError``.
    """

    __slots__ = ("local_addr", "remote_addr", "_in", "_out", "_closed", "_sending", "_receiving")

    def __init__(self, incoming: _Pipe, outgoing: _Pipe, local_addr: Multiaddr, remote_addr: Multiaddr) -> None:
        self._in = incoming
        self._out = outgoing
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self._closed = False
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        return f"<MemoryConnection {self.local_addr} -> {self.remote_addr}>"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            pipe = self._out
            view = memoryview(data).cast("B")
            parked = False
            while True:
                if self._closed or pipe.eof:
                    raise trio.ClosedResourceError("connection closed for sending")
                if pipe.reader_closed:
                    raise trio.BrokenResourceError("the other end closed the connection")
                if not view:
                    break
                room = pipe.capacity - len(pipe.buffer)
                if room > 0:
                    pipe.push(view[:room])
                    view = view[room:]
                else:
                    parked = True
                    await pipe.writable.park()
            if not parked:
                await cancel_shielded_checkpoint()
        finally:
            self._sending = False

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer as much of ``data`` as fits now; return how much.

        Never waits and is not a checkpoint (TCP's
        :meth:`~guts.transport.TcpConnection.try_send`, in memory).
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        pipe = self._out
        if self._closed or pipe.eof:
            raise trio.ClosedResourceError("connection closed for sending")
        if pipe.reader_closed:
            raise trio.BrokenResourceError("the other end closed the connection")
        room = pipe.capacity - len(pipe.buffer)
        if room <= 0:
            return 0
        taken = memoryview(data).cast("B")[:room]
        if taken:
            pipe.push(taken)
        return len(taken)

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            pipe = self._out
            parked = False
            while True:
                if self._closed or pipe.eof:
                    raise trio.ClosedResourceError("connection closed for sending")
                if pipe.reader_closed or len(pipe.buffer) < pipe.capacity:
                    break
                parked = True
                await pipe.writable.park()
            if not parked:
                await cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this connection")
        await checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("connection closed")
        self._out.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this connection")
        self._receiving = True
        try:
            await checkpoint_if_cancelled()
            pipe = self._in
            parked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("connection closed")
                buffer = pipe.buffer
                if buffer:
                    if max_bytes is None or max_bytes >= len(buffer):
                        data = bytes(buffer)
                        buffer.clear()
                    else:
                        data = bytes(buffer[:max_bytes])
                        del buffer[:max_bytes]
                    pipe.writable.unpark_all()
                    break
                if pipe.eof:
                    data = b""
                    break
                parked = True
                await pipe.readable.park()
            if not parked:
                await cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        self.close_now()
        await checkpoint()

    def close_now(self) -> None:
        """Close without a checkpoint (for synchronous cleanup paths)."""
        if self._closed:
            return
        self._closed = True
        self._out.send_eof()
        self._in.drop()
        for pipe in (self._in, self._out):
            pipe.readable.unpark_all()
            pipe.writable.unpark_all()


def memory_connection_pair(
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    addrs: tuple[Multiaddr, Multiaddr] | None = None,
) -> tuple[MemoryConnection, MemoryConnection]:
    """Two connected ends, without any network (for tests of the layers above).

    Args:
        buffer_size: bytes each direction holds before ``send_all`` blocks.
        addrs: ``(a_addr, b_addr)``; defaults to ``/memory/1`` and ``/memory/2``.
    """
    if buffer_size < 1:
        raise ValueError("buffer_size must be >= 1")
    a_addr, b_addr = addrs or (Multiaddr((("memory", "1"),)), Multiaddr((("memory", "2"),)))
    a_to_b, b_to_a = _Pipe(buffer_size), _Pipe(buffer_size)
    return (
        MemoryConnection(b_to_a, a_to_b, a_addr, b_addr),
        MemoryConnection(a_to_b, b_to_a, b_addr, a_addr),
    )
