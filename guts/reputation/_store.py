"""The block list, kept across restarts: ``$GUTS_HOME/blocks.sqlite``.

Theory of operation
-------------------
One row per block (:class:`~guts.reputation.Block`): the target (a peer
id's bytes, or a network's text), the reason, when it was set, when it
expires (``NULL``: never), the offence count, and whether it was set by
hand. The node loads every row at start (:meth:`BlockStore.load`, after
:meth:`BlockStore.purge` forgot what expired long ago) and writes each
change as it happens, one row at a time.

- **Private.** The file is created mode 0600 before SQLite opens it, and
  an existing file others may read is narrowed to 0600: whom a node
  blocks is its person's business.
- **Bounded.** At most ``max_rows`` rows. A new row beyond them first
  pushes out the automatic block that expires soonest; when every row is a
  block set by hand, it is refused with :class:`BlockStoreFull`.
- **Versioned.** ``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; a
  file of a newer version is refused with :class:`BlockStoreError`, and a
  row that does not decode is skipped with a log line, never trusted.
- **Atomic.** Each change is one transaction; one lock serializes the
  connection, so the API may be called from worker threads
  (``trio.to_thread.run_sync``), which is how the node calls it: a commit
  waits for an fsync.

The file itself (private, versioned, one transaction at a time) is a
:class:`~guts.sqlitefile.SqliteFile`. This module imports no trio.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from guts.errors import DecodeError, GutsError
from guts.peer import PeerId
from guts.reputation._core import MAX_REASON, Block, Target
from guts.sqlitefile import SqliteFile

__all__ = ["BLOCKS_FILE", "MAX_BLOCK_ROWS", "SCHEMA_VERSION", "BlockStore", "BlockStoreError", "BlockStoreFull"]

log = logging.getLogger("guts.reputation")

#: The file's name in ``GUTS_HOME``.
BLOCKS_FILE = "blocks.sqlite"
#: The schema this module writes and reads.
SCHEMA_VERSION = 1
#: Rows by default: as many as :class:`~guts.reputation.ReputationConfig` keeps.
MAX_BLOCK_ROWS = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    kind TEXT NOT NULL,
    target BLOB NOT NULL,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    expires REAL,
    offences INTEGER NOT NULL,
    manual INTEGER NOT NULL,
    PRIMARY KEY (kind, target)
)
"""

class BlockStoreError(GutsError):
    """The block store cannot be used (the message names the file)."""


class BlockStoreFull(BlockStoreError):
    """Every row of the block store is a block set by hand, and there are
    ``max_rows``; nothing was changed."""


def _key(target: Target) -> tuple[str, bytes]:
    if isinstance(target, PeerId):
        return "peer", target.to_bytes()
    return "net", str(target).encode()


def _decode(kind: Any, target: Any, reason: Any, since: Any, expires: Any, offences: Any, manual: Any) -> Block:
    parsed: Target
    if kind == "peer":
        parsed = PeerId.from_bytes(bytes(target))
    elif kind == "net":
        parsed = ipaddress.ip_network(bytes(target).decode(), strict=True)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValueError("reason is not a short text")
    if not isinstance(offences, int) or offences < 1:
        raise ValueError("offences is not a positive integer")
    return Block(
        parsed, reason, float(since), None if expires is None else float(expires), offences=offences,
        manual=bool(manual),
    )  # fmt: skip


class BlockStore:
    """The blocks in one SQLite file (module docstring).

    Args:
        path: the database file, created if missing; ``":memory:"`` for tests.
        max_rows: the most rows kept.

    Raises:
        BlockStoreError: a newer schema, not a database, or not openable.
    """

    def __init__(self, path: Path | str, *, max_rows: int = MAX_BLOCK_ROWS) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = str(path)
        self.max_rows = max_rows
        self._file = SqliteFile(path, schema=_SCHEMA, version=SCHEMA_VERSION, error=BlockStoreError, what="the block store")

    @classmethod
    def in_home(cls, home: Path, *, max_rows: int = MAX_BLOCK_ROWS) -> BlockStore:
        """The store of the node whose directory is ``home``."""
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(home / BLOCKS_FILE, max_rows=max_rows)

    def close(self) -> None:
        """Close the file; idempotent."""
        self._file.close()

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def save(self, block: Block) -> None:
        """Write ``block``, replacing the row of its target.

        Raises:
            BlockStoreFull: a new row, ``max_rows`` rows, all set by hand.
        """
        kind, key = _key(block.target)
        row = (kind, key, block.reason, block.since, block.expires, block.offences, int(block.manual))
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            exists = db.execute("SELECT 1 FROM blocks WHERE kind = ? AND target = ?", (kind, key)).fetchone()
            if exists is None:
                (count,) = db.execute("SELECT count(*) FROM blocks").fetchone()
                if count >= self.max_rows:
                    victim = db.execute(
                        "SELECT rowid FROM blocks WHERE manual = 0 ORDER BY expires LIMIT 1"
                    ).fetchone()
                    if victim is None:
                        raise BlockStoreFull(f"{self.path}: {count} blocks set by hand, its limit")
                    db.execute("DELETE FROM blocks WHERE rowid = ?", victim)
            db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def delete(self, target: Target) -> bool:
        """Remove the row of ``target``; whether there was one."""
        kind, key = _key(target)
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            return db.execute("DELETE FROM blocks WHERE kind = ? AND target = ?", (kind, key)).rowcount > 0

    def purge(self, before: float) -> int:
        """Remove the blocks that expired before ``before``; how many."""
        with self._file.transaction("BEGIN IMMEDIATE") as db:
            return db.execute("DELETE FROM blocks WHERE expires IS NOT NULL AND expires < ?", (before,)).rowcount

    def load(self) -> list[Block]:
        """Every block, oldest first; rows that do not decode are skipped."""

        def read(db: sqlite3.Connection) -> list[Block]:
            out = []
            for row in db.execute("SELECT * FROM blocks ORDER BY since, rowid"):
                try:
                    out.append(_decode(*row))
                except (DecodeError, TypeError, ValueError, UnicodeDecodeError) as exc:
                    log.warning("%s: skipping a block that does not decode: %s", self.path, exc)
            return out

        with self._file.transaction("BEGIN") as db:
            return read(db)

    def __len__(self) -> int:
        with self._file.transaction("BEGIN") as db:
            count: int = db.execute("SELECT count(*) FROM blocks").fetchone()[0]
            return count

