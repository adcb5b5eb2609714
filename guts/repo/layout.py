"""Where a repository's signed state lives in its storage repository.

Theory of operation
-------------------
Repository ``<RID>`` is the bare repository ``GUTS_HOME/storage/<RID>``
(:mod:`guts.repo.storage`). Its refs are a pure function of its verified
signed state, and this module says which:

======================================  ==========================================
``refs/heads/*``, ``refs/tags/*``       the canonical refs: what the delegates'
                                        latest statements agree on
                                        (:mod:`guts.repo.canonical`)
``refs/guts/<peer>/heads/*``,           namespace ``<peer>``'s signed refs: the
``refs/guts/<peer>/tags/*``             oids its latest verified statement lists
``refs/guts/<peer>/sigrefs``            namespace ``<peer>``'s statement chain
``refs/guts/identity``                  the identity chain
``refs/guts/proposals/<id>``            a pending identity revision
                                        (:mod:`guts.repo.proposals`): ``<id>``
                                        is the hex of its document's sha2-256
``HEAD``                                ``refs/heads/<default branch>`` (symbolic)
======================================  ==========================================

``<peer>`` is the publisher's peer id in base58 (``12D3KooW…``), exactly
as :class:`~guts.peer.PeerId` writes it. The layout owns the whole
``refs/`` hierarchy: a ref it does not describe is covered by no signature,
and is removed when the repository's refs are repaired.

Both chains are commit chains, one commit per signed object, written the
same way by every node, so that nodes holding the same statements hold the
same commits and git's negotiation finds them in common:

- a **sigrefs commit** records one statement. Its tree holds two blobs,
  ``signature`` (the 64-byte Ed25519 signature) and ``statement`` (the
  statement's canonical bytes, :attr:`~guts.repo.sigrefs.Statement.canonical`);
  its parent is the commit of the statement its ``parent`` field names
  (none for seq 1); its message is ``guts signed refs: seq <seq>``.
- an **identity commit** records one revision. Its tree holds one blob,
  ``revision``: the ``SignedRevision`` protobuf
  (:meth:`~guts.repo.identity.SignedRevision.encode`, the document's bytes
  verbatim and the signatures collected for it), decoded by the same strict
  decoder as a peer's; its parent is the previous revision's commit (none
  for the genesis); its message is ``guts identity: revision <n>``, ``n``
  counting from 1 at the genesis.

- a **proposal commit** records one pending revision
  (:mod:`guts.repo.proposals`) with the signatures collected so far: the
  same ``revision`` blob as an identity commit, its parent the identity
  chain's head commit (the revision it would follow), its message
  ``guts identity: proposed revision <n>``, ``n`` the number it would
  take. Nodes build it from the revision, as they build chain commits;
  when the signatures change, so does the commit, and when the chain's
  head moves the proposal (stale then) and its ref go.

All have author and committer ``Guts <guts@invalid>``, the time zone
``+0000`` and, as the date, the sequence or revision number (capped at
:data:`MAX_DATE`), so ``git log`` of a chain reads in order and no clock is
involved. Blobs and trees use mode ``100644`` and git's entry order.

The objects are built here as bytes (:class:`GitObject`, with their sha1
oids) and handed to git as a pack (:func:`encode_pack`) through a
quarantine's ``index-pack --strict``, like any received pack: nothing is
written outside a quarantine before it is checked. Reading a chain back,
the caller recomputes each commit from the blobs it read and compares the
bytes (:func:`sigrefs_commit`, :func:`identity_commit`), so a commit that
is not exactly the layout's (another tree, extra entries, another author)
is refused.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from guts.errors import InputError
from guts.peer import PeerId
from guts.repo.identity import SignedRevision
from guts.repo.sigrefs import PUBLISHED_PREFIXES, SignedStatement, Statement

__all__ = [
    "AUTHOR",
    "IDENTITY_REF",
    "MAX_DATE",
    "NAMESPACES",
    "PROPOSALS",
    "GitObject",
    "LayoutCommit",
    "LayoutRef",
    "RefKind",
    "commit_parents",
    "encode_pack",
    "identity_commit",
    "namespace_prefix",
    "namespace_ref",
    "parse_ref",
    "proposal_commit",
    "proposal_ref",
    "sigrefs_commit",
    "sigrefs_ref",
    "state_refs",
]

#: The identity chain's ref.
IDENTITY_REF = "refs/guts/identity"
#: Where pending identity revisions live: ``refs/guts/proposals/<id>``.
PROPOSALS = "refs/guts/proposals/"
#: Where the namespaces live: ``refs/guts/<peer>/...``.
NAMESPACES = "refs/guts/"
#: Author and committer of every layout commit.
AUTHOR = "Guts <guts@invalid>"
#: Latest commit date a layout commit carries: a sequence number past it
#: (peers may skip numbers) would otherwise overflow git's time type, and
#: ``fsck`` would refuse the commit.
MAX_DATE = (1 << 34) - 1

_SIGREFS = "sigrefs"
_PROPOSAL_ID = re.compile(r"[0-9a-f]{64}")
_TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
_FILE_MODE = b"100644"


class RefKind(Enum):
    """What a ref of the layout holds."""

    CANONICAL = "canonical"  # refs/heads/*, refs/tags/*
    SIGNED = "signed"  # refs/guts/<peer>/heads/*, refs/guts/<peer>/tags/*
    SIGREFS = "sigrefs"  # refs/guts/<peer>/sigrefs
    IDENTITY = "identity"  # refs/guts/identity
    PROPOSAL = "proposal"  # refs/guts/proposals/<id>


@dataclass(frozen=True, slots=True)
class LayoutRef:
    """A ref name read back: its kind, its namespace (``SIGNED`` and
    ``SIGREFS``), and, for ``CANONICAL`` and ``SIGNED``, the published
    name (``refs/heads/main`` for ``refs/guts/<peer>/heads/main``); for
    ``PROPOSAL``, the proposal's id."""

    kind: RefKind
    namespace: PeerId | None = None
    name: str | None = None


