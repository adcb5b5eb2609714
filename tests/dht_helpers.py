"""Helpers for the DHT tests: deterministic peer ids and a tiny network model."""

from __future__ import annotations

import hashlib

from guts.crypto import KeyPair
from guts.dht._key import kad_key
from guts.peer import PeerId


def peer(n: int) -> PeerId:
    """A deterministic Ed25519 peer id."""
    return KeyPair.from_seed(hashlib.sha256(b"peer-%d" % n).digest()).peer_id


def peers(count: int, start: int = 0) -> list[PeerId]:
    return [peer(i) for i in range(start, start + count)]


def hashed_peer(n: int) -> PeerId:
    """A cheap, valid SHA2-256 peer id (no key generation), for big networks."""
    return PeerId.from_bytes(b"\x12\x20" + hashlib.sha256(b"hashed-%d" % n).digest())


def true_closest(target: int, population: list[PeerId], count: int) -> list[PeerId]:
    return sorted(population, key=lambda p: kad_key(p.to_bytes()) ^ target)[:count]
