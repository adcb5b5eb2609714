"""``guts repo ...`` as people run it: a real ``guts start`` process, real
repositories, ``init`` (and the ``guts`` remote it adds), ``list``,
``show``, and repositories that outlive a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from guts.crypto import KeyPair

from .repo_helpers import History, build_history, git, git_text, refs_of
from .test_cli import GUTS, _start, run

UNKNOWN = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # a RID no node holds


def project(path: Path, commits: int = 120) -> History:
    """A work tree with branches, merges and a tag or two."""
    git("init", "--quiet", "--initial-branch=main", str(path))
    return build_history(path / ".git", commits=commits, topic_every=30)


def run_in(cwd: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUTS_HOME": str(home)}
    return subprocess.run([*GUTS, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def stop(node: subprocess.Popen[str]) -> None:
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=15) == 0


def test_init_list_show_and_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = project(tmp_path / "first")
    second = project(tmp_path / "second", commits=60)
    taken = project(tmp_path / "taken", commits=45)
    git("remote", "add", "guts", "guts://elsewhere", git_dir=taken.path)
    delegate = str(KeyPair.generate().peer_id)
    node = _start(home)
    try:
        assert node.stdout is not None
        me = json.loads(node.stdout.readline())["peer_id"]
        # PATH defaults to the current directory; --json answers what the node made.
        made = run_in(tmp_path / "first", "repo", "init", "--json", home=home)
        assert made.returncode == 0, made.stderr
        info = json.loads(made.stdout)
        rid = info["rid"]
        assert info["url"] == f"guts://{rid}" and info["name"] == "first" and info["default_branch"] == "main"
        assert info["refs"] == first.refs
        assert info["remote"] == {"name": "guts", "url": info["url"], "status": "added"}
        assert git_text("remote", "get-url", "guts", git_dir=first.path) == info["url"]
        # For people, with every option.
        text = run(
            "repo", "init", str(tmp_path / "second"), "--name", "tool", "--description", "a tool",
            "--default-branch", "release", "--delegate", delegate, "--threshold", "1", home=home,
        )  # fmt: skip
        assert text.returncode == 0, text.stderr
        out = text.stdout
        assert "made repository 'tool': bafkrei" in out and "default branch: release" in out
        assert "delegates:      2 (threshold 1)" in out and "added the remote 'guts'" in out
        assert "next:" in out and "guts repo show bafkrei" in out and "git push guts" in out and "git clone guts://" in out
        # A remote named guts for something else is left alone, and said so.
        kept = run("repo", "init", str(tmp_path / "taken"), home=home)
        assert kept.returncode == 0, kept.stderr
        assert "has a remote 'guts' already, for guts://elsewhere: left as it is" in kept.stdout
        assert git_text("remote", "get-url", "guts", git_dir=taken.path) == "guts://elsewhere"
        # The same repository again is another repository (its genesis has a
        # nonce of its own); the remote stays the first one's, and it says so.
        again = run("repo", "init", str(tmp_path / "first"), home=home)
        assert again.returncode == 0, again.stderr
        assert f"has a remote 'guts' already, for guts://{rid}: left as it is" in again.stdout
        assert rid not in again.stdout.splitlines()[0]
        nothing = run("repo", "init", str(tmp_path), home=home)
        assert nothing.returncode == 1 and "not a git repository" in nothing.stderr
        listed = json.loads(run("repo", "list", "--json", home=home).stdout)["repositories"]
        assert sorted(repo["name"] for repo in listed) == ["first", "first", "taken", "tool"]
        table = run("repo", "list", home=home).stdout.splitlines()
        assert table[0].split() == ["RID", "NAME", "REFS", "DELEGATES"] and any(rid in line for line in table)
        shown = json.loads(run("repo", "show", rid, "--json", home=home).stdout)
        assert shown["refs"] == first.refs and shown["divergences"] == [] and shown["revisions"] == 1
        assert shown["delegates"] == [{"peer_id": me, "seq": 1, "agrees": True}]
        [ns] = shown["namespaces"]
        assert (ns["peer_id"], ns["delegate"], ns["seq"], ns["refs"]) == (me, True, 1, len(first.refs))
        readable = run("repo", "show", f"guts://{rid}", home=home)
        assert readable.returncode == 0, readable.stderr
        assert f"canonical refs: {len(first.refs)}" in readable.stdout and "divergences:    none" in readable.stdout
        assert f"{me}  delegate, seq 1, {len(first.refs)} refs" in readable.stdout
        missing = run("repo", "show", UNKNOWN, "--json", home=home)
        assert missing.returncode == 1 and json.loads(missing.stdout)["kind"] == "not_found"
        garbage = run("repo", "show", "nonsense", "--json", home=home)
        assert garbage.returncode == 1 and json.loads(garbage.stdout)["kind"] == "bad_request"
        assert json.loads(run("status", "--json", home=home).stdout)["repos"] == 4
    finally:
        stop(node)
    # The repositories outlive the node.
    node = _start(home)
    try:
        assert node.stdout is not None
        json.loads(node.stdout.readline())
        listed = json.loads(run("repo", "list", "--json", home=home).stdout)["repositories"]
        assert rid in [repo["rid"] for repo in listed] and len(listed) == 4
    finally:
        stop(node)


def test_without_a_node_it_says_how_to_start_one(tmp_path: Path) -> None:
    for args in (["list"], ["show", UNKNOWN], ["init", "."]):
        result = run_in(tmp_path, "repo", *args, home=tmp_path / "nobody")
        assert result.returncode == 1
        assert "no node is running" in result.stderr and "guts start" in result.stderr
    as_json = run("repo", "list", "--json", home=tmp_path / "nobody")
    assert json.loads(as_json.stdout)["kind"] == "not_running"


def test_sync_between_two_nodes(tmp_path: Path) -> None:
    """B syncs A's repository from A's address (then from its connected
    peers, up to date), and its refs equal A's; an unknown RID and a node
    with no peer are refused with the reason."""
    source = project(tmp_path / "source")
    a = _start(tmp_path / "a")
    b = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        made = run_in(tmp_path / "source", "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = _start(tmp_path / "b")
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        alone = run("repo", "sync", rid, "--json", home=tmp_path / "b")
        assert alone.returncode == 1 and json.loads(alone.stdout)["kind"] == "no_peers"

        synced = run("repo", "sync", f"guts://{rid}", "--from", ready_a["addrs"][0], "--json", home=tmp_path / "b")
        assert synced.returncode == 0, synced.stderr
        answer = json.loads(synced.stdout)
        assert answer["changed"] is True and answer["failures"] == []
        assert answer["repository"]["refs"] == source.refs
        storage_a, storage_b = tmp_path / "a" / "storage" / rid, tmp_path / "b" / "storage" / rid
        assert refs_of(storage_b) == refs_of(storage_a)
        git("fsck", "--strict", "--no-progress", git_dir=storage_b)

        again = run("repo", "sync", rid, home=tmp_path / "b")  # from the connected peer: A
        assert again.returncode == 0, again.stderr
        assert "is up to date with" in again.stdout and "canonical refs:" in again.stdout

        unknown = run("repo", "sync", UNKNOWN, home=tmp_path / "b")
        assert unknown.returncode == 1 and "no peer completed the sync" in unknown.stderr
        assert "NOT_FOUND" in unknown.stderr
    finally:
        for node in (a, b):
            if node is not None:
                stop(node)
