"""Repository sync under faults: the fetching node killed with ``SIGKILL``
at several points of a fetch and restarted, uploads refused as busy, and
a serving node whose storage was changed by hand.

The kill tests run real ``guts start`` processes; a ``git`` first on the
fetching node's ``PATH`` (:class:`~tests.sync_fault_helpers.GitPauser`)
holds it at a named storage step so the kill lands there. The busy tests
run two or three hosts in one process on the memory transport.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from guts.host import Host
from guts.repo.pktline import encode_line
from guts.repo.state import Repositories
from guts.sync import (
    SYNC_PROTOCOL,
    GetObjects,
    Objects,
    RefusedReason,
    SyncConfig,
    SyncRefused,
    SyncService,
    decode_response,
    encode_request,
    fetch,
)
from guts.sync.probe import probe_seq
from guts.wire import LengthPrefixedDecoder, encode_length_prefixed

from .helpers import full_addr, memory_hosts
from .repo_helpers import History, build_history, git, git_text, refs_of
from .sync_fault_helpers import (
    WAIT,
    GitPauser,
    Node,
    alive,
    commit_big_files,
    crash_leftovers,
    fsck,
    guts_json,
    kill9,
    listed,
    start_node,
    stop_node,
    wait_until,
)
from .test_cli import GUTS
from .test_cli_repo import run_in
from .test_remote_guts import person, sh

MiB = 1 << 20


def _pack_bytes(repo: Path) -> int:
    """Bytes fetch-pack has written so far into the repository's quarantines."""
    total = 0
    for part in repo.glob("objects/incoming-*/pack/tmp_pack_*"):
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            pass
    return total


def _crash_sync(b: Node, a: Node, rid: str, point: str, pauser: GitPauser) -> tuple[Node, list[Path], bool]:
    """Start ``guts repo sync`` of ``rid`` on ``b`` from ``a``, ``kill -9``
    ``b`` at ``point`` (``pack``: 2 MiB of pack received; or a step of
    :data:`~tests.sync_fault_helpers.STEPS`), wait for its orphaned git
    processes to end, and start ``b`` again on its home.

    Returns:
        The restarted node, what the crash left in its storage, and
        whether the repository's directory was there after the crash.
    """
    repo = b.home / "storage" / rid
    if point != "pack":
        pauser.pause(point)
    sync = subprocess.Popen(
        [*GUTS, "repo", "sync", rid, "--from", a.addr, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "GUTS_HOME": str(b.home)},
    )  # fmt: skip
    try:
        if point == "pack":
            wait_until(lambda: _pack_bytes(repo) >= 2 * MiB or sync.poll() is not None, "the pack to flow")
            held: set[int] = set()
        else:
            wait_until(lambda: pauser.reached(point) or sync.poll() is not None, f"git at {point}")
            held = {pauser.reached(point) or 0} - {0}
        ended = sync.poll() is not None
        if point == "whole" and not ended:
            assert list(repo.glob("objects/incoming-*/pack/pack-*.idx")), "fetch-pack's pack is not whole yet"
        orphans = set() if ended else kill9(b, held)
    finally:
        pauser.release(point)
        out, err = sync.communicate(timeout=WAIT)
    assert not ended, f"the sync ended before the kill at {point}: {out[:300]} {err[-300:]}"
    assert sync.returncode != 0, out
    wait_until(lambda: not any(alive(pid) for pid in orphans), "the killed node's git processes to end", every=0.05)
    left, existed = crash_leftovers(b.home / "storage"), repo.exists()
    return start_node(b.home, pauser.env), left, existed


