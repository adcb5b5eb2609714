"""At most one log line per key per window, and a count of the rest.

Theory of operation
-------------------
A flood of bad attempts must not become a flood of log lines. Each key
(an address and a reason, say) opens a window with its first event:
that one is logged (:meth:`LogThrottle.record` says so), the ones after
it within ``window`` seconds are only counted. When the window is over,
:meth:`LogThrottle.flush` hands back each key's count of suppressed
events, for one summary line ("... and 41 more like it from 127.0.0.2
in the last 60 s"); the next event opens a new window and is logged.
Pure (time is passed in) and bounded: past ``max_keys`` windows, the
oldest is closed early and its count flushed with the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["LogThrottle"]

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Window:
    opened: float
    suppressed: int = 0


class LogThrottle(Generic[K]):
    """One logged event per key per ``window`` seconds; the rest counted."""

    def __init__(self, window: float = 60.0, max_keys: int = 4096) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("window must be positive and max_keys at least 1")
        self.window = window
        self.max_keys = max_keys
        self._windows: OrderedDict[K, _Window] = OrderedDict()
        self._ended: list[tuple[K, int]] = []

    def __len__(self) -> int:
        return len(self._windows)

    def record(self, key: K, now: float) -> bool:
        """An event for ``key``: whether to log it (else it is counted)."""
        window = self._windows.get(key)
        if window is not None and now - window.opened < self.window:
            window.suppressed += 1
            return False
        if window is not None:
            del self._windows[key]
            self._end(key, window)
        self._windows[key] = _Window(now)
        while len(self._windows) > self.max_keys:
            old_key, old = self._windows.popitem(last=False)
            self._end(old_key, old)
        return True

    def _end(self, key: K, window: _Window) -> None:
        if window.suppressed and len(self._ended) < self.max_keys:
            self._ended.append((key, window.suppressed))

    def next_end(self) -> float | None:
        """When the oldest window ends (``None``: no window is open)."""
        for window in self._windows.values():
            return window.opened + self.window
        return None

    def flush(self, now: float) -> list[tuple[K, int]]:
        """Keys whose window is over, with how many events each suppressed
        (only those with at least one); their windows are forgotten."""
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if now - window.opened < self.window:
                break
            del self._windows[key]
            self._end(key, window)
        ended, self._ended = self._ended, []
        return ended
