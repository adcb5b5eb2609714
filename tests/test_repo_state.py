"""guts.repo.state against real git: init from a person's repository (a
history with branches, merges, lightweight and annotated tags), the
layout it leaves, publishing, divergence, the repair of refs moved by hand
at open, tampered signed state, and every refusal of init."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from guts.crypto import KeyPair
from guts.errors import InputError, InvalidRid
from guts.repo.identity import SignedRevision
from guts.repo.layout import IDENTITY_REF, GitObject, encode_pack, sigrefs_ref
from guts.repo.revisions import verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, sign_statement
from guts.repo.state import BrokenRepository, Repositories
from guts.repo.storage import NotConnected, PackRejected, RepositoryExists, RepositoryNotFound, StorageError

from .repo_helpers import History, add_corrupt_commit, build_history, git, git_text, init_bare, make_rid, refs_of

K1, K2, K3 = (KeyPair.from_seed(bytes([n]) * 32) for n in (1, 2, 3))
LOGGER = "guts.repo.state"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A work tree ``project`` whose history has 1,100 commits on main,
    topic branches (merged, and two open), a release branch, a lightweight
    tag (v1) and an annotated one (v2)."""
    work_tree = tmp_path_factory.mktemp("source") / "project"
    git("init", "--quiet", "--initial-branch=main", str(work_tree))
    return build_history(work_tree / ".git", commits=1100, topic_every=150)


@pytest.fixture
async def repos(tmp_path: Path) -> Repositories:
    return await Repositories.open(tmp_path / "storage")


def work_tree(source: History) -> Path:
    return source.path.parent


def namespace(key: KeyPair) -> str:
    return f"refs/guts/{key.peer_id}/"


def layout_refs(source_refs: dict[str, str], key: KeyPair) -> dict[str, str]:
    """The canonical and namespace refs that init of ``source_refs`` makes."""
    return {**source_refs, **{namespace(key) + name[len("refs/"):]: oid for name, oid in source_refs.items()}}


def fsck(path: Path) -> None:
    git("fsck", "--strict", "--no-dangling", "--no-progress", git_dir=path)


# -- init --------------------------------------------------------------------------


async def test_init_leaves_the_layout(repos: Repositories, source: History) -> None:
    assert "refs/tags/v1" in source.refs and "refs/tags/v2" in source.refs
    state = await repos.init(work_tree(source), keypair=K1)
    rid = str(state.rid)
    path = repos.storage.path(rid)
    fsck(path)
    refs = refs_of(path)
    sigrefs = sigrefs_ref(K1.peer_id)
    assert refs == {**layout_refs(source.refs, K1), IDENTITY_REF: state.identity_commit, sigrefs: refs[sigrefs]}
    assert git_text("symbolic-ref", "HEAD", git_dir=path) == "refs/heads/main"
    # A new repository's refs are one packed-refs file, as a clone's are.
    assert [p for p in (path / "refs").rglob("*") if p.is_file()] == []
    lines = (path / "packed-refs").read_text().splitlines()
    assert len(lines) == 1 + len(refs) + 2  # the header, the refs, v2 peeled (canonical and in the namespace)
    assert git_text("cat-file", "-t", source.refs["refs/tags/v2"], git_dir=path) == "tag"  # the tag itself came
    assert git_text("rev-list", "--count", "--branches", "--tags", git_dir=path) == git_text(
        "rev-list", "--count", "--all", git_dir=source.path
    )
    # The statement verifies and lists exactly the person's branches and tags.
    text = git("cat-file", "blob", f"{sigrefs}:statement", git_dir=path)
    signed = SignedStatement(Statement.parse(text), git("cat-file", "blob", f"{sigrefs}:signature", git_dir=path))
    statement = signed.statement
    assert (statement.rid, statement.signer, statement.seq, statement.parent) == (state.rid, K1.peer_id, 1, None)
    assert statement.ref_map() == source.refs
    # The identity verifies, and the RID is its genesis's.
    revision = SignedRevision.decode(git("cat-file", "blob", f"{IDENTITY_REF}:revision", git_dir=path))
    head = verify_chain(state.rid, [revision])
    assert Rid.of_genesis(revision.document.raw) == state.rid
    assert (head.current.name, head.current.default_branch, head.threshold) == ("project", "main", 1)
    assert head.delegate_ids == (K1.peer_id,) and statement.identity == head.current.digest
    assert git_text("log", "--format=%an <%ae> %at %s", sigrefs, git_dir=path) == (
        "Guts <guts@invalid> 1 guts signed refs: seq 1"
    )
    # What the node holds in memory.
    assert state.canonical.ref_map() == source.refs and not state.canonical.divergences
    assert state.identity.length == 1 and state.document.name == "project"
    assert list(state.namespaces) == [K1.peer_id] and not state.refused
    assert len(repos) == 1 and repos.list() == [state]
    assert repos.show(rid) is state and repos.show(state.rid) is state
    assert await repos.load(rid) == state


