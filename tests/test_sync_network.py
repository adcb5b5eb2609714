"""The sync protocol between two nodes on the memory transport, with real
git: a full fetch of a repository with history, an incremental fetch of
one commit, and bad input on both sides (each leaves the fetching node's
repository as it was and logs a line naming the peer)."""

from __future__ import annotations

import importlib
import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from guts.crypto import KeyPair
from guts.errors import InvalidIdentity, InvalidRefs
from guts.host import Host
from guts.repo import _quarantine
from guts.repo.identity import sign_revision
from guts.repo.layout import IDENTITY_REF, sigrefs_ref
from guts.repo.pktline import Band, encode_line, encode_sideband
from guts.repo.revisions import propose_revision
from guts.repo.sigrefs import SignedStatement
from guts.repo.state import Repositories, RepositoriesConfig
from guts.repo.storage import NotConnected, PackRejected
from guts.sync import (
    SYNC_PROTOCOL,
    GetObjects,
    Objects,
    Refs,
    Refused,
    RefusedReason,
    SyncConfig,
    SyncError,
    SyncRefused,
    SyncService,
    SyncStalled,
    decode_response,
    encode_request,
    encode_response,
    fetch,
)
from guts.wire import MessageStream, encode_length_prefixed

from .helpers import full_addr, memory_hosts
from .repo_helpers import History, build_history, git, git_text, pack_objects, refs_of
from .repo_helpers import pack as repo_pack

LOGGER = "guts.sync"
fetch_module = importlib.import_module("guts.sync.fetch")  # (guts.sync re-exports the function as ``fetch``)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A work tree whose history has about 3,300 commits: topic branches,
    merges, annotated and lightweight tags, a release branch."""
    work_tree = tmp_path_factory.mktemp("source") / "project"
    git("init", "--quiet", "--initial-branch=main", str(work_tree))
    return build_history(work_tree / ".git", commits=3000)


@dataclass
class Pair:
    a: Host
    b: Host
    repos_a: Repositories
    repos_b: Repositories
    rid: str
    tmp: Path
    service: SyncService


@asynccontextmanager
async def pair(
    tmp_path: Path, source: History, config: SyncConfig | None = None, service: type[SyncService] = SyncService
) -> AsyncIterator[Pair]:
    async with memory_hosts(2) as (a, b):
        repos_a = await Repositories.open(tmp_path / "a")
        repos_b = await Repositories.open(tmp_path / "b")
        state = await repos_a.init(source.path.parent, keypair=a.keypair)
        serving = service(a, repos_a, config)
        SyncService(b, repos_b, config)
        await b.connect(full_addr(a))
        yield Pair(a, b, repos_a, repos_b, str(state.rid), tmp_path, serving)


def published(refs: dict[str, str]) -> dict[str, str]:
    """Canonical and namespace refs: everything but the chains' own refs."""
    return {n: o for n, o in refs.items() if n != IDENTITY_REF and not n.endswith("/sigrefs")}


def fsck(path: Path) -> None:
    git("fsck", "--strict", "--no-dangling", "--no-progress", git_dir=path)


def add_commit(p: Pair, message: str) -> str:
    """A new commit on A's main, stored in A's repository (as a push would)."""
    path = p.repos_a.storage.path(p.rid)
    main = git_text("rev-parse", "refs/heads/main", git_dir=path)
    tree = git_text("rev-parse", f"{main}^{{tree}}", git_dir=path)
    env_commit = subprocess.run(
        ["git", "commit-tree", tree, "-p", main, "-m", message],
        env={"GIT_DIR": str(path), "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
             "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com", "PATH": "/usr/bin:/bin"},
        capture_output=True, check=True,
    )  # fmt: skip
    return env_commit.stdout.decode().strip()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# -- fetching ------------------------------------------------------------------------


