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

import random

import trio
from trio.lowlevel import checkpoint

from guts.errors import ConfigError, DialError
from guts.multiaddr import Multiaddr
from guts.transport._base import ConnectionHandler, run_handler, serve_listeners
from guts.transport._memory_link import _PLAIN_LINK, MemoryLink, _delayed_connection_pair
from guts.transport._memory_pipe import DEFAULT_BUFFER_SIZE, MemoryConnection, memory_connection_pair

__all__ = [
    "MemoryConnection",
    "MemoryLink",
    "MemoryNetwork",
    "MemoryTransport",
    "memory_connection_pair",
]

DEFAULT_BACKLOG = 128


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
            raise ConfigError("buffer_size and backlog must be >= 1")
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
            raise ConfigError("a link with a loss needs the network's rng")

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