async def test_repositories_persist_across_opens(tmp_path: Path, source: History) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    one = await repos.init(work_tree(source), keypair=K1)
    two = await repos.init(source.path, keypair=K1, name="second", description="the same history, bare-ish\nline 2")
    assert one.rid != two.rid and two.document.description.endswith("line 2")
    again = await Repositories.open(tmp_path / "storage")
    assert again.list() == sorted([one, two], key=lambda s: str(s.rid))
    assert again.show(one.rid) == one


async def test_show_refuses_what_it_does_not_hold(repos: Repositories) -> None:
    with pytest.raises(RepositoryNotFound):
        repos.show(make_rid("nothing here"))
    with pytest.raises(InvalidRid):
        repos.show("../../etc")
    with pytest.raises(RepositoryNotFound):
        await repos.load(make_rid("nothing here"))


async def test_init_from_a_subdirectory_and_a_bare_repository(tmp_path: Path, source: History) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    inner = work_tree(source) / "src" / "deep"
    inner.mkdir(parents=True, exist_ok=True)
    assert (await repos.init(inner, keypair=K1)).document.name == "project"
    bare = build_history(init_bare(tmp_path / "tool.git"), commits=30, topic_every=10)
    git("symbolic-ref", "HEAD", "refs/heads/release", git_dir=bare.path)
    state = await repos.init(bare.path, keypair=K1)
    assert (state.document.name, state.document.default_branch) == ("tool", "release")
    assert git_text("symbolic-ref", "HEAD", git_dir=repos.storage.path(str(state.rid))) == "refs/heads/release"


async def test_init_with_delegates(repos: Repositories, source: History) -> None:
    state = await repos.init(
        work_tree(source), keypair=K1, name="team", delegates=[str(K2.peer_id), K3.peer_id, K1.peer_id], threshold=2
    )
    assert state.identity.delegate_ids == (K1.peer_id, K2.peer_id, K3.peer_id) and state.identity.threshold == 2
    # One signature of three: nothing is canonical yet, and nothing diverged.
    assert state.canonical.refs == () and state.canonical.divergences == ()
    refs = refs_of(repos.storage.path(str(state.rid)))
    assert not any(name.startswith(("refs/heads/", "refs/tags/")) for name in refs)
    assert refs[namespace(K1) + "heads/main"] == source.refs["refs/heads/main"]
    after = await repos.publish(state.rid, K2, {"refs/heads/main": source.refs["refs/heads/main"]})
    assert after.canonical.ref_map() == {"refs/heads/main": source.refs["refs/heads/main"]}
    assert refs_of(repos.storage.path(str(state.rid)))["refs/heads/main"] == source.refs["refs/heads/main"]


# -- refusals ----------------------------------------------------------------------


async def refused(repos: Repositories, path: Path | str, match: str, **kwargs: object) -> None:
    with pytest.raises(InputError, match=match):
        await repos.init(path, keypair=K1, **kwargs)  # type: ignore[arg-type]
    assert await repos.storage.list() == []
    assert [p.name for p in repos.storage.root.iterdir()] == []


async def test_init_refuses_what_is_not_a_repository(repos: Repositories, tmp_path: Path) -> None:
    await refused(repos, "relative/path", "must be absolute")
    await refused(repos, tmp_path / "missing", "no such directory")
    await refused(repos, "/" + "x" * 5000, "1 to 4096 bytes")
    (tmp_path / "plain").mkdir()
    await refused(repos, tmp_path / "plain", r"not a git repository: run `git init`")
    git("init", "--quiet", str(tmp_path / "empty"))
    await refused(repos, tmp_path / "empty", r"no branch yet: commit something first")


