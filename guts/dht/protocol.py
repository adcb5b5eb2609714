"""The DHT on a host: the Trio layer over the sans-IO cores.

``Dht(host, config, store)`` registers the protocol handler (in server
mode), listens to the host's events and keeps the routing table filled;
``await nursery.start(dht.run)`` runs bootstrap, refresh, republish,
expiry and persistence under the caller's nursery. The public methods
(:meth:`Dht.find_closest_peers`, :meth:`Dht.find_peer`,
:meth:`Dht.provide`, :meth:`Dht.find_providers`, :meth:`Dht.put_value`,
:meth:`Dht.get_value`) are what the node and its control API call.

What lives where: requests are answered by :class:`~guts.dht._server.KadServer`;
lookups are :class:`~guts.dht.lookup.Lookup` state machines, driven by
:mod:`guts.dht._driver`; what their answers add up to is decided in
:mod:`guts.dht.collect`; the mode in :mod:`guts.dht.mode`, addresses in
:mod:`guts.dht.addrbook`, inbound stream limits in :mod:`guts.dht.inbound`,
expiry and republishing in :mod:`guts.dht.republish`; the store writes on
a worker thread (:mod:`guts.dht._store`). This module moves messages and
time.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from guts.connmgr import RateLimiter
from guts.dht._addrs import AddrScope
from guts.dht._client import KadClient, RequestFailed
from guts.dht._codec import KadMessage, KadPeer, MessageType, Record, decode_message, encode_message
from guts.dht._config import DhtConfig, DhtMode
from guts.dht._driver import LookupResult, run_lookup
from guts.dht._key import kad_key, random_key_bytes_in_bucket, show_key
from guts.dht._server import KadServer
from guts.dht._store import DhtStore
from guts.dht.addrbook import AddrBook
from guts.dht.collect import PeerCollector, ProviderCollector, ValueCollector, put_echoed
from guts.dht.inbound import InboundStreams
from guts.dht.mode import decide_mode
from guts.dht.records import GutsValidator, ProviderStore, PutResult, ValueStore, default_validators
from guts.dht.republish import sweep
from guts.dht.signed import NAMESPACE, next_seq, open_record, seq_of, sign_record
from guts.dht.routing_table import AddResult, RoutingTable
from guts.errors import GutsError
from guts.host import Host, HostEvent, PeerIdentified
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.peerstore import PeerInfo
from guts.wire import MessageStream, NegotiatedStream

__all__ = ["Dht", "PublishResult"]

log = logging.getLogger("guts.dht")

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
        stored_locally: whether our own store holds the record we published.
        seq: the sequence number of a signed ``/guts/`` record (else ``None``).
    """

    key: bytes
    stored_at: tuple[PeerId, ...]
    lookup: LookupResult
    stored_locally: bool = True
    seq: int | None = None


