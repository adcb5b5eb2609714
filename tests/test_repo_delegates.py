"""Two delegates with threshold 2, with real ``guts start`` processes and
git: the canonical branch moves only when both have signed it."""

from __future__ import annotations

import json
from pathlib import Path

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start, run
from .test_cli_repo import run_in, stop
from .test_remote_guts import commit, person, sh, shown


def test_the_canonical_branch_moves_when_both_delegates_signed(tmp_path: Path) -> None:
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=40, topic_every=20)
    git("-C", str(source), "checkout", "--quiet", "-f", "main")
    start = history.refs["refs/heads/main"]
    a = b = c = None
    try:
        a = _start(tmp_path / "a")
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        ready_b = json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])
        made = run_in(
            source, "repo", "init", "--json", "--delegate", ready_b["peer_id"], "--threshold", "2", home=tmp_path / "a"
        )
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        # Only A signed: with threshold 2 nothing is canonical yet.
        assert "refs/heads/main" not in shown(tmp_path / "a", rid)

        # B clones through its node (which fetches it from A), then signs
        # the same main by pushing it: two of two delegates agree.
        bob = person(tmp_path / "b")
        clone = tmp_path / "clone"
        sh(bob, "clone", "--quiet", f"guts://{rid}", str(clone))
        sh(bob, "fetch", "--quiet", "origin", f"refs/guts/{ready_a['peer_id']}/heads/main:refs/heads/from-a", cwd=clone)
        sh(bob, "checkout", "--quiet", "-B", "main", "from-a", cwd=clone)
        pushed = sh(bob, "push", "origin", "main", cwd=clone)
        assert "is no delegate" not in pushed.stderr
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == start
        assert run("repo", "sync", rid, home=tmp_path / "a").returncode == 0
        assert shown(tmp_path / "a", rid)["refs/heads/main"] == start

        # A new commit signed by B alone does not move main, on either node.
        new = commit(bob, clone, "b-only.txt")
        pushed = sh(bob, "push", "origin", "main", cwd=clone)
        assert "becomes canonical once enough delegates sign the same" in pushed.stderr
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == start
        assert run("repo", "sync", rid, home=tmp_path / "a").returncode == 0
        assert shown(tmp_path / "a", rid)["refs/heads/main"] == start

        # C joins now, never having seen main agreed: it computes the same
        # main from the same statements (both delegates' tips contain start).
        c = _start(tmp_path / "c", "--bootstrap", ready_a["addrs"][0])
        assert c.stdout is not None
        json.loads(c.stdout.readline())
        _events_until(c, "peer_identified", ready_a["peer_id"])
        assert run("repo", "sync", rid, home=tmp_path / "c").returncode == 0
        assert shown(tmp_path / "c", rid)["refs/heads/main"] == start

        # A fetches B's commit, signs it too: main moves, on A, then on B.
        alice = person(tmp_path / "a")
        sh(alice, "fetch", "--quiet", "guts", f"refs/guts/{ready_b['peer_id']}/heads/main:refs/remotes/b/main", cwd=source)
        sh(alice, "merge", "--quiet", "--ff-only", "b/main", cwd=source)
        sh(alice, "push", "--quiet", "guts", "main", cwd=source)
        assert shown(tmp_path / "a", rid)["refs/heads/main"] == new
        assert run("repo", "sync", rid, home=tmp_path / "b").returncode == 0
        assert shown(tmp_path / "b", rid)["refs/heads/main"] == new
        assert run("repo", "sync", rid, home=tmp_path / "c").returncode == 0
        assert shown(tmp_path / "c", rid)["refs/heads/main"] == new
    finally:
        for node in (c, b, a):
            if node is not None:
                stop(node)
