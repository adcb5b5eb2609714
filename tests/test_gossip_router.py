"""The sans-IO gossipsub router, driven synchronously with explicit time."""

from __future__ import annotations

import random

import pytest

from guts.errors import LocalProtocolError
from guts.gossip._codec import RPC, ControlMessage, Graft, IDontWant, IHave, IWant, Prune, PxPeer, SubOpts
from guts.gossip._config import MESHSUB_V10, MESHSUB_V11, MESHSUB_V12, GossipConfig
from guts.gossip._signing import SignaturePolicy, sign_message
from guts.gossip.router import MessageDelivered, PeersExchanged, ValidationRequested, ValidationResult
from guts.gossip.score import ScoreParams

from .gossip_net import RouterNet

T = "topic"


def test_mesh_forms_within_bounds() -> None:
    net = RouterNet()
    routers = net.routers_n(20)
    net.full_mesh(routers)
    for r in routers:
        r.subscribe(T, net.now)
    net.pump()
    net.tick(3)
    # The first heartbeats' prunes can leave a peer below d_low with every
    # other peer pruning it: the prune backoff (60 s) keeps it from grafting
    # them again until then. The bounds hold once the meshes settle.
    for _ in range(int(routers[0].config.prune_backoff) + 5):
        if all(r.config.d_low <= len(r.mesh_peers(T)) <= r.config.d_high for r in routers):
            break
        net.tick(1)
    for r in routers:
        mesh = r.mesh_peers(T)
        assert r.config.d_low <= len(mesh) <= r.config.d_high
        assert len(r.subscribers(T)) == 19
        for peer in mesh:  # links are bidirectional
            assert r.local in net.routers[peer].mesh_peers(T)


def sparse_net(n: int, degree: int, seed: int = 7, config: GossipConfig | None = None) -> tuple[RouterNet, list]:
    net = RouterNet(seed)
    routers = net.routers_n(n, config)
    rng = random.Random(seed)
    for i, r in enumerate(routers):  # a ring keeps it connected, plus random chords
        net.connect(r.local, routers[(i + 1) % n].local)
    links = {(i, (i + 1) % n) for i in range(n)} | {((i + 1) % n, i) for i in range(n)}
    while len(links) < n * degree:
        a, b = rng.sample(range(n), 2)
        if (a, b) not in links:
            links |= {(a, b), (b, a)}
            net.connect(routers[a].local, routers[b].local)
    for r in routers:
        r.subscribe(T, net.now)
    net.pump()
    net.tick(2)
    return net, routers


def test_publish_reaches_every_subscriber_without_flooding() -> None:
    net, routers = sparse_net(40, 10, config=GossipConfig(flood_publish=False))
    frames_before = net.frames
    ids = [routers[i % 40].publish(T, b"m%d" % i, net.now) for i in range(20)]
    net.pump()
    for i, r in enumerate(routers):
        got = set(net.delivered_ids(r.local))
        mine = {ids[j] for j in range(20) if j % 40 == i}
        assert got == set(ids) - mine
    # each router sends each message to at most its mesh, not all of its ~10 peers
    sent = sum(r.stats.messages_forwarded for r in routers)
    assert sent < 20 * 40 * 9
    assert net.frames > frames_before


def test_flood_publish_goes_to_every_topic_peer() -> None:
    net = RouterNet()
    a, *others = net.routers_n(15)
    net.full_mesh([a, *others])
    for r in others:
        r.subscribe(T, net.now)
    net.pump()
    a.publish(T, b"x", net.now)
    out = a.take_outgoing()
    assert {peer for peer, _ in out} == {r.local for r in others}


def test_a_limited_publish_goes_to_that_many_peers_mesh_first_and_still_reaches_all() -> None:
    net = RouterNet()
    a, *others = net.routers_n(15)
    net.full_mesh([a, *others])
    for r in [a, *others]:
        r.subscribe(T, net.now)
    net.pump()
    net.tick(2)
    mesh = a.mesh_peers(T)
    a.publish(T, b"x", net.now, limit=3)
    out = {peer for peer, _ in a.take_outgoing()}
    assert len(out) == 3 and out <= mesh  # mesh peers first, only three
    a.publish(T, b"x2", net.now, limit=3)
    net.pump()
    assert all(net.delivered(r.local) == [b"x2"] for r in others)  # the mesh carries it on
    b, *rest = others
    b.publish(T, b"y", net.now, limit=50)  # more than the mesh: the other topic peers too
    assert {peer for peer, _ in b.take_outgoing()} == {r.local for r in [a, *rest]}