def count_walks(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The oids of each connectivity walk (``rev-list --objects``) a quarantine runs."""
    walks: list[list[str]] = []
    real = _quarantine.run_git_status

    async def counted(args: list[str], **kwargs: Any) -> Any:
        if args[0] == "rev-list":
            walks.append(kwargs["stdin"].decode().split())
        return await real(args, **kwargs)

    monkeypatch.setattr(_quarantine, "run_git_status", counted)
    return walks


async def test_fetch_a_repository_then_one_new_commit(
    tmp_path: Path, source: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair(tmp_path, source) as p:
        walks = count_walks(monkeypatch)
        relayed: list[bytes] = []
        relay = fetch_module._relay

        async def counted_relay(*args: Any) -> None:
            relayed.append(args[3])
            await relay(*args)

        monkeypatch.setattr(fetch_module, "_relay", counted_relay)
        started = time.perf_counter()
        state = await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        took = time.perf_counter() - started
        # B had no objects, and index-pack --strict checked every link of
        # what came: no walk (as git clone), refs as one packed-refs file.
        assert walks == []
        # fetch-pack's ls-refs was answered locally: one request went to A, its fetch.
        assert len(relayed) == 1 and b"command=fetch" in relayed[0]
        path_b = p.repos_b.storage.path(p.rid)
        assert (path_b / "packed-refs").is_file() and not [f for f in (path_b / "refs").rglob("*") if f.is_file()]
        path_a, path_b = p.repos_a.storage.path(p.rid), p.repos_b.storage.path(p.rid)
        assert published(refs_of(path_b)) == published(refs_of(path_a))
        assert refs_of(path_b)[IDENTITY_REF] == refs_of(path_a)[IDENTITY_REF]
        assert refs_of(path_b)[sigrefs_ref(p.a.peer_id)] == refs_of(path_a)[sigrefs_ref(p.a.peer_id)]
        assert state.canonical.ref_map() == p.repos_a.show(p.rid).canonical.ref_map()
        assert git_text("symbolic-ref", "HEAD", git_dir=path_b) == "refs/heads/main"
        assert git_text("rev-list", "--count", "--all", git_dir=path_b) == git_text(
            "rev-list", "--count", "--all", git_dir=path_a
        )
        fsck(path_b)
        assert not list((path_b / "objects" / "pack").glob("*.keep"))
        # The same state again: nothing to do.
        again = await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert again == state
        # B restarts: what it holds loads and verifies.
        reopened = await Repositories.open(tmp_path / "b")
        assert reopened.show(p.rid).canonical.ref_map() == state.canonical.ref_map()

        mirror = tmp_path / "mirror.git"
        started = time.perf_counter()
        git("clone", "--quiet", "--mirror", f"file://{path_a}", str(mirror))
        git_took = time.perf_counter() - started
        print(f"\nfetch of {source.commits} commits: guts {took:.3f} s, git clone --mirror (file://) {git_took:.3f} s")

        new = add_commit(p, "one more")
        refs = dict(p.repos_a.show(p.rid).namespaces[p.a.peer_id].statement.refs)
        refs["refs/heads/main"] = new
        await p.repos_a.publish(p.rid, p.a.keypair, refs)
        packs = set((path_b / "objects" / "pack").glob("*.pack"))
        walks.clear()  # (A's publish walked its new sigrefs commit)
        started = time.perf_counter()
        await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        took = time.perf_counter() - started
        assert refs_of(path_b)["refs/heads/main"] == new
        assert len(walks) == 1 and new in walks[0]  # B holds objects now: the new ones are walked
        # ... and of the sigrefs commit built here, its tree (its parent is B's
        # sigrefs ref; its 1970 date would have rev-list paint all history first)
        sigrefs = refs_of(path_b)[sigrefs_ref(p.a.peer_id)]
        assert sigrefs not in walks[0] and git_text("rev-parse", f"{sigrefs}^{{tree}}", git_dir=path_b) in walks[0]
        assert published(refs_of(path_b)) == published(refs_of(path_a))
        fsck(path_b)
        # Two new packs: the one fetch-pack received, and the sigrefs commit
        # built here from the statement (never sent as a pack).
        sizes = sorted(f.stat().st_size for f in set((path_b / "objects" / "pack").glob("*.pack")) - packs)
        mirror_packs = set((mirror / "objects" / "pack").glob("*.pack"))
        started = time.perf_counter()
        git("-c", "fetch.unpackLimit=1", "-C", str(mirror), "fetch", "--quiet", "origin", new)
        git_took = time.perf_counter() - started
        git_sizes = [f.stat().st_size for f in set((mirror / "objects" / "pack").glob("*.pack")) - mirror_packs]
        statement = len(p.repos_a.show(p.rid).namespaces[p.a.peer_id].signed.encode())
        print(
            f"one-commit fetch: guts {took:.3f} s, fetched pack {sizes[0]} bytes (statement {statement} bytes, "
            f"sigrefs pack built here {sizes[1]} bytes); git fetch of the commit {git_took:.3f} s, "
            f"pack {git_sizes[0]} bytes"
        )
        assert len(sizes) == 2 and len(git_sizes) == 1
        assert sizes[0] <= git_sizes[0] + 64


async def test_fetch_of_a_repository_the_peer_lacks(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source) as p:
        missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(SyncRefused) as info:
            await fetch(p.b, p.repos_b, p.a.peer_id, missing)
        assert info.value.reason is RefusedReason.NOT_FOUND
        assert await p.repos_b.storage.list() == []
        # Logged, naming the peer, but not as a warning: lacking a
        # repository is no offence.
        lines = [r for r in caplog.records if r.name == LOGGER and str(p.a.peer_id) in r.getMessage()]
        assert lines and all(r.levelno == logging.INFO for r in lines)


# -- bad input -----------------------------------------------------------------------


def tamper(refs: Refs, statement: bytes) -> Refs:
    return replace(refs, statements=(statement,))


class Serving(SyncService):
    """A's service, with ``refs`` served instead of the real answer when set."""

    refs: Refs | None = None

    async def _refs(self, rid: str) -> Refs | Refused:  # type: ignore[override]
        real = await super()._refs(rid)
        return real if self.refs is None or not isinstance(real, Refs) else self.refs


async def served(p: Pair) -> Refs:
    real = await SyncService._refs(p.service, p.rid)
    assert isinstance(real, Refs)
    return real


def service_of(p: Pair) -> Serving:
    assert isinstance(p.service, Serving)
    return p.service


async def test_a_bad_signature_changes_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    from guts.repo import _codec as repo_codec

    async with pair(tmp_path, source, service=Serving) as p:
        refs = await served(p)
        signed = SignedStatement.decode(refs.statements[0])
        bad = repo_codec.encode_signed_refs(signed.statement.canonical, bytes(64))
        service_of(p).refs = tamper(refs, bad)
        with pytest.raises(InvalidRefs, match="bad signature"):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []
        assert any(str(p.a.peer_id) in line and "bad signature" in line for line in warnings(caplog))


async def test_a_statement_on_a_foreign_identity_changes_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement validly signed by its namespace's key, but standing on an
    identity revision that is not this repository's, is refused."""
    from guts.repo.sigrefs import sign_statement

    async with pair(tmp_path, source, service=Serving) as p:
        refs = await served(p)
        signed = SignedStatement.decode(refs.statements[0])
        foreign = sign_statement(p.a.keypair, replace(signed.statement, identity=bytes(range(32))))
        service_of(p).refs = tamper(refs, foreign.encode())
        with pytest.raises(InvalidRefs, match="no revision of this repository"):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []
        assert any(str(p.a.peer_id) in line and "identity" in line for line in warnings(caplog))


async def test_a_server_stops_an_upload_past_its_pack_limit(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    from guts.errors import GutsError
    from guts.repo.storage import StorageConfig

    async with pair(tmp_path, source) as p:
        p.repos_a.storage.config = StorageConfig(max_pack_bytes=64 * 1024)
        with pytest.raises(GutsError):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []
        assert any(str(p.b.peer_id) in line and "stopped past 65536 bytes" in line for line in warnings(caplog))


async def test_a_stale_statement_is_left_out_and_changes_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source, service=Serving) as p:
        old = await served(p)
        new = add_commit(p, "newer")
        refs = dict(p.repos_a.show(p.rid).namespaces[p.a.peer_id].statement.refs)
        await p.repos_a.publish(p.rid, p.a.keypair, {**refs, "refs/heads/main": new})
        await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        path_b = p.repos_b.storage.path(p.rid)
        before = refs_of(path_b)
        held = p.repos_b.show(p.rid)
        service_of(p).refs = old
        # A peer behind on a namespace is no offence: ours stays, quietly.
        with caplog.at_level(logging.INFO):
            assert await fetch(p.b, p.repos_b, p.a.peer_id, p.rid) == held
        assert refs_of(path_b) == before
        assert not warnings(caplog)
        assert any("older statement" in r.getMessage() for r in caplog.records)


class MissingObject(SyncService):
    """Answers every fetch with a pack of one wanted commit alone (its tree
    missing: fetch-pack's index-pack refuses it), or with the whole history
    of ``main~10`` (complete, but the wanted tips are missing: the
    connectivity check refuses it)."""

    whole = False

    async def _objects(self, peer, stream, messages, request):  # type: ignore[no-untyped-def]
        if b"command=fetch" not in request.request:
            return await super()._objects(peer, stream, messages, request)
        wants = [oid.decode() for oid in re.findall(rb"want ([0-9a-f]{40})", request.request)]
        path = self.repos.storage.path(request.rid)
        if self.whole:
            pack = repo_pack(path, [git_text("rev-parse", "refs/heads/main~10", git_dir=path)])
        else:
            pack = pack_objects(path, [git_text("rev-parse", f"{w}^{{commit}}", git_dir=path) for w in wants[:1]])
        await messages.send(encode_response(Objects()))
        await stream.send_all(encode_line(b"packfile") + encode_sideband(Band.PACK, pack) + b"0000")
        await stream.send_eof()


async def test_a_pack_missing_an_object_changes_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source, service=MissingObject) as p:
        with pytest.raises(PackRejected, match="fetch-pack"):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []
        assert any(str(p.a.peer_id) in line and "fetch-pack" in line for line in warnings(caplog))
        p.service.whole = True  # type: ignore[attr-defined]
        with pytest.raises(NotConnected):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []
        assert any(str(p.a.peer_id) in line and "missing" in line for line in warnings(caplog))


