"""SQLite persistence: records, providers and routing-table peers survive a restart."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import trio
import trio.testing

from guts.dht import Dht, DhtConfig, DhtMode, DhtStore
from guts.dht.records import ProviderRecord, StoredValue
from guts.multiaddr import Multiaddr

from .dht_helpers import peer
from .helpers import full_addr, memory_hosts

ADDR = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")


def test_store_round_trip(tmp_path: Path) -> None:
    store = DhtStore(tmp_path / "dht.sqlite")
    rec = ProviderRecord(b"k", peer(1), (ADDR,), 10.0, 1000.0)
    val = StoredValue(b"/guts/a", b"v", 10.0, 1000.0, peer(2))
    own = StoredValue(b"/guts/mine", b"m", 10.0, 20.0, None)
    store.save(([rec], []), ([val, own], []), [(peer(3), (ADDR,), 5.0)])
    store.close()
    store = DhtStore(tmp_path / "dht.sqlite")
    assert store.load_providers(now=50) == [rec]
    assert store.load_values(now=50) == [val, own]
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
            await first.put_value(b"/guts/name", b"value")
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
        assert again.values.get(b"/guts/name", 0).value == b"value"
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
