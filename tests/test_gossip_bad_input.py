"""Bad input to the gossipsub router: each attack is refused or penalised as
gossipsub v1.1 says, the attacker's score falls, and honest peers keep
receiving. The same attacks over real streams are in test_gossip_protocol.py."""

from __future__ import annotations

import dataclasses

import pytest

from guts.errors import DecodeError

from guts.gossip._codec import RPC, ControlMessage, Graft, IHave, IWant, RawMessage, SubOpts
from guts.gossip._config import GossipConfig
from guts.gossip._signing import sign_message
from guts.gossip.router import GossipRouter
from guts.gossip.score import ScoreParams, TopicScoreParams

from .gossip_net import Puppet, RouterNet

T = "topic"


def setup(config: GossipConfig | None = None) -> tuple[RouterNet, GossipRouter, list[GossipRouter], Puppet]:
    """A victim ``a``, three honest routers around it, and an attacker."""
    net = RouterNet()
    a = net.router(config)
    honest = net.routers_n(3)
    attacker = net.puppet()
    net.full_mesh([a, *honest])
    net.connect(a.local, attacker.peer_id)
    net.send(attacker.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    for r in (a, *honest):
        r.subscribe(T, net.now)
    net.pump()
    net.tick()
    return net, a, honest, attacker


def honest_still_flow(net: RouterNet, a: GossipRouter, honest: list[GossipRouter]) -> None:
    payload = b"honest %d" % net.frames
    honest[0].publish(T, payload, net.now)
    net.pump()
    assert payload in net.delivered(a.local)
    assert all(payload in net.delivered(r.local) for r in honest[1:])


def forged(attacker: Puppet, data: bytes = b"evil", seqno: int = 1, **change: object) -> RawMessage:
    msg = sign_message(attacker.keypair, T, data, seqno)
    return dataclasses.replace(msg, wire=b"", **change) if change else msg


def test_bad_signature() -> None:
    net, a, honest, attacker = setup()
    msg = forged(attacker)
    bad = dataclasses.replace(msg, wire=b"", data=b"tampered")  # the signature no longer matches
    net.send(attacker.peer_id, a.local, RPC(messages=(bad,)))
    net.pump()
    assert net.delivered(a.local) == [] and a.stats.rejections == {"bad signature": 1}
    assert a.peer_score(attacker.peer_id, net.now) < 0
    # the genuine message with that id is still accepted afterwards
    net.send(attacker.peer_id, a.local, RPC(messages=(msg,)))
    net.pump()
    assert net.delivered(a.local) == [b"evil"]
    honest_still_flow(net, a, honest)


def test_unsigned_message() -> None:
    net, a, honest, attacker = setup()
    net.send(attacker.peer_id, a.local, RPC(messages=(forged(attacker, signature=None),)))
    net.pump()
    assert net.delivered(a.local) == [] and a.stats.rejections == {"unsigned message": 1}
    assert a.peer_score(attacker.peer_id, net.now) < 0
    honest_still_flow(net, a, honest)


def test_message_over_the_size_cap() -> None:
    net, a, honest, attacker = setup()
    assert a.config.max_message_size == 1 << 20
    big = forged(attacker, data=bytes((1 << 20) + 1))
    net.send(attacker.peer_id, a.local, RPC(messages=(big,)))
    net.pump()
    assert net.delivered(a.local) == [] and a.stats.rejections == {"message over the size limit": 1}
    assert a.peer_score(attacker.peer_id, net.now) < 0
    # exactly the limit is fine
    net.send(attacker.peer_id, a.local, RPC(messages=(forged(attacker, data=bytes(1 << 20), seqno=2),)))
    net.pump()
    assert len(net.delivered(a.local)) == 1
    honest_still_flow(net, a, honest)


def test_two_invalid_messages_graylist_the_sender() -> None:
    net, a, honest, attacker = setup()
    for seqno in range(3):
        net.send(attacker.peer_id, a.local, RPC(messages=(forged(attacker, seqno=seqno, signature=bytes(64)),)))
    assert a.peer_score(attacker.peer_id, net.now) < a.config.score_thresholds.graylist_threshold
    # P4: -40 * 2^2 = -160; the third forgery was not even read
    assert a.stats.rejections == {"bad signature": 2} and a.stats.rpcs_graylisted == 1
    # a perfectly valid message from it is now dropped with the rest of its RPCs
    net.send(attacker.peer_id, a.local, RPC(messages=(forged(attacker, seqno=10),)))
    net.pump()
    assert net.delivered(a.local) == [] and a.stats.rpcs_graylisted == 2
    # its frames are not even decoded any more: garbage costs nothing and raises nothing
    a.handle_frame(attacker.peer_id, b"\xff\xff garbage", net.now)
    assert a.stats.rpcs_graylisted == 3
    assert a.stats.dropped == {"rejected: bad signature": 2, "graylisted_rpcs": 3}
    with pytest.raises(DecodeError):
        a.handle_frame(honest[0].local, b"\xff\xff garbage", net.now)
    honest_still_flow(net, a, honest)


def test_iwant_flood_for_the_same_ids() -> None:
    net, a, honest, attacker = setup()
    msg_id = honest[0].publish(T, b"popular", net.now)
    net.pump()
    attacker.clear()
    for _ in range(20):
        net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(iwant=(IWant((msg_id,) * 5),))))
        net.pump()
    # answered gossip_retransmission times, however often and many times asked
    assert len(attacker.messages()) == a.config.gossip_retransmission
    assert a.stats.iwant_ignored > 0
    before = a.peer_score(attacker.peer_id, net.now)
    net.tick()
    assert a.peer_score(attacker.peer_id, net.now) < min(before, 0)
    honest_still_flow(net, a, honest)


