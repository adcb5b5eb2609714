"""Seeds found through the DHT, with real ``guts start`` processes: a node
provides the repositories it holds, and a node connected only to a peer
that does not hold one finds a seed through the DHT and clones from it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start, run
from .test_cli_repo import run_in, stop
from .test_remote_guts import person, refs, sh


def test_a_clone_finds_its_seed_through_the_dht(tmp_path: Path) -> None:
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=80, topic_every=20)
    b = a = c = None
    try:
        # B: a DHT server that never holds the repository.
        b = _start(tmp_path / "b", "--dht-mode", "server")
        assert b.stdout is not None
        ready_b = json.loads(b.stdout.readline())
        # A and C are DHT clients (the default on loopback): no lookup of
        # C's is told of A, so C meets A only as the seed the DHT names.
        a = _start(tmp_path / "a", "--bootstrap", ready_b["addrs"][0])
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        _events_until(a, "peer_identified", ready_b["peer_id"])
        made = run_in(source, "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        # A provides it: B soon lists A among its providers.
        deadline = time.monotonic() + 15
        while True:
            found = run("dht", "find-providers", rid, "--json", home=tmp_path / "b")
            if found.returncode == 0 and ready_a["peer_id"] in found.stdout:
                break
            assert time.monotonic() < deadline, found.stdout + found.stderr
            time.sleep(0.2)

        # C knows only B; git clone by RID finds A through the DHT.
        c = _start(tmp_path / "c", "--bootstrap", ready_b["addrs"][0])
        assert c.stdout is not None
        json.loads(c.stdout.readline())
        _events_until(c, "peer_identified", ready_b["peer_id"])
        env = person(tmp_path / "c")
        clone = tmp_path / "clone"
        cloned = sh(env, "clone", "--progress", f"guts://{rid}", str(clone))
        assert f"guts: fetching from {ready_a['peer_id']}" in cloned.stderr, cloned.stderr
        assert "NOT_FOUND" in cloned.stderr  # B, asked first, does not hold it
        assert "guts: the DHT knows 1 more seed of it" in cloned.stderr
        got = refs(env, clone, "refs/remotes/origin/main")
        assert got["refs/remotes/origin/main"] == history.refs["refs/heads/main"]
        # Now C holds it and provides it too.
        deadline = time.monotonic() + 15
        while True:
            found = run("dht", "find-providers", rid, "--json", home=tmp_path / "b")
            providers = {p["peer_id"] for p in json.loads(found.stdout)["providers"]} if found.returncode == 0 else set()
            if len(providers) >= 2:
                break
            assert time.monotonic() < deadline, found.stdout
            time.sleep(0.2)
    finally:
        for node in (c, a, b):
            if node is not None:
                stop(node)
