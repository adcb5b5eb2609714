"""The DHT simulations of ``make sim``.

(a) Full stack: 200 Guts nodes (host, Noise, yamux, identify, DHT) in one
process on the memory transport; each joins through a random earlier
node (a self-lookup and a lookup in each bucket), then 200 find-peer lookups (every node looks up
a random other node it is not connected to) and 200 closest-peer lookups
for random keys. Trio's real clock: the latencies are what one process on
this machine needs for the whole stack of both ends, not network time;
garbage collection of the shared heap runs between lookups (see
bench/README.md).

(b) Message level: the sans-IO lookup core with 10,000 nodes, 10% of
which never answer, routing tables as a settled network would have them,
answers after 10–150 ms of simulated latency, and the lookup's adaptive
per-peer timeout (4 times the slowest answer so far, 0.5 to 3 s).
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import time

from bench.sim import _dht_msgsim as msgsim
from bench.sim import _dht_net as fullstack

NAME = "dht"
DESCRIPTION = "Kademlia DHT: 200 full-stack nodes, and the lookup core with 10,000 nodes (10% silent)"


def _fullstack(quick: bool) -> str:
    n, lookups = (40, 40) if quick else (200, 200)
    print(f"  full stack: {n} nodes, {lookups} lookups of each kind", file=sys.stderr, flush=True)
    run = fullstack.measure(n, lookups)
    ms = 1000.0
    rows = [
        ("nodes", f"{run.nodes}"),
        ("network built and bootstrapped (s)", f"{run.build_seconds:.1f}"),
        ("routing table size, median (min–max)", f"{fullstack.median(run.table_sizes):.0f} ({min(run.table_sizes)}–{max(run.table_sizes)})"),
        ("find-peer lookups that succeeded", f"{run.find_peer_ok} / {run.find_peer_total}"),
        ("find-peer latency, median / p99 (ms)", f"{fullstack.median(run.find_peer_seconds) * ms:.1f} / {fullstack.pct(run.find_peer_seconds, 0.99) * ms:.1f}"),
        ("closest-peers latency, median / p99 (ms)", f"{fullstack.median(run.closest_seconds) * ms:.1f} / {fullstack.pct(run.closest_seconds, 0.99) * ms:.1f}"),
        ("closest-peers requests per lookup, median / p99", f"{fullstack.median(run.closest_queried):.0f} / {fullstack.pct(run.closest_queried, 0.99):.0f}"),
        ("closest-peers rounds, median / p99", f"{fullstack.median(run.closest_rounds):.0f} / {fullstack.pct(run.closest_rounds, 0.99):.0f}"),
        ("closest-peers results equal to the true 20 closest", f"{run.closest_exact} / {run.find_peer_total}"),
        ("connections open at the end (both ends counted)", f"{run.connections}"),
        ("peak RSS of the process (MiB)", f"{run.peak_rss_mib:.0f}"),
    ]
    lines = [
        f"**(a) Full stack, {run.nodes} nodes on the memory transport** (real clock, one process):",
        "",
        "| figure | value |",
        "| --- | ---: |",
    ]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def _message_level(quick: bool) -> str:
    n, lookups = (2000, 200) if quick else (10_000, 1000)
    print(f"  message level: {n} nodes, {lookups} lookups of each kind", file=sys.stderr, flush=True)
    results = msgsim.simulate(n, 0.10, lookups)
    log2n = math.log2(n)
    lines = [
        f"**(b) Lookup core, {n:,} nodes, {results[0].unresponsive:,} (10%) unresponsive**, k = 20, alpha = 10, "
        f"{lookups} lookups of each kind, log2(N) = {log2n:.1f}:",
        "",
        "| lookup | success | k-closest recall | messages median / p99 | messages / log2(N) | rounds median / p99 | simulated s median / p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r.mode == "find peer":
            success = f"{100 * r.successes / r.lookups:.1f}% found"
            recall = "—"
        else:
            success = f"{100 * r.successes / r.lookups:.1f}% nearest found"
            recall = f"{100 * sum(r.recall) / len(r.recall):.1f}% ({100 * r.exact / r.lookups:.0f}% exact)"
        lines.append(
            f"| {r.mode} | {success} | {recall} | {msgsim.median(r.messages):.0f} / {msgsim.pct(r.messages, 0.99):.0f} | "
            f"{msgsim.median(r.messages) / log2n:.2f} | {msgsim.median(r.rounds):.0f} / {msgsim.pct(r.rounds, 0.99):.0f} | "
            f"{msgsim.median(r.seconds):.2f} / {msgsim.pct(r.seconds, 0.99):.2f} |"
        )
    lines += [
        "",
        "Find peer stops as soon as an answer lists the target; closest peers runs to the spec's termination "
        "(the 20 closest peers still in the running have answered), so it waits out the per-peer timeout "
        "(4 times the slowest answer so far, 0.5 to 3 s) whenever a silent node is among the closest. "
        "Recall: the share of the true 20 closest live nodes in the result.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> str:
    # A program, not a library: quiet the expected shutdown noise of hundreds of hosts.
    logging.getLogger("guts").setLevel(logging.ERROR)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [f"Measured {started} with `python -m bench.sim --only dht{' --quick' if quick else ''}`.", ""]
    gc.collect()
    parts.append(_message_level(quick))
    parts.append("")
    parts.append(_fullstack(quick))
    return "\n".join(parts)
