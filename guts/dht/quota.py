"""What each peer holds in a record store, sans-IO: counts, bytes, age order,
and who holds the most.

Theory of operation
-------------------

A store full of a stranger's records must make room for a new record by
dropping what is least worth keeping, not by refusing everyone (which
lets whoever filled it first lock everyone out). :class:`Quota` keeps,
per owner (the peer that put the records), its items oldest first with
their sizes, and the totals. Eviction asks two questions:

* the owner's oldest item (:meth:`Quota.oldest`): a peer over its own
  share loses its oldest record first;
* the heaviest owner (:meth:`Quota.heaviest`): when the store as a whole
  is full, the peer holding the most bytes gives up its oldest record. A
  flood from many identities then shares the store among them, while a
  peer that put a few records keeps them (it is never the heaviest).

The protected owner (this node) is never returned by :meth:`heaviest`,
so its own records are never evicted to make room for others'.

The heaviest owner comes from a max-heap with lazy deletion: every change
pushes the owner's new weight, stale entries are skipped when popped, and
the heap is rebuilt when stale entries outnumber live ones, so it stays
within a small multiple of the number of owners. Each operation is
O(log owners) amortized.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Quota"]

O = TypeVar("O", bound=Hashable)
I = TypeVar("I", bound=Hashable)


class Quota(Generic[O, I]):
    """Items per owner, oldest first, with counts and bytes.

    Args:
        protected: the owner :meth:`heaviest` never names (this node).
    """

    def __init__(self, protected: O | None = None) -> None:
        self.protected = protected
        self.count = 0
        self.bytes = 0
        self._items: dict[O, dict[I, int]] = {}  # owner -> item -> size, oldest first
        self._bytes: dict[O, int] = {}
        self._extra: dict[O, int] = {}  # bytes charged to an owner outside its items
        self._heap: list[tuple[int, int, O]] = []  # (-bytes, tie, owner), lazily cleaned
        self._tie = itertools.count()

    def __contains__(self, owner: object) -> bool:
        return owner in self._items

    def count_of(self, owner: O) -> int:
        items = self._items.get(owner)
        return 0 if items is None else len(items)

    def bytes_of(self, owner: O) -> int:
        return self._bytes.get(owner, 0)

    def size_of(self, owner: O, item: I) -> int | None:
        items = self._items.get(owner)
        return None if items is None else items.get(item)

    def owners(self) -> int:
        return len(self._items)

    def add(self, owner: O, item: I, size: int) -> None:
        """Record ``item`` as ``owner``'s newest (it moves there if held)."""
        items = self._items.get(owner)
        if items is None:
            items = self._items[owner] = {}
            self._bytes[owner] = 0
        old = items.pop(item, None)
        if old is None:
            self.count += 1
        items[item] = size
        self._weigh(owner, size - (old or 0))

    def remove(self, owner: O, item: I) -> int | None:
        """Forget ``item``; its size, or ``None`` if ``owner`` did not hold it.
        An owner left with no items is forgotten, with its extra bytes."""
        items = self._items.get(owner)
        if items is None or item not in items:
            return None
        size = items.pop(item)
        self.count -= 1
        self._weigh(owner, -size)
        if not items:
            del self._items[owner]
            self.bytes -= self._bytes.pop(owner)
            self._extra.pop(owner, None)
        return size

    def set_extra(self, owner: O, size: int) -> None:
        """Charge ``owner`` ``size`` bytes besides its items (such as its
        addresses, kept once for all its records); only while it holds items."""
        if owner not in self._items:
            return
        delta = size - self._extra.get(owner, 0)
        self._extra[owner] = size
        self._weigh(owner, delta)

    def oldest(self, owner: O) -> I | None:
        items = self._items.get(owner)
        return None if not items else next(iter(items))

    def heaviest(self) -> O | None:
        """The owner holding the most bytes, never the protected one."""
        heap = self._heap
        while heap:
            weight, _, owner = heap[0]
            if owner in self._items and self._bytes[owner] == -weight:
                return owner
            heapq.heappop(heap)
        return None

    def _weigh(self, owner: O, delta: int) -> None:
        self.bytes += delta
        if owner not in self._items:
            return
        self._bytes[owner] += delta
        if owner == self.protected:
            return
        heapq.heappush(self._heap, (-self._bytes[owner], next(self._tie), owner))
        if len(self._heap) > 2 * len(self._items) + 64:
            self._heap = [
                (-self._bytes[o], next(self._tie), o) for o in self._items if o != self.protected
            ]
            heapq.heapify(self._heap)
