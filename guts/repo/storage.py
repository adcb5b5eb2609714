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
   --not --all``).
4. ``await q.migrate()``: the objects move in (loose ones, then each pack's
   ``.pack`` before its ``.idx``: git finds packs by their index), and the
   directories are fsynced.
5. ``await storage.update_refs(rid, updates)``: every ref change of the
   repository in one ``git update-ref --stdin`` transaction, each with its
   expected old value, all or nothing.

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
import re
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from guts.errors import GutsError, InvalidRid
from guts.repo._git import CHUNK, GitError, GitProcess, open_git, run_git, run_git_status
from guts.repo._objdir import CREATING, QUARANTINE, fsync_dir, migrate_objects, recover
from guts.repo.refname import refname_problem

__all__ = [
    "FSCK_LENIENT", "RID_PATTERN", "InvalidRefName", "NotConnected", "ObjectReader", "PackRejected", "Quarantine",
    "RefUpdate", "RefUpdateRejected", "RepositoryExists", "RepositoryNotFound", "SourceRepository", "Storage",
    "StorageConfig", "StorageError", "check_rid",
]  # fmt: skip

#: A RID as a directory name: CIDv1 text in base32 (multibase ``b``),
#: lowercase; a sha2-256 CID is 59 characters.
RID_PATTERN = re.compile(r"b[a-z2-7]{16,127}")
_OID = re.compile(r"[0-9a-f]{40}")

#: fsck messages received objects may carry and still be accepted: old
#: public histories carry them (oh-my-zsh and Modernizr have zero-padded
#: modes), every git reads such objects fine, and GitLab's Gitaly and Gitea
#: ignore exactly these three on push and fetch. All else fails
#: (``--strict`` makes warnings errors): ``.git``, ``..``, ``.gitmodules``
#: and symlink tricks (the checkout CVEs), unsorted or duplicate tree
#: entries, unparsable objects, bad idents. ``info``-level messages (a tag
#: without a tagger, ``badFilemode``) never fail.
FSCK_LENIENT: tuple[str, ...] = (
    "zeroPaddedFilemode",  # "040000" for "40000", from old git implementations
    "badTimezone",  # a malformed time zone, from an old git bug
    "missingSpaceBeforeDate",  # an ident whose date is missing
)
_STRICT = "--strict=" + ",".join(f"{msg}=ignore" for msg in FSCK_LENIENT)

_CONFIG = {
    # Objects, pack indexes and refs reach the disk before what names them.
    "core": {"fsync": "objects,derived-metadata,reference", "fsyncMethod": "fsync", "logAllRefUpdates": "false"},
    # No git command starts a gc or maintenance on its own: repacking
    # outside the one writer would race with quarantine migrations.
    "gc": {"auto": "0"},
    "maintenance": {"auto": "false"},
    "transfer": {"fsckObjects": "true"},
    # git fsck and any fetch or push into the repository judge as we do.
    **{section: {msg: "ignore" for msg in FSCK_LENIENT} for section in ('fsck', 'fetch "fsck"', 'receive "fsck"')},
}


class StorageError(GutsError):
    """A repository operation failed; nothing was changed."""


class InvalidRefName(StorageError):
    """A ref name :mod:`guts.repo.refname` refuses, or one outside ``refs/``."""


class RepositoryNotFound(StorageError):
    """No repository is stored under that RID."""


class RepositoryExists(StorageError):
    """A repository is stored under that RID already."""


class RefUpdateRejected(StorageError):
    """git refused the ref transaction (a stale old value, a missing
    object, a held lock); no ref changed."""


class PackRejected(StorageError):
    """A received pack was refused: corrupt, truncated, over the limit, an
    object fsck refuses, a thin pack whose bases are missing."""


class NotConnected(PackRejected):
    """A wanted object is missing, or something it reaches is."""


def check_rid(rid: str) -> str:
    """``rid`` if it may name a repository directory, else
    :class:`~guts.errors.InvalidRid`."""
    if not isinstance(rid, str) or not RID_PATTERN.fullmatch(rid):
        raise InvalidRid(f"not a repository id: {rid!r:.80}")
    return rid