def test_fanout_publish_without_flood_and_its_expiry() -> None:
    net = RouterNet()
    cfg = GossipConfig(flood_publish=False)
    a, *others = net.routers_n(10, cfg)
    net.full_mesh([a, *others])
    for r in others:
        r.subscribe(T, net.now)
    net.pump()
    a.publish(T, b"x", net.now)
    net.pump()
    fanout = a.fanout_peers(T)
    assert len(fanout) == cfg.d
    assert all(net.delivered(r.local) == [b"x"] for r in others)
    net.tick(int(cfg.fanout_ttl) + 2)
    assert a.fanout_peers(T) == set()


def test_join_takes_fanout_peers_into_the_mesh() -> None:
    net = RouterNet()
    a, *others = net.routers_n(8, GossipConfig(flood_publish=False))
    net.full_mesh([a, *others])
    for r in others:
        r.subscribe(T, net.now)
    net.pump()
    a.publish(T, b"x", net.now)
    fanout = a.fanout_peers(T)
    a.subscribe(T, net.now)
    assert fanout <= a.mesh_peers(T)
    assert a.fanout_peers(T) == set()


def test_hello_and_subscription_changes() -> None:
    net = RouterNet()
    a, b = net.routers_n(2)
    a.subscribe(T, net.now)
    net.connect(a.local, b.local)
    net.pump()
    assert b.subscribers(T) == {a.local}
    a.unsubscribe(T, net.now)
    net.pump()
    assert b.subscribers(T) == set()


