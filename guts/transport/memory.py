"""In-process transport: ``/memory/<u64>`` addresses on a shared network object.

Used by tests and by simulations that run hundreds of hosts in one trio
run, so it is built for speed and realism rather than features:

* No global registry: hosts that should reach each other share one
  :class:`MemoryNetwork`; two networks never see each other.
* Connections are bounded pipes (``buffer_size`` bytes each way) with
  backpressure, unlike ``trio.testing.memory_stream_pair`` whose buffer is
  unbounded: a muxer flow-control bug then deadlocks here as it would on
  TCP instead of silently buffering megabytes.
* Dialling an address nobody listens on fails at once with
  :class:`~guts.errors.DialError`, as ECONNREFUSED does.
"""

from __future__ import annotations

import operator

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from guts.errors import DialError
from guts.multiaddr import Multiaddr
from guts.transport._base import ConnectionHandler, RawConnection, run_handler, serve_listeners

__all__ = [
    "MemoryConnection",
    "MemoryNetwork",
    "MemoryTransport",
    "memory_connection_pair",
]

DEFAULT_BUFFER_SIZE = 64 * 1024
DEFAULT_BACKLOG = 128


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
                    pipe.buffer += view[:room]
                    view = view[room:]
                    pipe.readable.unpark_all()
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
            pipe.buffer += taken
            pipe.readable.unpark_all()
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
        self._out.eof = True
        self._out.readable.unpark_all()

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
        self._out.eof = True
        self._in.reader_closed = True
        self._in.buffer.clear()
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


def _memory_addr(port: int) -> Multiaddr:
    return Multiaddr((("memory", str(port)),))


class _MemoryListener(trio.abc.Listener[MemoryConnection]):
    """A bound ``/memory/<port>``: a bounded queue of not-yet-accepted connections."""

    def __init__(self, network: MemoryNetwork, port: int, backlog: int) -> None:
        self.network = network
        self.port = port
        self.addr = _memory_addr(port)
        self._send, self._receive = trio.open_memory_channel[MemoryConnection](backlog)

    async def enqueue(self, conn: MemoryConnection) -> None:
        try:
            await self._send.send(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise DialError(f"{self.addr}: listener closed") from None

    async def accept(self) -> MemoryConnection:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self.network._unbind(self)
        self._send.close()  # dialers blocked on a full backlog get DialError
        # Connections nobody accepted: their dialers see EOF, as after a reset.
        while True:
            try:
                pending = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                break
            pending.close_now()
        self._receive.close()
        await checkpoint()


class MemoryNetwork:
    """A namespace of ``/memory/<port>`` listeners, shared by the hosts that should meet.

    Args:
        buffer_size: bytes each direction of a connection holds before
            ``send_all`` blocks.
        backlog: connections a listener queues before dialers wait.
    """

    def __init__(self, *, buffer_size: int = DEFAULT_BUFFER_SIZE, backlog: int = DEFAULT_BACKLOG) -> None:
        if buffer_size < 1 or backlog < 1:
            raise ValueError("buffer_size and backlog must be >= 1")
        self.buffer_size = buffer_size
        self.backlog = backlog
        self._listeners: dict[int, _MemoryListener] = {}
        self._next_port = 1

    def _free_port(self) -> int:
        """Next unused port; also names the dialing end of connections."""
        while self._next_port in self._listeners:
            self._next_port += 1
        port = self._next_port
        self._next_port += 1
        return port

    def _bind(self, port: int) -> _MemoryListener:
        if port == 0:
            port = self._free_port()
        elif port in self._listeners:
            raise OSError(f"/memory/{port} is already in use")
        listener = _MemoryListener(self, port, self.backlog)
        self._listeners[port] = listener
        return listener

    def _unbind(self, listener: _MemoryListener) -> None:
        if self._listeners.get(listener.port) is listener:
            del self._listeners[listener.port]

    async def _connect(self, port: int) -> MemoryConnection:
        await checkpoint()
        listener = self._listeners.get(port)
        if listener is None:
            raise DialError(f"/memory/{port}: connection refused (nobody listens)")
        local = _memory_addr(self._free_port())
        client, server = memory_connection_pair(self.buffer_size, (local, listener.addr))
        await listener.enqueue(server)
        return client


class MemoryTransport:
    """The :class:`~guts.transport.Transport` for ``/memory/<port>`` on one network."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    def can_dial(self, addr: Multiaddr) -> bool:
        return addr.without_p2p().protocols() == ("memory",)

    def can_listen(self, addr: Multiaddr) -> bool:
        return addr.protocols() == ("memory",)

    async def dial(self, addr: Multiaddr) -> MemoryConnection:
        if not self.can_dial(addr):
            raise DialError(f"{addr}: not a /memory address")
        port = int(addr.components[0].value or 0)
        if port == 0:
            raise DialError(f"{addr}: cannot dial port 0")
        return await self.network._connect(port)

    async def serve(
        self,
        addr: Multiaddr,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if not self.can_listen(addr):
            raise ValueError(f"{addr}: not a /memory address")
        listener = self.network._bind(int(addr.components[0].value or 0))

        async def on_accept(conn: MemoryConnection) -> None:
            await run_handler(handler, conn)

        await serve_listeners([listener], [listener.addr], on_accept, task_status)
