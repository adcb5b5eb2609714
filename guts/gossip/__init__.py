"""gossipsub v1.0, v1.1 and v1.2 (``/meshsub/1.2.0``, ``/meshsub/1.1.0``,
``/meshsub/1.0.0``) on a :class:`~guts.host.Host`.

Usage::

    async with open_gossipsub(host) as gossip:
        with gossip.subscribe("guts/announce") as sub:
            await gossip.publish("guts/announce", b"refs/heads/main 3f2a...")
            async for message in sub:
                print(message.author, message.data)

The router in :mod:`guts.gossip.router` is sans-IO; :class:`Gossipsub`
drives it over streams with one heartbeat task.
"""

from guts.gossip._codec import RPC, ControlMessage, RawMessage, RpcLimits, decode_rpc, encode_rpc
from guts.gossip._config import MESHSUB_V10, MESHSUB_V11, MESHSUB_V12, PROTOCOLS, GossipConfig
from guts.gossip._signing import (
    InvalidMessage,
    Rejection,
    SignaturePolicy,
    default_message_id,
    hash_message_id,
)
from guts.gossip.protocol import Gossipsub, Subscription, Validator, open_gossipsub
from guts.gossip.router import GossipMessage, GossipRouter, RouterStats, ValidationResult
from guts.gossip.score import ScoreParams, ScoreThresholds, TopicScoreParams

__all__ = [
    "ControlMessage",
    "GossipConfig",
    "GossipMessage",
    "GossipRouter",
    "Gossipsub",
    "InvalidMessage",
    "MESHSUB_V10",
    "MESHSUB_V11",
    "MESHSUB_V12",
    "PROTOCOLS",
    "RPC",
    "RawMessage",
    "Rejection",
    "RouterStats",
    "RpcLimits",
    "ScoreParams",
    "ScoreThresholds",
    "SignaturePolicy",
    "Subscription",
    "TopicScoreParams",
    "ValidationResult",
    "Validator",
    "decode_rpc",
    "default_message_id",
    "encode_rpc",
    "hash_message_id",
    "open_gossipsub",
]
