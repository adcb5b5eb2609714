"""guts.repo.storage against real git: quarantined pack ingestion, the
connectivity check, migration, ref transactions, crash leftovers, and
upload-pack for serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from guts.errors import InvalidRid
from guts.repo import _quarantine
from guts.repo._objdir import unlisted
from guts.repo._git import GitProcess, git_env, open_git
from guts.repo.storage import (
    InvalidRefName,
    NotConnected,
    PackRejected,
    RefUpdate,
    RefUpdateRejected,
    RepositoryExists,
    RepositoryNotFound,
    Storage,
    StorageError,
)

from .repo_helpers import (
    History,
    Messy,
    add_corrupt_commit,
    build_history,
    build_messy,
    git,
    git_text,
    init_bare,
    make_rid,
    objects_of,
    pack,
    pack_objects,
    random_blobs,
)

RID = make_rid("storage tests")
RID2 = make_rid("storage tests, a second repository")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(init_bare(tmp_path_factory.mktemp("history") / "h.git"))


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Messy:
    return build_messy(tmp_path_factory.mktemp("messy") / "m.git")


@pytest.fixture
async def storage(tmp_path: Path) -> Storage:
    return await Storage.open(tmp_path / "storage")


async def chunks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def stdout_chunks(source: GitProcess) -> AsyncIterator[bytes]:
    while chunk := await source.stdout.receive_some(1 << 16):
        yield chunk


async def receive(storage: Storage, rid: str, data: bytes, wanted: list[str], **kwargs: int) -> None:
    """What a sync does: ingest, check, migrate, then move the refs."""
    async with storage.quarantine(rid) as q:
        await q.ingest_pack(chunks(data), **kwargs)
        await q.check_connected(wanted)
        await q.migrate()


def fsck(path: Path) -> str:
    done = subprocess.run(["git", "fsck", "--strict"], capture_output=True, env=git_env({"GIT_DIR": str(path)}))
    assert done.returncode == 0, done.stderr
    return done.stderr.decode()


def quarantines(storage: Storage, rid: str) -> list[Path]:
    return list((storage.path(rid) / "objects").glob("incoming-*"))


async def test_create_list_exists(storage: Storage) -> None:
    assert await storage.list() == [] and not await storage.exists(RID)
    path = await storage.create(RID)
    assert path == storage.path(RID) and await storage.exists(RID)
    assert await storage.list() == [RID]
    assert await storage.refs(RID) == {}
    assert git_text("config", "core.fsync", git_dir=path) == "objects,derived-metadata,reference"
    assert git_text("config", "gc.auto", git_dir=path) == "0"
    assert git_text("config", "receive.fsck.zeroPaddedFilemode", git_dir=path) == "ignore"
    assert git_text("rev-parse", "--is-bare-repository", git_dir=path) == "true"
    assert not (path / "hooks").exists()
    with pytest.raises(RepositoryExists):
        await storage.create(RID)
    assert not list(storage.root.glob(".creating-*"))
    with pytest.raises(RepositoryNotFound):
        await storage.refs(make_rid("absent"))


@pytest.mark.parametrize(
    "rid",
    ["..", "../x", "b../../etc", "/etc", "bafkrei/../../x", "BAFKREI" + "A" * 52, "bafkrei1" + "a" * 51,
     "b" + "a" * 200, "", "bafk rei" + "a" * 51, "bafkrei" + "a" * 51 + "\n", "x" + "a" * 58, "bafkrei"],
)  # fmt: skip
async def test_rid_that_could_leave_the_root_is_refused(storage: Storage, rid: str) -> None:
    with pytest.raises(InvalidRid):
        await storage.create(rid)
    with pytest.raises(InvalidRid):
        await storage.exists(rid)
    with pytest.raises(InvalidRid):
        async with storage.quarantine(rid):
            pass
    assert [p.name for p in storage.root.iterdir()] == []


async def test_full_history_ingested_verified_and_published(storage: Storage, history: History) -> None:
    await storage.create(RID)
    # Streamed straight from a pack-objects process, as a peer would send it.
    revs = "".join(f"{oid}\n" for oid in history.refs.values()).encode()
    async with storage.quarantine(RID) as q:
        async with open_git(["pack-objects", "--revs", "--stdout", "--quiet"], git_dir=history.path) as source:
            await source.stdin.send_all(revs)
            await source.close_stdin()
            await q.ingest_pack(stdout_chunks(source))
        assert not objects_of(storage.path(RID)), "objects outside the quarantine before migrate"
        # A ref cannot name a quarantined object.
        with pytest.raises(RefUpdateRejected):
            await storage.update_refs(RID, [RefUpdate("refs/heads/main", None, history.refs["refs/heads/main"])])
        await q.check_connected(history.refs.values())
        await q.migrate()
    await storage.update_refs(RID, [RefUpdate(name, None, oid) for name, oid in history.refs.items()])
    assert await storage.refs(RID) == history.refs
    tags = {name: oid for name, oid in history.refs.items() if name.startswith("refs/tags/")}
    assert await storage.refs(RID, "refs/tags/") == tags
    assert await storage.resolve(RID, "refs/heads/main") == history.refs["refs/heads/main"]
    assert await storage.resolve(RID, "refs/heads/absent") is None
    assert objects_of(storage.path(RID)) == objects_of(history.path)
    assert git_text("rev-list", "--count", "--all", git_dir=storage.path(RID)) == str(history.commits)
    assert not quarantines(storage, RID)
    fsck(storage.path(RID))
    main, release = history.refs["refs/heads/main"], history.refs["refs/heads/release"]
    assert await storage.is_ancestor(RID, git_text("rev-parse", main + "~5", git_dir=history.path), main)
    assert not await storage.is_ancestor(RID, main, release)
    assert await storage.has_objects(RID, [main, release])
    assert await storage.missing_objects(RID, [main, "1" * 40]) == ["1" * 40]


async def test_legacy_history_accepted(storage: Storage, messy: Messy) -> None:
    await storage.create(RID)
    await receive(storage, RID, pack(messy.path, messy.refs.values()), list(messy.refs.values()))
    await storage.update_refs(RID, [RefUpdate(name, None, oid) for name, oid in messy.refs.items()])
    assert await storage.refs(RID) == messy.refs
    assert b"040000 tree" in git("cat-file", "-p", messy.padded_tree, git_dir=storage.path(RID))
    warnings = fsck(storage.path(RID))
    assert "zeroPaddedFilemode" not in warnings and "badTimezone" not in warnings


@pytest.mark.parametrize("kind", ["duplicate", "dotgit"])
async def test_corrupt_object_refused(storage: Storage, tmp_path: Path, kind: str) -> None:
    source = build_messy(tmp_path / "source.git")
    bad = add_corrupt_commit(source.path, kind)
    await storage.create(RID)
    async with storage.quarantine(RID) as q:
        with pytest.raises(PackRejected, match="fsck error|duplicateEntries|hasDotgit"):
            await q.ingest_pack(chunks(pack(source.path, [bad])))
        with pytest.raises(StorageError, match="only after check_connected"):
            await q.migrate()
    assert not objects_of(storage.path(RID)) and not quarantines(storage, RID)


def refused_pack(history: History, case: str) -> tuple[bytes, list[str], int | None]:
    """A pack a peer might send once we hold ``main~10``: the bytes, the
    oids the refs would name, the byte limit to apply (or the default)."""
    path, main = history.path, history.refs["refs/heads/main"]
    base, parent = (git_text("rev-parse", f"{main}~{n}", git_dir=path) for n in (10, 1))
    if case == "corrupt bytes":
        data = bytearray(pack(path, [main]))
        data[len(data) // 2] ^= 0xFF
        return bytes(data), [main], None
    if case == "truncated":
        data = pack(path, [main])
        return data[: len(data) * 2 // 3], [main], None
    if case == "over the limit":
        return pack(path, [main]), [main], 50_000
    if case == "missing an object":
        listing = git_text("rev-list", "--objects", main, "^" + base, git_dir=path)
        oids = [line.split()[0] for line in listing.splitlines()]
        blob = next(oid for oid in oids if git_text("cat-file", "-t", oid, git_dir=path) == "blob")
        return pack_objects(path, [oid for oid in oids if oid != blob]), [main], None
    if case == "wanted oid not sent":
        return pack(path, [parent], [base]), [main], None
    if case == "thin, base missing":
        return pack(path, [main], [parent], thin=True), [main], None
    assert case == "empty"
    return b"", [main], None


REFUSALS = ["corrupt bytes", "truncated", "over the limit", "missing an object", "wanted oid not sent",
            "thin, base missing", "empty"]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
async def test_refused_pack_leaves_everything_as_it_was(storage: Storage, history: History, case: str) -> None:
    main = history.refs["refs/heads/main"]
    base = git_text("rev-parse", main + "~10", git_dir=history.path)
    await storage.create(RID)
    await receive(storage, RID, pack(history.path, [base]), [base])
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", None, base)])
    before = objects_of(storage.path(RID))
    packs = sorted((storage.path(RID) / "objects" / "pack").iterdir())
    data, wanted, limit = refused_pack(history, case)
    with pytest.raises(PackRejected) as caught:
        async with storage.quarantine(RID) as q:
            await q.ingest_pack(chunks(data), **({} if limit is None else {"max_bytes": limit}))
            await q.check_connected(wanted)
            await q.migrate()
    if case == "wanted oid not sent":
        assert isinstance(caught.value, NotConnected)
    assert await storage.refs(RID) == {"refs/heads/main": base}
    assert objects_of(storage.path(RID)) == before
    assert sorted((storage.path(RID) / "objects" / "pack").iterdir()) == packs
    assert not quarantines(storage, RID)
    fsck(storage.path(RID))


async def test_thin_pack_completed_from_the_repository(storage: Storage, history: History) -> None:
    main = history.refs["refs/heads/main"]
    base = git_text("rev-parse", main + "~20", git_dir=history.path)
    await storage.create(RID)
    await receive(storage, RID, pack(history.path, [base]), [base])
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", None, base)])
    thin = pack(history.path, [main], [base], thin=True)
    await receive(storage, RID, thin, [main])
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", base, main)])
    assert await storage.resolve(RID, "refs/heads/main") == main
    fsck(storage.path(RID))


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


async def test_the_walk_is_spared_only_where_everything_quarantined_is_complete(
    storage: Storage, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks = count_walks(monkeypatch)
    main = history.refs["refs/heads/main"]
    base = git_text("rev-parse", main + "~10", git_dir=history.path)
    await storage.create(RID)
    async with storage.quarantine(RID) as q:
        # A repository without objects, a pack index-pack --strict took:
        # what the pack holds is complete, what it lacks is walked (and missing).
        await q.ingest_pack(chunks(pack(history.path, [base])))
        await q.check_connected([base])
        assert walks == []
        with pytest.raises(NotConnected):
            await q.check_connected([base, main])
        assert walks == [[main]]
        # After a git command not known to index strictly, everything is walked.
        async with q.git(["count-objects"]) as git_process:
            await git_process.read_stdout(4096)
        await q.check_connected([base])
        assert walks[-1] == [base]
        await q.migrate()
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", None, base)])
    # The repository holds objects now: a strict pack's objects are walked
    # (its links may end in the repository's objects).
    async with storage.quarantine(RID) as q:
        await q.ingest_pack(chunks(pack(history.path, [main], [base])))
        await q.check_connected([main])
        assert walks[-1] == [main]
    # A loose object in the quarantine was not indexed: walked too; and so
    # after one appeared in the repository.
    await storage.create(RID2)
    async with storage.quarantine(RID2) as q:
        await q.ingest_pack(chunks(pack(history.path, [base])))
        env = git_env({"GIT_DIR": str(storage.path(RID2)), "GIT_OBJECT_DIRECTORY": str(q.path)})
        subprocess.run(["git", "hash-object", "-w", "--stdin"], input=b"loose\n", env=env, check=True)
        await q.check_connected([base])
        assert walks[-1] == [base]
    async with storage.quarantine(RID2) as q:
        await q.ingest_pack(chunks(pack(history.path, [base])))
        await q.check_connected([base])
        assert len(walks) == 4  # spared: nothing loose, nothing in the repository
        git("hash-object", "-w", "--stdin", git_dir=storage.path(RID2), input=b"loose\n")
        await q.check_connected([base])
        assert len(walks) == 5
    # A shallow file (or grafts) lets index-pack take commits without parents: walked.
    await storage.delete(RID2)
    await storage.create(RID2)
    (storage.path(RID2) / "shallow").write_text(base + "\n")
    async with storage.quarantine(RID2) as q:
        await q.ingest_pack(chunks(pack(history.path, [base])))
        await q.check_connected([base])
        assert len(walks) == 6


def test_unlisted_reads_pack_indexes(history: History, tmp_path: Path) -> None:
    packs = sorted((history.path / "objects" / "pack").glob("pack-*.idx"))
    shown = [git("show-index", input=idx.read_bytes()).decode() for idx in packs]
    listed = [line.split()[1] for text in shown for line in text.splitlines()]
    assert len(listed) > 1000
    absent = ["0" * 40, "f" * 40, listed[0][:-1] + ("0" if listed[0][-1] != "0" else "1")]
    assert unlisted(packs, [*listed, *absent]) == [a for a in absent if a not in listed]
    assert unlisted([tmp_path / "none.idx"], listed[:3]) == listed[:3]
    (tmp_path / "v1.idx").write_bytes(b"\0" * 2048)  # not version 2: lists nothing
    assert unlisted([tmp_path / "v1.idx"], listed[:3]) == listed[:3]


async def test_migrate_only_after_verification(storage: Storage, history: History) -> None:
    main = history.refs["refs/heads/main"]
    await storage.create(RID)
    async with storage.quarantine(RID) as q:
        with pytest.raises(StorageError, match="only after check_connected"):
            await q.migrate()
        await q.ingest_pack(chunks(pack(history.path, [main])))
        with pytest.raises(StorageError, match="only after check_connected"):
            await q.migrate()
        await q.check_connected([main])
        await q.migrate()
        with pytest.raises(StorageError, match="migrated already"):
            await q.ingest_pack(chunks(b""))
    assert await storage.has_objects(RID, [main])


async def test_ref_transaction_is_all_or_nothing(storage: Storage, history: History) -> None:
    refs = history.refs
    main, release, v1 = refs["refs/heads/main"], refs["refs/heads/release"], refs["refs/tags/v1"]
    await storage.create(RID)
    await receive(storage, RID, pack(history.path, refs.values()), list(refs.values()))
    await storage.update_refs(
        RID, [RefUpdate("refs/heads/main", None, main), RefUpdate("refs/heads/old", None, release)]
    )
    state = await storage.refs(RID)
    tag_v1 = RefUpdate("refs/tags/v1", None, v1)  # good on its own
    refused = [
        # a wrong old value among good changes
        [tag_v1, RefUpdate("refs/heads/main", release, v1), RefUpdate("refs/heads/old", release, None)],
        # creating a ref that exists
        [tag_v1, RefUpdate("refs/heads/old", None, main)],
        # deleting with a stale value
        [RefUpdate("refs/heads/old", main, None)],
        # an object the repository does not have
        [tag_v1, RefUpdate("refs/heads/ghost", None, "1" * 40)],
        # a tag object as a branch
        [RefUpdate("refs/heads/main", main, refs["refs/tags/v2"])],
        # one ref twice
        [RefUpdate("refs/heads/main", main, release), RefUpdate("refs/heads/main", main, v1)],
    ]
    for updates in refused:
        with pytest.raises(RefUpdateRejected):
            await storage.update_refs(RID, updates)
        assert await storage.refs(RID) == state
    for name in ["refs/heads/../x", "refs/heads/a b", "HEAD", "refs/heads/x.lock", "refs/heads/", "heads/main",
                 "refs/heads/a\x00b", "refs/heads/@{1}", "refs//x", "refs/heads/\u202ex"]:  # fmt: skip
        with pytest.raises(InvalidRefName):
            await storage.update_refs(RID, [tag_v1, RefUpdate(name, None, main)])
    assert await storage.refs(RID) == state
    await storage.update_refs(
        RID, [RefUpdate("refs/heads/main", main, release), RefUpdate("refs/heads/old", release, None), tag_v1]
    )
    assert await storage.refs(RID) == {"refs/heads/main": release, "refs/tags/v1": v1}


async def test_a_new_repository_gets_its_refs_as_one_packed_refs_file(
    storage: Storage, history: History, tmp_path: Path
) -> None:
    refs = history.refs
    main, release, v1, v2 = (refs[n] for n in ("refs/heads/main", "refs/heads/release", "refs/tags/v1", "refs/tags/v2"))
    await storage.create(RID)
    await receive(storage, RID, pack(history.path, refs.values()), list(refs.values()))
    path = storage.path(RID)
    refused = [
        {"refs/heads/main": main, "refs/heads/ghost": "1" * 40},  # an object the repository does not have
        {"refs/heads/main": v2},  # a tag object as a branch
        {"refs/heads/a": main, "refs/heads/a/b": main},  # a ref and a directory of one name
        {"refs/heads/a": main, "refs/heads/a-x": main, "refs/heads/a/b/c": main},  # (not neighbours once sorted)
    ]
    for bad in refused:
        with pytest.raises(RefUpdateRejected):
            await storage.create_refs(RID, bad)
        assert await storage.refs(RID) == {}
        assert not (path / "packed-refs").exists() and not (path / "packed-refs.lock").exists()
    for name in ["refs/heads/a..b", "refs/heads/\udcff", "HEAD"]:
        with pytest.raises(InvalidRefName):
            await storage.create_refs(RID, {"refs/heads/main": main, name: main})
    await storage.create_refs(RID, refs)
    assert await storage.refs(RID) == refs
    assert [p for p in (path / "refs").rglob("*") if p.is_file()] == []
    fsck(path)
    git("show-ref", "--verify", "refs/heads/main", "refs/tags/v2", git_dir=path)
    # the file git itself writes from the same refs, loose at first, is the same file
    mirror = init_bare(tmp_path / "mirror.git")
    git("fetch", "--quiet", str(history.path), "refs/*:refs/*", git_dir=mirror)
    git("pack-refs", "--all", git_dir=mirror)
    assert (path / "packed-refs").read_bytes() == (mirror / "packed-refs").read_bytes()
    assert b"\n^" in (path / "packed-refs").read_bytes()  # annotated tags peeled
    with pytest.raises(RefUpdateRejected):  # only for a repository without refs
        await storage.create_refs(RID, {"refs/heads/other": main})
    # later transactions change and delete packed refs as usual
    await storage.update_refs(
        RID, [RefUpdate("refs/heads/main", main, release), RefUpdate("refs/tags/v1", v1, None)]
    )
    after = {**refs, "refs/heads/main": release}
    del after["refs/tags/v1"]
    assert await storage.refs(RID) == after
    with pytest.raises(RefUpdateRejected):
        await storage.update_refs(RID, [RefUpdate("refs/heads/release", main, None)])
    fsck(path)


async def test_crash_leftovers_removed_at_open(storage: Storage, history: History) -> None:
    main = history.refs["refs/heads/main"]
    path = await storage.create(RID)
    await receive(storage, RID, pack(history.path, [main]), [main])
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", None, main)])
    objects = path / "objects"
    stale = objects / "incoming-x1y2z3"
    (stale / "pack").mkdir(parents=True)
    (stale / "pack" / "tmp_pack_abc").write_bytes(b"PACK partial")
    (objects / "pack" / ("pack-" + "ab" * 20 + ".pack")).write_bytes(b"PACK without its index")
    (path / "refs" / "heads" / "main.lock").write_text("1" * 40 + "\n")
    (path / "packed-refs.lock").write_text("")
    (storage.root / ".creating-abc").mkdir()
    reopened = await Storage.open(storage.root)
    assert not stale.exists() and not (storage.root / ".creating-abc").exists()
    assert not list(path.rglob("*.lock"))
    assert not (objects / "pack" / ("pack-" + "ab" * 20 + ".pack")).exists()
    assert await reopened.list() == [RID]
    fsck(path)
    parent = git_text("rev-parse", main + "~1", git_dir=history.path)
    await reopened.update_refs(RID, [RefUpdate("refs/heads/main", main, parent)])  # no lock left in the way


CHILD = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from guts.repo.storage import Storage

    async def main():
        storage = await Storage.open(Path(sys.argv[1]))
        data = Path(sys.argv[3]).read_bytes()
        async def slow():
            for start in range(0, len(data), 4096):
                yield data[start:start + 4096]
                await trio.sleep(0.01 if start else 0)
            await trio.sleep_forever()
        async with storage.quarantine(sys.argv[2]) as q:
            await q.ingest_pack(slow())

    trio.run(main)
    """
)


