"""SQLite persistence of the DHT: records, providers, routing-table peers.

The in-memory stores (:mod:`guts.dht.records`) and the routing table are
the truth while the node runs; this file is their copy for the next
start. The DHT writes what changed every few seconds and when it stops,
in one transaction each time, so a request never waits on the disk and a
flood of writes costs one transaction per flush. Rows that do not decode
on load (a damaged file, a format from a future version) are skipped
with a log line, never trusted.

Stdlib ``sqlite3`` only; the file is ``$GUTS_HOME/dht.sqlite`` by
convention (:meth:`DhtStore.in_home`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from guts.errors import DecodeError
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.dht.records import ProviderRecord, StoredValue
from guts.wire import decode_uvarint, encode_uvarint

__all__ = ["DhtStore", "STORE_FILE"]

log = logging.getLogger("guts.dht.store")

STORE_FILE = "dht.sqlite"
_SCHEMA_VERSION = 1

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


class DhtStore:
    """One SQLite file holding the DHT's durable state.

    Args:
        path: the database file (created if missing); ``":memory:"`` for tests.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
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
        self._db.close()

    # -- loading -----------------------------------------------------------

    def load_providers(self, now: float) -> list[ProviderRecord]:
        out = []
        for key, provider, addrs, received, expires in self._db.execute(
            "SELECT key, provider, addrs, received, expires FROM providers WHERE expires > ? ORDER BY received",
            (now,),
        ):
            try:
                out.append(ProviderRecord(bytes(key), PeerId.from_bytes(provider), _unpack_addrs(addrs), received, expires))
            except (DecodeError, TypeError, ValueError) as exc:
                log.warning("%s: skipping a provider row that does not decode: %s", self.path, exc)
        return out

    def load_values(self, now: float) -> list[StoredValue]:
        out = []
        for key, value, received, expires, publisher in self._db.execute(
            "SELECT key, value, received, expires, publisher FROM records "
            "WHERE expires > ? OR publisher IS NULL ORDER BY received",
            (now,),
        ):
            try:
                who = PeerId.from_bytes(publisher) if publisher is not None else None
                out.append(StoredValue(bytes(key), bytes(value), received, expires, who))
            except (DecodeError, TypeError, ValueError) as exc:
                log.warning("%s: skipping a record row that does not decode: %s", self.path, exc)
        return out

    def load_peers(self, limit: int = 5000) -> list[tuple[PeerId, tuple[Multiaddr, ...], float]]:
        out = []
        for peer, addrs, last_seen in self._db.execute(
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
        the saved routing table."""
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
