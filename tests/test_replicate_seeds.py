"""The seed store: round trip, restart, bounds, permissions, schema check,
damaged rows, and its answers feeding the policy."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from guts.errors import GutsError
from guts.repo.rid import Rid
from guts.replicate.policy import SeedingPolicy, SeedReason, Seeds, SeedScope
from guts.replicate.seeds import SCHEMA_VERSION, SEEDS_FILE, SeedStore, SeedStoreError, SeedStoreFull

from .dht_helpers import hashed_peer as peer


def rid(n: int) -> Rid:
    return Rid.of_genesis(b"repository %d" % n)


def test_round_trip(tmp_path: Path) -> None:
    with SeedStore.in_home(tmp_path) as store:
        assert store.seed(rid(1), SeedScope.ALL) is None
        assert store.seed(rid(2)) is None  # delegates by default
        assert store.seed(rid(1), SeedScope.DELEGATES) is SeedScope.ALL  # a change of scope
        assert store.is_seeded(rid(1)) and not store.is_seeded(rid(3))
        assert store.seeded() == {rid(1): SeedScope.DELEGATES, rid(2): SeedScope.DELEGATES}
        assert store.unseed(rid(1)) and not store.unseed(rid(1))
        assert list(store.seeded()) == [rid(2)]
        assert store.unseed(rid(3)) is False  # never seeded: remembered as unseeded all the same
        assert store.unseeded() == [rid(1), rid(3)]
        assert store.seed(rid(3)) is None and store.unseeded() == [rid(1)]  # seeding takes it back
        assert store.unseed(rid(3)) and store.unseeded() == [rid(1), rid(3)]

        assert store.block_rid(rid(5)) and store.block_rid(rid(4)) and not store.block_rid(rid(5))
        assert store.blocked_rids() == [rid(5), rid(4)]  # in the order blocked
        assert store.unblock_rid(rid(5)) and not store.unblock_rid(rid(5))
        assert store.blocked_rids() == [rid(4)]

        assert store.block_peer(peer(1)) and store.block_peer(peer(2)) and not store.block_peer(peer(1))
        assert store.blocked_peers() == [peer(1), peer(2)]
        assert store.unblock_peer(peer(1)) and not store.unblock_peer(peer(1))
        assert store.load() == Seeds(
            {rid(2): SeedScope.DELEGATES}, frozenset({rid(4)}), frozenset({peer(2)}), frozenset({rid(1), rid(3)})
        )
    assert (tmp_path / SEEDS_FILE).is_file()


def test_order_is_the_order_first_seeded(tmp_path: Path) -> None:
    with SeedStore(tmp_path / "s.sqlite") as store:
        for n in (3, 1, 2):
            store.seed(rid(n))
        store.seed(rid(3), SeedScope.ALL)  # a change of scope keeps the place
        assert list(store.seeded()) == [rid(3), rid(1), rid(2)]


def test_choices_survive_a_restart(tmp_path: Path) -> None:
    store = SeedStore.in_home(tmp_path)
    store.seed(rid(1), SeedScope.ALL)
    store.block_rid(rid(2))
    store.block_peer(peer(3))
    store.close()
    store.close()  # idempotent
    with SeedStore.in_home(tmp_path) as again:
        assert again.load() == Seeds({rid(1): SeedScope.ALL}, frozenset({rid(2)}), frozenset({peer(3)}))


def test_two_handles_on_one_file_see_each_others_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SeedStore(path) as first, SeedStore(path) as second:
        first.seed(rid(1))
        assert second.is_seeded(rid(1))
        second.block_peer(peer(1))
        assert first.load().blocked_peers == {peer(1)}


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "s.sqlite")
    store.close()
    with pytest.raises(SeedStoreError, match="closed"):
        store.seed(rid(1))


def test_each_table_is_bounded(tmp_path: Path) -> None:
    with SeedStore(tmp_path / "s.sqlite", max_rows=2) as store:
        store.seed(rid(1))
        store.seed(rid(2))
        with pytest.raises(SeedStoreFull) as info:
            store.seed(rid(3))
        assert (info.value.table, info.value.limit) == ("seeds", 2)
        assert "seeds holds 2 rows" in str(info.value) and isinstance(info.value, GutsError)
        assert store.seed(rid(2), SeedScope.ALL) is SeedScope.DELEGATES  # no new row: allowed when full
        assert list(store.seeded()) == [rid(1), rid(2)]  # nothing changed by the refusal

        store.block_rid(rid(1))
        store.block_rid(rid(2))
        assert not store.block_rid(rid(2))  # already there: allowed when full
        with pytest.raises(SeedStoreFull) as info:
            store.block_rid(rid(3))
        assert info.value.table == "blocked_rids"

        store.block_peer(peer(1))
        store.block_peer(peer(2))
        with pytest.raises(SeedStoreFull) as info:
            store.block_peer(peer(3))
        assert info.value.table == "blocked_peers"

        store.unseed(rid(1))  # room again
        assert store.seed(rid(3)) is None
    with pytest.raises(ValueError):
        SeedStore(":memory:", max_rows=0)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_the_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        SeedStore.in_home(tmp_path / "home").close()
    finally:
        os.umask(old)
    path = tmp_path / "home" / SEEDS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_an_open_file_is_narrowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    SeedStore(path).close()
    path.chmod(0o644)
    with SeedStore(path) as store:
        store.seed(rid(1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "narrowed to 0600" in caplog.text


def test_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(SeedStoreError, match="dir: Is a directory"):
        SeedStore(tmp_path / "dir")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(SeedStoreError, match="fifo is not a regular file"):
            SeedStore(tmp_path / "fifo")


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not SQLite at all, just some text long enough to have a header" * 20)
    with pytest.raises(SeedStoreError, match=str(path)):
        SeedStore(path)


def test_a_missing_directory_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SeedStoreError, match="nowhere"):
        SeedStore(tmp_path / "nowhere" / "s.sqlite")


def test_the_schema_version_is_written(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SeedStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    db.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SeedStore(path) as store:
        store.seed(rid(1))
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with pytest.raises(SeedStoreError) as info:
        SeedStore(path)
    message = str(info.value)
    assert str(path) in message and "schema version 2, newer than this Guts reads (1)" in message
    db = sqlite3.connect(path)  # left as it was
    assert db.execute("SELECT count(*) FROM seeds").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_damaged_rows_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    with SeedStore(path) as store:
        store.seed(rid(1), SeedScope.ALL)
        store.block_rid(rid(2))
        store.block_peer(peer(3))
    db = sqlite3.connect(path)
    db.execute("INSERT INTO seeds VALUES (?, ?)", (b"\x99garbage", "all"))
    db.execute("INSERT INTO seeds VALUES (?, ?)", (rid(7).multihash, "everyone"))
    db.execute("INSERT INTO blocked_rids VALUES (?)", ("text",))
    db.execute("INSERT INTO blocked_peers VALUES (?)", (b"\x05\xff",))
    db.commit()
    db.close()
    with SeedStore(path) as store:
        assert store.load() == Seeds({rid(1): SeedScope.ALL}, frozenset({rid(2)}), frozenset({peer(3)}))
        assert store.seed(rid(7), SeedScope.DELEGATES) is None  # the damaged row is repaired
        assert store.seeded()[rid(7)] is SeedScope.DELEGATES
    assert caplog.text.count("does not decode") >= 4


def test_memory_store(tmp_path: Path) -> None:
    with SeedStore(":memory:") as store:
        store.seed(rid(1))
        assert store.is_seeded(rid(1))
    assert list(tmp_path.iterdir()) == []


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "s.sqlite", max_rows=150)
    errors: list[BaseException] = []

    def work(start: int) -> None:
        try:
            for n in range(start, start + 50):
                store.seed(rid(n))
                store.block_peer(peer(n))
        except SeedStoreFull:
            pass
        except BaseException as exc:  # pragma: no cover - the failure is reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i * 50,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seeds = store.load()
    assert len(seeds.scopes) == len(seeds.blocked_peers) == 150  # the bound holds across threads
    store.close()


def test_the_store_feeds_the_policy(tmp_path: Path) -> None:
    with SeedStore.in_home(tmp_path) as store:
        store.seed(rid(1), SeedScope.ALL)
        store.block_rid(rid(2))
        policy = SeedingPolicy(seeds=store.load())
        assert policy.should_seed(rid(1), held=False, storage_bytes=0, seeded_count=0).reason is SeedReason.SEEDED
        assert policy.should_seed(rid(2), held=True, storage_bytes=0, seeded_count=0).reason is SeedReason.BLOCKED
        store.unblock_rid(rid(2))
        policy.update(store.load())
        assert policy.should_seed(rid(2), held=True, storage_bytes=0, seeded_count=0).reason is SeedReason.HELD
