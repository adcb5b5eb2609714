"""Links of a memory network with a delay and loss (see
:class:`~guts.transport.memory.MemoryNetwork`): connections whose bytes land
one delay after they were written, for simulations under
``trio.testing.MockClock``."""

from __future__ import annotations

import math
import operator
from collections import deque
from dataclasses import dataclass

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from guts.errors import ConfigError
from guts.multiaddr import Multiaddr
from guts.transport._memory_pipe import MemoryConnection, _Pipe

__all__ = ["MemoryLink"]


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
            raise ConfigError(f"delay must be finite and >= 0, not {self.delay!r}")
        if not (0.0 <= self.loss <= 1.0):
            raise ConfigError(f"loss must be within 0 and 1, not {self.loss!r}")


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

    def drop(self) -> None:
        super().drop()
        self.marks.clear()
        self.ready = 0


class _DelayedConnection(MemoryConnection):
    """A :class:`MemoryConnection` over a link with a delay.

    Writes take room in the buffer at once and land one delay later
    (:meth:`_DelayedPipe.push`); a reader waits for them with a deadline,
    which ``MockClock`` jumps to.
    Closing is seen by the other end's writer at once (as a reset) and by
    its reader after the delay (as a FIN, behind the data).
    """

    __slots__ = ()

    _in: _DelayedPipe
    _out: _DelayedPipe

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


def _delayed_connection_pair(
    buffer_size: int, delay: float, addrs: tuple[Multiaddr, Multiaddr]
) -> tuple[MemoryConnection, MemoryConnection]:
    a_addr, b_addr = addrs
    a_to_b, b_to_a = _DelayedPipe(buffer_size, delay), _DelayedPipe(buffer_size, delay)
    return (
        _DelayedConnection(b_to_a, a_to_b, a_addr, b_addr),
        _DelayedConnection(a_to_b, b_to_a, b_addr, a_addr),
    )
