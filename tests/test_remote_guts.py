"""``git clone guts://<RID>``, ``git fetch``, ``git pull`` and ``git push``
through ``git-remote-guts`` and a real ``guts start`` node: real git,
the console script from the virtualenv on git's PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from guts.config import CONTROL_SOCKET
from guts.control import ControlClient, ControlError
from guts.control._http import BodyLimit, HttpRequest, HttpResponse, RawStream, http_raw_request, serve_http
from guts.errors import GutsError, InputError
from guts.repo.pktline import DataPacket, DelimPacket, FlushPacket, encode_packets

from .repo_helpers import build_history, git
from .test_cli import _events_until, _start, run
from .test_cli_repo import UNKNOWN, run_in, stop

BIN = str(Path(sys.executable).parent)


def person(home: Path) -> dict[str, str]:
    """A person's environment: git finds git-remote-guts, the helper finds
    the node of ``home``; no system or global git configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        GUTS_HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_AUTHOR_NAME="A U Thor",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="A U Thor",
        GIT_COMMITTER_EMAIL="author@example.com",
    )
    return env


def sh(env: dict[str, str], *args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    if ok:
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done


def refs(env: dict[str, str], where: Path, *patterns: str) -> dict[str, str]:
    out = sh(env, "for-each-ref", "--format=%(objectname) %(refname)", *patterns, cwd=where).stdout
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def commit(env: dict[str, str], where: Path, name: str) -> str:
    (where / name).write_text(f"{name}\n")
    sh(env, "add", name, cwd=where)
    sh(env, "commit", "--quiet", "-m", f"add {name}", cwd=where)
    return sh(env, "rev-parse", "HEAD", cwd=where).stdout.strip()


def shown(home: Path, rid: str) -> dict[str, str]:
    done = run("repo", "show", rid, "--json", home=home)
    assert done.returncode == 0, done.stderr
    answer: dict[str, str] = json.loads(done.stdout)["refs"]
    return answer


def loose_objects(env: dict[str, str], where: Path) -> int:
    out = sh(env, "count-objects", "-v", cwd=where).stdout
    return int(dict(line.split(": ") for line in out.splitlines())["count"])


def test_clone_push_fetch_pull_through_the_node(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = person(home)
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=1100, topic_every=100)
    assert any(name.startswith("refs/tags/") for name in history.refs)
    node = _start(home)
    try:
        assert node.stdout is not None
        json.loads(node.stdout.readline())
        made = run_in(source, "repo", "init", "--json", home=home)
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]

        # Clone: the canonical refs, fsck clean, main checked out.
        first = tmp_path / "first"
        started = time.monotonic()
        sh(env, "clone", "--quiet", f"guts://{rid}", str(first))
        took = time.monotonic() - started
        sh(env, "fsck", "--strict", "--no-progress", cwd=first)
        cloned = refs(env, first, "refs/remotes/origin/", "refs/tags/")
        expected = {
            name.replace("refs/heads/", "refs/remotes/origin/"): oid
            for name, oid in history.refs.items()
        }
        assert {k: v for k, v in cloned.items() if not k.endswith("/HEAD")} == expected
        assert sh(env, "symbolic-ref", "HEAD", cwd=first).stdout.strip() == "refs/heads/main"
        assert sh(env, "rev-parse", "HEAD", cwd=first).stdout.strip() == history.refs["refs/heads/main"]
        print(f"clone of {history.commits} commits through guts: {took:.2f} s")

        # Push a commit: the node signs it, the canonical main follows
        # (its one delegate, threshold 1), a second clone has it.
        one = commit(env, first, "one.txt")
        pushed = sh(env, "push", "origin", "main", cwd=first)
        assert f"{history.refs['refs/heads/main'][:7]}..{one[:7]}  main -> main" in pushed.stderr
        assert shown(home, rid)["refs/heads/main"] == one
        second = tmp_path / "second"
        sh(env, "clone", "--quiet", f"guts://{rid}", str(second))
        assert sh(env, "rev-parse", "HEAD", cwd=second).stdout.strip() == one

        # Fetch after another push: a pack of about one commit (git unpacks
        # a small pack into loose objects: a commit, its tree, one blob).
        two = commit(env, first, "two.txt")
        sh(env, "push", "--quiet", "origin", "main", cwd=first)
        before = loose_objects(env, second)
        sh(env, "fetch", "--quiet", cwd=second)
        assert sh(env, "rev-parse", "origin/main", cwd=second).stdout.strip() == two
        assert loose_objects(env, second) - before == 3

        # A non-fast-forward is refused as git refuses it; --force goes through.
        other = commit(env, second, "other.txt")
        refused = sh(env, "push", "origin", "main", cwd=second, ok=False)
        assert refused.returncode == 1
        assert "! [rejected]" in refused.stderr and "non-fast-forward" in refused.stderr
        assert shown(home, rid)["refs/heads/main"] == two
        forced = sh(env, "push", "--force", "origin", "main", cwd=second)
        assert "(forced update)" in forced.stderr
        assert shown(home, rid)["refs/heads/main"] == other

        # The first clone pulls it (a merge: its main had moved on), and
        # pushes the merge.
        sh(env, "pull", "--quiet", "--no-rebase", "--no-edit", "origin", "main", cwd=first)
        merge = sh(env, "rev-parse", "HEAD", cwd=first).stdout.strip()
        assert sh(env, "rev-parse", "HEAD^1", "HEAD^2", cwd=first).stdout.split() == [two, other]
        sh(env, "push", "--quiet", "origin", "main", cwd=first)
        assert shown(home, rid)["refs/heads/main"] == merge

        # A new branch and a tag, then the branch deleted.
        sh(env, "push", "--quiet", "origin", "main:refs/heads/feature", cwd=first)
        sh(env, "tag", "v-push", cwd=first)
        sh(env, "push", "--quiet", "origin", "v-push", cwd=first)
        state = shown(home, rid)
        assert state["refs/heads/feature"] == merge and state["refs/tags/v-push"] == merge
        deleted = sh(env, "push", "origin", ":feature", cwd=first)
        assert "[deleted]" in deleted.stderr
        assert "refs/heads/feature" not in shown(home, rid)
        # A tag that exists is not moved without --force.
        sh(env, "tag", "--force", "v-push", "HEAD~1", cwd=first)
        moved = sh(env, "push", "origin", "v-push", cwd=first, ok=False)
        assert moved.returncode == 1 and "already exists" in moved.stderr

        # --dry-run changes nothing; a stale lease is refused; --atomic is
        # all or nothing.
        sh(env, "reset", "--quiet", "--hard", "origin/main", cwd=first)
        commit(env, first, "three.txt")
        dry = sh(env, "push", "--dry-run", "origin", "main", cwd=first)
        assert "main -> main" in dry.stderr and shown(home, rid)["refs/heads/main"] == merge
        stale = sh(env, "push", f"--force-with-lease=main:{two}", "origin", "main", cwd=first, ok=False)
        assert stale.returncode == 1 and "stale info" in stale.stderr
        atomic = sh(env, "push", "--atomic", "origin", "main", "v-push", cwd=first, ok=False)
        assert atomic.returncode == 1 and "atomic push failed" in atomic.stderr
        assert shown(home, rid)["refs/heads/main"] == merge

        # The repository that was made a Guts one pushes through its remote guts.
        sh(env, "pull", "--quiet", "--ff-only", "guts", "main", cwd=source)
        sh(env, "reset", "--quiet", "--hard", cwd=source)
        assert sh(env, "rev-parse", "HEAD", cwd=source).stdout.strip() == merge
        four = commit(env, source, "four.txt")
        sh(env, "push", "--quiet", "guts", "main", cwd=source)
        assert shown(home, rid)["refs/heads/main"] == four

        # A repository this node does not hold: said so.
        unknown = sh(env, "clone", f"guts://{UNKNOWN}", str(tmp_path / "none"), ok=False)
        assert unknown.returncode != 0 and f"does not hold {UNKNOWN}" in unknown.stderr
    finally:
        stop(node)


