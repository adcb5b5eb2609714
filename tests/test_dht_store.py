"""SQLite persistence: records, providers and routing-table peers survive a restart."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import trio
import trio.testing

from guts.dht import Dht, DhtConfig, DhtMode, DhtStore
from guts.dht.records import ProviderRecord, StoredValue
from guts.dht.signed import guts_key, open_record
from guts.multiaddr import Multiaddr

from .dht_helpers import peer
from .dht_signed_helpers import gkey, signed
from .helpers import full_addr, memory_hosts

ADDR = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")


def test_store_round_trip(tmp_path: Path) -> None:
    store = DhtStore(tmp_path / "dht.sqlite")
    rec = ProviderRecord(b"k", peer(1), (ADDR,), 10.0, 1000.0)
    val = StoredValue(b"/guts/a", b"v", 10.0, 1000.0, peer(2))
    own = StoredValue(b"/guts/mine", b"m", 12.0, 20.0, None)
    store.save(([rec], []), ([val, own], []), [(peer(3), (ADDR,), 5.0)])
    store.close()
    store = DhtStore(tmp_path / "dht.sqlite")
    assert store.load_providers(now=50) == [rec]
    assert store.load_values(now=50) == [own, val]  # ours first
    assert store.load_values(now=5000) == [own]  # ours do not expire; others' do
    assert store.load_providers(now=5000) == []
    assert store.load_peers() == [(peer(3), (ADDR,), 5.0)]
    store.save(([], [(b"k", peer(1))]), ([], [b"/guts/a"]), [])
    assert store.load_providers(now=50) == [] and store.load_values(now=50) == [own] and store.load_peers() == []
    store.close()


def test_damaged_rows_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "dht.sqlite"
    DhtStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO peers VALUES (?, ?, ?)", (b"\x99garbage", b"", 1.0))
    db.execute("INSERT INTO providers VALUES (?, ?, ?, ?, ?)", (b"k", peer(1).to_bytes(), b"\x05\xff", 1.0, 9e9))
    db.commit()
    db.close()
    store = DhtStore(path)
    assert store.load_peers() == [] and store.load_providers(0) == []
    store.close()


async def test_state_survives_a_restart(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    home = tmp_path / "home"
    key = b"\x12\x20" + hashlib.sha256(b"repo").digest()
    async with memory_hosts(3) as hosts:
        cfg = DhtConfig(mode=DhtMode.SERVER)
        store = DhtStore.in_home(home)
        first = Dht(hosts[0], DhtConfig(mode=DhtMode.SERVER, bootstrap=(full_addr(hosts[1]),)), store)
        others = [Dht(hosts[1], cfg), Dht(hosts[2], DhtConfig(mode=DhtMode.SERVER, bootstrap=(full_addr(hosts[1]),)))]
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            for d in others:
                await nursery.start(d.run)
            await others[1].bootstrap()
            await first.bootstrap()
            assert len(first.table) == 2
            await first.provide(key)
            await first.put_value(guts_key(hosts[0].peer_id, b"name"), b"value")
            # a provider record and a value from another peer land here too
            await others[0].provide(b"\x12\x20" + bytes(32))
            nursery.cancel_scope.cancel()
        store.close()
        peers_before = set(first.table.peers())
        # a new Dht over the same home: same records, same known peers, no bootstrap needed
        store = DhtStore.in_home(home)
        again = Dht(hosts[0], DhtConfig(mode=DhtMode.SERVER), store)
        assert set(again.table.peers()) == peers_before
        assert again.providers.get(key, hosts[0].peer_id) is not None
        kept = again.values.get(guts_key(hosts[0].peer_id, b"name"), 0)
        assert open_record(kept.key, kept.value, 1024).value == b"value" and kept.publisher is None
        assert again.providers.get(b"\x12\x20" + bytes(32), hosts[1].peer_id) is not None
        store.close()
    assert (home / "dht.sqlite").exists()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guts.dht._store import _pack_addrs, _unpack_addrs  # noqa: E402
from guts.errors import DecodeError  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_stored_addresses_decode_or_give_a_typed_error(data: bytes) -> None:
    try:
        _unpack_addrs(data)
    except DecodeError:
        pass


def test_stored_addresses_round_trip() -> None:
    addrs = (ADDR, Multiaddr.parse("/ip6/::1/tcp/1/ws"), Multiaddr.parse("/memory/7"))
    assert _unpack_addrs(_pack_addrs(addrs)) == addrs


# -- writes off the Trio thread ---------------------------------------------------

import gc  # noqa: E402
import time  # noqa: E402

from guts.dht.records import ProviderStore, RecordLimits, ValueStore  # noqa: E402

from .dht_helpers import hashed_peer  # noqa: E402


class AnyValue:
    """A validator for ``/t/``: any value; the first wins (cheap, for big stores)."""

    def validate(self, key: bytes, value: bytes) -> None:
        pass

    def select(self, key: bytes, values: object) -> int:
        return 0


def big_limits(providers: int, values: int) -> RecordLimits:
    return RecordLimits(
        max_provider_records=providers, max_keys_per_provider=providers, max_values=values, max_values_per_peer=values,
        max_provider_bytes=1 << 30, max_provider_bytes_per_peer=1 << 30,
        max_value_bytes=1 << 30, max_value_bytes_per_peer=1 << 30,
    )


def filled_stores(providers: int, values: int) -> tuple[ProviderStore, ValueStore]:
    limits = big_limits(providers, values)
    provider_store, value_store = ProviderStore(limits), ValueStore({"t": AnyValue()}, limits)
    publishers = [hashed_peer(i) for i in range(50)]
    for i in range(providers):
        provider_store.add(hashlib.sha256(b"%d" % i).digest(), publishers[i % 50], (ADDR,), 1e9)
    for i in range(values):
        value_store.put(b"/t/%d" % i, b"v" * 100, 1e9, publishers[i % 50])
    return provider_store, value_store


async def test_a_large_flush_leaves_the_trio_loop_responsive(tmp_path: Path) -> None:
    """100,000 records written while a 10 ms sleep loop runs: the loop is
    never held for long, though the flush takes far longer (written on the
    Trio thread, the loop waited for the whole write, 0.6 s or more, and
    so did every connection of the node)."""
    providers, values = filled_stores(60_000, 40_000)
    store = DhtStore(tmp_path / "dht.sqlite")
    # The records made above are the node's heap, not the flush's doing:
    # move them out of the cyclic collector's way, so its full passes over
    # them do not count against the flush.
    gc.collect()
    gc.freeze()
    gaps: list[float] = []

    async def ticker(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        last = time.perf_counter()
        while True:
            await trio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last - 0.01)
            last = now

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(ticker)
            start = time.perf_counter()
            await store.flush(providers, values)
            took = time.perf_counter() - start
            nursery.cancel_scope.cancel()
    finally:
        gc.unfreeze()
    print(f"flush of 100,000 records: {took:.2f} s; the loop waited at most {max(gaps) * 1000:.0f} ms ({len(gaps)} ticks)")
    assert max(gaps) < 0.2
    assert len(gaps) >= took / 0.05  # the loop kept turning all along
    # the flush is complete: one transaction, every record in it
    assert providers.pending_changes() == values.pending_changes() == 0
    limits = big_limits(60_000, 40_000)
    assert len(store.load_providers(0, limits)) == 60_000 and len(store.load_values(0, limits)) == 40_000
    store.close()


async def test_flushes_land_in_order_and_close_waits_for_the_last(tmp_path: Path) -> None:
    providers, values = ProviderStore(), ValueStore()
    store = DhtStore(tmp_path / "dht.sqlite")
    async with trio.open_nursery() as nursery:
        values.put(*signed(b"a", b"1", 1), 0, None)
        nursery.start_soon(store.flush, providers, values)
        while values.pending_changes():
            await trio.sleep(0)  # until the first flush has taken its changes
        values.put(*signed(b"a", b"2", 2), 0, None)
        values.put(*signed(b"b", b"x", 1), 0, None)
        nursery.start_soon(store.flush, providers, values)
        await trio.sleep(0)
        values.put(*signed(b"b", b"y", 2), 0, None)
        values._drop(gkey(b"b"))  # deleted after it was put: the delete wins
        nursery.start_soon(store.flush, providers, values)
    store.close()
    store = DhtStore(tmp_path / "dht.sqlite")
    assert [(v.key, v.value) for v in store.load_values(0)] == [signed(b"a", b"2", 2)]
    store.close()


async def test_a_flush_cancelled_midway_still_writes_all_it_took(tmp_path: Path) -> None:
    providers, values = filled_stores(10_000, 0)
    store = DhtStore(tmp_path / "dht.sqlite")
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.flush(providers, values)  # cancelled before it starts: takes nothing
    assert providers.pending_changes() == 10_000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.flush, providers, values)
        while providers.pending_changes() == 10_000:
            await trio.sleep(0)
        nursery.cancel_scope.cancel()  # midway: it has taken a slice of its changes
    assert providers.pending_changes() == 0
    store.close()  # waits for a write under way; here there is none left
    store = DhtStore(tmp_path / "dht.sqlite")
    assert len(store.load_providers(0)) == 10_000
    store.close()
    store.close()  # closing twice is fine
