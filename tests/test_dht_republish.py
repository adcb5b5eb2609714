"""The expiry and republish sweep, synchronously, with time passed in."""

from __future__ import annotations

from guts.dht.records import ProviderStore, RecordLimits, ValueStore
from guts.dht.republish import Sweep, sweep
from guts.multiaddr import Multiaddr

from .dht_helpers import peer
from .dht_signed_helpers import owner, signed

H = 3600.0
ME = peer(0)
ADDR = Multiaddr.parse("/ip4/10.0.0.1/tcp/1")
INTERVAL = RecordLimits().republish_interval  # 22 h
MINE, V = signed(b"mine", b"v", who=owner(0))
THEIRS, W = signed(b"theirs", b"w", who=owner(1))


def stores() -> tuple[ProviderStore, ValueStore]:
    return ProviderStore(), ValueStore()


def test_nothing_is_due_before_the_interval() -> None:
    providers, values = stores()
    providers.add(b"mine", ME, [ADDR], 0)
    values.put(MINE, V, 0, None)
    assert sweep(providers, values, ME, 22 * H - 1, INTERVAL) == Sweep(0, (), ())


def test_our_records_are_due_after_the_interval_others_never() -> None:
    providers, values = stores()
    providers.add(b"mine", ME, [ADDR], 0)
    providers.add(b"theirs", peer(1), [ADDR], 0)
    providers.add(b"both", ME, [ADDR], 0)
    providers.add(b"both", peer(1), [ADDR], 0)
    values.put(MINE, V, 0, None)
    values.put(THEIRS, W, 0, peer(1))
    done = sweep(providers, values, ME, 22 * H, INTERVAL)
    assert done.dropped == 0
    assert sorted(done.provider_keys) == [b"both", b"mine"]
    assert [(v.key, v.value) for v in done.values] == [(MINE, V)]


def test_a_renewed_provider_record_is_not_due() -> None:
    providers, values = stores()
    providers.add(b"k", ME, [ADDR], 0)
    providers.add(b"k", ME, [ADDR], 10 * H)  # provided again (a republish, or by hand)
    assert sweep(providers, values, ME, 22 * H, INTERVAL).provider_keys == ()
    assert sweep(providers, values, ME, 32 * H, INTERVAL).provider_keys == (b"k",)


def test_a_due_value_restarts_its_interval_at_once() -> None:
    providers, values = stores()
    values.put(MINE, V, 0, None)
    first = sweep(providers, values, ME, 23 * H, INTERVAL)
    assert [v.received for v in first.values] == [0]  # as it was when picked
    assert values.get(MINE, 23 * H).received == 23 * H
    # the republish is still on its way: the next sweep does not pick it again
    assert sweep(providers, values, ME, 24 * H, INTERVAL).values == ()
    # and a put of the same value (the republish itself) keeps the restarted time
    values.put(MINE, V, 24 * H, None)
    assert values.get(MINE, 24 * H).received == 23 * H
    assert [v.key for v in sweep(providers, values, ME, 45 * H, INTERVAL).values] == [MINE]


def test_expired_records_of_others_are_dropped_ours_kept() -> None:
    providers, values = stores()
    providers.add(b"mine", ME, [ADDR], 0)
    providers.add(b"theirs", peer(1), [ADDR], 0)
    values.put(MINE, V, 0, None)
    values.put(THEIRS, W, 0, peer(1))
    done = sweep(providers, values, ME, 49 * H, INTERVAL)
    # a provider record of ours expires like any other (48 h: no sweep ran to
    # republish it at 22 h); a value of ours does not (we are its source)
    assert done.dropped == 3
    assert providers.get(b"theirs", peer(1)) is None and values.get(THEIRS, 49 * H) is None
    assert done.provider_keys == ()
    assert [v.key for v in done.values] == [MINE]


def test_expiry_comes_before_selection() -> None:
    providers, values = stores()
    providers.add(b"mine", ME, [ADDR], 0)
    # at 48 h our record is dead: expiry removes it first, so it is not
    # picked (the next provide() of the key starts it afresh)
    assert sweep(providers, values, ME, 48 * H, INTERVAL) == Sweep(1, (), ())
