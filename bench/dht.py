"""DHT benchmarks: ``python -m bench.dht [--quick] [--write]``.

* Lookup latency on the 200-node full-stack network of ``make sim``
  (in one process, memory transport, Trio's real clock).
* Memory of one node with a full routing table and 10,000 provider
  records, measured in a fresh interpreter (``--memory-worker``): the
  Python heap the DHT state takes (tracemalloc) and the process's RSS.

``--write`` puts the table into BENCHMARKS.md between
``<!-- bench:dht:begin -->`` and ``<!-- bench:dht:end -->``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from bench._sections import write_section


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_worker(providers: int, trace: bool) -> dict[str, float]:
    """Build one node's DHT state and report what it costs: the Python heap
    with ``trace`` (tracemalloc), else the RSS (tracemalloc inflates it)."""
    import trio

    from guts.crypto import KeyPair
    from guts.dht import Dht, DhtConfig, DhtMode
    from guts.dht import bucket_index, kad_key
    from guts.host import open_host
    from guts.multiaddr import Multiaddr
    from guts.peer import PeerId
    from guts.transport import MemoryNetwork, MemoryTransport

    out: dict[str, float] = {}

    async def main() -> None:
        async with open_host(KeyPair.generate(), [MemoryTransport(MemoryNetwork())]) as host:
            await host.listen(Multiaddr.parse("/memory/0"))
            dht = Dht(host, DhtConfig(mode=DhtMode.SERVER))
            rng = random.Random(3)
            # Candidate peers per bucket, drawn until buckets 255..242 (the ones a
            # node in a network of ~16,000 fills) each have k entries and k
            # replacements waiting.
            lowest = 242
            need = {b: 2 * dht.config.k for b in range(lowest, 256)}
            candidates: list[tuple[PeerId, int]] = []
            n = 0
            while need:
                raw = b"\x12\x20" + hashlib.sha256(b"m%d" % n).digest()
                n += 1
                b = bucket_index(dht.table.local_key, kad_key(raw))
                if b in need:
                    candidates.append((PeerId.from_bytes(raw), b))
                    need[b] -= 1
                    if not need[b]:
                        del need[b]

            def addrs_of(i: int) -> tuple[Multiaddr, Multiaddr]:
                return (
                    Multiaddr.parse(f"/ip4/10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/tcp/4001"),
                    Multiaddr.parse(f"/ip4/10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/tcp/4002/ws"),
                )

            if trace:
                tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            rss0 = _rss_kib()
            for i, (peer, _) in enumerate(candidates):
                host.peerstore.add_addrs(peer, addrs_of(i))
                dht.table.add(peer, addrs_of(i), 0.0)
            table_bytes = tracemalloc.get_traced_memory()[0] - base
            out["table_peers"] = len(dht.table)
            out["replacements"] = dht.table.replacement_count()
            out["table_kib"] = table_bytes / 1024
            mid = tracemalloc.get_traced_memory()[0]
            now = time.time()
            provider_ids = [PeerId.from_bytes(b"\x12\x20" + hashlib.sha256(b"p%d" % i).digest()) for i in range(providers // 10)]
            for i in range(providers):
                key = b"\x12\x20" + hashlib.sha256(b"key%d" % i).digest()
                who = provider_ids[i % len(provider_ids)]
                assert dht.providers.add(key, who, addrs_of(100_000 + i % len(provider_ids)), now)
            out["provider_records"] = len(dht.providers)
            out["providers_kib"] = (tracemalloc.get_traced_memory()[0] - mid) / 1024
            out["state_kib"] = (tracemalloc.get_traced_memory()[0] - base) / 1024
            tracemalloc.stop()
            out["rss_delta_mib"] = (_rss_kib() - rss0) / 1024
            out["rss_mib"] = _rss_kib() / 1024

    trio.run(main)
    return out


def run(quick: bool) -> str:
    from bench.sim import _dht_net as fullstack

    logging.getLogger("guts").setLevel(logging.ERROR)
    providers = 10_000
    mem: dict[str, float] = {}
    for flag in ("--memory-worker", "--memory-worker-rss"):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.dht", flag, str(providers)],
            capture_output=True, text=True, timeout=600, check=True, cwd=Path(__file__).resolve().parents[1],
        )
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        if flag == "--memory-worker-rss":
            mem["rss_mib"], mem["rss_delta_mib"] = got["rss_mib"], got["rss_delta_mib"]
        else:
            mem.update({k: v for k, v in got.items() if not k.startswith("rss")})
    n, lookups = (40, 40) if quick else (200, 200)
    print(f"  lookup latency: {n} nodes, {lookups} lookups", file=sys.stderr, flush=True)
    net = fullstack.measure(n, lookups)
    ms = 1000.0
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Measured {stamp} with `python -m bench.dht{' --quick' if quick else ''}`.",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| find-peer latency on the {n}-node network, median / p99 | {fullstack.median(net.find_peer_seconds) * ms:.1f} / {fullstack.pct(net.find_peer_seconds, 0.99) * ms:.1f} ms |",
        f"| closest-peers lookup latency on the {n}-node network, median / p99 | {fullstack.median(net.closest_seconds) * ms:.1f} / {fullstack.pct(net.closest_seconds, 0.99) * ms:.1f} ms |",
        f"| find-peer lookups that succeeded | {net.find_peer_ok} / {net.find_peer_total} |",
        f"| routing table: {mem['table_peers']:.0f} peers + {mem['replacements']:.0f} replacements (buckets 255–242 full), Python heap | {mem['table_kib']:.0f} KiB |",
        f"| {mem['provider_records']:,.0f} provider records, Python heap | {mem['providers_kib'] / 1024:.1f} MiB |",
        f"| DHT state in all (table + providers) | {mem['state_kib'] / 1024:.1f} MiB |",
        f"| RSS of that node's process (host, DHT, interpreter) | {mem['rss_mib']:.1f} MiB (+{mem['rss_delta_mib']:.1f} MiB for the state) |",
        "",
        "Latency: both ends of every request run in this one process on the same two cores, so the figures are CPU time "
        "of the whole stack (Noise, yamux, protobuf, the DHT) for both sides plus dial handshakes for new connections, not "
        "network time. Memory: every peer and provider has two addresses.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dht", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 40-node network instead of 200")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--memory-worker", type=int, metavar="PROVIDERS", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker-rss", type=int, metavar="PROVIDERS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker is not None:
        print(json.dumps(memory_worker(args.memory_worker, trace=True)))
        return 0
    if args.memory_worker_rss is not None:
        print(json.dumps(memory_worker(args.memory_worker_rss, trace=False)))
        return 0
    if args.write and args.quick:
        parser.error("--write records full runs only; drop --quick")
    markdown = run(args.quick)
    print(markdown)
    if args.write:
        write_section("bench:dht", markdown, heading="DHT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
