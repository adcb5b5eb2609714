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
* Links can have a delay and lose dials (:class:`MemoryLink`), for
  simulations under ``trio.testing.MockClock``, where the delay costs no
  wall-clock time. Links with neither (the default) take the plain path
  and cost nothing extra.
"""

from __future__ import annotations

import math
import operator
import random
from collections import deque
from dataclasses import dataclass

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from guts.errors import DialError
from guts.multiaddr import Multiaddr
from guts.transport._base import ConnectionHandler, RawConnection, run_handler, serve_listeners

__all__ = [
    "MemoryConnection",
    "MemoryLink",
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


@dataclass(frozen=True, slots=True)
class MemoryLink:
    """How a link of a :class:`MemoryNetwork` treats what crosses it.

    Attributes:
        delay: one-way delay in seconds. A byte written at time ``t``
            becomes readable at ``t + delay``, in order; an EOF too. A
            dial takes one round trip (the listener can accept it after
            ``delay``, the dialer has it after ``2 * delay``), as TCP's
            handshake does. Written bytes keep their room in the buffer
            until they are read, so a link carries at most
            ``buffer_size / delay`` bytes per second, as a TCP window would.
        loss: the probability that a dial across the link is lost: it never
            connects and waits for the caller's deadline, as a TCP connect
            into a black hole (a dead host, a dropping firewall) does.
            Connections that were made lose nothing: TCP retransmits lost
            segments, which shows as delay, not as missing bytes.
    """

    delay: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.delay < math.inf):
            raise ValueError(f"delay must be finite and >= 0, not {self.delay!r}")
        if not (0.0 <= self.loss <= 1.0):
            raise ValueError(f"loss must be within 0 and 1, not {self.loss!r}")


_PLAIN_LINK = MemoryLink()


class _DelayedPipe(_Pipe):
    """One direction of a link with a delay.

    ``buffer`` holds the bytes written and not yet read, in order, as in
    :class:`_Pipe`, so the bound on it is the same. ``marks`` says when the
    bytes at its end land: ``(time, count)`` per write, oldest first;
    ``ready`` counts the landed bytes at the front of ``buffer``.
    """

    __slots__ = ("delay", "marks", "ready", "eof_at")

    def __init__(self, capacity: int, delay: float) -> None:
        super().__init__(capacity)
        self.delay = delay
        self.marks: deque[tuple[float, int]] = deque()
        self.ready = 0
        self.eof_at = math.inf  # when the writer's EOF lands

    def push(self, data: memoryview) -> None:
        """Buffer ``data``, to land one delay from now."""
        self.buffer += data
        due = trio.current_time() + self.delay
        marks = self.marks
        if not marks:
            marks.append((due, len(data)))
            # A reader waits for the first mark only (later ones land later),
            # or for a first write if there is none.
            self.readable.unpark_all()
        elif marks[-1][0] == due:
            marks[-1] = (due, marks[-1][1] + len(data))
        else:
            marks.append((due, len(data)))

    def send_eof(self) -> None:
        if not self.eof:
            self.eof = True
            self.eof_at = trio.current_time() + self.delay
            self.readable.unpark_all()


class _DelayedConnection(MemoryConnection):
    """A :class:`MemoryConnection` over a link with a delay.

    Writes take room in the buffer at once and land one delay later; a
    reader waits for them with a deadline, which ``MockClock`` jumps to.
    Closing is seen by the other end's writer at once (as a reset) and by
    its reader after the delay (as a FIN, behind the data).
    """

    __slots__ = ()

    _in: _DelayedPipe
    _out: _DelayedPipe

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
            marks = pipe.marks
            parked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("connection closed")
                now = trio.current_time()
                while marks and marks[0][0] <= now:
                    pipe.ready += marks.popleft()[1]
                if pipe.ready:
                    take = pipe.ready if max_bytes is None else min(pipe.ready, max_bytes)
                    buffer = pipe.buffer
                    if take == len(buffer):
                        data = bytes(buffer)
                        buffer.clear()
                    else:
                        data = bytes(buffer[:take])
                        del buffer[:take]
                    pipe.ready -= take
                    pipe.writable.unpark_all()
                    break
                if marks:
                    wake_at = marks[0][0]
                elif pipe.eof_at <= now:
                    data = b""
                    break
                else:
                    wake_at = pipe.eof_at  # math.inf: no deadline
                parked = True
                with trio.move_on_at(wake_at):
                    await pipe.readable.park()
            if not parked:
                await cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    def close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.send_eof()
        incoming = self._in
        incoming.reader_closed = True
        incoming.buffer.clear()
        incoming.marks.clear()
        incoming.ready = 0
        for pipe in (incoming, self._out):
            pipe.readable.unpark_all()
            pipe.writable.unpark_all()


def _delayed_connection_pair(
    buffer_size: int, delay: float, addrs: tuple[Multiaddr, Multiaddr]
) -> tuple[MemoryConnection, MemoryConnection]:
    a_addr, b_addr = addrs
    a_to_b, b_to_a = _DelayedPipe(buffer_size, delay), _DelayedPipe(buffer_size, delay)
    return (
        _DelayedConnection(b_to_a, a_to_b, a_addr, b_addr),
        _DelayedConnection(a_to_b, b_to_a, b_addr, a_addr),
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

    Every pair of listening addresses is joined by a link, which is
    ``default_link`` unless :meth:`set_link` says otherwise. A connection
    runs over the link between the address its dialer listens on (the
    first, if several) and the address dialled; a dialer that listens
    nowhere gets ``default_link``. A connection keeps the link it was made
    over.

    Args:
        buffer_size: bytes each direction of a connection holds before
            ``send_all`` blocks (in flight and unread, on a link with a delay).
        backlog: connections a listener queues before dialers wait.
        default_link: the link between addresses :meth:`set_link` was not
            told about; by default no delay and no loss.
        rng: draws the losses; needed once a link has a loss. Each dial's
            fate depends only on a number drawn from it here, the pair of
            addresses and how many dials the pair has had, not on the order
            trio runs tasks in, so a seeded ``rng`` repeats the same losses.
    """

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        backlog: int = DEFAULT_BACKLOG,
        default_link: MemoryLink = MemoryLink(),
        rng: random.Random | None = None,
    ) -> None:
        if buffer_size < 1 or backlog < 1:
            raise ValueError("buffer_size and backlog must be >= 1")
        self.buffer_size = buffer_size
        self.backlog = backlog
        self.default_link = default_link
        self._listeners: dict[int, _MemoryListener] = {}
        self._next_port = 1
        self._links: dict[tuple[int, int], MemoryLink] = {}
        self._shaped = default_link != _PLAIN_LINK  # False: every dial takes the plain path
        self._loss_seed = None if rng is None else rng.getrandbits(64)
        self._dials: dict[tuple[int, int], int] = {}  # per pair, on lossy links
        self._check_loss(default_link)

    def set_link(self, a: Multiaddr, b: Multiaddr, link: MemoryLink) -> None:
        """Make ``link`` the link between ``/memory`` addresses ``a`` and ``b`` (both ways).

        Connections already made keep theirs.
        """
        self._check_loss(link)
        self._links[_pair(_port_of(a), _port_of(b))] = link
        self._shaped = self._shaped or link != _PLAIN_LINK

    def link(self, a: Multiaddr, b: Multiaddr) -> MemoryLink:
        """The link between ``/memory`` addresses ``a`` and ``b``."""
        return self._links.get(_pair(_port_of(a), _port_of(b)), self.default_link)

    def _check_loss(self, link: MemoryLink) -> None:
        if link.loss and self._loss_seed is None:
            raise ValueError("a link with a loss needs the network's rng")

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

    async def _connect(self, port: int, source: int | None = None) -> MemoryConnection:
        """Connect to ``port`` from a dialer listening on ``source`` (if any)."""
        if self._shaped:
            return await self._connect_over_link(port, source)
        await checkpoint()
        listener = self._listeners.get(port)
        if listener is None:
            raise DialError(f"/memory/{port}: connection refused (nobody listens)")
        local = _memory_addr(self._free_port())
        client, server = memory_connection_pair(self.buffer_size, (local, listener.addr))
        await listener.enqueue(server)
        return client

    async def _connect_over_link(self, port: int, source: int | None) -> MemoryConnection:
        pair = _pair(source or 0, port)
        link = self.default_link if source is None else self._links.get(pair, self.default_link)
        if link.loss and self._lost(pair, link.loss):
            await trio.sleep_forever()
        delay = link.delay
        await trio.sleep(delay)  # the request crosses the link
        listener = self._listeners.get(port)
        if listener is None:
            await trio.sleep(delay)  # and the refusal comes back
            raise DialError(f"/memory/{port}: connection refused (nobody listens)")
        local = _memory_addr(self._free_port())
        if delay:
            client, server = _delayed_connection_pair(self.buffer_size, delay, (local, listener.addr))
        else:
            client, server = memory_connection_pair(self.buffer_size, (local, listener.addr))
        await listener.enqueue(server)
        if delay:
            try:
                await trio.sleep(delay)  # the acceptance comes back
            except BaseException:
                client.close_now()
                raise
        return client

    def _lost(self, pair: tuple[int, int], loss: float) -> bool:
        count = self._dials.get(pair, 0)
        self._dials[pair] = count + 1
        # A string seed is hashed with SHA-512: the same draw in every process.
        draw = random.Random(f"{self._loss_seed}/{pair[0]}/{pair[1]}/{count}").random()
        return draw < loss


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def _port_of(addr: Multiaddr) -> int:
    addr = addr.without_p2p()
    if addr.protocols() != ("memory",):
        raise ValueError(f"{addr}: not a /memory address")
    return int(addr.components[0].value or 0)


class MemoryTransport:
    """The :class:`~guts.transport.Transport` for ``/memory/<port>`` on one network."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self._ports: list[int] = []  # where serve() listens: names this end of a link

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
        return await self.network._connect(port, self._ports[0] if self._ports else None)

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

        self._ports.append(listener.port)
        try:
            await serve_listeners([listener], [listener.addr], on_accept, task_status)
        finally:
            self._ports.remove(listener.port)