class ShallowHistory(SyncService):
    """Answers every fetch with everything the wants reach but the root
    commit, and a ``shallow-info`` section naming the root's child: a
    shallow peer's answer. fetch-pack then hands index-pack a shallow file,
    and index-pack --strict takes the child without its parent."""

    async def _objects(self, peer, stream, messages, request):  # type: ignore[no-untyped-def]
        if b"command=fetch" not in request.request:
            return await super()._objects(peer, stream, messages, request)
        wants = [oid.decode() for oid in re.findall(rb"want ([0-9a-f]{40})", request.request)]
        path = self.repos.storage.path(request.rid)
        listing = git_text("rev-list", "--objects", *wants, git_dir=path).splitlines()
        root = git_text("rev-list", "--max-parents=0", "refs/heads/main", git_dir=path)
        child = git_text("rev-list", "--reverse", "--ancestry-path", f"{root}..refs/heads/main", git_dir=path)
        objects = [line.split()[0] for line in listing if line.split()[0] != root]
        answer = encode_line(b"shallow-info") + encode_line(b"shallow " + child.split()[0].encode()) + b"0001"
        answer += encode_line(b"packfile") + encode_sideband(Band.PACK, pack_objects(path, objects)) + b"0000"
        await messages.send(encode_response(Objects()))
        await stream.send_all(answer)
        await stream.send_eof()


