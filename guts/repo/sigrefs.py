"""Signed ref statements: each publisher's whole ref set, signed.

Theory of operation
-------------------
Every peer that publishes into a repository has a namespace, and what its
namespace holds is one statement it signed. The statement is UTF-8 text,
not protobuf, so that any implementation can rebuild its bytes exactly::

    guts signed refs 1
    rid bafkrei…
    signer 12D3KooW…
    seq 2
    parent 3f2a…(64 hex digits, or "none" when seq is 1)
    identity 9c1e…(64 hex digits)
    <oid> refs/heads/main
    <oid> refs/tags/v1.0

Every line, the last included, ends with ``\\n``; no ``\\r``, no blank
line, single spaces. The fields:

- ``rid``: the repository, as :class:`~guts.repo.rid.Rid` writes it;
- ``signer``: the publisher's peer id in base58. It must inline an Ed25519
  key (``12D3KooW…``): the key that checks the signature comes from it;
- ``seq``: 1, 2, 3…, decimal without leading zeros, below 2**63;
- ``parent``: lowercase hex of the sha2-256 of the previous statement's
  bytes, ``none`` exactly when ``seq`` is 1;
- ``identity``: lowercase hex of the sha2-256 of the identity revision
  document the signer stood on (:attr:`~guts.repo.identity.Identity.digest`);
- then one line per ref, ``<oid> <name>``, sorted by the names' UTF-8
  bytes, each name once. Oids are 40 (sha1) or 64 (sha256) lowercase hex
  digits, all of one length in a statement, never all zeros. Names are
  ``refs/heads/*`` or ``refs/tags/*`` only (notes and other namespaces are
  left for a later format version), valid by
  :func:`~guts.repo.refname.refname_problem`; the part after the prefix
  is not ``HEAD`` and does not begin with ``-``; and no name is a
  directory of another (``refs/heads/a`` beside ``refs/heads/a/b``), since
  git could not store both. An empty ref set is a statement too: the signer
  dropped everything.

The statement's id is the sha2-256 of its bytes; the signature is Ed25519
over exactly those bytes (their first line keeps them apart from identity
signatures). On the wire and on disk a statement is the ``SignedRefs``
protobuf, which carries the bytes verbatim. Parsing checks every rule
above and then that rebuilding the statement gives its bytes back, so a
non-canonical text is refused rather than read two ways.

:func:`judge` decides what a verified statement does to the one stored
for its namespace: newer sequence numbers replace it; the same statement
again is ignored; an older one is refused as stale (a replay, or a peer out
of date); a different statement at the same sequence number is an
equivocation; the one right after the stored one must name it as parent
(a gap in the numbers is accepted: whole ref sets make the missing ones
moot, and no parent can be checked across it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, InputError, InvalidRefs
from guts.peer import PeerId
from guts.repo import _codec
from guts.repo.identity import Identity
from guts.repo.rid import Rid
from guts.repo.refname import refname_problem

__all__ = [
    "FORMAT_HEADER",
    "MAX_SEQ",
    "PUBLISHED_PREFIXES",
    "RefsLimits",
    "SignedStatement",
    "Statement",
    "Verdict",
    "judge",
    "next_statement",
    "ref_problem",
    "sign_statement",
]

#: First line of every statement: the format and its version.
FORMAT_HEADER = "guts signed refs 1"
#: The ref namespaces a statement may list.
PUBLISHED_PREFIXES = ("refs/heads/", "refs/tags/")
#: Largest sequence number (fits a signed 64-bit integer everywhere).
MAX_SEQ = (1 << 63) - 1

_FIELDS = ("rid", "signer", "seq", "parent", "identity")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SEQ = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True, slots=True)
class RefsLimits:
    """Bounds on statements from peers (and on our own, so that peers with
    the same limits take them).

    Args:
        max_refs: refs in one statement.
        max_bytes: bytes of one statement.
    """

    max_refs: int = 10_000
    max_bytes: int = 2 * 1024 * 1024


_DEFAULT_LIMITS = RefsLimits()


def ref_problem(name: str, oid: str) -> str | None:
    """Why ``oid name`` cannot appear in a statement, or ``None``."""
    if not isinstance(oid, str) or not _OID.fullmatch(oid):
        shown = oid if not isinstance(oid, str) or len(oid) <= 70 else oid[:67] + "..."
        return f"{shown!r} is not a lowercase hex object id of 40 or 64 digits"
    if oid.count("0") == len(oid):
        return "the all-zero object id is not an object"
    problem = refname_problem(name)
    if problem is not None:
        return problem
    prefix = next((p for p in PUBLISHED_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        return f"{name!r} is outside {' and '.join(p + '*' for p in PUBLISHED_PREFIXES)}"
    short = name[len(prefix):]
    if short == "HEAD" or short.startswith("-"):
        return f"{name!r}: a branch or tag is not HEAD and does not begin with '-'"
    return None


def _refs_problem(refs: tuple[tuple[str, str], ...]) -> str | None:
    """Every rule on the ref list of a statement, ``refs`` sorted."""
    previous = b""
    for name, oid in refs:
        problem = ref_problem(name, oid)
        if problem is not None:
            return problem
        encoded = name.encode()
        if encoded == previous:
            return f"{name!r} is listed twice"
        previous = encoded
    if len({len(oid) for _, oid in refs}) > 1:
        return "sha1 and sha256 object ids are mixed in one statement"
    names = {name for name, _ in refs}
    for name, _ in refs:
        cut = name.find("/", len("refs/x/"))
        while cut != -1:
            if name[:cut] in names:
                return f"{name[:cut]!r} and {name!r} are both listed; git cannot store a ref inside another"
            cut = name.find("/", cut + 1)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """A publisher's ref set in one repository (see the module docstring).

    ``refs`` may be given in any order; it is kept sorted by name bytes.
    :attr:`canonical` is the statement's text as bytes.

    Raises:
        InputError: a field breaks a rule (our own refs: a branch named in
            a way peers refuse, say).
    """

    rid: Rid
    signer: PeerId
    seq: int
    parent: bytes | None
    identity: bytes
    refs: tuple[tuple[str, str], ...] = ()
    canonical: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        refs = tuple(sorted(((n, o) for n, o in self.refs), key=lambda ref: ref[0].encode("utf-8", "replace")))
        object.__setattr__(self, "refs", refs)
        problem = self._problem()
        if problem is not None:
            raise InputError(problem)
        lines = [
            FORMAT_HEADER,
            f"rid {self.rid}",
            f"signer {self.signer}",
            f"seq {self.seq}",
            f"parent {self.parent.hex() if self.parent is not None else 'none'}",
            f"identity {self.identity.hex()}",
            *(f"{oid} {name}" for name, oid in refs),
        ]
        object.__setattr__(self, "canonical", ("\n".join(lines) + "\n").encode())

    def _problem(self) -> str | None:
        if not isinstance(self.rid, Rid) or not isinstance(self.signer, PeerId):
            return "a statement's rid is a Rid and its signer a PeerId"
        if PublicKey.from_peer_id(self.signer) is None:
            return f"signer {self.signer} is not an Ed25519 peer id that inlines its key"
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or not 1 <= self.seq <= MAX_SEQ:
            return f"seq {self.seq!r} is not between 1 and 2**63 - 1"
        if (self.parent is None) != (self.seq == 1):
            return "a statement has a parent exactly when its seq is above 1"
        if self.parent is not None and (not isinstance(self.parent, bytes) or len(self.parent) != 32):
            return "the parent is a 32-byte sha2-256 digest"
        if not isinstance(self.identity, bytes) or len(self.identity) != 32:
            return "the identity is a 32-byte sha2-256 digest"
        return _refs_problem(self.refs)

    @property
    def id(self) -> bytes:
        """sha2-256 of :attr:`canonical`: the next statement's parent."""
        return hashlib.sha256(self.canonical).digest()

    def ref_map(self) -> dict[str, str]:
        """The refs as a ``{name: oid}`` dict."""
        return dict(self.refs)

    def limit_problem(self, limits: RefsLimits = _DEFAULT_LIMITS) -> str | None:
        """Why this statement exceeds ``limits``, or ``None``."""
        if len(self.refs) > limits.max_refs:
            return f"{len(self.refs)} refs (limit {limits.max_refs})"
        if len(self.canonical) > limits.max_bytes:
            return f"{len(self.canonical)} bytes (limit {limits.max_bytes})"
        return None

    @classmethod
    def parse(cls, data: bytes, limits: RefsLimits = _DEFAULT_LIMITS) -> Statement:
        """Parse a statement's bytes, strictly.

        Raises:
            InvalidRefs: over a limit, or any departure from the canonical
                form; the message says which.
        """
        data = bytes(data)
        if len(data) > limits.max_bytes:
            raise InvalidRefs(f"ref statement of {len(data)} bytes (limit {limits.max_bytes})")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRefs("ref statement is not UTF-8") from None
        if not text.endswith("\n"):
            raise InvalidRefs("ref statement does not end with a newline")
        lines = text[:-1].split("\n")
        if lines[0] != FORMAT_HEADER:
            raise InvalidRefs(f"not a guts signed ref statement of version 1: {lines[0][:40]!r}")
        if len(lines) < 1 + len(_FIELDS):
            raise InvalidRefs("ref statement ends inside its header")
        if len(lines) - 1 - len(_FIELDS) > limits.max_refs:
            raise InvalidRefs(f"ref statement lists {len(lines) - 1 - len(_FIELDS)} refs (limit {limits.max_refs})")
        values = {}
        for number, (key, line) in enumerate(zip(_FIELDS, lines[1:]), 2):
            found, _, value = line.partition(" ")
            if found != key:
                raise InvalidRefs(f"line {number} of a ref statement is not its {key!r} line")
            values[key] = value
        try:
            rid = Rid.parse(values["rid"])
            signer = PeerId.from_string(values["signer"])
        except (InputError, DecodeError) as exc:
            raise InvalidRefs(f"ref statement header: {exc}") from None
        if not _SEQ.fullmatch(values["seq"]):
            raise InvalidRefs(f"ref statement seq {values['seq'][:40]!r} is not a decimal number from 1")
        parent = values["parent"]
        if parent != "none" and not _HEX64.fullmatch(parent):
            raise InvalidRefs("ref statement parent is neither 64 lowercase hex digits nor 'none'")
        if not _HEX64.fullmatch(values["identity"]):
            raise InvalidRefs("ref statement identity is not 64 lowercase hex digits")
        refs = []
        previous = b""
        for number, line in enumerate(lines[1 + len(_FIELDS):], 2 + len(_FIELDS)):
            oid, _, name = line.partition(" ")
            problem = ref_problem(name, oid)
            if problem is not None:
                raise InvalidRefs(f"line {number} of a ref statement: {problem}")
            encoded = name.encode()
            if encoded <= previous:
                what = "repeats" if encoded == previous else "is out of order after"
                raise InvalidRefs(f"line {number} of a ref statement {what} the ref before it")
            previous = encoded
            refs.append((name, oid))
        try:
            statement = cls(
                rid=rid,
                signer=signer,
                seq=int(values["seq"]),
                parent=None if parent == "none" else bytes.fromhex(parent),
                identity=bytes.fromhex(values["identity"]),
                refs=tuple(refs),
            )
        except InputError as exc:
            raise InvalidRefs(f"invalid ref statement: {exc}") from None
        if statement.canonical != data:
            raise InvalidRefs("ref statement is not in canonical form")
        return statement


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """A statement and its signer's signature, checked on construction: a
    :class:`SignedStatement` in hand is a validly signed one.

    Raises:
        InvalidRefs: the signature does not verify with the signer's key.
    """

    statement: Statement
    signature: bytes

    def __post_init__(self) -> None:
        statement = self.statement
        key = PublicKey.from_peer_id(statement.signer)
        if key is None or not key.verify(statement.canonical, self.signature):
            raise InvalidRefs(f"bad signature on the ref statement of {statement.signer} (seq {statement.seq})")

    @property
    def id(self) -> bytes:
        return self.statement.id

    def encode(self) -> bytes:
        """The ``SignedRefs`` protobuf, the statement's bytes verbatim."""
        return _codec.encode_signed_refs(self.statement.canonical, self.signature)

    @classmethod
    def decode(cls, data: bytes, limits: RefsLimits = _DEFAULT_LIMITS) -> SignedStatement:
        """Decode a ``SignedRefs`` a peer sent: parse the statement strictly
        and check its signature.

        Raises:
            InvalidRefs: malformed, over a limit, not canonical, or badly
                signed.
        """
        data = bytes(data)
        if len(data) > limits.max_bytes + 96:
            raise InvalidRefs(f"signed refs of {len(data)} bytes (limit {limits.max_bytes + 96})")
        try:
            statement, signature = _codec.decode_signed_refs(data)
        except DecodeError as exc:
            raise InvalidRefs(str(exc)) from None
        return cls(Statement.parse(statement, limits), signature)