def test_without_a_node_git_is_told_how_to_start_one(tmp_path: Path) -> None:
    env = person(tmp_path / "nobody")
    done = sh(env, "clone", f"guts://{UNKNOWN}", str(tmp_path / "clone"), ok=False)
    assert done.returncode != 0
    assert "no node is running" in done.stderr and "guts start" in done.stderr


def test_clone_and_push_through_a_node_that_synced_it(tmp_path: Path) -> None:
    """B holds A's repository after ``guts repo sync``: a clone through B
    has A's canonical refs; B is no delegate, so a push through B lands in
    B's namespace only, and git is told so."""
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=200, topic_every=50)
    a = _start(tmp_path / "a")
    b = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        made = run_in(source, "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = _start(tmp_path / "b")
        assert b.stdout is not None
        me = json.loads(b.stdout.readline())["peer_id"]
        synced = run("repo", "sync", rid, "--from", ready_a["addrs"][0], home=tmp_path / "b")
        assert synced.returncode == 0, synced.stderr

        env = person(tmp_path / "b")
        clone = tmp_path / "clone"
        sh(env, "clone", "--quiet", f"guts://{rid}", str(clone))
        sh(env, "fsck", "--strict", "--no-progress", cwd=clone)
        heads = refs(env, clone, "refs/remotes/origin/")
        assert heads["refs/remotes/origin/main"] == history.refs["refs/heads/main"]

        mine = commit(env, clone, "mine.txt")
        pushed = sh(env, "push", "--progress", "origin", "main", cwd=clone)
        assert "main -> main" in pushed.stderr and "Total 3 " in pushed.stderr  # the new commit only
        assert f"this node ({me}) is no delegate" in pushed.stderr and "canonical refs did not move" in pushed.stderr
        state = json.loads(run("repo", "show", rid, "--json", home=tmp_path / "b").stdout)
        assert state["refs"]["refs/heads/main"] == history.refs["refs/heads/main"]
        [ns] = [ns for ns in state["namespaces"] if ns["peer_id"] == me]
        assert (ns["delegate"], ns["seq"], ns["refs"]) == (False, 1, 1)
        # Its namespace is what the next push compares with: up to date.
        again = sh(env, "push", "origin", "main", cwd=clone)
        assert "Everything up-to-date" in again.stderr
        # Every namespace is there to fetch: a delegate reviews it from
        # refs/guts/<peer>/heads/<branch>.
        listed = dict(line.split("\t")[::-1] for line in sh(env, "ls-remote", "origin", cwd=clone).stdout.splitlines())
        assert listed[f"refs/guts/{me}/heads/main"] == mine
        assert listed["refs/heads/main"] == history.refs["refs/heads/main"]
        sh(env, "fetch", "--quiet", "guts", f"refs/guts/{me}/heads/main:refs/remotes/theirs/main", cwd=source)
        assert sh(env, "rev-parse", "theirs/main", cwd=source).stdout.strip() == mine
    finally:
        for node in (a, b):
            if node is not None:
                stop(node)


def test_the_node_serves_only_signed_objects_and_publishable_refs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = person(home)
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=40, topic_every=20)
    node = _start(home)
    try:
        assert node.stdout is not None
        json.loads(node.stdout.readline())
        made = run_in(source, "repo", "init", "--json", home=home)
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        tree = sh(env, "rev-parse", "main^{tree}", cwd=source).stdout.strip()

        async def ask(want: str) -> bytes:
            request = encode_packets(
                [*(DataPacket(line) for line in (b"command=fetch\n", )), DelimPacket(),
                 DataPacket(f"want {want}\n".encode()), DataPacket(b"done\n"), FlushPacket()]
            )  # fmt: skip
            client = ControlClient(home / CONTROL_SOCKET)
            return b"".join([chunk async for chunk in client.raw("POST", f"/v1/repo/upload-pack?rid={rid}", request)])

        answer = trio.run(ask, history.refs["refs/heads/main"])
        assert b"packfile" in answer and answer.endswith(b"0000")
        with pytest.raises(ControlError, match=f"want {tree}: no signed statement lists it") as refused:
            trio.run(ask, tree)
        assert refused.value.status == 400

        clone = tmp_path / "clone"
        sh(env, "clone", "--quiet", f"guts://{rid}", str(clone))
        elsewhere = sh(env, "push", "origin", "main:refs/notes/x", cwd=clone, ok=False)
        assert elsewhere.returncode == 1
        assert "[remote rejected] main -> refs/notes/x (guts publishes refs/heads/* and refs/tags/* only)" in (
            elsewhere.stderr
        )
    finally:
        stop(node)


