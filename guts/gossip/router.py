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

Where things are: the state, per the spec (peers and the protocol each
negotiated, the topics each peer is subscribed to, our subscriptions,
``mesh[topic]`` and ``fanout[topic]``, prune backoffs, the message and seen
caches, IWANT promises, the peer score) is one
:class:`~guts.gossip._state.RouterState`. This class takes the inputs,
publishes, and hands each part of a received RPC to the module for it:
subscriptions to :mod:`~guts.gossip._membership` (which also does JOIN and
LEAVE), messages to :mod:`~guts.gossip._messages`, control to
:mod:`~guts.gossip._control`; :mod:`~guts.gossip._heartbeat` is the
heartbeat. Each of those is a few functions over that state, so each can
be read alone.

An RPC from a graylisted peer is dropped whole, before it is decoded.
Misbehaviour is charged through the score: bad messages through P4,
misbehaviour in control messages through P7.

Floods. Each peer has a message allowance (a token bucket of
``peer_message_burst`` refilled at ``peer_message_rate`` per second,
:mod:`guts.gossip._drops`), and one in payload bytes (``peer_byte_burst``,
``peer_byte_rate``), taken from as its RPC is read, before any message is
checked or its signature verified. A message beyond it is
dropped unseen: not delivered, not forwarded, not rewarded as a first
delivery (P2), and charged ``rate_limit_penalty`` on the peer's P7 counter,
so that a sustained flood takes the peer below the graylist threshold,
where its RPCs are dropped unread. Each RPC dropped unread takes a token
too, and is charged the same when there is none: a peer that keeps
flooding while graylisted stays graylisted. :meth:`GossipRouter.graylisted_for`
says for how long, so the adapter can close the peer's gossip streams
(``graylist_disconnect_after``). Every message not delivered is counted by
reason in ``stats.dropped`` and logged at most once per peer and reason a
minute, with the count of the rest.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable

