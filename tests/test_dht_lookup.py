"""The sans-IO lookup: alpha, termination, timeouts, bad answers, bounds."""

from __future__ import annotations

from guts.dht._key import kad_key
from guts.dht.lookup import Lookup, LookupConfig, PeerState
from guts.dht.routing_table import RoutingTable

from .dht_helpers import hashed_peer, true_closest


class Network:
    """Every node's routing table filled from a shared population."""

    def __init__(self, n: int, k: int = 20) -> None:
        self.population = [hashed_peer(i) for i in range(n)]
        self.tables = {}
        for p in self.population:
            table = RoutingTable(p, k=k)
            for q in self.population:
                table.add(q, [], 0)
            self.tables[p] = table
        self.k = k

    def answer(self, peer, target: int) -> list:  # type: ignore[no-untyped-def]
        return [e.peer_id for e in self.tables[peer].closest(target, self.k)]


def drive(lookup: Lookup, net: Network, dead=frozenset(), max_steps: int = 10_000) -> int:  # type: ignore[no-untyped-def]
    """Answer in lockstep: everyone asked in a step answers (or fails) at once."""
    now = 0.0
    steps = 0
    while not lookup.finished and steps < max_steps:
        batch = lookup.next(now)
        assert len(batch) <= lookup.config.k
        for p in batch:
            if p in dead:
                lookup.on_failure(p, now)
            else:
                lookup.on_success(p, net.answer(p, lookup.target), now)
        now += 0.1
        steps += 1
    assert lookup.finished
    return steps


def test_finds_the_true_k_closest() -> None:
    net = Network(300)
    me = net.population[0]
    for n in range(5):
        target = kad_key(b"target-%d" % n)
        seeds = [e.peer_id for e in net.tables[me].closest(target, 20)]
        lookup = Lookup(target, seeds, LookupConfig(k=20, alpha=3), exclude=[me])
        drive(lookup, net)
        expected = true_closest(target, [p for p in net.population if p != me], 20)
        assert lookup.closest() == expected
        stats = lookup.stats()
        assert stats.succeeded >= 20 and stats.failed == 0
        assert 1 <= stats.rounds <= stats.queried


def test_alpha_bounds_requests_in_flight() -> None:
    net = Network(100)
    target = kad_key(b"t")
    lookup = Lookup(target, net.population[:50], LookupConfig(k=20, alpha=3))
    assert len(lookup.next(0)) == 3
    assert lookup.next(0) == []  # at capacity
    assert lookup.in_flight == 3


def test_timeout_frees_the_slot_and_late_answer_counts() -> None:
    net = Network(60)
    target = kad_key(b"t")
    seeds = true_closest(target, net.population, 5)
    lookup = Lookup(target, seeds, LookupConfig(k=5, alpha=1, peer_timeout=1.0))
    (slow,) = lookup.next(0.0)
    assert lookup.next(0.5) == []  # still waiting
    (second,) = lookup.next(1.0)  # the slow one timed out: its slot is free
    assert lookup.state(slow) is PeerState.UNRESPONSIVE and second != slow
    lookup.on_success(slow, net.answer(slow, target), 1.2)  # late, still counted
    assert lookup.state(slow) is PeerState.SUCCEEDED


def test_timeout_adapts_to_how_fast_others_answer() -> None:
    net = Network(60)
    target = kad_key(b"t")
    seeds = true_closest(target, net.population, 5)
    cfg = LookupConfig(k=5, alpha=2, peer_timeout=3.0, min_peer_timeout=0.5, timeout_factor=4.0)
    lookup = Lookup(target, seeds, cfg)
    assert lookup.peer_timeout == 3.0  # nothing answered yet
    dead, fast = lookup.next(0.0)
    lookup.on_success(fast, [], 0.05)
    assert lookup.peer_timeout == 0.5  # 4 x 50 ms, but never under the floor
    (slow,) = lookup.next(0.05)
    assert lookup.next_deadline() == 0.5  # the dead peer's, not 3 s after it was asked
    lookup.next(0.5)
    assert lookup.state(dead) is PeerState.UNRESPONSIVE
    lookup.on_success(slow, [], 1.0)  # 0.95 s: the timeout follows the slowest answer
    assert lookup.peer_timeout == 3.0  # 4 x 0.95 s, capped