def test_leave_prunes_the_mesh_with_the_unsubscribe_backoff() -> None:
    net = RouterNet()
    a = net.router()
    p = net.puppet()
    net.connect(a.local, p.peer_id)
    net.send(p.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    a.subscribe(T, net.now)
    net.pump()
    assert p.control("graft") == [Graft(T)]
    a.unsubscribe(T, net.now)
    net.pump()
    prune = p.control("prune")[0]
    assert prune.topic == T and prune.backoff == 10 and prune.peers == ()


def test_graft_for_a_topic_we_do_not_have_is_ignored() -> None:
    net = RouterNet()
    a = net.router()
    p = net.puppet()
    net.connect(a.local, p.peer_id)
    net.send(p.peer_id, a.local, RPC(control=ControlMessage(graft=(Graft("elsewhere"),))))
    net.pump()
    assert p.control("prune") == []


def test_prune_backoff_is_respected_with_slack() -> None:
    net = RouterNet()
    a = net.router(GossipConfig(d=1, d_low=1, d_high=2, d_out=0, d_score=0))
    p = net.puppet()
    net.connect(a.local, p.peer_id)
    net.send(p.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    a.subscribe(T, net.now)
    net.pump()
    net.send(p.peer_id, a.local, RPC(control=ControlMessage(prune=(Prune(T, backoff=5),))))
    assert a.mesh_peers(T) == set()
    p.clear()
    net.tick(5)  # backoff 5 s, plus one heartbeat of slack
    assert p.control("graft") == []
    net.tick(2)
    assert p.control("graft") == [Graft(T)]


@pytest.mark.parametrize("protocol", [MESHSUB_V10, MESHSUB_V11, MESHSUB_V12])
def test_versions_get_what_they_understand(protocol: str) -> None:
    net = RouterNet()
    a = net.router(GossipConfig(idontwant_min_data_size=10))
    src = net.router()
    p = net.puppet()
    net.connect(a.local, src.local)
    net.connect(a.local, p.peer_id, protocol)
    assert a.protocol(p.peer_id) == protocol
    net.send(p.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    src.subscribe(T, net.now)
    net.pump()
    a.subscribe(T, net.now)
    net.pump()
    assert p.peer_id in a.mesh_peers(T)
    # a large message from elsewhere: an IDONTWANT goes to v1.2 mesh peers only
    p.clear()
    src.publish(T, b"x" * 100, net.now)
    net.pump()
    assert len(p.messages()) == 1
    assert bool(p.control("idontwant")) == (protocol == MESHSUB_V12)
    # a PRUNE carries a backoff for v1.1 and later only
    p.clear()
    a.unsubscribe(T, net.now)
    net.pump()
    [prune] = p.control("prune")
    assert prune.backoff == (None if protocol == MESHSUB_V10 else 10)


def test_ihave_iwant_recovers_a_missed_message() -> None:
    net = RouterNet()
    a, b = net.routers_n(2)
    net.connect(a.local, b.local)
    a.subscribe(T, net.now)
    b.subscribe(T, net.now)
    net.pump()
    # b leaves a's mesh (PRUNE) but stays a topic peer: it gets gossip, not messages
    net.send(b.local, a.local, RPC(control=ControlMessage(prune=(Prune(T, backoff=60),))))
    b.take_outgoing()
    b._state.mesh[T].discard(a.local)  # as if b had pruned a itself
    msg_id = a.publish(T, b"late", net.now)
    for peer, frame in a.take_outgoing():  # lose the direct copy
        pass
    net.tick()  # a gossips IHAVE to b; b asks with IWANT; a answers
    assert net.delivered_ids(b.local) == [msg_id]


def test_iwant_answers_are_limited_per_peer_and_message() -> None:
    net = RouterNet()
    a = net.router()
    p = net.puppet()
    net.connect(a.local, p.peer_id)
    a.subscribe(T, net.now)
    msg_id = a.publish(T, b"x", net.now)
    net.pump()
    p.clear()
    for _ in range(5):
        net.send(p.peer_id, a.local, RPC(control=ControlMessage(iwant=(IWant((msg_id,)),))))
        net.pump()
    assert len(p.messages()) == a.config.gossip_retransmission


def test_idontwant_stops_forwarding_to_that_peer() -> None:
    net = RouterNet()
    a, src = net.routers_n(2)
    p = net.puppet()
    net.connect(a.local, src.local)
    net.connect(a.local, p.peer_id)
    net.send(p.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    a.subscribe(T, net.now)
    src.subscribe(T, net.now)
    net.pump()
    assert p.peer_id in a.mesh_peers(T)
    raw = sign_message(src._keypair, T, b"payload", 99)  # type: ignore[arg-type]
    msg_id = a._state.message_id(raw)
    net.send(p.peer_id, a.local, RPC(control=ControlMessage(idontwant=(IDontWant((msg_id,)),))))
    p.clear()
    net.send(src.local, a.local, RPC(messages=(raw,)))
    net.pump()
    assert p.messages() == []
    assert net.delivered_ids(a.local) == [msg_id]


def test_duplicates_are_delivered_once() -> None:
    net = RouterNet()
    a, b, c = net.routers_n(3)
    net.full_mesh([a, b, c])
    for r in (a, b, c):
        r.subscribe(T, net.now)
    net.pump()
    a.publish(T, b"once", net.now)
    net.pump()
    assert net.delivered(b.local) == [b"once"] and net.delivered(c.local) == [b"once"]
    assert b.stats.messages_duplicate + c.stats.messages_duplicate >= 1


def test_messages_on_topics_we_do_not_join_are_ignored() -> None:
    net = RouterNet()
    a, b = net.routers_n(2)
    net.connect(a.local, b.local)
    b.subscribe("other", net.now)
    net.pump()
    raw = sign_message(a._keypair, T, b"x", 1)  # type: ignore[arg-type]
    net.send(a.local, b.local, RPC(messages=(raw,)))
    assert b.stats.messages_not_subscribed == 1 and net.delivered(b.local) == []


@pytest.mark.parametrize(
    ("result", "delivered", "penalised"),
    [(ValidationResult.ACCEPT, True, False), (ValidationResult.REJECT, False, True), (ValidationResult.IGNORE, False, False)],
)
def test_validation_outcomes(result: ValidationResult, delivered: bool, penalised: bool) -> None:
    net = RouterNet()
    a, b, c = net.routers_n(3)
    net.connect(a.local, b.local)
    net.connect(b.local, c.local)
    for r in (a, b, c):
        r.subscribe(T, net.now)
    b.set_validated(T, True)
    net.pump()
    msg_id = a.publish(T, b"check me", net.now)
    net.pump()
    requests = [e for e in net.events[b.local] if isinstance(e, ValidationRequested)]
    assert [r.message.message_id for r in requests] == [msg_id]
    assert net.delivered(b.local) == [] and net.delivered(c.local) == []
    assert b.report_validation(msg_id, result, net.now)
    assert not b.report_validation(msg_id, result, net.now)
    net.pump()
    assert bool(net.delivered(b.local)) == delivered
    assert bool(net.delivered(c.local)) == delivered  # forwarded only if accepted
    assert (b.peer_score(a.local, net.now) < 0) == penalised


def test_emit_self() -> None:
    net = RouterNet()
    a = net.router(GossipConfig(emit_self=True))
    a.subscribe(T, net.now)
    a.publish(T, b"me", net.now)
    net.pump()
    [event] = net.events[a.local]
    assert isinstance(event, MessageDelivered) and event.message.author == a.local
    assert event.message.propagation_source is None


def test_publish_limits() -> None:
    net = RouterNet()
    a = net.router(GossipConfig(max_message_size=10))
    with pytest.raises(LocalProtocolError):
        a.publish(T, b"x" * 11, net.now)
    with pytest.raises(LocalProtocolError):
        a.publish("", b"x", net.now)
    anon = net.router(GossipConfig(signature_policy=SignaturePolicy.STRICT_NO_SIGN))
    anon.publish(T, b"same", net.now)
    with pytest.raises(LocalProtocolError):
        anon.publish(T, b"same", net.now)


def test_strict_no_sign_network() -> None:
    net = RouterNet()
    cfg = GossipConfig(signature_policy=SignaturePolicy.STRICT_NO_SIGN)
    a, b = net.routers_n(2, cfg)
    net.connect(a.local, b.local)
    a.subscribe(T, net.now)
    b.subscribe(T, net.now)
    net.pump()
    a.publish(T, b"anon", net.now)
    net.pump()
    [event] = [e for e in net.events[b.local] if isinstance(e, MessageDelivered)]
    assert event.message.author is None and event.message.data == b"anon"


def test_oversubscribed_mesh_is_pruned_to_d_keeping_outbound_peers() -> None:
    net = RouterNet()
    cfg = GossipConfig()
    a = net.router(cfg)
    peers = net.routers_n(16)
    a.subscribe(T, net.now)
    for i, r in enumerate(peers):
        net.connect(a.local, r.local, a_dialed=i < 3)  # a dialled 3 of them
        r.subscribe(T, net.now)
    net.pump()
    for r in peers:  # everyone grafts a
        net.send(r.local, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    assert len(a.mesh_peers(T)) <= cfg.d_high + 3  # beyond d_high only outbound peers get in
    net.tick()
    mesh = a.mesh_peers(T)
    assert cfg.d_low <= len(mesh) <= cfg.d_high
    outbound = {r.local for r in peers[:3]}
    assert len(mesh & outbound) >= cfg.d_out


def test_opportunistic_grafting_brings_in_better_peers() -> None:
    net = RouterNet()
    cfg = GossipConfig(d=3, d_low=2, d_high=4, d_out=1, d_score=2, opportunistic_graft_ticks=5,
                       graft_on_subscribe=False)
    a = net.router(cfg)
    peers = net.routers_n(8, GossipConfig(graft_on_subscribe=False))
    for r in peers:
        net.connect(a.local, r.local)
        r.subscribe(T, net.now)
    net.pump()
    a.subscribe(T, net.now)
    net.pump()
    mesh = a.mesh_peers(T)
    outside = [r for r in peers if r.local not in mesh]
    # peers outside the mesh deliver first, and build up a score
    for i, r in enumerate(outside):
        for j in range(5):
            r.publish(T, b"%d-%d" % (i, j), net.now)
    net.pump()
    net.tick(5)
    assert a.mesh_peers(T) - mesh, "no better peer was grafted"


def test_px_is_taken_only_from_well_scored_peers() -> None:
    net = RouterNet()
    cfg = GossipConfig(score_params=ScoreParams(app_specific_score=lambda p: 20.0 if p == good else 0.0))
    good = net.puppet().peer_id
    bad = net.puppet().peer_id
    a = net.router(cfg)
    a.subscribe(T, net.now)
    for p in (good, bad):
        net.connect(a.local, p)
    offered = (PxPeer(b"\x00\x24" + bytes(36)),)
    for p in (good, bad):
        net.send(p, a.local, RPC(control=ControlMessage(prune=(Prune(T, offered, 60),))))
    net.pump()
    exchanged = [e for e in net.events[a.local] if isinstance(e, PeersExchanged)]
    assert [e.pruned_by for e in exchanged] == [good]
    assert exchanged[0].peers == offered


def test_heartbeat_prunes_offer_px() -> None:
    net = RouterNet()
    cfg = GossipConfig(d=2, d_low=1, d_high=2, d_out=0, d_score=0)
    a = net.router(cfg)
    peers = net.routers_n(5)
    for r in peers:
        net.connect(a.local, r.local)
        r.subscribe(T, net.now)
    a.subscribe(T, net.now)
    net.pump()
    for r in peers:
        net.send(r.local, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    captured = []
    net.now += 1
    a.heartbeat(net.now)
    for peer, frame in a.take_outgoing():
        from guts.gossip._codec import decode_rpc

        rpc = decode_rpc(frame)
        if rpc.control:
            captured.extend(rpc.control.prune)
    assert captured and all(p.backoff == 60 and p.peers for p in captured)


def test_removed_peer_leaves_mesh_and_topics() -> None:
    net = RouterNet()
    a, b = net.routers_n(2)
    net.connect(a.local, b.local)
    a.subscribe(T, net.now)
    b.subscribe(T, net.now)
    net.pump()
    assert b.local in a.mesh_peers(T)
    net.disconnect(a.local, b.local)
    assert a.mesh_peers(T) == set() and a.subscribers(T) == set() and a.peers == []


def test_direct_peers_always_get_messages_and_never_graft() -> None:
    net = RouterNet()
    d = net.puppet()
    a = net.router(GossipConfig(direct_peers=frozenset({d.peer_id})))
    src = net.router()
    net.connect(a.local, d.peer_id)
    net.connect(a.local, src.local)
    net.send(d.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    a.subscribe(T, net.now)
    src.subscribe(T, net.now)
    net.pump()
    assert d.peer_id not in a.mesh_peers(T)
    net.send(d.peer_id, a.local, RPC(control=ControlMessage(graft=(Graft(T),))))
    net.pump()
    assert [p.topic for p in d.control("prune")] == [T]
    d.clear()
    src.publish(T, b"to the direct peer too", net.now)
    net.pump()
    assert [m.data for m in d.messages()] == [b"to the direct peer too"]


def test_frames_are_split_under_the_rpc_limit() -> None:
    net = RouterNet()
    cfg = GossipConfig(max_message_size=1000, max_rpc_size=2500)
    a = net.router(cfg)
    p = net.puppet()
    net.connect(a.local, p.peer_id)
    net.send(p.peer_id, a.local, RPC(subscriptions=(SubOpts(True, T),)))
    a.subscribe(T, net.now)
    ids = [a.publish(T, bytes(900) + bytes([i]), net.now) for i in range(5)]
    net.send(p.peer_id, a.local, RPC(control=ControlMessage(iwant=(IWant(tuple(ids)),))))
    frames = a.take_outgoing()
    assert len(frames) >= 3 and all(len(f) <= 2500 for _, f in frames)


def test_ihave_only_asks_for_unseen_ids_in_joined_topics() -> None:
    net = RouterNet()
    a = net.router()
    p = net.puppet()
    net.connect(a.local, p.peer_id)
    a.subscribe(T, net.now)
    seen_id = a.publish(T, b"mine", net.now)
    net.pump()
    p.clear()
    net.send(p.peer_id, a.local, RPC(control=ControlMessage(ihave=(
        IHave(T, (seen_id, b"new")), IHave("not-joined", (b"other",)),
    ))))
    net.pump()
    assert p.control("iwant") == [IWant((b"new",))]
