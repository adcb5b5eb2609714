"""A message-level simulation of the sans-IO lookup core.

No hosts and no bytes: ``N`` node ids, each with a Kademlia routing table
built the way a settled network's would be (every bucket holds up to k
random members of its part of the key space), a share of nodes that never
answer, and an event loop that delivers each answer after a random
latency. Each lookup is the real :class:`guts.dht.lookup.Lookup`, driven
exactly as the Trio layer drives it: ``next(now)``, ``on_success``,
``on_failure``, per-peer timeouts.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
import statistics
from dataclasses import dataclass, field

from guts.dht import KEY_BITS, kad_key
from guts.dht.lookup import Lookup, LookupConfig
from guts.peer import PeerId


@dataclass
class SimResult:
    nodes: int
    unresponsive: int
    lookups: int
    mode: str
    successes: int = 0
    exact: int = 0
    messages: list[int] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)


class SimNetwork:
    """``n`` nodes, ``dead_fraction`` of them silent; routing tables with
    up to ``k`` random peers per bucket."""

    def __init__(self, n: int, dead_fraction: float, k: int = 20, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.k = k
        self.rng = rng
        self.ids = [PeerId.from_bytes(b"\x12\x20" + hashlib.sha256(b"sim-%d-%d" % (seed, i)).digest()) for i in range(n)]
        self.points = [kad_key(p.to_bytes()) for p in self.ids]
        order = sorted(range(n), key=lambda i: self.points[i])
        sorted_points = [self.points[i] for i in order]
        self.dead = set(rng.sample(range(n), int(n * dead_fraction)))
        self.tables: list[list[int]] = []
        for i in range(n):
            x = self.points[i]
            table: list[int] = []
            for bucket in range(KEY_BITS - 1, -1, -1):
                # Bucket b of x: the points sharing x's bits above b and
                # differing at b, a contiguous range of the sorted key space.
                block = (x >> (bucket + 1)) << (bucket + 1)
                lo_all = bisect.bisect_left(sorted_points, block)
                hi_all = bisect.bisect_left(sorted_points, block + (2 << bucket))
                if hi_all - lo_all <= 1:
                    break  # x is alone in this block: every nearer bucket is empty
                low = block | ((~x >> bucket & 1) << bucket)
                lo = bisect.bisect_left(sorted_points, low)
                hi = bisect.bisect_left(sorted_points, low + (1 << bucket))
                if hi - lo <= k:
                    table.extend(order[lo:hi])
                else:
                    table.extend(order[j] for j in rng.sample(range(lo, hi), k))
            self.tables.append(table)
        self.index = {p: i for i, p in enumerate(self.ids)}

    def closest(self, node: int, target: int, count: int) -> list[int]:
        table = self.tables[node]
        return heapq.nsmallest(count, table, key=lambda j: self.points[j] ^ target)

    def run_lookup(
        self, source: int, target_point: int, *, find: int | None, alpha: int, timeout: float
    ) -> tuple[Lookup, float, bool]:
        """One lookup from ``source``. With ``find``, it stops once the target
        node appears in an answer (a find-peer); otherwise it runs to the
        spec's termination. Returns the lookup, its duration and whether the
        target was found."""
        cfg = LookupConfig(k=self.k, alpha=alpha, peer_timeout=timeout)
        seeds = [self.ids[j] for j in self.closest(source, target_point, self.k)]
        lookup = Lookup(target_point, seeds, cfg, exclude=[self.ids[source]])
        now = 0.0
        events: list[tuple[float, int, int]] = []  # (time, seq, node) answers in flight
        seq = 0
        found = False
        while True:
            for peer in lookup.next(now):
                j = self.index[peer]
                if j in self.dead:
                    continue  # never answers; the lookup's timeout deals with it
                seq += 1
                heapq.heappush(events, (now + self.rng.uniform(0.01, 0.15), seq, j))
            if lookup.finished:
                break
            deadline = lookup.next_deadline()
            if events and (deadline is None or events[0][0] <= deadline):
                now, _, j = heapq.heappop(events)
                closer = self.closest(j, target_point, self.k)
                lookup.on_success(self.ids[j], [self.ids[c] for c in closer], now)
                if find is not None and (find in closer or j == find):
                    found = True
                    lookup.finish()
            elif deadline is not None:
                now = deadline
            else:
                break
        return lookup, now, found


def simulate(n: int, dead_fraction: float, lookups: int, *, alpha: int = 10, timeout: float = 3.0, seed: int = 1) -> list[SimResult]:
    net = SimNetwork(n, dead_fraction, seed=seed)
    rng = random.Random(seed + 7)
    live = [i for i in range(n) if i not in net.dead]
    find = SimResult(n, len(net.dead), lookups, "find peer")
    closest = SimResult(n, len(net.dead), lookups, "closest peers")
    for _ in range(lookups):
        source, target = rng.sample(live, 2)
        lookup, took, found = net.run_lookup(source, net.points[target], find=target, alpha=alpha, timeout=timeout)
        stats = lookup.stats()
        find.successes += found
        find.messages.append(stats.queried)
        find.rounds.append(stats.rounds)
        find.seconds.append(took)
        point = kad_key(rng.randbytes(16))
        lookup, took, _ = net.run_lookup(source, point, find=None, alpha=alpha, timeout=timeout)
        stats = lookup.stats()
        truth = sorted((i for i in live if i != source), key=lambda i: net.points[i] ^ point)[: net.k]
        got = [net.index[p] for p in lookup.closest()]
        closest.exact += got == truth
        closest.recall.append(len(set(got) & set(truth)) / len(truth))
        closest.successes += bool(set(got[:1]) & set(truth[:1]))
        closest.messages.append(stats.queried)
        closest.rounds.append(stats.rounds)
        closest.seconds.append(took)
    return [find, closest]


def pct(values: list[float] | list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def median(values: list[float] | list[int]) -> float:
    return float(statistics.median(values))
