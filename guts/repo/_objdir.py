"""Object directories on disk: quarantined objects moving in, which
objects a pack index lists, and what a crash leaves behind.

Blocking file-system work, run by :mod:`guts.repo.storage` on a worker
thread. Nothing here runs git: git never learns of a file until it is
complete where git looks for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "CREATING", "QUARANTINE", "fsync_dir", "has_loose_objects", "has_objects", "migrate_objects", "recover",
    "unlisted",
]  # fmt: skip

log = logging.getLogger("guts.repo.storage")

#: Prefix of a repository being made (renamed to its RID once complete).
CREATING = ".creating-"
#: Prefix of a quarantine inside ``objects/`` (as ``git receive-pack``'s).
QUARANTINE = "incoming-"


def fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move(src: Path, dst: Path) -> None:
    """Move one object file, never replacing one already there: objects are
    named by their content (git's ``finalize_object_file`` does the same)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        pass
    except OSError:  # no hard links here: a rename, unless dst appeared
        if not dst.exists():
            os.rename(src, dst)
            return
    src.unlink()


def _pack_order(path: Path) -> tuple[int, str]:
    # git finds a pack through its .idx: the .idx goes last.
    return {".keep": 0, ".pack": 1, ".rev": 2, ".idx": 4}.get(path.suffix, 3), path.name


def migrate_objects(quarantine: Path, objects: Path) -> None:
    """Move every object of ``quarantine`` into ``objects``: loose objects,
    then packs (each ``.pack`` before its ``.idx``), then fsync the
    directories that changed, so the objects outlast a power cut before
    any ref names them. The quarantine's temporary files stay behind."""
    changed: set[Path] = set()
    for sub in sorted(quarantine.iterdir()):
        if sub.is_dir() and len(sub.name) == 2:
            (objects / sub.name).mkdir(exist_ok=True)
            for file in sorted(sub.iterdir()):
                if not file.name.startswith("tmp_"):
                    _move(file, objects / sub.name / file.name)
                    changed.add(objects / sub.name)
    packs = quarantine / "pack"
    if packs.is_dir():
        for file in sorted(packs.iterdir(), key=_pack_order):
            if file.name.startswith("pack-"):
                _move(file, objects / "pack" / file.name)
                changed.add(objects / "pack")
    for directory in sorted(changed) + ([objects] if changed else []):
        fsync_dir(directory)


#: A version 2 pack index starts with these 8 bytes (git's default since 1.5.2).
_IDX_V2 = b"\xfftOc\x00\x00\x00\x02"


class _Names:
    """The sorted object names of one pack index, as a sequence for
    :func:`bisect_left` (the 20-byte slice at each position)."""

    def __init__(self, table: bytes) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table) // 20

    def __getitem__(self, i: int) -> bytes:
        return self._table[20 * i : 20 * i + 20]


def unlisted(indexes: Iterable[Path], oids: Iterable[str]) -> list[str]:
    """The oids (full sha1 hex) that none of the version 2 pack indexes
    ``indexes`` lists, in order. An index that is missing, of another
    version, or cut short lists nothing: its oids stay unlisted (the
    caller then looks further, never less far)."""
    rest = list(oids)
    for idx in indexes:
        if not rest:
            break
        try:
            with open(idx, "rb") as file:
                head = file.read(8 + 256 * 4)
                if len(head) != 8 + 256 * 4 or head[:8] != _IDX_V2:
                    continue
                fanout = struct.unpack(">256I", head[8:])
                table = file.read(20 * fanout[255])
        except FileNotFoundError:
            continue
        if len(table) != 20 * fanout[255]:
            continue
        names = _Names(table)
        kept = []
        for oid in rest:
            raw = bytes.fromhex(oid)
            lo, hi = (fanout[raw[0] - 1] if raw[0] else 0), fanout[raw[0]]
            i = bisect_left(names, raw, lo, hi)
            if i >= hi or names[i] != raw:
                kept.append(oid)
        rest = kept
    return rest


def has_loose_objects(objects: Path) -> bool:
    """Whether the object directory ``objects`` holds a loose object (a
    fan-out directory that is not empty)."""
    return any(
        sub.is_dir() and len(sub.name) == 2 and any(True for _ in sub.iterdir()) for sub in objects.iterdir()
    )


def has_objects(objects: Path) -> bool:
    """Whether a repository's object directory ``objects`` holds or lends
    any object: a loose one, a pack file, an alternate, or anything this
    module does not know (counted as objects). Quarantines (``incoming-*``)
    do not count: git sees them only when told to."""
    for entry in objects.iterdir():
        if entry.name.startswith(QUARANTINE):
            continue
        if entry.name == "info" and entry.is_dir():
            if any(name.startswith("alternates") for name in os.listdir(entry)):
                return True
        elif entry.name == "pack" and entry.is_dir():
            if any(True for _ in entry.iterdir()):
                return True
        elif not (len(entry.name) == 2 and entry.is_dir() and not any(True for _ in entry.iterdir())):
            return True
    return False


def _remove(path: Path, what: str) -> None:
    log.info("storage: removing %s %s", what, path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(root: Path, is_repository: Callable[[str], bool]) -> None:
    """Delete what a crash left under ``root``: unfinished repositories,
    quarantines, pack files whose ``.idx`` never arrived (git never read
    them), temporary pack files, and lock files of refs and config. Only
    when nothing else writes there: at start."""
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(CREATING):
            _remove(entry, "an unfinished repository")
        elif is_repository(entry.name) and entry.is_dir():
            objects = entry / "objects"
            for sub in sorted(objects.glob(QUARANTINE + "*")):
                _remove(sub, "a stale quarantine")
            for file in sorted((objects / "pack").glob("pack-*")):
                if file.suffix != ".idx" and not file.with_suffix(".idx").exists():
                    _remove(file, "a pack file without its index")
            for file in sorted((objects / "pack").glob("tmp_*")):
                _remove(file, "a temporary pack file")
            for file in sorted([*entry.joinpath("refs").rglob("*.lock"), *entry.glob("*.lock")]):
                _remove(file, "a stale lock")