def test_kill_9_of_the_fetching_node_then_restart_and_sync_again(tmp_path: Path) -> None:
    """B is killed with ``SIGKILL`` while it fetches A's repository: with the
    pack partly received, with the pack whole in the quarantine, and with
    the objects moved in but no HEAD or ref written (a new repository) or
    at the ref transaction (an update of a repository B holds). Each time
    B starts again cleanly, what the crash left is gone, B holds the
    repository not at all (new) or at its previous verified state
    (update), fsck is clean, and the next sync brings A's state."""
    started = time.monotonic()
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    build_history(source / ".git", commits=2000, topic_every=100)
    commit_big_files(source, 24)
    pauser = GitPauser(tmp_path / "faults")
    a = start_node(tmp_path / "a")
    b: Node | None = None
    try:
        made = run_in(source, "repo", "init", "--json", home=a.home)
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = start_node(tmp_path / "b", pauser.env)
        storage_b = b.home / "storage"
        repo_b = storage_b / rid
        print(f"\nsetup {time.monotonic() - started:.1f} s")

        # A repository new to B: nothing of it survives the crash.
        for point in ("pack", "whole", "head"):
            mark = time.monotonic()
            b, left, existed = _crash_sync(b, a, rid, point, pauser)
            assert existed and (left or point == "head"), f"the kill at {point} came too late: {left}"
            assert rid not in listed(b.home)
            assert not repo_b.exists(), f"after the kill at {point}"
            assert crash_leftovers(storage_b) == []
            assert "its creation never finished; removing it" in b.log_text()
            print(f"kill at {point} (new repository), restart, checks: {time.monotonic() - mark:.1f} s")
        mark = time.monotonic()
        synced = guts_json(b.home, "repo", "sync", rid, "--from", a.addr)
        assert synced["changed"] is True and synced["failures"] == []
        state_a = guts_json(a.home, "repo", "show", rid)
        assert guts_json(b.home, "repo", "show", rid)["refs"] == state_a["refs"]
        fsck(repo_b)
        print(f"sync after the kills: {time.monotonic() - mark:.1f} s")

        # A's repository moves on by a large push; B is killed fetching it.
        mark = time.monotonic()
        commit_big_files(source, 16, name="more")
        sh(person(a.home), "push", "--quiet", "guts", "main", cwd=source)
        state_a2 = guts_json(a.home, "repo", "show", rid)
        assert state_a2["refs"] != state_a["refs"]
        before = refs_of(repo_b)
        print(f"push of 16 MiB to A: {time.monotonic() - mark:.1f} s")
        for point in ("pack", "whole", "refs"):
            mark = time.monotonic()
            b, left, _ = _crash_sync(b, a, rid, point, pauser)
            assert point == "refs" or any("incoming-" in str(path) for path in left), left
            held = guts_json(b.home, "repo", "show", rid)
            assert held["refs"] == state_a["refs"], f"after the kill at {point}"
            assert [ns["seq"] for ns in held["namespaces"]] == [1]
            assert refs_of(repo_b) == before
            assert crash_leftovers(storage_b) == []
            fsck(repo_b)
            if left:
                assert "removing a stale quarantine" in b.log_text()
            print(f"kill at {point} (update), restart, checks: {time.monotonic() - mark:.1f} s")
        synced = guts_json(b.home, "repo", "sync", rid, "--from", a.addr)
        assert synced["changed"] is True
        assert guts_json(b.home, "repo", "show", rid)["refs"] == state_a2["refs"]
        assert refs_of(repo_b) == refs_of(a.home / "storage" / rid)
        fsck(repo_b)
        assert "Traceback" not in b.log.read_text()
    finally:
        for node in (a, b):
            if node is not None:
                stop_node(node)
    print(f"whole test {time.monotonic() - started:.1f} s")


# -- busy: uploads past the limits are refused ----------------------------------------