async def test_init_refuses_bad_fields(repos: Repositories, source: History) -> None:
    where = work_tree(source)
    await refused(repos, where, "'nope' is not a branch", default_branch="nope")
    await refused(repos, where, "threshold is 2", threshold=2)
    await refused(repos, where, "peer id", delegates=["not a peer id"])
    await refused(repos, where, "character", name="bad\x1bname")
    await refused(repos, where, "description is longer", description="x" * 5000)
    await refused(repos, where, "name is longer", name="n" * 300)


async def test_init_refuses_refs_peers_would_refuse(repos: Repositories, tmp_path: Path) -> None:
    bad = build_history(init_bare(tmp_path / "bad.git"), commits=60, topic_every=100)
    git("update-ref", "refs/heads/-x", bad.refs["refs/heads/main"], git_dir=bad.path)
    await refused(repos, bad.path, "begin with '-'.*rename that branch or tag")


async def test_init_twice_makes_two_repositories(repos: Repositories, source: History) -> None:
    # Each genesis draws its own nonce: the same repository, name and
    # delegates made twice are two repositories with two RIDs.
    first = await repos.init(work_tree(source), keypair=K1)
    second = await repos.init(work_tree(source), keypair=K1)
    assert first.rid != second.rid and first.document.nonce != second.document.nonce
    assert first.document == replace(second.document, nonce=first.document.nonce)
    assert repos.list() == sorted([first, second], key=lambda state: str(state.rid))
    assert refs_of(repos.storage.path(str(first.rid))).keys() == refs_of(repos.storage.path(str(second.rid))).keys()


async def test_init_refuses_a_rid_it_holds(
    repos: Repositories, source: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a random source that repeats itself gives a RID twice; the
    # repository that holds it is left as it was.
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(n)))
    state = await repos.init(work_tree(source), keypair=K1)
    assert state.document.nonce == bytes(range(16))
    before = refs_of(repos.storage.path(str(state.rid)))
    with pytest.raises(RepositoryExists, match="on this node already.*random"):
        await repos.init(work_tree(source), keypair=K1)
    assert refs_of(repos.storage.path(str(state.rid))) == before and repos.list() == [state]


async def test_a_refused_pack_leaves_no_repository(repos: Repositories, tmp_path: Path) -> None:
    bad = build_history(init_bare(tmp_path / "corrupt.git"), commits=60, topic_every=100)
    add_corrupt_commit(bad.path, "duplicate")
    with pytest.raises(PackRejected):
        await repos.init(bad.path, keypair=K1)
    assert await repos.storage.list() == [] and list(repos.storage.root.iterdir()) == []
    assert len(repos) == 0


# -- publishing --------------------------------------------------------------------


async def test_publish_chains_statements_and_moves_canonical_refs(repos: Repositories, source: History) -> None:
    state = await repos.init(work_tree(source), keypair=K1)
    path = repos.storage.path(str(state.rid))
    first = state.namespaces[K1.peer_id]
    release = source.refs["refs/heads/release"]
    wanted = {**source.refs, "refs/heads/feature": release}
    del wanted["refs/tags/v1"]
    after = await repos.publish(state.rid, K1, wanted)
    ours = after.namespaces[K1.peer_id]
    assert (ours.statement.seq, ours.statement.parent) == (2, first.statement.id)
    assert git_text("rev-parse", f"{sigrefs_ref(K1.peer_id)}^", git_dir=path) == first.commit
    assert after.canonical.ref_map() == wanted
    assert refs_of(path) == {
        **layout_refs(wanted, K1), IDENTITY_REF: state.identity_commit, sigrefs_ref(K1.peer_id): ours.commit
    }  # fmt: skip
    assert await repos.load(state.rid) == after
    # A contributor's statement lands in its namespace, never in the canonical refs.
    contributed = await repos.publish(state.rid, K3, {"refs/heads/main": release})
    assert contributed.canonical == after.canonical
    assert refs_of(path)[namespace(K3) + "heads/main"] == release
    assert refs_of(path)["refs/heads/main"] == source.refs["refs/heads/main"]
    fsck(path)
    # A statement naming a missing object changes nothing.
    before = refs_of(path)
    with pytest.raises(NotConnected):
        await repos.publish(state.rid, K1, {"refs/heads/main": "1" * 40})
    with pytest.raises(InputError):
        await repos.publish(state.rid, K1, {"refs/heads/a..b": release})
    assert refs_of(path) == before and repos.show(state.rid) == contributed


