"""Messages not delivered: per-peer rate limits, counts and bounded log lines.

Theory of operation. Three small pure parts, all driven by ``now``:

- :class:`TokenBucket`: a peer's message allowance. It holds up to
  ``burst`` tokens and gains ``rate`` per second; each message a peer sends
  takes one token, before the message is checked, its signature verified or
  its validator run (the cheap refusal comes first). A message with no
  token is dropped: not delivered, not forwarded, not marked seen (an honest
  peer's copy still gets through) and not rewarded as a first delivery.
- :class:`DropCounts`: how many messages were not delivered, by reason
  (``rate_limited``, ``graylisted``, ``subscription_full``, ``rejected: ...``,
  ...), for the stats and the status endpoint.
- :class:`DropLog`: a flood of bad input must not become a flood of log
  lines. For each (peer, reason) the first drop is logged at once; the
  next ones within ``interval`` seconds are only counted, and one line
  when that window closes says how many ("... and 3,951 more like it from
  12D3KooW... in the last 60 s"). At most ``max_entries`` windows are kept
  (the oldest is closed early, with its line, past that).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from guts.connmgr import TokenBucket

__all__ = ["DropCounts", "DropLog", "TokenBucket"]


class DropCounts(dict[str, int]):
    """Messages not delivered, by reason (a plain ``dict`` with :meth:`add`)."""

    def add(self, reason: str, count: int = 1) -> None:
        self[reason] = self.get(reason, 0) + count


@dataclass(slots=True)
class _Window:
    opened: float
    suppressed: int = 0


class DropLog:
    """At most one log line per (peer, reason) per ``interval`` seconds, plus
    one line with the count of what was left out.

    Args:
        logger: where the lines go.
        interval: seconds a window lasts.
        max_entries: windows kept at once.
        level: the level of the lines.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, *, max_entries: int = 4096, level: int = logging.INFO
    ) -> None:
        self._log = logger
        self.interval = interval
        self.max_entries = max_entries
        self.level = level
        self._windows: OrderedDict[tuple[Hashable, str], _Window] = OrderedDict()
        #: Lines written so far (for tests and the curious).
        self.lines = 0

    def note(self, peer: Hashable, reason: str, now: float, what: str = "message dropped") -> None:
        """One drop of ``peer``'s, for ``reason``; ``what`` is the first line's text."""
        key = (peer, reason)
        window = self._windows.get(key)
        if window is not None and now - window.opened < self.interval:
            window.suppressed += 1
            return
        if window is not None:
            self._close(key, window, now)
        self._emit("peer %s: %s: %s", peer, what, reason)
        self._windows[key] = _Window(now)
        while len(self._windows) > self.max_entries:
            old_key, old = self._windows.popitem(last=False)
            self._close(old_key, old, now)

    def flush(self, now: float) -> None:
        """Close the windows that have ended (the heartbeat calls this)."""
        for key in [k for k, w in self._windows.items() if now - w.opened >= self.interval]:
            self._close(key, self._windows.pop(key), now)

    def _close(self, key: tuple[Hashable, str], window: _Window, now: float) -> None:
        self._windows.pop(key, None)
        if window.suppressed:
            peer, reason = key
            self._emit(
                "... and %s more like it (%s) from %s in the last %.0f s",
                f"{window.suppressed:,}", reason, peer, min(now - window.opened, self.interval),
            )

    def _emit(self, fmt: str, *args: object) -> None:
        self.lines += 1
        self._log.log(self.level, fmt, *args)
