"""SQLite persistence of the DHT: records, providers, routing-table peers.

The in-memory stores (:mod:`guts.dht.records`) and the routing table are
the truth while the node runs; this file is their copy for the next
start. The DHT writes what changed every few seconds and when it stops,
in one transaction each time, so a request never waits on the disk and a
flood of writes costs one transaction per flush. Rows that do not decode
on load (a damaged file, a format from a future version) are skipped
with a log line, never trusted.

Threads: a write of many records takes SQLite a while (seconds for a few
hundred thousand rows on a slow disk), and on the Trio thread it would
stall every connection of the node meanwhile. So the DHT writes with
:meth:`DhtStore.flush`: it takes the changes on the Trio thread (the
record stores are not shared with threads) in slices, with a checkpoint
between them (taking 100,000 provider records costs a few tenths of a
second), then runs :meth:`DhtStore.save` on a worker thread; one flush at
a time, in order. One lock serializes every use of the connection: a
write is one transaction that nothing else on this connection
interleaves with, and other connections to the file (SQLite's isolation)
see it whole or not at all. :meth:`DhtStore.close` takes the same lock,
so it waits for a write under way and never cuts one short. Loading
stays synchronous: it happens once, when the DHT is built, before it
serves anything, and it is bounded: it reads our own values and then the
newest records of others, newest first (an index on ``received``), only
up to the stores' bounds (:class:`~guts.dht.records.RecordLimits`), and
deletes the rows past them, compacting the file when they were most of
it. A file a flood filled under older, looser bounds is cut down on the
first start and costs no more than a full store afterwards.

Size on disk: the tables hold what the in-memory stores hold (rows of
evicted and expired records are deleted at the next flush, and SQLite
reuses their pages), so the file stays within a small multiple of the
stores' byte bounds.

Stdlib ``sqlite3`` only; the file is ``$GUTS_HOME/dht.sqlite`` by
convention (:meth:`DhtStore.in_home`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from guts.errors import DecodeError
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.dht.records import PROVIDER_OVERHEAD, ProviderRecord, ProviderStore, RecordLimits, StoredValue, ValueStore
from guts.dht.routing_table import RoutingTable
from guts.wire import decode_uvarint, encode_uvarint

__all__ = ["DhtStore", "STORE_FILE"]

log = logging.getLogger("guts.dht.store")

STORE_FILE = "dht.sqlite"
_SCHEMA_VERSION = 1
#: Changes taken from a record store between two checkpoints of the Trio loop.
_SLICE = 2000
#: Free pages (4 KiB each) past which, when they are most of the file, a
#: load compacts it.
_VACUUM_MIN_PAGES = 2048
#: Bytes the write-ahead log is cut back to after a checkpoint.
_WAL_LIMIT = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS providers (
    key BLOB NOT NULL, provider BLOB NOT NULL, addrs BLOB NOT NULL,
    received REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (key, provider)
);
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY, value BLOB NOT NULL,
    received REAL NOT NULL, expires REAL NOT NULL, publisher BLOB
);
CREATE INDEX IF NOT EXISTS providers_received ON providers (received);
CREATE INDEX IF NOT EXISTS records_received ON records (received);
CREATE TABLE IF NOT EXISTS peers (
    peer BLOB PRIMARY KEY, addrs BLOB NOT NULL, last_seen REAL NOT NULL
);
"""


def _pack_addrs(addrs: Iterable[Multiaddr]) -> bytes:
    out = bytearray()
    for addr in addrs:
        raw = addr.to_bytes()
        out += encode_uvarint(len(raw)) + raw
    return bytes(out)


def _unpack_addrs(data: bytes) -> tuple[Multiaddr, ...]:
    addrs = []
    pos = 0
    while pos < len(data):
        length, pos = decode_uvarint(data, pos)
        addrs.append(Multiaddr.from_bytes(data[pos : pos + length]))
        pos += length
    return tuple(addrs)


_R = TypeVar("_R")
_K = TypeVar("_K", bound=Hashable)


class _Changes(Protocol[_R, _K]):
    """A record store that tracks its changes (:mod:`guts.dht.records`)."""

    def pending_changes(self) -> int: ...

    def take_changes(self, limit: int | None = None) -> tuple[list[_R], list[_K]]: ...