async def test_concurrent_publishes_serialize(repos: Repositories, source: History) -> None:
    state = await repos.init(work_tree(source), keypair=K1)
    main = source.refs["refs/heads/main"]
    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(repos.publish, state.rid, K1, {**source.refs, f"refs/heads/p{i}": main})
    final = repos.show(state.rid)
    assert final.namespaces[K1.peer_id].statement.seq == 6
    assert await repos.load(state.rid) == final
    path = repos.storage.path(str(state.rid))
    assert git_text("rev-list", "--count", sigrefs_ref(K1.peer_id), git_dir=path) == "6"


async def test_diverged_delegates_keep_the_ref(tmp_path: Path, source: History) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    state = await repos.init(work_tree(source), keypair=K1, delegates=[str(K2.peer_id)])
    main, release = source.refs["refs/heads/main"], source.refs["refs/heads/release"]
    # release does not descend from main, nor main from release.
    after = await repos.publish(state.rid, K2, {"refs/heads/main": release})
    [divergence] = after.canonical.divergences
    assert (divergence.ref, divergence.kept) == ("refs/heads/main", main)
    assert {c.oid for c in divergence.candidates} == {main, release}
    assert after.canonical.ref_map()["refs/heads/main"] == main
    # After a restart the kept value is still covered by a signature.
    again = await Repositories.open(tmp_path / "storage")
    assert again.show(state.rid).canonical == after.canonical
    # K2 coming back to main resolves it.
    agreed = await repos.publish(state.rid, K2, {"refs/heads/main": main})
    assert agreed.canonical.divergences == () and agreed.canonical.ref_map()["refs/heads/main"] == main


# -- repair at open ----------------------------------------------------------------