from guts.crypto import KeyPair
from guts.errors import ConfigError, LocalProtocolError
from guts.gossip import _control, _heartbeat, _membership, _messages
from guts.gossip._codec import RPC, decode_rpc
from guts.gossip._config import GossipConfig
from guts.gossip._drops import TokenBucket
from guts.gossip._events import (
    GossipMessage,
    MessageDelivered,
    PeersExchanged,
    RouterEvent,
    RouterStats,
    ValidationRequested,
    ValidationResult,
)
from guts.gossip._signing import SignaturePolicy, anonymous_message, default_message_id, hash_message_id, sign_message
from guts.gossip._state import PeerState, RouterState
from guts.gossip.mcache import MessageCache, SeenCache
from guts.gossip.score import PeerScore
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

    Raises:
        ConfigError: StrictSign without a keypair.
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
        cfg = config or GossipConfig()
        if cfg.signature_policy is SignaturePolicy.STRICT_SIGN and keypair is None:
            raise ConfigError("StrictSign needs a keypair to sign with")
        message_id = cfg.message_id or (
            default_message_id if cfg.signature_policy is SignaturePolicy.STRICT_SIGN else hash_message_id
        )
        self._state = RouterState(local, cfg, rng or random.Random(), message_id)
        self._keypair = keypair
        self._seqno = seqno

    @property
    def config(self) -> GossipConfig:
        return self._state.config

    @property
    def local(self) -> PeerId:
        return self._state.local

    @property
    def mcache(self) -> MessageCache[PeerId]:
        return self._state.mcache

    @property
    def seen(self) -> SeenCache:
        return self._state.seen

    @property
    def score(self) -> PeerScore[PeerId]:
        return self._state.score

    @property
    def stats(self) -> RouterStats:
        return self._state.stats

    # ------------------------------------------------------------ outputs

    def take_outgoing(self) -> list[tuple[PeerId, bytes]]:
        """RPC frames (without length prefix) to send, in order, per peer."""
        st = self._state
        if not st.outbox:
            return []
        limit = st.config.max_rpc_size
        out = [(peer, frame) for peer, box in st.outbox.items() for frame in box.frames(limit)]
        st.outbox = {}
        return out

    def take_events(self) -> list[RouterEvent]:
        st = self._state
        events, st.events = st.events, []
        return events

    # ------------------------------------------------------------ queries

    @property
    def peers(self) -> list[PeerId]:
        return list(self._state.peers)

    @property
    def subscriptions(self) -> set[str]:
        return set(self._state.subscriptions)

    def protocol(self, peer: PeerId) -> str | None:
        state = self._state.peers.get(peer)
        return state.protocol if state is not None else None

    def mesh_peers(self, topic: str) -> set[PeerId]:
        return set(self._state.mesh.get(topic, ()))

    def fanout_peers(self, topic: str) -> set[PeerId]:
        return set(self._state.fanout.get(topic, ()))

    def subscribers(self, topic: str) -> set[PeerId]:
        """Peers that told us they subscribe to ``topic``."""
        return set(self._state.topics.get(topic, ()))

    def peer_topics(self, peer: PeerId) -> set[str]:
        state = self._state.peers.get(peer)
        return set(state.topics) if state is not None else set()

    def dont_send_count(self, peer: PeerId) -> int:
        """How many message ids ``peer`` currently asked us not to send (IDONTWANT)."""
        state = self._state.peers.get(peer)
        return len(state.dont_send) if state is not None else 0

    def peer_score(self, peer: PeerId, now: float) -> float:
        return self._state.score.score(peer, now)

    def backoff(self, topic: str, peer: PeerId) -> float | None:
        """When our backoff of ``peer`` in ``topic`` ends, if it is on."""
        return self._state.backoff.get(topic, {}).get(peer)

    # ------------------------------------------------------------ peers

    def add_peer(self, peer: PeerId, protocol: str, *, outbound: bool, ips: Iterable[str] = (), now: float) -> None:
        """A peer we can send to: our outbound stream to it runs ``protocol``.

        Args:
            outbound: whether *we* dialled the connection (the v1.1 outbound
                mesh quota counts these).
            ips: its IP addresses, for the colocation score (P6).
        """
        st = self._state
        if peer in st.peers or peer == st.local:
            return
        cfg = st.config
        bucket = bytes_bucket = None
        if cfg.peer_message_rate > 0 and peer not in st.direct:
            bucket = TokenBucket.full(cfg.peer_message_rate, cfg.peer_message_burst, now)
        if cfg.peer_byte_rate > 0 and peer not in st.direct:
            bytes_bucket = TokenBucket.full(cfg.peer_byte_rate, cfg.peer_byte_burst, now)
        st.peers[peer] = PeerState(protocol, outbound, bucket, bytes_bucket)
        st.score.add_peer(peer, ips)
        _membership.announce(st, peer)

    def remove_peer(self, peer: PeerId, now: float) -> None:
        st = self._state
        state = st.peers.pop(peer, None)
        if state is None:
            return
        for topic in state.topics:
            peers = st.topics.get(topic)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del st.topics[topic]
        for peers in st.mesh.values():
            peers.discard(peer)
        for peers in st.fanout.values():
            peers.discard(peer)
        st.outbox.pop(peer, None)
        st.graylisted_since.pop(peer, None)
        st.score.remove_peer(peer, now)

    def penalize(self, peer: PeerId, count: float = 1.0) -> None:
        """Charge ``peer`` behavioural penalties (P7) for misbehaviour the
        caller saw (for instance never reading what we send)."""
        st = self._state
        if peer in st.peers:
            st.score.add_penalty(peer, count)

    # ------------------------------------------------------------ our subscriptions

    def set_validated(self, topic: str, validated: bool) -> None:
        """Whether messages on ``topic`` wait for :meth:`report_validation`."""
        if validated:
            self._state.validated.add(topic)
        else:
            self._state.validated.discard(topic)

    def subscribe(self, topic: str, now: float) -> None:
        """JOIN(topic): announce it to every peer and build a mesh.

        Raises:
            LocalProtocolError: the topic is empty or too long.
        """
        if topic not in self._state.subscriptions:
            self._check_topic(topic)
            _membership.join(self._state, topic, now)

    def unsubscribe(self, topic: str, now: float) -> None:
        """LEAVE(topic): tell every peer, PRUNE the mesh (with the short backoff)."""
        if topic in self._state.subscriptions:
            _membership.leave(self._state, topic, now)

    def _check_topic(self, topic: str) -> None:
        limit = self._state.config.max_topic_length
        if not topic or len(topic.encode()) > limit:
            raise LocalProtocolError(f"topic must be 1 to {limit} bytes")

    # ------------------------------------------------------------ publishing

    def publish(self, topic: str, data: bytes, now: float, *, limit: int | None = None) -> bytes:
        """Sign (under StrictSign) and send a message; return its id.

        ``limit``, when given, sends it to at most that many topic peers,
        mesh peers first, chosen at random (and to direct peers), instead of
        flood publishing or the whole mesh: for a message whose first
        receivers each do work for it (fetch a push from us), so that the
        rest of the topic learns of it from them.

        Raises:
            LocalProtocolError: the payload is over ``max_message_size``, the
                topic is empty or too long, or (StrictNoSign) the same data
                was published within ``seen_ttl``.
        """
        st = self._state
        cfg = st.config
        if len(data) > cfg.max_message_size:
            raise LocalProtocolError(f"message of {len(data)} bytes exceeds the limit of {cfg.max_message_size}")
        self._check_topic(topic)
        if cfg.signature_policy is SignaturePolicy.STRICT_SIGN:
            assert self._keypair is not None
            self._seqno += 1
            raw = sign_message(self._keypair, topic, bytes(data), self._seqno)
        else:
            raw = anonymous_message(topic, bytes(data))
        msg_id = st.message_id(raw)
        if not st.seen.add(msg_id, now):
            raise LocalProtocolError("this message was already published (same message id)")
        st.mcache.put(msg_id, raw)
        st.promises.delivered(msg_id)
        field_bytes = raw.wire
        for peer in self._publish_targets(topic, now) if limit is None else self._limited_targets(topic, now, limit):
            st.box(peer).messages.append(field_bytes)
        st.stats.messages_published += 1
        if cfg.emit_self and topic in st.subscriptions:
            author = st.local if raw.from_peer is not None else None
            st.events.append(MessageDelivered(_messages.gossip_message(raw, msg_id, None, author)))
        return msg_id

    def _limited_targets(self, topic: str, now: float, limit: int) -> set[PeerId]:
        st = self._state
        threshold = st.config.score_thresholds.publish_threshold
        subscribed = st.topics.get(topic, set())
        targets = {p for p in subscribed if p in st.direct}
        mesh = [p for p in st.mesh.get(topic, ()) if p not in st.direct]
        others = [p for p in subscribed if p not in st.direct and p not in mesh and st.score.score(p, now) >= threshold]
        st.rng.shuffle(mesh)
        st.rng.shuffle(others)
        targets.update((mesh + others)[: max(limit, 0)])
        return targets

    def _publish_targets(self, topic: str, now: float) -> set[PeerId]:
        st = self._state
        cfg = st.config
        subscribed = st.topics.get(topic, set())
        threshold = cfg.score_thresholds.publish_threshold
        targets = {p for p in subscribed if p in st.direct}
        if cfg.flood_publish:
            targets.update(p for p in subscribed if st.score.score(p, now) >= threshold)
            return targets
        mesh = st.mesh.get(topic)
        if mesh is not None:
            targets.update(mesh)
            if len(mesh) < cfg.d:
                extra = [p for p in subscribed if p not in mesh and p not in st.direct
                         and st.score.score(p, now) >= threshold]
                st.rng.shuffle(extra)
                targets.update(extra[: cfg.d - len(mesh)])
            return targets
        fanout = st.fanout.get(topic)
        if not fanout:
            candidates = [p for p in subscribed if p not in st.direct and st.score.score(p, now) >= threshold]
            st.rng.shuffle(candidates)
            fanout = set(candidates[: cfg.d])
            if fanout:
                st.fanout[topic] = fanout
        st.fanout_lastpub[topic] = now
        targets.update(fanout or ())
        return targets

    # ------------------------------------------------------------ receiving

    def graylisted(self, peer: PeerId, now: float) -> bool:
        """Whether ``peer``'s RPCs are dropped unread (score below the graylist threshold)."""
        st = self._state
        return peer not in st.direct and st.score.score(peer, now) < st.config.score_thresholds.graylist_threshold

    def handle_frame(self, peer: PeerId, frame: bytes, now: float) -> None:
        """Decode and process one RPC frame from ``peer``; a graylisted
        peer's frames are dropped before they are even decoded.

        Raises:
            DecodeError: the frame is not a valid RPC within ``rpc_limits``.
        """
        st = self._state
        state = st.peers.get(peer)
        if state is None or not self._admit(peer, now):
            return
        self._process(peer, state, decode_rpc(frame, st.config.rpc_limits), now)

    def handle_rpc(self, peer: PeerId, rpc: RPC, now: float) -> None:
        """Process one decoded RPC from ``peer`` (which must have been added)."""
        st = self._state
        state = st.peers.get(peer)
        if state is not None and self._admit(peer, now):
            self._process(peer, state, rpc, now)

    def graylisted_for(self, peer: PeerId, now: float) -> float:
        """Seconds ``peer`` has been below the graylist threshold, as the
        heartbeats saw it (0 if it is not)."""
        since = self._state.graylisted_since.get(peer)
        return 0.0 if since is None else now - since

    def note_dropped(self, peer: PeerId | None, reason: str, now: float) -> None:
        """Count (and log, bounded) a delivered message the application could
        not take, e.g. its subscription buffer was full."""
        st = self._state
        st.stats.dropped.add(reason)
        if peer is not None:
            st.drop_log.note(peer, reason, now)

    def _admit(self, peer: PeerId, now: float) -> bool:
        st = self._state
        st.stats.rpcs_received += 1
        if self.graylisted(peer, now):
            st.stats.rpcs_graylisted += 1
            st.stats.dropped.add("graylisted_rpcs")
            st.drop_log.note(peer, "graylisted", now, "RPC dropped unread")
            # an RPC unread takes a token too: a peer that goes on flooding
            # while graylisted is charged for it and stays there
            state = st.peers.get(peer)
            if state is not None and state.bucket is not None and not state.bucket.take(now):
                st.score.add_penalty(peer, st.config.rate_limit_penalty)
            return False
        return True

    def _process(self, peer: PeerId, state: PeerState, rpc: RPC, now: float) -> None:
        st = self._state
        for sub in rpc.subscriptions:
            _membership.on_subscription(st, peer, state, sub, now)
        bucket, bytes_bucket = state.bucket, state.bytes_bucket
        for msg in rpc.messages:
            if bucket is not None and not bucket.take(now):
                self._over_rate(peer, now)
                continue
            if bytes_bucket is not None and not bytes_bucket.take(now, msg.size):
                self._over_rate(peer, now, "byte_rate", "over its byte rate")
                continue
            _messages.on_message(st, peer, msg, now)
        if rpc.control is not None:
            _control.handle_control(self._state, peer, state, rpc.control, now)

    def _over_rate(self, peer: PeerId, now: float, reason: str = "rate_limited", what: str = "over its message rate") -> None:
        st = self._state
        st.stats.messages_received += 1
        st.stats.messages_rate_limited += 1
        st.stats.dropped.add(reason)
        st.score.add_penalty(peer, st.config.rate_limit_penalty)
        st.drop_log.note(peer, reason, now, what)

    def report_validation(self, msg_id: bytes, result: ValidationResult, now: float) -> bool:
        """The application's verdict on a :class:`ValidationRequested` message.

        Returns:
            False if no such message awaits validation (already reported).
        """
        return _messages.report_validation(self._state, msg_id, result, now)

    # ------------------------------------------------------------ heartbeat

    def heartbeat(self, now: float) -> None:
        """Counters and decay, mesh and fanout maintenance (:mod:`guts.gossip.mesh`),
        gossip emission, then the message cache moves on one window
        (gossipsub-v1.0.md, "Heartbeat"; :mod:`guts.gossip._heartbeat`)."""
        st = self._state
        _heartbeat.heartbeat(st, now)
        threshold = st.config.score_thresholds.graylist_threshold
        since = st.graylisted_since
        for peer in st.peers:
            if peer not in st.direct and st.score.score(peer, now) < threshold:
                since.setdefault(peer, now)
            else:
                since.pop(peer, None)
        st.drop_log.flush(now)
