"""One run of the ``repo`` simulation (see :mod:`bench.sim.repo`): build the
network, seed the repository everywhere, push once at the origin, watch
every node until it holds the new state, count what was served.

Every phase is bounded: building and seeding by :attr:`Params.setup_timeout`,
the propagation by :attr:`Params.timeout` (a run that does not converge in
time says so in its :class:`Result` rather than waiting on).
"""

from __future__ import annotations

import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bench.sim._repo_net import (
    FetchLog,
    LogTally,
    Peer,
    Served,
    add_commit,
    make_source,
    read_log,
    run_peer,
    set_links,
)
from guts.crypto import KeyPair
from guts.errors import GutsError
from guts.peer import PeerId
from guts.replicate.announce import refs_topic
from guts.replicate.replicator import Replicator
from guts.repo.rid import Rid
from guts.repo.storage import RepositoryNotFound
from guts.sync import fetch
from guts.transport import MemoryNetwork


@dataclass(frozen=True)
class Params:
    nodes: int = 100
    dials: int = 3  # each node dials this many random others, besides its DHT bootstrap peer
    delay: tuple[float, float] = (0.005, 0.020)  # one-way, drawn once per pair
    commits: int = 20  # the repository's history before the push
    kill_fraction: float = 0.0  # of the nodes, killed during propagation (never the origin)
    kill_after: int = 3  # ... once this many nodes (the origin aside) hold the push, or 1 s after it
    timeout: float = 60.0  # from the push until every survivor must hold it
    drain: float = 2.0  # counting goes on this long after convergence (late fetches)
    settle: float = 3.0  # seconds between the setup and the push (swarm joins, catch-ups, heartbeats)
    setup_timeout: float = 600.0
    #: Connections per node: the node's default. (At 400 the DHT's lookups
    #: connect almost every pair of 100 nodes, and the setup takes minutes.)
    max_connections: int = 50
    clones_at_once: int = 8  # initial syncs at once (git runs as real processes)
    seed: int = 1


@dataclass
class Result:
    params: Params
    links: int = 0
    setup_seconds: float = 0.0
    provided: int = 0  # nodes whose provider record of the RID was stored in the DHT
    in_mesh: int = 0  # nodes with a gossip mesh peer on the repository's topic
    push_seconds: float = 0.0  # the origin's ingest of the new commit and its signed statement
    killed: list[int] = field(default_factory=list)
    killed_at: float | None = None  # seconds after the push
    survivors: int = 0
    converged: bool = False
    took: float | None = None  # from the announcement until every survivor held the push
    per_node: list[float] = field(default_factory=list)  # each survivor but the origin
    received: int = 0  # nodes but the origin that held the push (killed ones before they died too)
    missing: list[int] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)  # per node, from the push on
    fetches: int = 0  # announced fetches the replicators ran (orders)
    fetch_failures: int = 0  # of those, ones that failed with every peer tried
    log: FetchLog = field(default_factory=FetchLog)
    #: Nodes that stopped with an error, and the error: before the push, during it.
    crashed_before: dict[int, str] = field(default_factory=dict)
    crashed: dict[int, str] = field(default_factory=dict)
    #: Warnings of the other ``guts`` loggers during the propagation, by logger.
    warnings: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    #: CPU seconds from the announcement until convergence (or the
    #: timeout): this process (every node), its git subprocesses, and the
    #: wall-clock seconds they were spent in.
    cpu_nodes: float = 0.0
    cpu_git: float = 0.0
    cpu_wall: float = 0.0
    #: Cores busy (process and git), second by second from the announcement.
    busy: list[float] = field(default_factory=list)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _seq(peer: Peer, rid: str, signer: PeerId) -> int:
    assert peer.node.repos is not None
    try:
        ns = peer.node.repos.show(rid).namespaces.get(signer)
    except (RepositoryNotFound, ValueError):
        return 0
    return 0 if ns is None else ns.statement.seq


async def _clone(peer: Peer, source: Peer, rid: str, done: set[int], limit: trio.CapacityLimiter) -> None:
    """``peer`` syncs ``rid`` from ``source`` and follows it, as ``guts repo
    sync`` through the control API does."""
    node = peer.node
    assert node.repos is not None and node.sync is not None and node.replicator is not None
    target = source.node.host.peer_id if node.host.connection(source.node.host.peer_id) else source.addr
    async with limit:
        try:
            with trio.fail_after(60):
                await fetch(node.host, node.repos, target, rid, node.sync.config)
        except (GutsError, trio.TooSlowError) as exc:
            _progress(f"  node {peer.index}: initial sync from {source.index} failed: {exc}")
            return
    node.replicator.follow(rid)
    if node.providing is not None:
        node.providing.wake()
    done.add(peer.index)


