"""The connection manager's core, synchronously: admission before the
handshake, states, the identify grace, trimming by value, protection,
and the throttled log."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.connmgr import ConnLimits, ConnManager, ConnState, Refusal, TokenBucket, subnet_of
from guts.crypto import KeyPair

PEERS = [KeyPair.from_seed(bytes([i]) * 32).peer_id for i in range(1, 90)]


def manager(max_connections: int = 80, **limits: object) -> ConnManager:
    return ConnManager(ConnLimits(**limits), max_connections)  # type: ignore[arg-type]


def test_subnets() -> None:
    assert subnet_of("192.0.2.77") == "192.0.2.0/24"
    assert subnet_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert subnet_of("10.1.2.3", v4=16) == "10.1.0.0/16"
    with pytest.raises(ValueError):
        subnet_of("not an address")


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5)
    assert not bucket.take(0.5)
    bucket.refill(100.0)
    assert bucket.tokens == 3  # never above the burst


def test_per_ip_cap_before_handshake() -> None:
    m = manager(max_per_ip=3, ip_handshake_burst=100)
    slots = [m.admit_inbound("192.0.2.1", 0.0) for _ in range(3)]
    assert all(isinstance(s, int) for s in slots)
    assert m.admit_inbound("192.0.2.1", 0.0) is Refusal.IP
    # another address in the same /24 is not held by the first one's cap
    assert isinstance(m.admit_inbound("192.0.2.2", 0.0), int)
    m.release(slots[0])  # type: ignore[arg-type]
    assert isinstance(m.admit_inbound("192.0.2.1", 0.0), int)
    assert m.refusals[Refusal.IP] == 1


def test_per_subnet_cap_counts_neighbours() -> None:
    m = manager(max_per_ip=8, max_per_subnet=4, ip_handshake_burst=100, subnet_handshake_burst=100)
    for i in range(4):
        assert isinstance(m.admit_inbound(f"198.51.100.{i + 1}", 0.0), int)
    assert m.admit_inbound("198.51.100.200", 0.0) is Refusal.SUBNET
    assert isinstance(m.admit_inbound("198.51.101.1", 0.0), int)  # the next /24
    v6 = manager(max_per_subnet=2, ip_handshake_burst=100, subnet_handshake_burst=100)
    assert isinstance(v6.admit_inbound("2001:db8::1", 0.0), int)
    assert isinstance(v6.admit_inbound("2001:db8::2", 0.0), int)
    assert v6.admit_inbound("2001:db8::ffff:3", 0.0) is Refusal.SUBNET  # same /64
    assert isinstance(v6.admit_inbound("2001:db8:0:1::1", 0.0), int)


def test_handshake_rate_per_ip_and_subnet() -> None:
    m = manager(max_per_ip=100, max_per_subnet=100, ip_handshake_rate=1.0, ip_handshake_burst=2,
                subnet_handshake_rate=2.0, subnet_handshake_burst=3)
    for _ in range(2):
        m.release(m.admit_inbound("203.0.113.1", 0.0))  # type: ignore[arg-type]
    assert m.admit_inbound("203.0.113.1", 0.0) is Refusal.IP_RATE
    # the refused address spent none of its subnet's tokens
    m.release(m.admit_inbound("203.0.113.2", 0.0))  # type: ignore[arg-type]
    assert m.admit_inbound("203.0.113.3", 0.0) is Refusal.SUBNET_RATE
    assert isinstance(m.admit_inbound("203.0.113.1", 1.0), int)  # a second later: one more token each


def test_handshakes_in_flight_and_established() -> None:
    m = manager(max_handshakes=2)
    a, b = m.admit_inbound(None, 0.0), m.admit_inbound(None, 0.0)
    assert m.admit_inbound(None, 0.0) is Refusal.HANDSHAKES
    m.established(a, PEERS[0], 0.1)  # type: ignore[arg-type]
    assert m.info(a).state is ConnState.UNIDENTIFIED  # type: ignore[arg-type, union-attr]
    assert isinstance(m.admit_inbound(None, 0.2), int)
    m.release(b)  # type: ignore[arg-type]
    assert isinstance(m.admit_inbound(None, 0.2), int)


def test_inbound_budget_keeps_slots_for_dials() -> None:
    m = manager(max_connections=20, outbound_reserve=5)
    assert m.inbound_budget == 15
    for _ in range(15):
        m.established(m.admit_inbound(None, 0.0), PEERS[0], 0.0)  # type: ignore[arg-type]
    assert m.admit_inbound(None, 0.0) is Refusal.INBOUND
    dials = [m.admit_outbound(0.0) for _ in range(5)]
    assert all(isinstance(d, int) for d in dials)
    assert m.admit_outbound(0.0) is Refusal.CEILING
    # a tiny ceiling reserves at most a quarter
    assert manager(max_connections=2).inbound_budget == 2


def test_loopback_first_address_is_exempt_but_counted() -> None:
    m = manager(max_connections=10, max_per_ip=1, ip_handshake_burst=1)
    for _ in range(8):  # the inbound budget: 10 less a quarter (2) kept for dials
        assert isinstance(m.admit_inbound("127.0.0.1", 0.0), int)
    assert m.admit_inbound("127.0.0.1", 0.0) is Refusal.INBOUND
    other = manager(max_per_ip=1)
    assert isinstance(other.admit_inbound("127.0.0.2", 0.0), int)
    assert other.admit_inbound("127.0.0.2", 0.0) is Refusal.IP


def test_closing_refuses_everything() -> None:
    m = manager()
    m.closing = True
    assert m.admit_inbound("192.0.2.1", 0.0) is Refusal.CLOSING
    assert m.admit_outbound(0.0) is Refusal.CLOSING


def test_identify_grace() -> None:
    m = manager(identify_grace=10.0)
    quiet, talker, bare = (m.admit_inbound(None, 0.0) for _ in range(3))
    m.established(quiet, PEERS[0], 1.0)  # type: ignore[arg-type]
    m.established(talker, PEERS[1], 1.0)  # type: ignore[arg-type]
    m.established(bare, PEERS[2], 1.0, identify=False)  # type: ignore[arg-type]
    m.identified(PEERS[1], 5.0)
    assert m.expired(10.9) == []
    assert m.expired(11.0) == [quiet]
    assert m.expired(60.0) == []  # named once; the host closes it


def test_trim_order_and_protection() -> None:
    m = manager(max_connections=80, low_water=3, high_water=5)
    slots = {}
    for i in range(7):
        slot = m.admit_inbound(None, float(i))
        assert isinstance(slot, int)
        m.established(slot, PEERS[i], float(i))
        slots[i] = slot
    # 0: unidentified, never useful (the least valuable)
    # 1, 2: identified, useful long ago and lately; 3: identified, never useful
    # 4: unidentified but useful; 5: identified, useful, protected; 6: protected by a source
    for i in (1, 2, 3, 5, 6):
        m.identified(PEERS[i], 10.0)
    m.used(slots[1], "/guts/sync/1.0.0", 11.0)
    m.used(slots[2], "/guts/sync/1.0.0", 30.0)
    m.used(slots[4], "/guts/kad/1.0.0", 12.0)
    m.used(slots[3], "/ipfs/ping/1.0.0", 40.0)  # housekeeping: not useful
    m.protect(PEERS[5], "bootstrap")
    m.protect_with("mesh", lambda: [PEERS[6]])
    assert m.trim(50.0) == [slots[0], slots[3], slots[4], slots[1]]
    assert m.trim(50.0) == []  # named once
    assert m.tags(PEERS[6]) == {"mesh"} and m.tags(PEERS[5]) == {"bootstrap"}


def test_trim_needs_more_than_high_water() -> None:
    m = manager(low_water=2, high_water=4)
    for i in range(4):
        m.established(m.admit_outbound(0.0), PEERS[i], 0.0)  # type: ignore[arg-type]
    assert m.trim(1.0) == []
    m.admit_outbound(0.0)  # handshaking: not counted
    assert m.trim(1.0) == []


def test_protected_alone_over_high_water_are_trimmed_to_it() -> None:
    m = manager(low_water=2, high_water=4)
    for i in range(6):
        m.established(m.admit_outbound(float(i)), PEERS[i], float(i))  # type: ignore[arg-type]
        m.protect(PEERS[i], "dht")
    trimmed = m.trim(100.0)
    assert len(trimmed) == 2  # down to high water, not low


def test_newcomers_get_their_grace_before_a_trim() -> None:
    m = manager(low_water=1, high_water=2, identify_grace=10.0)
    old = m.admit_outbound(0.0)
    m.established(old, PEERS[0], 0.0)  # type: ignore[arg-type]
    m.identified(PEERS[0], 1.0)
    fresh = [m.admit_outbound(20.0) for _ in range(2)]
    for i, slot in enumerate(fresh):
        m.established(slot, PEERS[i + 1], 20.0)  # type: ignore[arg-type]
    assert m.next_deadline() == 30.0
    # Newcomers in their grace do not count toward the marks: one settled
    # connection is under high water, and stays.
    assert m.trim(21.0) == []
    bare = manager(low_water=1, high_water=2, identify_grace=10.0)
    for i in range(3):
        bare.established(bare.admit_outbound(0.0), PEERS[i], 0.0, identify=False)  # type: ignore[arg-type]
    assert bare.trim(5.0) == [] and bare.next_deadline() == 10.0
    assert len(bare.trim(10.0)) == 2


def test_protect_is_counted() -> None:
    m = manager()
    m.protect(PEERS[0], "sync")
    m.protect(PEERS[0], "sync")
    assert m.unprotect(PEERS[0], "sync")
    assert not m.unprotect(PEERS[0], "sync")
    assert not m.unprotect(PEERS[0], "sync")  # an extra unprotect is harmless
    assert m.tags(PEERS[0]) == set()


def test_status_counts() -> None:
    m = manager(max_per_ip=1)
    a = m.admit_inbound("192.0.2.1", 0.0)
    assert m.admit_inbound("192.0.2.1", 0.0) is Refusal.IP
    m.admit_inbound("192.0.2.2", 0.0)
    m.established(a, PEERS[0], 0.0)  # type: ignore[arg-type]
    m.identified(PEERS[0], 0.0)
    m.protect(PEERS[0], "x")
    m.established(m.admit_outbound(0.0), PEERS[1], 0.0)  # type: ignore[arg-type]
    status = m.status()
    assert status["inbound"] == {"handshaking": 1, "unidentified": 0, "identified": 1, "protected": 1}
    assert status["outbound"] == {"handshaking": 0, "unidentified": 1, "identified": 0, "protected": 0}
    assert status["refused"] == {"per_ip": 1} and status["total"] == 3


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        ConnLimits(low_water=10, high_water=5)
    with pytest.raises(ValueError):
        ConnLimits(max_per_ip=0)
    with pytest.raises(ValueError):
        ConnLimits(exempt=("not a network",))
    m = manager(max_connections=30)
    assert (m.low_water, m.high_water) == (30, 30)  # clamped to the ceiling


def test_rate_buckets_are_bounded() -> None:
    m = manager(max_tracked=16, max_per_ip=1)
    for i in range(1000):
        slot = m.admit_inbound(f"10.{i // 256}.{i % 256}.1", 0.0)
        m.release(slot)  # type: ignore[arg-type]
    assert len(m._ip_rate) <= 16 and len(m._subnet_rate) <= 16


# -- properties ---------------------------------------------------------------

_IPS = st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.1", "2001:db8::1", "127.0.0.1", None])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("in"), _IPS),
        st.tuples(st.just("out"), st.none()),
        st.tuples(st.just("done"), st.integers(0, 200)),
        st.tuples(st.just("close"), st.integers(0, 200)),
        st.tuples(st.just("tick"), st.none()),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_caps_hold_whatever_happens(ops: list[tuple[str, object]]) -> None:
    limits = ConnLimits(low_water=4, high_water=8, outbound_reserve=3, max_handshakes=5, max_per_ip=3,
                        max_per_subnet=5, ip_handshake_burst=4, subnet_handshake_burst=6, identify_grace=2.0)
    m = ConnManager(limits, 12)
    live: list[int] = []
    now = 0.0
    for op, arg in ops:
        now += 0.25
        if op in ("in", "out"):
            slot = m.admit_inbound(arg, now) if op == "in" else m.admit_outbound(now)  # type: ignore[arg-type]
            if isinstance(slot, int):
                live.append(slot)
        elif op == "done" and live:
            slot = live[int(arg) % len(live)]  # type: ignore[call-overload]
            m.established(slot, PEERS[slot % len(PEERS)], now)
        elif op == "close" and live:
            m.release(live.pop(int(arg) % len(live)))  # type: ignore[call-overload]
        else:
            for slot in m.expired(now) + m.trim(now):
                live.remove(slot)
                m.release(slot)
        infos = [m.info(s) for s in live]
        inbound = [i for i in infos if i is not None and i.inbound]
        assert len(m) == len(live) <= 12
        assert len(inbound) <= m.inbound_budget
        assert sum(i.state is ConnState.HANDSHAKING for i in inbound) <= 5
        for ip in {i.ip for i in inbound if i.ip is not None}:
            assert sum(i.ip == ip for i in inbound) <= 3
        for subnet in {i.subnet for i in inbound if i.subnet is not None}:
            assert sum(i.subnet == subnet for i in inbound) <= 5
    for slot in live:
        m.release(slot)
    assert len(m) == 0 and not m._per_ip and not m._per_subnet and m._inbound == 0 and m._handshaking_in == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(9, 40), st.sets(st.integers(0, 39)))
def test_trim_lands_on_low_water_and_spares_the_protected(n: int, protected: set[int]) -> None:
    m = ConnManager(ConnLimits(low_water=4, high_water=8), 80)
    for i in range(n):
        m.established(m.admit_outbound(float(i)), PEERS[i], float(i))  # type: ignore[arg-type]
    for i in protected:
        m.protect(PEERS[i], "t")
    trimmed = m.trim(100.0)
    guarded = len([i for i in protected if i < n])
    assert n - len(trimmed) == max(4, min(guarded, 8)) if guarded > 4 else n - len(trimmed) == 4
    spared = {m.info(s).peer for s in trimmed}  # type: ignore[union-attr]
    if guarded <= 8:
        assert not spared & {PEERS[i] for i in protected}


# -- the watch (the trio side), on a clock that jumps ------------------------------


async def test_watch_sums_up_what_it_did_not_log(autojump_clock: object, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import trio

    from guts.connmgr import ConnWatch

    caplog.set_level(logging.INFO, logger="test.connmgr")
    watch = ConnWatch(manager(), logging.getLogger("test.connmgr"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run, lambda slot: None, nursery.start_soon, lambda conn: ("", ""))
        await trio.sleep(1)
        for _ in range(50):
            watch.log_limited("127.0.0.2", "per_ip", trio.current_time(), "refusing %s: %s", "8 connections")
        watch.log_limited("127.0.0.3", "per_ip", trio.current_time(), "refusing %s: %s", "8 connections")
        await trio.sleep(61)
        nursery.cancel_scope.cancel()
    assert [r.getMessage() for r in caplog.records] == [
        "refusing 127.0.0.2: 8 connections",
        "refusing 127.0.0.3: 8 connections",
        "... and 49 more like it (per_ip) from 127.0.0.2 in the last 60 s",
    ]


async def test_watch_closes_at_the_grace(autojump_clock: object) -> None:
    import trio

    from guts.connmgr import ConnWatch

    m = manager(identify_grace=10.0)
    closed: list[float] = []

    class Conn:
        async def aclose(self) -> None:
            closed.append(trio.current_time())

    watch = ConnWatch(m, __import__("logging").getLogger("test.connmgr"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run, lambda slot: Conn(), nursery.start_soon, lambda conn: ("192.0.2.1", "peer"))
        await trio.sleep(1)
        started = trio.current_time()
        slot = m.admit_inbound("192.0.2.1", started)
        m.established(slot, PEERS[0], started)  # type: ignore[arg-type]
        watch.poke()
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert len(closed) == 1 and closed[0] - started == pytest.approx(10.0)


def test_a_spent_inbound_budget_shortens_the_grace() -> None:
    """While the inbound budget is spent, strangers that never identify
    are closed after ``pressure_grace`` (2 s), not ``identify_grace``."""
    m = ConnManager(ConnLimits(identify_grace=10.0, pressure_grace=2.0, exempt=()), max_connections=8)
    budget = m.inbound_budget
    slots = []
    for i in range(budget):
        slot = m.admit_inbound(f"10.{i}.0.1", 0.0)
        assert isinstance(slot, int)
        m.established(slot, PEERS[i], 0.0)
        slots.append(slot)
    assert isinstance(m.admit_inbound("10.99.0.1", 0.5), Refusal)  # spent
    assert m.next_deadline() == 2.0 and m.expired(1.9) == []
    assert sorted(m.expired(2.0)) == sorted(slots)
    n = manager(identify_grace=10.0, pressure_grace=2.0)
    slot = n.admit_inbound("10.0.0.1", 0.0)
    assert isinstance(slot, int)
    n.established(slot, PEERS[0], 0.0)
    assert n.expired(2.0) == [] and n.next_deadline() == 10.0  # budget not spent: the full grace
