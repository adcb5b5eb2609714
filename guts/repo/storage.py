"""Bare git repositories under ``GUTS_HOME/storage/``, through git's command line.

Theory of operation. Repository ``rid`` is the bare repository
``<root>/<rid>``; a RID must match :data:`RID_PATTERN` (CIDv1 text, base32
lowercase) before it names a path, so none leaves the root. A repository is
made in ``.creating-*`` and renamed into place once configured.

Writing. One node runs per ``GUTS_HOME`` (its control socket refuses a
second), so a :class:`Storage` is its repositories' only writer, and the
order is always:

1. ``async with storage.quarantine(rid) as q``: a temporary object
   directory ``objects/incoming-*``, as ``git receive-pack`` makes one. git
   runs there with ``GIT_OBJECT_DIRECTORY`` set to it and the repository's
   objects as an alternate (thin packs find their bases); new objects land
   in the quarantine only. ``GIT_QUARANTINE_PATH`` makes git refuse ref
   updates meanwhile.
2. ``await q.ingest_pack(chunks)``: ``git index-pack --stdin --fix-thin
   --strict`` under a byte limit counted as the bytes arrive; every object
   is checked (leniently only on :data:`FSCK_LENIENT`) and every link it
   makes must resolve.
3. ``await q.check_connected(oids)``: what refs will name is present and
   complete down to what the refs already reach (``git rev-list --objects
   --not --all``). In a repository without objects (a new one), whose
   quarantined packs were all indexed ``--strict``, every link resolved
   inside the quarantine: oids its packs hold need no walk (``git clone``
   skips its walk likewise).
4. ``await q.migrate()``: the objects move in (loose ones, then each pack's
   ``.pack`` before its ``.idx``: git finds packs by their index), and the
   directories are fsynced.
5. ``await storage.update_refs(rid, updates)``: every ref change of the
   repository in one ``git update-ref --stdin`` transaction, each with its
   expected old value, all or nothing. A repository that has no ref yet
   (made by this operation) gets all of them at once instead:
   :meth:`Storage.create_refs` writes one ``packed-refs`` file, as ``git
   clone`` does, one rename instead of a fsynced file per ref.

A new repository's objects come from a person's repository the same way:
:meth:`Storage.read_source` looks at it, :meth:`Storage.pack_source`
streams ``git pack-objects`` of its branches and tags into the quarantine.
:meth:`Storage.objects` reads objects back one at a time (one ``git
cat-file --batch`` for a whole walk of a chain); :meth:`Storage.set_head`
and :meth:`Storage.delete` complete the set.

Leaving the block without ``migrate`` (a refused pack, an error, a
cancellation) deletes the quarantine: no new object outside it, every ref
as it was.

Crashes. Refs only ever name migrated, verified objects, and
``core.fsync`` hardens objects, indexes and refs (the migration fsyncs its
directories) before a ref names them, so after a ``kill -9`` at any step
``git fsck`` finds nothing missing. What a crash can leave,
:meth:`Storage.open` deletes: quarantines, a ``.pack`` moved without its
``.idx``, ref lock files (nothing else writes then), unfinished
repositories. Objects no ref reaches yet stay (dangling: fsck does not
fail on them, the next sync reuses them). git 2.39's files backend commits
a transaction with one rename per ref: a refusal changes nothing, but a
crash inside that last step can leave a prefix of its refs moved, each to
verified objects; the signed-refs layer recomputes what refs should be.
In this process, ref reads take the lock writes hold, so they never see
half an update.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from guts.repo._git import CHUNK, GitProcess, open_git, run_git, run_git_status
from guts.repo._objdir import CREATING, QUARANTINE, fsync_dir, recover
from guts.repo._quarantine import ObjectReader, Quarantine, SourceRepository
from guts.repo._storage_base import (
    FSCK_LENIENT,
    RID_PATTERN,
    InvalidRefName,
    NotConnected,
    PackRejected,
    RefUpdate,
    RefUpdateRejected,
    RepositoryExists,
    RepositoryNotFound,
    StorageConfig,
    StorageError,
    _check_oid,
    _check_ref,
    _config_text,
    _why,
    check_rid,
)

__all__ = [
    "FSCK_LENIENT", "RID_PATTERN", "InvalidRefName", "NotConnected", "ObjectReader", "PackRejected", "Quarantine",
    "RefUpdate", "RefUpdateRejected", "RepositoryExists", "RepositoryNotFound", "SourceRepository", "Storage",
    "StorageConfig", "StorageError", "check_rid",
]  # fmt: skip

#: What git 2.39 writes at the top of ``packed-refs``: every annotated
#: tag's line is followed by ``^<oid>``, the object it peels to (refs
#: without one do not peel), and lines are sorted by name.
_PACKED_REFS_HEADER = "# pack-refs with: peeled fully-peeled sorted \n"


def _write_packed_refs(repo: Path, data: bytes) -> None:
    """Write ``packed-refs`` of a repository without refs: under git's
    lock file, fsynced, renamed, the directory fsynced."""
    target = repo / "packed-refs"
    if target.exists() or any(path.is_file() for path in (repo / "refs").rglob("*")):
        raise RefUpdateRejected(f"{repo.name}: the repository has refs already")
    lock = repo / "packed-refs.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise RefUpdateRejected(f"{repo.name}: packed-refs is locked") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(lock, target)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    fsync_dir(repo)


class Storage:
    """The repositories under one root; :meth:`open` also repairs what a
    crash left, and is how a node starts it."""

    def __init__(self, root: Path, config: StorageConfig | None = None) -> None:
        self.root = root
        self.config = config or StorageConfig()
        self._locks: dict[str, trio.Lock] = {}

    @classmethod
    async def open(cls, root: Path, config: StorageConfig | None = None) -> Storage:
        """Make ``root`` if needed and delete crash leftovers (see the module
        docstring); call it before anything else writes there."""
        root = Path(root).absolute()
        await trio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))
        await trio.to_thread.run_sync(recover, root, lambda name: bool(RID_PATTERN.fullmatch(name)))
        return cls(root, config)

    def path(self, rid: str) -> Path:
        """Where the repository ``rid`` lives (whether or not it exists)."""
        return self.root / check_rid(rid)

    def _lock(self, rid: str) -> trio.Lock:
        return self._locks.setdefault(rid, trio.Lock())

    async def exists(self, rid: str) -> bool:
        return await trio.Path(self.path(rid), "HEAD").is_file()

    async def _repo(self, rid: str) -> Path:
        if not await self.exists(rid):
            raise RepositoryNotFound(f"no repository {rid}")
        return self.path(rid)

    async def list(self) -> list[str]:
        """The RIDs stored, sorted."""

        def scan() -> list[str]:
            return sorted(
                entry.name
                for entry in self.root.iterdir()
                if RID_PATTERN.fullmatch(entry.name) and (entry / "HEAD").is_file()
            )

        return await trio.to_thread.run_sync(scan)

    async def create(self, rid: str) -> Path:
        """Make the bare repository ``rid``, configured for storage.

        Raises:
            RepositoryExists: there is one already.
        """
        path = self.path(rid)
        async with self._lock(rid):
            if await self.exists(rid):
                raise RepositoryExists(f"repository {rid} exists")
            tmp = Path(await trio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix=CREATING, dir=self.root)))
            try:
                await run_git(
                    ["init", "--bare", "--quiet", "--template=", "--initial-branch=main", str(tmp)],
                    timeout=self.config.command_timeout,
                )
                await trio.to_thread.run_sync(self._finish_create, tmp, path)
            finally:
                await trio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
        return path

    def _finish_create(self, tmp: Path, path: Path) -> None:
        with open(tmp / "config", "a", encoding="utf-8") as config:
            config.write(_config_text())
            config.flush()
            os.fsync(config.fileno())
        try:
            os.rename(tmp, path)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise RepositoryExists(f"repository {path.name} exists") from None
            raise
        fsync_dir(self.root)

    async def refs(self, rid: str, prefix: str | None = None) -> dict[str, str]:
        """Every ref (``refs/...``) and the oid it holds, or only those under
        ``prefix``, a hierarchy such as ``refs/heads/``."""
        args = ["for-each-ref", "--format=%(objectname) %(refname)"]
        if prefix is not None:
            _check_ref(prefix.rstrip("/") + "/x")
            args.append(prefix)
        repo = await self._repo(rid)
        async with self._lock(rid):
            out = await run_git(
                args, git_dir=repo, timeout=self.config.command_timeout, max_output=self.config.max_refs_output
            )
        refs = {}
        for line in out.decode("utf-8", "replace").splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        return refs

    async def resolve(self, rid: str, name: str) -> str | None:
        """The oid the ref ``name`` (a full name) holds, or ``None``."""
        _check_ref(name)
        refs = await self.refs(rid, name)
        return refs.get(name)

    async def is_ancestor(self, rid: str, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is ``descendant`` or one of its
        ancestors (a fast-forward from one to the other)."""
        args = ["merge-base", "--is-ancestor", _check_oid(ancestor), _check_oid(descendant)]
        result = await run_git_status(args, git_dir=await self._repo(rid), timeout=self.config.command_timeout)
        if result.returncode not in (0, 1):
            raise StorageError(f"cannot compare {ancestor} and {descendant}: {result.stderr.strip()}")
        return result.returncode == 0

    async def missing_objects(self, rid: str, oids: Iterable[str]) -> builtins.list[str]:
        """The oids (of ``oids``) the repository does not have."""
        wanted = [_check_oid(oid) for oid in oids]
        if not wanted:
            return []
        out = await run_git(
            ["cat-file", "--batch-check=%(objectname)"],
            git_dir=await self._repo(rid),
            stdin="".join(f"{oid}\n" for oid in wanted).encode(),
            timeout=self.config.command_timeout,
            max_output=64 * len(wanted),
        )
        return [line.split()[0] for line in out.decode("ascii").splitlines() if line.endswith(" missing")]

    async def has_objects(self, rid: str, oids: Iterable[str]) -> bool:
        """Whether every oid is in the repository (present, not checked for
        connectivity: objects only arrive connected)."""
        return not await self.missing_objects(rid, oids)

    async def update_refs(self, rid: str, updates: Iterable[RefUpdate]) -> None:
        """Apply every change in one ``git update-ref --stdin`` transaction:
        each old value is checked under git's ref locks, and either every
        ref changes or none does.

        Raises:
            RefUpdateRejected: git refused the transaction (nothing changed).
            InvalidRefName: a name is refused (before git runs).
        """
        changes = list(updates)
        names = [change.name for change in changes]
        if len(set(names)) != len(names):
            raise RefUpdateRejected("a ref appears twice in one transaction")
        commands = b"".join(change.command() for change in changes)
        if not commands:
            return
        repo = await self._repo(rid)
        async with self._lock(rid):
            result = await run_git_status(
                ["update-ref", "--no-deref", "--stdin", "-z"],
                git_dir=repo,
                stdin=commands,
                timeout=self.config.command_timeout,
                max_output=64 * 1024,
            )
        if result.returncode != 0:
            raise RefUpdateRejected(f"{rid}: ref transaction refused: {_why(result.stderr, 'update-ref failed')}")

    async def create_refs(self, rid: str, refs: Mapping[str, str]) -> None:
        """Give the repository ``rid``, which has no ref yet, every ref of
        ``refs`` at once: one ``packed-refs`` file (annotated tags peeled),
        written as git writes it (``packed-refs.lock``, fsynced, renamed).
        ``git clone`` stores a new repository's refs the same way; loose
        refs would cost a fsynced file each.

        The checks are ``update-ref``'s: every object exists, a branch
        (``refs/heads/``) names a commit, no name is a directory of another
        (``refs/a`` and ``refs/a/b``).

        Raises:
            RefUpdateRejected: the repository has refs already, or a check
                failed (nothing changed).
            InvalidRefName: a name is refused (before git runs).
        """
        for name, oid in refs.items():
            _check_ref(name)
            _check_oid(oid)
        names = sorted(refs, key=lambda name: name.encode())  # git's order: bytes
        for name in names:
            parts = name.split("/")
            directory = next((d for d in ("/".join(parts[:n]) for n in range(2, len(parts))) if d in refs), None)
            if directory is not None:
                raise RefUpdateRejected(f"{rid}: {directory!r} and {name!r} cannot both exist")
        if not names:
            return
        repo = await self._repo(rid)
        oids = sorted(set(refs.values()))
        out = await run_git(
            ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            git_dir=repo,
            stdin="".join(f"{oid}\n{oid}^{{}}\n" for oid in oids).encode(),
            timeout=self.config.command_timeout,
            max_output=128 * len(oids),
        )
        lines = out.decode("ascii", "replace").splitlines()
        kinds: dict[str, str] = {}
        peeled: dict[str, str] = {}
        if len(lines) != 2 * len(oids):
            raise StorageError(f"{rid}: git cat-file answered {len(lines)} lines for {2 * len(oids)} objects")
        for oid, line, peel in zip(oids, lines[::2], lines[1::2]):
            found, target = line.split(), peel.split()
            if found[1:] not in (["commit"], ["tree"], ["blob"], ["tag"]) or target[1:] in ([], ["missing"]):
                raise RefUpdateRejected(f"{rid}: ref transaction refused: object {oid} is missing")
            kinds[oid] = found[1]
            if target[0] != oid:
                peeled[oid] = target[0]
        for name in names:
            if name.startswith("refs/heads/") and kinds[refs[name]] != "commit":
                raise RefUpdateRejected(f"{rid}: branch {name} would name a {kinds[refs[name]]}, not a commit")
        text = [_PACKED_REFS_HEADER]
        for name in names:
            text.append(f"{refs[name]} {name}\n")
            if refs[name] in peeled:
                text.append(f"^{peeled[refs[name]]}\n")
        async with self._lock(rid):
            await trio.to_thread.run_sync(_write_packed_refs, repo, "".join(text).encode())

    async def set_head(self, rid: str, ref: str) -> None:
        """Point ``HEAD`` at the branch ``ref`` (``refs/heads/...``), which
        need not exist yet."""
        if not _check_ref(ref).startswith("refs/heads/"):
            raise InvalidRefName(f"HEAD names a branch, not {ref!r:.80}")
        repo = await self._repo(rid)
        async with self._lock(rid):
            await run_git(["symbolic-ref", "HEAD", ref], git_dir=repo, timeout=self.config.command_timeout)

    async def delete(self, rid: str) -> None:
        """Remove the repository ``rid`` (nothing if there is none): renamed
        out of the way first, so that a crash leaves what :meth:`open`
        deletes, never half a repository under its RID."""
        path = self.path(rid)

        def remove() -> None:
            if not path.is_dir():
                return
            trash = Path(tempfile.mkdtemp(prefix=CREATING, dir=self.root))
            os.rename(path, trash)  # over the empty directory
            fsync_dir(self.root)
            shutil.rmtree(trash, ignore_errors=True)

        async with self._lock(rid):
            await trio.to_thread.run_sync(remove)

    @asynccontextmanager
    async def objects(self, rid: str) -> AsyncIterator[ObjectReader]:
        """An :class:`ObjectReader` of the repository ``rid``, for the
        block (at most the config's command deadline)."""
        repo = await self._repo(rid)
        async with open_git(["cat-file", "--batch"], git_dir=repo, timeout=self.config.command_timeout) as git:
            yield ObjectReader(git)
            await git.close_stdin()
            await git.read_stdout(1 << 20)

    async def read_source(self, path: Path) -> SourceRepository | None:
        """Look at the git repository at ``path`` (a work tree, or inside
        one, or a bare repository), or ``None`` when git finds none there.
        Branch and tag names that are not UTF-8 keep their bytes as
        surrogates (``surrogateescape``), for the caller to refuse."""
        timeout = self.config.command_timeout
        result = await run_git_status(
            ["rev-parse", "--is-bare-repository", "--absolute-git-dir", "--show-object-format"],
            cwd=path,
            timeout=timeout,
        )
        if result.returncode != 0:
            if "not a git repository" in result.stderr:
                return None
            raise StorageError(f"{path}: {_why(result.stderr, 'git rev-parse failed')}")
        bare, git_dir, object_format = result.stdout.decode("utf-8", "surrogateescape").splitlines()[:3]
        work_tree = None
        if bare != "true":  # (no work tree either when ``path`` is inside the .git directory)
            top = await run_git_status(["rev-parse", "--show-toplevel"], cwd=path, timeout=timeout)
            if top.returncode == 0:
                work_tree = Path(top.stdout.decode("utf-8", "surrogateescape").strip())
        head = await run_git_status(["symbolic-ref", "-q", "HEAD"], git_dir=Path(git_dir), timeout=timeout)
        out = await run_git(
            ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/"],
            git_dir=Path(git_dir),
            timeout=timeout,
            max_output=self.config.max_refs_output,
        )
        refs = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        branch = head.stdout.decode("utf-8", "surrogateescape").strip() if head.returncode == 0 else None
        return SourceRepository(Path(git_dir), work_tree, branch, refs, object_format)

    @asynccontextmanager
    async def pack_source(self, source: SourceRepository, oids: Iterable[str]) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a pack of everything ``oids`` reach in ``source``
        (``git pack-objects --revs``; an annotated tag brings itself), for
        :meth:`Quarantine.ingest_pack`; the block ends with the pack read."""
        revs = "".join(f"{_check_oid(oid)}\n" for oid in oids).encode()
        args = ["pack-objects", "--revs", "--stdout", "--quiet", "--delta-base-offset"]
        async with open_git(args, git_dir=source.git_dir, timeout=self.config.pack_timeout) as git:
            await git.stdin.send_all(revs)  # pack-objects reads every rev before it writes
            await git.close_stdin()

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await git.stdout.receive_some(CHUNK):
                    yield bytes(chunk)

            yield chunks()

    @asynccontextmanager
    async def quarantine(self, rid: str) -> AsyncIterator[Quarantine]:
        """A :class:`Quarantine` in repository ``rid``, deleted when the
        block ends (its objects stay only if :meth:`Quarantine.migrate` ran)."""
        repo = await self._repo(rid)

        def make() -> Path:
            path = Path(tempfile.mkdtemp(prefix=QUARANTINE, dir=repo / "objects"))
            (path / "pack").mkdir()
            return path

        path = await trio.to_thread.run_sync(make)
        try:
            yield Quarantine(repo, path, self.config)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))

    @asynccontextmanager
    async def upload_pack(
        self, rid: str, *, idle_timeout: int = 60, timeout: float | None = None
    ) -> AsyncIterator[GitProcess]:
        """``git upload-pack --stateless-rpc`` for ``rid`` speaking protocol
        v2: write one request's pkt-lines to its stdin, read the response
        from its stdout, as the sync protocol's pipe. git gives up after
        ``idle_timeout`` seconds without progress; the process is killed
        at ``timeout`` (default: the config's pack deadline)."""
        repo = await self._repo(rid)
        args = ["upload-pack", "--stateless-rpc", "--strict", f"--timeout={idle_timeout}", str(repo)]
        async with open_git(
            args, cwd=repo, env={"GIT_PROTOCOL": "version=2"}, timeout=timeout or self.config.pack_timeout
        ) as git:
            yield git
