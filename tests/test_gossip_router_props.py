"""Property tests: whatever peers send, the router raises nothing but
DecodeError, and its state stays consistent."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guts.crypto import KeyPair
from guts.errors import DecodeError
from guts.gossip._codec import RPC, ControlMessage, Graft, IDontWant, IHave, IWant, Prune, PxPeer, RawMessage, SubOpts, encode_rpc
from guts.gossip._config import MESHSUB_V10, MESHSUB_V12, GossipConfig
from guts.gossip._signing import sign_message
from guts.gossip.router import GossipRouter

KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in range(1, 5)]
TOPICS = ["a", "b", "c"]
topics = st.sampled_from(TOPICS) | st.text(max_size=4)
ids = st.lists(st.binary(max_size=48), max_size=6).map(tuple)
opt = st.none() | st.binary(max_size=40)
forged = st.builds(RawMessage, opt, opt, opt, topics, opt, opt)
signed = st.builds(
    lambda k, t, d, n: sign_message(k, t, d, n),
    st.sampled_from(KEYS), st.sampled_from(TOPICS), st.binary(max_size=64), st.integers(0, 50),
)
control = st.builds(
    ControlMessage,
    st.lists(st.builds(IHave, topics, ids), max_size=3).map(tuple),
    st.lists(st.builds(IWant, ids), max_size=3).map(tuple),
    st.lists(st.builds(Graft, topics), max_size=3).map(tuple),
    st.lists(st.builds(Prune, topics, st.lists(st.builds(PxPeer, st.binary(max_size=40), opt), max_size=3).map(tuple),
                       st.none() | st.integers(0, 1 << 40)), max_size=2).map(tuple),
    st.lists(st.builds(IDontWant, ids), max_size=2).map(tuple),
)
rpcs = st.builds(
    RPC,
    st.lists(st.builds(SubOpts, st.booleans(), topics), max_size=4).map(tuple),
    st.lists(signed | forged, max_size=4).map(tuple),
    st.none() | control,
)
steps = st.lists(
    st.tuples(st.integers(0, 3), st.one_of(rpcs.map(encode_rpc), st.binary(max_size=64)), st.booleans()),
    max_size=25,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_sequence_of_frames(seq: list[tuple[int, bytes, bool]]) -> None:
    me = KeyPair.from_seed(b"\x09" * 32)
    router = GossipRouter(me.peer_id, me, GossipConfig(d=2, d_low=2, d_high=3, d_out=1, d_score=1),
                          rng=random.Random(0), seqno=1)
    for i, key in enumerate(KEYS):
        router.add_peer(key.peer_id, MESHSUB_V10 if i == 3 else MESHSUB_V12, outbound=i % 2 == 0, now=0.0)
    router.subscribe("a", 0.0)
    router.subscribe("b", 0.0)
    now = 0.0
    for who, frame, beat in seq:
        now += 0.3
        try:
            router.handle_frame(KEYS[who].peer_id, frame, now)
        except DecodeError:
            pass
        if beat:
            router.heartbeat(now)
        router.take_events()
        for peer, out in router.take_outgoing():
            assert peer in {k.peer_id for k in KEYS}
            assert len(out) <= router.config.max_rpc_size
        peers = set(router.peers)
        for topic in TOPICS:
            mesh = router.mesh_peers(topic)
            assert mesh <= peers and me.peer_id not in mesh
            if topic not in router.subscriptions:
                assert mesh == set()
    router.publish("a", b"still works", now)
    router.heartbeat(now + 1)
