"""Floods of ADD_PROVIDER and PUT_VALUE from many fresh identities: the
stores stay within their bounds (records, bytes in memory, bytes on
disk), the node's own records stay, and its own puts still work.

In-process over the memory transport; each identity floods on one stream,
then goes away (as cheap identities do)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio
import trio.testing

from guts.dht import Dht, DhtConfig, DhtMode, DhtStore, KadMessage, KadPeer, MessageType, Record, encode_message
from guts.dht.records import PROVIDER_OVERHEAD, RecordLimits
from guts.dht.signed import guts_key, open_record, sign_record
from guts.host import Host
from guts.wire import MessageStream

from .helpers import full_addr, memory_hosts

PROTO = "/guts/kad/1.0.0"
IDENTITIES = 50
PROVIDES = 150  # per identity
PUTS = 40  # per identity
VALUE = 4096  # bytes per value

LIMITS = RecordLimits(
    max_keys_per_provider=100,
    max_provider_records=2000,
    max_provider_bytes_per_peer=16 * 1024,
    max_provider_bytes=200 * 1024,
    max_values=300,
    max_values_per_peer=32,
    max_value_bytes_per_peer=64 * 1024,
    max_value_bytes=512 * 1024,
)
# No rate limit in the way: the stores' bounds are under test here.
CFG = DhtConfig(mode=DhtMode.SERVER, records=LIMITS, write_rate=1000.0, write_burst=10_000.0, flush_interval=3600.0)


def provider_key(who: Host, i: int) -> bytes:
    return b"\x12\x20" + hashlib.sha256(b"%s-%d" % (who.peer_id.to_bytes(), i)).digest()


async def flood(attacker: Host, victim: Host) -> int:
    """ADD_PROVIDER then PUT_VALUE (valid records, signed by the attacker)
    on one stream; returns how many puts were answered."""
    conn = await attacker.connect(full_addr(victim))
    await conn.identified.wait()
    stream = await attacker.new_stream(victim.peer_id, [PROTO])
    answered = 0
    async with stream:
        messages = MessageStream(stream, 1 << 20)
        me = KadPeer(attacker.peer_id, tuple(attacker.listen_addrs))
        for i in range(PROVIDES):
            await messages.send(encode_message(KadMessage(MessageType.ADD_PROVIDER, key=provider_key(attacker, i), provider_peers=(me,))))
        for i in range(PUTS):
            key = guts_key(attacker.peer_id, b"flood-%d" % i)
            rec = Record(key, sign_record(attacker.keypair, key, 1, bytes([i % 256]) * VALUE))
            await messages.send(encode_message(KadMessage(MessageType.PUT_VALUE, key=key, record=rec)))
            if await messages.receive() is not None:
                answered += 1
    await attacker.disconnect(victim.peer_id)
    return answered


async def test_floods_from_fresh_identities_stay_within_the_bounds(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_hosts(2 + IDENTITIES) as hosts:
        victim, honest, attackers = hosts[0], hosts[1], hosts[2:]
        store = DhtStore(tmp_path / "dht.sqlite")
        dht = Dht(victim, CFG, store)
        other = Dht(honest, DhtConfig(mode=DhtMode.SERVER, bootstrap=(full_addr(victim),)))
        async with trio.open_nursery() as nursery:
            await nursery.start(dht.run)
            await nursery.start(other.run)
            await other.bootstrap()
            await dht.bootstrap()
            # the node's own records, before the flood
            own_key = guts_key(victim.peer_id, b"mine")
            before = await dht.put_value(own_key, b"my value")
            assert before.stored_at == (honest.peer_id,) and before.stored_locally
            own_provided = b"\x12\x20" + hashlib.sha256(b"my repository").digest()
            await dht.provide(own_provided)
            # a record of an honest peer, put before the flood
            honest_key = guts_key(honest.peer_id, b"honest")
            await other.put_value(honest_key, b"kept")

            answered = 0
            for attacker in attackers:
                answered += await flood(attacker, victim)
            await trio.sleep(1)
            assert answered == IDENTITIES * PUTS  # every put was valid, and answered

            # within the bounds: records and bytes, in total and per peer
            providers, values = dht.providers, dht.values
            print(
                f"after the flood: {len(providers)} provider records ({providers.size} B), "
                f"{len(values)} values ({values.size} B)"
            )
            assert len(providers) <= LIMITS.max_provider_records + 1  # + our own
            assert providers.size <= LIMITS.max_provider_bytes + 64 + PROVIDER_OVERHEAD + 1024
            assert len(values) <= LIMITS.max_values
            assert values.size <= LIMITS.max_value_bytes
            for attacker in attackers:
                assert providers.count_of(attacker.peer_id) <= LIMITS.max_keys_per_provider
                assert values.count_of(attacker.peer_id) <= LIMITS.max_values_per_peer
            # the stores are full, not emptied: the flood churned among its own records
            assert values.size > LIMITS.max_value_bytes // 2 and len(providers) > LIMITS.max_provider_records // 2
            # the node's own records are intact, and so is the honest peer's
            held = values.get(own_key, 0)
            assert held is not None and held.publisher is None
            assert open_record(own_key, held.value, 1024).value == b"my value"
            assert providers.get(own_provided, victim.peer_id) is not None
            assert values.get(honest_key, 0) is not None
            # its own put still works, locally and on the network
            after = await dht.put_value(guts_key(victim.peer_id, b"after"), b"still works")
            assert after.stored_locally and after.stored_at == (honest.peer_id,)
            assert await other.get_value(guts_key(victim.peer_id, b"after")) == b"still works"
            await dht.flush()
            nursery.cancel_scope.cancel()

        # on disk: what the stores hold, no more (a small multiple of the byte bounds)
        size = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("dht.sqlite"))
        print(f"dht.sqlite and its WAL: {size} B")
        assert size <= 4 * (LIMITS.max_value_bytes + LIMITS.max_provider_bytes) + (1 << 20)
        # a restart loads within the bounds, our own records first
        again = Dht(victim, CFG, store)
        assert len(again.values) <= LIMITS.max_values and again.values.size <= LIMITS.max_value_bytes
        assert len(again.providers) <= LIMITS.max_provider_records + 1
        assert again.values.get(own_key, 0) is not None and again.providers.get(own_provided, victim.peer_id) is not None
        store.close()


def test_a_store_a_flood_filled_is_cut_to_the_bounds_on_loading(tmp_path: Path) -> None:
    """A file filled under looser bounds (as before they existed: a flood
    left 966 MiB) costs a full store's load once, and shrinks."""
    from guts.dht.records import ProviderRecord, StoredValue

    from .dht_helpers import hashed_peer

    path = tmp_path / "dht.sqlite"
    store = DhtStore(path)
    publishers = [hashed_peer(i) for i in range(50)]
    values = [
        StoredValue(b"/guts/x/%d" % i, bytes(1024), float(i), 1e12, publishers[i % 50]) for i in range(20_000)
    ]
    own = StoredValue(b"/guts/mine/v", b"mine", 0.0, 1.0, None)  # ours: kept, however old
    providers = [ProviderRecord(provider_key_bytes(i), publishers[i % 50], (), float(i), 1e12) for i in range(20_000)]
    store.save((providers, []), (values + [own], []))
    store.close()
    big = path.stat().st_size
    store = DhtStore(path)
    loaded = store.load_values(100.0, LIMITS)
    others = [v for v in loaded if v.publisher is not None]
    assert loaded[0] == own
    assert len(others) <= LIMITS.max_values and sum(len(v.key) + len(v.value) for v in others) <= LIMITS.max_value_bytes
    assert others[-1].received == 19_999.0  # the newest kept
    kept = store.load_providers(100.0, LIMITS)
    assert len(kept) <= LIMITS.max_provider_records and kept[-1].received == 19_999.0
    # the rows past the bounds are gone, and the file gave back their space
    assert len(store.load_values(100.0, RecordLimits())) == len(loaded)
    store.close()
    print(f"dht.sqlite: {big} B before loading, {path.stat().st_size} B after")
    assert path.stat().st_size < big // 4


def provider_key_bytes(i: int) -> bytes:
    return b"\x12\x20" + hashlib.sha256(b"%d" % i).digest()


async def test_a_put_our_own_store_refuses_says_so(autojump_clock: trio.testing.MockClock) -> None:
    from guts.control.dht import put

    cfg = DhtConfig(mode=DhtMode.SERVER, records=RecordLimits(max_values_per_peer=1))
    async with memory_hosts(2) as (host, other):
        dht = Dht(host, cfg)
        Dht(other, DhtConfig(mode=DhtMode.SERVER))
        conn = await host.connect(full_addr(other))
        await conn.identified.wait()
        assert other.peer_id in dht.table
        first = await put(dht, {"key": "one", "value": "1"})
        assert first["stored_locally"] and first["stored"] == 1 and first["key"] == f"/guts/{host.peer_id}/one"
        second = await put(dht, {"key": "two", "value": "2"})  # past our own bound: refused here, taken there
        assert not second["stored_locally"] and second["stored"] == 1
        assert dht.values.get(guts_key(host.peer_id, b"two"), 0) is None
        again = await put(dht, {"key": "one", "value": "1 again"})  # a new seq of one held is fine
        assert again["stored_locally"] and again["seq"] > first["seq"]