def _check_ref(name: str) -> str:
    problem = refname_problem(name)
    if problem is None and not name.startswith("refs/"):
        problem = f"{name!r:.80} is not under refs/"
    if problem is not None:
        raise InvalidRefName(problem)
    return name


def _check_oid(oid: str) -> str:
    if not isinstance(oid, str) or not _OID.fullmatch(oid):
        raise StorageError(f"not a full object id: {oid!r:.80}")
    return oid


def _why(stderr: str, fallback: str) -> str:
    """The line of git's stderr that says why: the first ``error:``, else the last."""
    lines = stderr.strip().splitlines()
    return next((line for line in lines if line.startswith("error:")), lines[-1] if lines else fallback)


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """One ref change of a transaction. ``old`` is what the ref must hold
    now (``None``: it must not exist), ``new`` what it will hold
    (``None``: delete it)."""

    name: str
    old: str | None
    new: str | None

    def command(self) -> bytes:
        """This change as a line of ``git update-ref --stdin -z``."""
        _check_ref(self.name)
        for oid in (self.old, self.new):
            if oid is not None:
                _check_oid(oid)
        if self.new is None:
            if self.old is None:
                raise StorageError(f"{self.name}: an update needs an old or a new value")
            return f"delete {self.name}\0{self.old}\0".encode()
        if self.old is None:
            return f"create {self.name}\0{self.new}\0".encode()
        return f"update {self.name}\0{self.new}\0{self.old}\0".encode()


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Limits: the largest pack (a Linux clone is 5.65 GiB), the deadline
    of short commands, of one pack's ingestion, check or upload (the sync
    layer adds its idle and overall deadlines), and the output cap of a
    ref listing (about 100 bytes a ref)."""

    max_pack_bytes: int = 16 * 1024**3
    command_timeout: float = 60.0
    pack_timeout: float = 6 * 3600.0
    max_refs_output: int = 128 * 1024**2


def _config_text() -> str:
    return "".join(f"[{name}]\n" + "".join(f"\t{k} = {v}\n" for k, v in kv.items()) for name, kv in _CONFIG.items())


def _alternate(path: Path) -> str:
    """``path`` as a ``GIT_ALTERNATE_OBJECT_DIRECTORIES`` entry: C-quoted if
    a colon would split it or a leading quote be misread."""
    text = str(path)
    if ":" not in text and not text.startswith('"'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Quarantine:
    """A temporary object directory of one repository (see the module
    docstring for the order of calls); made by :meth:`Storage.quarantine`."""

    def __init__(self, repo: Path, path: Path, config: StorageConfig) -> None:
        self.path = path
        self._repo = repo
        self._config = config
        self._verified = False
        self._migrated = False

    @property
    def env(self) -> dict[str, str]:
        """The variables that run git in this quarantine."""
        return {
            "GIT_OBJECT_DIRECTORY": str(self.path),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": _alternate(self._repo / "objects"),
            "GIT_QUARANTINE_PATH": str(self.path),
        }

    async def ingest_pack(self, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> str:
        """Index a pack streamed as ``chunks`` into the quarantine; return its
        hash. Each chunk is written before the next is taken, so memory
        holds one chunk, whatever the pack's size.

        Raises:
            PackRejected: past ``max_bytes`` (default: the config's limit,
                checked as the bytes arrive), or when index-pack refuses
                the pack. The quarantine may then hold partial files; the
                block's end deletes them.
        """
        if self._migrated:
            raise StorageError("this quarantine was migrated already")
        self._verified = False
        limit = self._config.max_pack_bytes if max_bytes is None else max_bytes
        args = ["index-pack", "--stdin", "--fix-thin", _STRICT, f"--max-input-size={limit}"]
        received = 0
        try:
            async with open_git(args, git_dir=self._repo, env=self.env, timeout=self._config.pack_timeout) as git:
                async for chunk in chunks:
                    received += len(chunk)
                    if received > limit:
                        raise PackRejected(f"pack over the limit of {limit} bytes")
                    try:
                        await git.stdin.send_all(chunk)
                    except trio.BrokenResourceError:
                        break  # index-pack stopped reading: its status says why
                await git.close_stdin()
                out = await git.read_stdout(4096)
        except GitError as error:
            raise PackRejected(f"pack refused after {received} bytes: {_why(error.stderr, str(error))}") from error
        return out.decode("ascii", "replace").strip().partition("\t")[2]

    async def check_connected(self, oids: Iterable[str]) -> None:
        """Check that every oid is present and complete: it and everything
        it reaches are in the quarantine or reached by the repository's
        refs. Required before :meth:`migrate`.

        Raises:
            NotConnected: an oid or an object it reaches is missing.
        """
        if self._migrated:
            raise StorageError("this quarantine was migrated already")
        wanted = [_check_oid(oid) for oid in oids]
        if wanted:
            result = await run_git_status(
                ["rev-list", "--objects", "--stdin", "--not", "--all", "--quiet"],
                git_dir=self._repo,
                env=self.env,
                stdin="".join(f"{oid}\n" for oid in wanted).encode(),
                timeout=self._config.pack_timeout,
                max_output=64 * 1024,
            )
            if result.returncode != 0:
                raise NotConnected(f"objects missing: {_why(result.stderr, 'rev-list failed')}")
        self._verified = True

    async def migrate(self) -> None:
        """Move the quarantined objects into the repository. Only after
        :meth:`check_connected` succeeded (with no ingest since)."""
        if self._migrated:
            raise StorageError("this quarantine was migrated already")
        if not self._verified:
            raise StorageError("quarantined objects migrate only after check_connected")
        self._migrated = True
        await trio.to_thread.run_sync(migrate_objects, self.path, self._repo / "objects")


@dataclass(frozen=True, slots=True)
class SourceRepository:
    """A person's git repository that a new repository is made from
    (:meth:`Storage.read_source`): its git directory, its work tree
    (``None`` when bare, or when read from inside the git directory), the branch ``HEAD`` names (``None`` when
    detached), its branches and tags, and its object format."""

    git_dir: Path
    work_tree: Path | None
    head: str | None
    refs: dict[str, str]
    object_format: str


class ObjectReader:
    """Objects read one at a time from a running ``git cat-file --batch``
    (:meth:`Storage.objects`): one process for a whole walk of a chain."""

    def __init__(self, git: GitProcess) -> None:
        self._git = git
        self._buffer = bytearray()

    async def _fill(self) -> None:
        chunk = await self._git.stdout.receive_some(CHUNK)
        if not chunk:
            raise StorageError(f"git cat-file stopped: {self._git.stderr.strip()[-200:]}")
        self._buffer += chunk

    async def _take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read(self, spec: str, *, max_size: int = 1 << 20) -> tuple[str, str, bytes] | None:
        """``(oid, type, content)`` of the object ``spec`` names (an oid, or
        ``<oid>:<path>``), or ``None`` when there is none.

        Raises:
            StorageError: the object is over ``max_size`` bytes, or the
                spec is not one line.
        """
        if "\n" in spec or "\0" in spec or len(spec) > 4096:
            raise StorageError(f"not an object name: {spec!r:.80}")
        await self._git.stdin.send_all(spec.encode() + b"\n")
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > 8192:
                raise StorageError("git cat-file: header line too long")
            await self._fill()
        header = (await self._take(end + 1))[:-1].decode("utf-8", "replace")
        fields = header.rsplit(" ", 2)
        if len(fields) != 3 or not fields[2].isdigit():
            return None  # "<spec> missing", "<spec> ambiguous"
        oid, kind, size = fields[0], fields[1], int(fields[2])
        if size > max_size:
            raise StorageError(f"object {oid} is {size} bytes (limit {max_size})")
        return oid, kind, (await self._take(size + 1))[:-1]


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