async def test_a_shallow_answer_changes_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source, service=ShallowHistory) as p:
        with pytest.raises(SyncError, match="shallow-info"):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []
        assert any(str(p.a.peer_id) in line and "shallow-info" in line for line in warnings(caplog))


async def test_a_want_no_statement_lists_is_refused(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source) as p:
        path_a = p.repos_a.storage.path(p.rid)
        unlisted = git_text("rev-parse", "refs/heads/main~5", git_dir=path_a)
        identity = refs_of(path_a)[IDENTITY_REF]
        for oid in (unlisted, identity):
            request = b"".join(encode_line(x) for x in (b"command=fetch", b"object-format=sha1")) + b"0001"
            request += encode_line(b"want " + oid.encode()) + encode_line(b"done") + b"0000"
            stream = await p.b.new_stream(p.a.peer_id, [SYNC_PROTOCOL])
            async with stream:
                await stream.send_all(encode_length_prefixed(encode_request(GetObjects(p.rid, request))))
                answer = await MessageStream(stream, 1 << 20).receive()
            assert answer is not None
            response = decode_response(answer, SyncConfig())
            assert isinstance(response, Refused) and response.reason is RefusedReason.BAD_REQUEST
            assert "no signed statement lists it" in response.message
        assert any(str(p.b.peer_id) in line and unlisted in line for line in warnings(caplog))
        # A keeps serving.
        await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)


