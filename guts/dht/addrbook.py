"""The addresses the DHT keeps, hands out and dials, peer by peer.

Everything the DHT says about addresses goes through one scope
(:class:`~guts.dht._addrs.AddrScope`, decided from our own addresses
unless configured; see :mod:`guts.dht._addrs` for why): what we remember
from answers, what we answer with, what lookups return. A peer an answer
lists is worth asking only if we can reach it: an address in scope, one
remembered from before, or a connection already open.

No I/O: the book reads and writes the host's peerstore (a plain in-memory
table) and asks the host whether a peer is connected, through
:class:`HostView`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from guts.dht._addrs import AddrScope, auto_scope, filter_addrs
from guts.dht._codec import KadPeer
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.peerstore import Peerstore

__all__ = ["AddrBook", "HostView"]


class HostView(Protocol):
    """What the address book reads of the host (:class:`guts.host.Host` is one)."""

    @property
    def peer_id(self) -> PeerId: ...

    @property
    def peerstore(self) -> Peerstore: ...

    @property
    def announce_addrs(self) -> Sequence[Multiaddr]: ...

    @property
    def listen_addrs(self) -> Sequence[Multiaddr]: ...

    def connection(self, peer: PeerId) -> object | None: ...


class AddrBook:
    """Addresses by peer, within the scope in force.

    Args:
        host: whose peerstore holds the addresses, and whose own addresses
            decide the scope.
        scope: a fixed scope; ``None`` decides it from our addresses (again
            whenever they change).
    """

    def __init__(self, host: HostView, scope: AddrScope | None = None) -> None:
        self._host = host
        self._fixed = scope
        self._scope_for: tuple[tuple[Multiaddr, ...], AddrScope] | None = None

    @property
    def scope(self) -> AddrScope:
        """Which addresses we keep and hand out."""
        if self._fixed is not None:
            return self._fixed
        own = tuple(self._host.announce_addrs or self._host.listen_addrs)
        if self._scope_for is None or self._scope_for[0] != own:
            self._scope_for = (own, auto_scope(own))
        return self._scope_for[1]

    def kept(self, addrs: Iterable[Multiaddr]) -> tuple[Multiaddr, ...]:
        """Those of ``addrs`` within the scope."""
        return filter_addrs(addrs, self.scope)

    def own(self) -> tuple[Multiaddr, ...]:
        """Our addresses, as we hand them out."""
        return self.kept(self._host.announce_addrs)

    def of(self, peer: PeerId, extra: Iterable[Multiaddr] = ()) -> tuple[Multiaddr, ...]:
        """The addresses we hand out for ``peer``: ``extra`` (what an answer
        or a record says) first, then the peerstore's."""
        addrs = list(extra)
        for a in self._host.peerstore.addrs(peer):
            if a not in addrs:
                addrs.append(a)
        return self.kept(addrs)

    def learn(self, peers: Iterable[KadPeer]) -> list[PeerId]:
        """Remember the addresses of listed peers; returns the ids worth
        asking (an address we keep, remembered or new, or a connection)."""
        scope = self.scope
        out = []
        for p in peers:
            if p.peer_id == self._host.peer_id:
                continue
            addrs = filter_addrs(p.addrs, scope)
            if addrs:
                self._host.peerstore.add_addrs(p.peer_id, addrs)
            if addrs or self._host.connection(p.peer_id) is not None or self._host.peerstore.addrs(p.peer_id):
                out.append(p.peer_id)
        return out
