"""Fault tests with real ``guts start`` processes in network namespaces
(:mod:`tests.netns_helpers`): links with delay and loss, a partition that
heals, and a seed killed with ``kill -9`` while it serves a pack.

They need root and ``ip netns``; where namespaces cannot be made they are
skipped with the reason (on a machine where they can, they run, CI
included)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .netns_helpers import GUTS, Lab, Node, netns_problem, wait_for
from .repo_helpers import build_history, git
from .test_remote_guts import commit, person, sh

PROBLEM = netns_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"network namespaces: {PROBLEM}")


def _main(node: Node, rid: str) -> str | None:
    done = node.guts("repo", "show", rid, "--json")
    if done.returncode != 0:
        return None
    refs: dict[str, str] = json.loads(done.stdout)["refs"]
    return refs.get("refs/heads/main")


def _connected(node: Node) -> set[str]:
    return {c["peer_id"] for c in node.json("status")["connections"]}


def _project(tmp_path: Path, commits: int) -> Path:
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    build_history(source / ".git", commits=commits, topic_every=50)
    git("-C", str(source), "checkout", "--quiet", "-f", "main")
    return source


def _fsck(node: Node, rid: str) -> None:
    git("fsck", "--no-dangling", "--no-progress", git_dir=node.home / "storage" / rid)


@pytest.fixture
def lab(tmp_path: Path) -> object:
    made = Lab(tmp_path / "lab")
    try:
        yield made
    finally:
        made.close()


@pytest.mark.timeout(360)
def test_a_partition_heals_and_a_push_made_during_it_crosses(lab: Lab, tmp_path: Path) -> None:
    """Five nodes, links with 5 ms of delay and 1% loss. Split 3/2; a push
    on the bigger side reaches its seeds and not the others; healed, the
    other side gets it, the DHT finds seeds across, and a second push
    crosses by gossip."""
    lab.build(5)
    n = lab.nodes
    for missing in sorted(lab.unshaped):
        print(f"links not shaped: {missing}")
    lab.start(n[0])
    for node in n[1:]:
        lab.start(node, "--bootstrap", n[0].addr, *(["--bootstrap", n[3].addr] if node.index == 4 else []))
    source = _project(tmp_path, commits=400)
    made = n[0].json("repo", "init", str(source))
    rid = made["rid"]
    first = _main(n[0], rid)
    for node in n[1:]:
        node.json("repo", "seed", rid, timeout=120)
    wait_for(lambda: all(_main(node, rid) == first for node in n), 60, "every node seeds the repository")

    side_a, side_b = n[:3], n[3:]
    lab.partition(side_a, side_b)
    alice = person(n[0].home)
    during = commit(alice, source, "during-the-partition.txt")
    sh(alice, "push", "--quiet", "guts", "main", cwd=source)
    took = wait_for(lambda: all(_main(node, rid) == during for node in side_a), 30, "the push reaches its side")
    print(f"during the partition, the push reached the two other nodes of its side in {took:.2f} s")
    # The partition lasts until every connection across it is found dead
    # (keep-alive pings unanswered: 30 to 60 s), so that what heals it is
    # the DHT and gossip finding each other again, not TCP retransmitting.
    across = {node.peer_id for node in side_a}
    took = wait_for(lambda: not any(_connected(node) & across for node in side_b), 90, "connections across closed")
    print(f"every connection across the partition was closed {took:.0f} s later")
    assert [_main(node, rid) for node in side_b] == [first, first], "the push crossed the partition"

    lab.heal()
    took = wait_for(lambda: all(_main(node, rid) == during for node in side_b), 90, "the other side after the heal")
    print(f"after the heal, the other side had the push in {took:.2f} s")
    for node in n:
        _fsck(node, rid)

    providers = n[4].json("dht", "find-providers", rid, timeout=60)
    found = {p["peer_id"] if isinstance(p, dict) else str(p) for p in providers.get("providers", [])}
    assert found & {node.peer_id for node in side_a}, f"the DHT finds no seed across: {providers}"

    after = commit(alice, source, "after-the-heal.txt")
    pushed = time.monotonic()
    sh(alice, "push", "--quiet", "guts", "main", cwd=source)
    wait_for(lambda: all(_main(node, rid) == after for node in n), 30, "a push after the heal reaches everyone")
    print(f"after the heal, a push reached all four seeds in {time.monotonic() - pushed:.2f} s")


def _random_blobs(source: Path, megabytes: int) -> None:
    env = person(source.parent / "nobody")
    for i in range(megabytes):
        (source / f"blob{i}.bin").write_bytes(os.urandom(1 << 20))
    sh(env, "add", ".", cwd=source)
    sh(env, "commit", "--quiet", "-m", "blobs", cwd=source)


@pytest.mark.timeout(300)
def test_a_seed_killed_while_serving_a_pack(lab: Lab, tmp_path: Path) -> None:
    """Node 0 serves a 6 MiB pack to two fetchers over a 4 Mbit/s link and
    is killed with ``kill -9`` in the middle; both fetchers complete from
    node 1, the other seed, and hold what it holds, objects whole."""
    lab.build(4, delay_ms=2, loss=0.0)
    n = lab.nodes
    lab.start(n[0])
    lab.start(n[1], "--bootstrap", n[0].addr)
    source = _project(tmp_path, commits=60)
    _random_blobs(source, 6)
    rid = n[0].json("repo", "init", str(source))["rid"]
    n[1].json("repo", "seed", rid, timeout=120)
    tip = _main(n[0], rid)
    assert _main(n[1], rid) == tip

    # Node 0 sends at 4 Mbit/s, node 1 at 96 kbit/s: node 0's signed
    # state arrives first and it wins both races, and the packs are on
    # their way when it dies; then node 1 is given a fast link again.
    lab.shape(n[0], rate="4mbit", delay_ms=2)
    lab.shape(n[1], rate="96kbit", delay_ms=2)
    for fetcher in n[2:]:
        lab.start(fetcher, "--bootstrap", n[0].addr, "--bootstrap", n[1].addr)
    time.sleep(1.5)  # both fetchers connected to both seeds
    syncs = [
        subprocess.Popen(
            [*GUTS, "repo", "sync", rid, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fetcher.env,
        )  # fmt: skip
        for fetcher in n[2:]
    ]
    time.sleep(4.0)  # well into the packs: 12 MiB at 4 Mbit/s take about 25 s
    assert all(s.poll() is None for s in syncs), "a fetch ended before the seed was killed"
    lab.kill(n[0])
    killed = time.monotonic()
    lab.shape(n[1], delay_ms=2)
    for fetcher, sync in zip(n[2:], syncs, strict=True):
        out, err = sync.communicate(timeout=120)
        assert sync.returncode == 0, f"node {fetcher.index}'s sync failed: {err}"
        answer = json.loads(out)
        assert answer["peer"] == n[1].peer_id, answer
        print(f"node {fetcher.index} completed from node 1 {time.monotonic() - killed:.1f} s after the kill")
        assert _main(fetcher, rid) == tip
        _fsck(fetcher, rid)
        clone = tmp_path / f"clone{fetcher.index}"
        sh(person(fetcher.home), "clone", "--quiet", f"guts://{rid}", str(clone))
        assert sh(person(fetcher.home), "rev-parse", "HEAD", cwd=clone).stdout.strip() == tip