class Stalling(SyncService):
    """Answers GetRefs, then stalls in the middle of the first pack."""

    async def _objects(self, peer, stream, messages, request):  # type: ignore[no-untyped-def]
        if b"command=fetch" not in request.request:
            return await super()._objects(peer, stream, messages, request)
        await messages.send(encode_response(Objects()))
        await stream.send_all(encode_line(b"packfile") + encode_sideband(Band.PACK, b"PACK\0\0\0\2"))
        await trio.sleep_forever()


async def test_a_stalled_peer_changes_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    config = SyncConfig(idle_timeout=0.5)
    async with pair(tmp_path, source, config, service=Stalling) as p:
        started = time.perf_counter()
        with pytest.raises(SyncStalled):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid, config)
        assert time.perf_counter() - started < 5
        assert await p.repos_b.storage.list() == []
        assert any(str(p.a.peer_id) in line and "nothing for" in line for line in warnings(caplog))


class Dying(SyncService):
    """Answers GetRefs, then hangs up the whole connection in the middle of
    the first pack (a peer killed mid-transfer)."""

    async def _objects(self, peer, stream, messages, request):  # type: ignore[no-untyped-def]
        if b"command=fetch" not in request.request:
            return await super()._objects(peer, stream, messages, request)
        await messages.send(encode_response(Objects()))
        await stream.send_all(encode_line(b"packfile") + encode_sideband(Band.PACK, b"PACK\0\0\0\2"))
        for connection in list(self.host.connections):
            if connection.peer_id == peer:
                await connection.aclose()


async def test_a_peer_that_dies_mid_pack_is_a_sync_error_and_changes_nothing(tmp_path: Path, source: History) -> None:
    async with pair(tmp_path, source, service=Dying) as p:
        with pytest.raises(SyncError, match="connection to the peer broke"):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert await p.repos_b.storage.list() == []


async def test_packs_over_the_limit_change_nothing(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source) as p:
        limited = replace(p.repos_b.storage.config, max_pack_bytes=20_000)
        small = await Repositories.open(tmp_path / "small", replace(p.repos_b.config, storage=limited))
        with pytest.raises(PackRejected, match="over the pack limit"):
            await fetch(p.b, small, p.a.peer_id, p.rid)
        assert await small.storage.list() == []
        assert any(str(p.a.peer_id) in line and "limit" in line for line in warnings(caplog))


async def test_garbage_requests_are_refused_and_a_keeps_serving(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source) as p:
        for junk in (b"\x05junk!", encode_length_prefixed(b"\xff\xff\xff"), b"\xff" * 12):
            stream = await p.b.new_stream(p.a.peer_id, [SYNC_PROTOCOL])
            async with stream:
                await stream.send_all(junk)
                await stream.send_eof()
                assert await stream.receive_some() == b""
        assert any(str(p.b.peer_id) in line for line in warnings(caplog))
        lines = len(warnings(caplog))
        state = await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert state.canonical.ref_map() == p.repos_a.show(p.rid).canonical.ref_map()
        assert len(warnings(caplog)) == lines