def next_statement(
    previous: Statement | None,
    *,
    rid: Rid,
    signer: PeerId,
    identity: Identity,
    refs: Iterable[tuple[str, str]],
    limits: RefsLimits = _DEFAULT_LIMITS,
) -> Statement:
    """The statement that follows ``previous`` (``None``: the first) in
    ``signer``'s namespace of ``rid``, standing on identity revision
    ``identity`` and listing ``refs``.

    Raises:
        InputError: a ref peers would refuse, or over ``limits``.
        ValueError: ``previous`` is another namespace's or repository's.
    """
    if previous is not None and (previous.signer != signer or previous.rid != rid):
        raise ValueError("the previous statement is of another namespace or repository")
    statement = Statement(
        rid=rid,
        signer=signer,
        seq=1 if previous is None else previous.seq + 1,
        parent=None if previous is None else previous.id,
        identity=identity.digest,
        refs=tuple(refs),
    )
    problem = statement.limit_problem(limits)
    if problem is not None:
        raise InputError(f"the ref statement would be over a limit: {problem}")
    return statement


def sign_statement(signer: KeyPair, statement: Statement) -> SignedStatement:
    """Sign ``statement`` with ``signer``, whose namespace it must be.

    Raises:
        ValueError: ``statement.signer`` is not ``signer``'s peer id.
    """
    if signer.peer_id != statement.signer:
        raise ValueError(f"a statement of {statement.signer} cannot be signed by {signer.peer_id}")
    return SignedStatement(statement, signer.sign(statement.canonical))


