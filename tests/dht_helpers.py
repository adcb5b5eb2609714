"""Helpers for the DHT tests: deterministic peer ids, a tiny network model
and a stand-in for the host's view the address book reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from guts.crypto import KeyPair
from guts.dht._key import kad_key
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.peerstore import Peerstore


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


@dataclass
class FakeHost:
    """Just what :class:`~guts.dht.addrbook.AddrBook` reads of a host (:class:`~guts.dht.addrbook.HostView`)."""

    peer_id: PeerId = field(default_factory=lambda: peer(0))
    peerstore: Peerstore = field(default_factory=Peerstore)
    announce_addrs: list[Multiaddr] = field(default_factory=list)
    listen_addrs: list[Multiaddr] = field(default_factory=list)
    connected: set[PeerId] = field(default_factory=set)

    def connection(self, peer: PeerId) -> object | None:
        return object() if peer in self.connected else None