def proposal_ref(pid: str) -> str:
    """``refs/guts/proposals/<pid>``.

    Raises:
        ValueError: ``pid`` is not 64 lowercase hex digits.
    """
    if not _PROPOSAL_ID.fullmatch(pid):
        raise ValueError(f"not a proposal id: {pid!r:.80}")
    return PROPOSALS + pid


def namespace_prefix(peer: PeerId) -> str:
    """``refs/guts/<peer>/``."""
    return f"{NAMESPACES}{peer}/"


def sigrefs_ref(peer: PeerId) -> str:
    """``refs/guts/<peer>/sigrefs``."""
    return namespace_prefix(peer) + _SIGREFS


def namespace_ref(peer: PeerId, name: str) -> str:
    """Where ``peer``'s signed ``name`` (``refs/heads/main``) is stored:
    ``refs/guts/<peer>/heads/main``.

    Raises:
        ValueError: ``name`` is not under ``refs/heads/`` or ``refs/tags/``.
    """
    if not name.startswith(PUBLISHED_PREFIXES):
        raise ValueError(f"{name!r:.80} is not a published ref")
    return namespace_prefix(peer) + name[len("refs/"):]


def _peer(text: str) -> PeerId | None:
    """The peer id ``text`` writes, when it is written as the layout does."""
    if not text.startswith(("12D3KooW", "Qm")):
        return None
    try:
        peer = PeerId.from_string(text)
    except (InputError, ValueError):
        return None
    return peer if str(peer) == text else None


def _published(name: str) -> bool:
    return any(name.startswith(prefix) and len(name) > len(prefix) for prefix in PUBLISHED_PREFIXES)


def parse_ref(name: str) -> LayoutRef | None:
    """What the ref ``name`` is in the layout, or ``None`` when the layout
    has no place for it (such a ref is covered by no signature)."""
    if _published(name):
        return LayoutRef(RefKind.CANONICAL, None, name)
    if name == IDENTITY_REF:
        return LayoutRef(RefKind.IDENTITY)
    if name.startswith(PROPOSALS):
        pid = name[len(PROPOSALS):]
        return LayoutRef(RefKind.PROPOSAL, None, pid) if _PROPOSAL_ID.fullmatch(pid) else None
    if not name.startswith(NAMESPACES):
        return None
    text, _, rest = name[len(NAMESPACES):].partition("/")
    peer = _peer(text)
    if peer is None:
        return None
    if rest == _SIGREFS:
        return LayoutRef(RefKind.SIGREFS, peer)
    published = "refs/" + rest
    if _published(published):
        return LayoutRef(RefKind.SIGNED, peer, published)
    return None


def state_refs(
    identity: str,
    namespaces: Mapping[PeerId, tuple[str, Statement]],
    canonical: Iterable[tuple[str, str]],
) -> dict[str, str]:
    """Every ref of a repository whose identity chain ends at commit
    ``identity``, whose namespaces are ``{peer: (sigrefs commit, latest
    statement)}``, and whose canonical refs are ``canonical``."""
    refs = {IDENTITY_REF: identity}
    for peer, (commit, statement) in namespaces.items():
        refs[sigrefs_ref(peer)] = commit
        for name, oid in statement.refs:
            refs[namespace_ref(peer, name)] = oid
    refs.update(canonical)
    return refs