class Verdict(Enum):
    """What a verified statement does to the one stored for its namespace."""

    ACCEPTED = "accepted"  # newer: it replaces the stored one
    UNCHANGED = "unchanged"  # the stored statement itself: nothing to do
    STALE = "stale"  # an older sequence number: a replay or an out-of-date peer
    EQUIVOCATION = "equivocation"  # another statement with the stored sequence number
    FORKED = "forked"  # the next number, but its parent is not the stored statement
    WRONG_SIGNER = "wrong signer"  # signed by someone other than the namespace's owner
    WRONG_RID = "wrong rid"  # a statement about another repository

    @property
    def refused(self) -> bool:
        """Whether the statement must not be applied (and the sender may be
        told why); :attr:`UNCHANGED` is not a refusal."""
        return self not in (Verdict.ACCEPTED, Verdict.UNCHANGED)


def judge(stored: Statement | None, incoming: Statement, *, rid: Rid, namespace: PeerId) -> Verdict:
    """Decide what ``incoming`` does in ``namespace`` of repository ``rid``,
    where ``stored`` is the statement held there now (``None``: none yet).

    Both statements are taken as verified (:class:`SignedStatement` checks
    signatures); this is about order and ownership only.

    Raises:
        ValueError: ``stored`` is not of ``namespace`` in ``rid``.
    """
    if stored is not None and (stored.signer != namespace or stored.rid != rid):
        raise ValueError("the stored statement is not of this namespace and repository")
    if incoming.rid != rid:
        return Verdict.WRONG_RID
    if incoming.signer != namespace:
        return Verdict.WRONG_SIGNER
    if stored is None:
        return Verdict.ACCEPTED
    if incoming.seq < stored.seq:
        return Verdict.STALE
    if incoming.seq == stored.seq:
        return Verdict.UNCHANGED if incoming.id == stored.id else Verdict.EQUIVOCATION
    if incoming.seq == stored.seq + 1 and incoming.parent != stored.id:
        return Verdict.FORKED
    return Verdict.ACCEPTED
