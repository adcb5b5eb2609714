"""The routing table: buckets, the replacement cache, liveness checks, refresh."""

from guts.dht._key import bucket_index, kad_key
from guts.dht.routing_table import AddResult, RoutingTable
from guts.multiaddr import Multiaddr

from .dht_helpers import hashed_peer, peer, true_closest

ADDR = Multiaddr.parse("/ip4/127.0.0.1/tcp/1")


def fill_bucket(table: RoutingTable, index: int, count: int, start: int = 0) -> list:
    """``count`` peers that fall into bucket ``index`` of ``table``."""
    found = []
    n = start
    while len(found) < count:
        p = hashed_peer(n)
        n += 1
        if bucket_index(table.local_key, kad_key(p.to_bytes())) == index:
            found.append(p)
    return found


def test_add_self_and_update() -> None:
    me = peer(0)
    table = RoutingTable(me, k=4)
    assert table.add(me, [ADDR], 0).result is AddResult.SELF
    other = peer(1)
    assert table.add(other, [ADDR], 1).result is AddResult.ADDED
    assert table.add(other, [], 2).result is AddResult.UPDATED
    entry = table.get(other)
    assert entry is not None and entry.addrs == (ADDR,) and entry.last_seen == 2
    assert len(table) == 1 and other in table


def test_full_bucket_asks_for_one_liveness_check() -> None:
    table = RoutingTable(peer(0), k=3, replacements=2)
    members = fill_bucket(table, 255, 6)
    for i, p in enumerate(members[:3]):
        assert table.add(p, [ADDR], i).result is AddResult.ADDED
    first = table.add(members[3], [ADDR], 10)
    assert first.result is AddResult.PENDING and first.check == members[0]  # least recently seen
    # a second newcomer while the check is out: cached, no second check
    assert table.add(members[4], [ADDR], 11).result is AddResult.CACHED
    assert table.add(members[5], [ADDR], 12).result is AddResult.CACHED
    assert table.replacement_count() == 2  # bounded: members[3] was pushed out
    # the oldest answers: it stays (moved to the tail), newcomers wait
    assert table.on_liveness(members[0], True, 13) is None
    assert members[0] in table and members[4] not in table
    # next newcomer triggers a check of the now-oldest, members[1]; it is dead
    (newcomer,) = [p for p in fill_bucket(table, 255, 10, start=0) if p not in members][:1]
    outcome = table.add(newcomer, [ADDR], 14)
    assert outcome.result is AddResult.PENDING and outcome.check == members[1]
    promoted = table.on_liveness(members[1], False, 15)
    assert members[1] not in table
    assert promoted == newcomer and newcomer in table  # the most recent candidate


def test_failures_drop_and_promote() -> None:
    table = RoutingTable(peer(0), k=2, max_failures=2)
    a, b, c = fill_bucket(table, 255, 3)
    table.add(a, [ADDR], 0)
    table.add(b, [ADDR], 0)
    assert table.add(c, [ADDR], 1).result is AddResult.PENDING
    assert table.on_failure(a, 2) is False
    assert table.on_failure(a, 3) is True
    assert a not in table and c in table
    # a success resets the count
    table.on_failure(b, 4)
    table.add(b, [], 5)
    assert table.on_failure(b, 6) is False


def test_remove_promotes_and_clears_pending_check() -> None:
    table = RoutingTable(peer(0), k=1)
    a, b = fill_bucket(table, 255, 2)
    table.add(a, [ADDR], 0)
    assert table.add(b, [ADDR], 1).check == a
    assert table.remove(a)
    assert b in table and a not in table
    assert table.on_liveness(a, True, 2) is None  # stale report is harmless


def test_closest_matches_brute_force() -> None:
    me = peer(0)
    table = RoutingTable(me, k=20)
    population = [hashed_peer(i) for i in range(300)]
    for p in population:
        table.add(p, [ADDR], 0)
    # the table keeps every peer of the near buckets, so the closest to our own key are exact
    kept = table.peers()
    assert len(kept) == len(table) <= 300
    for target in (table.local_key, kad_key(b"x"), kad_key(b"y")):
        got = [e.peer_id for e in table.closest(target, 10)]
        assert got == true_closest(target, kept, 10)
    assert [e.peer_id for e in table.closest(table.local_key, 5)] == true_closest(table.local_key, population, 5)
    # at most k per bucket
    assert all(n <= 20 for n in table.bucket_sizes().values())
    assert table.bucket_sizes()[255] == 20


def test_stale_buckets_and_touch() -> None:
    table = RoutingTable(peer(0), k=20)
    assert table.stale_buckets(1000, 600) == []  # empty: nothing to refresh from
    for p in fill_bucket(table, 253, 1):
        table.add(p, [ADDR], 0)
    # never refreshed: stale at once, from the far half down to the nearest occupied bucket
    assert table.stale_buckets(0, 600) == [255, 254, 253]
    for index in (255, 254, 253):
        table.touch_bucket(table.local_key ^ (1 << index), 100)
    assert table.stale_buckets(650, 600) == []
    table.touch_bucket(table.local_key ^ (1 << 254), 650)
    assert table.stale_buckets(700, 600) == [255, 253]
    # not below `lowest`
    for p in fill_bucket(table, 230, 1):
        table.add(p, [ADDR], 0)
    assert min(table.stale_buckets(700, 600)) == 244
