"""Bounded logging: at most one line per key and reason per interval.

Theory of operation
-------------------
A flood of bad input must not become a flood of log lines: a peer that
resets 20,000 streams, or an address that fails 20,000 upgrades, would
otherwise write 20,000 lines. :class:`RateLimitedLog` remembers, for each
``(key, reason)`` (the key names who caused it: a peer id, an IP), when
it last wrote a line and how many it held back since. The first line
goes out at once; further ones within ``interval`` seconds are only
counted; the first one after the interval goes out with the count of what
was held back appended ("... and 19,997 more like it from 12D3KooW... in
the last 10 s"), and starts a new interval.

Memory is bounded: at most ``max_keys`` pairs are remembered, the least
recently logged forgotten first (an LRU). What a forgotten pair had held
back is not lost from sight: it is added to :attr:`RateLimitedLog.forgotten`,
and the next line written says so too.

A flood that stops leaves its count untold until the same pair logs
again, which may be never; :meth:`RateLimitedLog.flush` tells it instead.
A caller with a timer (the heartbeat of gossip, the connection watch)
calls it now and then, or when :meth:`RateLimitedLog.next_end` says the
oldest interval is over: each pair whose interval ended with lines held
back gets one summary line ("... and 3,951 more like it (rate_limited)
from 12D3KooW... in the last 60 s"), and ended pairs are forgotten.

The clock is injected (``clock``, seconds, monotonic), or a sans-IO core
passes its own ``now`` to each call; the call is synchronous, so the class
is usable from every layer and testable without waiting. This module
imports nothing else from guts.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RateLimitedLog"]


class _Entry:
    __slots__ = ("since", "held", "level")

    def __init__(self, since: float, level: int) -> None:
        self.since = since  # when the last line for this pair was written
        self.held = 0  # lines held back since then
        self.level = level  # of that line, for the summary


def _short(key: object) -> str:
    text = str(key)
    return text if len(text) <= 16 else text[:12] + "..."


class RateLimitedLog:
    """Writes to ``logger`` at most one line per key and reason per interval.

    Args:
        logger: where lines go.
        interval: seconds during which further lines for one key and
            reason are only counted.
        max_keys: pairs remembered at most (least recently logged
            forgotten first).
        clock: seconds, monotonic; :func:`time.monotonic` by default.

    Attributes:
        forgotten: lines held back by pairs that were forgotten since the
            last line written (reported, then reset, by the next line).
        lines: lines written so far, summaries included.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 10.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or max_keys < 1:
            raise ValueError("interval must be positive and max_keys at least 1")
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self.forgotten = 0
        self.lines = 0
        self._clock = clock
        self._entries: OrderedDict[tuple[Hashable, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def log(
        self, level: int, key: Hashable, reason: str, msg: str, *args: object, now: float | None = None
    ) -> bool:
        """Log ``msg % args`` at ``level`` unless ``(key, reason)`` logged
        within the interval; return whether a line was written.

        ``reason`` groups lines that are alike (a short constant such as
        ``"negotiation failed"``); the message itself may vary. ``now``
        overrides the clock.
        """
        if not self.logger.isEnabledFor(level):
            return False
        if now is None:
            now = self._clock()
        pair = (key, reason)
        entry = self._entries.get(pair)
        if entry is not None and now - entry.since < self.interval:
            entry.held += 1
            return False
        held, elapsed = 0, 0.0
        if entry is None:
            entry = self._entries[pair] = _Entry(now, level)
            while len(self._entries) > self.max_keys:
                _, old = self._entries.popitem(last=False)
                self.forgotten += old.held
        else:
            held, elapsed = entry.held, now - entry.since
            entry.since, entry.held, entry.level = now, 0, level
            self._entries.move_to_end(pair)
        if held:
            msg += " (and %s more like it from %s in the last %.0f s)"
            args += (f"{held:,}", _short(key), elapsed)
        if self.forgotten:
            msg += " (%s more lines held back from sources no longer tracked)"
            args += (f"{self.forgotten:,}",)
            self.forgotten = 0
        self.lines += 1
        self.logger.log(level, msg, *args)
        return True

    def debug(self, key: Hashable, reason: str, msg: str, *args: object, now: float | None = None) -> bool:
        return self.log(logging.DEBUG, key, reason, msg, *args, now=now)

    def info(self, key: Hashable, reason: str, msg: str, *args: object, now: float | None = None) -> bool:
        return self.log(logging.INFO, key, reason, msg, *args, now=now)

    def warning(self, key: Hashable, reason: str, msg: str, *args: object, now: float | None = None) -> bool:
        return self.log(logging.WARNING, key, reason, msg, *args, now=now)

    def next_end(self) -> float | None:
        """When the oldest interval ends (``None``: no pair is remembered)."""
        for entry in self._entries.values():
            return entry.since + self.interval
        return None

    def flush(self, now: float | None = None) -> int:
        """Tell what the pairs whose interval is over held back, one summary
        line each, and forget those pairs; return the lines written."""
        if now is None:
            now = self._clock()
        written = 0
        while self._entries:
            pair, entry = next(iter(self._entries.items()))
            if now - entry.since < self.interval:
                break  # the rest are younger: the dict is in the order of their lines
            del self._entries[pair]
            if entry.held and self.logger.isEnabledFor(entry.level):
                key, reason = pair
                self.lines += 1
                written += 1
                self.logger.log(
                    entry.level, "... and %s more like it (%s) from %s in the last %.0f s",
                    f"{entry.held:,}", reason, _short(key), now - entry.since,
                )  # fmt: skip
        return written
