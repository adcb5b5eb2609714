"""The Kademlia routing table, sans-IO: k-buckets with replacement caches.

Theory of operation
-------------------

The key space is 256 bits (SHA-256 of the peer id bytes). Bucket ``i``
holds up to ``k`` peers at distance ``2**i <= d < 2**(i + 1)`` from us
(see :mod:`guts.dht._key`); 256 fixed buckets hold exactly what the
spec's lazily split tree holds, without the splitting.

Each bucket is ordered by when we last heard from a peer, least recent
first, as in the Kademlia paper: live old peers are preferred over new
ones, which is what makes the table hard to flood. When a new peer
arrives at a full bucket:

* it goes to the bucket's *replacement cache* (bounded, most recent
  kept), and
* the table asks its caller to check the bucket's least recently seen
  peer: :meth:`RoutingTable.add` returns :class:`AddResult.PENDING` with
  that peer. The caller pings it and reports with
  :meth:`RoutingTable.on_liveness`. Alive: it moves to the tail and the
  newcomer waits in the cache. Dead: it is dropped and the most recent
  live candidate from the cache takes its place.

Only one check per bucket is in flight at a time, so a flood of new peers
costs at most one ping per bucket. Peers that fail ``max_failures``
requests in a row are dropped the same way (:meth:`RoutingTable.on_failure`).

The table never does I/O and never reads a clock: every method that
needs time takes ``now``.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from guts.dht._key import KEY_BITS, bucket_index, kad_key
from guts.multiaddr import Multiaddr
from guts.peer import PeerId

__all__ = ["AddResult", "AddOutcome", "Entry", "RoutingTable"]


class AddResult(Enum):
    #: The peer is now in its bucket.
    ADDED = "added"
    #: The peer was already there; its addresses and last-seen time were updated.
    UPDATED = "updated"
    #: The bucket is full: the peer waits in the replacement cache and the
    #: caller should check :attr:`AddOutcome.check`.
    PENDING = "pending"
    #: The bucket is full and a check is already under way; the peer waits
    #: in the replacement cache.
    CACHED = "cached"
    #: Our own id.
    SELF = "self"


@dataclass(frozen=True, slots=True)
class AddOutcome:
    result: AddResult
    #: With :attr:`AddResult.PENDING`: the least recently seen peer of the
    #: bucket, to be pinged and reported with :meth:`RoutingTable.on_liveness`.
    check: PeerId | None = None


@dataclass(slots=True)
class Entry:
    """A peer in the table."""

    peer_id: PeerId
    key: int
    addrs: tuple[Multiaddr, ...]
    added_at: float
    last_seen: float
    failures: int = 0


@dataclass(slots=True)
class _Bucket:
    entries: OrderedDict[PeerId, Entry] = field(default_factory=OrderedDict)  # least recent first
    replacements: OrderedDict[PeerId, Entry] = field(default_factory=OrderedDict)  # most recent last
    checking: PeerId | None = None
    refreshed_at: float | None = None  # never, until a lookup lands in it


class RoutingTable:
    """k-buckets around ``local``.

    Args:
        local: our peer id.
        k: bucket size (the spec's replication parameter, 20).
        replacements: candidates kept per bucket while it is full.
        max_failures: consecutive failed requests after which a peer is dropped.
    """

    def __init__(
        self,
        local: PeerId,
        k: int = 20,
        *,
        replacements: int | None = None,
        max_failures: int = 2,
    ) -> None:
        self.local = local
        self.local_key = kad_key(local.to_bytes())
        self.k = k
        self.max_replacements = k if replacements is None else replacements
        self.max_failures = max_failures
        self._buckets: dict[int, _Bucket] = {}
        self._index: dict[PeerId, int] = {}  # peer -> bucket, for peers in buckets only

    # -- queries ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, peer: object) -> bool:
        return peer in self._index

    def __iter__(self) -> Iterator[Entry]:
        for index in sorted(self._buckets):
            yield from self._buckets[index].entries.values()

    def peers(self) -> list[PeerId]:
        return [e.peer_id for e in self]

    def get(self, peer: PeerId) -> Entry | None:
        index = self._index.get(peer)
        if index is None:
            return None
        return self._buckets[index].entries[peer]

    def bucket_sizes(self) -> dict[int, int]:
        """Peers per non-empty bucket."""
        return {i: len(b.entries) for i, b in sorted(self._buckets.items()) if b.entries}

    def replacement_count(self) -> int:
        return sum(len(b.replacements) for b in self._buckets.values())

    def closest(self, target: int, count: int | None = None, exclude: Iterable[PeerId] = ()) -> list[Entry]:
        """The ``count`` (default k) entries closest to the point ``target``."""
        count = self.k if count is None else count
        skip = set(exclude)
        return heapq.nsmallest(count, (e for e in self if e.peer_id not in skip), key=lambda e: e.key ^ target)

    # -- changes ---------------------------------------------------------

    def _bucket(self, index: int) -> _Bucket:
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        return bucket

    def add(self, peer: PeerId, addrs: Iterable[Multiaddr], now: float) -> AddOutcome:
        """Offer a peer we heard from (it answered us, or identify says it
        serves the DHT)."""
        key = kad_key(peer.to_bytes())
        index = bucket_index(self.local_key, key)
        if index is None:
            return AddOutcome(AddResult.SELF)
        addrs = tuple(addrs)
        bucket = self._bucket(index)
        entry = bucket.entries.get(peer)
        if entry is not None:
            if addrs:
                entry.addrs = addrs
            entry.last_seen = now
            entry.failures = 0
            bucket.entries.move_to_end(peer)
            return AddOutcome(AddResult.UPDATED)
        if len(bucket.entries) < self.k:
            bucket.entries[peer] = Entry(peer, key, addrs, now, now)
            bucket.replacements.pop(peer, None)
            self._index[peer] = index
            return AddOutcome(AddResult.ADDED)
        old = bucket.replacements.pop(peer, None)
        bucket.replacements[peer] = Entry(peer, key, addrs or (old.addrs if old else ()), now, now)
        while len(bucket.replacements) > self.max_replacements:
            bucket.replacements.popitem(last=False)
        if bucket.checking is not None:
            return AddOutcome(AddResult.CACHED)
        oldest = next(iter(bucket.entries))
        bucket.checking = oldest
        return AddOutcome(AddResult.PENDING, oldest)

    def on_liveness(self, peer: PeerId, alive: bool, now: float) -> PeerId | None:
        """Report the check that :meth:`add` asked for.

        Returns:
            The replacement that took the dead peer's place, if any.
        """
        index = self._index.get(peer)
        if index is None:
            # Removed meanwhile; clear a check still marked on its bucket.
            b_index = bucket_index(self.local_key, kad_key(peer.to_bytes()))
            bucket = self._buckets.get(b_index) if b_index is not None else None
            if bucket is not None and bucket.checking == peer:
                bucket.checking = None
            return None
        bucket = self._buckets[index]
        if bucket.checking == peer:
            bucket.checking = None
        if alive:
            entry = bucket.entries[peer]
            entry.last_seen = now
            entry.failures = 0
            bucket.entries.move_to_end(peer)
            return None
        return self._drop(index, peer)

    def on_failure(self, peer: PeerId, now: float) -> bool:
        """A request to ``peer`` failed; returns whether it was dropped."""
        index = self._index.get(peer)
        if index is None:
            return False
        entry = self._buckets[index].entries[peer]
        entry.failures += 1
        if entry.failures >= self.max_failures:
            self._drop(index, peer)
            return True
        return False

    def remove(self, peer: PeerId) -> bool:
        """Drop ``peer`` (from its bucket or its bucket's cache)."""
        index = self._index.get(peer)
        if index is not None:
            self._drop(index, peer)
            return True
        b_index = bucket_index(self.local_key, kad_key(peer.to_bytes()))
        bucket = self._buckets.get(b_index) if b_index is not None else None
        return bucket is not None and bucket.replacements.pop(peer, None) is not None

    def _drop(self, index: int, peer: PeerId) -> PeerId | None:
        bucket = self._buckets[index]
        del bucket.entries[peer]
        del self._index[peer]
        if bucket.checking == peer:
            bucket.checking = None
        if not bucket.replacements:
            return None
        new_peer, entry = bucket.replacements.popitem(last=True)
        entry.failures = 0
        bucket.entries[new_peer] = entry  # most recently seen: the tail
        self._index[new_peer] = index
        return new_peer

    # -- refresh ---------------------------------------------------------

    def touch_bucket(self, target: int, now: float) -> None:
        """A lookup for ``target`` ran: its bucket counts as refreshed."""
        index = bucket_index(self.local_key, target)
        if index is not None:
            self._bucket(index).refreshed_at = now

    def stale_buckets(self, now: float, interval: float, *, lowest: int = KEY_BITS - 12) -> list[int]:
        """Buckets worth a refresh lookup: never refreshed, or not for
        ``interval``, from the farthest (255) down to the nearest non-empty bucket, but
        not below ``lowest`` (random keys for near buckets are too
        expensive to find, and they are refreshed by self-lookups anyway).
        """
        occupied = [i for i, b in self._buckets.items() if b.entries]
        if not occupied:
            return []
        nearest = max(min(occupied), lowest)
        out = []
        for index in range(KEY_BITS - 1, nearest - 1, -1):
            bucket = self._buckets.get(index)
            refreshed = bucket.refreshed_at if bucket is not None else None
            if refreshed is None or now - refreshed >= interval:
                out.append(index)
        return out
