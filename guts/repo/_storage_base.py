"""What :mod:`guts.repo.storage` is made of besides its calls: the names a
RID and a ref may have, the fsck messages received objects may carry, the
settings of a new repository, the limits, and the errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

from guts.errors import GutsError, InvalidRid
from guts.repo.refname import refname_problem

__all__ = [
    "FSCK_LENIENT", "RID_PATTERN", "InvalidRefName", "NotConnected", "PackRejected", "RefUpdate",
    "RefUpdateRejected", "RepositoryExists", "RepositoryNotFound", "StorageConfig", "StorageError", "check_rid",
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
