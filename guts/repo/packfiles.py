"""A repository's objects as pack files, for a clone on the same machine.

A clone of a repository the node holds can skip git's pack negotiation
and ``index-pack`` altogether: the storage repository's own packs, with
their indexes, are what ``git clone`` of a local path hard-links (``git
clone --local``). :func:`pack_files` first packs the loose objects that
refs reach (``git repack -d``: the signed refs commits a publish writes
loose), so that the packs hold every object the refs reach, then names
each ``.pack`` and its ``.idx``.

Every object of the storage repository was checked when it arrived
(``index-pack --strict`` with fsck, in a quarantine) and the repository is
connected by construction (every write checks it before a ref moves; the
node verifies it at start), so a clone made of these packs is complete:
``git-remote-guts`` may tell git ``connectivity-ok``. A repack may run
beside the node's other work on the repository: git's packs and loose
objects are made for that (it is what ``git gc`` does under a busy
server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio

from guts.repo._git import run_git
from guts.repo.storage import RepositoryNotFound, Storage

__all__ = ["PackFile", "pack_files"]


@dataclass(frozen=True, slots=True)
class PackFile:
    """One pack of a repository: its ``.pack``, its ``.idx``, and the
    pack's size in bytes."""

    pack: Path
    index: Path
    size: int


async def pack_files(storage: Storage, rid: str) -> list[PackFile]:
    """Every pack of the repository ``rid`` after its loose objects that
    refs reach are packed; the biggest first.

    Raises:
        RepositoryNotFound: the storage has no such repository.
        GitError: git failed.
    """
    if not await storage.exists(rid):
        raise RepositoryNotFound(f"no repository {rid}")
    path = storage.path(rid)
    timeout = storage.config.pack_timeout
    counts = await run_git(["count-objects", "-v"], git_dir=path, timeout=timeout, max_output=4096)
    loose = dict(line.split(": ", 1) for line in counts.decode().splitlines() if ": " in line)
    if loose.get("count", "0") != "0":
        await run_git(["repack", "-d", "-q", "--no-write-bitmap-index"], git_dir=path, timeout=timeout,
                      max_output=64 * 1024)  # fmt: skip

    def scan() -> list[PackFile]:
        found = []
        for index in (path / "objects" / "pack").glob("pack-*.idx"):
            pack = index.with_suffix(".pack")
            if pack.is_file():
                found.append(PackFile(pack, index, pack.stat().st_size))
        return sorted(found, key=lambda f: (-f.size, f.pack.name))

    return await trio.to_thread.run_sync(scan)
