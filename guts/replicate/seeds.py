"""The person's seeding choices, kept across restarts: the repositories
seeded (each with its :class:`~guts.replicate.policy.SeedScope`), those
unseeded, the blocked repositories and the blocked peers.

One SQLite file, ``$GUTS_HOME/seeds.sqlite`` by convention
(:meth:`SeedStore.in_home`), stdlib ``sqlite3``:

- **Private.** The file is created mode 0600 before SQLite opens it (its
  journal inherits the mode), and an existing file readable by others is
  narrowed to 0600: what a node seeds and blocks says what its person
  reads and whom they avoid.
- **Bounded.** Each table holds at most ``max_rows`` rows; one more is
  refused with :class:`SeedStoreFull` (changing the scope of a repository
  already seeded, or blocking what is blocked, adds no row and is always
  allowed).
- **Versioned.** ``PRAGMA user_version`` holds the schema version
  (:data:`SCHEMA_VERSION`). A new file gets it; a file of a newer version
  is refused with :class:`SeedStoreError` (an older Guts must not guess at
  a newer one's rows); a row that does not decode (a damaged file) is
  skipped with a log line, never trusted.
- **Atomic.** Every change is one transaction (the row count checked and
  the row written together), and :meth:`SeedStore.load` reads the four
  tables in one read transaction, so a reader never sees half a change.

Threads: the API is synchronous, like :class:`guts.dht.DhtStore`, and
safe to call from several threads (one lock serializes the connection).
The node loads the store once at start, synchronously, before it serves
anything (a few thousand rows, milliseconds). A change commits with an
fsync, a few milliseconds on a good disk and unbounded on a busy one, so
the node makes changes off the Trio thread::

    await trio.to_thread.run_sync(store.seed, rid, SeedScope.ALL)

then hands the policy the new choices
(:meth:`guts.replicate.policy.SeedingPolicy.update` with :meth:`SeedStore.load`).
The file itself (private, versioned, one transaction at a time) is a
:class:`~guts.sqlitefile.SqliteFile`. This module itself imports no trio.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from guts.errors import DecodeError, GutsError
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.replicate.policy import Seeds, SeedScope
from guts.sqlitefile import SqliteFile

__all__ = ["MAX_ROWS", "SCHEMA_VERSION", "SEEDS_FILE", "SeedStore", "SeedStoreError", "SeedStoreFull"]

log = logging.getLogger("guts.replicate.seeds")

#: The file's name in ``GUTS_HOME``.
SEEDS_FILE = "seeds.sqlite"
#: The schema this module writes and reads (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: Rows per table by default: far more than a person chooses by hand, and
#: ten times the default ``seed_max_repositories``; a full table is a
#: script gone wrong, not a use.
MAX_ROWS = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seeds (rid BLOB PRIMARY KEY, scope TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocked_rids (rid BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS blocked_peers (peer BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS unseeded (rid BLOB PRIMARY KEY);
"""

_T = TypeVar("_T")


class SeedStoreError(GutsError):
    """The seed store cannot be used: a file of a newer schema, not a
    database, or an error of SQLite (the message names the file)."""


class SeedStoreFull(SeedStoreError):
    """A table of the seed store holds ``limit`` rows already; nothing was
    changed.

    Attributes:
        table: ``seeds``, ``blocked_rids`` or ``blocked_peers``.
        limit: its row limit.
    """

    def __init__(self, message: str, table: str, limit: int) -> None:
        super().__init__(message)
        self.table = table
        self.limit = limit


