"""What the host tells its event handlers (:meth:`guts.host.Host.add_event_handler`):
a peer connected, identified, or disconnected. Re-exported by :mod:`guts.host`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from guts.multiaddr import Multiaddr
from guts.peer import PeerId

__all__ = ["Direction", "HostEvent", "PeerConnected", "PeerDisconnected", "PeerIdentified"]


class Direction(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer_id: PeerId
    addr: Multiaddr
    direction: Direction


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer_id: PeerId


@dataclass(frozen=True, slots=True)
class PeerIdentified:
    peer_id: PeerId
    protocols: tuple[str, ...]
    agent_version: str | None
    listen_addrs: tuple[Multiaddr, ...]


HostEvent = PeerConnected | PeerDisconnected | PeerIdentified