async def _seed_everyone(peers: list[Peer], rid: str, rng: random.Random, at_once: int) -> None:
    """Every node syncs the repository from a node that holds it, a
    connected one when it has one (rounds, each holder serving at most two
    per round), as a network of people cloning from each other would."""
    index_of = {p.node.host.peer_id: p.index for p in peers}
    holders = {0}
    limit = trio.CapacityLimiter(at_once)
    while len(holders) < len(peers):
        load: Counter[int] = Counter()
        plan: dict[int, int] = {}
        waiting = [p.index for p in peers if p.index not in holders]
        rng.shuffle(waiting)
        for i in waiting:
            near = [
                j for c in peers[i].node.host.connections
                if (j := index_of.get(c.peer_id, -1)) in holders and load[j] < 2
            ]  # fmt: skip
            if near:
                j = rng.choice(near)
                load[j] += 1
                plan[i] = j
        if not plan:  # no one is connected to a holder: one dials a holder
            plan[waiting[0]] = rng.choice(sorted(holders))
        done: set[int] = set()
        async with trio.open_nursery() as nursery:
            for i, j in plan.items():
                nursery.start_soon(_clone, peers[i], peers[j], rid, done, limit)
        holders |= done
        if not done:
            await trio.sleep(0.5)


async def _wait_until(check: object, timeout: float, step: float = 0.1) -> bool:
    with trio.move_on_after(timeout):
        while not check():  # type: ignore[operator]
            await trio.sleep(step)
        return True
    return False