async def test_refs_moved_by_hand_are_repaired_at_open(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    state = await repos.init(work_tree(source), keypair=K1)
    path = repos.storage.path(str(state.rid))
    good = refs_of(path)
    older = git_text("rev-parse", "refs/heads/main~3", git_dir=path)
    moved = {
        "refs/heads/main": older,  # moved back
        namespace(K1) + "heads/release": None,  # deleted
        "refs/tags/v1": None,
        "refs/heads/evil": older,  # no signature covers these
        namespace(K1) + "heads/evil": older,
        "refs/notes/commits": older,
        "refs/guts/stray": older,
    }
    for name, oid in moved.items():
        git("update-ref", *((name, oid) if oid else ("-d", name)), git_dir=path)
    git("symbolic-ref", "HEAD", "refs/heads/release", git_dir=path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = await Repositories.open(tmp_path / "storage")
    assert refs_of(path) == good
    assert git_text("symbolic-ref", "HEAD", git_dir=path) == "refs/heads/main"
    assert again.show(state.rid) == state
    warned = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    for name in moved:
        assert any(f"ref {name} was" in message for message in warned), (name, warned)
    fsck(path)
    # Nothing differs any more: a second open repairs nothing.
    caplog.clear()
    await Repositories.open(tmp_path / "storage")
    assert not [r for r in caplog.records if r.name == LOGGER]


def write_objects(path: Path, objects: list[GitObject]) -> None:
    git("index-pack", "--stdin", "--strict", git_dir=path, input=encode_pack(objects))


def forged_sigrefs(statement: bytes, signature: bytes, parent: str | None, seq: int) -> list[GitObject]:
    """A sigrefs commit as the layout writes one, for any bytes."""
    blobs = [GitObject("blob", signature), GitObject("blob", statement)]
    entries = zip((b"signature", b"statement"), blobs)
    tree = GitObject("tree", b"".join(b"100644 " + n + b"\0" + bytes.fromhex(b.oid) for n, b in entries))
    ident = f"Guts <guts@invalid> {seq} +0000"
    head = f"tree {tree.oid}\n" + (f"parent {parent}\n" if parent else "")
    commit = GitObject("commit", f"{head}author {ident}\ncommitter {ident}\n\nguts signed refs: seq {seq}\n".encode())
    return [*blobs, tree, commit]


@pytest.mark.parametrize("forgery", ["bad signature", "another signer", "not the layout", "wrong parent"])
async def test_tampered_sigrefs_are_refused_at_open(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture, forgery: str
) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    state = await repos.init(work_tree(source), keypair=K1)
    await repos.publish(state.rid, K3, {"refs/heads/fix": source.refs["refs/heads/release"]})
    path = repos.storage.path(str(state.rid))
    ours = state.namespaces[K1.peer_id]
    evil = {"refs/heads/main": source.refs["refs/heads/release"]}

    def forge(previous: Statement | None, key: KeyPair) -> Statement:
        return next_statement(previous, rid=state.rid, signer=key.peer_id, identity=state.document, refs=evil.items())

    if forgery == "bad signature":
        objects = forged_sigrefs(forge(ours.statement, K1).canonical, bytes(64), ours.commit, 2)
    elif forgery == "another signer":  # K2 signs a statement and puts it in K1's namespace
        signed = sign_statement(K2, forge(None, K2))
        objects = forged_sigrefs(signed.statement.canonical, signed.signature, None, 1)
    elif forgery == "not the layout":  # a valid statement in a commit the layout would not write (its date)
        signed = sign_statement(K1, forge(ours.statement, K1))
        objects = forged_sigrefs(signed.statement.canonical, signed.signature, ours.commit, 3)
    else:  # seq 2 whose parent commit is not seq 1's
        signed = sign_statement(K1, forge(ours.statement, K1))
        objects = forged_sigrefs(signed.statement.canonical, signed.signature, state.identity_commit, 2)
    write_objects(path, objects)
    git("update-ref", sigrefs_ref(K1.peer_id), objects[-1].oid, git_dir=path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = await Repositories.open(tmp_path / "storage")
    loaded = again.show(state.rid)
    assert K1.peer_id in loaded.refused and K1.peer_id not in loaded.namespaces
    assert K3.peer_id in loaded.namespaces
    refs = refs_of(path)
    # No valid signature covers the canonical refs or our namespace's any more; the sigrefs stay as evidence.
    assert refs[sigrefs_ref(K1.peer_id)] == objects[-1].oid
    assert not any(n.startswith(("refs/heads/", "refs/tags/", namespace(K1) + "heads/")) for n in refs)
    assert refs[namespace(K3) + "heads/fix"] == source.refs["refs/heads/release"]
    assert any("does not verify" in r.getMessage() for r in caplog.records if r.name == LOGGER)


async def test_an_unfinished_repository_is_removed_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    rid = make_rid("unfinished")
    await repos.storage.create(rid)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = await Repositories.open(tmp_path / "storage")
    assert len(again) == 0 and await again.storage.list() == []
    assert any("never finished" in r.getMessage() for r in caplog.records)


async def test_a_broken_identity_is_not_served(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    state = await repos.init(work_tree(source), keypair=K1)
    path = repos.storage.path(str(state.rid))
    git("update-ref", IDENTITY_REF, state.namespaces[K1.peer_id].commit, git_dir=path)
    before = refs_of(path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = await Repositories.open(tmp_path / "storage")
    assert len(again) == 0 and refs_of(path) == before
    assert any("is not served" in r.getMessage() for r in caplog.records)
    with pytest.raises(BrokenRepository):
        await again.load(state.rid)


async def test_the_identity_chain_is_read_once_per_head(repos: Repositories, source: History) -> None:
    state = await repos.init(work_tree(source), keypair=K1)
    reads = 0
    objects = repos.storage.objects

    def counted(key: str) -> Any:
        nonlocal reads
        reads += 1
        return objects(key)

    setattr(repos.storage, "objects", counted)
    first = await repos.revisions(state.rid)
    assert [r.document.name for r in first] == ["project"] and reads == 1
    first.clear()  # the caller's copy
    assert len(await repos.revisions(state.rid)) == 1 and reads == 1  # from memory
    await repos.propose(state.rid, K1, name="renamed")  # threshold 1: adopted at once
    chain = await repos.revisions(state.rid)
    assert [r.document.name for r in chain] == ["project", "renamed"] and reads == 2
    verify_chain(state.rid, chain)


# -- the storage additions init uses ---------------------------------------------------


async def test_object_reader(repos: Repositories, source: History) -> None:
    state = await repos.init(work_tree(source), keypair=K1)
    async with repos.storage.objects(str(state.rid)) as reader:
        found = await reader.read(state.identity_commit)
        assert found is not None and found[:2] == (state.identity_commit, "commit")
        assert await reader.read("1" * 40) is None
        assert await reader.read(f"{state.identity_commit}:nothing") is None
        revision = await reader.read(f"{state.identity_commit}:revision")
        assert revision is not None and SignedRevision.decode(revision[2]).document == state.document
        with pytest.raises(StorageError):
            await reader.read("a\nb")
    with pytest.raises(StorageError, match="limit"):
        async with repos.storage.objects(str(state.rid)) as reader:
            await reader.read(state.identity_commit, max_size=10)
