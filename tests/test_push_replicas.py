"""``git push`` through ``git-remote-guts`` says how far the push got, with
real ``guts start`` processes and real git: no follower yet, one follower
that has it, and ``-o replicas=N`` asking for more seeds than there are."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from guts.config import CONTROL_SOCKET
from guts.control.blocking import BlockingControlClient, ControlError
from guts.crypto import KeyPair

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start, run
from .test_cli_repo import run_in, stop
from .test_remote_guts import commit, person, sh, shown

#: The bound of ``-o replicas=N`` in these tests (the default is 30 s).
REPLICAS_TIMEOUT = 1.5


def guts_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("guts: ")]


def test_a_push_says_how_many_seeds_have_it(tmp_path: Path) -> None:
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
        alice = person(tmp_path / "a") | {"GUTS_PUSH_REPLICAS_TIMEOUT": str(REPLICAS_TIMEOUT)}

        # No follower yet: the push stands, and says none has it.
        commit(alice, source, "alone.txt")
        done = sh(alice, "push", "guts", "main", cwd=source)
        assert guts_lines(done.stderr) == [
            "guts: no seed has the new state yet (none is connected); "
            "it stays signed on this node and goes out as seeds connect"
        ], done.stderr

        # A push option guts does not know stops the push before anything moves.
        before = shown(tmp_path / "a", rid)["refs/heads/main"]
        commit(alice, source, "refused.txt")
        refused = sh(alice, "push", "-o", "replica=2", "guts", "main", cwd=source, ok=False)
        assert refused.returncode != 0
        assert "guts: push option 'replica=2' means nothing to guts, which takes -o replicas=N" in refused.stderr
        assert "does not support" in refused.stderr
        assert shown(tmp_path / "a", rid)["refs/heads/main"] == before

        # B follows the repository (a clone through B).
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])
        sh(person(tmp_path / "b"), "clone", "--quiet", f"guts://{rid}", str(tmp_path / "clone"))
        topic = f"guts/repo/{rid}"
        started = time.monotonic()
        while json.loads(run("status", "--json", home=tmp_path / "a").stdout)["pubsub"]["mesh"].get(topic, 0) < 1:
            assert time.monotonic() - started < 15, "A never saw B follow the repository"
            time.sleep(0.2)

        # The default report: B has it by the time git push returns.
        new = commit(alice, source, "followed.txt")
        done = sh(alice, "push", "guts", "main", cwd=source)
        lines = guts_lines(done.stderr)
        assert len(lines) == 1 and lines[0].startswith("guts: 1 seed has the new state ("), done.stderr
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == new
        took = float(lines[0].rsplit("(", 1)[1].split(" ")[0])
        print(f"the push reached its one seed in {took:.1f} s (as the helper reports it)")
        assert took < 2.0

        # Asking for two seeds with one there: the push stands, the shortfall is said.
        new = commit(alice, source, "two-wanted.txt")
        pushed = time.monotonic()
        done = sh(alice, "push", "-o", "replicas=2", "guts", "main", cwd=source)
        waited = time.monotonic() - pushed
        assert guts_lines(done.stderr) == [
            f"guts: only 1 of the 2 seeds -o replicas=2 asked for had the new state after {REPLICAS_TIMEOUT:.1f} s; "
            "the push stands, and it stays signed on this node and goes out as seeds connect"
        ], done.stderr
        assert waited >= REPLICAS_TIMEOUT
        assert shown(tmp_path / "a", rid)["refs/heads/main"] == new

        # Asking for one: met, and said so.
        new = commit(alice, source, "one-wanted.txt")
        done = sh(alice, "push", "-o", "replicas=1", "guts", "main", cwd=source)
        lines = guts_lines(done.stderr)
        assert len(lines) == 1 and lines[0].startswith("guts: 1 seed has the new state, as -o replicas=1 asked ("), lines
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == new

        # The route itself: an older seq is held at once, one not signed
        # yet by no one until the timeout, and what it refuses.
        control = BlockingControlClient(tmp_path / "a" / CONTROL_SOCKET)
        older = control.call("POST", "/v1/repo/replicas", {"rid": rid, "seq": 1, "want": 1, "timeout": 5})
        assert older["have"] == 1 and older["reached"] and older["peers_with_it"] == [json.loads(
            run("status", "--json", home=tmp_path / "b").stdout)["peer_id"]]  # fmt: skip
        assert older["elapsed"] < 2 and older["signer"] == ready_a["peer_id"] and older["seq"] == 1
        latest = control.call("POST", "/v1/repo/replicas", {"rid": f"guts://{rid}"})
        assert latest["have"] == 1 and latest["want"] == 1 and latest["asked"] == 1 and latest["seq"] >= 4
        ahead = control.call("POST", "/v1/repo/replicas", {"rid": rid, "seq": latest["seq"] + 1, "timeout": 0.5})
        assert ahead["have"] == 0 and not ahead["reached"] and 0.5 <= ahead["elapsed"] < 1.5
        for body, kind in (
            ({"rid": rid, "want": 33}, "bad_request"),
            ({"rid": rid, "timeout": -1}, "bad_request"),
            ({"rid": rid, "seq": "1"}, "bad_request"),
            ({"rid": "not a rid"}, "bad_request"),
            ({"rid": rid, "signer": str(KeyPair.from_seed(b"\x07" * 32).peer_id)}, "not_found"),
        ):
            with pytest.raises(ControlError) as info:
                control.call("POST", "/v1/repo/replicas", body)
            assert info.value.kind == kind, (body, info.value)

        # Nothing to report: a dry run, a push that moved nothing, a quiet
        # push, and push_wait = 0.
        commit(alice, source, "quiet.txt")
        for args, env in (
            (["--dry-run"], alice),
            (["--quiet"], alice),
            ([], alice),  # up to date now
        ):
            done = sh(env, "push", *args, "guts", "main", cwd=source)
            assert guts_lines(done.stderr) == [], (args, done.stderr)
        commit(alice, source, "no-wait.txt")
        done = sh(alice | {"GUTS_PUSH_WAIT": "0"}, "push", "guts", "main", cwd=source)
        assert guts_lines(done.stderr) == [], done.stderr
    finally:
        for node in (b, a):
            if node is not None:
                stop(node)
