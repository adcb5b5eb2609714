"""A repository's temporary object directory, and the objects read from
it or from a person's repository (see :mod:`guts.repo.storage` for the
order of calls)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from guts.repo._git import CHUNK, GitError, GitProcess, open_git, run_git_status
from guts.repo._objdir import has_loose_objects, has_objects, migrate_objects, unlisted
from guts.repo._storage_base import (
    _STRICT,
    NotConnected,
    PackRejected,
    StorageConfig,
    StorageError,
    _check_oid,
    _why,
)

__all__ = ["ObjectReader", "Quarantine", "SourceRepository"]


def _alternate(path: Path) -> str:
    """``path`` as a ``GIT_ALTERNATE_OBJECT_DIRECTORIES`` entry: C-quoted if
    a colon would split it or a leading quote be misread."""
    text = str(path)
    if ":" not in text and not text.startswith('"'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _command(args: list[str]) -> str:
    """The git command ``args`` run, past any ``-c name=value``."""
    i = 0
    while i + 1 < len(args) and args[i] == "-c":
        i += 2
    return args[i] if i < len(args) else ""


class Quarantine:
    """A temporary object directory of one repository (see the module
    docstring for the order of calls); made by :meth:`Storage.quarantine`."""

    def __init__(self, repo: Path, path: Path, config: StorageConfig) -> None:
        self.path = path
        self._repo = repo
        self._config = config
        self._verified = False
        self._migrated = False
        # Whether every pack here was indexed by ``index-pack --strict``.
        self._strict = True

    @property
    def env(self) -> dict[str, str]:
        """The variables that run git in this quarantine."""
        return {
            "GIT_OBJECT_DIRECTORY": str(self.path),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": _alternate(self._repo / "objects"),
            "GIT_QUARANTINE_PATH": str(self.path),
        }

    @asynccontextmanager
    async def objects(self) -> AsyncIterator[ObjectReader]:
        """An :class:`ObjectReader` of the repository and the quarantine's
        objects, for the block: to check received objects before they
        migrate."""
        args = ["cat-file", "--batch"]
        async with open_git(args, git_dir=self._repo, env=self.env, timeout=self._config.command_timeout) as git:
            yield ObjectReader(git)
            await git.close_stdin()
            await git.read_stdout(1 << 20)

    @asynccontextmanager
    async def git(
        self, args: list[str], *, timeout: float | None = None, strict: bool = False
    ) -> AsyncIterator[GitProcess]:
        """``git <args>`` run in the quarantine, streaming (objects it writes
        land here; ``git fetch-pack`` for the sync protocol), killed at
        ``timeout`` (default: the pack deadline). ``strict``: every pack it
        writes is indexed by ``index-pack --strict`` (``git fetch-pack``
        with ``fetch.fsckObjects``), as :meth:`ingest_pack` indexes one.

        Raises:
            PackRejected: git failed or passed its deadline.
        """
        if self._migrated:
            raise StorageError("this quarantine was migrated already")
        self._verified = False
        self._strict = self._strict and strict
        limit = self._config.pack_timeout if timeout is None else timeout
        try:
            async with open_git(args, git_dir=self._repo, env=self.env, timeout=limit) as git:
                yield git
        except GitError as error:
            raise PackRejected(f"git {_command(args)}: {_why(error.stderr, str(error))}") from error

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

        The walk (``git rev-list --objects``) is spared for the oids the
        quarantine's packs hold when the repository itself holds no object
        (one made by this operation) and every pack here was indexed by
        ``index-pack --strict``: that checks that every object a pack's
        objects link to exists, and with nothing outside the quarantine,
        it exists here, so everything here is complete. ``git clone``
        skips its walk for the same reason (its pack is self-contained).

        Raises:
            NotConnected: an oid or an object it reaches is missing.
        """
        if self._migrated:
            raise StorageError("this quarantine was migrated already")
        wanted = [_check_oid(oid) for oid in oids]
        if wanted and self._strict:
            wanted = await trio.to_thread.run_sync(self._unlisted_unless_complete, wanted)
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

    def _unlisted_unless_complete(self, oids: list[str]) -> list[str]:
        """``oids`` less those a pack here holds, when everything here is
        complete (see :meth:`check_connected`); else ``oids``."""
        cut = [self._repo / "shallow", self._repo / "info" / "grafts"]  # parents git would not require
        if has_objects(self._repo / "objects") or has_loose_objects(self.path) or any(p.exists() for p in cut):
            return oids
        return unlisted(sorted((self.path / "pack").glob("pack-*.idx")), oids)

    async def migrate(self) -> None:
        """Move the quarantined objects into the repository. Only after
        :meth:`check_connected` succeeded (with no ingest since).

        ``.keep`` files (``git fetch-pack --lock-pack`` leaves one beside
        its pack) are removed first: a kept pack would never be repacked."""
        if self._migrated:
            raise StorageError("this quarantine was migrated already")
        if not self._verified:
            raise StorageError("quarantined objects migrate only after check_connected")
        self._migrated = True

        def migrate() -> None:
            for keep in (self.path / "pack").glob("*.keep"):
                keep.unlink()
            migrate_objects(self.path, self._repo / "objects")

        await trio.to_thread.run_sync(migrate)


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