# -- the control API's raw streams, over a memory stream pair ---------------


async def test_a_streamed_body_reaches_the_route_in_chunks_and_its_limit_holds() -> None:
    seen: list[int] = []

    async def app(request: HttpRequest) -> HttpResponse:
        assert request.chunks is not None and request.body == b""
        try:
            async for chunk in request.chunks:
                seen.append(len(chunk))
        except InputError as exc:
            return HttpResponse(400, {"error": str(exc), "kind": "bad_request"})
        return HttpResponse(200, {"bytes": sum(seen)})

    async def body(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 1000):
            yield b"x" * 1000

    for total, status in ((50_000, 200), (200_000, 400)):
        seen.clear()
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_http, server, app, lambda method, path: BodyLimit(100_000, streamed=True))
            code, _, chunks = await http_raw_request(client, "POST", "/x", body(total))
            answer = json.loads(b"".join([chunk async for chunk in chunks]))
        assert code == status
        if status == 200:
            assert answer == {"bytes": total} and len(seen) > 1
        else:
            assert "over 100000 bytes" in answer["error"] and sum(seen) <= 100_000


async def test_a_raw_answer_that_fails_midway_is_cut_not_ended() -> None:
    async def app(request: HttpRequest) -> HttpResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"0008abcd"
            raise GutsError("git died")

        return HttpResponse(200, RawStream(chunks()))

    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_http, server, app)
        status, kind, chunks = await http_raw_request(client, "POST", "/x", b"request")
        assert (status, kind) == (200, "application/octet-stream")
        got = []
        with pytest.raises(ValueError):
            async for chunk in chunks:
                got.append(chunk)
    assert got == [b"0008abcd"]


