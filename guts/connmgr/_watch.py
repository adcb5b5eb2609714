"""The trio side of a :class:`~guts.connmgr.ConnManager`: a task that
closes what the manager names, and log lines that a flood cannot
multiply.

Theory of operation
-------------------
The manager decides; this adapter only acts. It sleeps until the next
identify grace runs out, a log window ends, or the host pokes it (a
connection was established or a peer identified: the count may be past
the high water mark, a grace began or ended), and no longer: an idle host never wakes, which
matters when a simulation runs a thousand of them. Awake, it asks the
manager for the connections whose grace ran out and, past the high water
mark, for the least valuable, and starts each one's close (a yamux
GoAway, bounded by the muxer's close timeout) in the host's nursery. Refusals
and expiries are logged through a :class:`~guts.ratelog.RateLimitedLog`:
the first of each kind per address a minute is written, the rest summed
up in one line when the minute is over.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from guts.connmgr.manager import ConnManager
from guts.ratelog import RateLimitedLog

__all__ = ["ConnWatch"]


class Closable(Protocol):
    def aclose(self) -> Awaitable[None]: ...


class ConnWatch:
    """Acts for ``manager``; logs to ``logger``.

    Args:
        manager: the core.
        logger: where refusals, expiries and trims are told.
        window: seconds one logged line stands for the others like it.
    """

    def __init__(self, manager: ConnManager, logger: logging.Logger, window: float = 60.0) -> None:
        self.manager = manager
        self.log = logger
        self.window = window
        self._throttle = RateLimitedLog(logger, interval=window, max_keys=manager.limits.max_tracked)
        self._poked = trio.Event()

    def poke(self) -> None:
        """Look again now (a connection was established, a peer identified)."""
        self._poked.set()

    def log_limited(self, source: str, reason: str, now: float, message: str, *args: object) -> None:
        """Log ``message % (source, *args)`` at most once per ``source`` and
        ``reason`` per window; the others are counted."""
        self.flush(now)
        if self._throttle.warning(source, reason, message, source, *args, now=now):
            self._poked.set()  # a window opened: the watch sums it up when it ends

    def flush(self, now: float) -> None:
        """Sum up the windows that are over."""
        self._throttle.flush(now)

    async def run(
        self,
        connection: Callable[[int], Any],
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        describe: Callable[[Any], tuple[str, str]],
    ) -> None:
        """Forever: close what the manager names.

        Args:
            connection: the connection holding a slot (``None`` if gone);
                it has an ``aclose()``.
            spawn: starts a close in the background (a nursery's ``start_soon``).
            describe: ``(address, peer)`` of a connection, for the log.
        """
        manager = self.manager
        while True:
            wake = [t for t in (manager.next_deadline(), self._throttle.next_end()) if t is not None]
            with trio.move_on_at(min(wake, default=math.inf)):
                await self._poked.wait()
            self._poked = trio.Event()
            self._act(trio.current_time(), connection, spawn, describe)

    def _act(
        self,
        now: float,
        connection: Callable[[int], Any],
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        describe: Callable[[Any], tuple[str, str]],
    ) -> None:
        # a method of its own: locals of the loop in run() would pin the last
        # connection closed (and its buffers) until the next wake-up
        manager = self.manager
        for slot in manager.expired(now):
            conn = connection(slot)
            if conn is not None:
                source, peer = describe(conn)
                self.log_limited(
                    source, "not identified", now, "closing connection from %s: %s did not identify within %g s",
                    peer, manager.limits.identify_grace,
                )  # fmt: skip
                spawn(conn.aclose)
        trimmed = [c for c in map(connection, manager.trim(now)) if c is not None]
        if trimmed:
            self.log.info("over %d connections: closing the %d least useful", manager.high_water, len(trimmed))
            for conn in trimmed:
                spawn(conn.aclose)
        self.flush(now)
