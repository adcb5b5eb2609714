"""The message cache and the seen cache of gossipsub (gossipsub-v1.0.md,
"Message Cache"). Pure data structures: time is passed in.

:class:`MessageCache` keeps the messages of the last ``history_length``
heartbeats in windows; IHAVE gossip advertises the ids of the newest
``history_gossip`` windows, and IWANT answers come from all of them, so an
id we advertise is still there when the IWANT arrives. It also counts how
often each peer asked for each message, which bounds what an IWANT flood can
get out of us (gossipsub-v1.1.md, "Spam Protection Measures"). It is
bounded in bytes too (``max_bytes``): past it the oldest messages go
early, so that big messages arriving at their peers' allowances cannot
make the windows hold hundreds of MiB; an IWANT for a message gone early
is not answered, as one for a message past its windows is not.

:class:`SeenCache` remembers message ids for ``ttl`` seconds so that a
message is processed once however many peers forward it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from guts.errors import ConfigError
from guts.gossip._codec import RawMessage

__all__ = ["CacheEntry", "MessageCache", "SeenCache"]

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class CacheEntry(Generic[P]):
    """A cached message and, per peer, how many times that peer asked for it."""

    message: RawMessage
    iwant_counts: dict[P, int] = field(default_factory=dict)


class MessageCache(Generic[P]):
    """Messages of the last ``history_length`` heartbeats, in windows.

    Args:
        history_length: windows kept (``mcache_len``, 5 by default).
        history_gossip: newest windows whose ids go out in IHAVE
            (``mcache_gossip``, 3); at most ``history_length``.
        max_bytes: bytes of messages held at most (payload and encoding);
            the oldest go first past it.
    """

    def __init__(self, history_length: int = 5, history_gossip: int = 3, max_bytes: int = 1 << 62) -> None:
        if not 1 <= history_gossip <= history_length:
            raise ConfigError("need 1 <= history_gossip <= history_length")
        if max_bytes < 1:
            raise ConfigError("max_bytes must be at least 1")
        self.history_length = history_length
        self.history_gossip = history_gossip
        self.max_bytes = max_bytes
        #: Bytes held now.
        self.bytes = 0
        #: Messages that went before their windows ended, to stay within ``max_bytes``.
        self.evicted = 0
        self._entries: dict[bytes, CacheEntry[P]] = {}
        # newest window first; each holds (message id, topic) in arrival order
        self._windows: deque[deque[tuple[bytes, str]]] = deque([deque()])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._entries

    def put(self, msg_id: bytes, message: RawMessage) -> None:
        """Add a message to the newest window (once: a second put is ignored)."""
        if msg_id in self._entries:
            return
        self._entries[msg_id] = CacheEntry(message)
        self._windows[0].append((msg_id, message.topic))
        self.bytes += _cost(message)
        if self.bytes > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        for window in reversed(self._windows):  # oldest first
            while window and self.bytes > self.max_bytes:
                msg_id, _ = window.popleft()
                entry = self._entries.pop(msg_id, None)
                if entry is not None:
                    self.bytes -= _cost(entry.message)
                    self.evicted += 1
            if self.bytes <= self.max_bytes:
                return

    def get(self, msg_id: bytes) -> RawMessage | None:
        entry = self._entries.get(msg_id)
        return entry.message if entry is not None else None

    def get_for_peer(self, msg_id: bytes, peer: P) -> tuple[RawMessage, int] | None:
        """The message for an IWANT from ``peer`` and how many times that peer
        has now asked for it (this request included); ``None`` if not cached."""
        entry = self._entries.get(msg_id)
        if entry is None:
            return None
        count = entry.iwant_counts.get(peer, 0) + 1
        entry.iwant_counts[peer] = count
        return entry.message, count

    def remove(self, msg_id: bytes) -> RawMessage | None:
        """Forget a message (an invalid one); its window slot is skipped later."""
        entry = self._entries.pop(msg_id, None)
        if entry is None:
            return None
        self.bytes -= _cost(entry.message)
        return entry.message

    def gossip_ids(self, topics: Iterable[str] | None = None) -> dict[str, list[bytes]]:
        """Ids of the newest ``history_gossip`` windows, by topic.

        Args:
            topics: only these topics (all when ``None``).
        """
        wanted = None if topics is None else set(topics)
        out: dict[str, list[bytes]] = {}
        for i, window in enumerate(self._windows):
            if i >= self.history_gossip:
                break
            for msg_id, topic in window:
                if (wanted is None or topic in wanted) and msg_id in self._entries:
                    out.setdefault(topic, []).append(msg_id)
        return out

    def shift(self) -> None:
        """Start a new window, dropping the messages of the oldest one."""
        self._windows.appendleft(deque())
        while len(self._windows) > self.history_length:
            for msg_id, _ in self._windows.pop():
                entry = self._entries.pop(msg_id, None)
                if entry is not None:
                    self.bytes -= _cost(entry.message)


def _cost(message: RawMessage) -> int:
    # the payload and the encoding are separate bytes objects; 200 for the rest
    return message.size + len(message.wire) + 200


class SeenCache:
    """Message ids seen in the last ``ttl`` seconds.

    Entries expire in insertion order (the ttl is the same for all), so
    pruning only looks at the oldest ones. ``max_size`` bounds memory under
    a message flood: past it the oldest ids are forgotten early.

    Args:
        ttl: seconds an id is remembered (``seen_ttl``, 120 by default).
        max_size: most ids held at once.
    """

    def __init__(self, ttl: float = 120.0, max_size: int = 1_000_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._expiry

    def add(self, msg_id: bytes, now: float) -> bool:
        """Remember ``msg_id``; return whether it was new."""
        if msg_id in self._expiry:
            return False
        self._expiry[msg_id] = now + self.ttl
        if len(self._expiry) > self.max_size:
            self._expiry.popitem(last=False)
        return True

    def prune(self, now: float) -> None:
        """Forget the ids whose ttl has passed."""
        expiry = self._expiry
        while expiry:
            msg_id, expires = next(iter(expiry.items()))
            if expires > now:
                break
            del expiry[msg_id]