def test_graft_during_backoff() -> None:
    net, a, honest, attacker = setup()
    net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    assert attacker.peer_id in a.mesh_peers(T)
    # a prunes it (leaving and rejoining the topic is the simplest way)
    a.unsubscribe(T, net.now)
    a.subscribe(T, net.now)
    net.pump()
    assert attacker.peer_id not in a.mesh_peers(T)
    expiry = a.backoff(T, attacker.peer_id)
    assert expiry is not None
    attacker.clear()
    net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    net.pump()
    assert attacker.peer_id not in a.mesh_peers(T)
    [prune] = attacker.control("prune")
    assert prune.topic == T and prune.backoff == a.config.prune_backoff
    assert a.peer_score(attacker.peer_id, net.now) == -10  # one behaviour penalty: 1² · -10
    assert (a.backoff(T, attacker.peer_id) or 0) > expiry  # the backoff was extended to a full minute
    # again at once: within the flood threshold of that backoff, so two more
    net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    net.pump()
    assert a.peer_score(attacker.peer_id, net.now) == -90  # 3² · -10: graylisted
    assert attacker.peer_id not in a.mesh_peers(T)
    honest_still_flow(net, a, honest)


def test_ihave_spam() -> None:
    net, a, honest, attacker = setup()
    attacker.clear()
    cfg = a.config
    for i in range(cfg.max_ihave_messages + 5):
        bogus = tuple(b"bogus-%d-%d" % (i, j) for j in range(100))
        net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(ihave=(IHave(T, bogus),))))
        net.pump()
    iwants = attacker.control("iwant")
    assert len(iwants) == cfg.max_ihave_messages  # the rest of this heartbeat's IHAVEs are ignored
    assert a.stats.ihave_ignored == 5
    # nothing arrives: the promises break and the advertiser is penalised
    net.tick(int(cfg.iwant_followup_time) + 1)
    assert a.stats.promises_broken == cfg.max_ihave_messages
    assert a.peer_score(attacker.peer_id, net.now) < cfg.score_thresholds.gossip_threshold
    # below the gossip threshold its IHAVEs are not even looked at
    attacker.clear()
    net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(ihave=(IHave(T, (b"more",)),))))
    net.pump()
    assert attacker.control("iwant") == []
    honest_still_flow(net, a, honest)


def test_ihave_ids_per_heartbeat_are_capped() -> None:
    net, a, honest, attacker = setup(GossipConfig(max_ihave_length=50))
    attacker.clear()
    for i in range(3):
        ids = tuple(b"x-%d-%d" % (i, j) for j in range(40))
        net.send(attacker.peer_id, a.local, RPC(control=ControlMessage(ihave=(IHave(T, ids),))))
    net.pump()
    asked = sum(len(w.message_ids) for w in attacker.control("iwant"))
    assert asked == 50


def test_a_peer_that_never_forwards() -> None:
    # P3 needs the topic's expected rate: here at least 2 messages per decay period.
    topic = TopicScoreParams(
        mesh_message_deliveries_weight=-1.0,
        mesh_message_deliveries_threshold=2.0,
        mesh_message_deliveries_activation=3.0,
        mesh_message_deliveries_decay=0.8,
        mesh_failure_penalty_weight=-1.0,
    )
    cfg = GossipConfig(score_params=ScoreParams(topics={T: topic}))
    net = RouterNet()
    a = net.router(cfg)
    publishers = net.routers_n(4, cfg)
    freeloader = net.puppet()
    net.full_mesh([a, *publishers])
    net.connect(a.local, freeloader.peer_id)
    net.send(freeloader.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    for r in (a, *publishers):
        r.subscribe(T, net.now)
    net.pump()
    net.send(freeloader.peer_id, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    assert freeloader.peer_id in a.mesh_peers(T)
    seq = 0
    for _ in range(8):
        for r in publishers:
            seq += 1
            r.publish(T, b"tick %d" % seq, net.now)
        net.pump()
        net.tick()
    # the freeloader delivered nothing it was expected to: negative, pruned, backed off
    assert a.peer_score(freeloader.peer_id, net.now) < 0
    assert freeloader.peer_id not in a.mesh_peers(T)
    assert [p.topic for p in freeloader.control("prune")] == [T]
    # honest publishers deliver on time and stay in the mesh with good scores
    assert all(a.peer_score(r.local, net.now) >= 0 for r in publishers)
    assert len(net.delivered(a.local)) == seq
    honest_still_flow(net, a, publishers)
