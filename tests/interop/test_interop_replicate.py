"""Interop: a real js-libp2p gossipsub node relays Guts repository
announcements between two Guts nodes that are not connected to each other,
with the Guts topic validator deciding on both ends::

    A ---- J ---- B      J: js-libp2p 3.3 with gossipsub 17 and kad-dht 16

A and B are nodes as ``guts start`` assembles them (:func:`guts.node.open_node`:
host, DHT, gossip, repositories, sync service, provider and replicator),
each bootstrapping from J and nothing else. J subscribes to the
repository's topic, so it is in both meshes, and serves the DHT, which
stores both nodes' provider records of the repository; J does not serve
``/guts/sync/1.0.0``.

1. A makes a repository (:meth:`~guts.repo.state.Repositories.init`); B
   syncs it once over a direct connection and hangs up. A publishes a new
   commit and announces it, as the push route does
   (:meth:`~guts.repo.state.Repositories.publish`, then
   :meth:`~guts.replicate.replicator.Replicator.announce`). The
   announcement crosses J; B's validator accepts it with J as its
   propagation source; B's replicator fetches from J (refused: no sync
   there), then from the seeds the DHT names, which is A; B holds the new
   commit.
2. The other way: B publishes a commit in its own namespace and announces
   it; A's validator accepts it from J, and A fetches it from B, found in
   the DHT.
3. J publishes two forged announcements of the next statement in A's
   namespace: one whose signature has a flipped bit, one signed with J's
   own key. J's gossipsub forwards anything (it has no validator); the
   Guts validator on A and on B rejects both, nothing is delivered or
   offered to a coalescer, and J's score drops below zero at both nodes
   (P4: invalid message deliveries).

Each node's ``Replicator.swarm`` is 0: joining a swarm connects a node
straight to the seeds the DHT names, and this test is about the path
through J alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from guts.config import NodeConfig
from guts.crypto import KeyPair
from guts.dht import DEFAULT_PROTOCOL as DHT_PROTOCOL
from guts.gossip import GossipMessage
from guts.multiaddr import Multiaddr
from guts.node import Node, open_node
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.sigrefs import next_statement, sign_statement
from guts.repo.state import Repositories
from guts.replicate.announce import RefsAnnounced, Verified, VerifiedRefs, encode_announcement, refs_topic
from guts.replicate.providing import RepoProvider
from guts.replicate.replicator import Replicator
from guts.sync import SYNC_PROTOCOL, fetch
from guts.transport import TcpTransport

from ..repo_helpers import build_history, git, git_text, init_bare
from .conftest import SpawnJs

TCP = "/ip4/127.0.0.1/tcp/0"
J_SEED = bytes(range(100, 132))
#: What gossip counts a message a topic validator rejected as
#: (``RouterStats.rejections``).
VALIDATOR_REJECTED = "rejected by the validator"


class Watch:
    """What one Guts node's gossip and replicator saw of the topic: the
    announcements its validator accepted (``on_accept`` wrapped: the
    replicator's own callback still runs) and every message gossip
    delivered (a subscription of its own beside the replicator's)."""

    def __init__(self, node: Node, topic: str) -> None:
        self.node = node
        self.accepted: list[tuple[VerifiedRefs, GossipMessage]] = []
        self.delivered: list[GossipMessage] = []
        validator = replicator(node).validator
        inner = validator.on_accept

        def on_accept(verified: Verified, message: GossipMessage) -> None:
            assert isinstance(verified, VerifiedRefs)
            self.accepted.append((verified, message))
            if inner is not None:
                inner(verified, message)

        validator.on_accept = on_accept
        self._subscription = node.pubsub.subscribe(topic)

    async def run(self) -> None:
        async for message in self._subscription:
            self.delivered.append(message)

    @property
    def rejected(self) -> int:
        return self.node.pubsub.stats.rejections.get(VALIDATOR_REJECTED, 0)


def replicator(node: Node) -> Replicator:
    assert node.replicator is not None
    return node.replicator


def repos(node: Node) -> Repositories:
    assert node.repos is not None
    return node.repos


def provider(node: Node) -> RepoProvider:
    assert node.providing is not None
    return node.providing


def authored(node: Node) -> dict[str, Any]:
    """``next_event`` arguments: a message whose author is ``node``."""
    return {"from": str(peer_id(node))}


def peer_id(node: Node) -> PeerId:
    return node.host.peer_id


async def start_node(stack: AsyncExitStack, home: Path, bootstrap: str) -> Node:
    """A node as ``guts start`` runs it (no control socket), bootstrapping
    from ``bootstrap`` alone; it stops when ``stack`` closes."""
    config = NodeConfig(
        home=home,
        listen=(Multiaddr.parse(TCP),),
        bootstrap=(Multiaddr.parse(bootstrap),),
        control=False,
        # what "auto" decides on loopback, said here: A and B never enter each
        # other's routing table, so no DHT lookup dials one from the other
        dht_mode="client",
        dht_protocol=DHT_PROTOCOL,
    )
    node = await stack.enter_async_context(open_node(config, keypair=KeyPair.generate(), transports=[TcpTransport()]))
    replicator(node).swarm = 0
    return node


def new_commit(node: Node, rid: str, message: str) -> str:
    """A commit on the canonical main of ``node``'s copy, written into its
    storage (where a push's objects end up)."""
    main = repos(node).show(rid).canonical.ref_map()["refs/heads/main"]
    path = repos(node).storage.path(rid)
    return git_text(
        "-c", "user.name=Guts", "-c", "user.email=guts@example.com",
        "commit-tree", f"{main}^{{tree}}", "-p", main, "-m", message, git_dir=path,
    )  # fmt: skip


async def push(node: Node, rid: str, new: str) -> None:
    """What the push route does once the objects are stored: sign the
    namespace's next statement with ``refs/heads/main`` at ``new``, then
    announce it."""
    me = peer_id(node)
    held = repos(node).show(rid).namespaces.get(me)
    refs = {} if held is None else dict(held.statement.refs)
    await repos(node).publish(rid, node.host.keypair, {**refs, "refs/heads/main": new})
    assert await replicator(node).announce(rid, me)


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    with trio.move_on_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def hang_up(a: Node, b: Node) -> None:
    await a.host.disconnect(peer_id(b))
    await eventually(
        lambda: a.host.connection(peer_id(b)) is None and b.host.connection(peer_id(a)) is None,
        "the direct connection to close",
    )
    await eventually(
        lambda: peer_id(b) not in a.pubsub.peers and peer_id(a) not in b.pubsub.peers,
        "both gossip routers to forget the other node",
    )


def forgeries(node: Node, rid: str, j_key: KeyPair, oid: str) -> list[bytes]:
    """Two announcements of the statement after ``node``'s own in ``rid``
    (``refs/heads/main`` at ``oid``), each in the node's namespace: one with
    a bit of the node's signature flipped, one signed with ``j_key``."""
    state = repos(node).show(rid)
    me = peer_id(node)
    held = state.namespaces[me]
    following = next_statement(
        held.statement, rid=state.rid, signer=me, identity=state.document, refs=[("refs/heads/main", oid)]
    )
    genuine = sign_statement(node.host.keypair, following)
    encoded = genuine.encode()
    assert encoded.count(genuine.signature) == 1
    flipped = bytearray(genuine.signature)
    flipped[7] ^= 0x10
    by_j = j_key.sign(following.canonical)
    forged = [encoded.replace(genuine.signature, bytes(flipped)), encoded.replace(genuine.signature, by_j)]
    return [encode_announcement(RefsAnnounced(state.rid, statement, held.commit)) for statement in forged]


async def test_a_js_gossipsub_node_relays_announcements_between_guts_nodes(
    spawn_js: SpawnJs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guts.replicate")
    j = await spawn_js(listen=[TCP], seed=J_SEED, args=["--gossipsub", "--dht", "--dht-protocol", DHT_PROTOCOL])
    j_id = PeerId.from_string(j.peer_id)
    j_key = KeyPair.from_seed(J_SEED)
    assert j_key.peer_id == j_id  # the same Ed25519 key on both sides

    source = init_bare(tmp_path / "source.git")
    build_history(source, commits=60, topic_every=20)

    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        a = await start_node(stack, tmp_path / "a", j.addr("tcp"))
        await eventually(lambda: j_id in a.dht.table, "A's DHT to know J")

        # A makes the repository, as the init route does.
        state = await repos(a).init(source, keypair=a.host.keypair)
        rid = str(state.rid)
        topic = refs_topic(Rid.parse(rid))
        provider(a).wake()
        replicator(a).follow(rid)
        await j.call("pubsub:subscribe", topic=topic)

        # B syncs it once, straight from A, then hangs up.
        b = await start_node(stack, tmp_path / "b", j.addr("tcp"))
        await eventually(lambda: j_id in b.dht.table, "B's DHT to know J")
        await b.host.connect(a.addrs[0])
        await fetch(b.host, repos(b), peer_id(a), rid, replicator(b).sync_config)
        provider(b).wake()
        replicator(b).follow(rid)
        await hang_up(b, a)

        watch_a, watch_b = Watch(a, topic), Watch(b, topic)
        nursery.start_soon(watch_a.run)
        nursery.start_soon(watch_b.run)
        a_id, b_id = peer_id(a), peer_id(b)

        async def meshes() -> bool:
            js_mesh = set((await j.call("pubsub:mesh", topic=topic))["peers"])
            return (
                {str(a_id), str(b_id)} <= js_mesh
                and a.pubsub.mesh_peers(topic) == [j_id]
                and b.pubsub.mesh_peers(topic) == [j_id]
            )

        await eventually(meshes, "J in the meshes of A and B, and both in J's")
        await eventually(lambda: rid in provider(a).provided and rid in provider(b).provided, "both provided in J's DHT")
        providers = (await j.call("dht:find-providers", cid=rid, count=2, timeout=10))["providers"]
        assert {p["peer_id"] for p in providers} == {str(a_id), str(b_id)}

        # 1. A pushes; the announcement crosses J; B fetches from A, found in the DHT.
        assert a.host.connection(b_id) is None
        a_new = new_commit(a, rid, "from A")
        pushed = trio.current_time()
        await push(a, rid, a_new)
        a_statement = repos(a).show(rid).namespaces[a_id].statement
        relayed = await j.next_event("pubsub:message", topic=topic, **authored(a))
        assert relayed["propagation_source"] == str(a_id)
        await eventually(lambda: repos(b).show(rid).canonical.ref_map().get("refs/heads/main") == a_new, "B to fetch")
        print(f"A's push reached B's storage {trio.current_time() - pushed:.2f} s after A began to publish it")
        [(verified, message)] = watch_b.accepted
        assert verified.statement == a_statement
        assert message.propagation_source == j_id and message.author == a_id
        assert message.message_id.hex() == relayed["msg_id_hex"]
        assert [(m.author, m.propagation_source) for m in watch_b.delivered] == [(a_id, j_id)]
        assert (replicator(b).fetches, replicator(b).failures) == (1, 0)
        assert repos(b).show(rid).namespaces[a_id].statement == a_statement
        git("cat-file", "-e", f"{a_new}^{{commit}}", git_dir=repos(b).storage.path(rid))
        # B fetched from the announcement's author, never from J, the relay
        # (which forwarded it because it did not hold it, and serves no sync)
        assert not any(str(j_id) in r.getMessage() and SYNC_PROTOCOL in r.getMessage() for r in caplog.records)

        # 2. The other way: B pushes in its own namespace; A fetches from B.
        await hang_up(a, b)
        await eventually(meshes, "the meshes through J again")
        b_new = new_commit(b, rid, "from B")
        pushed = trio.current_time()
        await push(b, rid, b_new)
        b_statement = repos(b).show(rid).namespaces[b_id].statement
        relayed = await j.next_event("pubsub:message", topic=topic, **authored(b))
        assert relayed["propagation_source"] == str(b_id)

        def a_has_b() -> bool:
            ns = repos(a).show(rid).namespaces.get(b_id)
            return ns is not None and ns.statement == b_statement

        await eventually(a_has_b, "A to fetch B's namespace")
        print(f"B's push reached A's storage {trio.current_time() - pushed:.2f} s after B began to publish it")
        [(verified, message)] = watch_a.accepted
        assert verified.statement == b_statement
        assert message.propagation_source == j_id and message.author == b_id
        assert [(m.author, m.propagation_source) for m in watch_a.delivered] == [(b_id, j_id)]
        assert (replicator(a).fetches, replicator(a).failures) == (1, 0)
        git("cat-file", "-e", f"{b_new}^{{commit}}", git_dir=repos(a).storage.path(rid))

        # 3. J forges the next statement of A's namespace, twice.
        held = repos(a).show(rid).namespaces[a_id]
        assert repos(b).show(rid).namespaces[a_id] == held
        watches = (watch_a, watch_b)
        scores = [w.node.pubsub.score(j_id) for w in watches]
        assert [w.rejected for w in watches] == [0, 0]
        for data in forgeries(a, rid, j_key, b_new):
            reply = await j.call("pubsub:publish", topic=topic, data_hex=data.hex())
            assert set(reply["recipients"]) >= {str(a_id), str(b_id)}
        await eventually(lambda: [w.rejected for w in watches] == [2, 2], "both validators to reject both")
        for w, score in zip(watches, scores):
            node = w.node
            after = node.pubsub.score(j_id)
            print(f"J's score at {peer_id(node)}: {score:.2f} before the forgeries, {after:.2f} after")
            assert after < 0 <= score, f"J's score at {peer_id(node)}: {score} before, {after} after"
            assert node.pubsub.stats.rejections.get("bad signature", 0) == 0  # J's own envelope signature is good
            assert len(w.accepted) == 1 and len(w.delivered) == 1  # nothing of J's delivered or offered
            assert replicator(node).fetches == 1
        assert repos(a).show(rid).namespaces[a_id] == held
        assert repos(b).show(rid).namespaces[a_id] == held
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum(f"peer {j_id}: announcement rejected (forged)" in line for line in lines) == 2
        # and js, which validated nothing, holds nothing against the Guts nodes
        for node_id in (a_id, b_id):
            assert (await j.call("pubsub:score", peer=str(node_id)))["score"] >= 0
