"""The Trio layer of gossipsub: streams in and out, one heartbeat task.

The router (:mod:`guts.gossip.router`) decides everything; this module only
moves bytes and time. Per peer, as libp2p pubsub does it: one long-lived
outbound stream that we write RPCs on, with exactly one writer task and a
bounded queue in front of it (:mod:`guts.gossip._writer`), and the peer's
inbound stream, read in the host's handler task for it. A peer is handed
to the router once our outbound stream has negotiated a meshsub version;
RPCs read before that wait for it.

Tasks: :meth:`Gossipsub.run` owns a nursery with the heartbeat, the
writers, asynchronous validators and peer-exchange dials; the caller runs
it in a nursery of its own (or uses :func:`open_gossipsub`). Nothing runs
before ``run`` starts or after it ends.

Backpressure: a peer that does not read fills its queue
(``GossipConfig.max_queued_bytes``); further frames to it are dropped
(gossip heals the loss) and it is charged one behavioural penalty per
heartbeat while that lasts, which takes it out of meshes, so less is sent
to it. A write that does not complete within ``GossipConfig.write_timeout``
closes the peer's gossip stream: it stops being a gossip peer (the
connection stays).

Floods: the router drops what a peer sends beyond its message rate and
charges it (see :mod:`guts.gossip.router`); a peer whose score then stays
below the graylist threshold for ``GossipConfig.graylist_disconnect_after``
seconds has its gossip streams closed here, as above (the connection
stays, for the other protocols). Its score is retained by the router, so
if it opens a gossip stream again it comes back graylisted and is closed
again. Messages not delivered, whatever the reason (over the rate,
graylisted, rejected, ignored, a subscription whose reader fell behind,
frames to a peer whose queue was full), are counted in
:meth:`Gossipsub.drop_counts`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from guts.errors import GutsError
from guts.gossip._config import PROTOCOLS, GossipConfig
from guts.gossip._peer_record import InvalidPeerRecord, open_px_record, px_peer_id
from guts.gossip._subscription import Subscription
from guts.gossip._writer import PeerWriter
from guts.gossip.router import (
    GossipMessage,
    GossipRouter,
    MessageDelivered,
    PeersExchanged,
    RouterStats,
    ValidationRequested,
    ValidationResult,
)
from guts.host import Connection, Direction, Host, HostEvent, PeerDisconnected, PeerIdentified
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.wire import LengthPrefixedDecoder, NegotiatedStream

__all__ = ["Gossipsub", "Subscription", "Validator", "open_gossipsub"]

log = logging.getLogger("guts.gossip")

#: A validator gets each new message of its topic and says accept, reject
#: or ignore, at once or as an awaitable (run in the gossip nursery).
Validator = Callable[[GossipMessage], "ValidationResult | Awaitable[ValidationResult]"]

_READ = 64 * 1024


def _ips(addr: Multiaddr) -> list[str]:
    for proto in ("ip4", "ip6"):
        value = addr.value_for(proto)
        if value is not None:
            return [value]
    return []


@dataclass(eq=False)
class _Link:
    """Our side of one gossip peer: the outbound stream and its writer."""

    peer: PeerId
    conn: Connection
    writer: PeerWriter
    stream: NegotiatedStream | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    failed: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Gossipsub:
    """gossipsub on a host: ``/meshsub/1.2.0``, ``/meshsub/1.1.0``, ``/meshsub/1.0.0``.

    Args:
        host: the host to run on; identify should run on it too (a peer
            becomes a gossip peer when identify shows it speaks meshsub,
            or when it opens a meshsub stream to us).
        config: parameters; :class:`GossipConfig` defaults are the spec's.
        rng: randomness for the router (seed it for reproducible tests).

    Start it with ``await nursery.start(gossip.run)`` or use
    :func:`open_gossipsub`.
    """

    def __init__(self, host: Host, config: GossipConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.host = host
        self.config = config or GossipConfig()
        # js and go seed the seqno from the wall clock in nanoseconds, so a
        # restarted node does not reuse message ids.
        self.router = GossipRouter(host.peer_id, host.keypair, self.config, rng=rng, seqno=time.time_ns())
        self._links: dict[PeerId, _Link] = {}
        self._owners: dict[PeerId, _Link] = {}  # the link that added each router peer
        self._inbound: dict[PeerId, trio.CancelScope] = {}
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._validators: dict[str, Validator] = {}
        self._nursery: trio.Nursery | None = None
        self._dialing: set[PeerId] = set()
        self._registered = False
        self._send_dropped = 0  # frames dropped at the send queues of links now gone
        #: Gossip links closed because the peer stayed graylisted.
        self.graylist_closed = 0

    # ------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve gossipsub until cancelled."""
        if self._nursery is not None:
            raise RuntimeError("this Gossipsub is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for protocol in PROTOCOLS:
                    self.host.set_handler(protocol, self._serve_inbound)
                if not self._registered:
                    self.host.add_event_handler(self._on_host_event)
                    self._registered = True
                for conn in self.host.connections:
                    if any(p in PROTOCOLS for p in self.host.peerstore.protocols(conn.peer_id)):
                        self._ensure_link(conn)
                nursery.start_soon(self._heartbeats)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for protocol in PROTOCOLS:
                self.host.remove_handler(protocol)
            for scope in self._inbound.values():
                scope.cancel()
            now = trio.current_time()
            for peer in list(self._owners):
                self.router.remove_peer(peer, now)
            self._owners.clear()
            self._links.clear()
            for subs in self._subscriptions.values():
                for sub in subs:
                    sub._end()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    async def _heartbeats(self) -> None:
        cfg = self.config
        await trio.sleep(cfg.heartbeat_initial_delay)
        direct_ticks = 0
        deadline = trio.current_time()
        while True:
            self._check_writers(trio.current_time())
            now = trio.current_time()
            self.router.heartbeat(now)
            self._close_graylisted(now)
            self._flush()
            if self.config.direct_peers and direct_ticks % DIRECT_CONNECT_TICKS == 0:
                self._connect_direct()
            direct_ticks += 1
            deadline += cfg.heartbeat_interval
            now = trio.current_time()
            if deadline < now:  # fell behind: skip the missed beats
                deadline = now + cfg.heartbeat_interval
            await trio.sleep_until(deadline)

    def _check_writers(self, now: float) -> None:
        # a method, not a loop in _heartbeats: a loop variable there would pin
        # the last link (and what its queue holds) until the next link came
        for link in list(self._links.values()):
            if link.writer.take_overflow():
                self.router.penalize(link.peer, 1)
            stalled = link.writer.stalled_for(now)
            if stalled is not None and stalled > self.config.write_timeout:
                log.warning("peer %s: has not read its gossip stream for %.0f s; closing it", link.peer, stalled)
                link.scope.cancel()

    def _close_graylisted(self, now: float) -> None:
        limit = self.config.graylist_disconnect_after
        if limit <= 0:
            return
        for link in list(self._links.values()):
            below = self.router.graylisted_for(link.peer, now)
            if below >= limit:
                log.warning(
                    "peer %s: score %.1f, below the graylist threshold for %.0f s; closing its gossip streams",
                    link.peer, self.router.peer_score(link.peer, now), below,
                )
                self.graylist_closed += 1
                link.scope.cancel()

    # ------------------------------------------------------------ peers

    def _on_host_event(self, event: HostEvent) -> None:
        if self._nursery is None:
            return
        if isinstance(event, PeerIdentified):
            if any(p in PROTOCOLS for p in event.protocols):
                conn = self.host.connection(event.peer_id)
                if conn is not None:
                    self._ensure_link(conn)
        elif isinstance(event, PeerDisconnected):
            link = self._links.get(event.peer_id)
            if link is not None:
                link.scope.cancel()

    def _ensure_link(self, conn: Connection) -> _Link | None:
        nursery = self._nursery
        if nursery is None:
            return None
        link = self._links.get(conn.peer_id)
        if link is not None and link.conn is not conn and link.conn.is_closed:
            link.scope.cancel()  # its task will go; a new connection gets a new link
            link = None
        if link is None:
            writer = PeerWriter(conn.peer_id, self.config.max_queued_bytes)
            link = self._links[conn.peer_id] = _Link(conn.peer_id, conn, writer)
            nursery.start_soon(self._run_link, link)
        return link

    async def _run_link(self, link: _Link) -> None:
        peer = link.peer
        added = False
        try:
            with link.scope:
                try:
                    with trio.fail_after(self.host.config.negotiation_timeout):
                        stream = await link.conn.new_stream(PROTOCOLS)
                except (GutsError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    log.info("peer %s: no gossip stream: %s", peer, _reason(exc))
                    return
                link.stream = stream
                if self._owners.get(peer) is not None:  # a replaced link has not cleaned up yet
                    self.router.remove_peer(peer, trio.current_time())
                self._owners[peer] = link
                self.router.add_peer(
                    peer,
                    stream.protocol,
                    outbound=link.conn.direction is Direction.OUTBOUND,
                    ips=_ips(link.conn.remote_addr),
                    now=trio.current_time(),
                )
                added = True
                link.ready.set()
                log.debug("peer %s: gossip stream open (%s)", peer, stream.protocol)
                self._flush()
                try:
                    await link.writer.run(stream)
                except (trio.BrokenResourceError, trio.ClosedResourceError, GutsError) as exc:
                    log.info("peer %s: gossip stream closed: %s", peer, _reason(exc))
        finally:
            link.failed = not added
            link.ready.set()
            link.writer.clear()  # what was queued is lost with the stream, now rather than when the link is collected
            self._send_dropped += link.writer.dropped
            if self._links.get(peer) is link:
                del self._links[peer]
                inbound = self._inbound.pop(peer, None)
                if inbound is not None:  # its RPCs would go nowhere now
                    inbound.cancel()
            if self._owners.get(peer) is link:  # this link added the peer to the router
                del self._owners[peer]
                self.router.remove_peer(peer, trio.current_time())
                self._flush()
            if link.stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(link.stream)

    async def _serve_inbound(self, stream: NegotiatedStream) -> None:
        conn: Connection = stream.connection
        peer = conn.peer_id
        link = self._ensure_link(conn)
        if link is None:
            return
        previous = self._inbound.pop(peer, None)
        if previous is not None:  # a new inbound stream replaces the old one, as in js
            previous.cancel()
        with trio.CancelScope() as scope:
            self._inbound[peer] = scope
            try:
                await self._read(peer, link, stream)
            finally:
                if self._inbound.get(peer) is scope:
                    del self._inbound[peer]

    async def _read(self, peer: PeerId, link: _Link, stream: NegotiatedStream) -> None:
        with trio.move_on_after(self.host.config.negotiation_timeout * 2):
            await link.ready.wait()
        if not link.ready.is_set() or link.failed:
            return
        cfg = self.config
        decoder = LengthPrefixedDecoder(cfg.max_rpc_size)
        router = self.router
        while True:
            data = await stream.receive_some(_READ)
            if not data:
                if decoder.buffered:
                    log.info("peer %s: gossip stream ended inside an RPC", peer)
                return
            decoder.receive_data(bytes(data))
            now = trio.current_time()
            # raises DecodeError on a bad frame: the host logs it, naming the
            # peer and the reason, and resets this stream
            while (frame := decoder.next_message()) is not None:
                router.handle_frame(peer, frame, now)
            self._flush()

    # ------------------------------------------------------------ router outputs

    def _flush(self) -> None:
        router = self.router
        while True:
            outgoing = router.take_outgoing()
            events = router.take_events()
            if not outgoing and not events:
                return
            links = self._links
            for peer, frame in outgoing:
                link = links.get(peer)
                if link is not None:
                    link.writer.enqueue(frame)
            for event in events:
                if isinstance(event, MessageDelivered):
                    for sub in self._subscriptions.get(event.message.topic, ()):
                        if not sub._deliver(event.message):
                            router.note_dropped(event.message.propagation_source, "subscription_full",
                                                trio.current_time())
                elif isinstance(event, ValidationRequested):
                    self._validate(event.message)
                elif isinstance(event, PeersExchanged):
                    self._peer_exchange(event)

    def _validate(self, message: GossipMessage) -> None:
        validator = self._validators.get(message.topic)
        if validator is None:  # removed while the message was pending
            self.router.report_validation(message.message_id, ValidationResult.ACCEPT, trio.current_time())
            return
        try:
            result = validator(message)
        except Exception:
            log.exception("validator of %r failed; message ignored", message.topic)
            result = ValidationResult.IGNORE
        if isinstance(result, ValidationResult):
            self.router.report_validation(message.message_id, result, trio.current_time())
        elif self._nursery is not None:
            self._nursery.start_soon(self._await_validation, message, result)

    async def _await_validation(self, message: GossipMessage, pending: Awaitable[ValidationResult]) -> None:
        result = ValidationResult.IGNORE
        with trio.move_on_after(self.config.validation_timeout) as scope:
            try:
                result = await pending
            except Exception:
                log.exception("validator of %r failed; message ignored", message.topic)
        if scope.cancelled_caught:
            log.info("validator of %r took over %.1f s; message ignored", message.topic, self.config.validation_timeout)
        if not isinstance(result, ValidationResult):
            log.warning("validator of %r returned %r; message ignored", message.topic, result)
            result = ValidationResult.IGNORE
        self.router.report_validation(message.message_id, result, trio.current_time())
        self._flush()

    def _peer_exchange(self, event: PeersExchanged) -> None:
        """Dial the peers a trusted pruner offered: at the addresses of their
        signed peer records when the offer carries them, else at addresses
        the peerstore already knows (none: the peer is not dialled)."""
        for px in event.peers:
            peer = px_peer_id(px)
            if peer is None or peer == self.host.peer_id or self.host.connection(peer) is not None:
                continue
            try:
                record = open_px_record(px, peer)
            except InvalidPeerRecord as exc:
                log.info("peer %s: peer exchange record for %s refused: %s", event.pruned_by, peer, exc)
                continue
            if record is not None:
                self.host.peerstore.add_addrs(peer, record.addrs)
            if not self.host.peerstore.addrs(peer) or len(self._dialing) >= PX_CONNECTORS:
                continue
            self._dial(peer)

    def _dial(self, peer: PeerId) -> None:
        if self._nursery is None or peer in self._dialing:
            return
        self._dialing.add(peer)
        self._nursery.start_soon(self._connect, peer)

    async def _connect(self, peer: PeerId) -> None:
        try:
            with trio.move_on_after(self.host.config.connection_timeout * 2):
                await self.host.connect(peer)
        except (GutsError, OSError) as exc:
            log.info("peer %s: could not connect: %s", peer, _reason(exc))
        finally:
            self._dialing.discard(peer)

    def _connect_direct(self) -> None:
        for peer in self.config.direct_peers:
            if self.host.connection(peer) is None and self.host.peerstore.addrs(peer):
                self._dial(peer)

    # ------------------------------------------------------------ API

    def subscribe(self, topic: str, *, buffer: int = 1024, max_bytes: int = 16 << 20) -> Subscription:
        """Join ``topic`` and return its messages, at most ``buffer`` of them
        and ``max_bytes`` of payload waiting to be read (the rest dropped
        and counted).

        Raises:
            LocalProtocolError: empty or over-long topic.
        """
        sub = Subscription(topic, buffer, self._unsubscribe, max_bytes)
        subs = self._subscriptions.get(topic)
        if subs is None:
            self.router.subscribe(topic, trio.current_time())
            subs = self._subscriptions[topic] = []
            self._flush()
        subs.append(sub)
        if self._nursery is None and self._registered:
            sub._end()  # stopped: nothing will come
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.topic)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if not subs:
            del self._subscriptions[sub.topic]
            self.router.unsubscribe(sub.topic, trio.current_time())
            self._flush()

    async def publish(self, topic: str, data: bytes, *, limit: int | None = None) -> bytes:
        """Publish ``data`` on ``topic``; return the message id.

        Works whether or not we are subscribed (flood publishing sends it to
        every known subscriber above the publish threshold). ``limit`` sends
        it to at most that many topic peers, mesh first (see
        :meth:`~guts.gossip.router.GossipRouter.publish`).

        Raises:
            LocalProtocolError: payload over ``max_message_size``, bad topic,
                or (StrictNoSign) a duplicate.
        """
        msg_id = self.router.publish(topic, bytes(data), trio.current_time(), limit=limit)
        self._flush()
        await trio.lowlevel.checkpoint()
        return msg_id

    def set_validator(self, topic: str, validator: Validator | None) -> None:
        """Validate every new message of ``topic`` with ``validator`` before it
        is delivered or forwarded (``None`` removes it). Reject charges the
        peer that sent the message; ignore charges nobody."""
        if validator is None:
            self._validators.pop(topic, None)
            self.router.set_validated(topic, False)
        else:
            self._validators[topic] = validator
            self.router.set_validated(topic, True)

    def mesh_peers(self, topic: str) -> list[PeerId]:
        return sorted(self.router.mesh_peers(topic), key=PeerId.to_bytes)

    def subscribers(self, topic: str) -> list[PeerId]:
        """Peers that told us they subscribe to ``topic``."""
        return sorted(self.router.subscribers(topic), key=PeerId.to_bytes)

    @property
    def peers(self) -> list[PeerId]:
        """Peers we exchange gossip with."""
        return sorted(self.router.peers, key=PeerId.to_bytes)

    @property
    def topics(self) -> list[str]:
        """Topics we are subscribed to."""
        return sorted(self._subscriptions)

    def score(self, peer: PeerId) -> float:
        return self.router.peer_score(peer, trio.current_time())

    @property
    def stats(self) -> RouterStats:
        return self.router.stats

    def drop_counts(self) -> dict[str, int]:
        """Messages not delivered since start, by reason (see
        :attr:`RouterStats.dropped`), plus ``send_queue_full``: RPC frames to
        peers dropped because the peer's send queue was full."""
        counts = dict(self.router.stats.dropped)
        sent = self._send_dropped + sum(link.writer.dropped for link in self._links.values())
        if sent:
            counts["send_queue_full"] = sent
        return counts

    def dropped(self, peer: PeerId) -> int:
        """RPCs to ``peer`` dropped because its send queue was full."""
        link = self._links.get(peer)
        return link.writer.dropped if link is not None else 0


#: Heartbeats between attempts to reconnect direct peers (the spec suggests 5 minutes).
DIRECT_CONNECT_TICKS = 300
#: Dials from peer exchange at once (js's GossipsubConnectors).
PX_CONNECTORS = 8


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def open_gossipsub(
    host: Host, config: GossipConfig | None = None, *, rng: random.Random | None = None
) -> AsyncIterator[Gossipsub]:
    """Run gossipsub on ``host`` for the duration of the block.

    An exception raised in the block comes out as itself, not wrapped in the
    nursery's exception group, when it is the only one.
    """
    gossip = Gossipsub(host, config, rng=rng)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.run)
            try:
                yield gossip
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
