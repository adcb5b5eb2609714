"""``make sim`` gossip: gossipsub among full-stack Guts nodes in one process.

Every node is a real host (Noise, yamux, multistream-select, identify) with
:class:`~guts.gossip.Gossipsub` on it, on an in-memory network whose links
have a one-way delay drawn once per pair of nodes (20-80 ms), all under
``trio.testing.MockClock``: heartbeats and link delays cost no wall-clock
time, the CPU work is real.

Each node dials a few random others. Everyone subscribes to one topic; then
random nodes publish short messages (announcement-sized) at a steady rate.
Halfway through, 20% of the nodes are killed (their hosts close, as a killed
process's sockets do) while publishing goes on from the survivors. Measured:

- delivery: the share of (message, subscriber) pairs delivered, counting
  survivors only (a killed node is not expected to receive after it died);
- latency from publish to delivery, in heartbeats (1 s) and milliseconds;
- hops: the length of the path the first copy took (from the propagation
  source of each delivery);
- copies received per delivery: every copy of a message a node receives
  (first or duplicate), divided by the deliveries; 1.0 would mean no
  duplicate at all;
- healing: after the kill, heartbeats until every survivor's mesh holds no
  dead peer and at least ``D_low`` peers (or all its peers, if it has fewer).

The same network then runs with flooding (the mesh made of every topic peer)
for comparison.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import trio
import trio.testing

from guts.crypto import KeyPair
from guts.gossip import GossipConfig, Gossipsub, open_gossipsub
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.transport import MemoryLink, MemoryNetwork, MemoryTransport

NAME = "gossip"
DESCRIPTION = "gossipsub: 100 full-stack nodes, 1,000 messages, 20% killed mid-run, against flooding"

TOPIC = "guts/announce"


@dataclass(frozen=True)
class Params:
    nodes: int = 100
    dials: int = 6  # each node dials this many random others (mean degree about 12)
    messages: int = 1000
    rate: float = 20.0  # messages per second
    kill_fraction: float = 0.2
    delay: tuple[float, float] = (0.02, 0.08)
    payload: int = 120
    drain: float = 10.0  # seconds after the last publish
    seed: int = 1


FULL = Params()
QUICK = Params(nodes=30, dials=5, messages=200)


@dataclass
class Node:
    index: int
    host: Host
    gossip: Gossipsub
    scope: trio.CancelScope
    alive: bool = True


@dataclass
class Result:
    label: str
    params: Params
    config: GossipConfig
    killed: int = 0
    links: int = 0
    expected: int = 0
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)
    hops: list[int] = field(default_factory=list)
    copies: int = 0
    first_copies: int = 0
    before_kill: tuple[int, int] = (0, 0)  # delivered, expected
    before_kill_all: tuple[int, int] = (0, 0)  # to every node, for messages a second older than the kill
    after_kill: tuple[int, int] = (0, 0)
    unhealthy: list[int] = field(default_factory=list)  # per heartbeat after the kill
    mesh_sizes: list[int] = field(default_factory=list)
    wall: float = 0.0
    undelivered: list[str] = field(default_factory=list)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _run_node(
    index: int, network: MemoryNetwork, config: GossipConfig, seed: int,
    arrivals: dict[bytes, dict[int, tuple[float, PeerId | None]]],
    *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    rng = random.Random(seed)
    with trio.CancelScope() as scope:
        keypair = KeyPair.from_seed(rng.randbytes(32))
        async with open_host(keypair, [MemoryTransport(network)], HostConfig(keep_alive=0)) as host:
            Identify(host)
            await host.listen(Multiaddr.parse("/memory/0"))
            async with open_gossipsub(host, config, rng=random.Random(rng.random())) as gossip:
                sub = gossip.subscribe(TOPIC, buffer=100_000)
                task_status.started(Node(index, host, gossip, scope))
                async for message in sub:
                    arrivals.setdefault(message.message_id, {})[index] = (
                        trio.current_time(), message.propagation_source
                    )


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _simulate(params: Params, config: GossipConfig, label: str, kill: bool) -> Result:
    started = time.monotonic()
    rng = random.Random(params.seed)
    network = MemoryNetwork()
    result = Result(label, params, config)
    arrivals: dict[bytes, dict[int, tuple[float, PeerId | None]]] = {}
    published: list[tuple[bytes, int, float, bool]] = []  # id, publisher, time, after the kill
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        nodes: list[Node] = []
        for i in range(params.nodes):
            nodes.append(await nursery.start(_run_node, i, network, config, params.seed * 1000 + i, arrivals))
        by_peer = {n.host.peer_id: n for n in nodes}
        # Every pair of nodes gets its delay, the pairs that never connect
        # too: a node may dial any other (peer exchange, reconnection).
        delays = random.Random(params.seed + 1)
        for node in nodes:
            for other in nodes[node.index + 1:]:
                delay = delays.uniform(*params.delay)
                network.set_link(node.host.listen_addrs[0], other.host.listen_addrs[0], MemoryLink(delay=delay))

        links: set[tuple[int, int]] = set()
        for node in nodes:
            others = [j for j in range(params.nodes) if j != node.index]
            for j in rng.sample(others, params.dials):
                links.add((min(node.index, j), max(node.index, j)))
        result.links = len(links)
        async with trio.open_nursery() as dialing:
            for a, b in sorted(links):
                addr = nodes[b].host.listen_addrs[0].with_p2p(str(nodes[b].host.peer_id))
                dialing.start_soon(nodes[a].host.connect, addr)
        with trio.fail_after(60):
            while not all(len(n.gossip.peers) == len(n.host.connections) > 0 for n in nodes):
                await trio.sleep(0.1)
        await trio.sleep(5)  # meshes form over a few heartbeats
        _progress(f"  {label}: {params.nodes} nodes, {len(links)} links, meshes formed "
                  f"({time.monotonic() - started:.0f} s wall)")

        interval = 1.0 / params.rate
        kill_at = params.messages // 2 if kill else -1
        dead: set[int] = set()
        heal_monitor = trio.Event()
        for m in range(params.messages):
            if m == kill_at:
                victims = rng.sample(range(params.nodes), int(params.nodes * params.kill_fraction))
                for v in victims:
                    nodes[v].alive = False
                    nodes[v].scope.cancel()
                    dead.add(v)
                result.killed = len(victims)
                nursery.start_soon(_watch_healing, nodes, config, result, heal_monitor)
                _progress(f"  {label}: killed {len(victims)} nodes after {m} messages")
            alive = [n for n in nodes if n.alive]
            publisher = rng.choice(alive)
            data = (b"%06d " % m) + rng.randbytes(params.payload // 2).hex().encode()
            msg_id = await publisher.gossip.publish(TOPIC, data[: params.payload])
            now = trio.current_time()
            arrivals.setdefault(msg_id, {})[publisher.index] = (now, None)
            published.append((msg_id, publisher.index, now, m >= kill_at >= 0))
            if m % 100 == 99:
                _progress(f"  {label}: {m + 1} messages published ({time.monotonic() - started:.0f} s wall)")
            await trio.sleep(interval)
        await trio.sleep(params.drain)
        if kill:
            with trio.fail_after(60):
                await heal_monitor.wait()

        survivors = [n for n in nodes if n.alive]
        result.mesh_sizes = [len(n.gossip.mesh_peers(TOPIC)) for n in survivors]
        index_of = {n.host.peer_id: n.index for n in nodes}
        counts = {False: [0, 0], True: [0, 0]}
        everyone = [0, 0]
        kill_time = published[kill_at][2] if kill_at >= 0 else float("inf")
        for msg_id, origin, at, after in published:
            got = arrivals.get(msg_id, {})
            if at <= kill_time - 1.0:
                everyone[1] += params.nodes - 1
                everyone[0] += len(got) - 1
            for node in survivors:
                if node.index == origin:
                    continue
                counts[after][1] += 1
                if node.index in got:
                    counts[after][0] += 1
                    result.latencies.append(got[node.index][0] - at)
                elif len(result.undelivered) < 10:
                    result.undelivered.append(f"message {msg_id.hex()[-8:]} to node {node.index}")
            result.hops.extend(_hops(got, origin, index_of))
        result.before_kill = (counts[False][0], counts[False][1])
        result.before_kill_all = (everyone[0], everyone[1])
        result.after_kill = (counts[True][0], counts[True][1])
        result.delivered = counts[False][0] + counts[True][0]
        result.expected = counts[False][1] + counts[True][1]
        result.copies = sum(n.gossip.stats.messages_received for n in nodes)
        result.first_copies = sum(n.gossip.stats.messages_delivered for n in nodes)
        nursery.cancel_scope.cancel()
    del by_peer
    result.wall = time.monotonic() - started
    return result


def _hops(got: dict[int, tuple[float, PeerId | None]], publisher: int, index_of: dict[PeerId, int]) -> list[int]:
    """Hops of each delivery: one more than the node it came from had."""
    hops = {publisher: 0}
    out = []
    for node, (_, source) in sorted(got.items(), key=lambda item: item[1][0]):
        if node == publisher or source is None:
            continue
        prev = hops.get(index_of.get(source, -1))
        if prev is None:
            continue
        hops[node] = prev + 1
        out.append(prev + 1)
    return out


async def _watch_healing(nodes: list[Node], config: GossipConfig, result: Result, done: trio.Event) -> None:
    """Count, at each heartbeat after the kill, survivors whose mesh still
    holds a dead peer or has fewer than D_low peers (or all it has)."""
    dead = {n.host.peer_id for n in nodes if not n.alive}
    await trio.sleep(0.5)  # between heartbeats
    for _ in range(30):
        unhealthy = 0
        for node in nodes:
            if not node.alive:
                continue
            mesh = set(node.gossip.mesh_peers(TOPIC))
            target = min(config.d_low, len(node.gossip.peers))
            if mesh & dead or len(mesh) < target:
                unhealthy += 1
        result.unhealthy.append(unhealthy)
        if unhealthy == 0 and len(result.unhealthy) >= 3:
            break
        await trio.sleep(config.heartbeat_interval)
    done.set()


def _flooding(config: GossipConfig) -> GossipConfig:
    """Every topic peer in the mesh: a message goes over every link."""
    big = 10_000
    return GossipConfig(d=big, d_low=big, d_high=big, d_score=4, d_out=2, d_lazy=0)


def _row(label: str, values: list[str]) -> str:
    return "| " + label + " | " + " | ".join(values) + " |"


def _fmt_latency(r: Result) -> str:
    if not r.latencies:
        return "—"
    med, p99 = statistics.median(r.latencies), _percentile(r.latencies, 0.99)
    hb = r.config.heartbeat_interval
    return f"{med * 1000:.0f} ms ({med / hb:.2f} hb) / {p99 * 1000:.0f} ms ({p99 / hb:.2f} hb)"


def _pct(done: int, total: int) -> str:
    return f"{100 * done / total:.2f}% ({done:,} of {total:,})" if total else "—"


def report(gossip: Result, flood: Result) -> str:
    p = gossip.params
    lines = [
        f"Nodes: {p.nodes} full-stack Guts hosts (Noise, yamux, identify, gossipsub) in one process, "
        f"on an in-memory network with one-way link delays of {p.delay[0] * 1000:.0f}-{p.delay[1] * 1000:.0f} ms, "
        f"under trio's MockClock; each node dials {p.dials} random others ({gossip.links} links, mean degree "
        f"{2 * gossip.links / p.nodes:.1f}). One topic, {p.payload}-byte messages from random nodes at "
        f"{p.rate:.0f} per second; gossipsub with the spec's defaults (D 6, D_low 4, D_high 12, heartbeat 1 s). "
        f"After {p.messages // 2} messages {gossip.killed} nodes ({p.kill_fraction:.0%}) are killed.",
        "",
        "| | gossipsub | flooding (every topic peer in the mesh) |",
        "| --- | ---: | ---: |",
        _row("messages published", [f"{p.messages:,}", f"{flood.params.messages:,}"]),
        _row("delivery to survivors", [_pct(gossip.delivered, gossip.expected), _pct(flood.delivered, flood.expected)]),
        _row("… before the kill", [_pct(*gossip.before_kill), "—"]),
        _row("… before the kill, to all nodes (published ≥ 1 s before it)", [_pct(*gossip.before_kill_all), "—"]),
        _row("… after the kill", [_pct(*gossip.after_kill), "—"]),
        _row("latency, median / p99 (heartbeats)", [_fmt_latency(gossip), _fmt_latency(flood)]),
        _row(
            "hops, median / p99 / max",
            [
                f"{statistics.median(r.hops):.0f} / {_percentile(r.hops, 0.99):.0f} / {max(r.hops)}"
                if r.hops else "—"
                for r in (gossip, flood)
            ],
        ),
        _row(
            "copies received per delivery (duplicates: amplification)",
            [
                f"{r.copies / r.first_copies:.2f} ({r.copies / r.first_copies - 1:.2f})" if r.first_copies else "—"
                for r in (gossip, flood)
            ],
        ),
        _row("wall-clock time of the run", [f"{gossip.wall:.0f} s", f"{flood.wall:.0f} s"]),
    ]
    heal = gossip.unhealthy
    healed_at = next((i for i, n in enumerate(heal) if n == 0), None)
    lines += [
        "",
        f"Healing after the kill: survivors whose mesh held a dead peer or fewer than D_low peers, "
        f"at each heartbeat from half a heartbeat after the kill: {', '.join(map(str, heal))}"
        + (f" (healed by heartbeat {healed_at + 1})." if healed_at is not None else " (not healed)."),
        f"Survivors' mesh sizes at the end: min {min(gossip.mesh_sizes)}, median "
        f"{statistics.median(gossip.mesh_sizes):.0f}, max {max(gossip.mesh_sizes)}.",
    ]
    if gossip.undelivered or flood.undelivered:
        lines += ["", "Undelivered (first ten): " + "; ".join(gossip.undelivered + flood.undelivered) + "."]
    return "\n".join(lines)


def run(quick: bool) -> str:
    params = QUICK if quick else FULL
    config = GossipConfig()
    clock = trio.testing.MockClock(autojump_threshold=0)
    _progress(f"gossipsub, {params.nodes} nodes, {params.messages} messages")
    gossip = trio.run(_simulate, params, config, "gossipsub", True, clock=clock)
    flood_params = Params(**{**params.__dict__, "messages": max(100, params.messages // 5)})
    _progress(f"flooding, {flood_params.nodes} nodes, {flood_params.messages} messages")
    flood = trio.run(
        _simulate, flood_params, _flooding(config), "flooding", False,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    return report(gossip, flood)
