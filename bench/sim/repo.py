"""``make sim`` repo: one push propagating to 100 full Guts nodes that seed
the repository, in one process, with real git.

Every node is the node ``guts start`` runs (:func:`guts.node.open_node`:
host, identify, ping, the DHT, gossipsub, repositories in their own
storage directory, the sync protocol, the DHT provider and the
replicator), on the in-memory transport with a one-way delay of 5-20 ms
drawn once per pair of nodes, on trio's real clock (git runs as real
subprocesses, so virtual time would not hold). Node ``i`` bootstraps its
DHT from a random earlier node and dials 3 random others.

Setup: the origin (node 0) makes a repository of 20 small commits
(``Repositories.init``), and every other node syncs it from a node that
holds it, a connected one when it has one (``guts.sync.fetch``, then
``Replicator.follow``, as ``guts repo sync`` does), in rounds; then the
run waits until every node's provider record is stored in the DHT and
every node has a gossip mesh peer on the repository's topic.

The push: one new commit at the origin, ingested as a push's pack is,
signed with ``Repositories.publish`` and announced with
``Replicator.announce`` (what the control API's push route does).
Measured, from the announcement:

- the time until every node's ``repos.show(rid)`` holds the origin's new
  statement (polled every 5 ms), and its median and p90 per node;
- the upload-pack responses each node's sync server streamed (counted
  by wrapping its storage's ``upload_pack``: bytes, and whether the
  response carried a ``packfile``), from the push until 2 s after
  convergence; the origin's packs against the target of at most 10;
- the bytes of every response over all nodes against the ideal: one
  pack response per receiver;
- from the ``guts.replicate`` log at INFO (each line tagged with the node
  that wrote it): each fetch attempt that failed and why, which node each
  successful fetch came from, and the attempts of the first and the last
  node to get the push, in order;
- nodes that stop with an error (an exception out of the node: the run
  goes on without them and names the error);
- the CPU time of the process and of its git subprocesses meanwhile:
  all nodes share the machine's cores, so the times say as much about
  that as about the protocol.

The same run again with 20% of the nodes other than the origin killed
(their hosts closed, as a killed process's sockets are) once 3 nodes
hold the push, or 1 s after it: every survivor must converge. A run that
does not converge within 60 s says so.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import trio

from bench._report import load_average, machine
from bench.sim._repo_sim import Params, Result, simulate

NAME = "repo"
DESCRIPTION = "one push to 100 full nodes seeding a repository (real git), then again with 20% killed"

FULL = Params()
QUICK = Params(nodes=20)
#: The issue's target: the origin serves at most this many packs for a push.
TARGET_PACKS = 10


def machine_cores() -> int:
    return os.cpu_count() or 1


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_one(params: Params) -> Result:
    with tempfile.TemporaryDirectory(prefix="guts-sim-repo-") as root:
        return trio.run(simulate, params, Path(root))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _seconds(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.2f} s"


def _pack_size(results: list[Result]) -> int | None:
    sizes = [b for r in results for s in r.served for b in s.pack_responses]
    return min(sizes) if sizes else None


def _column(r: Result, pack: int | None) -> list[str]:
    p = r.params
    origin = r.served[0] if r.served else None
    total_bytes = sum(s.bytes for s in r.served)
    responses = sum(s.responses for s in r.served)
    packs = sum(s.packs for s in r.served)
    servers = [i for i, s in enumerate(r.served) if s.packs]
    others = max((s.packs for s in r.served[1:]), default=0)
    ideal = None if pack is None else pack * r.received
    fetched = r.log.fetched_from
    failed = sum(r.log.failed.values())
    return [
        f"{r.survivors} of {p.nodes}",
        (f"yes, {len(r.per_node)} of {r.survivors - 1}" if r.converged
         else f"**no**: {len(r.missing)} of {r.survivors - 1} without it after {p.timeout:.0f} s"),  # fmt: skip
        _seconds(r.took),
        f"{_seconds(min(r.per_node) if r.per_node else None)} / "
        f"{_seconds(statistics.median(r.per_node) if r.per_node else None)} / {_seconds(_pct(r.per_node, 0.9))}",
        "—" if not r.killed else f"{len(r.killed)}, {r.killed_at:.2f} s after the push",
        (f"**{len(r.crashed)}**" if r.crashed else "0")
        + (f" (and {len(r.crashed_before)} before the push)" if r.crashed_before else ""),
        (f"**{origin.packs}** ({'within' if origin.packs <= TARGET_PACKS else 'over'} the target of "
         f"{TARGET_PACKS}); {origin.responses} responses, {origin.bytes:,} bytes" if origin else "—"),  # fmt: skip
        f"{len(servers)}; at most {others} by one node other than the origin",
        f"{packs} packs in {responses} responses",
        ("—" if ideal is None else f"{total_bytes:,} bytes against {ideal:,} ({total_bytes / ideal:.2f}×): "
         f"{r.received} receivers × {pack:,} bytes"),  # fmt: skip
        f"{r.fetches} ({r.fetch_failures} failed with every peer tried)",
        f"{sum(fetched.values())}: {fetched.get(0, 0)} from the origin, "
        f"{sum(n for i, n in fetched.items() if i != 0)} from other nodes",
        f"{failed}" + (f" ({r.log.failed_at.get(0, 0)} at the origin)" if failed else ""),
        f"{r.links} connections; every node seeded and in the mesh after {r.setup_seconds:.0f} s",
        f"{r.wall:.0f} s",
    ]


ROWS = [
    "nodes alive after the push",
    "every survivor holds the push",
    "time from the announcement until the last survivor holds it",
    "per node: first / median / p90",
    "nodes killed during propagation",
    "nodes that crashed during propagation (an error out of the node)",
    "packs the origin served (upload-pack responses carrying a pack)",
    "nodes that served a pack",
    "upload-pack responses over all nodes",
    "response bytes over all nodes, against one pack per receiver",
    "announced fetches the replicators ran",
    "successful fetches (replicator log)",
    "fetch attempts that failed (replicator log)",
    "setup",
    "wall-clock time of the run",
]


def _arrivals(label: str, r: Result) -> str:
    marks = (0.5, 1, 2, 5, 10, 20, 60)
    counts = ", ".join(f"{sum(t <= m for t in r.per_node)} by {m:g} s" for m in marks if m <= r.params.timeout)
    return f"Survivors holding the push, {label} (of {r.survivors - 1}): {counts}."


def _who(i: int) -> str:
    return "the origin" if i == 0 else f"node {i}"


def _attempts(label: str, r: Result) -> list[str]:
    """How the fetches went, from the log: how many attempts a node made
    until one brought the push, and the first node's story."""
    runs = {node: tries for node, tries in r.log.attempts.items() if node > 0}
    if not runs:
        return []
    until = [next((k + 1 for k, t in enumerate(tries) if t[2] == "ok"), len(tries)) for tries in runs.values()]
    first_ok = min((t[0] for tries in runs.values() for t in tries if t[2] == "ok"), default=None)
    first_try = min(t[0] for tries in runs.values() for t in tries)
    origin_ok = min((t[0] for tries in runs.values() for t in tries if t[2] == "ok" and t[1] == 0), default=None)
    lines = [
        f"Fetch attempts, {label}: a node made {statistics.median(until):.0f} (median; max {max(until)}) "
        f"attempts until one brought the push; the first attempt ended {first_try:.2f} s after the announcement, "
        f"the first successful one {_seconds(first_ok)}, the first from the origin {_seconds(origin_ok)}."
    ]
    def done(item: tuple[int, list[tuple[float, int, str]]]) -> float:
        return next((t[0] for t in item[1] if t[2] == "ok"), float("inf"))

    fetched = [item for item in runs.items() if done(item) < float("inf")]
    if not fetched:
        return lines
    for which, (node, tries) in (("first", min(fetched, key=done)), ("last", max(fetched, key=done))):
        story = [f"{outcome} at {_who(peer)} ({at:.2f} s)" for at, peer, outcome in tries[:12]]
        lines.append(
            f"The {which} node to fetch it, node {node}, {label}, attempt by attempt (each at its end): "
            + ", ".join(story) + (f", … ({len(tries) - 12} more)" if len(tries) > 12 else "") + "."
        )
    return lines


