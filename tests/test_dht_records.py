"""Provider and value stores, validators, the rate limiter."""

import pytest

from guts.connmgr import RateLimiter
from guts.crypto import KeyPair
from guts.dht.records import (
    GutsValidator,
    ProviderStore,
    PublicKeyValidator,
    PutResult,
    RecordLimits,
    ValueStore,
    namespace_of,
)
from guts.errors import InvalidRecord
from guts.multiaddr import Multiaddr
from guts.peer import PeerId

from .dht_helpers import peer
from .dht_signed_helpers import gkey, owner, record, signed

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


def test_provider_caps_evict_the_oldest_never_ours() -> None:
    limits = RecordLimits(max_providers_per_key=3, max_keys_per_provider=2, max_provider_records=5)
    store = ProviderStore(limits, local=peer(0))
    for i in range(1, 6):
        assert store.add(b"k", peer(i), [], now=i)
    # per key: the newest 3 stay
    assert {r.provider for r in store.providers(b"k", 10)} == {peer(3), peer(4), peer(5)}
    # per provider: peer(9) holds two keys here; a third pushes out its oldest
    assert store.add(b"a", peer(9), [], 0) and store.add(b"b", peer(9), [], 1)
    assert store.add(b"c", peer(9), [], 2)
    assert store.get(b"a", peer(9)) is None and store.count_of(peer(9)) == 2
    assert store.add(b"b", peer(9), [], 3)  # renewing is always fine, and makes b the newest
    assert store.add(b"d", peer(9), [], 4) and store.get(b"c", peer(9)) is None
    # in total: the heaviest provider gives up its oldest record
    assert len(store) == 5
    assert store.add(b"z", peer(20), [], 5)
    assert len(store) == 5 and store.count_of(peer(9)) == 1 and store.get(b"b", peer(9)) is None
    # ours count for nothing against the caps and are never evicted
    for i in range(10):
        assert store.add(b"own%d" % i, peer(0), [], 6)
    for i in range(10):
        store.add(b"x%d" % i, peer(30 + i), [], 7)
    assert store.count_of(peer(0)) == 10 and len(store) - 10 <= 5


def test_provider_bytes_are_bounded() -> None:
    limits = RecordLimits(max_provider_bytes_per_peer=1000, max_provider_bytes=3000)
    store = ProviderStore(limits)
    assert not store.add(b"k" * 1000, peer(1), [], 0)  # alone past the per-peer bytes
    for i in range(200):
        store.add(b"%03d" % i + bytes(60), peer(i % 10), [ADDR], i)
        assert store.size <= 3000 and all(store.count_of(peer(j)) * 127 <= 1000 for j in range(10))
    assert store.size > 2000  # the store fills up to its bound, not far below


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


def test_guts_validator_checks_the_owners_signature_and_picks_the_highest_seq() -> None:
    v = GutsValidator(max_value=8)
    key, rec = signed(b"x", b"12345678", seq=5)
    v.validate(key, rec)
    with pytest.raises(InvalidRecord, match="limit 8"):
        v.validate(*signed(b"x", b"123456789"))
    with pytest.raises(InvalidRecord, match="signature"):
        v.validate(key, record(b"x", b"v", who=owner(1)))  # signed by someone else
    with pytest.raises(InvalidRecord, match="signature"):
        v.validate(gkey(b"y"), rec)  # replayed under another name of the owner
    with pytest.raises(InvalidRecord, match="signature"):
        v.validate(key, rec[:-1] + bytes([rec[-1] ^ 1]))
    with pytest.raises(InvalidRecord):
        v.validate(key, rec + b"\x00")  # trailing bytes
    for bad in (b"/guts/x", b"/guts/notapeer/x", b"/guts/" + str(owner().peer_id).encode(), b"/pk/x"):
        with pytest.raises(InvalidRecord):
            v.validate(bad, rec)
    older, newer = record(b"x", b"\xff\xff", seq=4), record(b"x", b"\x00", seq=6)
    assert v.select(key, [older, rec, newer]) == 2 and v.select(key, [newer, older]) == 0
    # one seq, two values: the greater record, whatever the order
    a, b = record(b"x", b"a", seq=7), record(b"x", b"b", seq=7)
    assert [a, b][v.select(key, [a, b])] == [b, a][v.select(key, [b, a])] == max(a, b)


