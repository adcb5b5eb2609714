"""A network of full-stack Guts DHT nodes in one process (memory transport).

Every node is a real :class:`~guts.host.Host` (Noise, yamux,
multistream-select, identify, ping) with a :class:`~guts.dht.Dht` in
server mode; connections are in-memory pipes. Used by the ``dht``
simulation (``make sim``) and the DHT benchmarks (``python -m bench.dht``).
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import trio

from guts.crypto import KeyPair
from guts.dht import Dht, DhtConfig, DhtMode
from guts.dht import kad_key
from guts.errors import PeerNotFound
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping
from guts.transport import MemoryNetwork, MemoryTransport


@dataclass
class NetworkRun:
    """Figures of one run of the full-stack network."""

    nodes: int
    build_seconds: float = 0.0
    table_sizes: list[int] = field(default_factory=list)
    find_peer_ok: int = 0
    find_peer_total: int = 0
    find_peer_seconds: list[float] = field(default_factory=list)
    closest_seconds: list[float] = field(default_factory=list)
    closest_queried: list[int] = field(default_factory=list)
    closest_rounds: list[int] = field(default_factory=list)
    closest_exact: int = 0
    connections: int = 0
    peak_rss_mib: float = 0.0


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@asynccontextmanager
async def dht_network(
    n: int, seed: int = 1, max_dialed: int | None = 32
) -> AsyncIterator[tuple[list[Host], list[Dht]]]:
    """``n`` nodes; node i bootstraps from a random earlier node; each DHT
    keeps at most ``max_dialed`` idle connections it opened."""
    rng = random.Random(seed)
    network = MemoryNetwork()
    # The host's default cap (50) is for a desktop node; DHT lookups in a
    # 200-node network reach more peers than that, and nothing here closes
    # idle connections.
    host_config = HostConfig(keep_alive=0, max_connections=4 * n)
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        hosts: list[Host] = []
        dhts: list[Dht] = []
        for i in range(n):
            host = await stack.enter_async_context(
                open_host(KeyPair.from_seed(rng.randbytes(32)), [MemoryTransport(network)], host_config)
            )
            Identify(host)
            Ping(host)
            await host.listen(Multiaddr.parse("/memory/0"))
            boot: tuple[Multiaddr, ...] = ()
            if i:
                other = hosts[rng.randrange(i)]
                boot = (other.listen_addrs[0].with_p2p(str(other.peer_id)),)
            config = DhtConfig(
                mode=DhtMode.SERVER, bootstrap=boot, refresh_interval=3600, max_dialed_connections=max_dialed
            )
            dht = Dht(host, config, rng=random.Random(rng.random()))
            await nursery.start(dht.run)
            await dht.bootstrapped.wait()  # joined, looked itself up, refreshed its buckets
            hosts.append(host)
            dhts.append(dht)
        try:
            yield hosts, dhts
        finally:
            nursery.cancel_scope.cancel()


async def _measure(n: int, lookups: int, seed: int, max_dialed: int | None) -> NetworkRun:
    run = NetworkRun(nodes=n)
    rng = random.Random(seed + 1)
    start = time.perf_counter()
    async with dht_network(n, seed, max_dialed) as (hosts, dhts):
        run.build_seconds = time.perf_counter() - start
        # 200 nodes share one heap of several hundred MiB. A collection of
        # it stalls every node at once for up to a second, which a node's
        # own heap (a 200th of this) never does; measured, such stalls were
        # the whole p99. So the collector runs between lookups, untimed.
        gc.collect()
        gc.freeze()
        gc.disable()
        run.table_sizes = [len(d.table) for d in dhts]
        ids = [h.peer_id for h in hosts]
        for i in range(lookups):
            src = i % n
            dst = rng.randrange(n - 1)
            dst += dst >= src
            target = ids[dst]
            dht = dhts[src]
            # Measure a real lookup: drop a direct connection if one exists.
            await hosts[src].disconnect(target)
            with trio.fail_after(10):
                while hosts[src].connection(target) is not None:
                    await trio.sleep(0)
            t0 = time.perf_counter()
            try:
                info = await dht.find_peer(target)
                ok = tuple(hosts[dst].listen_addrs) == info.addrs[: len(hosts[dst].listen_addrs)]
            except PeerNotFound:
                ok = False
            run.find_peer_seconds.append(time.perf_counter() - t0)
            run.find_peer_total += 1
            run.find_peer_ok += ok
            key = rng.randbytes(16)
            t0 = time.perf_counter()
            result = await dht.find_closest_peers(key)
            run.closest_seconds.append(time.perf_counter() - t0)
            run.closest_queried.append(result.queried)
            run.closest_rounds.append(result.rounds)
            target_point = kad_key(key)
            truth = sorted((p for p in ids if p != ids[src]), key=lambda p: kad_key(p.to_bytes()) ^ target_point)[:20]
            run.closest_exact += [p.peer_id for p in result.peers] == truth
            if (i + 1) % 25 == 0:
                gc.collect()
            if (i + 1) % 50 == 0:
                print(f"  {i + 1}/{lookups} lookups", file=sys.stderr, flush=True)
        run.connections = sum(len(h.connections) for h in hosts)
        gc.enable()
        gc.unfreeze()
    run.peak_rss_mib = _rss_peak_mib()
    return run


def measure(n: int = 200, lookups: int = 200, seed: int = 1, max_dialed: int | None = 32) -> NetworkRun:
    """Build the network (each node bootstraps: a self-lookup and a lookup
    per bucket), then ``lookups`` find-peer and
    closest-peer lookups from rotating sources, on Trio's real clock."""
    return trio.run(_measure, n, lookups, seed, max_dialed)


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
