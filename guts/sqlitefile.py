"""One SQLite file a node keeps in its home: private, versioned, and used
one transaction at a time.

Theory of operation
-------------------
The seed store (:mod:`guts.replicate.seeds`) and the block list
(:mod:`guts.reputation`) keep small tables that must survive a restart.
Each opens its file through :class:`SqliteFile`, which sees to what they
share:

- **Private.** The file is created 0600, or narrowed to 0600 (with a
  warning) if others could read it; it must be a regular file, opened
  without blocking so that a FIFO planted at its path cannot hang the node.
- **Versioned.** ``PRAGMA user_version`` holds the schema's version. A file
  without one gets the schema; a file of a newer version is refused with a
  message that says what to do, rather than misread.
- **One transaction at a time**, under a lock, because the stores are used
  from worker threads too. :meth:`SqliteFile.transaction` begins, commits,
  or rolls back on any error; SQLite's errors become the owner's error
  class, naming the file.

No trio here: the callers decide which thread a transaction runs on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SqliteFile"]

log = logging.getLogger("guts.home")


class SqliteFile:
    """An open SQLite file with its schema in place.

    Args:
        path: the database file, created if missing; ``":memory:"`` for tests.
        schema: the statements that create the tables, ``;``-separated.
        version: the schema's version, kept in ``PRAGMA user_version``.
        error: the exception class raised for every failure.
        what: what the file holds, for messages ("the seed store").

    Raises:
        error: not a regular file, not a database, of a newer schema, or
            not openable.
    """

    def __init__(self, path: Path | str, *, schema: str, version: int, error: type[Exception], what: str) -> None:
        self.path = str(path)
        self.error = error
        self.what = what
        if self.path != ":memory:":
            self._private_file(Path(self.path))
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise error(f"{self.path}: {exc}") from None
        try:
            with self.transaction("BEGIN IMMEDIATE") as db:
                found = db.execute("PRAGMA user_version").fetchone()[0]
                if found > version:
                    raise error(
                        f"{self.path} has schema version {found}, newer than this Guts reads ({version}): "
                        "it was written by a newer Guts; run that one, or move the file away to start afresh"
                    )
                if found < version:
                    for statement in filter(str.strip, schema.split(";")):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            self._db.close()
            raise

    def _private_file(self, path: Path) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise self.error(f"{path}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self.error(f"{path} is not a regular file")
            if os.name == "posix" and info.st_mode & 0o077:
                log.warning("%s was open to others (mode %04o); narrowed to 0600", path, stat.S_IMODE(info.st_mode))
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    @contextmanager
    def transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction under the lock (``begin`` is ``"BEGIN"`` for a
        read, ``"BEGIN IMMEDIATE"`` for a write); rolled back on any error.

        Raises:
            error: SQLite failed, or the file is closed.
        """
        with self._lock:
            if self._closed:
                raise self.error(f"{self.path}: {self.what} is closed")
            db = self._db
            try:
                db.execute(begin)
            except sqlite3.Error as exc:
                raise self.error(f"{self.path}: {exc}") from None
            try:
                yield db
            except BaseException as exc:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already (a failed write does)
                if isinstance(exc, sqlite3.Error):
                    raise self.error(f"{self.path}: {exc}") from None
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self.error(f"{self.path}: {exc}") from None

    def close(self) -> None:
        """Close the file, after the transaction under way (if any); idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
