"""The DHT on a host: the Trio layer over the sans-IO cores.

``Dht(host, config, store)`` registers the protocol handler (in server
mode), listens to the host's events and keeps the routing table filled;
``await nursery.start(dht.run)`` runs bootstrap, refresh, republish,
expiry and persistence under the caller's nursery. The public methods
(:meth:`Dht.find_closest_peers`, :meth:`Dht.find_peer`,
:meth:`Dht.provide`, :meth:`Dht.find_providers`, :meth:`Dht.put_value`,
:meth:`Dht.get_value`) are what the node and its control API call.

What lives where: requests are answered by :class:`~guts.dht._server.KadServer`;
lookups are :class:`~guts.dht.lookup.Lookup` state machines, driven here
by :mod:`guts.dht._driver`; this module moves messages and time.

Wire behaviour (libp2p/specs kad-dht, checked against js kad-dht 16):

* One request per outbound stream, as js does; an inbound stream may
  carry any number of requests (bounded), answered in order.
* ADD_PROVIDER has no answer; PUT_VALUE is answered with the request.
* Only peers that announce the protocol in identify (servers) or that
  answered our requests on it enter the routing table.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from guts.crypto import PublicKey
from guts.dht._addrs import AddrScope, addr_reach, auto_scope, filter_addrs
from guts.dht._codec import KadMessage, KadPeer, MessageType, Record, decode_message, encode_message
from guts.dht._config import DhtConfig, DhtMode
from guts.dht._client import KadClient, RequestFailed
from guts.dht._driver import LookupResult, run_lookup
from guts.dht._key import kad_key, random_key_bytes_in_bucket, show_key
from guts.dht._server import KadServer
from guts.dht._store import DhtStore
from guts.dht.records import ProviderStore, PutResult, RateLimiter, ValueStore, default_validators
from guts.dht.routing_table import AddResult, RoutingTable
from guts.errors import GutsError, InvalidRecord, PeerNotFound, RecordNotFound
from guts.host import Host, HostEvent, PeerIdentified
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.peerstore import PeerInfo
from guts.wire import MessageStream, NegotiatedStream

__all__ = ["Dht", "PublishResult"]

log = logging.getLogger("guts.dht")

#: How often one peer's refusals are logged at warning level (seconds).
_REFUSAL_LOG_INTERVAL = 10.0
#: Routing-table peers are saved at most this often (seconds).
_PEERS_SAVE_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What :meth:`Dht.provide` and :meth:`Dht.put_value` achieved.

    Attributes:
        key: the key published.
        stored_at: peers that took the record (for ADD_PROVIDER: to whom it
            was sent without error, since the protocol has no answer).
        lookup: the lookup that found them.
    """

    key: bytes
    stored_at: tuple[PeerId, ...]
    lookup: LookupResult