def test_a_remote_put_never_replaces_a_newer_record_of_the_owner() -> None:
    store = ValueStore()
    key, mine = signed(b"name", b"mine", seq=10, who=owner(0))
    assert store.put(key, mine, 0, None) is PutResult.STORED
    # another peer relays an older record of the owner, or forges one
    assert store.put(key, record(b"name", b"\xff" * 64, seq=9), 1, peer(5)) is PutResult.KEPT
    with pytest.raises(InvalidRecord):
        store.put(key, record(b"name", b"\xff" * 64, seq=11, who=owner(5)), 1, peer(5))
    # our own copy sent back to us stays ours (and so republished)
    assert store.put(key, mine, 2, peer(5)) is PutResult.KEPT and store.get(key, 3).publisher is None
    # a newer record its owner signed replaces ours; an older one then loses to it
    newer = record(b"name", b"moved on", seq=11)
    assert store.put(key, newer, 4, peer(6)) is PutResult.STORED and store.get(key, 5).value == newer
    assert store.put(key, mine, 6, None) is PutResult.KEPT


def test_value_store_expiry_and_caps() -> None:
    store = ValueStore(limits=RecordLimits(max_values=3, max_values_per_peer=2))
    a, b, c, d = (gkey(n) for n in (b"a", b"b", b"c", b"d"))
    assert store.put(a, record(b"a", b"x"), 0, peer(2)) is PutResult.STORED
    assert store.put(b, record(b"b", b"x"), 1, peer(2)) is PutResult.STORED
    # per peer: peer(2)'s oldest makes room
    assert store.put(c, record(b"c", b"x"), 2, peer(2)) is PutResult.STORED
    assert store.get(a, 3) is None and store.count_of(peer(2)) == 2
    assert store.put(a, record(b"a", b"x"), 3, None) is PutResult.STORED  # our own
    # in total: the heaviest peer gives way, never us
    assert store.put(d, record(b"d", b"x"), 4, peer(3)) is PutResult.STORED
    assert len(store) == 3 and store.get(b, 5) is None and store.get(a, 5).publisher is None
    # others' values expire after 48 h; ours stay (we republish them)
    assert store.get(c, 48 * H + 3) is None
    assert store.expire(48 * H + 10) == 2
    assert store.get(a, 100 * H) is not None
    assert [v.key for v in store.own()] == [a]


def test_our_own_puts_are_bounded_and_refused_past_the_bound() -> None:
    store = ValueStore(limits=RecordLimits(max_values=4, max_values_per_peer=2))
    keys = [gkey(b"%d" % i) for i in range(3)]
    assert store.put(keys[0], record(b"0", b"x"), 0, None) is PutResult.STORED
    assert store.put(keys[1], record(b"1", b"x"), 0, None) is PutResult.STORED
    assert store.put(keys[2], record(b"2", b"x"), 0, None) is PutResult.REFUSED
    assert store.put(keys[1], record(b"1", b"y", seq=2), 0, None) is PutResult.STORED  # a new seq of one held


def test_value_bytes_are_bounded_per_peer_and_in_total() -> None:
    limits = RecordLimits(max_value_bytes_per_peer=4000, max_value_bytes=10_000)
    store = ValueStore(limits=limits)
    assert store.put(*signed(b"big", bytes(4000)), 0, peer(1)) is PutResult.REFUSED  # alone past a peer's share
    own_key, own = signed(b"own", bytes(3000), who=owner(0))
    assert store.put(own_key, own, 0, None) is PutResult.STORED
    for i in range(100):
        store.put(*signed(b"v%d" % i, bytes(900), who=owner(1 + i % 7)), float(i), peer(1 + i % 7))
        assert store.size <= 10_000
        assert all(store.count_of(peer(j)) * 1000 <= 4000 for j in range(1, 8))
    assert store.get(own_key, 200) is not None
    assert store.size > 8000  # full, not emptied


def test_rate_limiter() -> None:
    limiter: RateLimiter[PeerId] = RateLimiter(rate=2, burst=3, max_keys=2)
    p = peer(1)
    assert [limiter.take(p, 0) for _ in range(4)] == [True, True, True, False]
    assert limiter.take(p, 0.5)  # one token back after half a second
    assert not limiter.take(p, 0.5)
    limiter.take(peer(2), 0)
    limiter.take(peer(3), 0)
    assert len(limiter._buckets) == 2  # bounded


def test_signed_record_varints() -> None:
    from guts.dht.signed import MAX_SEQ, decode_uvarint, encode_uvarint
    from guts.errors import DecodeError

    for n in (0, 1, 127, 128, 300, 2**32, MAX_SEQ):
        assert decode_uvarint(b"\x00" + encode_uvarint(n) + b"\x01", 1) == (n, 1 + len(encode_uvarint(n)))
    for bad in (b"", b"\x80", b"\x80\x00", b"\xff" * 9 + b"\x01"):
        with pytest.raises(DecodeError):
            decode_uvarint(bad, 0)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_open_as_a_record_or_give_invalid_record(data: bytes) -> None:
    from guts.dht.signed import open_record

    key, good = signed(b"x", b"v")
    for candidate in (data, good[:1] + data, data + good[-64:]):
        try:
            open_record(key, candidate, 64)
        except InvalidRecord:
            pass
