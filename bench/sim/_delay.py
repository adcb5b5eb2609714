"""An in-memory transport whose links have a one-way delay, for simulations.

Like :mod:`guts.transport.memory` (``/memory/<port>`` addresses on a shared
network object, bounded pipes with backpressure), except that each byte
written becomes readable only ``delay`` seconds later, the delay being
drawn once per connection. Under ``trio.testing.MockClock`` the delay costs
no wall-clock time, so a simulation measures latency in hops of a
realistic size without waiting for it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable

import trio
from trio.lowlevel import ParkingLot, checkpoint

from guts.errors import DialError
from guts.multiaddr import Multiaddr
from guts.transport import RawConnection

__all__ = ["DelayNetwork", "DelayTransport"]


class _Pipe:
    """One direction: chunks with the time each becomes readable."""

    def __init__(self, delay: float, capacity: int) -> None:
        self.delay = delay
        self.capacity = capacity
        self.chunks: deque[tuple[float, bytes]] = deque()
        self.in_flight = 0
        self.eof = False
        self.reader_closed = False
        self.readable = ParkingLot()
        self.writable = ParkingLot()


class DelayConnection(RawConnection, trio.abc.HalfCloseableStream):
    def __init__(self, incoming: _Pipe, outgoing: _Pipe, local: Multiaddr, remote: Multiaddr) -> None:
        self._in = incoming
        self._out = outgoing
        self.local_addr = local
        self.remote_addr = remote
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        pipe = self._out
        data = bytes(data)
        while True:
            if self._closed or pipe.eof:
                raise trio.ClosedResourceError("connection closed for sending")
            if pipe.reader_closed:
                raise trio.BrokenResourceError("the other end closed the connection")
            if pipe.in_flight < pipe.capacity or not pipe.chunks:
                break
            await pipe.writable.park()
        if data:
            pipe.chunks.append((trio.current_time() + pipe.delay, data))
            pipe.in_flight += len(data)
            pipe.readable.unpark_all()
        await checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await checkpoint()

    async def send_eof(self) -> None:
        await checkpoint()
        self._out.eof = True
        self._out.readable.unpark_all()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        pipe = self._in
        while True:
            if self._closed:
                raise trio.ClosedResourceError("connection closed")
            now = trio.current_time()
            if pipe.chunks and pipe.chunks[0][0] <= now:
                out = bytearray()
                while pipe.chunks and pipe.chunks[0][0] <= now and (max_bytes is None or len(out) < max_bytes):
                    due, chunk = pipe.chunks.popleft()
                    if max_bytes is not None and len(out) + len(chunk) > max_bytes:
                        keep = max_bytes - len(out)
                        pipe.chunks.appendleft((due, chunk[keep:]))
                        chunk = chunk[:keep]
                    out += chunk
                pipe.in_flight -= len(out)
                pipe.writable.unpark_all()
                await checkpoint()
                return bytes(out)
            if not pipe.chunks and pipe.eof:
                await checkpoint()
                return b""
            if pipe.chunks:
                with trio.move_on_at(pipe.chunks[0][0]):
                    await pipe.readable.park()
            else:
                await pipe.readable.park()

    async def aclose(self) -> None:
        self.close_now()
        await checkpoint()

    def close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.eof = True
        self._in.reader_closed = True
        self._in.chunks.clear()
        for pipe in (self._in, self._out):
            pipe.readable.unpark_all()
            pipe.writable.unpark_all()


class _Listener:
    def __init__(self, port: int) -> None:
        self.addr = Multiaddr((("memory", str(port)),))
        self.send, self.receive = trio.open_memory_channel[DelayConnection](128)


class DelayNetwork:
    """``/memory/<port>`` listeners whose connections have a one-way delay.

    Args:
        delay: draws the delay (seconds) of each new connection, both ways.
        capacity: bytes in flight per direction before ``send_all`` waits.
    """

    def __init__(self, delay: Callable[[], float], capacity: int = 1 << 20) -> None:
        self.delay = delay
        self.capacity = capacity
        self._listeners: dict[int, _Listener] = {}
        self._next_port = 1

    def _port(self) -> int:
        port = self._next_port
        self._next_port += 1
        return port

    async def connect(self, port: int) -> DelayConnection:
        listener = self._listeners.get(port)
        if listener is None:
            raise DialError(f"/memory/{port}: connection refused (nobody listens)")
        delay = self.delay()
        a_to_b, b_to_a = _Pipe(delay, self.capacity), _Pipe(delay, self.capacity)
        local = Multiaddr((("memory", str(self._port())),))
        client = DelayConnection(b_to_a, a_to_b, local, listener.addr)
        server = DelayConnection(a_to_b, b_to_a, listener.addr, local)
        try:
            await listener.send.send(server)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise DialError(f"/memory/{port}: listener closed") from None
        return client


class DelayTransport:
    """The :class:`~guts.transport.Transport` of one :class:`DelayNetwork`."""

    def __init__(self, network: DelayNetwork) -> None:
        self.network = network

    def can_dial(self, addr: Multiaddr) -> bool:
        return addr.without_p2p().protocols() == ("memory",)

    def can_listen(self, addr: Multiaddr) -> bool:
        return addr.protocols() == ("memory",)

    async def dial(self, addr: Multiaddr) -> DelayConnection:
        return await self.network.connect(int(addr.components[0].value or 0))

    async def serve(
        self,
        addr: Multiaddr,
        handler: Callable[[RawConnection], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        port = int(addr.components[0].value or 0) or self.network._port()
        listener = _Listener(port)
        self.network._listeners[port] = listener
        try:
            async with trio.open_nursery() as nursery:
                task_status.started([listener.addr])
                async for conn in listener.receive:
                    nursery.start_soon(self._handle, handler, conn)
        finally:
            del self.network._listeners[port]
            listener.send.close()

    @staticmethod
    async def _handle(handler: Callable[[RawConnection], Awaitable[None]], conn: DelayConnection) -> None:
        try:
            await handler(conn)
        finally:
            conn.close_now()


def uniform_delay(rng: random.Random, low: float, high: float) -> Callable[[], float]:
    return lambda: rng.uniform(low, high)