async def test_kill_9_mid_ingest_leaves_a_consistent_repository(
    storage: Storage, history: History, tmp_path: Path
) -> None:
    base = git_text("rev-parse", history.refs["refs/heads/main"] + "~30", git_dir=history.path)
    main = history.refs["refs/heads/main"]
    await storage.create(RID)
    await receive(storage, RID, pack(history.path, [base]), [base])
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", None, base)])
    before = objects_of(storage.path(RID))
    packfile = tmp_path / "p.pack"
    packfile.write_bytes(pack(history.path, history.refs.values(), [base]))
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", CHILD, str(storage.root), RID, str(packfile)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        with trio.fail_after(20):
            while not list((storage.path(RID) / "objects").glob("incoming-*/pack/tmp_pack_*")):
                await trio.sleep(0.02)
        await trio.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert quarantines(storage, RID)
    storage = await Storage.open(storage.root)
    assert not quarantines(storage, RID)
    assert objects_of(storage.path(RID)) == before
    assert await storage.refs(RID) == {"refs/heads/main": base}
    fsck(storage.path(RID))
    await receive(storage, RID, packfile.read_bytes(), [main])
    await storage.update_refs(RID, [RefUpdate("refs/heads/main", base, main)])
    fsck(storage.path(RID))


async def test_cancelled_ingest_leaves_no_quarantine_and_no_process(storage: Storage, history: History) -> None:
    await storage.create(RID)
    data = pack(history.path, [history.refs["refs/heads/main"]])
    children: list[int] = []

    async def stalls() -> AsyncIterator[bytes]:
        yield data[:10_000]
        children.extend(_index_packs())
        await trio.sleep_forever()

    with trio.move_on_after(1) as scope:
        async with storage.quarantine(RID) as q:
            await q.ingest_pack(stalls())
    assert scope.cancelled_caught
    assert children and not quarantines(storage, RID)
    for pid in children:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left


