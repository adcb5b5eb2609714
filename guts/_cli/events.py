"""Event output of ``guts start``: lines to stdout that never block the node.

Theory of operation. ``guts start`` prints what happens (peers connecting,
identified, gone; the messages of its ``--topic`` subscriptions) as JSON
lines or text. Whoever reads stdout may be slow or may never read at all
(a pipe nobody drains fills at 64 KiB), and a blocking ``write`` on the
Trio thread would stop the whole node: pings, the control socket, gossip.
So the Trio side never writes::

    emit(line)  ->  bounded channel  ->  writer task  ->  worker thread: os.write(fd)
    (send_nowait;     (``capacity``      (batches what    (blocks as long as the
     full: counted)    lines, and         is queued)       reader lets it)
                       ``max_bytes``)

:meth:`EventOutput.emit` puts the line in a bounded channel without
waiting; when the channel is full the line is dropped and counted in
:attr:`EventOutput.dropped`, and a warning says so at most once per
``report_interval`` seconds, with the count of lines lost since the last
one. The writer task takes every queued line, joins them, and hands the
bytes to a worker thread (``trio.to_thread.run_sync``, abandoned on
cancellation), which writes them to the file descriptor with ``os.write``
(unbuffered: nothing is left in ``sys.stdout``'s buffer for the interpreter
to flush, and block on, at exit).

Closing: :meth:`EventOutput.close` stops taking lines; the writer drains
what is queued for at most ``drain_timeout`` seconds and then gives up, so
a process whose stdout is never read still exits.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import trio

__all__ = ["EventOutput", "OutputConfig"]

log = logging.getLogger("guts.cli")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Bounds of the event output.

    Attributes:
        capacity: lines queued at most; past it new lines are dropped.
        max_bytes: bytes queued at most (a subscription's messages may be
            up to 1 MiB each); past it new lines are dropped too.
        report_interval: seconds between two warnings about dropped lines.
        drain_timeout: seconds :meth:`EventOutput.run` spends writing what is
            queued once closed.
        batch_bytes: bytes handed to one write, at most (about).
    """

    capacity: int = 4096
    max_bytes: int = 4 * 1024 * 1024
    report_interval: float = 60.0
    drain_timeout: float = 2.0
    batch_bytes: int = 256 * 1024


@dataclass(eq=False)
class EventOutput:
    """A bounded, non-blocking line writer for one file descriptor.

    Run :meth:`run` in a nursery; call :meth:`emit` from the Trio thread.
    """

    fd: int
    config: OutputConfig = field(default_factory=OutputConfig)
    dropped: int = 0
    written: int = 0
    _queued_bytes: int = 0
    _unreported: int = 0
    _last_report: float | None = None
    _send: trio.MemorySendChannel[bytes] = field(init=False)
    _receive: trio.MemoryReceiveChannel[bytes] = field(init=False)
    _scope: trio.CancelScope = field(init=False, default_factory=trio.CancelScope)

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes](self.config.capacity)

    def emit(self, line: str) -> bool:
        """Queue ``line`` (a newline is added); never waits.

        Returns:
            False if it was dropped: the queue is full (the reader is slow
            or gone) or the output is closed.
        """
        data = line.encode() + b"\n"
        if self._queued_bytes + len(data) > self.config.max_bytes:
            self._drop()
            return False
        try:
            self._send.send_nowait(data)
            self._queued_bytes += len(data)
            return True
        except trio.WouldBlock:
            self._drop()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped += 1
        return False

    def _drop(self) -> None:
        self.dropped += 1
        self._unreported += 1
        now = trio.current_time()
        if self._last_report is None or now - self._last_report >= self.config.report_interval:
            window = "" if self._last_report is None else f" in the last {now - self._last_report:.0f} s"
            log.warning(
                "event output is not being read: %d line(s) dropped%s (%d in all; the queue holds %d)",
                self._unreported, window, self.dropped, self.config.capacity,
            )
            self._last_report = now
            self._unreported = 0

    def close(self) -> None:
        """Take no more lines; :meth:`run` writes what is queued for at most
        ``drain_timeout`` seconds from now, then returns."""
        self._send.close()
        if self._unreported:
            log.warning("event output: %d more line(s) dropped since the last warning (%d in all)",
                        self._unreported, self.dropped)
            self._unreported = 0
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + self.config.drain_timeout)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued lines until :meth:`close` (then drain, bounded) or cancellation."""
        receive = self._receive
        task_status.started()
        try:
            with self._scope:
                while True:
                    try:
                        first = await receive.receive()
                    except trio.EndOfChannel:
                        return
                    chunks = [first]
                    size = len(first)
                    while size < self.config.batch_bytes:
                        try:
                            chunk = receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        chunks.append(chunk)
                        size += len(chunk)
                    self._queued_bytes -= size
                    await trio.to_thread.run_sync(_write_all, self.fd, b"".join(chunks), abandon_on_cancel=True)
                    self.written += len(chunks)
        finally:
            receive.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:  # the reader went away (EPIPE) or the fd is closed
        pass