async def simulate(params: Params, root: Path) -> Result:
    started = time.monotonic()
    result = Result(params)
    rng = random.Random(params.seed)
    network_rng = random.Random(params.seed + 1)
    network = MemoryNetwork()
    set_links(network, params.nodes, params.delay, network_rng)
    source = root / "source.git"
    await trio.to_thread.run_sync(make_source, source, params.commits)
    tally = LogTally()
    async with tally.installed(), trio.open_nursery() as nursery:
        peers: list[Peer] = []
        with trio.fail_after(params.setup_timeout):
            for i in range(params.nodes):
                home = root / f"node{i:03d}"
                home.mkdir()
                keypair = KeyPair.from_seed(rng.randbytes(32))
                boot = () if i == 0 else (peers[rng.randrange(i)].addr,)
                peers.append(await nursery.start(run_peer, i, network, home, keypair, boot, params.max_connections))
            links: set[tuple[int, int]] = set()
            for peer in peers:
                others = [j for j in range(params.nodes) if j != peer.index]
                for j in rng.sample(others, min(params.dials, len(others))):
                    links.add((min(peer.index, j), max(peer.index, j)))
            async with trio.open_nursery() as dialing:
                for a, b in sorted(links):
                    dialing.start_soon(_dial, peers[a], peers[b])
            index_of = {p.node.host.peer_id: p.index for p in peers}
            result.links = len({
                (min(p.index, q), max(p.index, q))
                for p in peers for c in p.node.host.connections
                if (q := index_of.get(c.peer_id, -1)) >= 0
            })  # fmt: skip
            _progress(f"  {params.nodes} nodes up, {result.links} connections ({time.monotonic() - started:.0f} s)")

            origin = peers[0]
            repos, replicator = origin.node.repos, origin.node.replicator
            assert repos is not None and replicator is not None
            me = origin.node.host.peer_id
            state = await repos.init(source, keypair=origin.keypair, name="sim")
            rid = str(state.rid)
            replicator.follow(rid)
            if origin.node.providing is not None:
                origin.node.providing.wake()
            await replicator.announce(rid, me)
            await _seed_everyone(peers, rid, rng, params.clones_at_once)
            _progress(f"  every node holds the repository ({time.monotonic() - started:.0f} s)")

            topic = refs_topic(Rid.parse(rid))
            await _wait_until(lambda: all(_provided(p, rid) for p in peers), 60)
            await _wait_until(lambda: all(p.node.pubsub.mesh_peers(topic) for p in peers), 30)
            await trio.sleep(params.settle)
            result.provided = sum(_provided(p, rid) for p in peers)
            result.in_mesh = sum(bool(p.node.pubsub.mesh_peers(topic)) for p in peers)
            result.setup_seconds = time.monotonic() - started
            _progress(f"  {result.provided} nodes provided, {result.in_mesh} in the topic's mesh "
                      f"({result.setup_seconds:.0f} s)")  # fmt: skip

        # -- the push ------------------------------------------------------------
        for peer in peers:
            peer.served.clear()
        tally.clear()
        before = {p.index: (_replicator(p).fetches, _replicator(p).failures) for p in peers}
        new = await trio.to_thread.run_sync(add_commit, source, params.commits)
        t_push = trio.current_time()
        await _ingest(origin, rid, source, new)
        refs = dict(repos.show(rid).namespaces[me].statement.refs)
        refs["refs/heads/main"] = new
        seq = (await repos.publish(rid, origin.keypair, refs)).namespaces[me].statement.seq
        t0 = trio.current_time()
        result.push_seconds = t0 - t_push
        cpu0 = _cpu()
        await replicator.announce(rid, me)

        got: dict[int, float] = {0: 0.0}
        sampled, last_cpu = t0, sum(cpu0)
        kill = min(params.nodes - 1, round(params.nodes * params.kill_fraction))
        while True:
            now = trio.current_time()
            if now - sampled >= 1.0:
                cpu = sum(_cpu())
                result.busy.append((cpu - last_cpu) / (now - sampled))
                sampled, last_cpu = now, cpu
            for peer in peers:
                if peer.alive and peer.index not in got and _seq(peer, rid, me) >= seq:
                    got[peer.index] = now - t0
            if kill and not result.killed and (len(got) - 1 >= params.kill_after or now - t0 >= 1.0):
                result.killed = sorted(rng.sample(range(1, params.nodes), kill))
                result.killed_at = now - t0
                for v in result.killed:
                    peers[v].alive = False
                    peers[v].scope.cancel()
                _progress(f"  killed {kill} nodes {result.killed_at:.2f} s after the push, "
                          f"{len(got) - 1} nodes had it")  # fmt: skip
            alive = [p for p in peers if p.alive]
            if all(p.index in got for p in alive):
                result.converged = True
                result.took = max(got[p.index] for p in alive)
                break
            if now - t0 > params.timeout:
                break
            await trio.sleep(0.02)  # every node polled: more often costs the nodes CPU
        cpu1 = _cpu()
        result.cpu_nodes, result.cpu_git = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        result.cpu_wall = trio.current_time() - t0
        await trio.sleep(params.drain)

        alive = [p for p in peers if p.alive]
        result.survivors = len(alive)  # neither killed nor crashed
        result.per_node = sorted(got[p.index] for p in alive if p.index in got and p.index != 0)
        result.received = len(got) - 1
        result.missing = [p.index for p in alive if p.index not in got]
        result.served = [p.served for p in peers]
        for p in peers:
            f0, e0 = before[p.index]
            result.fetches += _replicator(p).fetches - f0
            result.fetch_failures += _replicator(p).failures - e0
        result.crashed_before = {p.index: p.crashed for p in peers if p.crashed is not None and p.crashed_at < t0}
        result.crashed = {p.index: p.crashed for p in peers if p.crashed is not None and p.crashed_at >= t0}
        result.warnings = tally.warnings
        result.log = read_log(tally.lines, {p.node.host.peer_id: p.index for p in peers}, t0)
        _progress(
            f"  {'converged' if result.converged else 'NOT converged'}: {len(got) - 1} of {len(alive) - 1} "
            f"survivors hold the push, {len(result.crashed_before) + len(result.crashed)} nodes crashed"
            + (f", in {result.took:.2f} s" if result.took is not None else f" after {params.timeout:.0f} s")
        )
        nursery.cancel_scope.cancel()
    result.wall = time.monotonic() - started
    return result


def _cpu() -> tuple[float, float]:
    """User + system CPU seconds of this process and of its finished children."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def _replicator(peer: Peer) -> Replicator:
    assert peer.node.replicator is not None
    return peer.node.replicator


def _provided(peer: Peer, rid: str) -> bool:
    return peer.node.providing is not None and rid in peer.node.providing.provided


async def _dial(a: Peer, b: Peer) -> None:
    try:
        with trio.fail_after(10):
            await a.node.host.connect(b.addr)
    except (GutsError, OSError, trio.TooSlowError) as exc:
        _progress(f"  node {a.index} could not dial node {b.index}: {exc}")


async def _ingest(origin: Peer, rid: str, source: Path, oid: str) -> None:
    """The objects of the pushed commit into the origin's storage, as a
    push's pack is received (quarantine, connectivity, migration)."""
    assert origin.node.repos is not None
    storage = origin.node.repos.storage
    found = await storage.read_source(source)
    assert found is not None
    async with storage.quarantine(rid) as quarantine:
        async with storage.pack_source(found, [oid]) as chunks:
            await quarantine.ingest_pack(chunks)
        await quarantine.check_connected([oid])
        await quarantine.migrate()