async def _take_changes(store: _Changes[_R, _K], key: Callable[[_R], _K]) -> tuple[list[_R], list[_K]]:
    """The changes pending in ``store``, taken a slice at a time with a
    checkpoint after each, so a large backlog does not hold the Trio loop.

    A record changed again between two slices is taken again; the later
    take wins (an upsert then a delete of one row is a delete).
    """
    latest: dict[_K, _R | None] = {}
    for _ in range(-(-store.pending_changes() // _SLICE)):  # what is pending now; later changes wait
        upserts, deletes = store.take_changes(_SLICE)
        for record in upserts:
            latest[key(record)] = record
        for k in deletes:
            latest[k] = None
        await trio.sleep(0)
    return [r for r in latest.values() if r is not None], [k for k, r in latest.items() if r is None]


class DhtStore:
    """One SQLite file holding the DHT's durable state.

    Safe to use from several threads: every method holds one lock while it
    uses the connection (see the module's docstring for why writes leave
    the Trio thread).

    Args:
        path: the database file (created if missing); ``":memory:"`` for tests.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        # Used from worker threads too; the lock below is what makes it safe.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._flushing = trio.Lock()  # flushes land in the order their changes were taken
        self._closed = False
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            # A large flush grows the WAL; cut it back after each checkpoint.
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))

    @classmethod
    def in_home(cls, home: Path) -> DhtStore:
        home.mkdir(parents=True, exist_ok=True)
        return cls(home / STORE_FILE)

    def close(self) -> None:
        """Close the file, after the write under way (if any) is committed.

        Idempotent; the store cannot be used afterwards.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    # -- loading -----------------------------------------------------------

    def _select(self, query: str, args: tuple[float | int, ...]) -> list[tuple[Any, ...]]:
        # All rows at once, under the lock: one consistent read, never
        # interleaved with a write of this connection.
        with self._lock:
            return self._db.execute(query, args).fetchall()

    def load_providers(self, now: float, limits: RecordLimits | None = None) -> list[ProviderRecord]:
        """The live provider records, oldest first: at most what ``limits``
        let the store hold, the newest of them (rows past that are deleted)."""
        lim = limits or RecordLimits()
        out: list[ProviderRecord] = []
        size = 0
        cutoff: tuple[float, int] | None = None
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, key, provider, addrs, received, expires FROM providers WHERE expires > ? ORDER BY received DESC",
                (now,),
            )
            for rowid, key, provider, addrs, received, expires in rows:
                size += len(key) + PROVIDER_OVERHEAD
                if len(out) >= lim.max_provider_records or size > lim.max_provider_bytes:
                    cutoff = (received, rowid)
                    break
                try:
                    out.append(ProviderRecord(bytes(key), PeerId.from_bytes(provider), _unpack_addrs(addrs), received, expires))
                except (DecodeError, TypeError, ValueError) as exc:
                    log.warning("%s: skipping a provider row that does not decode: %s", self.path, exc)
            rows.close()
        self._prune("providers", "expires <= ?" + ("" if cutoff is None else " OR received < ? OR rowid = ?"), now, cutoff)
        out.reverse()
        return out

    def load_values(self, now: float, limits: RecordLimits | None = None) -> list[StoredValue]:
        """Our own values, then the newest live values of others, oldest
        first: at most what ``limits`` let the store hold (rows past that
        are deleted, so a file a flood filled does not slow every start)."""
        lim = limits or RecordLimits()
        own: list[StoredValue] = []
        others: list[StoredValue] = []
        size = 0
        cutoff: tuple[float, int] | None = None
        with self._lock:
            for key, value, received, expires in self._db.execute(
                "SELECT key, value, received, expires FROM records WHERE publisher IS NULL ORDER BY received"
            ).fetchmany(lim.max_values_per_peer):
                own.append(StoredValue(bytes(key), bytes(value), received, expires, None))
            rows = self._db.execute(
                "SELECT rowid, key, value, received, expires, publisher FROM records "
                "WHERE publisher IS NOT NULL AND expires > ? ORDER BY received DESC",
                (now,),
            )
            for rowid, key, value, received, expires, publisher in rows:
                size += len(key) + len(value)
                if len(others) >= lim.max_values or size > lim.max_value_bytes:
                    cutoff = (received, rowid)
                    break
                try:
                    others.append(StoredValue(bytes(key), bytes(value), received, expires, PeerId.from_bytes(publisher)))
                except (DecodeError, TypeError, ValueError) as exc:
                    log.warning("%s: skipping a record row that does not decode: %s", self.path, exc)
            rows.close()
        self._prune(
            "records",
            "publisher IS NOT NULL AND (expires <= ?" + (")" if cutoff is None else " OR received < ? OR rowid = ?)"),
            now,
            cutoff,
        )
        others.reverse()
        return own + others

    def _prune(self, table: str, where: str, now: float, cutoff: tuple[float, int] | None) -> None:
        """Delete the rows a load left out, and give the space back to the
        file system when most of the file is free pages."""
        # The cut: rows older than the first row left out, and that row (rows
        # of its very time that were not read stay for the next load).
        args: tuple[float, ...] = (now,) if cutoff is None else (now, *cutoff)
        with self._lock:
            deleted = self._db.execute(f"DELETE FROM {table} WHERE {where}", args).rowcount
            if deleted and self.path != ":memory:":
                free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
                pages = self._db.execute("PRAGMA page_count").fetchone()[0]
                if free > _VACUUM_MIN_PAGES and free * 2 > pages:
                    log.info("%s: %d rows left out on loading; compacting the file", self.path, deleted)
                    self._db.execute("VACUUM")

    def load_peers(self, limit: int = 5000) -> list[tuple[PeerId, tuple[Multiaddr, ...], float]]:
        out = []
        for peer, addrs, last_seen in self._select(
            "SELECT peer, addrs, last_seen FROM peers ORDER BY last_seen DESC LIMIT ?", (limit,)
        ):
            try:
                out.append((PeerId.from_bytes(peer), _unpack_addrs(addrs), last_seen))
            except (DecodeError, TypeError, ValueError) as exc:
                log.warning("%s: skipping a peer row that does not decode: %s", self.path, exc)
        return out

    # -- saving ------------------------------------------------------------

    def save(
        self,
        providers: tuple[list[ProviderRecord], list[tuple[bytes, PeerId]]] = ([], []),
        values: tuple[list[StoredValue], list[bytes]] = ([], []),
        peers: list[tuple[PeerId, tuple[Multiaddr, ...], float]] | None = None,
    ) -> None:
        """Write changes in one transaction; ``peers``, when given, replaces
        the saved routing table.

        Blocks until SQLite is done: on the Trio thread, use :meth:`flush`.
        """
        with self._lock:
            self._save(providers, values, peers)

    async def flush(self, providers: ProviderStore, values: ValueStore, table: RoutingTable | None = None) -> None:
        """Write what changed in ``providers`` and ``values`` since the last
        flush (and all of ``table``, when given) on a worker thread, so the
        Trio loop runs on meanwhile.

        One flush at a time, in the order called, each one transaction.
        Once changes are taken they exist nowhere else, so the flush is
        shielded from cancellation: it completes, and the cancellation
        takes effect after.
        """
        async with self._flushing:
            with trio.CancelScope(shield=True):
                taken = await _take_changes(providers, lambda r: (r.key, r.provider))
                value_changes = await _take_changes(values, lambda v: v.key)
                peers = None if table is None else [(e.peer_id, e.addrs, e.last_seen) for e in table]
                if any(taken) or any(value_changes) or peers is not None:
                    await trio.to_thread.run_sync(self.save, taken, value_changes, peers)

    def _save(
        self,
        providers: tuple[list[ProviderRecord], list[tuple[bytes, PeerId]]],
        values: tuple[list[StoredValue], list[bytes]],
        peers: list[tuple[PeerId, tuple[Multiaddr, ...], float]] | None,
    ) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            upserts, deletes = providers
            db.executemany(
                "INSERT OR REPLACE INTO providers VALUES (?, ?, ?, ?, ?)",
                [(r.key, r.provider.to_bytes(), _pack_addrs(r.addrs), r.received, r.expires) for r in upserts],
            )
            db.executemany(
                "DELETE FROM providers WHERE key = ? AND provider = ?", [(k, p.to_bytes()) for k, p in deletes]
            )
            value_upserts, value_deletes = values
            db.executemany(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)",
                [
                    (v.key, v.value, v.received, v.expires, v.publisher.to_bytes() if v.publisher else None)
                    for v in value_upserts
                ],
            )
            db.executemany("DELETE FROM records WHERE key = ?", [(k,) for k in value_deletes])
            if peers is not None:
                db.execute("DELETE FROM peers")
                db.executemany(
                    "INSERT OR REPLACE INTO peers VALUES (?, ?, ?)",
                    [(p.to_bytes(), _pack_addrs(a), seen) for p, a, seen in peers],
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
