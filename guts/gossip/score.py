"""Peer scoring, gossipsub v1.1 (gossipsub-v1.1.md, "Peer Scoring").

Pure: the router reports what peers do (grafts, prunes, first and duplicate
deliveries, invalid messages, misbehaviour) with the time, and asks for
scores. Theory of operation::

    Score(p) = TopicCap(Σ_t w_t · (w1·P1 + w2·P2 + w3·P3 + w3b·P3b + w4·P4))
               + w5·P5 + w6·P6 + w7·P7

    P1  time in the mesh, in quanta, capped             (positive weight)
    P2  first deliveries, decaying, capped              (positive weight)
    P3  mesh delivery deficit², once active             (negative weight)
    P3b sticky mesh failure penalty, added at prune     (negative weight)
    P4  invalid messages², decaying                     (negative weight)
    P5  the application's own score of the peer         (positive weight)
    P6  surplus² of peers sharing one of its IPs        (negative weight)
    P7  behaviour penalty counter above its threshold, squared, decaying

Counters decay every ``decay_interval`` (the router calls :meth:`refresh`
from its heartbeat). A disconnected peer's counters are kept for
``retain_score`` seconds, unless its score was positive, so that a peer
cannot wash a bad score by reconnecting.

Topics without parameters do not contribute. ``ScoreParams.default_topic``
(an extension of ours; go and js only score listed topics) gives every
other topic the same parameters, so a node scores the topics it joins
without listing them. Its default leaves P3/P3b off: their threshold
depends on the topic's message rate, and a threshold a quiet topic cannot
meet would push every honest mesh peer negative. Set them per topic where
the rate is known.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from guts.errors import ConfigError

__all__ = [
    "DeliveryStatus",
    "PeerScore",
    "RejectReason",
    "ScoreParams",
    "ScoreThresholds",
    "TopicScoreParams",
]

P = TypeVar("P", bound=Hashable)

#: How long delivery records (who delivered what, when) are kept: go's 2 min.
DELIVERY_RECORD_TTL = 120.0


def _no_app_score(peer: object) -> float:
    return 0.0


@dataclass(frozen=True, slots=True)
class TopicScoreParams:
    """Per-topic parameters (times in seconds).

    The defaults reward up to 10 points for an hour in the mesh (P1) and one
    point per recent first delivery (P2), up to 10: a peer earns at most 20
    before the topic cap, whatever it sends. An invalid message costs 40
    (P4: -40 · n²) and its count decays by 0.2 % a second (half-life near
    6 minutes), so that one forgery outweighs any number of valid messages
    for minutes: with P1 and P2 both full, the score is back above 0 after
    about 3 minutes, and a new peer (P1 near 0) only after about 5; two
    invalid messages take a peer below the graylist threshold
    (-40 · 2² = -160) for about 3 minutes, three for about 6. Lighthouse and
    Lodestar go further (P4 weighs the whole positive score and decays over
    hours); a Guts topic carries fewer messages, so fewer are needed to earn
    back trust. P3 and P3b are off (weight 0); see the module docstring.
    """

    topic_weight: float = 1.0
    # P1
    time_in_mesh_weight: float = 1 / 360
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 3600.0
    # P2
    first_message_deliveries_weight: float = 1.0
    first_message_deliveries_decay: float = 0.9
    first_message_deliveries_cap: float = 10.0
    # P3
    mesh_message_deliveries_weight: float = 0.0
    mesh_message_deliveries_decay: float = 0.5
    mesh_message_deliveries_cap: float = 100.0
    mesh_message_deliveries_threshold: float = 1.0
    mesh_message_deliveries_window: float = 0.01
    mesh_message_deliveries_activation: float = 5.0
    # P3b
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = 0.5
    # P4
    invalid_message_deliveries_weight: float = -40.0
    invalid_message_deliveries_decay: float = 0.998

    def __post_init__(self) -> None:
        checks = [
            (self.topic_weight >= 0, "topic_weight must be >= 0"),
            (self.time_in_mesh_weight >= 0, "time_in_mesh_weight must be >= 0"),
            (self.time_in_mesh_quantum > 0, "time_in_mesh_quantum must be > 0"),
            (self.time_in_mesh_cap > 0, "time_in_mesh_cap must be > 0"),
            (self.first_message_deliveries_weight >= 0, "first_message_deliveries_weight must be >= 0"),
            (0 < self.first_message_deliveries_decay < 1, "first_message_deliveries_decay must be in (0, 1)"),
            (self.first_message_deliveries_cap > 0, "first_message_deliveries_cap must be > 0"),
            (self.mesh_message_deliveries_weight <= 0, "mesh_message_deliveries_weight must be <= 0"),
            (0 < self.mesh_message_deliveries_decay < 1, "mesh_message_deliveries_decay must be in (0, 1)"),
            (
                self.mesh_message_deliveries_cap >= self.mesh_message_deliveries_threshold > 0,
                "need mesh_message_deliveries_cap >= mesh_message_deliveries_threshold > 0",
            ),
            (self.mesh_message_deliveries_window >= 0, "mesh_message_deliveries_window must be >= 0"),
            (self.mesh_message_deliveries_activation >= 0, "mesh_message_deliveries_activation must be >= 0"),
            (self.mesh_failure_penalty_weight <= 0, "mesh_failure_penalty_weight must be <= 0"),
            (0 < self.mesh_failure_penalty_decay < 1, "mesh_failure_penalty_decay must be in (0, 1)"),
            (self.invalid_message_deliveries_weight <= 0, "invalid_message_deliveries_weight must be <= 0"),
            (0 < self.invalid_message_deliveries_decay < 1, "invalid_message_deliveries_decay must be in (0, 1)"),
        ]
        for ok, why in checks:
            if not ok:
                raise ConfigError(why)


@dataclass(frozen=True, slots=True)
class ScoreParams:
    """Global parameters (times in seconds).

    Attributes:
        topics: parameters of listed topics.
        default_topic: parameters of every other topic (``None``: unscored).
        topic_score_cap: cap on the positive sum of topic scores (0: none).
        app_specific_score: P5, the application's score of a peer.
        ip_colocation_factor_whitelist: IPs exempt from P6.
        behaviour_penalty_threshold: P7 counts only the counter above this.
        decay_interval: seconds between decays (the heartbeat runs them).
        decay_to_zero: a decayed counter below this becomes 0.
        retain_score: seconds a disconnected peer's counters are kept.
    """

    topics: Mapping[str, TopicScoreParams] = field(default_factory=dict)
    default_topic: TopicScoreParams | None = field(default_factory=TopicScoreParams)
    topic_score_cap: float = 10.0
    app_specific_score: Callable[[object], float] = _no_app_score
    app_specific_weight: float = 1.0
    ip_colocation_factor_weight: float = -5.0
    ip_colocation_factor_threshold: float = 10.0
    ip_colocation_factor_whitelist: frozenset[str] = frozenset()
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 0.0
    behaviour_penalty_decay: float = 0.9
    decay_interval: float = 1.0
    decay_to_zero: float = 0.01
    retain_score: float = 3600.0

    def __post_init__(self) -> None:
        checks = [
            (self.topic_score_cap >= 0, "topic_score_cap must be >= 0"),
            (self.ip_colocation_factor_weight <= 0, "ip_colocation_factor_weight must be <= 0"),
            (
                self.ip_colocation_factor_weight == 0 or self.ip_colocation_factor_threshold >= 1,
                "ip_colocation_factor_threshold must be >= 1",
            ),
            (self.behaviour_penalty_weight <= 0, "behaviour_penalty_weight must be <= 0"),
            (
                self.behaviour_penalty_weight == 0 or 0 < self.behaviour_penalty_decay < 1,
                "behaviour_penalty_decay must be in (0, 1)",
            ),
            (self.decay_interval > 0, "decay_interval must be > 0"),
            (0 < self.decay_to_zero < 1, "decay_to_zero must be in (0, 1)"),
            (self.retain_score >= 0, "retain_score must be >= 0"),
        ]
        for ok, why in checks:
            if not ok:
                raise ConfigError(why)

    def for_topic(self, topic: str) -> TopicScoreParams | None:
        params = self.topics.get(topic)
        return params if params is not None else self.default_topic


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    """What a score lets a peer do (gossipsub-v1.1.md, "Score Thresholds").

    Attributes:
        gossip_threshold: below it, no gossip to or from the peer.
        publish_threshold: below it, our own messages do not go to the peer.
        graylist_threshold: below it, every RPC of the peer is dropped.
        accept_px_threshold: peer exchange is taken only from peers above it.
        opportunistic_graft_threshold: a mesh whose median score is below it
            gets better-scoring peers grafted in.
    """

    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    accept_px_threshold: float = 10.0
    opportunistic_graft_threshold: float = 2.0

    def __post_init__(self) -> None:
        if not self.gossip_threshold <= 0:
            raise ConfigError("gossip_threshold must be <= 0")
        if not self.publish_threshold <= self.gossip_threshold:
            raise ConfigError("publish_threshold must be <= gossip_threshold")
        if not self.graylist_threshold <= self.publish_threshold:
            raise ConfigError("graylist_threshold must be <= publish_threshold")
        if not self.accept_px_threshold >= 0:
            raise ConfigError("accept_px_threshold must be >= 0")
        if not self.opportunistic_graft_threshold >= 0:
            raise ConfigError("opportunistic_graft_threshold must be >= 0")


class RejectReason(Enum):
    """Why a message was refused, as far as scoring cares."""

    INVALID = "invalid"  # rejected by a rule or a validator: P4 for the sender and its duplicates
    IGNORED = "ignored"  # a validator said ignore: nobody is penalised
    UNTRACKED = "untracked"  # broken before it had an id (bad signature, ...): P4 for the sender only


class DeliveryStatus(Enum):
    UNKNOWN = "unknown"  # first seen, being validated
    VALID = "valid"
    INVALID = "invalid"
    IGNORED = "ignored"


@dataclass(slots=True)
class _DeliveryRecord(Generic[P]):
    first_seen: float
    status: DeliveryStatus = DeliveryStatus.UNKNOWN
    validated: float = 0.0
    peers: set[P] = field(default_factory=set)


@dataclass(slots=True)
class _TopicStats:
    in_mesh: bool = False
    graft_time: float = 0.0
    mesh_time: float = 0.0
    first_message_deliveries: float = 0.0
    mesh_message_deliveries: float = 0.0
    mesh_message_deliveries_active: bool = False
    mesh_failure_penalty: float = 0.0
    invalid_message_deliveries: float = 0.0


@dataclass(slots=True)
class _PeerStats:
    connected: bool = True
    expire: float = 0.0
    ips: set[str] = field(default_factory=set)
    behaviour_penalty: float = 0.0
    topics: dict[str, _TopicStats] = field(default_factory=dict)


class PeerScore(Generic[P]):
    """Score bookkeeping for every peer the router knows (and recently knew)."""

    def __init__(self, params: ScoreParams | None = None) -> None:
        self.params = params or ScoreParams()
        self._stats: dict[P, _PeerStats] = {}
        self._peers_by_ip: dict[str, set[P]] = {}
        self._deliveries: dict[bytes, _DeliveryRecord[P]] = {}
        self._delivery_order: deque[tuple[float, bytes]] = deque()

    # -- peers ---------------------------------------------------------------

    def add_peer(self, peer: P, ips: Iterable[str] = ()) -> None:
        """A peer connected; a retained record (a reconnect) is revived."""
        stats = self._stats.get(peer)
        if stats is None:
            stats = self._stats[peer] = _PeerStats()
        stats.connected = True
        stats.expire = 0.0
        for ip in ips:
            stats.ips.add(ip)
            self._peers_by_ip.setdefault(ip, set()).add(peer)

    def remove_peer(self, peer: P, now: float) -> None:
        """A peer disconnected: keep its counters for ``retain_score`` unless its
        score is positive; a retained peer loses its first deliveries and pays
        the mesh delivery deficit it had."""
        stats = self._stats.get(peer)
        if stats is None:
            return
        if self.score(peer, now) > 0 or self.params.retain_score <= 0:
            self._forget(peer, stats)
            return
        for topic, tstats in stats.topics.items():
            tstats.first_message_deliveries = 0.0
            tparams = self.params.for_topic(topic)
            if tparams is not None and tstats.in_mesh:
                self._apply_mesh_failure(tstats, tparams)
            tstats.in_mesh = False
            tstats.mesh_message_deliveries_active = False
        stats.connected = False
        stats.expire = now + self.params.retain_score

    def _forget(self, peer: P, stats: _PeerStats) -> None:
        for ip in stats.ips:
            peers = self._peers_by_ip.get(ip)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._peers_by_ip[ip]
        del self._stats[peer]

    def _topic_stats(self, peer: P, topic: str) -> tuple[_TopicStats, TopicScoreParams] | None:
        stats = self._stats.get(peer)
        if stats is None:
            return None
        tparams = self.params.for_topic(topic)
        if tparams is None:
            return None
        tstats = stats.topics.get(topic)
        if tstats is None:
            tstats = stats.topics[topic] = _TopicStats()
        return tstats, tparams

    # -- mesh ----------------------------------------------------------------

    def graft(self, peer: P, topic: str, now: float) -> None:
        got = self._topic_stats(peer, topic)
        if got is not None:
            tstats, _ = got
            tstats.in_mesh = True
            tstats.graft_time = now
            tstats.mesh_time = 0.0
            tstats.mesh_message_deliveries_active = False

    def prune(self, peer: P, topic: str, *, penalize: bool = True) -> None:
        """``peer`` left ``topic``'s mesh; with ``penalize`` (a prune, not its
        own unsubscription) a mesh delivery deficit becomes sticky (P3b)."""
        got = self._topic_stats(peer, topic)
        if got is not None:
            tstats, tparams = got
            if penalize:
                self._apply_mesh_failure(tstats, tparams)
            tstats.mesh_message_deliveries_active = False
            tstats.in_mesh = False

    @staticmethod
    def _apply_mesh_failure(tstats: _TopicStats, tparams: TopicScoreParams) -> None:
        threshold = tparams.mesh_message_deliveries_threshold
        if tstats.mesh_message_deliveries_active and tstats.mesh_message_deliveries < threshold:
            deficit = threshold - tstats.mesh_message_deliveries
            tstats.mesh_failure_penalty += deficit * deficit

    # -- deliveries ------------------------------------------------------------

    def _record(self, msg_id: bytes, now: float) -> _DeliveryRecord[P]:
        record = self._deliveries.get(msg_id)
        if record is None:
            record = self._deliveries[msg_id] = _DeliveryRecord(first_seen=now)
            self._delivery_order.append((now + DELIVERY_RECORD_TTL, msg_id))
        return record

    def validate_message(self, msg_id: bytes, now: float) -> None:
        """A message arrived for the first time and is being validated."""
        self._record(msg_id, now)

    def deliver_message(self, peer: P, msg_id: bytes, topic: str, now: float) -> None:
        """``peer`` delivered ``msg_id`` first and it proved valid; peers that
        sent it while it was being validated get their mesh delivery too."""
        self._mark_first_delivery(peer, topic)
        record = self._record(msg_id, now)
        if record.status is not DeliveryStatus.UNKNOWN:
            return
        record.status = DeliveryStatus.VALID
        record.validated = now
        for other in record.peers:
            if other != peer:
                self._mark_duplicate_delivery(other, topic, None, now)

    def reject_message(self, peer: P, msg_id: bytes | None, topic: str, reason: RejectReason, now: float) -> None:
        """A message from ``peer`` was refused."""
        if reason is RejectReason.UNTRACKED or msg_id is None:
            self._mark_invalid_delivery(peer, topic)
            return
        record = self._record(msg_id, now)
        if record.status is not DeliveryStatus.UNKNOWN:
            return
        if reason is RejectReason.IGNORED:
            record.status = DeliveryStatus.IGNORED
            record.peers.clear()
            return
        record.status = DeliveryStatus.INVALID
        self._mark_invalid_delivery(peer, topic)
        for other in record.peers:
            self._mark_invalid_delivery(other, topic)
        record.peers.clear()

    def duplicate_message(self, peer: P, msg_id: bytes, topic: str, now: float) -> None:
        """``peer`` sent a message we already had."""
        record = self._record(msg_id, now)
        if peer in record.peers:
            return
        status = record.status
        if status is DeliveryStatus.UNKNOWN:
            record.peers.add(peer)
        elif status is DeliveryStatus.VALID:
            record.peers.add(peer)
            self._mark_duplicate_delivery(peer, topic, record.validated, now)
        elif status is DeliveryStatus.INVALID:
            self._mark_invalid_delivery(peer, topic)

    def _mark_first_delivery(self, peer: P, topic: str) -> None:
        got = self._topic_stats(peer, topic)
        if got is None:
            return
        tstats, tparams = got
        tstats.first_message_deliveries = min(
            tparams.first_message_deliveries_cap, tstats.first_message_deliveries + 1
        )
        if tstats.in_mesh:
            tstats.mesh_message_deliveries = min(
                tparams.mesh_message_deliveries_cap, tstats.mesh_message_deliveries + 1
            )

    def _mark_duplicate_delivery(self, peer: P, topic: str, validated: float | None, now: float) -> None:
        got = self._topic_stats(peer, topic)
        if got is None:
            return
        tstats, tparams = got
        if not tstats.in_mesh:
            return
        # near-first only: within the window after validation (or during it)
        if validated is not None and now - validated > tparams.mesh_message_deliveries_window:
            return
        tstats.mesh_message_deliveries = min(
            tparams.mesh_message_deliveries_cap, tstats.mesh_message_deliveries + 1
        )

    def _mark_invalid_delivery(self, peer: P, topic: str) -> None:
        got = self._topic_stats(peer, topic)
        if got is not None:
            got[0].invalid_message_deliveries += 1

    def message_status(self, msg_id: bytes) -> DeliveryStatus | None:
        record = self._deliveries.get(msg_id)
        return record.status if record is not None else None

    # -- penalties and IPs -----------------------------------------------------

    def add_penalty(self, peer: P, count: float = 1.0) -> None:
        """P7: count ``count`` misbehaviours of ``peer``."""
        stats = self._stats.get(peer)
        if stats is not None:
            stats.behaviour_penalty += count

    # -- time ------------------------------------------------------------------

    def refresh(self, now: float) -> None:
        """Decay every counter once; drop expired retained peers and old
        delivery records. Call every ``decay_interval``."""
        params = self.params
        zero = params.decay_to_zero
        for peer, stats in list(self._stats.items()):
            if not stats.connected:
                if now > stats.expire:
                    self._forget(peer, stats)
                continue  # retained counters do not decay
            for topic, t in stats.topics.items():
                tp = params.for_topic(topic)
                if tp is None:
                    continue
                t.first_message_deliveries *= tp.first_message_deliveries_decay
                if t.first_message_deliveries < zero:
                    t.first_message_deliveries = 0.0
                t.mesh_message_deliveries *= tp.mesh_message_deliveries_decay
                if t.mesh_message_deliveries < zero:
                    t.mesh_message_deliveries = 0.0
                t.mesh_failure_penalty *= tp.mesh_failure_penalty_decay
                if t.mesh_failure_penalty < zero:
                    t.mesh_failure_penalty = 0.0
                t.invalid_message_deliveries *= tp.invalid_message_deliveries_decay
                if t.invalid_message_deliveries < zero:
                    t.invalid_message_deliveries = 0.0
                if t.in_mesh:
                    t.mesh_time = now - t.graft_time
                    if t.mesh_time > tp.mesh_message_deliveries_activation:
                        t.mesh_message_deliveries_active = True
            stats.behaviour_penalty *= params.behaviour_penalty_decay
            if stats.behaviour_penalty < zero:
                stats.behaviour_penalty = 0.0
        order = self._delivery_order
        while order and order[0][0] <= now:
            _, msg_id = order.popleft()
            self._deliveries.pop(msg_id, None)

    # -- the score ---------------------------------------------------------------

    def score(self, peer: P, now: float) -> float:
        """The current score of ``peer`` (0 for a peer never seen)."""
        stats = self._stats.get(peer)
        if stats is None:
            return 0.0
        params = self.params
        total = 0.0
        for topic, t in stats.topics.items():
            tp = params.for_topic(topic)
            if tp is None:
                continue
            topic_score = 0.0
            if t.in_mesh:
                in_mesh = max(0.0, now - t.graft_time)
                topic_score += tp.time_in_mesh_weight * min(in_mesh / tp.time_in_mesh_quantum, tp.time_in_mesh_cap)
            topic_score += tp.first_message_deliveries_weight * t.first_message_deliveries
            if t.mesh_message_deliveries_active and t.mesh_message_deliveries < tp.mesh_message_deliveries_threshold:
                deficit = tp.mesh_message_deliveries_threshold - t.mesh_message_deliveries
                topic_score += tp.mesh_message_deliveries_weight * deficit * deficit
            topic_score += tp.mesh_failure_penalty_weight * t.mesh_failure_penalty
            topic_score += tp.invalid_message_deliveries_weight * t.invalid_message_deliveries**2
            total += tp.topic_weight * topic_score
        if params.topic_score_cap > 0 and total > params.topic_score_cap:
            total = params.topic_score_cap
        if params.app_specific_weight:
            total += params.app_specific_weight * params.app_specific_score(peer)
        if params.ip_colocation_factor_weight:
            for ip in stats.ips:
                if ip in params.ip_colocation_factor_whitelist:
                    continue
                surplus = len(self._peers_by_ip.get(ip, ())) - params.ip_colocation_factor_threshold
                if surplus > 0:
                    total += params.ip_colocation_factor_weight * surplus * surplus
        excess = stats.behaviour_penalty - params.behaviour_penalty_threshold
        if excess > 0:
            total += params.behaviour_penalty_weight * excess * excess
        return total

    def known(self, peer: P) -> bool:
        return peer in self._stats

    def behaviour_penalty(self, peer: P) -> float:
        stats = self._stats.get(peer)
        return stats.behaviour_penalty if stats is not None else 0.0
