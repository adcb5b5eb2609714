"""Answering DHT requests, sans-IO: a request in, a response (or a refusal) out.

The Trio handler in :mod:`guts.dht.protocol` only reads a message, calls
:meth:`KadServer.handle` and writes what it returns. A request that
breaks the protocol raises :class:`~guts.errors.RemoteProtocolError` (or
:class:`~guts.errors.InvalidRecord`); a well-formed request we decline
(a write over the rate limit or a cap) comes back as a :class:`Served`
with no response and the reason, for the log line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from guts.crypto import PublicKey
from guts.dht._addrs import AddrScope, filter_addrs
from guts.dht._codec import KadMessage, KadPeer, MessageType, Record, format_time_received
from guts.dht._key import kad_key
from guts.connmgr import RateLimiter
from guts.dht.records import ProviderStore, PutResult, ValueStore
from guts.dht.routing_table import RoutingTable
from guts.errors import DecodeError, RemoteProtocolError
from guts.multiaddr import Multiaddr
from guts.peer import PeerId

__all__ = ["KadServer", "Served", "MAX_PROVIDER_KEY"]

#: A provider key is a multihash (or a CID); none is near this long.
MAX_PROVIDER_KEY = 256


@dataclass(frozen=True, slots=True)
class Served:
    """What to do with one request: send ``response`` (if any); ``refused``
    says why a well-formed request was declined."""

    response: KadMessage | None
    refused: str | None = None
    #: For a stored record or provider: what was stored (for the log).
    stored: bool = False


class KadServer:
    """The server side of the DHT, over the node's table and stores.

    Args:
        local: our peer id.
        table: the routing table closer peers come from.
        providers, values: the record stores.
        writes: rate limiter for PUT_VALUE and ADD_PROVIDER, per peer.
        own_addrs: our addresses, as we announce them.
        peer_addrs: addresses the host knows for a peer (peerstore).
        public_key: a peer's public key if known (answers ``/pk/`` gets).
        scope: which addresses to hand out.
        connected: whether we have a connection to a peer (a FIND_NODE for a
            connected peer answers with it even when it is not in our table,
            as a client-mode peer never is; go and js do the same).
        k: how many closer peers to answer with.
    """

    def __init__(
        self,
        local: PeerId,
        table: RoutingTable,
        providers: ProviderStore,
        values: ValueStore,
        writes: RateLimiter[PeerId],
        *,
        own_addrs: Callable[[], tuple[Multiaddr, ...]],
        peer_addrs: Callable[[PeerId], tuple[Multiaddr, ...]],
        public_key: Callable[[PeerId], PublicKey | None],
        scope: Callable[[], AddrScope],
        connected: Callable[[PeerId], bool] = lambda peer: False,
        k: int = 20,
    ) -> None:
        self.local = local
        self.table = table
        self.providers = providers
        self.values = values
        self.writes = writes
        self._own_addrs = own_addrs
        self._peer_addrs = peer_addrs
        self._public_key = public_key
        self._scope = scope
        self._connected = connected
        self.k = k

    def closer_peers(self, key: bytes, sender: PeerId | None) -> tuple[KadPeer, ...]:
        """The k closest peers of our table to ``key`` that have an address
        we may hand out, never the sender itself."""
        scope = self._scope()
        out = []
        target = kad_key(key)
        exclude = [sender] if sender is not None else []
        for entry in self.table.closest(target, self.k * 2, exclude=exclude):
            addrs = filter_addrs(entry.addrs or self._peer_addrs(entry.peer_id), scope)
            if addrs:
                out.append(KadPeer(entry.peer_id, addrs))
                if len(out) >= self.k:
                    break
        return tuple(out)

    def handle(self, sender: PeerId, msg: KadMessage, now: float) -> Served:
        """Answer one request from ``sender``; ``now`` is epoch seconds.

        Raises:
            RemoteProtocolError: the request is malformed (missing key or
                record, record under another key, ...).
            InvalidRecord: a PUT_VALUE whose record its validator refuses.
        """
        kind = msg.type
        if kind is MessageType.PING:
            return Served(KadMessage(MessageType.PING))
        if kind is MessageType.FIND_NODE:
            return Served(self._find_node(sender, msg))
        if not msg.key:
            raise RemoteProtocolError(f"{kind.name} without a key")
        if kind is MessageType.GET_VALUE:
            return Served(self._get_value(sender, msg, now))
        if kind is MessageType.GET_PROVIDERS:
            return Served(self._get_providers(sender, msg, now))
        if kind is MessageType.PUT_VALUE:
            return self._put_value(sender, msg, now)
        if kind is MessageType.ADD_PROVIDER:
            return self._add_provider(sender, msg, now)
        raise RemoteProtocolError(f"unexpected {kind.name} request")  # pragma: no cover

    def _find_node(self, sender: PeerId, msg: KadMessage) -> KadMessage:
        closer = list(self.closer_peers(msg.key, sender))
        if msg.key == self.local.to_bytes():
            own = filter_addrs(self._own_addrs(), self._scope())
            closer.insert(0, KadPeer(self.local, own))
            del closer[self.k :]
        else:
            try:
                target = PeerId.from_bytes(msg.key)
            except DecodeError:
                target = None
            if (
                target is not None
                and target != sender
                and target not in self.table
                and self._connected(target)
                and (addrs := filter_addrs(self._peer_addrs(target), self._scope()))
            ):
                closer.insert(0, KadPeer(target, addrs))
                del closer[self.k :]
        return KadMessage(MessageType.FIND_NODE, key=msg.key, closer_peers=tuple(closer), cluster_level=msg.cluster_level)

    def _get_value(self, sender: PeerId, msg: KadMessage, now: float) -> KadMessage:
        key = msg.key
        record = None
        stored = self.values.get(key, now)
        if stored is not None:
            record = Record(key, stored.value, format_time_received(stored.received))
        elif key.startswith(b"/pk/"):
            try:
                peer = PeerId.from_bytes(key[4:])
            except DecodeError:
                peer = None
            public_key = self._public_key(peer) if peer is not None else None
            if public_key is not None:
                record = Record(key, public_key.to_protobuf(), format_time_received(now))
        return KadMessage(
            MessageType.GET_VALUE,
            key=key,
            record=record,
            closer_peers=self.closer_peers(key, sender),
            cluster_level=msg.cluster_level,
        )

    def _get_providers(self, sender: PeerId, msg: KadMessage, now: float) -> KadMessage:
        scope = self._scope()
        providers = []
        for rec in self.providers.providers(msg.key, now, self.k):
            addrs = filter_addrs(rec.addrs or self._peer_addrs(rec.provider), scope)
            if rec.provider == self.local:
                addrs = filter_addrs(self._own_addrs(), scope)
            if addrs:
                providers.append(KadPeer(rec.provider, addrs))
        return KadMessage(
            MessageType.GET_PROVIDERS,
            key=msg.key,
            closer_peers=self.closer_peers(msg.key, sender),
            provider_peers=tuple(providers),
            cluster_level=msg.cluster_level,
        )

    def _put_value(self, sender: PeerId, msg: KadMessage, now: float) -> Served:
        record = msg.record
        if record is None:
            raise RemoteProtocolError("PUT_VALUE without a record")
        if record.key != msg.key:
            raise RemoteProtocolError("PUT_VALUE record key differs from the message key")
        if not self.writes.take(sender, now):
            return Served(None, refused="PUT_VALUE over the write rate limit")
        result = self.values.put(record.key, record.value, now, sender)  # raises InvalidRecord
        if result is PutResult.REFUSED:
            return Served(None, refused="PUT_VALUE over the record caps")
        # The answer to PUT_VALUE is the request itself (go and js echo it),
        # also when we keep a better value: the put was valid.
        return Served(msg, stored=result is PutResult.STORED)

    def _add_provider(self, sender: PeerId, msg: KadMessage, now: float) -> Served:
        if len(msg.key) > MAX_PROVIDER_KEY:
            raise RemoteProtocolError(f"ADD_PROVIDER key of {len(msg.key)} bytes")
        own = [p for p in msg.provider_peers if p.peer_id == sender]
        if not own:
            others = len(msg.provider_peers)
            return Served(None, refused=f"ADD_PROVIDER names {others} other peer(s) and not the sender")
        if not self.writes.take(sender, now):
            return Served(None, refused="ADD_PROVIDER over the write rate limit")
        addrs = filter_addrs(own[0].addrs, self._scope())
        if not self.providers.add(msg.key, sender, addrs, now):
            return Served(None, refused="ADD_PROVIDER over the provider record caps")
        return Served(None, stored=True)