class Dht:
    """A Kademlia DHT node on ``host``.

    Args:
        host: the host to run on (identify should run on it too: that is
            how server peers are learned).
        config: settings; defaults to :class:`DhtConfig`.
        store: durable state; loaded now, written while :meth:`run` runs.
            The caller closes it.
        clock: wall-clock seconds since the epoch, for record lifetimes
            (records outlive the process). Timeouts use Trio's clock.
        rng: randomness for refresh keys.
    """

    def __init__(
        self,
        host: Host,
        config: DhtConfig | None = None,
        store: DhtStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.config = cfg = config or DhtConfig()
        self.store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self.peer_id = host.peer_id
        self.table = RoutingTable(host.peer_id, cfg.k)
        #: Set once the first bootstrap of :meth:`run` is done.
        self.bootstrapped = trio.Event()
        self.providers = ProviderStore(cfg.records)
        validators = cfg.validators if cfg.validators is not None else default_validators(cfg.records.max_value)
        self.values = ValueStore(validators, cfg.records)
        self._writes = RateLimiter(cfg.write_rate, cfg.write_burst)
        self.server = KadServer(
            host.peer_id,
            self.table,
            self.providers,
            self.values,
            self._writes,
            own_addrs=lambda: tuple(host.announce_addrs),
            peer_addrs=host.peerstore.addrs,
            public_key=self._public_key,
            scope=lambda: self.addr_scope,
            connected=lambda peer: host.connection(peer) is not None,
            k=cfg.k,
        )
        self._serving = False
        self._mode = DhtMode.CLIENT
        self._scope_for: tuple[tuple[Multiaddr, ...], AddrScope] = ((), AddrScope.LOCAL)
        self._inbound: Counter[PeerId] = Counter()
        self._refusals_logged: OrderedDict[PeerId, float] = OrderedDict()
        self._checking: set[PeerId] = set()
        self.client = KadClient(host, cfg, self._spawn)
        self._nursery: trio.Nursery | None = None
        self._peers_saved_at = 0.0
        self._table_dirty = False
        if store is not None:
            self._load(store)
        self.update_mode()
        host.add_event_handler(self._on_event)

    # -- status --------------------------------------------------------------

    @property
    def mode(self) -> DhtMode:
        """The mode in force: ``SERVER`` or ``CLIENT`` (``AUTO`` resolved)."""
        return self._mode

    @property
    def addr_scope(self) -> AddrScope:
        """Which addresses we keep and hand out (see :mod:`guts.dht._addrs`)."""
        if self.config.addr_scope is not None:
            return self.config.addr_scope
        own = tuple(self.host.announce_addrs or self.host.listen_addrs)
        if self._scope_for[0] != own:
            self._scope_for = (own, auto_scope(own))
        return self._scope_for[1]

    @property
    def routing_table_size(self) -> int:
        return len(self.table)

    def routing_table_peers(self) -> list[PeerInfo]:
        """The peers of the routing table, with the addresses we keep."""
        return [PeerInfo(e.peer_id, self._addrs_of(e.peer_id, e.addrs)) for e in self.table]

    def update_mode(self) -> DhtMode:
        """Apply the configured mode (re-deciding ``AUTO`` from our addresses)."""
        mode = self.config.mode
        if mode is DhtMode.AUTO:
            own = self.host.announce_addrs or self.host.listen_addrs
            public = any(addr_reach(a) is AddrScope.PUBLIC for a in own)
            mode = DhtMode.SERVER if public else DhtMode.CLIENT
        if mode is not self._mode or (mode is DhtMode.SERVER) != self._serving:
            self._mode = mode
            if mode is DhtMode.SERVER and not self._serving:
                self.host.set_handler(self.config.protocol, self._serve)
                self._serving = True
            elif mode is DhtMode.CLIENT and self._serving:
                self.host.remove_handler(self.config.protocol)
                self._serving = False
            log.info("DHT %s in %s mode", self.config.protocol, mode.value)
        return mode

    # -- persistence -----------------------------------------------------------

    def _load(self, store: DhtStore) -> None:
        now = self._clock()
        for rec in store.load_providers(now):
            self.providers.restore(rec)
        for value in store.load_values(now):
            self.values.restore(value)
        for peer, addrs, last_seen in store.load_peers():
            if peer == self.peer_id:
                continue
            self.host.peerstore.add_addrs(peer, addrs)
            outcome = self.table.add(peer, addrs, last_seen)
            if outcome.check is not None:
                self._spawn(self._check_liveness, outcome.check)
        log.info(
            "DHT state loaded from %s: %d peers, %d provider records, %d values",
            store.path, len(self.table), len(self.providers), len(self.values),
        )

    def flush(self, *, peers: bool = True) -> None:
        """Write what changed to the store (if any)."""
        if self.store is None:
            return
        saved = None
        if peers and self._table_dirty:
            saved = [(e.peer_id, e.addrs, e.last_seen) for e in self.table]
            self._table_dirty = False
        self.store.save(self.providers.take_changes(), self.values.take_changes(), saved)

    # -- background work -------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bootstrap, then refresh, republish, expire and persist until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                nursery.start_soon(self._flush_loop)
                nursery.start_soon(self._cleanup_loop)
                await self.bootstrap()
                self.bootstrapped.set()
                while True:
                    await trio.sleep(self.config.refresh_interval)
                    if len(self.table):
                        self.update_mode()
                        await self.refresh()
                    else:
                        await self.bootstrap()
        finally:
            self._nursery = None
            self._table_dirty = True
            self.flush()

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)
        else:
            self.host.start_soon(fn, *args)

    async def _flush_loop(self) -> None:
        while True:
            await trio.sleep(self.config.flush_interval)
            now = trio.current_time()
            save_peers = now - self._peers_saved_at >= _PEERS_SAVE_INTERVAL
            if save_peers:
                self._peers_saved_at = now
            self.flush(peers=save_peers)

    async def _cleanup_loop(self) -> None:
        while True:
            await trio.sleep(self.config.cleanup_interval)
            await self.cleanup()

    async def cleanup(self) -> None:
        """Drop expired records and republish ours that are due."""
        now = self._clock()
        dropped = self.providers.expire(now) + self.values.expire(now)
        if dropped:
            log.info("DHT: %d expired records dropped", dropped)
        due = self.config.records.republish_interval
        own_keys = [
            key for key in self.providers.keys()
            if (rec := self.providers.get(key, self.peer_id)) is not None and now - rec.received >= due
        ]
        own_values = [v for v in self.values.own() if now - v.received >= due]
        limit = trio.CapacityLimiter(4)

        async def republish(fn: Callable[..., Any], args: tuple[bytes, ...], what: str) -> None:
            async with limit:
                try:
                    await fn(*args)
                except GutsError as exc:
                    log.info("DHT: %s failed: %s", what, exc)

        async with trio.open_nursery() as nursery:
            for key in own_keys:
                nursery.start_soon(republish, self.provide, (key,), f"republishing provider record {key.hex()}")
            for value in own_values:
                # Restart the value's republish interval, then put it again.
                self.values.restore(dataclasses.replace(value, received=now))
                nursery.start_soon(republish, self.put_value, (value.key, value.value), f"republishing {show_key(value.key)}")

    async def bootstrap(self) -> int:
        """Connect to the configured bootstrap peers, then :meth:`refresh`
        (a self-lookup, and a lookup in every bucket not yet refreshed).

        Returns:
            The routing table's size afterwards.
        """
        self.update_mode()  # AUTO: our addresses may have changed since we started
        addrs = self.config.bootstrap
        if addrs:

            async def join(addr: Multiaddr) -> None:
                try:
                    with trio.fail_after(self.host.config.connection_timeout):
                        conn = await self.host.connect(addr)
                    with trio.move_on_after(self.config.request_timeout):
                        await conn.identified.wait()
                except (GutsError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                    log.warning("DHT bootstrap: %s: %s", addr, exc or type(exc).__name__)

            async with trio.open_nursery() as nursery:
                for addr in addrs:
                    nursery.start_soon(join, addr)
        await self.refresh()
        log.info("DHT bootstrap done: %d peers in the routing table", len(self.table))
        return len(self.table)

    async def refresh(self) -> None:
        """Look ourselves up, then look up a random key in each stale bucket."""
        if not len(self.table):
            return
        await self.find_closest_peers(self.peer_id.to_bytes())
        for index in self.table.stale_buckets(self._clock(), self.config.refresh_interval):
            key = random_key_bytes_in_bucket(self.table.local_key, index, self._rng)
            if key is not None:
                await self.find_closest_peers(key)

    # -- routing table upkeep ----------------------------------------------------

    def _on_event(self, event: HostEvent) -> None:
        if not isinstance(event, PeerIdentified):
            return
        peer = event.peer_id
        if self.config.protocol in event.protocols:
            self._admit(peer)
        elif self.table.remove(peer):
            self._table_dirty = True
            log.debug("DHT: %s no longer serves %s; removed from the routing table", peer, self.config.protocol)

    def _admit(self, peer: PeerId) -> None:
        """Offer a server peer to the routing table; check a full bucket's oldest."""
        if peer == self.peer_id:
            return
        addrs = filter_addrs(self.host.peerstore.addrs(peer), self.addr_scope)
        outcome = self.table.add(peer, addrs, self._clock())
        if outcome.result in (AddResult.ADDED, AddResult.UPDATED):
            self._table_dirty = True
        if outcome.result is AddResult.PENDING and outcome.check is not None:
            self._spawn(self._check_liveness, outcome.check)

    async def _check_liveness(self, peer: PeerId) -> None:
        if peer in self._checking:
            return
        self._checking.add(peer)
        try:
            try:
                await self.request(peer, KadMessage(MessageType.PING))
                alive = True
            except RequestFailed:
                alive = False
        finally:
            self._checking.discard(peer)
        promoted = self.table.on_liveness(peer, alive, self._clock())
        self._table_dirty = True
        if not alive:
            log.debug("DHT: %s did not answer a liveness check; replaced by %s", peer, promoted)

    # -- serving -------------------------------------------------------------------

    def _public_key(self, peer: PeerId) -> PublicKey | None:
        return self.host.peerstore.public_key(peer)

    def _log_refusal(self, peer: PeerId, reason: str) -> None:
        now = trio.current_time()
        last = self._refusals_logged.pop(peer, None)
        if last is None or now - last >= _REFUSAL_LOG_INTERVAL:
            log.warning("peer %s: DHT request refused: %s", peer, reason)
            last = now
        else:
            log.debug("peer %s: DHT request refused: %s", peer, reason)
        self._refusals_logged[peer] = last
        while len(self._refusals_logged) > 1000:
            self._refusals_logged.popitem(last=False)

    async def _serve(self, stream: NegotiatedStream) -> None:
        """Answer requests on one inbound stream until EOF (bounded).

        Protocol errors propagate: the host logs them with the peer and
        resets the stream.
        """
        cfg = self.config
        peer = stream.connection.peer_id
        if self._inbound[peer] >= cfg.max_streams_per_peer:
            self._log_refusal(peer, f"more than {cfg.max_streams_per_peer} DHT streams at once")
            return
        self._inbound[peer] += 1
        try:
            messages = MessageStream(stream, cfg.codec.max_message)
            for _ in range(cfg.max_requests_per_stream):
                with trio.move_on_after(cfg.stream_idle_timeout) as idle:
                    data = await messages.receive()
                if idle.cancelled_caught:
                    log.debug("peer %s: DHT stream idle for %.0f s; closing", peer, cfg.stream_idle_timeout)
                    return
                if data is None:
                    return
                request = decode_message(data, cfg.codec)
                served = self.server.handle(peer, request, self._clock())
                if served.refused is not None:
                    self._log_refusal(peer, served.refused)
                    return
                if served.response is not None:
                    with trio.move_on_after(cfg.request_timeout) as sending:
                        await messages.send(encode_message(served.response))
                    if sending.cancelled_caught:
                        log.info("peer %s: DHT answer not read within %.0f s; closing", peer, cfg.request_timeout)
                        return
            self._log_refusal(peer, f"more than {cfg.max_requests_per_stream} requests on one stream")
        finally:
            self._inbound[peer] -= 1
            if not self._inbound[peer]:
                del self._inbound[peer]

    # -- requests --------------------------------------------------------------------

    def _addrs_of(self, peer: PeerId, extra: Iterable[Multiaddr] = ()) -> tuple[Multiaddr, ...]:
        addrs = list(extra)
        for a in self.host.peerstore.addrs(peer):
            if a not in addrs:
                addrs.append(a)
        return filter_addrs(addrs, self.addr_scope)

    def learn(self, peers: Iterable[KadPeer]) -> list[PeerId]:
        """Remember the addresses of listed peers; returns the ids worth asking
        (those with an address we keep, or a connection)."""
        scope = self.addr_scope
        out = []
        for p in peers:
            if p.peer_id == self.peer_id:
                continue
            addrs = filter_addrs(p.addrs, scope)
            if addrs:
                self.host.peerstore.add_addrs(p.peer_id, addrs)
            if addrs or self.host.connection(p.peer_id) is not None or self.host.peerstore.addrs(p.peer_id):
                out.append(p.peer_id)
        return out

    async def request(self, peer: PeerId, message: KadMessage, *, expect_response: bool = True) -> KadMessage | None:
        """Send one request and read the answer; a peer that answers is a
        server worth keeping, one that fails counts a failure in the table.

        Raises:
            RequestFailed: see :meth:`KadClient.request`.
        """
        try:
            response = await self.client.request(peer, message, expect_response=expect_response)
        except RequestFailed:
            self.table.on_failure(peer, self._clock())
            raise
        self._admit(peer)
        return response

    # -- public operations -------------------------------------------------------------

    async def _lookup(
        self,
        key: bytes,
        message: KadMessage,
        on_response: Callable[[PeerId, KadMessage], bool] | None = None,
    ) -> LookupResult:
        result = await run_lookup(self, key, message, on_response)
        self.table.touch_bucket(kad_key(key), self._clock())
        return result

    async def find_closest_peers(self, key: bytes) -> LookupResult:
        """The k peers closest to ``key`` that answered, and the lookup's figures."""
        return await self._lookup(key, KadMessage(MessageType.FIND_NODE, key=key))

    async def find_peer(self, peer: PeerId) -> PeerInfo:
        """Addresses of ``peer``: ours if connected, else from a lookup.

        Raises:
            PeerNotFound: no peer along the lookup knew an address for it.
        """
        if self.host.connection(peer) is not None:
            return PeerInfo(peer, self._addrs_of(peer))
        found: list[Multiaddr] = []

        def on_response(sender: PeerId, response: KadMessage) -> bool:
            if sender == peer:
                found.extend(self._addrs_of(peer))
                return True
            for p in response.closer_peers:
                if p.peer_id == peer and p.addrs:
                    found.extend(filter_addrs(p.addrs, self.addr_scope))
            return bool(found)

        await self._lookup(peer.to_bytes(), KadMessage(MessageType.FIND_NODE, key=peer.to_bytes()), on_response)
        if not found:
            raise PeerNotFound(f"no peer in the DHT knows an address for {peer}")
        return PeerInfo(peer, tuple(dict.fromkeys(found)))

    def _own_addrs(self) -> tuple[Multiaddr, ...]:
        return filter_addrs(self.host.announce_addrs, self.addr_scope)

    async def _send_all(self, peers: Iterable[PeerId], message: KadMessage, *, expect_response: bool) -> tuple[PeerId, ...]:
        done: list[PeerId] = []
        limit = trio.CapacityLimiter(self.config.alpha)

        async def send(peer: PeerId) -> None:
            async with limit:
                try:
                    response = await self.request(peer, message, expect_response=expect_response)
                except RequestFailed:
                    return
                if expect_response and message.record is not None:
                    echoed = response.record if response is not None else None
                    if echoed is None or echoed.value != message.record.value:
                        log.info("peer %s: PUT_VALUE answered without the value put", peer)
                        return
                done.append(peer)

        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(send, p)
        return tuple(done)

    async def provide(self, key: bytes) -> PublishResult:
        """Announce that we provide ``key`` (a multihash) to the k closest peers."""
        self.providers.add(key, self.peer_id, self._own_addrs(), self._clock())
        lookup = await self.find_closest_peers(key)
        message = KadMessage(
            MessageType.ADD_PROVIDER, key=key, provider_peers=(KadPeer(self.peer_id, self._own_addrs()),)
        )
        stored = await self._send_all([p.peer_id for p in lookup.peers], message, expect_response=False)
        return PublishResult(key, stored, lookup)

    async def find_providers(self, key: bytes, count: int = 20) -> list[PeerInfo]:
        """Up to ``count`` providers of ``key``, ours first."""
        found: dict[PeerId, tuple[Multiaddr, ...]] = {}
        for rec in self.providers.providers(key, self._clock(), count):
            addrs = self._own_addrs() if rec.provider == self.peer_id else self._addrs_of(rec.provider, rec.addrs)
            found[rec.provider] = addrs
        if len(found) < count:

            def on_response(sender: PeerId, response: KadMessage) -> bool:
                for p in response.provider_peers:
                    if p.peer_id not in found and len(found) < count:
                        self.learn([p])
                        found[p.peer_id] = self._addrs_of(p.peer_id, p.addrs)
                return len(found) >= count

            await self._lookup(key, KadMessage(MessageType.GET_PROVIDERS, key=key), on_response)
        return [PeerInfo(p, addrs) for p, addrs in found.items()]

    async def put_value(self, key: bytes, value: bytes) -> PublishResult:
        """Store ``value`` under ``key`` here and on the k closest peers.

        Raises:
            InvalidRecord: no validator for the key's namespace, or the value fails it.
        """
        self.values.validate(key, value)
        result = self.values.put(key, value, self._clock(), None)
        if result is PutResult.KEPT:
            log.info("DHT: the value held for %s wins over the one put; publishing it anyway", show_key(key))
        lookup = await self.find_closest_peers(key)
        record = Record(key, value)
        message = KadMessage(MessageType.PUT_VALUE, key=key, record=record)
        stored = await self._send_all([p.peer_id for p in lookup.peers], message, expect_response=True)
        return PublishResult(key, stored, lookup)

    async def get_value(self, key: bytes) -> bytes:
        """The best value for ``key`` found locally and on the network.

        Raises:
            InvalidRecord: the key's namespace has no validator.
            RecordNotFound: nobody returned a valid value.
        """
        self.values.validator_for(key)
        values: list[bytes] = []
        holders: list[tuple[PeerId, bytes]] = []
        local = self.values.get(key, self._clock())
        if local is not None:
            values.append(local.value)
        quorum = self.config.get_quorum

        if len(values) < quorum:

            def on_response(sender: PeerId, response: KadMessage) -> bool:
                rec = response.record
                if rec is None:
                    return False
                if rec.key != key:
                    log.warning("peer %s: GET_VALUE answered with a record for another key", sender)
                    return False
                try:
                    self.values.validate(key, rec.value)
                except InvalidRecord as exc:
                    log.warning("peer %s: invalid record for %s: %s", sender, show_key(key), exc)
                    return False
                values.append(rec.value)
                holders.append((sender, rec.value))
                return len(values) >= quorum

            await self._lookup(key, KadMessage(MessageType.GET_VALUE, key=key), on_response)
        if not values:
            raise RecordNotFound(f"no value found for {show_key(key)}")
        best = values[self.values.select(key, values)]
        outdated = [p for p, v in holders if v != best]
        if outdated:
            # Entry correction (spec "Getting values"): tell holders of worse values.
            message = KadMessage(MessageType.PUT_VALUE, key=key, record=Record(key, best))
            await self._send_all(outdated, message, expect_response=True)
        return best
