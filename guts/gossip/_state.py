"""What a gossipsub router knows, in one object its parts share.

The router (:mod:`guts.gossip.router`) takes the inputs; topic membership
(:mod:`guts.gossip._membership`), received messages
(:mod:`guts.gossip._messages`), control messages
(:mod:`guts.gossip._control`) and the heartbeat
(:mod:`guts.gossip._heartbeat`) each read and change the same state. It
lives here, apart from all of them, as a plain object passed explicitly,
so that none of them needs the router itself. Like the rest of the
router it never does I/O and never reads a clock: ``now`` is passed in.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from guts.gossip._codec import Outbox, RawMessage
from guts.gossip._config import MESHSUB_V10, MESHSUB_V11, GossipConfig
from guts.gossip._drops import DropLog, TokenBucket
from guts.gossip._events import GossipMessage, RouterEvent, RouterStats
from guts.gossip._promises import Promises
from guts.gossip._signing import AuthorCache, MessageIdFn
from guts.gossip.mcache import MessageCache, SeenCache
from guts.gossip.score import PeerScore
from guts.peer import PeerId

__all__ = ["Pending", "PeerState", "RouterState"]

log = logging.getLogger("guts.gossip")


@dataclass(slots=True)
class PeerState:
    """One peer we can send to: its protocol, its topics and this heartbeat's counters."""

    protocol: str
    outbound: bool
    bucket: TokenBucket | None = None  # its message allowance (None: unlimited)
    bytes_bucket: TokenBucket | None = None  # its allowance in payload bytes (None: unlimited)
    topics: set[str] = field(default_factory=set)
    dont_send: dict[bytes, int] = field(default_factory=dict)  # IDONTWANT id -> heartbeat tick
    ihave_count: int = 0  # IHAVE messages received this heartbeat
    iasked: int = 0  # ids we asked this peer for this heartbeat
    iwant_count: int = 0  # IWANT messages received this heartbeat
    idontwant_count: int = 0
    spammed_iwant: bool = False
    warned_topics: bool = False

    @property
    def v11(self) -> bool:  # backoff and peer exchange
        return self.protocol != MESHSUB_V10

    @property
    def v12(self) -> bool:  # IDONTWANT
        return self.protocol not in (MESHSUB_V10, MESHSUB_V11)


@dataclass(frozen=True, slots=True)
class Pending:
    """A message waiting for the application's validator."""

    source: PeerId
    raw: RawMessage
    message: GossipMessage


class RouterState:
    """The router's state, per the spec: peers and their topics, our
    subscriptions, meshes, fanout, backoffs, the caches, promises and score;
    messages awaiting validation; and what is waiting to go out (per-peer
    outboxes, events).

    Args:
        local: our peer id.
        config: parameters.
        rng: randomness (peer selection, promise tracking).
        message_id: the message id function.
    """

    __slots__ = (
        "authors",
        "backoff",
        "config",
        "direct",
        "drop_log",
        "events",
        "fanout",
        "fanout_lastpub",
        "graylisted_since",
        "last_decay",
        "local",
        "mcache",
        "mesh",
        "message_id",
        "outbox",
        "peers",
        "pending",
        "promises",
        "rng",
        "score",
        "seen",
        "stats",
        "subscriptions",
        "ticks",
        "topics",
        "validated",
    )

    def __init__(self, local: PeerId, config: GossipConfig, rng: random.Random, message_id: MessageIdFn) -> None:
        self.config = config
        self.local = local
        self.rng = rng
        self.message_id = message_id
        self.peers: dict[PeerId, PeerState] = {}
        self.topics: dict[str, set[PeerId]] = {}  # topic -> peers subscribed to it
        self.subscriptions: set[str] = set()
        self.mesh: dict[str, set[PeerId]] = {}
        self.fanout: dict[str, set[PeerId]] = {}
        self.fanout_lastpub: dict[str, float] = {}
        self.backoff: dict[str, dict[PeerId, float]] = {}  # topic -> peer -> when it ends
        self.direct: set[PeerId] = set(config.direct_peers)
        self.mcache: MessageCache[PeerId] = MessageCache(
            config.history_length, config.history_gossip, config.mcache_max_bytes
        )
        self.seen = SeenCache(config.seen_ttl)
        self.score: PeerScore[PeerId] = PeerScore(config.score_params)
        self.promises: Promises[PeerId] = Promises(config.iwant_followup_time, rng)
        self.authors = AuthorCache()
        self.validated: set[str] = set()  # topics with an application validator
        self.pending: dict[bytes, Pending] = {}  # message id -> message awaiting validation
        self.outbox: dict[PeerId, Outbox] = {}
        self.events: list[RouterEvent] = []
        self.stats = RouterStats()
        self.drop_log = DropLog(log, interval=config.drop_log_interval)
        self.graylisted_since: dict[PeerId, float] = {}  # peers below the graylist threshold at heartbeats
        self.ticks = 0  # heartbeats so far
        self.last_decay: float | None = None  # when the score last decayed

    def box(self, peer: PeerId) -> Outbox:
        """What ``peer`` will be sent after this input (created on first use)."""
        box = self.outbox.get(peer)
        if box is None:
            box = self.outbox[peer] = Outbox()
        return box

    def eligible(self, peer: PeerId, topic: str, now: float) -> bool:
        """May we graft ``peer`` into ``topic``'s mesh now?"""
        return peer not in self.direct and not self.backed_off(topic, peer, now) and self.score.score(peer, now) >= 0

    def backed_off(self, topic: str, peer: PeerId, now: float) -> bool:
        """Whether our backoff of ``peer`` in ``topic`` is on, with the slack
        that lets the peer clear its own backoff first."""
        expiry = self.backoff.get(topic, {}).get(peer)
        return expiry is not None and now < expiry + self.config.backoff_slack * self.config.heartbeat_interval

    def add_backoff(self, peer: PeerId, topic: str, seconds: float, now: float) -> None:
        """Back off ``peer`` in ``topic`` for ``seconds``; a longer backoff
        already on stays."""
        per_topic = self.backoff.setdefault(topic, {})
        expiry = now + seconds
        if per_topic.get(peer, 0.0) < expiry:
            per_topic[peer] = expiry

    def is_outbound(self, peer: PeerId) -> bool:
        """Whether we dialled ``peer`` (the mesh's outbound quota counts these)."""
        state = self.peers.get(peer)
        return state is not None and state.outbound
