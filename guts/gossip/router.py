"""The gossipsub router: a sans-IO state machine (gossipsub v1.0, v1.1, v1.2).

Theory of operation. The router never does I/O and never reads a clock:
every input carries ``now`` (seconds on any monotonic scale) and the caller
drains the outputs after each input::

    inputs                                  outputs
    add_peer / remove_peer                  take_outgoing() -> [(peer, RPC frame)]
    subscribe / unsubscribe / publish       take_events()   -> [MessageDelivered |
    handle_frame(peer, frame, now)                              ValidationRequested |
    report_validation(msg_id, result, now)                      PeersExchanged]
    heartbeat(now)

Everything a peer is sent during one input is coalesced into one RPC per
peer (control piggybacks on messages), split only where a frame would pass
``max_rpc_size``.

State, per the spec: ``peers`` (those we have an outbound stream to, with
the protocol it negotiated), the topics each peer is subscribed to, our
subscriptions, ``mesh[topic]`` and ``fanout[topic]``, prune backoffs, the
message cache, the seen cache, IWANT promises and the peer score.

A received message goes: graylist check (the whole RPC) -> size and
signature-policy fields -> message id -> seen? (a duplicate only feeds the
score) -> signature -> seen -> IDONTWANT to the mesh if large -> the
application's validator if the topic has one (:class:`ValidationRequested`,
answered by :meth:`report_validation`) -> cache, deliver, forward to the
mesh. Bad messages are dropped and their sender charged through the score
(P4); misbehaviour in control messages is charged through P7.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from guts.crypto import KeyPair
from guts.errors import ConfigError, LocalProtocolError
from guts.gossip._codec import (
    RPC,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Outbox,
    Prune,
    PxPeer,
    RawMessage,
    SubOpts,
    decode_rpc,
    message_field,
    subscription_field,
)
from guts.gossip._config import MESHSUB_V10, MESHSUB_V11, GossipConfig
from guts.gossip._events import (
    GossipMessage,
    MessageDelivered,
    PeersExchanged,
    RouterEvent,
    RouterStats,
    ValidationRequested,
    ValidationResult,
)
from guts.gossip._promises import Promises
from guts.gossip._signing import (
    AuthorCache,
    InvalidMessage,
    MessageIdFn,
    Rejection,
    SignaturePolicy,
    anonymous_message,
    check_author,
    default_message_id,
    hash_message_id,
    sign_message,
    verify_signature,
)
from guts.gossip.mcache import MessageCache, SeenCache
from guts.gossip.mesh import gossip_peers, maintain_fanout, maintain_mesh
from guts.gossip.score import PeerScore, RejectReason
from guts.peer import PeerId

__all__ = [
    "GossipMessage",
    "GossipRouter",
    "MessageDelivered",
    "PeersExchanged",
    "RouterEvent",
    "RouterStats",
    "ValidationRequested",
    "ValidationResult",
]

log = logging.getLogger("guts.gossip")

#: Heartbeats between sweeps of expired backoffs (js's GossipsubPruneBackoffTicks).
BACKOFF_CLEAN_TICKS = 15
#: Rejected messages logged at INFO per peer and heartbeat (the rest at DEBUG).
REJECTIONS_LOGGED = 3
#: Longest backoff we honour from a PRUNE, in seconds.
MAX_BACKOFF = 3600.0


@dataclass(slots=True)
class _Peer:
    protocol: str
    outbound: bool
    topics: set[str] = field(default_factory=set)
    dont_send: dict[bytes, int] = field(default_factory=dict)  # IDONTWANT id -> heartbeat tick
    ihave_count: int = 0  # IHAVE messages received this heartbeat
    iasked: int = 0  # ids we asked this peer for this heartbeat
    iwant_count: int = 0  # IWANT messages received this heartbeat
    idontwant_count: int = 0
    spammed_iwant: bool = False
    warned_topics: bool = False
    rejections_logged: int = 0  # this heartbeat

    @property
    def v11(self) -> bool:  # backoff and peer exchange
        return self.protocol != MESHSUB_V10

    @property
    def v12(self) -> bool:  # IDONTWANT
        return self.protocol not in (MESHSUB_V10, MESHSUB_V11)


@dataclass(slots=True)
class _Pending:
    source: PeerId
    raw: RawMessage
    message: GossipMessage


class GossipRouter:
    """One node's gossipsub router.

    Args:
        local: our peer id.
        keypair: our identity, to sign what we publish (StrictSign); may be
            ``None`` under StrictNoSign.
        config: parameters.
        rng: randomness (peer selection, promise tracking); seed it in tests.
        seqno: the first sequence number we publish with; js and go seed it
            from the wall clock in nanoseconds, so that a restarted node does
            not reuse sequence numbers (and so message ids).
    """

    def __init__(
        self,
        local: PeerId,
        keypair: KeyPair | None,
        config: GossipConfig | None = None,
        *,
        rng: random.Random | None = None,
        seqno: int = 0,
    ) -> None:
        self.config = cfg = config or GossipConfig()
        if cfg.signature_policy is SignaturePolicy.STRICT_SIGN and keypair is None:
            raise ConfigError("StrictSign needs a keypair to sign with")
        self.local = local
        self._keypair = keypair
        self._rng = rng or random.Random()
        self._seqno = seqno
        self._message_id: MessageIdFn = cfg.message_id or (
            default_message_id if cfg.signature_policy is SignaturePolicy.STRICT_SIGN else hash_message_id
        )
        self._peers: dict[PeerId, _Peer] = {}
        self._topics: dict[str, set[PeerId]] = {}  # topic -> peers subscribed to it
        self._subscriptions: set[str] = set()
        self._validated: set[str] = set()  # topics with an application validator
        self._mesh: dict[str, set[PeerId]] = {}
        self._fanout: dict[str, set[PeerId]] = {}
        self._fanout_lastpub: dict[str, float] = {}
        self._backoff: dict[str, dict[PeerId, float]] = {}
        self._direct = set(cfg.direct_peers)
        self.mcache: MessageCache[PeerId] = MessageCache(cfg.history_length, cfg.history_gossip)
        self.seen = SeenCache(cfg.seen_ttl)
        self.score: PeerScore[PeerId] = PeerScore(cfg.score_params)
        self._promises: Promises[PeerId] = Promises(cfg.iwant_followup_time, self._rng)
        self._pending: dict[bytes, _Pending] = {}
        self._authors = AuthorCache()
        self._outbox: dict[PeerId, Outbox] = {}
        self._events: list[RouterEvent] = []
        self._ticks = 0
        self._last_decay: float | None = None
        self.stats = RouterStats()

    # ------------------------------------------------------------ outputs

    def take_outgoing(self) -> list[tuple[PeerId, bytes]]:
        """RPC frames (without length prefix) to send, in order, per peer."""
        if not self._outbox:
            return []
        limit = self.config.max_rpc_size
        out = [(peer, frame) for peer, box in self._outbox.items() for frame in box.frames(limit)]
        self._outbox = {}
        return out

    def take_events(self) -> list[RouterEvent]:
        events, self._events = self._events, []
        return events

    def _box(self, peer: PeerId) -> Outbox:
        box = self._outbox.get(peer)
        if box is None:
            box = self._outbox[peer] = Outbox()
        return box

    # ------------------------------------------------------------ queries

    @property
    def peers(self) -> list[PeerId]:
        return list(self._peers)

    @property
    def subscriptions(self) -> set[str]:
        return set(self._subscriptions)

    def protocol(self, peer: PeerId) -> str | None:
        state = self._peers.get(peer)
        return state.protocol if state is not None else None

    def mesh_peers(self, topic: str) -> set[PeerId]:
        return set(self._mesh.get(topic, ()))

    def fanout_peers(self, topic: str) -> set[PeerId]:
        return set(self._fanout.get(topic, ()))

    def subscribers(self, topic: str) -> set[PeerId]:
        """Peers that told us they subscribe to ``topic``."""
        return set(self._topics.get(topic, ()))

    def peer_topics(self, peer: PeerId) -> set[str]:
        state = self._peers.get(peer)
        return set(state.topics) if state is not None else set()

    def dont_send_count(self, peer: PeerId) -> int:
        """How many message ids ``peer`` currently asked us not to send (IDONTWANT)."""
        state = self._peers.get(peer)
        return len(state.dont_send) if state is not None else 0

    def peer_score(self, peer: PeerId, now: float) -> float:
        return self.score.score(peer, now)

    def backoff(self, topic: str, peer: PeerId) -> float | None:
        """When our backoff of ``peer`` in ``topic`` ends, if it is on."""
        return self._backoff.get(topic, {}).get(peer)

    # ------------------------------------------------------------ peers

    def add_peer(self, peer: PeerId, protocol: str, *, outbound: bool, ips: Iterable[str] = (), now: float) -> None:
        """A peer we can send to: our outbound stream to it runs ``protocol``.

        Args:
            outbound: whether *we* dialled the connection (the v1.1 outbound
                mesh quota counts these).
            ips: its IP addresses, for the colocation score (P6).
        """
        if peer in self._peers or peer == self.local:
            return
        self._peers[peer] = _Peer(protocol, outbound)
        self.score.add_peer(peer, ips)
        if self._subscriptions:  # the hello: our subscriptions
            self._box(peer).subscriptions.extend(
                subscription_field(SubOpts(True, t)) for t in sorted(self._subscriptions)
            )

    def remove_peer(self, peer: PeerId, now: float) -> None:
        state = self._peers.pop(peer, None)
        if state is None:
            return
        for topic in state.topics:
            peers = self._topics.get(topic)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._topics[topic]
        for peers in self._mesh.values():
            peers.discard(peer)
        for peers in self._fanout.values():
            peers.discard(peer)
        self._outbox.pop(peer, None)
        self.score.remove_peer(peer, now)

    def penalize(self, peer: PeerId, count: float = 1.0) -> None:
        """Charge ``peer`` behavioural penalties (P7) for misbehaviour the
        caller saw (for instance never reading what we send)."""
        if peer in self._peers:
            self.score.add_penalty(peer, count)

    def _eligible(self, peer: PeerId, topic: str, now: float) -> bool:
        """May we graft ``peer`` into ``topic``'s mesh now?"""
        return (
            peer not in self._direct
            and not self._backed_off(topic, peer, now)
            and self.score.score(peer, now) >= 0
        )

    def _backed_off(self, topic: str, peer: PeerId, now: float) -> bool:
        expiry = self._backoff.get(topic, {}).get(peer)
        return expiry is not None and now < expiry + self.config.backoff_slack * self.config.heartbeat_interval

    def _add_backoff(self, peer: PeerId, topic: str, seconds: float, now: float) -> None:
        per_topic = self._backoff.setdefault(topic, {})
        expiry = now + seconds
        if per_topic.get(peer, 0.0) < expiry:
            per_topic[peer] = expiry

    # ------------------------------------------------------------ our subscriptions

    def set_validated(self, topic: str, validated: bool) -> None:
        """Whether messages on ``topic`` wait for :meth:`report_validation`."""
        if validated:
            self._validated.add(topic)
        else:
            self._validated.discard(topic)

    def subscribe(self, topic: str, now: float) -> None:
        """JOIN(topic): announce it to every peer and build a mesh."""
        if topic in self._subscriptions:
            return
        self._check_topic(topic)
        self._subscriptions.add(topic)
        sub = subscription_field(SubOpts(True, topic))
        for peer in self._peers:
            self._box(peer).subscriptions.append(sub)
        mesh: set[PeerId] = set()
        for peer in self._fanout.pop(topic, set()):
            if self._eligible(peer, topic, now):
                mesh.add(peer)
        self._fanout_lastpub.pop(topic, None)
        if len(mesh) < self.config.d:
            candidates = [p for p in self._topics.get(topic, ()) if p not in mesh and self._eligible(p, topic, now)]
            self._rng.shuffle(candidates)
            mesh.update(candidates[: self.config.d - len(mesh)])
        self._mesh[topic] = mesh
        for peer in mesh:
            self.score.graft(peer, topic, now)
            self._box(peer).graft.append(Graft(topic))

    def unsubscribe(self, topic: str, now: float) -> None:
        """LEAVE(topic): tell every peer, PRUNE the mesh (with the short backoff)."""
        if topic not in self._subscriptions:
            return
        self._subscriptions.discard(topic)
        sub = subscription_field(SubOpts(False, topic))
        for peer in self._peers:
            self._box(peer).subscriptions.append(sub)
        for peer in self._mesh.pop(topic, set()):
            self._box(peer).prune.append(self._make_prune(peer, topic, do_px=False, unsubscribe=True, now=now))

    def _check_topic(self, topic: str) -> None:
        if not topic or len(topic.encode()) > self.config.max_topic_length:
            raise LocalProtocolError(f"topic must be 1 to {self.config.max_topic_length} bytes")

    # ------------------------------------------------------------ publishing

    def publish(self, topic: str, data: bytes, now: float) -> bytes:
        """Sign (under StrictSign) and send a message; return its id.

        Raises:
            LocalProtocolError: the payload is over ``max_message_size``, the
                topic is empty or too long, or (StrictNoSign) the same data
                was published within ``seen_ttl``.
        """
        cfg = self.config
        if len(data) > cfg.max_message_size:
            raise LocalProtocolError(f"message of {len(data)} bytes exceeds the limit of {cfg.max_message_size}")
        self._check_topic(topic)
        if cfg.signature_policy is SignaturePolicy.STRICT_SIGN:
            assert self._keypair is not None
            self._seqno += 1
            raw = sign_message(self._keypair, topic, bytes(data), self._seqno)
        else:
            raw = anonymous_message(topic, bytes(data))
        msg_id = self._message_id(raw)
        if not self.seen.add(msg_id, now):
            raise LocalProtocolError("this message was already published (same message id)")
        self.mcache.put(msg_id, raw)
        self._promises.delivered(msg_id)
        field_bytes = message_field(raw.encoded)
        for peer in self._publish_targets(topic, now):
            self._box(peer).messages.append(field_bytes)
        self.stats.messages_published += 1
        if cfg.emit_self and topic in self._subscriptions:
            author = self.local if raw.from_peer is not None else None
            self._events.append(MessageDelivered(self._gossip_message(raw, msg_id, None, author)))
        return msg_id

    def _publish_targets(self, topic: str, now: float) -> set[PeerId]:
        cfg = self.config
        subscribed = self._topics.get(topic, set())
        threshold = cfg.score_thresholds.publish_threshold
        targets = {p for p in subscribed if p in self._direct}
        if cfg.flood_publish:
            targets.update(p for p in subscribed if self.score.score(p, now) >= threshold)
            return targets
        mesh = self._mesh.get(topic)
        if mesh is not None:
            targets.update(mesh)
            if len(mesh) < cfg.d:
                extra = [p for p in subscribed if p not in mesh and p not in self._direct
                         and self.score.score(p, now) >= threshold]
                self._rng.shuffle(extra)
                targets.update(extra[: cfg.d - len(mesh)])
            return targets
        fanout = self._fanout.get(topic)
        if not fanout:
            candidates = [p for p in subscribed if p not in self._direct and self.score.score(p, now) >= threshold]
            self._rng.shuffle(candidates)
            fanout = set(candidates[: cfg.d])
            if fanout:
                self._fanout[topic] = fanout
        self._fanout_lastpub[topic] = now
        targets.update(fanout or ())
        return targets

    # ------------------------------------------------------------ receiving

    def graylisted(self, peer: PeerId, now: float) -> bool:
        """Whether ``peer``'s RPCs are dropped unread (score below the graylist threshold)."""
        return peer not in self._direct and self.score.score(peer, now) < self.config.score_thresholds.graylist_threshold

    def handle_frame(self, peer: PeerId, frame: bytes, now: float) -> None:
        """Decode and process one RPC frame from ``peer``; a graylisted
        peer's frames are dropped before they are even decoded.

        Raises:
            DecodeError: the frame is not a valid RPC within ``rpc_limits``.
        """
        state = self._peers.get(peer)
        if state is None or not self._admit(peer, now):
            return
        self._process(peer, state, decode_rpc(frame, self.config.rpc_limits), now)

    def handle_rpc(self, peer: PeerId, rpc: RPC, now: float) -> None:
        """Process one decoded RPC from ``peer`` (which must have been added)."""
        state = self._peers.get(peer)
        if state is not None and self._admit(peer, now):
            self._process(peer, state, rpc, now)

    def _admit(self, peer: PeerId, now: float) -> bool:
        self.stats.rpcs_received += 1
        if self.graylisted(peer, now):
            self.stats.rpcs_graylisted += 1
            log.debug("peer %s: graylisted, RPC dropped", peer)
            return False
        return True

    def _process(self, peer: PeerId, state: _Peer, rpc: RPC, now: float) -> None:
        for sub in rpc.subscriptions:
            self._on_subscription(peer, state, sub, now)
        for msg in rpc.messages:
            self._on_message(peer, msg, now)
        control = rpc.control
        if control is not None:
            if control.ihave:
                self._on_ihave(peer, state, control.ihave, now)
            if control.iwant:
                self._on_iwant(peer, state, control.iwant, now)
            if control.graft:
                self._on_graft(peer, state, control.graft, now)
            if control.prune:
                self._on_prune(peer, control.prune, now)
            if control.idontwant:
                self._on_idontwant(state, control.idontwant)

    def _on_subscription(self, peer: PeerId, state: _Peer, sub: SubOpts, now: float) -> None:
        topic = sub.topic
        if sub.subscribe:
            if topic in state.topics:
                return
            if len(state.topics) >= self.config.max_topics_per_peer or len(topic.encode()) > self.config.max_topic_length:
                if not state.warned_topics:
                    state.warned_topics = True
                    log.info("peer %s: subscription to an over-long topic or beyond %d topics ignored",
                             peer, self.config.max_topics_per_peer)
                return
            state.topics.add(topic)
            self._topics.setdefault(topic, set()).add(peer)
            mesh = self._mesh.get(topic)
            if (
                self.config.graft_on_subscribe
                and mesh is not None
                and len(mesh) < self.config.d_low
                and self._eligible(peer, topic, now)
            ):
                mesh.add(peer)
                self.score.graft(peer, topic, now)
                self._box(peer).graft.append(Graft(topic))
        elif topic in state.topics:
            state.topics.discard(topic)
            peers = self._topics.get(topic)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._topics[topic]
            mesh = self._mesh.get(topic)
            if mesh is not None and peer in mesh:
                mesh.discard(peer)
                self.score.prune(peer, topic, penalize=False)
            fanout = self._fanout.get(topic)
            if fanout is not None:
                fanout.discard(peer)

    def _reject(self, source: PeerId, msg_id: bytes | None, topic: str, why: Rejection | str, now: float) -> None:
        reason = why.value if isinstance(why, Rejection) else why
        self.stats.messages_rejected += 1
        self.stats.rejections[reason] = self.stats.rejections.get(reason, 0) + 1
        self.score.reject_message(source, msg_id, topic, RejectReason.INVALID if msg_id else RejectReason.UNTRACKED, now)
        state = self._peers.get(source)
        if state is not None:  # a few log lines per peer and heartbeat, not one per message of a flood
            state.rejections_logged += 1
            if state.rejections_logged > REJECTIONS_LOGGED:
                log.debug("peer %s: message on %r rejected: %s", source, topic, reason)
                return
        log.info("peer %s: message on %r rejected: %s", source, topic, reason)

    def _on_message(self, source: PeerId, raw: RawMessage, now: float) -> None:
        cfg = self.config
        stats = self.stats
        stats.messages_received += 1
        topic = raw.topic
        if topic not in self._subscriptions:
            stats.messages_not_subscribed += 1
            return
        if raw.size > cfg.max_message_size:
            self._reject(source, None, topic, Rejection.TOO_LARGE, now)
            return
        try:
            author = check_author(raw, cfg.signature_policy, self._authors)
            msg_id = self._message_id(raw)
        except InvalidMessage as exc:
            if exc.reason is Rejection.UNSUPPORTED_KEY:
                stats.messages_ignored += 1
                return
            self._reject(source, None, topic, exc.reason, now)
            return
        except Exception as exc:  # a custom message id function failed
            self._reject(source, None, topic, f"message id function failed: {exc!r}", now)
            return
        if len(msg_id) > cfg.max_message_id_length:
            self._reject(source, None, topic, "message id too long", now)
            return
        if msg_id in self.seen:
            stats.messages_duplicate += 1
            self.score.duplicate_message(source, msg_id, topic, now)
            self._promises.delivered(msg_id)
            return
        if author is not None:
            if author.peer_id == self.local:
                # ours from before a restart, or a forgery: either way not
                # delivered nor forwarded, but a relay cannot tell, so nobody
                # is charged (go charges P4 here)
                self.seen.add(msg_id, now)
                stats.messages_ignored += 1
                log.debug("peer %s: message on %r claims to be ours; ignored", source, topic)
                return
            if not verify_signature(raw, author.public_key):
                self._reject(source, None, topic, Rejection.BAD_SIGNATURE, now)
                return
        self.seen.add(msg_id, now)
        self.score.validate_message(msg_id, now)
        self._promises.delivered(msg_id)
        if raw.size >= cfg.idontwant_min_data_size:
            self._send_idontwant(msg_id, topic, source)
        message = self._gossip_message(raw, msg_id, source, author.peer_id if author else None)
        if topic in self._validated:
            if len(self._pending) >= cfg.max_pending_validations:
                stats.messages_ignored += 1
                self.score.reject_message(source, msg_id, topic, RejectReason.IGNORED, now)
                log.info("peer %s: message on %r ignored: %d messages await validation", source, topic, len(self._pending))
                return
            self._pending[msg_id] = _Pending(source, raw, message)
            self._events.append(ValidationRequested(message))
            return
        self._accept(msg_id, source, raw, message, now)

    @staticmethod
    def _gossip_message(raw: RawMessage, msg_id: bytes, source: PeerId | None, author: PeerId | None) -> GossipMessage:
        return GossipMessage(
            topic=raw.topic,
            data=raw.data or b"",
            message_id=msg_id,
            author=author,
            seqno=raw.seqno,
            signature=raw.signature,
            key=raw.key,
            propagation_source=source,
            raw=raw,
        )

    def report_validation(self, msg_id: bytes, result: ValidationResult, now: float) -> bool:
        """The application's verdict on a :class:`ValidationRequested` message.

        Returns:
            False if no such message awaits validation (already reported).
        """
        pending = self._pending.pop(msg_id, None)
        if pending is None:
            return False
        if result is ValidationResult.ACCEPT:
            self._accept(msg_id, pending.source, pending.raw, pending.message, now)
        elif result is ValidationResult.REJECT:
            self._reject(pending.source, msg_id, pending.raw.topic, "rejected by the validator", now)
        else:
            self.stats.messages_ignored += 1
            self.score.reject_message(pending.source, msg_id, pending.raw.topic, RejectReason.IGNORED, now)
        return True

    def _accept(self, msg_id: bytes, source: PeerId, raw: RawMessage, message: GossipMessage, now: float) -> None:
        self.mcache.put(msg_id, raw)
        self.score.deliver_message(source, msg_id, raw.topic, now)
        self.stats.messages_delivered += 1
        self._events.append(MessageDelivered(message))
        self._forward(msg_id, raw, source, message.author)

    def _forward(self, msg_id: bytes, raw: RawMessage, source: PeerId, author: PeerId | None) -> None:
        topic = raw.topic
        targets: set[PeerId] = set(self._mesh.get(topic, ()))
        if self._direct:
            subscribed = self._topics.get(topic, ())
            targets.update(p for p in self._direct if p in subscribed)
        targets.discard(source)
        if author is not None:
            targets.discard(author)
        if not targets:
            return
        field_bytes = message_field(raw.encoded)
        peers = self._peers
        sent = 0
        for peer in targets:
            state = peers.get(peer)
            if state is None or msg_id in state.dont_send:
                continue
            self._box(peer).messages.append(field_bytes)
            sent += 1
        self.stats.messages_forwarded += sent

    def _send_idontwant(self, msg_id: bytes, topic: str, source: PeerId) -> None:
        entry = IDontWant((msg_id,))
        for peer in self._mesh.get(topic, ()):
            state = self._peers.get(peer)
            if peer != source and state is not None and state.v12:
                self._box(peer).idontwant.append(entry)
                self.stats.idontwant_sent += 1

    # ------------------------------------------------------------ control

    def _on_ihave(self, peer: PeerId, state: _Peer, ihaves: tuple[IHave, ...], now: float) -> None:
        cfg = self.config
        if self.score.score(peer, now) < cfg.score_thresholds.gossip_threshold:
            self.stats.ihave_ignored += 1
            return
        state.ihave_count += 1
        if state.ihave_count > cfg.max_ihave_messages or state.iasked >= cfg.max_ihave_length:
            self.stats.ihave_ignored += 1
            log.debug("peer %s: IHAVE beyond this heartbeat's limits ignored", peer)
            return
        wanted: dict[bytes, None] = {}
        processed = 0
        for ihave in ihaves:
            if ihave.topic not in self._mesh:
                continue
            for msg_id in ihave.message_ids:
                if processed >= cfg.max_ihave_length:
                    break
                processed += 1
                if msg_id not in self.seen and len(msg_id) <= cfg.max_message_id_length:
                    wanted[msg_id] = None
        if not wanted:
            return
        ask = list(wanted)
        self._rng.shuffle(ask)
        ask = ask[: cfg.max_ihave_length - state.iasked]
        state.iasked += len(ask)
        self._box(peer).iwant.append(IWant(tuple(ask)))
        self._promises.add(peer, ask, now)

    def _on_iwant(self, peer: PeerId, state: _Peer, iwants: tuple[IWant, ...], now: float) -> None:
        cfg = self.config
        if self.score.score(peer, now) < cfg.score_thresholds.gossip_threshold:
            self.stats.iwant_ignored += 1
            return
        state.iwant_count += 1
        if state.iwant_count > cfg.max_iwant_messages:
            state.spammed_iwant = True
            self.stats.iwant_ignored += 1
            return
        box = None
        processed = 0
        for iwant in iwants:
            for msg_id in iwant.message_ids:
                if processed >= cfg.max_ihave_length:
                    break
                processed += 1
                got = self.mcache.get_for_peer(msg_id, peer)
                if got is None:
                    continue
                raw, count = got
                if count > cfg.gossip_retransmission:
                    state.spammed_iwant = True
                    self.stats.iwant_ignored += 1
                    continue
                if box is None:
                    box = self._box(peer)
                box.messages.append(message_field(raw.encoded))
                self.stats.iwant_answered += 1

    def _on_graft(self, peer: PeerId, state: _Peer, grafts: tuple[Graft, ...], now: float) -> None:
        cfg = self.config
        prune: list[str] = []
        do_px = cfg.do_px
        score = self.score.score(peer, now)
        for graft in grafts:
            topic = graft.topic
            mesh = self._mesh.get(topic)
            if mesh is None:  # not our topic: ignore, and leak no peers through PX
                do_px = False
                continue
            if peer in mesh:
                continue
            expiry = self._backoff.get(topic, {}).get(peer)
            if peer in self._direct:
                log.info("peer %s: GRAFT from a direct peer refused", peer)
                prune.append(topic)
                do_px = False
            elif expiry is not None and now < expiry:
                log.info("peer %s: GRAFT on %r during backoff; penalised", peer, topic)
                self.score.add_penalty(peer, 1)
                if now < expiry + cfg.graft_flood_threshold - cfg.prune_backoff:
                    self.score.add_penalty(peer, 1)  # far too early: a flood
                self._add_backoff(peer, topic, cfg.prune_backoff, now)
                prune.append(topic)
                do_px = False
            elif score < 0:
                prune.append(topic)
                do_px = False
                self._add_backoff(peer, topic, cfg.prune_backoff, now)
            elif len(mesh) >= cfg.d_high and not state.outbound:
                prune.append(topic)
                self._add_backoff(peer, topic, cfg.prune_backoff, now)
            else:
                mesh.add(peer)
                self.score.graft(peer, topic, now)
                continue
            self.stats.grafts_refused += 1
        if prune:
            box = self._box(peer)
            for topic in prune:
                box.prune.append(self._make_prune(peer, topic, do_px=do_px, unsubscribe=False, now=now))

    def _on_prune(self, peer: PeerId, prunes: tuple[Prune, ...], now: float) -> None:
        cfg = self.config
        score = self.score.score(peer, now)
        for prune in prunes:
            topic = prune.topic
            mesh = self._mesh.get(topic)
            if mesh is None:
                continue
            if peer in mesh:
                mesh.discard(peer)
                self.score.prune(peer, topic)
            backoff = float(prune.backoff) if prune.backoff else cfg.prune_backoff
            self._add_backoff(peer, topic, min(backoff, MAX_BACKOFF), now)
            if prune.peers and score >= cfg.score_thresholds.accept_px_threshold:
                offered = [px for px in prune.peers[: cfg.prune_peers] if px.peer_id != self.local.to_bytes()]
                if offered:
                    self._events.append(PeersExchanged(topic, peer, tuple(offered)))

    def _on_idontwant(self, state: _Peer, idontwants: tuple[IDontWant, ...]) -> None:
        limit = self.config.idontwant_max_messages
        for entry in idontwants:
            for msg_id in entry.message_ids:
                if state.idontwant_count >= limit:
                    return
                state.idontwant_count += 1
                state.dont_send[msg_id] = self._ticks
                self.stats.idontwant_received += 1

    def _make_prune(self, peer: PeerId, topic: str, *, do_px: bool, unsubscribe: bool, now: float) -> Prune:
        self.score.prune(peer, topic)
        state = self._peers.get(peer)
        if state is None or not state.v11:
            return Prune(topic)  # v1.0: no backoff, no PX
        cfg = self.config
        backoff = cfg.unsubscribe_backoff if unsubscribe else cfg.prune_backoff
        self._add_backoff(peer, topic, backoff, now)
        peers: tuple[PxPeer, ...] = ()
        if do_px:
            candidates = [
                p for p in self._topics.get(topic, ()) if p != peer and self.score.score(p, now) >= 0
            ]
            self._rng.shuffle(candidates)
            peers = tuple(PxPeer(p.to_bytes()) for p in candidates[: cfg.prune_peers])
        return Prune(topic, peers, int(backoff))

    # ------------------------------------------------------------ heartbeat

    def heartbeat(self, now: float) -> None:
        """Counters and decay, mesh and fanout maintenance (:mod:`guts.gossip.mesh`),
        gossip emission, then the message cache moves on one window
        (gossipsub-v1.0.md, "Heartbeat")."""
        cfg = self.config
        self._ticks += 1
        self._housekeeping(now)
        scores: dict[PeerId, float] = {}

        def score_of(peer: PeerId) -> float:
            value = scores.get(peer)
            if value is None:
                value = scores[peer] = self.score.score(peer, now)
            return value

        tograft: dict[PeerId, list[str]] = {}
        toprune: dict[PeerId, list[str]] = {}
        no_px: set[PeerId] = set()
        gossip_to: dict[str, set[PeerId]] = {}
        opportunistic = self._ticks % cfg.opportunistic_graft_ticks == 0
        for topic, mesh in self._mesh.items():
            changes = maintain_mesh(
                mesh,
                self._topics.get(topic, ()),
                cfg,
                self._rng,
                score_of=score_of,
                backed_off=lambda peer, topic=topic: self._backed_off(topic, peer, now),  # type: ignore[misc]
                is_outbound=self._is_outbound,
                excluded=self._direct,
                opportunistic=opportunistic,
            )
            for peer in changes.grafted:
                self.score.graft(peer, topic, now)
                tograft.setdefault(peer, []).append(topic)
            for peer in changes.pruned:
                toprune.setdefault(peer, []).append(topic)
            no_px |= changes.no_px
            gossip_to[topic] = changes.gossip
        for topic in [t for t, last in self._fanout_lastpub.items() if last + cfg.fanout_ttl < now]:
            self._fanout.pop(topic, None)
            del self._fanout_lastpub[topic]
        for topic, fanout in self._fanout.items():
            gossip_to[topic] = maintain_fanout(
                fanout, self._topics.get(topic, set()), cfg, self._rng, score_of=score_of, excluded=self._direct
            )
        self._emit_gossip(gossip_to)
        for peer, topics in tograft.items():
            self._box(peer).graft.extend(Graft(t) for t in topics)
        for peer, topics in toprune.items():
            box = self._box(peer)
            do_px = cfg.do_px and peer not in no_px
            for topic in topics:
                box.prune.append(self._make_prune(peer, topic, do_px=do_px, unsubscribe=False, now=now))
        self.mcache.shift()

    def _is_outbound(self, peer: PeerId) -> bool:
        state = self._peers.get(peer)
        return state is not None and state.outbound

    def _housekeeping(self, now: float) -> None:
        cfg = self.config
        interval = cfg.score_params.decay_interval
        if self._last_decay is None:
            self._last_decay = now
        elif now - self._last_decay >= interval * 0.99:
            self.score.refresh(now)
            self._last_decay = now
        if self._ticks % BACKOFF_CLEAN_TICKS == 0:
            slack = cfg.backoff_slack * cfg.heartbeat_interval
            for topic in list(self._backoff):
                per_topic = self._backoff[topic]
                for peer in [p for p, expiry in per_topic.items() if expiry + slack < now]:
                    del per_topic[peer]
                if not per_topic:
                    del self._backoff[topic]
        ticks = self._ticks
        for peer, state in self._peers.items():
            if state.spammed_iwant:
                log.info("peer %s: IWANT flood (beyond the per-heartbeat or retransmission limits); penalised", peer)
                self.score.add_penalty(peer, 1)
                state.spammed_iwant = False
            state.ihave_count = state.iasked = state.iwant_count = state.idontwant_count = 0
            state.rejections_logged = 0
            if state.dont_send:
                stale = [m for m, tick in state.dont_send.items() if ticks - tick >= cfg.history_length]
                for msg_id in stale:
                    del state.dont_send[msg_id]
        for peer, count in self._promises.broken(now).items():
            log.info("peer %s: %d IWANT promise(s) broken; penalised", peer, count)
            self.stats.promises_broken += count
            self.score.add_penalty(peer, count)
        self.seen.prune(now)

    def _emit_gossip(self, gossip_to: dict[str, set[PeerId]]) -> None:
        cfg = self.config
        wanted = [t for t, peers in gossip_to.items() if peers]
        if not wanted:
            return
        ids_by_topic = self.mcache.gossip_ids(wanted)
        for topic in wanted:
            ids = ids_by_topic.get(topic)
            if not ids:
                continue
            self._rng.shuffle(ids)
            for peer in gossip_peers(gossip_to[topic], cfg, self._rng):
                chosen = ids if len(ids) <= cfg.max_ihave_length else self._rng.sample(ids, cfg.max_ihave_length)
                self._box(peer).ihave.append(IHave(topic, tuple(chosen)))
