"""What the host knows about other peers: addresses, keys, protocols, metadata.

Composed of small books like go-libp2p's peerstore. Everything is bounded:
a peer keeps at most :data:`MAX_ADDRS` addresses and :data:`MAX_PROTOCOLS`
protocols, because identify answers are remote input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from guts.crypto import PublicKey
from guts.multiaddr import Multiaddr
from guts.peer import PeerId

__all__ = ["Peerstore", "PeerInfo", "MAX_ADDRS", "MAX_PROTOCOLS"]

MAX_ADDRS = 64
MAX_PROTOCOLS = 256
MAX_PEERS = 10_000


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A snapshot of one peer."""

    peer_id: PeerId
    addrs: tuple[Multiaddr, ...] = ()
    protocols: tuple[str, ...] = ()
    agent_version: str | None = None
    protocol_version: str | None = None


@dataclass(slots=True)
class _Record:
    addrs: dict[Multiaddr, None] = field(default_factory=dict)  # ordered set
    protocols: tuple[str, ...] = ()
    public_key: PublicKey | None = None
    agent_version: str | None = None
    protocol_version: str | None = None


class Peerstore:
    """In-memory peer book. Not persisted: the DHT keeps its own durable view."""

    def __init__(self, max_peers: int = MAX_PEERS) -> None:
        self._peers: dict[PeerId, _Record] = {}
        self._max_peers = max_peers

    def _record(self, peer: PeerId) -> _Record:
        rec = self._peers.get(peer)
        if rec is None:
            if len(self._peers) >= self._max_peers:
                # Forget the oldest entry; connected peers are re-added by identify.
                self._peers.pop(next(iter(self._peers)))
            rec = self._peers[peer] = _Record()
        return rec

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def peers(self) -> list[PeerId]:
        return list(self._peers)

    def add_addrs(self, peer: PeerId, addrs: Iterable[Multiaddr]) -> None:
        """Remember addresses of ``peer`` (without their ``/p2p`` suffix)."""
        rec = self._record(peer)
        for addr in addrs:
            addr = addr.without_p2p()
            rec.addrs.pop(addr, None)
            rec.addrs[addr] = None
        while len(rec.addrs) > MAX_ADDRS:
            rec.addrs.pop(next(iter(rec.addrs)))

    def set_addrs(self, peer: PeerId, addrs: Iterable[Multiaddr]) -> None:
        self._record(peer).addrs.clear()
        self.add_addrs(peer, addrs)

    def addrs(self, peer: PeerId) -> tuple[Multiaddr, ...]:
        rec = self._peers.get(peer)
        return tuple(rec.addrs) if rec else ()

    def set_protocols(self, peer: PeerId, protocols: Iterable[str]) -> None:
        self._record(peer).protocols = tuple(protocols)[:MAX_PROTOCOLS]

    def protocols(self, peer: PeerId) -> tuple[str, ...]:
        rec = self._peers.get(peer)
        return rec.protocols if rec else ()

    def supports(self, peer: PeerId, protocol: str) -> bool:
        return protocol in self.protocols(peer)

    def set_public_key(self, peer: PeerId, key: PublicKey) -> None:
        self._record(peer).public_key = key

    def public_key(self, peer: PeerId) -> PublicKey | None:
        rec = self._peers.get(peer)
        if rec and rec.public_key:
            return rec.public_key
        return PublicKey.from_peer_id(peer)

    def set_versions(self, peer: PeerId, agent: str | None, protocol: str | None) -> None:
        rec = self._record(peer)
        rec.agent_version = agent
        rec.protocol_version = protocol

    def info(self, peer: PeerId) -> PeerInfo:
        rec = self._peers.get(peer) or _Record()
        return PeerInfo(
            peer_id=peer,
            addrs=tuple(rec.addrs),
            protocols=rec.protocols,
            agent_version=rec.agent_version,
            protocol_version=rec.protocol_version,
        )