@pytest.fixture(scope="module")
def busy_source(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A history with 4 MiB of random files: its upload outgrows every
    buffer on the way, so a reader that stops reading holds it open."""
    work_tree = tmp_path_factory.mktemp("busy") / "project"
    git("init", "--quiet", "--initial-branch=main", str(work_tree))
    build_history(work_tree / ".git", commits=300, topic_every=100)
    commit_big_files(work_tree, 4)
    return History(work_tree / ".git", refs_of(work_tree / ".git"), 0)


@dataclass
class Trio:
    """A serves its repository; B and C fetch it."""

    a: Host
    b: Host
    c: Host
    repos: dict[str, Repositories]
    rid: str
    service: SyncService


@asynccontextmanager
async def three(tmp_path: Path, source: History, config: SyncConfig) -> AsyncIterator[Trio]:
    async with memory_hosts(3) as (a, b, c):
        repos = {name: await Repositories.open(tmp_path / name) for name in "abc"}
        state = await repos["a"].init(source.path.parent, keypair=a.keypair)
        service = SyncService(a, repos["a"], config)
        for host, name in ((b, "b"), (c, "c")):
            SyncService(host, repos[name])
            await host.connect(full_addr(a))
        yield Trio(a, b, c, repos, str(state.rid), service)


@asynccontextmanager
async def held_upload(host: Host, t: Trio) -> AsyncIterator[Callable[[], Awaitable[bytes]]]:
    """An upload of A's main to ``host``, held open: the request is sent and
    ``Objects`` received (A counts the upload from before it answers), then
    nothing is read. Yields a function that reads the rest of the response
    to its end (the upload completes)."""
    main = t.repos["a"].show(t.rid).canonical.ref_map()["refs/heads/main"]
    request = encode_line(b"command=fetch") + encode_line(b"object-format=sha1") + b"0001"
    request += encode_line(f"want {main}".encode()) + encode_line(b"done") + b"0000"
    stream = await host.new_stream(t.a.peer_id, [SYNC_PROTOCOL])
    async with stream:
        await stream.send_all(encode_length_prefixed(encode_request(GetObjects(t.rid, request))))
        decoder = LengthPrefixedDecoder(1 << 20)
        while (message := decoder.next_message()) is None:
            decoder.receive_data(await stream.receive_some())
        assert isinstance(decode_response(message, SyncConfig()), Objects)

        async def drain() -> bytes:
            body = bytearray(decoder.unused_data())
            while data := await stream.receive_some():
                body += data
            return bytes(body)

        yield drain


def _fetch_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "guts.sync" and r.levelno >= logging.WARNING]


async def _refused_busy(t: Trio, fetcher: Host, repos: Repositories, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SyncRefused) as info:
        await fetch(fetcher, repos, t.a.peer_id, t.rid)
    assert info.value.reason is RefusedReason.BUSY
    assert await repos.storage.list() == [] and len(repos) == 0
    assert crash_leftovers(repos.storage.root) == []
    assert any(str(t.a.peer_id) in line and "BUSY" in line for line in _fetch_warnings(caplog))


async def test_a_second_upload_to_one_peer_is_refused_busy(
    tmp_path: Path, busy_source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``max_uploads_per_peer=1``, B's fetch while an upload to B is
    held open is refused ``BUSY`` and changes nothing on B; C, another
    peer, fetches meanwhile; once the held upload ends, B's fetch succeeds."""
    with trio.fail_after(60):
        async with three(tmp_path, busy_source, SyncConfig(max_uploads_per_peer=1)) as t:
            async with held_upload(t.b, t) as drain:
                await _refused_busy(t, t.b, t.repos["b"], caplog)
                state = await fetch(t.c, t.repos["c"], t.a.peer_id, t.rid)
                assert state.canonical.ref_map() == t.repos["a"].show(t.rid).canonical.ref_map()
                body = await drain()
            assert b"packfile" in body and body.endswith(b"0000") and len(body) > 4 * MiB
            await trio.testing.wait_all_tasks_blocked()  # A's handler has counted the upload's end
            state = await fetch(t.b, t.repos["b"], t.a.peer_id, t.rid)
            assert state.canonical.ref_map() == t.repos["a"].show(t.rid).canonical.ref_map()
            fsck(t.repos["b"].storage.path(t.rid))


async def test_an_upload_past_the_node_limit_is_refused_busy(
    tmp_path: Path, busy_source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``max_uploads=1``, B's fetch while an upload to C is held open is
    refused ``BUSY`` and changes nothing on B; once C's upload ends, B's
    fetch succeeds."""
    with trio.fail_after(60):
        async with three(tmp_path, busy_source, SyncConfig(max_uploads=1)) as t:
            async with held_upload(t.c, t) as drain:
                await _refused_busy(t, t.b, t.repos["b"], caplog)
                body = await drain()
            assert b"packfile" in body and body.endswith(b"0000")
            await trio.testing.wait_all_tasks_blocked()
            state = await fetch(t.b, t.repos["b"], t.a.peer_id, t.rid)
            assert state.canonical.ref_map() == t.repos["a"].show(t.rid).canonical.ref_map()
            fsck(t.repos["b"].storage.path(t.rid))


async def test_a_peer_over_its_request_rate_is_refused_busy_and_others_are_served(
    tmp_path: Path, busy_source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """B asks for A's refs 40 times at once with a bucket of 10 (refilled at
    1 a second): about 10 are answered, the rest refused ``BUSY`` before A
    reads them, with one log line; C, another peer, is served meanwhile."""
    config = SyncConfig(requests_per_second=1.0, request_burst=10)
    with trio.fail_after(60):
        async with three(tmp_path, busy_source, config) as t:
            caplog.set_level(logging.WARNING, logger="guts.sync")
            outcomes: list[str] = []

            async def get_refs() -> None:
                try:
                    await probe_seq(t.b, t.a.peer_id, t.rid, t.a.peer_id)
                    outcomes.append("ok")
                except SyncRefused as exc:
                    outcomes.append(exc.reason.name)

            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(get_refs)
            assert outcomes.count("BUSY") >= 25 and outcomes.count("ok") >= 1, outcomes
            assert len([line for line in _fetch_warnings(caplog) if "request rate" in line]) == 1
            state = await fetch(t.c, t.repos["c"], t.a.peer_id, t.rid)
            assert state.canonical.ref_map() == t.repos["a"].show(t.rid).canonical.ref_map()


# -- the serving node's storage changed by hand ----------------------------------------


def _commit_by_hand(repo: Path, parent: str, message: str) -> str:
    """A commit object written into ``repo`` with plain git, as a person
    would (on ``parent``'s tree)."""
    tree = git_text("rev-parse", f"{parent}^{{tree}}", git_dir=repo)
    done = subprocess.run(
        ["git", "commit-tree", tree, "-p", parent, "-m", message],
        env={**os.environ, "GIT_DIR": str(repo), "GIT_AUTHOR_NAME": "H", "GIT_AUTHOR_EMAIL": "h@example.com",
             "GIT_COMMITTER_NAME": "H", "GIT_COMMITTER_EMAIL": "h@example.com"},
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


def _has_object(repo: Path, oid: str) -> bool:
    done = subprocess.run(["git", "cat-file", "-e", oid], env={**os.environ, "GIT_DIR": str(repo)}, capture_output=True)
    return done.returncode == 0


def test_refs_moved_by_hand_on_the_serving_node_never_reach_the_fetching_one(tmp_path: Path) -> None:
    """A's ``refs/heads/main`` moved by hand to a commit made by hand, while
    A runs: B syncs and clones A's signed main, and the hand-made commit is
    in neither; A's next start moves the ref back. A's sigrefs ref then
    moved by hand to its previous (validly signed) statement: A serves
    that older state after a restart, and B leaves it out, keeping its
    own. Moved to a commit that is no statement at all: A serves no
    statement of that namespace, B keeps its state, and A's storage keeps
    only the identity and that sigrefs ref (the evidence)."""
    started = time.monotonic()
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    build_history(source / ".git", commits=200, topic_every=50)
    a = start_node(tmp_path / "a")
    b: Node | None = None
    try:
        made = run_in(source, "repo", "init", "--json", home=a.home)
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        repo_a = a.home / "storage" / rid
        sigrefs = f"refs/guts/{a.peer_id}/sigrefs"
        first = refs_of(repo_a)[sigrefs]
        # A second signed statement: a push through A.
        signed = commit_big_files(source, 1, size=1000, name="pushed")
        sh(person(a.home), "push", "--quiet", "guts", "main", cwd=source)
        state_a = guts_json(a.home, "repo", "show", rid)
        assert state_a["refs"]["refs/heads/main"] == signed
        second = refs_of(repo_a)[sigrefs]
        assert second != first

        # main moved by hand while A runs.
        hand = _commit_by_hand(repo_a, signed, "made by hand")
        git("update-ref", "refs/heads/main", hand, signed, git_dir=repo_a)
        assert guts_json(a.home, "repo", "show", rid)["refs"] == state_a["refs"]
        b = start_node(tmp_path / "b")
        repo_b = b.home / "storage" / rid
        synced = guts_json(b.home, "repo", "sync", rid, "--from", a.addr)
        assert synced["changed"] is True and synced["repository"]["refs"] == state_a["refs"]
        assert refs_of(repo_b)["refs/heads/main"] == signed
        assert not _has_object(repo_b, hand)
        fsck(repo_b)
        env = person(b.home)
        clone = tmp_path / "clone"
        sh(env, "clone", "--quiet", f"guts://{rid}", str(clone))
        assert sh(env, "rev-parse", "refs/remotes/origin/main", cwd=clone).stdout.strip() == signed
        assert refs_of(clone / ".git")["refs/remotes/origin/main"] == signed
        # A's next start moves it back, and says so.
        stop_node(a)
        a = start_node(a.home)
        assert refs_of(repo_a)["refs/heads/main"] == signed
        assert f"ref refs/heads/main was {hand} outside Guts, the signed state says {signed}: repaired" in a.log_text()
        held_b = refs_of(repo_b)

        # A's sigrefs ref rolled back by hand to its first statement.
        stop_node(a)
        git("update-ref", sigrefs, first, second, git_dir=repo_a)
        a = start_node(a.home)
        rolled = guts_json(a.home, "repo", "show", rid)
        assert [ns["seq"] for ns in rolled["namespaces"]] == [1]
        assert rolled["refs"]["refs/heads/main"] != signed
        stale = guts_json(b.home, "repo", "sync", rid, "--from", a.addr)
        assert stale["changed"] is False
        assert refs_of(repo_b) == held_b
        assert guts_json(b.home, "repo", "show", rid)["refs"] == state_a["refs"]
        # Meeting B, A catches up with the newer statement B holds: its own
        # seq 2 comes back, verified like any other.
        wait_until(lambda: [ns["seq"] for ns in guts_json(a.home, "repo", "show", rid)["namespaces"]] == [2],
                   "A to catch up from B")  # fmt: skip
        healed = refs_of(repo_a)[sigrefs]

        # A's sigrefs ref moved by hand to a commit that records no statement.
        stop_node(a)
        git("update-ref", sigrefs, hand, healed, git_dir=repo_a)
        a = start_node(a.home)
        broken = guts_json(a.home, "repo", "show", rid)
        assert broken["namespaces"] == [] and broken["refs"] == {}
        assert [r["peer_id"] for r in broken["refused"]] == [a.peer_id]
        assert refs_of(repo_a) == {"refs/guts/identity": held_b["refs/guts/identity"], sigrefs: hand}
        assert f"namespace {a.peer_id} does not verify" in a.log_text()
        kept = guts_json(b.home, "repo", "sync", rid, "--from", a.addr)
        assert kept["changed"] is False and kept["repository"]["refs"] == state_a["refs"]
        assert refs_of(repo_b) == held_b and not _has_object(repo_b, hand)
        fsck(repo_b)
    finally:
        for node in (a, b):
            if node is not None:
                stop_node(node)
    print(f"\nwhole test {time.monotonic() - started:.1f} s")


def test_a_node_lists_only_its_signed_refs_while_one_is_moved_by_hand(tmp_path: Path) -> None:
    """git ls-remote and git clone through the node whose ``main`` was moved
    on disk by hand: both see the signed ``main``, never the hand-made one."""
    source = tmp_path / "source"
    git("init", "--quiet", "--initial-branch=main", str(source))
    history = build_history(source / ".git", commits=50, topic_every=20)
    a = start_node(tmp_path / "a")
    try:
        made = run_in(source, "repo", "init", "--json", home=a.home)
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        repo_a = a.home / "storage" / rid
        signed = history.refs["refs/heads/main"]
        hand = _commit_by_hand(repo_a, signed, "made by hand")
        git("update-ref", "refs/heads/main", hand, signed, git_dir=repo_a)
        env = person(a.home)
        listed = sh(env, "ls-remote", f"guts://{rid}").stdout
        assert hand not in listed and f"{signed}\trefs/heads/main" in listed
        clone = tmp_path / "clone"
        sh(env, "clone", "--quiet", f"guts://{rid}", str(clone))
        assert sh(env, "rev-parse", "HEAD", cwd=clone).stdout.strip() == signed
        assert refs_of(clone / ".git")["refs/remotes/origin/main"] == signed
    finally:
        stop_node(a)