async def test_identity_chains_extend_fork_and_lack_signatures(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(tmp_path, source, service=Serving) as p:
        await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        real = await served(p)
        rid = p.repos_a.show(p.rid).rid
        head = p.repos_a.show(p.rid).identity
        genesis = real.identity[0]
        path_b = p.repos_b.storage.path(p.rid)

        unsigned = propose_revision(head, description="unsigned")
        service_of(p).refs = replace(real, identity=(genesis, unsigned.encode()))
        before = refs_of(path_b)
        with pytest.raises(InvalidIdentity):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert refs_of(path_b) == before
        assert any(str(p.a.peer_id) in line for line in warnings(caplog))

        second = sign_revision(propose_revision(head, description="second"), p.a.keypair, rid)
        service_of(p).refs = replace(real, identity=(genesis, second.encode()))
        state = await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert state.identity.length == 2 and state.document.description == "second"
        assert refs_of(path_b)[IDENTITY_REF] != before[IDENTITY_REF]
        assert (await Repositories.open(tmp_path / "b")).show(p.rid).identity.length == 2

        service_of(p).refs = real  # the genesis alone: a prefix of ours, nothing to do
        assert await fetch(p.b, p.repos_b, p.a.peer_id, p.rid) == state

        fork = sign_revision(propose_revision(head, description="fork"), p.a.keypair, rid)
        service_of(p).refs = replace(real, identity=(genesis, fork.encode()))
        after = refs_of(path_b)
        with pytest.raises(InvalidIdentity, match="forks"):
            await fetch(p.b, p.repos_b, p.a.peer_id, p.rid)
        assert refs_of(path_b) == after


async def test_namespaces_past_the_limit_are_left_out(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """A repository with the delegate's namespace and three contributors';
    B keeps two namespaces: the delegate's, always, and the contributor
    whose peer id sorts first; the others are left out with a warning, and
    a later fetch keeps the same."""
    contributors = sorted((KeyPair.generate() for _ in range(3)), key=lambda k: str(k.peer_id))
    async with memory_hosts(2) as (a, b):
        repos_a = await Repositories.open(tmp_path / "a")
        repos_b = await Repositories.open(tmp_path / "b", RepositoriesConfig(max_namespaces=2))
        state = await repos_a.init(source.path.parent, keypair=a.keypair)
        rid = str(state.rid)
        main = state.canonical.ref_map()["refs/heads/main"]
        for contributor in contributors:
            await repos_a.publish(rid, contributor, {"refs/heads/main": main})
        SyncService(a, repos_a)
        await b.connect(full_addr(a))
        with caplog.at_level(logging.WARNING):
            got = await fetch(b, repos_b, a.peer_id, rid)
        assert set(got.namespaces) == {a.peer_id, contributors[0].peer_id}
        assert any("2 new namespace(s) left out, past the limit of 2" in r.getMessage() for r in caplog.records)
        assert set((await fetch(b, repos_b, a.peer_id, rid)).namespaces) == {a.peer_id, contributors[0].peer_id}
        fsck(repos_b.storage.path(rid))


async def test_a_seed_that_lies_is_refused_and_the_next_one_serves(tmp_path: Path, source: History) -> None:
    """C asks two seeds of A's repository in turn (a race of width 1;
    tests/test_sync_race.py races them): M, which holds a copy but serves
    a statement whose signature it broke, then A. M's answer is refused
    with the reason, nothing of it stays, and C gets A's state."""
    from guts.control._repo_sync import sync_answer
    from guts.control.repo import state_json
    from guts.repo import _codec as repo_codec

    async with memory_hosts(3) as (a, m, c):
        repos_a, repos_m, repos_c = [await Repositories.open(tmp_path / n) for n in "amc"]
        state = await repos_a.init(source.path.parent, keypair=a.keypair)
        rid = str(state.rid)
        SyncService(a, repos_a)
        liar = Serving(m, repos_m)
        for host in (m, c):
            await host.connect(full_addr(a))
        await c.connect(full_addr(m))
        await fetch(m, repos_m, a.peer_id, rid)  # M holds a true copy
        refs = await SyncService._refs(liar, rid)
        assert isinstance(refs, Refs)
        signed = SignedStatement.decode(refs.statements[0])
        liar.refs = tamper(refs, repo_codec.encode_signed_refs(signed.statement.canonical, bytes(64)))
        answer = await sync_answer(c, repos_c, rid, [m.peer_id, a.peer_id], SyncConfig(), state_json, width=1)
        assert answer["peer"] == str(a.peer_id) and answer["changed"] is True
        [failure] = answer["failures"]
        assert failure["peer"] == str(m.peer_id) and "bad signature" in failure["error"]
        assert answer["repository"]["refs"] == dict(state.canonical.refs)
        fsck(repos_c.storage.path(rid))