def _reasons(label: str, r: Result) -> list[str]:
    lines = [_arrivals(label, r), *_attempts(label, r)]
    if r.cpu_wall:
        lines.append(
            f"CPU, {label}, from the announcement until the end: {r.cpu_nodes:.1f} s in the nodes' process and "
            f"{r.cpu_git:.1f} s in git subprocesses, in {r.cpu_wall:.1f} s of wall-clock time "
            f"({(r.cpu_nodes + r.cpu_git) / r.cpu_wall:.2f} cores busy of {machine_cores()} on average"
            + (f"; second by second: {', '.join(f'{b:.1f}' for b in r.busy[:15])}" if r.busy else "")
            + (", …" if len(r.busy) > 15 else "") + ")."
        )
    if r.log.failed:
        where: Counter[str] = Counter()
        for i, n in r.log.failed_at.items():
            where["the origin" if i == 0 else "killed nodes" if i in r.killed else "live relays"] += n
        lines.append(
            f"Failed fetch attempts, {label}, by reason: "
            + "; ".join(f"{n} × {reason}" for reason, n in r.log.failed.most_common(6))
            + " (tried at: " + ", ".join(f"{k} {v}" for k, v in where.most_common()) + ")."
        )
    crashes = Counter([*r.crashed_before.values(), *r.crashed.values()])
    if crashes:
        lines.append(
            f"Crashed nodes, {label}: "
            + "; ".join(f"{n} × {why}" for why, n in crashes.most_common(3))
            + ". Such a node stops (its host closes), and the run counts it out of the survivors."
        )
    if r.missing:
        lines.append(f"Survivors without the push, {label}: nodes {', '.join(map(str, r.missing[:20]))}.")
    return lines


