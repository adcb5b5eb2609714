"""Gossip's configuration errors are ConfigErrors, as yamux's are."""

from __future__ import annotations

import pytest

from guts.crypto import KeyPair
from guts.errors import ConfigError
from guts.gossip import GossipConfig, GossipRouter, SignaturePolicy
from guts.peer import PeerId


@pytest.mark.parametrize(
    "bad",
    [
        dict(d=3, d_low=4),
        dict(d_high=5),
        dict(d_out=4),
        dict(d_score=7),
        dict(d_lazy=-1),
        dict(gossip_factor=1.5),
        dict(heartbeat_interval=0.0),
        dict(history_gossip=6),
        dict(seen_ttl=0.0),
        dict(prune_backoff=-1.0),
        dict(max_message_size=0),
        dict(max_message_size=100, max_rpc_size=50),
        dict(opportunistic_graft_ticks=0),
        dict(gossip_retransmission=0),
    ],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        GossipConfig(**bad)


def test_strict_sign_needs_a_keypair() -> None:
    local = PeerId.from_public_key(KeyPair.generate().public_key)
    with pytest.raises(ConfigError, match="StrictSign"):
        GossipRouter(local, None, GossipConfig(signature_policy=SignaturePolicy.STRICT_SIGN))
    GossipRouter(local, None, GossipConfig(signature_policy=SignaturePolicy.STRICT_NO_SIGN))
