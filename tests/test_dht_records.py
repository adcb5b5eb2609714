"""Provider and value stores, validators, the rate limiter."""

import pytest

from guts.crypto import KeyPair
from guts.dht.records import (
    GutsValidator,
    ProviderStore,
    PublicKeyValidator,
    PutResult,
    RateLimiter,
    RecordLimits,
    ValueStore,
    namespace_of,
)
from guts.errors import InvalidRecord
from guts.multiaddr import Multiaddr

from .dht_helpers import peer

H = 3600.0
ADDR = Multiaddr.parse("/ip4/10.0.0.1/tcp/1")


def test_provider_expiry_and_renewal() -> None:
    store = ProviderStore()
    key = b"\x12\x20" + bytes(32)
    assert store.add(key, peer(1), [ADDR], now=0)
    assert store.add(key, peer(2), [], now=10 * H)
    assert [r.provider for r in store.providers(key, now=11 * H)] == [peer(2), peer(1)]  # newest first
    assert [r.provider for r in store.providers(key, now=48 * H + 1)] == [peer(2)]
    assert store.expire(now=48 * H + 1) == 1 and len(store) == 1
    store.add(key, peer(2), [ADDR], now=50 * H)  # renewal pushes the expiry out
    assert store.expire(now=58 * H + 1) == 0
    assert store.get(key, peer(2)).addrs == (ADDR,)


def test_provider_remove() -> None:
    store = ProviderStore()
    store.add(b"k", peer(1), [ADDR], now=0)
    store.add(b"k", peer(2), [], now=0)
    store.take_changes()
    assert store.remove(b"k", peer(1)) and not store.remove(b"k", peer(1)) and not store.remove(b"x", peer(1))
    assert [r.provider for r in store.providers(b"k", now=1)] == [peer(2)] and len(store) == 1
    assert store.take_changes() == ([], [(b"k", peer(1))])  # the deletion reaches the disk too


def test_provider_caps() -> None:
    limits = RecordLimits(max_providers_per_key=3, max_keys_per_provider=2, max_provider_records=5)
    store = ProviderStore(limits)
    for i in range(5):
        assert store.add(b"k", peer(i), [], now=i)
    # per key: the newest 3 stay
    assert {r.provider for r in store.providers(b"k", 10)} == {peer(2), peer(3), peer(4)}
    # per provider: peer(9) may hold two keys here, not three
    assert store.add(b"a", peer(9), [], 0) and store.add(b"b", peer(9), [], 0)
    assert not store.add(b"c", peer(9), [], 0)
    assert store.add(b"a", peer(9), [], 1)  # renewing is always fine
    # in total
    assert len(store) == 5
    assert not store.add(b"z", peer(20), [], 0)


def test_provider_changes_for_persistence() -> None:
    store = ProviderStore()
    store.add(b"k", peer(1), [], 0)
    store.add(b"k", peer(2), [], 0)
    upserts, deletes = store.take_changes()
    assert {r.provider for r in upserts} == {peer(1), peer(2)} and deletes == []
    store.expire(49 * H)
    upserts, deletes = store.take_changes()
    assert upserts == [] and sorted(deletes, key=lambda d: d[1].to_bytes()) == sorted(
        [(b"k", peer(1)), (b"k", peer(2))], key=lambda d: d[1].to_bytes()
    )
    assert store.take_changes() == ([], [])


def test_namespaces() -> None:
    assert namespace_of(b"/guts/repo") == "guts"
    for bad in (b"guts/x", b"/guts/", b"//x", b"/guts", b""):
        with pytest.raises(InvalidRecord):
            namespace_of(bad)
    store = ValueStore()
    with pytest.raises(InvalidRecord, match="no validator for namespace /ipns/"):
        store.put(b"/ipns/abc", b"v", 0, peer(1))


def test_public_key_validator() -> None:
    pair = KeyPair.generate()
    key = b"/pk/" + pair.peer_id.to_bytes()
    value = pair.public_key.to_protobuf()
    v = PublicKeyValidator()
    v.validate(key, value)
    with pytest.raises(InvalidRecord, match="does not match"):
        v.validate(key, KeyPair.generate().public_key.to_protobuf())
    with pytest.raises(InvalidRecord):
        v.validate(key, b"garbage")
    with pytest.raises(InvalidRecord):
        v.validate(b"/pk/\x99", value)
    assert v.select(key, [value, value]) == 0


def test_guts_validator_selects_the_greatest() -> None:
    v = GutsValidator(max_value=8)
    v.validate(b"/guts/x", b"12345678")
    with pytest.raises(InvalidRecord, match="limit 8"):
        v.validate(b"/guts/x", b"123456789")
    assert v.select(b"/guts/x", [b"\x00\x02", b"\x00\x10", b"\x00\x03"]) == 1
    assert v.select(b"/guts/x", [b"b", b"a"]) == v.select(b"/guts/x", [b"b", b"a"]) == 0


def test_value_store_select_expiry_and_caps() -> None:
    store = ValueStore(limits=RecordLimits(max_values=3, max_values_per_peer=2))
    assert store.put(b"/guts/a", b"\x01", 0, peer(1)) is PutResult.STORED
    assert store.put(b"/guts/a", b"\x00", 1, peer(2)) is PutResult.KEPT  # the greater value stays
    assert store.get(b"/guts/a", 2).value == b"\x01"
    assert store.put(b"/guts/a", b"\x02", 3, peer(2)) is PutResult.STORED
    assert store.get(b"/guts/a", 4).publisher == peer(2)
    assert store.put(b"/guts/b", b"x", 0, peer(2)) is PutResult.STORED
    assert store.put(b"/guts/c", b"x", 0, peer(2)) is PutResult.REFUSED  # per-peer cap
    assert store.put(b"/guts/c", b"x", 0, None) is PutResult.STORED  # our own
    assert store.put(b"/guts/d", b"x", 0, peer(3)) is PutResult.REFUSED  # total cap
    # others' values expire after 48 h; ours stay (we republish them)
    assert store.get(b"/guts/b", 48 * H + 1) is None
    assert store.expire(48 * H + 10) == 2
    assert store.get(b"/guts/c", 100 * H).value == b"x"
    assert [v.key for v in store.own()] == [b"/guts/c"]


def test_rate_limiter() -> None:
    limiter = RateLimiter(rate=2, burst=3, max_peers=2)
    p = peer(1)
    assert [limiter.allow(p, 0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(p, 0.5)  # one token back after half a second
    assert not limiter.allow(p, 0.5)
    limiter.allow(peer(2), 0)
    limiter.allow(peer(3), 0)
    assert len(limiter._buckets) == 2  # bounded
