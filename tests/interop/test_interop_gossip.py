"""Conformance: a mixed gossipsub mesh of Guts nodes and real js-libp2p
gossipsub 17.1 nodes, on ``/meshsub/1.1.0`` and on ``/meshsub/1.2.0``.

Messages published on either side reach every subscriber on both sides;
both sides compute the same message ids; each side verifies the other's
signatures (neither delivers a message whose signature fails); and after
several heartbeats of traffic the js nodes still have every Guts node in
their mesh, with a score that is not negative. A second test makes a Guts
node a gossip-only relay, so that a js node gets messages only by IHAVE and
IWANT through it: lazy pull works only if the ids agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from guts.crypto import KeyPair
from guts.gossip import MESHSUB_V11, MESHSUB_V12, GossipConfig, Gossipsub, Subscription
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.ping import Ping
from guts.transport import TcpTransport

from .conftest import SpawnJs
from .jspeer import JsPeer

TCP = "/ip4/127.0.0.1/tcp/0"
TOPIC = "guts/interop"


@dataclass
class GutsNode:
    host: Host
    gossip: Gossipsub

    @property
    def addr(self) -> str:
        return str(self.host.listen_addrs[0].with_p2p(str(self.host.peer_id)))

    @property
    def id(self) -> str:
        return str(self.host.peer_id)


@asynccontextmanager
async def guts_nodes(configs: list[GossipConfig | None]) -> AsyncIterator[list[GutsNode]]:
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        nodes = []
        for config in configs:
            host = await stack.enter_async_context(open_host(KeyPair.generate(), [TcpTransport()], HostConfig()))
            Identify(host)
            Ping(host)
            await host.listen(Multiaddr.parse(TCP))
            gossip = Gossipsub(host, config)
            await nursery.start(gossip.run)
            nodes.append(GutsNode(host, gossip))
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


async def eventually(check, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    with trio.move_on_after(timeout):
        while not await check():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def js_set(js: JsPeer, cmd: str) -> set[str]:
    return set((await js.call(cmd, topic=TOPIC))["peers"])


async def receive_all(sub: Subscription, count: int, timeout: float = 10.0) -> dict[bytes, object]:
    got = {}
    with trio.fail_after(timeout):
        while len(got) < count:
            msg = await sub.receive()
            got[msg.message_id] = msg
    return got


@pytest.mark.parametrize("protocol", [MESHSUB_V11, MESHSUB_V12])
async def test_mixed_mesh(spawn_js: SpawnJs, protocol: str) -> None:
    js_nodes = [await spawn_js(listen=[TCP], args=["--gossipsub", "--gossip-protocol", protocol]) for _ in range(3)]
    async with guts_nodes([None, None, None]) as guts:
        subs = [g.gossip.subscribe(TOPIC) for g in guts]
        for js in js_nodes:
            await js.call("pubsub:subscribe", topic=TOPIC)
        # everyone connected to everyone: Guts dials js and the Guts after it, js dials js
        for i, g in enumerate(guts):
            for js in js_nodes:
                await g.host.connect(Multiaddr.parse(js.addr("tcp")))
            for other in guts[i + 1:]:
                await g.host.connect(Multiaddr.parse(other.addr))
        for i, js in enumerate(js_nodes):
            for other in js_nodes[i + 1:]:
                await js.call("dial", addr=other.addr("tcp"))
        guts_ids = {g.id for g in guts}

        async def js_guts_links() -> set[tuple[str, str]]:
            """(js, Guts) pairs where js has the Guts node in its mesh."""
            return {(js.peer_id, g) for js in js_nodes for g in await js_set(js, "pubsub:mesh") & guts_ids}

        def guts_js_links() -> set[tuple[str, str]]:
            """The same pairs, as the Guts nodes see their meshes."""
            js_ids = {js.peer_id for js in js_nodes}
            return {(str(p), g.id) for g in guts for p in g.gossip.mesh_peers(TOPIC) if str(p) in js_ids}

        async def meshes_formed() -> bool:
            # every mesh at d_low or more (5 peers each), and js and Guts agree
            # on every link between them
            for js in js_nodes:
                if len(await js_set(js, "pubsub:mesh")) < 4:
                    return False
            if any(len(g.gossip.mesh_peers(TOPIC)) < 4 for g in guts):
                return False
            return await js_guts_links() == guts_js_links()

        await eventually(meshes_formed, what="meshes on both sides")
        links_before = guts_js_links()
        assert len(links_before) >= 6  # of the 9 possible, each mesh missing at most one peer
        for g in guts:
            for js in js_nodes:
                assert g.gossip.router.protocol(PeerId.from_string(js.peer_id)) == protocol

        # several heartbeats of traffic both ways; 1 KiB payloads, so that v1.2
        # nodes exchange IDONTWANT too
        from_js: dict[str, tuple[str, str]] = {}  # msg id hex -> (author, data hex)
        from_guts: dict[str, tuple[str, str]] = {}
        for round_ in range(6):
            for i, js in enumerate(js_nodes):
                data = (b"js %d round %d " % (i, round_)).ljust(1024, b".")
                reply = await js.call("pubsub:publish", topic=TOPIC, data_hex=data.hex())
                from_js[reply["msg_id_hex"]] = (js.peer_id, data.hex())
            for i, g in enumerate(guts):
                data = (b"guts %d round %d " % (i, round_)).ljust(1024, b".")
                msg_id = await g.gossip.publish(TOPIC, data)
                from_guts[msg_id.hex()] = (g.id, data.hex())
            await trio.sleep(1.0)

        # Guts nodes got every message: js's and the other Guts nodes', with js's ids
        for i, (g, sub) in enumerate(zip(guts, subs)):
            others = {k: v for k, v in from_guts.items() if v[0] != g.id}
            got = await receive_all(sub, len(from_js) + len(others))
            assert {m.hex() for m in got} == set(from_js) | set(others)
            for msg_id, msg in got.items():
                author, data_hex = from_js.get(msg_id.hex()) or from_guts[msg_id.hex()]
                assert str(msg.author) == author and msg.data.hex() == data_hex  # type: ignore[attr-defined]
                # the id is js's: author PublicKey protobuf + seqno
                assert msg_id == msg.key + msg.seqno  # type: ignore[attr-defined]
            assert g.gossip.stats.messages_rejected == 0

        # js nodes got every message (each delivered only after its signature
        # verified), with the ids we computed, and our signatures and keys
        for js in js_nodes:
            want = {k for k, v in from_js.items() if v[0] != js.peer_id} | set(from_guts)
            got_js: dict[str, dict] = {}
            with trio.fail_after(10):
                while set(got_js) != want:
                    event = await js.next_event("pubsub:message", timeout=10)
                    got_js[event["msg_id_hex"]] = event
            for msg_id_hex, event in got_js.items():
                if msg_id_hex in from_guts:
                    author, data_hex = from_guts[msg_id_hex]
                    assert event["from"] == author and event["data_hex"] == data_hex
                    assert msg_id_hex == event["key_hex"] + event["seqno_hex"]
                    assert len(bytes.fromhex(event["signature_hex"])) == 64

        # js kept every Guts node in its mesh (no link lost, none pruned), and
        # scores each Guts node >= 0
        links_after = await js_guts_links()
        assert links_before <= links_after == guts_js_links()
        for js in js_nodes:
            for g in guts:
                score = (await js.call("pubsub:score", peer=g.id))["score"]
                assert score >= 0, f"js scores Guts node {g.id} at {score}"
        for g in guts:
            for js in js_nodes:
                assert g.gossip.score(PeerId.from_string(js.peer_id)) >= 0
        # IDONTWANT from js to its mesh peers, on v1.2 only (ids are kept for
        # five heartbeats: these are the last rounds')
        counts = {
            (js_id, g.id): g.gossip.router.dont_send_count(PeerId.from_string(js_id))
            for g in guts
            for js_id in (js.peer_id for js in js_nodes)
        }
        if protocol == MESHSUB_V12:
            assert all(counts[link] > 0 for link in links_after)
        else:
            assert set(counts.values()) == {0}


@pytest.mark.parametrize("protocol", [MESHSUB_V11, MESHSUB_V12])
async def test_lazy_pull_through_a_guts_relay(spawn_js: SpawnJs, protocol: str) -> None:
    """j_src - g_relay - j_leaf: the relay keeps no mesh (D = 0, as the spec
    suggests for bootstrappers), so j_leaf gets j_src's messages only as
    IHAVE from the relay, then IWANT, then the message."""
    args = ["--gossipsub", "--gossip-protocol", protocol]
    j_src = await spawn_js(listen=[TCP], args=args)
    j_leaf = await spawn_js(listen=[TCP], args=args)
    relay_config = GossipConfig(d=0, d_low=0, d_high=0, d_score=0, d_out=0, d_lazy=6)
    async with guts_nodes([relay_config]) as (relay,):
        sub = relay.gossip.subscribe(TOPIC)
        for js in (j_src, j_leaf):
            await js.call("pubsub:subscribe", topic=TOPIC)
            # js dials: the relay refuses GRAFTs on inbound connections once
            # its mesh is at D_high (0); an outbound peer it would accept
            # until the next heartbeat pruned it
            await js.call("dial", addr=relay.addr)
        await eventually(
            lambda: _async_true(len(relay.gossip.subscribers(TOPIC)) == 2), what="both js nodes subscribed"
        )
        ids = []
        for i in range(3):
            reply = await j_src.call("pubsub:publish", topic=TOPIC, data_hex=(b"lazy %d" % i).hex())
            ids.append(reply["msg_id_hex"])
            await trio.sleep(0.3)
        got = await receive_all(sub, 3)
        assert {m.hex() for m in got} == set(ids)
        for _ in ids:
            event = await j_leaf.next_event("pubsub:message", timeout=15)
            assert event["msg_id_hex"] in ids and event["propagation_source"] == relay.id
        assert relay.gossip.stats.iwant_answered >= 3
        await trio.sleep(4)  # past js's 3 s IWANT follow-up: promises kept, no penalty
        assert (await j_leaf.call("pubsub:score", peer=relay.id))["score"] >= 0
        assert relay.gossip.mesh_peers(TOPIC) == []
        assert relay.gossip.stats.messages_forwarded == 0  # nothing went out eagerly


async def _async_true(value: bool) -> bool:
    return value


async def test_js_signed_peer_records_open(spawn_js: SpawnJs) -> None:
    """What a js node would put in peer exchange: its signed peer record
    (here as js's identify sends it) opens with our verifier."""
    from guts.gossip._peer_record import open_peer_record
    from guts.identify import IDENTIFY
    from guts.pb import identify_pb2
    from guts.wire import MessageStream

    js = await spawn_js(listen=[TCP])
    async with guts_nodes([None]) as (node,):
        conn = await node.host.connect(Multiaddr.parse(js.addr("tcp")))
        with trio.fail_after(10):
            await conn.identified.wait()  # js serves one identify at a time per connection
        stream = await conn.new_stream([IDENTIFY])
        data = await MessageStream(stream, 64 * 1024).receive()
        assert data is not None
        message = identify_pb2.Identify.FromString(data)
        assert message.HasField("signedPeerRecord")
        record = open_peer_record(message.signedPeerRecord)
        assert str(record.peer_id) == js.peer_id
        assert Multiaddr.parse(js.addr("tcp").split("/p2p/")[0]) in record.addrs
