"""An identity revision across two delegates, with real ``guts start``
processes, the ``guts repo id`` commands and git: A proposes, B accepts
from its own node after a sync, the revision takes effect on B and is
announced, A fetches it with no command, and its new threshold governs
the canonical refs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start, run
from .test_cli_repo import run_in, stop
from .test_remote_guts import commit, person, sh, shown


def guts_json(home: Path, *args: str) -> dict[str, Any]:
    done = run(*args, "--json", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_a_revision_proposed_on_one_node_and_accepted_on_another(tmp_path: Path) -> None:
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=40, topic_every=20)
    git("-C", str(source), "checkout", "--quiet", "-f", "main")
    start = history.refs["refs/heads/main"]
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    a = b = None
    try:
        a = _start(home_a)
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        b = _start(home_b, "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        ready_b = json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])
        made = run_in(
            source, "repo", "init", "--json", "--name", "first", "--delegate", ready_b["peer_id"], "--threshold", "2",
            home=home_a,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        assert "refs/heads/main" not in shown(home_a, rid)  # threshold 2, A alone signed

        # A proposes a new name and threshold 1: pending, 1 of 2.
        proposed = guts_json(home_a, "repo", "id", "propose", rid, "--name", "renamed", "--threshold", "1")
        assert proposed["status"] == "pending" and proposed["signed"]
        pid = proposed["id"]
        assert proposed["changes"] == {"name": {"from": "first", "to": "renamed"}, "threshold": {"from": 2, "to": 1}}
        shown_a = guts_json(home_a, "repo", "id", "show", rid)
        [pending] = shown_a["proposals"]
        assert pending["id"] == pid and pending["signers"] == [ready_a["peer_id"]]
        assert (pending["signatures"], pending["threshold"]) == (1, 2) and shown_a["revisions"] == 1
        text = run("repo", "id", "show", rid, home=home_a)
        assert text.returncode == 0, text.stderr
        assert f"{pid[:12]}  revision 2, signed 1 of 2" in text.stdout
        assert f"guts repo id accept {rid} {pid[:12]}` after `guts repo sync {rid}`" in text.stdout
        assert "name:           'first' -> 'renamed'" in text.stdout and "threshold:      2 -> 1" in text.stdout

        # B syncs from A, finds the proposal pending there, and accepts it.
        assert run("repo", "sync", rid, home=home_b).returncode == 0
        [seen] = guts_json(home_b, "repo", "id", "show", rid)["proposals"]
        assert seen["id"] == pid and seen["signers"] == [ready_a["peer_id"]]
        accepted = run("repo", "id", "accept", rid, pid[:12], home=home_b)
        assert accepted.returncode == 0, accepted.stderr
        assert f"identity revision 2 of 'renamed' is in effect ({pid[:12]})" in accepted.stdout
        on_b = guts_json(home_b, "repo", "id", "show", rid)
        assert (on_b["revisions"], on_b["name"], on_b["threshold"], on_b["proposals"]) == (2, "renamed", 1, [])
        assert on_b["revision"]["id"] == pid
        # A's statement alone now makes main canonical, on B.
        assert shown(home_b, rid)["refs/heads/main"] == start

        # B announces the new revision; A fetches it with no command.
        deadline = time.monotonic() + 15
        while guts_json(home_a, "repo", "id", "show", rid)["revisions"] != 2:
            assert time.monotonic() < deadline, "A did not get the revision B adopted"
            time.sleep(0.1)
        on_a = guts_json(home_a, "repo", "id", "show", rid)
        assert (on_a["revisions"], on_a["name"], on_a["threshold"], on_a["proposals"]) == (2, "renamed", 1, [])
        assert shown(home_a, rid)["refs/heads/main"] == start
        assert guts_json(home_a, "repo", "show", rid)["name"] == "renamed"
        # Accepting it again changes nothing.
        again = guts_json(home_a, "repo", "id", "accept", rid, pid)
        assert again["status"] == "in_effect" and not again["signed"]

        # A single delegate's push moves main now, on A and then on B.
        alice = person(home_a)
        new = commit(alice, source, "after-revision.txt")
        sh(alice, "push", "--quiet", "guts", "main", cwd=source)
        assert shown(home_a, rid)["refs/heads/main"] == new
        assert run("repo", "sync", rid, home=home_b).returncode == 0
        assert shown(home_b, rid)["refs/heads/main"] == new

        # What a person gets wrong is refused, with the reason.
        refused = run("repo", "id", "propose", rid, "--threshold", "3", home=home_a)
        assert refused.returncode == 1 and "threshold" in refused.stderr
        unknown = run("repo", "id", "accept", rid, "0000", home=home_b)
        assert unknown.returncode == 1 and "no pending proposal" in unknown.stderr
    finally:
        for node in (b, a):
            if node is not None:
                stop(node)