class SeedStore:
    """The seeded repositories and the block lists, in one SQLite file.

    Args:
        path: the database file, created if missing; ``":memory:"`` for tests.
        max_rows: the most rows of each table.

    Raises:
        SeedStoreError: the file is of a newer schema, is not a database,
            or cannot be opened.
    """

    def __init__(self, path: Path | str, *, max_rows: int = MAX_ROWS) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = str(path)
        self.max_rows = max_rows
        # used from worker threads too: the file's lock makes it safe
        self._file = SqliteFile(path, schema=_SCHEMA, version=SCHEMA_VERSION, error=SeedStoreError, what="the seed store")

    @classmethod
    def in_home(cls, home: Path, *, max_rows: int = MAX_ROWS) -> SeedStore:
        """The store of the node whose directory is ``home``."""
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(home / SEEDS_FILE, max_rows=max_rows)

    def close(self) -> None:
        """Close the file, after the change under way (if any) is committed.

        Idempotent; the store cannot be used afterwards.
        """
        self._file.close()

    def __enter__(self) -> SeedStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- repositories seeded -----------------------------------------------

    def seed(self, rid: Rid, scope: SeedScope = SeedScope.DELEGATES) -> SeedScope | None:
        """Seed ``rid`` with ``scope``, or change its scope.

        Returns:
            The scope it had, or ``None`` if it was not seeded.

        Raises:
            SeedStoreFull: it was not seeded and ``max_rows`` are.
        """
        key = rid.multihash
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            db.execute("DELETE FROM unseeded WHERE rid = ?", (key,))
            row = db.execute("SELECT scope FROM seeds WHERE rid = ?", (key,)).fetchone()
            if row is None:
                self._check_room(db, "seeds")
                db.execute("INSERT INTO seeds (rid, scope) VALUES (?, ?)", (key, scope.value))
                return None
            db.execute("UPDATE seeds SET scope = ? WHERE rid = ?", (scope.value, key))
        try:
            return SeedScope(row[0])
        except ValueError:
            return None  # a damaged row, now repaired

    def unseed(self, rid: Rid) -> bool:
        """Stop seeding ``rid``, and remember it so that holding it does
        not seed it again; whether it was seeded explicitly.

        Raises:
            SeedStoreFull: it was not unseeded before and ``max_rows`` are.
        """
        key = rid.multihash
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            seeded = db.execute("DELETE FROM seeds WHERE rid = ?", (key,)).rowcount > 0
            if db.execute("SELECT 1 FROM unseeded WHERE rid = ?", (key,)).fetchone() is None:
                self._check_room(db, "unseeded")
                db.execute("INSERT INTO unseeded (rid) VALUES (?)", (key,))
            return seeded

    def unseeded(self) -> list[Rid]:
        """The repositories unseeded, in the order unseeded."""
        return self._read(self._unseeded)

    def is_seeded(self, rid: Rid) -> bool:
        found = self._read(lambda db: db.execute("SELECT 1 FROM seeds WHERE rid = ?", (rid.multihash,)).fetchone())
        return found is not None

    def seeded(self) -> dict[Rid, SeedScope]:
        """The repositories seeded, in the order first seeded."""
        return self._read(self._seeded)

    # -- block lists ---------------------------------------------------------

    def block_rid(self, rid: Rid) -> bool:
        """Never seed ``rid``; whether it was not blocked before.

        Raises:
            SeedStoreFull: it was not blocked and ``max_rows`` RIDs are.
        """
        return self._insert("blocked_rids", "rid", rid.multihash)

    def unblock_rid(self, rid: Rid) -> bool:
        """Take ``rid`` off the block list; whether it was on it."""
        return self._delete("blocked_rids", "rid", rid.multihash)

    def blocked_rids(self) -> list[Rid]:
        """The blocked repositories, in the order blocked."""
        return self._read(self._blocked_rids)

    def block_peer(self, peer: PeerId) -> bool:
        """Never replicate ``peer``'s namespaces; whether it was not blocked before.

        Raises:
            SeedStoreFull: it was not blocked and ``max_rows`` peers are.
        """
        return self._insert("blocked_peers", "peer", peer.to_bytes())

    def unblock_peer(self, peer: PeerId) -> bool:
        """Take ``peer`` off the block list; whether it was on it."""
        return self._delete("blocked_peers", "peer", peer.to_bytes())

    def blocked_peers(self) -> list[PeerId]:
        """The blocked peers, in the order blocked."""
        return self._read(self._blocked_peers)

    def load(self) -> Seeds:
        """Everything, read in one transaction, for
        :class:`~guts.replicate.policy.SeedingPolicy`."""

        def read(db: sqlite3.Connection) -> Seeds:
            return Seeds(
                self._seeded(db),
                frozenset(self._blocked_rids(db)),
                frozenset(self._blocked_peers(db)),
                frozenset(self._unseeded(db)),
            )

        return self._read(read)

    # -- internals -----------------------------------------------------------

    def _read(self, read: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._file.transaction("BEGIN") as db:
            return read(db)

    def _check_room(self, db: sqlite3.Connection, table: str) -> None:
        (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        if count >= self.max_rows:
            raise SeedStoreFull(f"{self.path}: {table} holds {count} rows, its limit", table, self.max_rows)

    def _insert(self, table: str, column: str, key: bytes) -> bool:
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            if db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (key,)).fetchone() is not None:
                return False
            self._check_room(db, table)
            db.execute(f"INSERT INTO {table} ({column}) VALUES (?)", (key,))
            return True

    def _delete(self, table: str, column: str, key: bytes) -> bool:
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            return db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,)).rowcount > 0

    def _rows(self, db: sqlite3.Connection, query: str, decode: Callable[..., _T], what: str) -> list[_T]:
        out = []
        for row in db.execute(query):
            try:
                out.append(decode(*row))
            except (DecodeError, TypeError, ValueError) as exc:
                log.warning("%s: skipping a %s row that does not decode: %s", self.path, what, exc)
        return out

    def _seeded(self, db: sqlite3.Connection) -> dict[Rid, SeedScope]:
        def decode(rid: Any, scope: Any) -> tuple[Rid, SeedScope]:
            return Rid(bytes(rid)), SeedScope(scope)

        return dict(self._rows(db, "SELECT rid, scope FROM seeds ORDER BY rowid", decode, "seed"))

    def _blocked_rids(self, db: sqlite3.Connection) -> list[Rid]:
        return self._rows(db, "SELECT rid FROM blocked_rids ORDER BY rowid", lambda rid: Rid(bytes(rid)), "blocked RID")

    def _unseeded(self, db: sqlite3.Connection) -> list[Rid]:
        return self._rows(db, "SELECT rid FROM unseeded ORDER BY rowid", lambda rid: Rid(bytes(rid)), "unseeded RID")

    def _blocked_peers(self, db: sqlite3.Connection) -> list[PeerId]:
        query = "SELECT peer FROM blocked_peers ORDER BY rowid"
        return self._rows(db, query, lambda peer: PeerId.from_bytes(bytes(peer)), "blocked peer")
