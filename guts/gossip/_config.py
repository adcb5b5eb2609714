"""Gossipsub parameters: the spec's defaults, in one frozen object."""

from __future__ import annotations

from dataclasses import dataclass, field

from guts.errors import ConfigError
from guts.gossip._codec import RpcLimits
from guts.gossip._signing import MessageIdFn, SignaturePolicy
from guts.gossip.score import ScoreParams, ScoreThresholds
from guts.peer import PeerId

__all__ = ["GossipConfig", "MESHSUB_V10", "MESHSUB_V11", "MESHSUB_V12", "PROTOCOLS"]

MESHSUB_V10 = "/meshsub/1.0.0"
MESHSUB_V11 = "/meshsub/1.1.0"
MESHSUB_V12 = "/meshsub/1.2.0"
#: In preference order, as we offer them.
PROTOCOLS = (MESHSUB_V12, MESHSUB_V11, MESHSUB_V10)

#: Room in a frame beyond the largest message: envelope, control, piggybacked gossip.
RPC_OVERHEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Everything a gossipsub router can be told (times in seconds).

    Mesh and gossip parameters default to the spec's (gossipsub-v1.0.md and
    -v1.1.md, "Parameters"); limits and anti-spam values to go's and js's.

    Attributes:
        d, d_low, d_high: target, lower and upper mesh degree.
        d_score: peers kept by score when pruning an oversubscribed mesh.
        d_out: outbound-connection peers the mesh must keep.
        d_lazy: least number of peers gossip goes to.
        gossip_factor: share of eligible peers gossip goes to, if more than ``d_lazy``.
        heartbeat_interval: seconds between heartbeats.
        heartbeat_initial_delay: seconds before the first heartbeat.
        fanout_ttl: fanout state of a topic we stopped publishing to is
            dropped after this.
        history_length: heartbeats the message cache keeps (``mcache_len``).
        history_gossip: heartbeats whose messages IHAVE advertises.
        mcache_max_bytes: bytes of messages the message cache holds at most
            (payload and encoding); past it the oldest go before their
            windows end. A node relaying big messages needs no more than a
            few seconds of them for IWANT.
        seen_ttl: how long a message id counts as seen.
        prune_backoff: backoff after a PRUNE, sent in it.
        unsubscribe_backoff: backoff sent in the PRUNEs of leaving a topic.
        backoff_slack: heartbeats we wait beyond a peer's backoff before
            grafting it again (it clears its own backoff in its heartbeat).
        graft_flood_threshold: a GRAFT this soon after a PRUNE is penalised twice.
        do_px: offer peer exchange in PRUNEs of the heartbeat (peer ids only:
            Guts keeps no other peers' signed records to pass on). Offers we
            receive from peers above ``accept_px_threshold`` are dialled, at
            the addresses of their signed peer records when they carry them.
        prune_peers: peers offered in one PRUNE.
        flood_publish: our own messages go to every topic peer above the
            publish threshold, not only the mesh.
        graft_on_subscribe: a peer that subscribes to a topic whose mesh is
            below ``d_low`` is grafted at once rather than at the next
            heartbeat (as js does), so a message published right after does
            not miss it.
        opportunistic_graft_ticks: heartbeats between opportunistic grafts.
        opportunistic_graft_peers: peers grafted then.
        max_ihave_length: ids advertised in one IHAVE, and ids we ask any one
            peer for per heartbeat.
        max_ihave_messages: IHAVE messages taken from one peer per heartbeat.
        max_iwant_messages: IWANT messages answered for one peer per heartbeat.
        gossip_retransmission: times one peer gets the same message by IWANT.
        iwant_followup_time: how long a peer has to deliver a message it
            advertised and we asked for, before it is penalised.
        idontwant_min_data_size: messages this large (payload bytes) get an
            IDONTWANT to the mesh (v1.2 peers) on first receipt. 1 KiB, as
            go-libp2p: for smaller ones the IDONTWANT to each mesh peer
            costs about what the duplicate it saves would.
        idontwant_max_messages: IDONTWANT ids taken from one peer per heartbeat.
        max_message_size: largest payload accepted or published.
        max_rpc_size: largest frame read; default ``max_message_size`` plus 64 KiB.
        rpc_limits: counts one RPC may carry.
        max_topics_per_peer: subscriptions remembered per peer.
        max_topic_length: longest topic (bytes of UTF-8) we track.
        max_message_id_length: longest message id we track.
        max_pending_validations: messages awaiting an application validator;
            past it new ones are ignored.
        validation_timeout: an asynchronous validator that takes longer
            ignores the message.
        max_queued_bytes: RPC bytes queued for one peer; past it, RPCs to
            the peer are dropped and it is penalised.
        write_timeout: a write to a peer's gossip stream taking longer closes
            that stream (the peer does not read).
        peer_message_rate: messages per second one peer may send us
            (``peer_message_burst`` at once); the excess is dropped before
            any check, counted, and charged to the peer (0: no limit;
            direct peers have none). Relays forward a whole topic, so this
            bounds what one peer can make us verify, not what a topic carries.
        peer_message_burst: the bucket's size.
        peer_byte_rate: payload bytes per second one peer may send us
            (``peer_byte_burst`` at once, at least ``max_message_size``);
            past it a message is dropped as one over the message rate is.
            A hundred 1 MiB messages from one peer no longer all pass.
        peer_byte_burst: that bucket's size.
        rate_limit_penalty: behavioural penalty (P7 counter) per message over
            the rate: with the default P7 weight, 300 messages over it take
            a peer to the graylist threshold.
        graylist_disconnect_after: a peer whose score stays below the
            graylist threshold this long (seconds, at heartbeats) has its
            gossip streams closed by :class:`~guts.gossip.Gossipsub` (0:
            never). Its score is kept (``retain_score``), so coming back
            does not wash it.
        drop_log_interval: messages not delivered are logged at most once
            per peer and reason in this many seconds, then a line with the
            count of the rest.
        signature_policy: StrictSign (default) or StrictNoSign.
        message_id: the message id function; ``None``: js's default for the
            policy (author key + seqno, or SHA-256 of the data).
        emit_self: deliver our own published messages to our subscriptions.
        direct_peers: explicit peering agreements (v1.1): always forwarded
            to, never in the mesh, never graylisted.
        score_params, score_thresholds: peer scoring.

    Raises:
        ConfigError: a value out of range, or values that contradict each
            other (the same error yamux's configuration raises).
    """

    d: int = 6
    d_low: int = 4
    d_high: int = 12
    d_score: int = 4
    d_out: int = 2
    d_lazy: int = 6
    gossip_factor: float = 0.25
    heartbeat_interval: float = 1.0
    heartbeat_initial_delay: float = 0.1
    fanout_ttl: float = 60.0
    history_length: int = 5
    history_gossip: int = 3
    mcache_max_bytes: int = 32 << 20
    seen_ttl: float = 120.0
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    backoff_slack: int = 1
    graft_flood_threshold: float = 10.0
    do_px: bool = True
    prune_peers: int = 16
    flood_publish: bool = True
    graft_on_subscribe: bool = True
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    max_ihave_length: int = 5000
    max_ihave_messages: int = 10
    max_iwant_messages: int = 10
    gossip_retransmission: int = 3
    iwant_followup_time: float = 3.0
    idontwant_min_data_size: int = 1024
    idontwant_max_messages: int = 512
    max_message_size: int = 1 << 20
    max_rpc_size: int = 0
    rpc_limits: RpcLimits = field(default_factory=RpcLimits)
    max_topics_per_peer: int = 1000
    max_topic_length: int = 1024
    max_message_id_length: int = 256
    max_pending_validations: int = 1024
    validation_timeout: float = 10.0
    max_queued_bytes: int = 8 << 20
    write_timeout: float = 10.0
    peer_message_rate: float = 500.0
    peer_message_burst: int = 1000
    peer_byte_rate: float = 2 * 1024 * 1024
    peer_byte_burst: int = 8 * 1024 * 1024
    rate_limit_penalty: float = 0.01
    graylist_disconnect_after: float = 10.0
    drop_log_interval: float = 60.0
    signature_policy: SignaturePolicy = SignaturePolicy.STRICT_SIGN
    message_id: MessageIdFn | None = None
    emit_self: bool = False
    direct_peers: frozenset[PeerId] = frozenset()
    score_params: ScoreParams = field(default_factory=ScoreParams)
    score_thresholds: ScoreThresholds = field(default_factory=ScoreThresholds)

    def __post_init__(self) -> None:
        if self.max_rpc_size == 0:
            object.__setattr__(self, "max_rpc_size", self.max_message_size + RPC_OVERHEAD)
        checks = [
            (0 <= self.d_low <= self.d <= self.d_high, "need 0 <= d_low <= d <= d_high"),
            (
                self.d_out == 0 or 0 < self.d_out < self.d_low and self.d_out <= self.d // 2,
                "d_out must be below d_low and at most d / 2",
            ),
            (0 <= self.d_score <= self.d, "need 0 <= d_score <= d"),
            (self.d_lazy >= 0, "d_lazy must be >= 0"),
            (0.0 <= self.gossip_factor <= 1.0, "gossip_factor must be in [0, 1]"),
            (self.heartbeat_interval > 0, "heartbeat_interval must be > 0"),
            (1 <= self.history_gossip <= self.history_length, "need 1 <= history_gossip <= history_length"),
            (self.seen_ttl > 0, "seen_ttl must be > 0"),
            (self.prune_backoff >= 0 and self.unsubscribe_backoff >= 0, "backoffs must be >= 0"),
            (self.max_message_size > 0, "max_message_size must be > 0"),
            (self.mcache_max_bytes > 0, "mcache_max_bytes must be > 0"),
            (self.max_rpc_size >= self.max_message_size, "max_rpc_size must be >= max_message_size"),
            (self.opportunistic_graft_ticks > 0, "opportunistic_graft_ticks must be > 0"),
            (self.gossip_retransmission >= 1, "gossip_retransmission must be >= 1"),
            (self.peer_message_rate >= 0, "peer_message_rate must be >= 0"),
            (self.peer_message_rate == 0 or self.peer_message_burst >= 1, "peer_message_burst must be >= 1"),
            (self.rate_limit_penalty >= 0, "rate_limit_penalty must be >= 0"),
            (self.peer_byte_rate >= 0, "peer_byte_rate must be >= 0"),
            (
                self.peer_byte_rate == 0 or self.peer_byte_burst >= self.max_message_size,
                "peer_byte_burst must be at least max_message_size",
            ),
            (self.graylist_disconnect_after >= 0, "graylist_disconnect_after must be >= 0"),
            (self.drop_log_interval > 0, "drop_log_interval must be > 0"),
        ]
        for ok, why in checks:
            if not ok:
                raise ConfigError(why)
