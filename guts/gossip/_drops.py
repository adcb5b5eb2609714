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
  lines: a :class:`~guts.ratelog.RateLimitedLog` (one line per peer and
  reason per interval, then the count of the rest) that says what was
  dropped.
"""

from __future__ import annotations

from collections.abc import Hashable

from guts.connmgr import TokenBucket
from guts.ratelog import RateLimitedLog

__all__ = ["DropCounts", "DropLog", "TokenBucket"]


class DropCounts(dict[str, int]):
    """Messages not delivered, by reason (a plain ``dict`` with :meth:`add`)."""

    def add(self, reason: str, count: int = 1) -> None:
        self[reason] = self.get(reason, 0) + count


class DropLog(RateLimitedLog):
    """Lines about messages not delivered, at most one per peer and reason
    per ``interval`` (the heartbeat's :meth:`flush` tells the counts)."""

    def note(self, peer: Hashable, reason: str, now: float, what: str = "message dropped") -> None:
        """One drop of ``peer``'s, for ``reason``; ``what`` is the line's text."""
        self.info(peer, reason, "peer %s: %s: %s", peer, what, reason, now=now)