def _index_packs() -> list[int]:
    """Our child processes running index-pack."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if b"index-pack" in (proc / "cmdline").read_bytes():
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


async def test_upload_pack_answers_ls_refs(storage: Storage, history: History) -> None:
    await storage.create(RID)
    await receive(storage, RID, pack(history.path, history.refs.values()), list(history.refs.values()))
    await storage.update_refs(RID, [RefUpdate(name, None, oid) for name, oid in history.refs.items()])

    def pkt(text: str) -> bytes:
        return b"%04x%s" % (len(text) + 4, text.encode())

    request = b"".join(
        [pkt("command=ls-refs\n"), pkt("agent=guts-test\n"), b"0001", pkt("peel\n"), pkt("ref-prefix refs/\n"), b"0000"]
    )
    async with storage.upload_pack(RID) as upload:
        await upload.stdin.send_all(request)
        await upload.close_stdin()
        response = await upload.read_stdout(1 << 20)
    lines, at = [], 0
    while (size := int(response[at : at + 4], 16)) != 0:
        lines.append(response[at + 4 : at + size].decode().rstrip("\n"))
        at += size
    assert response[at:] == b"0000"
    advertised = {line.split()[1]: line.split()[0] for line in lines}
    assert advertised == history.refs
    peeled = [line for line in lines if "peeled:" in line]
    assert len(peeled) == 2  # the annotated tags v2 and v4


def random_blobs_pack(path: Path, mib: int) -> tuple[Path, str]:
    """A repository of ``mib`` incompressible 1 MiB blobs in one commit,
    kept as one pack. Returns the pack and the commit."""
    init_bare(path)
    main = random_blobs(path, mib)
    (packfile,) = (path / "objects" / "pack").glob("*.pack")
    return packfile, main


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 32 MiB pack file of random blobs, and its commit."""
    return random_blobs_pack(tmp_path_factory.mktemp("big") / "big.git", 32)


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


async def file_chunks(path: Path, size: int = 1 << 16) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as file:
        while chunk := await file.read(size):
            yield chunk


async def test_streaming_a_large_pack_keeps_memory_small(storage: Storage, big: tuple[Path, str]) -> None:
    """32 MiB of incompressible blobs streamed from a file into the
    quarantine: this process's RSS stays within a few MiB of where it was."""
    packfile, main = big
    await storage.create(RID)
    baseline, peak = rss_kib(), 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_kib())
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        async with storage.quarantine(RID) as q:
            await q.ingest_pack(file_chunks(packfile))
            await q.check_connected([main])
            await q.migrate()
        nursery.cancel_scope.cancel()
    assert peak - baseline < 8 * 1024, (baseline, peak)
    assert await storage.has_objects(RID, [main])