def report(plain: Result, killed: Result, when: str, where: dict[str, str], load: tuple[float, float]) -> str:
    p = plain.params
    pack = _pack_size([plain, killed])
    lines = [
        f"### One push through {p.nodes} seeds (`make sim`, `repo`)",
        "",
        "| | one push | one push, 20% of the nodes killed during it |",
        "| --- | ---: | ---: |",
    ]
    for label, a, b in zip(ROWS, _column(plain, pack), _column(killed, pack)):
        lines.append(f"| {label} | {a} | {b} |")
    notes = _reasons("one push", plain) + _reasons("with the kill", killed)
    if notes:
        lines += ["", *notes]
    lines += [
        "",
        f"Measured {when} at Guts commit `{where['commit']}` with `python -m bench.sim --only repo --write`; "
        f"{where['cpu']}, {where['cores']} cores, {where['ram']} RAM, {where['kernel']}, Python {where['python']}. "
        f"Load average {load[0]:.2f} before, {load[1]:.2f} after. {p.nodes} full Guts nodes (`open_node`: host, "
        f"DHT in server mode, gossipsub, repositories with real git, sync, provider, replicator) in one process on "
        f"the memory transport, one-way link delays of {p.delay[0] * 1000:.0f}-{p.delay[1] * 1000:.0f} ms per pair, "
        f"real clock; each node bootstraps its DHT from an earlier node and dials {p.dials} random others. Node 0 "
        f"makes a repository of {p.commits} commits and every node syncs it from a (connected) holder and follows "
        f"it. Then one commit is pushed at node 0 (ingested, signed by `Repositories.publish`, announced by "
        f"`Replicator.announce`); times run from the announcement until each node's `repos.show` holds the new "
        f"statement. Upload-pack responses are counted on every node's sync server from the push until "
        f"{p.drain:.0f} s after the last node has it; the failed attempts come from the `guts.replicate` log "
        f"at INFO. Every node runs in one Python thread, beside the git subprocesses, on this machine's cores: "
        f"a second at about 1.0 core busy in the CPU lines above is that thread saturated, so the times include "
        f"waiting for it, which 100 machines would not; the counts (packs, responses, attempts, crashes) are the "
        f"protocol's. `bench/sim/repo.py` says more.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> str:
    params = QUICK if quick else FULL
    load_before = load_average()
    where = machine()  # the code the runs import: the commit now, not after them
    _progress(f"repo: {params.nodes} nodes, one push")
    plain = run_one(params)
    _progress(f"repo: {params.nodes} nodes, one push, {params.nodes // 5} killed during it")
    killed = run_one(Params(**{**params.__dict__, "kill_fraction": 0.2}))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return report(plain, killed, when, where, (load_before, load_average()))