def test_unresponsive_peers_do_not_stall() -> None:
    net = Network(200)
    target = kad_key(b"silent")
    me = net.population[0]
    seeds = [e.peer_id for e in net.tables[me].closest(target, 20)]
    silent = set(true_closest(target, net.population, 10))  # the 10 closest never answer
    lookup = Lookup(target, seeds, LookupConfig(k=20, alpha=10, peer_timeout=1.0), exclude=[me])
    now = 0.0
    for _ in range(200):
        if lookup.finished:
            break
        for p in lookup.next(now):
            if p not in silent:
                lookup.on_success(p, net.answer(p, target), now)
        now += 0.25
    assert lookup.finished and now < 20
    result = lookup.closest()
    assert not silent & set(result)
    live = [p for p in net.population if p not in silent and p != me]
    # Answers list the k closest overall, half of them silent: the 10 live
    # peers among the 20 closest are always found; farther ones only when
    # some answer happens to list them.
    assert result[:10] == true_closest(target, live, 10)


def test_all_seeds_fail() -> None:
    net = Network(30)
    lookup = Lookup(kad_key(b"x"), net.population[:5], LookupConfig(k=20))
    drive(lookup, net, dead=frozenset(net.population))
    assert lookup.finished and lookup.closest() == []
    assert lookup.stats().failed == 5


def test_no_seeds_finishes_at_once() -> None:
    lookup = Lookup(1, [])
    assert lookup.next(0) == [] and lookup.finished


def test_peer_answering_with_itself_and_garbage_is_harmless() -> None:
    net = Network(100)
    target = kad_key(b"t")
    me = net.population[0]
    liar = net.population[1]
    lookup = Lookup(target, [liar] + net.population[2:5], LookupConfig(k=20, alpha=10, max_peers=100), exclude=[me])
    junk = [hashed_peer(10_000 + i) for i in range(5000)]  # unreachable, made-up peers
    now = 0.0
    for _ in range(1000):
        if lookup.finished:
            break
        for p in lookup.next(now):
            if p == liar:
                lookup.on_success(p, [liar, me] + junk, now)
            elif p in net.tables:
                lookup.on_success(p, net.answer(p, target), now)
            else:
                lookup.on_failure(p, now)  # junk cannot be reached
        now += 0.1
    assert lookup.finished
    assert len(lookup._peers) <= 100  # bounded candidate set
    assert lookup.state(me) is None  # never asks itself
    result = set(lookup.closest())
    assert result <= set(net.population)
    assert lookup.stats().queried <= 1000


def test_finish_early_and_no_more_requests() -> None:
    net = Network(40)
    lookup = Lookup(kad_key(b"q"), net.population[:10])
    batch = lookup.next(0)
    lookup.finish()
    assert lookup.finished and lookup.next(1) == []
    lookup.on_success(batch[0], [], 1)  # answers after the end are accepted quietly
    assert lookup.state(batch[0]) is PeerState.SUCCEEDED


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NET = Network(120)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**256 - 1),
    st.integers(1, 12),
    st.integers(1, 20),
    st.lists(st.sampled_from(["answer", "fail", "silent", "lie"]), min_size=120, max_size=120),
)
def test_invariants_under_arbitrary_behaviour(target: int, alpha: int, k: int, behaviour: list[str]) -> None:
    """Whatever peers do, in-flight requests stay bounded, the lookup ends, and
    the result holds only peers that answered, nearest first."""
    net = _NET
    kind = dict(zip(net.population, behaviour))
    lookup = Lookup(target, net.population[:10], LookupConfig(k=k, alpha=alpha, peer_timeout=1.0, max_peers=60))
    now = 0.0
    answered = set()
    for _ in range(2000):
        if lookup.finished:
            break
        for p in lookup.next(now):
            assert lookup._waiting <= max(alpha, k)
            how = kind.get(p, "fail")  # made-up peers cannot be reached
            if how == "answer":
                answered.add(p)
                lookup.on_success(p, net.answer(p, target), now)
            elif how == "lie":
                answered.add(p)
                lookup.on_success(p, [p] + [hashed_peer(5000 + i) for i in range(30)], now)
            elif how == "fail":
                lookup.on_failure(p, now)
        now += 0.3
    assert lookup.finished
    result = lookup.closest()
    assert set(result) <= answered
    assert result == sorted(result, key=lambda p: kad_key(p.to_bytes()) ^ target)
    assert len(lookup._peers) <= 60 + 10
