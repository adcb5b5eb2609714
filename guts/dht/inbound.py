"""Inbound DHT streams: how many one peer may have served at once, and how
loudly a refusal is logged.

Each inbound stream is served by a task of its own and may carry many
requests, so a peer that opens streams without end would cost us tasks
without end: past ``max_per_peer`` streams at once, a new one is closed
unanswered (a refusal). Refusals are logged at warning level at most once
per ``log_interval`` per peer and at debug level otherwise, so a peer
that floods us does not flood the log as well. Both tables are bounded:
the stream counts by the streams open, the log times by ``remember``
peers (the least recently refused are forgotten, which at worst logs one
more warning).

Time comes in as ``now`` (any monotonic clock, in seconds).
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from guts.peer import PeerId

__all__ = ["InboundStreams"]


class InboundStreams:
    """Streams being served per peer, and when each peer's refusals were
    last logged loudly.

    Args:
        max_per_peer: streams one peer may have served at once.
        log_interval: seconds between two warnings about one peer.
        remember: peers whose last warning is remembered.
    """

    def __init__(self, max_per_peer: int, *, log_interval: float = 10.0, remember: int = 1000) -> None:
        self.max_per_peer = max_per_peer
        self.log_interval = log_interval
        self.remember = remember
        self._open: Counter[PeerId] = Counter()
        self._warned: OrderedDict[PeerId, float] = OrderedDict()  # least recently refused first

    def open(self, peer: PeerId) -> bool:
        """Count a new stream of ``peer``; False (nothing counted) when it
        already has ``max_per_peer`` being served."""
        if self._open[peer] >= self.max_per_peer:
            return False
        self._open[peer] += 1
        return True

    def close(self, peer: PeerId) -> None:
        """A stream :meth:`open` admitted is done."""
        self._open[peer] -= 1
        if self._open[peer] <= 0:
            del self._open[peer]

    def serving(self, peer: PeerId) -> int:
        """Streams of ``peer`` being served."""
        return self._open.get(peer, 0)

    def loud(self, peer: PeerId, now: float) -> bool:
        """Whether a refusal of ``peer`` now is worth a warning (else: debug)."""
        last = self._warned.pop(peer, None)
        loud = last is None or now - last >= self.log_interval
        if last is None or loud:
            last = now
        self._warned[peer] = last  # moved to the most recent end
        while len(self._warned) > self.remember:
            self._warned.popitem(last=False)
        return loud
