"""Signed ``/guts/`` records for the DHT tests: deterministic owners,
keys and records (:mod:`guts.dht.signed`)."""

from __future__ import annotations

import hashlib

from guts.crypto import KeyPair
from guts.dht.signed import guts_key, sign_record


def owner(n: int = 0) -> KeyPair:
    """A deterministic owner key pair (the key of ``dht_helpers.peer(n)``)."""
    return KeyPair.from_seed(hashlib.sha256(b"peer-%d" % n).digest())


def gkey(name: bytes, who: KeyPair | None = None) -> bytes:
    """The ``/guts/<owner>/<name>`` key of ``name`` (owner 0 by default)."""
    return guts_key((who or owner()).peer_id, name)


def signed(name: bytes, value: bytes, seq: int = 1, who: KeyPair | None = None) -> tuple[bytes, bytes]:
    """``(key, record)``: ``value`` under ``name``, signed by ``who`` with ``seq``."""
    pair = who or owner()
    key = guts_key(pair.peer_id, name)
    return key, sign_record(pair, key, seq, value)


def record(name: bytes, value: bytes, seq: int = 1, who: KeyPair | None = None) -> bytes:
    """Just the record of :func:`signed`."""
    return signed(name, value, seq, who)[1]
