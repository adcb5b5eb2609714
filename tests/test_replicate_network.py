"""Replication with real ``guts start`` processes and git: a push on one
node is announced on gossip and fetched by the nodes that hold the
repository, without anyone running a command there."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start
from .test_cli_repo import run_in, stop
from .test_remote_guts import commit, person, sh, shown


def test_a_push_reaches_a_seed_without_a_command(tmp_path: Path) -> None:
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    build_history(source / ".git", commits=60, topic_every=20)
    git("-C", str(source), "checkout", "--quiet", "-f", "main")
    a = b = None
    try:
        a = _start(tmp_path / "a")
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        made = run_in(source, "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])
        # B holds it (a clone through B), and so follows its announcements.
        sh(person(tmp_path / "b"), "clone", "--quiet", f"guts://{rid}", str(tmp_path / "clone"))
        time.sleep(1.5)  # a gossip heartbeat or so: A learns B's subscription

        alice = person(tmp_path / "a")
        for n in range(2):
            new = commit(alice, source, f"new-{n}.txt")
            pushed_at = time.monotonic()
            sh(alice, "push", "--quiet", "guts", "main", cwd=source)
            while shown(tmp_path / "b", rid).get("refs/heads/main") != new:
                assert time.monotonic() - pushed_at < 10, "B did not get the pushed commit"
                time.sleep(0.05)
            took = time.monotonic() - pushed_at
            print(f"push {n + 1} on A reached B's storage in {took:.2f} s")
            assert took < 5
    finally:
        for node in (b, a):
            if node is not None:
                stop(node)


def test_a_node_that_was_offline_catches_up_when_it_reconnects(tmp_path: Path) -> None:
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    build_history(source / ".git", commits=40, topic_every=20)
    git("-C", str(source), "checkout", "--quiet", "-f", "main")
    a = b = None
    try:
        a = _start(tmp_path / "a")
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        made = run_in(source, "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])
        sh(person(tmp_path / "b"), "clone", "--quiet", f"guts://{rid}", str(tmp_path / "clone"))
        stop(b)
        b = None

        # B is offline: A pushes twice.
        alice = person(tmp_path / "a")
        for n in range(2):
            new = commit(alice, source, f"while-b-was-away-{n}.txt")
            sh(alice, "push", "--quiet", "guts", "main", cwd=source)
        assert shown(tmp_path / "a", rid)["refs/heads/main"] == new

        # B comes back, connects to A, and catches up with no command.
        started = time.monotonic()
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        while shown(tmp_path / "b", rid).get("refs/heads/main") != new:
            assert time.monotonic() - started < 10, "B did not catch up"
            time.sleep(0.05)
    finally:
        for node in (b, a):
            if node is not None:
                stop(node)


def _until(check: object, what: str, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_repository_outlives_its_author_and_the_network_converges(tmp_path: Path) -> None:
    """D is a DHT server holding nothing; A (the author), B (a seed) and C
    know only D. B clones from A, found through the DHT; A is killed; C
    clones through B, found through the DHT; A comes back and pushes, and
    B and C both get the new commit with no command."""
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=50, topic_every=25)
    git("-C", str(source), "checkout", "--quiet", "-f", "main")
    nodes: dict[str, object] = {}
    try:
        d = nodes["d"] = _start(tmp_path / "d", "--dht-mode", "server")
        assert d.stdout is not None
        boot = json.loads(d.stdout.readline())["addrs"][0]

        def node(name: str) -> None:
            proc = nodes[name] = _start(tmp_path / name, "--bootstrap", boot)
            assert proc.stdout is not None
            json.loads(proc.stdout.readline())

        node("a")
        made = run_in(source, "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        node("b")
        _until(lambda: sh(person(tmp_path / "b"), "clone", "--quiet", f"guts://{rid}", str(tmp_path / "b-clone"),
                          ok=False).returncode == 0, "B's clone (A provided in the DHT)")  # fmt: skip

        stop(nodes.pop("a"))  # type: ignore[arg-type]
        node("c")
        clone_c = tmp_path / "c-clone"
        _until(lambda: sh(person(tmp_path / "c"), "clone", "--quiet", f"guts://{rid}", str(clone_c),
                          ok=False).returncode == 0, "C's clone through B (A is gone)")  # fmt: skip
        assert shown(tmp_path / "c", rid)["refs/heads/main"] == history.refs["refs/heads/main"]

        node("a")
        new = commit(person(tmp_path / "a"), source, "after-the-restart.txt")
        sh(person(tmp_path / "a"), "push", "--quiet", "guts", "main", cwd=source)
        for name in ("b", "c"):
            took = _until(lambda: shown(tmp_path / name, rid).get("refs/heads/main") == new, f"{name} to converge")
            print(f"{name} had A's push {took:.1f} s after it")
    finally:
        for proc in reversed(list(nodes.values())):
            stop(proc)  # type: ignore[arg-type]