class Dht:
    """A Kademlia DHT node on ``host``.

    Args:
        host: the host to run on (identify should run on it too: that is
            how server peers are learned).
        config: settings; defaults to :class:`DhtConfig`.
        store: durable state; loaded now, on the calling thread (once,
            before anything is served), and written on a worker thread
            while :meth:`run` runs and when it ends. The caller closes it
            after :meth:`run` has returned.
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
        #: The addresses we keep and hand out, peer by peer.
        self.addr_book = AddrBook(host, cfg.addr_scope)
        self.table = RoutingTable(host.peer_id, cfg.k)
        #: Set once the first bootstrap of :meth:`run` is done.
        self.bootstrapped = trio.Event()
        self.providers = ProviderStore(cfg.records, host.peer_id)
        validators = cfg.validators if cfg.validators is not None else default_validators(cfg.records.max_value)
        self.values = ValueStore(validators, cfg.records)
        self._writes: RateLimiter[PeerId] = RateLimiter(cfg.write_rate, cfg.write_burst)
        self.server = KadServer(
            host.peer_id,
            self.table,
            self.providers,
            self.values,
            self._writes,
            own_addrs=lambda: tuple(host.announce_addrs),
            peer_addrs=host.peerstore.addrs,
            public_key=host.peerstore.public_key,
            scope=lambda: self.addr_book.scope,
            connected=lambda peer: host.connection(peer) is not None,
            k=cfg.k,
        )
        self._serving = False
        self._mode = DhtMode.CLIENT
        self._inbound = InboundStreams(cfg.max_streams_per_peer)
        #: Told of each request refused (a peer over its limits), with the
        #: peer, the reason and a penalty weight (the node's peer scores).
        self.report: Callable[[PeerId, str, float], object] | None = None
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
        return self.addr_book.scope

    @property
    def routing_table_size(self) -> int:
        return len(self.table)

    def routing_table_peers(self) -> list[PeerInfo]:
        """The peers of the routing table, with the addresses we keep."""
        return [PeerInfo(e.peer_id, self.addr_book.of(e.peer_id, e.addrs)) for e in self.table]

    def update_mode(self) -> DhtMode:
        """Apply the configured mode (re-deciding ``AUTO`` from our addresses)."""
        mode = decide_mode(self.config.mode, self.host.announce_addrs or self.host.listen_addrs)
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
        """Read the saved state, synchronously: this runs once, in the
        constructor, before the DHT serves or asks anything, so there is no
        one for the read to keep waiting."""
        now = self._clock()
        for rec in store.load_providers(now, self.config.records):
            self.providers.restore(rec)
        for value in store.load_values(now, self.config.records):
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

    async def flush(self, *, peers: bool = True) -> None:
        """Write what changed to the store (if any), off the Trio thread
        (:meth:`DhtStore.flush`); the routing table too if ``peers`` and it changed."""
        if self.store is None:
            return
        table = None
        if peers and self._table_dirty:
            table, self._table_dirty = self.table, False
        await self.store.flush(self.providers, self.values, table)

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
            with trio.CancelScope(shield=True):  # the last flush: complete before the caller closes the store
                await self.flush()

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
            await self.flush(peers=save_peers)

    async def _cleanup_loop(self) -> None:
        while True:
            await trio.sleep(self.config.cleanup_interval)
            await self.cleanup()

    async def cleanup(self) -> None:
        """Drop expired records and republish ours that are due."""
        done = sweep(self.providers, self.values, self.peer_id, self._clock(), self.config.records.republish_interval)
        if done.dropped:
            log.info("DHT: %d expired records dropped", done.dropped)
        limit = trio.CapacityLimiter(4)

        async def republish(fn: Callable[..., Any], args: tuple[bytes, ...], what: str) -> None:
            async with limit:
                try:
                    await fn(*args)
                except GutsError as exc:
                    log.info("DHT: %s failed: %s", what, exc)

        async with trio.open_nursery() as nursery:
            for key in done.provider_keys:
                nursery.start_soon(republish, self.provide, (key,), f"republishing provider record {key.hex()}")
            for value in done.values:
                nursery.start_soon(republish, self._publish_value, (value.key, value.value), f"republishing {show_key(value.key)}")

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
        outcome = self.table.add(peer, self.addr_book.of(peer), self._clock())
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

    def _log_refusal(self, peer: PeerId, reason: str) -> None:
        level = logging.WARNING if self._inbound.loud(peer, trio.current_time()) else logging.DEBUG
        log.log(level, "peer %s: DHT request refused: %s", peer, reason)
        if self.report is not None:
            self.report(peer, f"DHT: {reason}", 1.0)

    async def _serve(self, stream: NegotiatedStream) -> None:
        """Answer requests on one inbound stream until EOF (bounded).

        Protocol errors propagate: the host logs them with the peer and
        resets the stream.
        """
        cfg = self.config
        peer = stream.connection.peer_id
        if not self._inbound.open(peer):
            self._log_refusal(peer, f"more than {cfg.max_streams_per_peer} DHT streams at once")
            return
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
            self._inbound.close(peer)

    # -- requests (also what the lookup driver needs: guts.dht._driver.LookupPeers) ----

    def addrs_of(self, peer: PeerId) -> tuple[Multiaddr, ...]:
        """The addresses we hand out for ``peer`` (see :class:`AddrBook`)."""
        return self.addr_book.of(peer)

    def learn(self, peers: Iterable[KadPeer]) -> list[PeerId]:
        """Remember the addresses of listed peers; returns the ids worth asking."""
        return self.addr_book.learn(peers)

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
        seeds = [e.peer_id for e in self.table.closest(kad_key(key), self.config.k)]
        result = await run_lookup(
            self, key, message, seeds=seeds, exclude=[self.peer_id], config=self.config, on_response=on_response
        )
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
            return PeerInfo(peer, self.addr_book.of(peer))
        found = PeerCollector(peer, self.addr_book)
        await self._lookup(peer.to_bytes(), KadMessage(MessageType.FIND_NODE, key=peer.to_bytes()), found.on_response)
        return found.result()

    async def _send_all(self, peers: Iterable[PeerId], message: KadMessage, *, expect_response: bool) -> tuple[PeerId, ...]:
        done: list[PeerId] = []
        limit = trio.CapacityLimiter(self.config.alpha)

        async def send(peer: PeerId) -> None:
            async with limit:
                try:
                    response = await self.request(peer, message, expect_response=expect_response)
                except RequestFailed:
                    return
                if expect_response and not put_echoed(message, response):
                    log.info("peer %s: PUT_VALUE answered without the value put", peer)
                    return
                done.append(peer)

        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(send, p)
        return tuple(done)

    async def provide(self, key: bytes) -> PublishResult:
        """Announce that we provide ``key`` (a multihash) to the k closest peers."""
        self.providers.add(key, self.peer_id, self.addr_book.own(), self._clock())
        lookup = await self.find_closest_peers(key)
        message = KadMessage(
            MessageType.ADD_PROVIDER, key=key, provider_peers=(KadPeer(self.peer_id, self.addr_book.own()),)
        )
        stored = await self._send_all([p.peer_id for p in lookup.peers], message, expect_response=False)
        return PublishResult(key, stored, lookup)

    def stop_providing(self, key: bytes) -> bool:
        """Stop providing ``key``: our record of it is dropped, so the
        sweep no longer republishes it, and the copies other peers hold
        expire (kad-dht has no withdrawal message); whether we provided it."""
        return self.providers.remove(key, self.peer_id)

    async def find_providers(self, key: bytes, count: int = 20) -> list[PeerInfo]:
        """Up to ``count`` providers of ``key``, ours first."""
        found = ProviderCollector(count, self.addr_book)
        found.add_local(self.providers.providers(key, self._clock(), count), self.peer_id)
        if not found.done:
            await self._lookup(key, KadMessage(MessageType.GET_PROVIDERS, key=key), found.on_response)
        return found.providers()

    async def put_value(self, key: bytes, value: bytes) -> PublishResult:
        """Store ``value`` under ``key`` here and on the k closest peers.

        Under ``/guts/<our peer id>/<name>``, ``value`` is signed with our
        key and the next sequence number (:mod:`guts.dht.signed`); other
        namespaces store ``value`` as it is.

        Raises:
            InvalidRecord: no validator for the key's namespace, the value
                fails it, or a ``/guts/`` key names another owner.
        """
        seq = None
        if self._signed(key):
            held = self.values.get(key, self._clock())
            seq = next_seq(self._clock(), seq_of(held.value) if held is not None else None)
            value = sign_record(self.host.keypair, key, seq, value)
        result = await self._publish_value(key, value)
        return dataclasses.replace(result, seq=seq)

    def _signed(self, key: bytes) -> bool:
        """Whether values under ``key`` are owner-signed records (``/guts/``
        with the stock validator)."""
        return key.startswith(NAMESPACE) and isinstance(self.values.validators.get("guts"), GutsValidator)

    async def _publish_value(self, key: bytes, value: bytes) -> PublishResult:
        self.values.validate(key, value)
        result = self.values.put(key, value, self._clock(), None)
        if result is PutResult.KEPT:
            log.info("DHT: the value held for %s wins over the one put; publishing it anyway", show_key(key))
        elif result is PutResult.REFUSED:
            log.warning("DHT: our own store refused %s (over its caps for our own values)", show_key(key))
        lookup = await self.find_closest_peers(key)
        record = Record(key, value)
        message = KadMessage(MessageType.PUT_VALUE, key=key, record=record)
        stored = await self._send_all([p.peer_id for p in lookup.peers], message, expect_response=True)
        return PublishResult(key, stored, lookup, stored_locally=result is PutResult.STORED)

    async def get_record(self, key: bytes) -> bytes:
        """The best record for ``key`` found locally and on the network, as
        stored (for ``/guts/``: the signed record).

        Raises:
            InvalidRecord: the key's namespace has no validator.
            RecordNotFound: nobody returned a valid value.
        """
        local = self.values.get(key, self._clock())
        found = ValueCollector(key, self.values, self.config.get_quorum, local.value if local is not None else None)
        if not found.done:
            await self._lookup(key, KadMessage(MessageType.GET_VALUE, key=key), found.on_response)
        result = found.result()
        if result.outdated:
            # Entry correction (spec "Getting values"): tell holders of worse values.
            await self._send_all(result.outdated, result.correction(), expect_response=True)
        return result.value

    async def get_value(self, key: bytes) -> bytes:
        """The best value for ``key`` found locally and on the network (for
        ``/guts/``: the value its owner signed, the signature checked).

        Raises:
            InvalidRecord: the key's namespace has no validator.
            RecordNotFound: nobody returned a valid value.
        """
        record = await self.get_record(key)
        if self._signed(key):
            return open_record(key, record, self.config.records.max_value).value
        return record
