"""Seeding policies with real ``guts start`` processes and git: a public
seed node (``seed_policy = all``) takes on what is announced, within its
limits; ``guts repo seed`` and ``unseed`` on a ``selected`` node; scopes
decide whose namespaces a node replicates."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start
from .test_cli_repo import run_in, stop
from .test_remote_guts import commit, person, sh, shown


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def _source(path: Path, commits: int = 40) -> Path:
    git("init", "--quiet", "--initial-branch=main", str(path))
    build_history(path / ".git", commits=commits, topic_every=20)
    git("-C", str(path), "checkout", "--quiet", "-f", "main")
    return path


def _json(home: Path, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    done = run_in(cwd or home, *args, "--json", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def _init(home: Path, source: Path) -> str:
    rid: str = _json(home, "repo", "init", cwd=source)["rid"]
    return rid


def _seq(home: Path, rid: str, peer: str) -> int:
    return next((ns["seq"] for ns in _json(home, "repo", "show", rid)["namespaces"] if ns["peer_id"] == peer), 0)


def _held(home: Path) -> set[str]:
    return {repo["rid"] for repo in _json(home, "repo", "list")["repositories"]}


def _namespaces(home: Path, rid: str) -> set[str]:
    return {ns["peer_id"] for ns in _json(home, "repo", "show", rid)["namespaces"]}


def _node(home: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc = _start(home, *extra)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def test_a_public_seed_node_takes_on_what_is_announced_within_its_limits(tmp_path: Path) -> None:
    procs: list[subprocess.Popen[str]] = []
    try:
        a, ready_a = _node(tmp_path / "a")
        procs.append(a)
        s, ready_s = _node(
            tmp_path / "s", "--bootstrap", ready_a["addrs"][0], "--seed-policy", "all",
            env={"GUTS_SEED_MAX_REPOSITORIES": "1"},
        )  # fmt: skip
        procs.append(s)
        _events_until(s, "peer_identified", ready_a["peer_id"])
        time.sleep(1.5)  # a heartbeat: A learns that S follows guts/repos

        first = _init(tmp_path / "a", _source(tmp_path / "one"))
        took = _until(lambda: first in _held(tmp_path / "s"), "S to take on the first repository")
        print(f"the seed node held the announced repository {took:.2f} s after init")
        assert shown(tmp_path / "s", first)["refs/heads/main"] == shown(tmp_path / "a", first)["refs/heads/main"]

        # The limit: one repository. The second is refused, and says so.
        second = _init(tmp_path / "a", _source(tmp_path / "two"))

        def refused() -> bool:
            seeding = _json(tmp_path / "s", "status")["seeding"]
            return any(r["rid"] == second for r in seeding["recent_refusals"])

        _until(refused, "S to refuse the second repository")
        status = _json(tmp_path / "s", "status")["seeding"]
        assert status["policy"] == "all" and status["seeded"] == 1
        assert status["limits_reached"] == ["max_repositories"]
        (refusal,) = [r for r in status["recent_refusals"] if r["rid"] == second]
        assert refusal["reason"] == "repository-limit" and "seed_max_repositories" in refusal["detail"]
        assert second not in _held(tmp_path / "s")
        human = run_in(tmp_path, "status", home=tmp_path / "s")
        assert "limits reached: max_repositories" in human.stdout and second in human.stdout

        # Seeding it by hand is the person's choice: no limit refuses it.
        seeded = _json(tmp_path / "s", "repo", "seed", second)
        assert seeded["synced"] is not None and seeded["synced"]["peer"] == ready_a["peer_id"]
        assert second in _held(tmp_path / "s")

        # A blocked repository is never taken on, nor seeded by hand until unblocked.
        blocked = _json(tmp_path / "s", "repo", "block", first)
        assert blocked == {"rid": first, "added": True}
        refused_seed = run_in(tmp_path, "repo", "seed", first, home=tmp_path / "s")
        assert refused_seed.returncode == 1 and "is blocked" in refused_seed.stderr
        seeds = _json(tmp_path / "s", "repo", "seeds")
        assert {"rid": first, "from": "command"} in seeds["blocked_rids"]
        assert [r["rid"] for r in seeds["seeding"]] == [second]
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_seed_and_unseed_on_a_selected_node(tmp_path: Path) -> None:
    source = _source(tmp_path / "source")
    procs: list[subprocess.Popen[str]] = []
    try:
        a, ready_a = _node(tmp_path / "a")
        procs.append(a)
        rid = _init(tmp_path / "a", source)
        b, _ = _node(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        procs.append(b)
        _events_until(b, "peer_identified", ready_a["peer_id"])

        # Policy selected: B holds nothing it was not asked for.
        assert _held(tmp_path / "b") == set()
        human = run_in(tmp_path, "repo", "seed", rid, "--no-progress", home=tmp_path / "b")
        assert human.returncode == 0, human.stderr
        assert f"seeding {rid} (scope delegates)" in human.stdout and "fetched" in human.stdout
        again = _json(tmp_path / "b", "repo", "seed", rid, "--scope", "all")
        assert again["previous_scope"] == "delegates" and again["held"] and again["synced"] is None
        time.sleep(1.5)  # a heartbeat: A learns that B follows the repository

        alice = person(tmp_path / "a")
        new = commit(alice, source, "seeded.txt")
        sh(alice, "push", "--quiet", "guts", "main", cwd=source)
        _until(lambda: shown(tmp_path / "b", rid).get("refs/heads/main") == new, "B to get the push")

        # Unseeded: B no longer follows it, and keeps what it has.
        gone = _json(tmp_path / "b", "repo", "unseed", rid)
        assert gone == {"rid": rid, "was_seeded": True, "held": True}
        seeds = _json(tmp_path / "b", "repo", "seeds")
        assert seeds["unseeded"] == [rid] and seeds["seeding"] == []
        later = commit(alice, source, "after-unseed.txt")
        sh(alice, "push", "--quiet", "guts", "main", cwd=source)
        time.sleep(2.0)
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == new  # not fetched
        assert _json(tmp_path / "b", "status")["seeding"]["seeded"] == 0

        # A restart keeps the choice: B still does not catch up from A.
        stop(b)
        procs.remove(b)
        b, _ = _node(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        procs.append(b)
        _events_until(b, "peer_identified", ready_a["peer_id"])
        time.sleep(1.0)
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == new

        # Seeded again: followed again, and the next announcement brings it.
        _json(tmp_path / "b", "repo", "seed", rid)
        time.sleep(1.5)
        newest = commit(alice, source, "seeded-again.txt")
        sh(alice, "push", "--quiet", "guts", "main", cwd=source)
        _until(lambda: shown(tmp_path / "b", rid).get("refs/heads/main") == newest, "B to get the push again")
        assert later != newest
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_scope_decides_whose_namespaces_a_seed_replicates(tmp_path: Path) -> None:
    """A is the delegate, C a contributor who pushes to their own namespace,
    B a seed of scope ``delegates`` then ``all``."""
    source = _source(tmp_path / "source")
    procs: list[subprocess.Popen[str]] = []
    try:
        a, ready_a = _node(tmp_path / "a")
        procs.append(a)
        rid = _init(tmp_path / "a", source)
        b, ready_b = _node(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        procs.append(b)
        c, ready_c = _node(tmp_path / "c", "--bootstrap", ready_a["addrs"][0], "--bootstrap", ready_b["addrs"][0])
        procs.append(c)
        _events_until(c, "peer_identified", ready_a["peer_id"])
        assert _json(tmp_path / "b", "repo", "seed", rid)["synced"] is not None
        carol = person(tmp_path / "c")
        work = tmp_path / "carol"
        sh(carol, "clone", "--quiet", f"guts://{rid}", str(work))
        time.sleep(1.5)  # a heartbeat: the followers learn of each other

        # C pushes a branch of its own: a contributor's namespace.
        commit(carol, work, "contribution.txt")
        sh(carol, "push", "--quiet", "origin", "HEAD:refs/heads/feature", cwd=work)
        contributor = ready_c["peer_id"]
        # A is the delegate: it replicates contributions to review them.
        _until(lambda: contributor in _namespaces(tmp_path / "a", rid), "the delegate to get the contribution")
        time.sleep(1.0)
        assert contributor not in _namespaces(tmp_path / "b", rid)  # scope delegates

        _json(tmp_path / "b", "repo", "seed", rid, "--scope", "all")
        commit(carol, work, "contribution-2.txt")
        sh(carol, "push", "--quiet", "origin", "HEAD:refs/heads/feature", cwd=work)
        _until(lambda: contributor in _namespaces(tmp_path / "b", rid), "B (scope all) to get the contribution")

        # A blocked peer's namespace is not replicated, whatever the scope.
        _json(tmp_path / "a", "repo", "block", contributor)
        held_by_a = _seq(tmp_path / "a", rid, contributor)
        commit(carol, work, "contribution-3.txt")
        sh(carol, "push", "--quiet", "origin", "HEAD:refs/heads/feature", cwd=work)
        newest = _seq(tmp_path / "c", rid, contributor)
        _until(lambda: _seq(tmp_path / "b", rid, contributor) == newest, "B to get the third contribution")
        time.sleep(1.0)
        assert _seq(tmp_path / "a", rid, contributor) == held_by_a < newest
    finally:
        for proc in reversed(procs):
            stop(proc)