# -- git objects -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitObject:
    """A loose git object: its type (``blob``, ``tree``, ``commit``) and
    body; :attr:`oid` is its sha1 object id."""

    kind: str
    body: bytes
    oid: str = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in _TYPES:
            raise ValueError(f"not a git object type: {self.kind!r}")
        header = f"{self.kind} {len(self.body)}\0".encode()
        object.__setattr__(self, "oid", hashlib.sha1(header + self.body, usedforsecurity=False).hexdigest())


@dataclass(frozen=True, slots=True)
class LayoutCommit:
    """A layout commit and the objects it needs (blobs, tree, the commit
    last); :attr:`oid` is the commit's."""

    objects: tuple[GitObject, ...]

    @property
    def commit(self) -> GitObject:
        return self.objects[-1]

    @property
    def oid(self) -> str:
        return self.commit.oid


def _tree(entries: Mapping[str, GitObject]) -> GitObject:
    # git sorts entries by name; a blob's name sorts as itself (trees as name + "/").
    body = b"".join(
        _FILE_MODE + b" " + name.encode() + b"\0" + bytes.fromhex(entries[name].oid)
        for name in sorted(entries, key=str.encode)
    )
    return GitObject("tree", body)


def _commit(tree: GitObject, parent: str | None, date: int, message: str) -> GitObject:
    ident = f"{AUTHOR} {min(date, MAX_DATE)} +0000"
    lines = [f"tree {tree.oid}"]
    if parent is not None:
        lines.append(f"parent {parent}")
    lines += [f"author {ident}", f"committer {ident}", "", message]
    return GitObject("commit", ("\n".join(lines) + "\n").encode())


def _layout_commit(blobs: Mapping[str, bytes], parent: str | None, date: int, message: str) -> LayoutCommit:
    if parent is not None and (len(parent) != 40 or parent.strip("0123456789abcdef")):
        raise ValueError(f"not a sha1 object id: {parent!r:.80}")
    objects = {name: GitObject("blob", data) for name, data in blobs.items()}
    tree = _tree(objects)
    return LayoutCommit((*objects.values(), tree, _commit(tree, parent, date, message)))


def sigrefs_commit(signed: SignedStatement, parent: str | None) -> LayoutCommit:
    """The commit that records ``signed`` in its namespace's chain, on top of
    ``parent``, the commit of the statement its ``parent`` field names
    (``None`` for seq 1).

    Raises:
        ValueError: a parent is given for seq 1 or missing above it.
    """
    seq = signed.statement.seq
    if (parent is None) != (seq == 1):
        raise ValueError("a sigrefs commit has a parent exactly when its seq is above 1")
    blobs = {"signature": signed.signature, "statement": signed.statement.canonical}
    return _layout_commit(blobs, parent, seq, f"guts signed refs: seq {seq}")


def identity_commit(revision: SignedRevision, number: int, parent: str | None) -> LayoutCommit:
    """The commit that records identity revision ``number`` (1: the
    genesis) on top of ``parent``, the previous revision's commit.

    Raises:
        ValueError: a parent is given for the genesis or missing after it.
    """
    if number < 1 or (parent is None) != (number == 1):
        raise ValueError("an identity commit has a parent exactly when it is not the genesis (revision 1)")
    return _layout_commit({"revision": revision.encode()}, parent, number, f"guts identity: revision {number}")


def proposal_commit(revision: SignedRevision, number: int, parent: str) -> LayoutCommit:
    """The commit that records ``revision``, pending, as the would-be
    revision ``number`` on top of ``parent``, the identity chain's head
    commit."""
    if number < 2:
        raise ValueError("a proposed revision follows the genesis at least (revision 2 or later)")
    return _layout_commit({"revision": revision.encode()}, parent, number, f"guts identity: proposed revision {number}")


def commit_parents(body: bytes) -> list[str]:
    """The parents a commit's body names (its header's ``parent`` lines).

    Raises:
        ValueError: the body does not begin with a tree line.
    """
    header, _, _ = body.partition(b"\n\n")
    lines = header.split(b"\n")
    if not lines[0].startswith(b"tree "):
        raise ValueError("not a commit: no tree line")
    return [line[7:].decode("ascii", "replace") for line in lines[1:] if line.startswith(b"parent ")]


def _pack_header(kind: str, size: int) -> bytes:
    byte = (_TYPES[kind] << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def encode_pack(objects: Iterable[GitObject]) -> bytes:
    """A version 2 git pack of ``objects``, whole (no deltas): what
    ``index-pack`` reads to store them."""
    items = list(objects)
    parts = [b"PACK", struct.pack(">II", 2, len(items))]
    for item in items:
        parts.append(_pack_header(item.kind, len(item.body)))
        parts.append(zlib.compress(item.body))
    data = b"".join(parts)
    return data + hashlib.sha1(data, usedforsecurity=False).digest()