def test_clone_by_rid_on_a_node_that_never_saw_it(tmp_path: Path) -> None:
    """``git clone guts://<RID>`` through B, connected to A but never told of
    the repository: B fetches it from its peers first (progress on stderr,
    the peer named), and git gets exactly A's canonical refs. ``guts repo
    clone`` does the same through a node that names its peer, and says what
    to do on a node with no peer at all."""
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=300, topic_every=60)
    a = _start(tmp_path / "a")
    b = c = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        made = run_in(source, "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])

        env = person(tmp_path / "b")
        clone = tmp_path / "clone"
        cloned = sh(env, "clone", "--progress", f"guts://{rid}", str(clone))
        assert f"guts: fetching from {ready_a['peer_id']}" in cloned.stderr
        assert "guts: received " in cloned.stderr and "verified; applying" in cloned.stderr
        assert f"guts: fetched 'source' from {ready_a['peer_id']}" in cloned.stderr
        # A clone on B's machine takes B's verified packs as they are.
        assert "guts: linked 2 verified packs" in cloned.stderr
        sh(env, "fsck", "--strict", "--no-progress", cwd=clone)
        heads = refs(env, clone, "refs/remotes/origin/", "refs/tags/")
        expected = {
            name.replace("refs/heads/", "refs/remotes/origin/"): oid for name, oid in history.refs.items()
        }
        assert {k: v for k, v in heads.items() if k != "refs/remotes/origin/HEAD"} == expected
        assert shown(tmp_path / "b", rid) == shown(tmp_path / "a", rid)
        # Held now: a quiet clone asks no peer.
        again = sh(env, "clone", "--quiet", f"guts://{rid}", str(tmp_path / "again"))
        assert again.stderr == ""
        # A shallow clone is not served: git is told, and the clone is whole.
        shallow = sh(env, "clone", "--depth", "1", f"guts://{rid}", str(tmp_path / "shallow"))
        assert "--depth is not served through guts://" in shallow.stderr
        assert not (tmp_path / "shallow" / ".git" / "shallow").exists()

        # A node with no peer says how to name one; --from names it.
        c = _start(tmp_path / "c")
        assert c.stdout is not None
        json.loads(c.stdout.readline())
        lonely = run_in(tmp_path, "repo", "clone", rid, home=tmp_path / "c")
        assert lonely.returncode == 1 and "--from" in lonely.stderr
        done = run_in(
            tmp_path, "repo", "clone", f"guts://{rid}", "third", "--from", ready_a["addrs"][0], "--json",
            home=tmp_path / "c",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["synced"] is True and answer["path"] == str(tmp_path / "third")
        assert answer["peer"] == ready_a["addrs"][0]
        third = refs(env, tmp_path / "third", "refs/remotes/origin/main")
        assert third["refs/remotes/origin/main"] == history.refs["refs/heads/main"]
        # For people: --progress shows each step of a sync (here from the
        # peer C dialled, up to date), and a clone's directory is named
        # after the repository.
        people = run_in(tmp_path, "repo", "sync", rid, "--progress", home=tmp_path / "c")
        assert people.returncode == 0, people.stderr
        assert f"asking {ready_a['peer_id'][:8]}" in people.stderr and "signed namespaces from" in people.stderr
        assert "is up to date with" in people.stdout
        (tmp_path / "work").mkdir()
        named = run_in(tmp_path / "work", "repo", "clone", rid, home=tmp_path / "c")
        assert named.returncode == 0, named.stderr
        assert "cloned 'source' into source" in named.stdout
        assert (tmp_path / "work" / "source" / ".git").is_dir()
        taken = run_in(tmp_path / "work", "repo", "clone", rid, home=tmp_path / "c")
        assert taken.returncode == 1 and "already exists and is not an empty directory" in taken.stderr
    finally:
        for node in (a, b, c):
            if node is not None:
                stop(node)


def test_the_readme_walk_through(tmp_path: Path) -> None:
    """The README's walk-through, step by step: Alice inits, Bob (connected)
    clones by RID and pushes a fix into his namespace, Alice syncs it from
    Bob's node, fetches his branch, merges and pushes, and Bob's node and
    git then have the new canonical main."""
    project = tmp_path / "project"
    git("init", "--quiet", "--initial-branch=main", str(project))
    build_history(project / ".git", commits=60, topic_every=20)
    git("-C", str(project), "checkout", "--quiet", "-f", "main")
    alice = bob = None
    try:
        alice = _start(tmp_path / "alice")
        assert alice.stdout is not None
        ready = json.loads(alice.stdout.readline())
        made = run_in(project, "repo", "init", "--json", home=tmp_path / "alice")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        bob = _start(tmp_path / "bob", "--bootstrap", ready["addrs"][0])
        assert bob.stdout is not None
        bob_id = json.loads(bob.stdout.readline())["peer_id"]
        _events_until(bob, "peer_identified", ready["peer_id"])

        bobs = person(tmp_path / "bob")
        clone = tmp_path / "project-bob"
        sh(bobs, "clone", "--quiet", f"guts://{rid}", str(clone))
        fix = commit(bobs, clone, "fix.txt")
        pushed = sh(bobs, "push", "origin", "main", cwd=clone)
        assert "is no delegate" in pushed.stderr

        synced = run("repo", "sync", rid, home=tmp_path / "alice")  # from her connected peer: Bob
        assert synced.returncode == 0, synced.stderr
        alices = person(tmp_path / "alice")
        sh(alices, "fetch", "--quiet", "guts", f"refs/guts/{bob_id}/heads/main:refs/remotes/bob/main", cwd=project)
        assert "add fix.txt" in sh(alices, "log", "--oneline", "main..bob/main", cwd=project).stdout
        sh(alices, "merge", "--quiet", "--ff-only", "bob/main", cwd=project)
        sh(alices, "push", "--quiet", "guts", "main", cwd=project)
        assert shown(tmp_path / "alice", rid)["refs/heads/main"] == fix

        again = run("repo", "sync", rid, home=tmp_path / "bob")
        assert again.returncode == 0, again.stderr
        assert shown(tmp_path / "bob", rid)["refs/heads/main"] == fix
        sh(bobs, "pull", "--quiet", cwd=clone)
        assert refs(bobs, clone, "refs/remotes/origin/main")["refs/remotes/origin/main"] == fix
    finally:
        for node in (alice, bob):
            if node is not None:
                stop(node)
