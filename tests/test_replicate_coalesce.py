"""The coalescer: bursts of announcements become one fetch of the newest
state; debounce, max delay, one fetch at a time, retries and bounds."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.crypto import KeyPair
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.replicate.coalesce import CoalesceConfig, Coalescer, FetchOrder, Wanted


def rid(n: int) -> Rid:
    return Rid.of_genesis(b"genesis %d" % n)


def peer(n: int) -> PeerId:
    return KeyPair.from_seed(hashlib.sha256(b"peer %d" % n).digest()).peer_id


R, R2 = rid(1), rid(2)
ALICE, BOB = peer(100), peer(101)
P1, P2, P3 = peer(1), peer(2), peer(3)


def test_a_burst_makes_one_order_with_the_newest_seq() -> None:
    c = Coalescer()
    assert c.offer(R, ALICE, 3, P1, now=0.0)
    assert c.offer(R, ALICE, 5, P2, now=0.1)
    assert not c.offer(R, ALICE, 4, P3, now=0.2)  # older than pending: dropped
    assert c.offer(R, ALICE, 5, P3, now=0.2)  # the same: one more source
    assert c.offer(R, BOB, 1, P1, now=0.3)
    assert c.due(0.5) == []  # still within the debounce window of the last one
    assert c.next_due() == pytest.approx(0.8)
    orders = c.due(0.8)
    assert len(orders) == 1
    order = orders[0]
    assert order.rid == R and order.attempt == 1
    assert set(order.wanted) == {Wanted(ALICE, 5, (P3, P2)), Wanted(BOB, 1, (P1,))}
    assert set(order.peers) == {P1, P2, P3}
    assert c.fetching(R)
    assert c.due(10.0) == []  # handed out once
    c.finished(R, True, now=1.0)
    assert len(c) == 0 and c.next_due() is None


def test_a_held_offer_waits_for_a_nearer_holder() -> None:
    c = Coalescer(CoalesceConfig(debounce=0.05, max_delay=1.0))
    # Heard through a relay, from its author only: wait up to 0.75 s.
    assert c.offer(R, ALICE, 2, ALICE, now=0.0, hold=0.75)
    assert c.offer(R, ALICE, 2, ALICE, now=0.1, hold=0.75)  # another relayed copy
    assert c.due(0.5) == [] and c.next_due() == pytest.approx(0.85)
    # A peer that holds it says so: due by the debounce rule from now on.
    assert c.offer(R, ALICE, 2, P1, now=0.6)
    assert c.next_due() == pytest.approx(0.65)
    (order,) = c.due(0.65)
    assert order.wanted == (Wanted(ALICE, 2, (P1, ALICE)),)
    assert order.direct == {P1}  # the author was heard of through relays only
    c.finished(R, True, now=0.9)
    # Nobody nearer comes: the order goes to the author after the hold.
    assert c.offer(R, ALICE, 3, ALICE, now=1.0, hold=0.75)
    assert c.due(1.7) == []
    (order,) = c.due(1.75)
    assert order.peers == (ALICE,)
    # After a failure the retry does not wait for patience again.
    c.finished(R, False, now=2.0)
    assert c.next_due() == pytest.approx(2.0 + CoalesceConfig().retry_delay)
    # A peer that holds it now ends the wait before the retry.
    assert c.offer(R, ALICE, 3, P2, now=2.5)
    assert c.next_due() == pytest.approx(2.55)
    (retry,) = c.due(2.55)
    assert retry.wanted == (Wanted(ALICE, 3, (P2, ALICE)),) and retry.direct == {P2}


def test_the_order_of_the_holders_to_ask() -> None:
    c = Coalescer(CoalesceConfig(debounce=0.0, max_delay=0.0))
    c.offer(R, ALICE, 2, ALICE, now=0.0, hold=3.0)  # the signer, through relays
    c.offer(R, ALICE, 2, P1, now=0.0, hold=0.75)  # a holder through relays
    c.offer(R, ALICE, 2, P2, now=0.0)  # told us directly
    c.offer(R, ALICE, 2, P3, now=0.0, hold=0.75)
    (order,) = c.due(0.0)

    def keep(peers: list[PeerId]) -> None:
        """No shuffle: the order is visible."""
    # Direct first, then connected ones, then the rest; the signer, heard
    # of through relays only, is not among them.
    assert order.holders({P3}, keep) == [P2, P3, P1]
    c.finished(R, True, now=0.1)
    c.offer(R, ALICE, 3, ALICE, now=1.0)  # the signer told us itself: last, but asked
    (order,) = c.due(1.0)
    assert order.holders(set(), keep) == [ALICE]


def test_brought() -> None:
    order = FetchOrder(R, (Wanted(ALICE, 3, (P1,)), Wanted(BOB, 1, (P1,))))

    class Ns:
        def __init__(self, seq: int) -> None:
            self.statement = type("S", (), {"seq": seq})()

    assert order.brought({ALICE: Ns(3), BOB: Ns(2)})
    assert not order.brought({ALICE: Ns(2), BOB: Ns(2)})
    assert not order.brought({ALICE: Ns(4)})


def test_max_delay_bounds_the_wait() -> None:
    c = Coalescer(CoalesceConfig(debounce=0.5, max_delay=2.0))
    t = 0.0
    seq = 1
    while t < 2.0:  # an announcement every 0.4 s keeps the debounce from ever ending
        c.offer(R, ALICE, seq, P1, now=t)
        assert c.due(t) == []
        t += 0.4
        seq += 1
    orders = c.due(2.0)
    assert [o.wanted[0].seq for o in orders] == [seq - 1]


def test_one_fetch_at_a_time_and_one_more_afterwards() -> None:
    c = Coalescer()
    c.offer(R, ALICE, 1, P1, now=0.0)
    (first,) = c.due(1.0)
    c.offer(R, ALICE, 2, P2, now=1.1)  # during the fetch
    c.offer(R, ALICE, 3, P3, now=1.2)
    assert c.due(5.0) == [] and c.next_due() is None  # waits for the running fetch
    c.finished(R, True, now=5.0)
    (second,) = c.due(5.0)  # the announcements were quiet long enough already
    assert second.wanted == (Wanted(ALICE, 3, (P3,)),)
    c.finished(R, True, now=6.0)
    assert len(c) == 0


def test_what_the_fetch_covered_is_not_fetched_again() -> None:
    c = Coalescer()
    c.offer(R, ALICE, 4, P1, now=0.0)
    c.due(1.0)
    c.offer(R, ALICE, 4, P2, now=1.1)  # a relay lagging behind the fetch
    c.offer(R, ALICE, 3, P3, now=1.2)
    c.finished(R, True, now=2.0)
    assert c.due(10.0) == [] and len(c) == 0


def test_a_failed_fetch_is_retried_then_dropped() -> None:
    c = Coalescer(CoalesceConfig(retry_delay=5.0, max_attempts=2))
    c.offer(R, ALICE, 1, P1, now=0.0)
    (first,) = c.due(1.0)
    c.offer(R, BOB, 2, P2, now=1.5)
    c.finished(R, False, now=2.0)
    assert c.due(6.9) == [] and c.next_due() == pytest.approx(7.0)
    (second,) = c.due(7.0)
    assert second.attempt == 2
    assert set(second.wanted) == {Wanted(ALICE, 1, (P1,)), Wanted(BOB, 2, (P2,))}
    c.finished(R, False, now=8.0)  # the last attempt: dropped
    assert c.due(100.0) == [] and len(c) == 0
    c.offer(R, ALICE, 1, P1, now=100.0)  # a new announcement starts again
    assert [o.attempt for o in c.due(101.0)] == [1]


def test_a_retry_keeps_newer_announcements() -> None:
    c = Coalescer()
    c.offer(R, ALICE, 1, P1, now=0.0)
    c.due(1.0)
    c.offer(R, ALICE, 2, P2, now=1.5)
    c.finished(R, False, now=2.0)
    (retry,) = c.due(10.0)
    assert retry.wanted == (Wanted(ALICE, 2, (P2,)),)


def test_fetches_started_elsewhere_hold_announcements_back() -> None:
    c = Coalescer()
    assert c.started(R)
    assert not c.started(R)
    c.offer(R, ALICE, 1, P1, now=0.0)
    assert c.due(10.0) == []
    c.finished(R, True, now=10.0)  # it may not have covered the announcement
    assert [o.wanted for o in c.due(10.0)] == [(Wanted(ALICE, 1, (P1,)),)]
    c.finished(R, True, now=11.0)
    assert c.started(R2)
    c.finished(R2, False, now=12.0)
    assert len(c) == 0


def test_orders_come_oldest_first_and_limited() -> None:
    c = Coalescer()
    for i in range(5):
        c.offer(rid(i), ALICE, 1, P1, now=i * 0.1)
    orders = c.due(10.0, limit=2)
    assert [o.rid for o in orders] == [rid(0), rid(1)]
    assert [o.rid for o in c.due(10.0)] == [rid(2), rid(3), rid(4)]


def test_bounds() -> None:
    c = Coalescer(CoalesceConfig(max_repositories=2, max_signers=2, max_peers=2))
    assert c.offer(rid(1), ALICE, 1, P1, now=0.0)
    assert c.offer(rid(2), ALICE, 1, P1, now=0.0)
    assert not c.offer(rid(3), ALICE, 1, P1, now=0.0)  # new work refused, old kept
    assert not c.started(rid(3))
    assert c.offer(rid(1), ALICE, 1, P2, now=0.1)  # a tracked repository still takes offers
    assert c.offer(rid(1), ALICE, 1, P3, now=0.2)  # P1, the oldest, is dropped
    c.offer(rid(1), peer(200), 1, P1, now=0.3)
    c.offer(rid(1), peer(201), 1, P1, now=0.4)  # ALICE, the least recent signer, is dropped
    orders = {o.rid: o for o in c.due(10.0)}
    assert {w.signer for w in orders[rid(1)].wanted} == {peer(200), peer(201)}
    c2 = Coalescer(CoalesceConfig(max_peers=2))
    for p in (P1, P2, P3):
        c2.offer(R, ALICE, 1, p, now=0.0)
    assert c2.due(1.0)[0].wanted == (Wanted(ALICE, 1, (P3, P2)),)


def test_forget() -> None:
    c = Coalescer()
    c.offer(R, ALICE, 1, P1, now=0.0)
    c.due(1.0)
    c.forget(R)
    c.finished(R, False, now=2.0)  # nothing to do
    assert len(c) == 0 and c.due(100.0) == []


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        CoalesceConfig(debounce=3.0, max_delay=2.0)
    with pytest.raises(ValueError):
        CoalesceConfig(max_peers=0)


def test_order_peers_favour_the_best_informed() -> None:
    order = FetchOrder(R, (Wanted(ALICE, 1, (P1, P2)), Wanted(BOB, 1, (P2,))))
    assert order.peers == (P2, P1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 2), st.integers(1, 6), st.integers(0, 3),
            st.sampled_from(["offer", "due", "ok", "fail"]),
        ),
        max_size=60,
    )
)
def test_at_most_one_order_per_repository_in_flight(steps: list[tuple[int, int, int, int, str]]) -> None:
    cfg = CoalesceConfig(max_repositories=3, max_signers=2, max_peers=2)
    c = Coalescer(cfg)
    running: set[Rid] = set()
    now = 0.0
    for r, s, seq, p, action in steps:
        now += 0.3
        if action == "offer":
            c.offer(rid(r), peer(100 + s), seq, peer(p), now)
        elif action == "due":
            for order in c.due(now):
                assert order.rid not in running
                assert order.wanted and len(order.wanted) <= cfg.max_signers
                assert all(1 <= len(w.peers) <= cfg.max_peers for w in order.wanted)
                running.add(order.rid)
        elif running:
            done = sorted(running, key=str)[r % len(running)]
            running.discard(done)
            c.finished(done, action == "ok", now)
        assert len(c) <= cfg.max_repositories
        assert all(c.fetching(x) for x in running)


def test_expects_what_is_pending_or_being_fetched() -> None:
    c = Coalescer(CoalesceConfig(debounce=0.1, max_delay=1.0))
    assert not c.expects(R, ALICE, 1)
    assert c.offer(R, ALICE, 3, P1, now=0.0)
    assert c.expects(R, ALICE, 3) and c.expects(R, ALICE, 2)
    assert not c.expects(R, ALICE, 4) and not c.expects(R, BOB, 1) and not c.expects(R2, ALICE, 1)
    (order,) = c.due(0.2)
    assert c.expects(R, ALICE, 3)  # in the running order
    assert not c.expects(R, ALICE, 4)
    c.finished(order.rid, True, now=0.3)
    assert not c.expects(R, ALICE, 3)  # held now: the validator's `held` answers
