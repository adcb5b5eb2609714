"""Announcements of repositories on gossip: their topics, codec and checks.

Theory of operation
-------------------
Two kinds of gossipsub message (``proto/announce.proto``) tell the network
that a repository changed:

- :class:`RefsAnnounced` (the design's NewCommit), on the repository's own
  topic (:func:`refs_topic`, ``guts/repo/<RID>``): a signer's new signed
  ref statement, the ``SignedRefs`` protobuf verbatim, and the commit that
  records it in the announcer's sigrefs chain;
- :class:`RepositoryAnnounced` (the design's NewRepository), on the one
  network-wide topic :data:`REPOSITORIES_TOPIC` (``guts/repos``): a new
  repository's identity chain, genesis first.

A relay is never trusted. Everything an announcement claims is signed by
the person it speaks for, and :func:`check_announcement` verifies it before
the message is delivered or forwarded: the statement's Ed25519 signature
(:meth:`~guts.repo.sigrefs.SignedStatement.decode`) and that it is about
the announced repository, which is the topic's; the identity chain against
the RID (:func:`~guts.repo.revisions.verify_chain`). Only the sigrefs oid is
the announcer's word; a fetch checks it like everything else it receives.

Whether a checked statement is news is :func:`is_newer`'s business, by
:func:`~guts.repo.sigrefs.judge` against what the node holds for that
namespace: an older or equal statement is not (relays lag: no offence), a
different statement with the held sequence number or a fork of it is an
equivocation by its signer, refused like a forgery.

:func:`assess` puts it together for a gossip validator (the adapter in
:mod:`guts.replicate.validator`): bytes and topic in, an :class:`Assessment`
out (accept, ignore or reject, and why). No trio, no clock.

Bounds (:class:`AnnounceLimits`): a message's bytes (gossip's own default
message size), the statement by the repository's
:class:`~guts.repo.sigrefs.RefsLimits`, each revision by its
:class:`~guts.repo.identity.IdentityLimits`, and the revisions and
signatures one announcement may make a node verify. A repository whose
statement or identity chain is larger than one message is not announced;
peers learn of it through sync.

The encoding is canonical (fields in number order, each at most once,
defaults left out, no unknown fields, exactly one kind): re-encoding a
decoded announcement gives its bytes back, or it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, TypeAlias

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import DecodeError, InputError, InvalidIdentity, InvalidRefs
from guts.pb import announce_pb2
from guts.peer import PeerId
from guts.repo.identity import IdentityLimits, SignedRevision
from guts.repo.revisions import VerifiedIdentity, verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import RefsLimits, SignedStatement, Statement, Verdict, judge

__all__ = [
    "REFS_TOPIC_PREFIX",
    "REPOSITORIES_TOPIC",
    "AnnounceLimits",
    "Announcement",
    "Assessment",
    "ConflictingStatement",
    "ForgedAnnouncement",
    "HeldStatement",
    "InvalidAnnouncement",
    "MisdirectedAnnouncement",
    "Outcome",
    "OversizedAnnouncement",
    "RefsAnnounced",
    "RepositoryAnnounced",
    "Verified",
    "VerifiedRefs",
    "VerifiedRepository",
    "announce_refs",
    "announce_repository",
    "assess",
    "check_announcement",
    "decode_announcement",
    "encode_announcement",
    "is_newer",
    "refs_topic",
    "topic_of",
    "topic_rid",
]

#: Prefix of a repository's own topic: ``guts/repo/<RID>``.
REFS_TOPIC_PREFIX = "guts/repo/"
#: The network-wide topic of new repositories.
REPOSITORIES_TOPIC = "guts/repos"

_MAX_RID = 128  # a RID as Guts writes it is 59 characters
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


# ---------------------------------------------------------------- errors


class InvalidAnnouncement(DecodeError):
    """An announcement a peer sent breaks a rule: a gossip validator rejects
    it, which charges the peer that sent it (P4). :attr:`reason` is a short
    word for log lines and counters; the message says exactly why."""

    reason: ClassVar[str] = "malformed"


class OversizedAnnouncement(InvalidAnnouncement):
    """Over an :class:`AnnounceLimits` bound."""

    reason: ClassVar[str] = "oversized"


class ForgedAnnouncement(InvalidAnnouncement):
    """What the announcement carries does not verify: a statement badly
    signed or not canonical, an identity chain that breaks its rules."""

    reason: ClassVar[str] = "forged"


class MisdirectedAnnouncement(InvalidAnnouncement):
    """Parts that do not belong together: a statement about another
    repository than the announced one, an announcement on another
    repository's topic or on the wrong kind of topic."""

    reason: ClassVar[str] = "mismatched"


class ConflictingStatement(InvalidAnnouncement):
    """A validly signed statement that contradicts the one held for its
    namespace: the same sequence number with other content, or the next
    number with another parent. Its signer equivocated."""

    reason: ClassVar[str] = "equivocation"


# ---------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class AnnounceLimits:
    """Bounds on announcements from peers (and on our own, so that peers
    with the same limits take them).

    Args:
        max_message: bytes of one announcement; gossipsub's default
            ``max_message_size`` (1 MiB), since a larger one would not
            travel anyway.
        max_revisions: identity revisions in one :class:`RepositoryAnnounced`
            (at most ``identity.max_revisions``): a new repository has one,
            and each costs signature checks before the message moves on.
        max_signatures: signatures over the whole chain of one
            :class:`RepositoryAnnounced`: what one message may make a node
            verify.
        refs: bounds on the announced statement (the repository's own).
        identity: bounds on each revision (the repository's own).
    """

    max_message: int = 1 << 20
    max_revisions: int = 32
    max_signatures: int = 128
    refs: RefsLimits = field(default_factory=RefsLimits)
    identity: IdentityLimits = field(default_factory=IdentityLimits)

    def __post_init__(self) -> None:
        if self.max_message < 1 or self.max_signatures < 1:
            raise ValueError("announcement limits are positive")
        if not 1 <= self.max_revisions <= self.identity.max_revisions:
            raise ValueError("max_revisions is between 1 and the identity limits' max_revisions")


_DEFAULT_LIMITS = AnnounceLimits()


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class RefsAnnounced:
    """A signer's new statement in repository :attr:`rid`.

    Args:
        rid: the repository.
        statement: the ``SignedRefs`` protobuf, as
            :meth:`~guts.repo.sigrefs.SignedStatement.encode` writes it
            (not yet verified: see :func:`check_announcement`).
        sigrefs: hex oid of the commit that records it in the announcer's
            sigrefs chain.
    """

    rid: Rid
    statement: bytes
    sigrefs: str


@dataclass(frozen=True, slots=True)
class RepositoryAnnounced:
    """A repository new on the network.

    Args:
        rid: the repository.
        identity: its identity chain, genesis first, as ``SignedRevision``
            protobufs (not yet verified: see :func:`check_announcement`).
    """

    rid: Rid
    identity: tuple[bytes, ...]


Announcement: TypeAlias = RefsAnnounced | RepositoryAnnounced


def announce_refs(signed: SignedStatement, sigrefs: str) -> RefsAnnounced:
    """The announcement of our own new statement ``signed``, recorded by
    the sigrefs commit ``sigrefs``."""
    return RefsAnnounced(signed.statement.rid, signed.encode(), sigrefs)


def announce_repository(chain: Sequence[SignedRevision]) -> RepositoryAnnounced:
    """The announcement of a repository whose identity chain is ``chain``
    (genesis first); its RID is the genesis's.

    Raises:
        ValueError: ``chain`` is empty.
    """
    if not chain:
        raise ValueError("a repository is announced with its identity chain, genesis first")
    return RepositoryAnnounced(Rid.of_genesis(chain[0].document.raw), tuple(r.encode() for r in chain))


# ---------------------------------------------------------------- topics


def refs_topic(rid: Rid) -> str:
    """The topic of ``rid``'s refs announcements: ``guts/repo/<RID>``."""
    return REFS_TOPIC_PREFIX + str(rid)


def topic_rid(topic: str) -> Rid | None:
    """The repository whose refs topic ``topic`` is, or ``None`` when it is
    not one (the RID written as :func:`refs_topic` writes it)."""
    if not topic.startswith(REFS_TOPIC_PREFIX) or len(topic) > len(REFS_TOPIC_PREFIX) + _MAX_RID:
        return None
    text = topic[len(REFS_TOPIC_PREFIX):]
    try:
        rid = Rid.parse(text)
    except InputError:
        return None
    return rid if str(rid) == text else None


def topic_of(announcement: Announcement) -> str:
    """The topic ``announcement`` is published on."""
    if isinstance(announcement, RefsAnnounced):
        return refs_topic(announcement.rid)
    return REPOSITORIES_TOPIC


# ---------------------------------------------------------------- codec


def encode_announcement(announcement: Announcement) -> bytes:
    """The ``Announcement`` protobuf, in the canonical encoding."""
    msg = announce_pb2.Announcement()
    if isinstance(announcement, RefsAnnounced):
        msg.refs.SetInParent()
        msg.refs.rid = str(announcement.rid)
        msg.refs.statement = announcement.statement
        msg.refs.sigrefs = announcement.sigrefs
    else:
        msg.repository.SetInParent()
        msg.repository.rid = str(announcement.rid)
        msg.repository.identity.extend(announcement.identity)
    return msg.SerializeToString(deterministic=True)


def _rid(text: str) -> Rid:
    if len(text) > _MAX_RID:
        raise InvalidAnnouncement(f"a rid of {len(text)} characters")
    try:
        rid = Rid.parse(text)
    except InputError as exc:
        raise InvalidAnnouncement(f"announced rid: {exc}") from None
    if str(rid) != text:
        raise InvalidAnnouncement(f"announced rid {text!r} is not written as Guts writes it ({rid})")
    return rid


def decode_announcement(data: bytes, limits: AnnounceLimits = _DEFAULT_LIMITS) -> Announcement:
    """Decode an announcement a peer sent, strictly. Nothing is verified
    yet (:func:`check_announcement` does that); every field is bounded.

    Raises:
        OversizedAnnouncement: over a limit.
        InvalidAnnouncement: not an ``Announcement`` in the canonical
            encoding, no kind, a rid that is not one, a sigrefs that is not
            a hex oid.
    """
    data = bytes(data)
    if len(data) > limits.max_message:
        raise OversizedAnnouncement(f"an announcement of {len(data)} bytes (limit {limits.max_message})")
    msg = announce_pb2.Announcement()
    try:
        msg.ParseFromString(data)
    except _PbDecodeError as exc:
        raise InvalidAnnouncement(f"not an announcement: {exc}") from None
    kind = msg.WhichOneof("kind")
    if kind is None:
        raise InvalidAnnouncement("an announcement of no known kind")
    msg.DiscardUnknownFields()  # serializing would keep them otherwise
    if msg.SerializeToString(deterministic=True) != data:
        raise InvalidAnnouncement("announcement not in the canonical encoding (unknown or repeated fields?)")
    announcement: Announcement
    if kind == "refs":
        refs = msg.refs
        statement_bound = limits.refs.max_bytes + 96
        if len(refs.statement) > statement_bound:
            raise OversizedAnnouncement(
                f"an announced statement of {len(refs.statement)} bytes (limit {statement_bound})"
            )
        if not _OID.fullmatch(refs.sigrefs) or refs.sigrefs.count("0") == len(refs.sigrefs):
            shown = refs.sigrefs if len(refs.sigrefs) <= 70 else refs.sigrefs[:67] + "..."
            raise InvalidAnnouncement(f"announced sigrefs {shown!r} is not a hex object id of 40 or 64 digits")
        announcement = RefsAnnounced(_rid(refs.rid), bytes(refs.statement), refs.sigrefs)
    else:
        repository = msg.repository
        if not repository.identity:
            raise InvalidAnnouncement("a repository announced without its identity chain")
        if len(repository.identity) > limits.max_revisions:
            raise OversizedAnnouncement(
                f"an identity chain of {len(repository.identity)} revisions (limit {limits.max_revisions})"
            )
        announcement = RepositoryAnnounced(_rid(repository.rid), tuple(bytes(r) for r in repository.identity))
    return announcement


# ---------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class VerifiedRefs:
    """A checked :class:`RefsAnnounced`: :attr:`signed` is validly signed by
    its signer and about :attr:`rid`."""

    rid: Rid
    signed: SignedStatement
    sigrefs: str

    @property
    def statement(self) -> Statement:
        return self.signed.statement


@dataclass(frozen=True, slots=True)
class VerifiedRepository:
    """A checked :class:`RepositoryAnnounced`: :attr:`chain` verifies
    against :attr:`rid`, and :attr:`identity` is its head."""

    rid: Rid
    identity: VerifiedIdentity
    chain: tuple[SignedRevision, ...]


Verified: TypeAlias = VerifiedRefs | VerifiedRepository


def check_announcement(
    announcement: Announcement, topic: str, limits: AnnounceLimits = _DEFAULT_LIMITS
) -> Verified:
    """Verify ``announcement``, received on ``topic``, without trusting the
    peer that relayed it (see the module docstring).

    Raises:
        MisdirectedAnnouncement: a refs announcement not on its
            repository's topic, or whose statement is about another
            repository; a repository announcement not on
            :data:`REPOSITORIES_TOPIC`; a sigrefs oid of another hash
            than the statement's oids.
        ForgedAnnouncement: the statement does not parse or verify, or the
            identity chain does not verify against the RID.
        OversizedAnnouncement: the chain carries more signatures than
            ``limits.max_signatures``.
    """
    if isinstance(announcement, RefsAnnounced):
        return _check_refs(announcement, topic, limits)
    return _check_repository(announcement, topic, limits)


def _check_refs(announcement: RefsAnnounced, topic: str, limits: AnnounceLimits) -> VerifiedRefs:
    rid = announcement.rid
    if topic != refs_topic(rid):
        raise MisdirectedAnnouncement(f"refs of {rid} announced on topic {topic[:120]!r}")
    try:
        signed = SignedStatement.decode(announcement.statement, limits.refs)
    except InvalidRefs as exc:
        raise ForgedAnnouncement(f"announced statement for {rid}: {exc}") from None
    statement = signed.statement
    if statement.rid != rid:
        raise MisdirectedAnnouncement(f"a statement about {statement.rid} announced for {rid}")
    if statement.refs and len(statement.refs[0][1]) != len(announcement.sigrefs):
        raise MisdirectedAnnouncement(
            f"the sigrefs oid of the statement of {statement.signer} (seq {statement.seq}) in {rid} "
            "is of another hash than its refs"
        )
    return VerifiedRefs(rid, signed, announcement.sigrefs)


def _check_repository(announcement: RepositoryAnnounced, topic: str, limits: AnnounceLimits) -> VerifiedRepository:
    rid = announcement.rid
    if topic != REPOSITORIES_TOPIC:
        raise MisdirectedAnnouncement(
            f"repository {rid} announced on topic {topic[:120]!r}, not {REPOSITORIES_TOPIC!r}"
        )
    if len(announcement.identity) > limits.max_revisions:
        raise OversizedAnnouncement(
            f"an identity chain of {len(announcement.identity)} revisions (limit {limits.max_revisions})"
        )
    chain = []
    signatures = 0
    for position, encoded in enumerate(announcement.identity, 1):
        try:
            revision = SignedRevision.decode(encoded, limits.identity)
        except InvalidIdentity as exc:
            raise ForgedAnnouncement(f"identity revision {position} of announced {rid}: {exc}") from None
        signatures += len(revision.signatures)
        if signatures > limits.max_signatures:
            raise OversizedAnnouncement(
                f"the identity chain of announced {rid} carries over {limits.max_signatures} signatures"
            )
        chain.append(revision)
    try:
        head = verify_chain(rid, chain, limits.identity)
    except InvalidIdentity as exc:
        raise ForgedAnnouncement(f"identity chain of announced {rid}: {exc}") from None
    return VerifiedRepository(rid, head, tuple(chain))


def is_newer(held: Statement | None, announced: Statement) -> bool:
    """Whether ``announced`` (verified) is news next to ``held``, the
    statement the node holds for its namespace (``None``: none).

    Stale, replayed and equal statements are not (a relay lagging behind is
    no offence).

    Raises:
        ConflictingStatement: ``announced`` equivocates with ``held`` (same
            sequence number, other content) or forks it (the next number,
            another parent).
        ValueError: ``held`` is not of ``announced``'s namespace.
    """
    verdict = judge(held, announced, rid=announced.rid, namespace=announced.signer)
    if verdict is Verdict.ACCEPTED:
        return True
    if verdict in (Verdict.UNCHANGED, Verdict.STALE):
        return False
    seq = announced.seq
    if verdict is Verdict.EQUIVOCATION:
        raise ConflictingStatement(
            f"{announced.signer} signed two different statements with seq {seq} in {announced.rid}"
        )
    raise ConflictingStatement(
        f"the statement of {announced.signer} with seq {seq} in {announced.rid} does not follow "
        f"the one with seq {seq - 1}: its parent is another"
    )


# ---------------------------------------------------------------- the validator's decision


class Outcome(Enum):
    """What gossip should do with an announcement (the validator's verdict)."""

    ACCEPT = "accept"  # news: deliver and forward
    IGNORE = "ignore"  # valid but not news: drop, charge nobody
    REJECT = "reject"  # breaks a rule: drop, charge the sender


#: What the node holds for a namespace: ``held(rid, signer)`` is the
#: verified statement stored for ``signer`` in ``rid``, or ``None``.
HeldStatement = Callable[[Rid, PeerId], Statement | None]


@dataclass(frozen=True, slots=True)
class Assessment:
    """The decision on one announcement.

    Attributes:
        outcome: accept, ignore or reject.
        verified: the checked announcement (``None`` when rejected).
        reason: a short word for log lines and counters (an
            :attr:`InvalidAnnouncement.reason`, or ``"stale"``, ``"known"``,
            ``""`` when accepted).
        detail: why, in a sentence.
    """

    outcome: Outcome
    verified: Verified | None = None
    reason: str = ""
    detail: str = ""


def assess(
    data: bytes,
    topic: str,
    held: HeldStatement,
    *,
    known: Callable[[VerifiedRepository], bool] | None = None,
    limits: AnnounceLimits = _DEFAULT_LIMITS,
) -> Assessment:
    """Decide on the announcement ``data`` received on ``topic``.

    Rejected: anything :func:`decode_announcement`, :func:`check_announcement`
    or :func:`is_newer` refuses. Ignored: a statement that is not newer than
    ``held`` says, and (when ``known`` is given) a repository announcement
    ``known`` says is no news (the node holds the repository with an
    identity chain at least as long). Accepted: the rest.
    """
    try:
        verified = check_announcement(decode_announcement(data, limits), topic, limits)
        if isinstance(verified, VerifiedRefs):
            statement = verified.statement
            if not is_newer(held(verified.rid, statement.signer), statement):
                why = f"statement of {statement.signer} with seq {statement.seq} in {verified.rid} is not newer"
                return Assessment(Outcome.IGNORE, verified, "stale", why)
        elif known is not None and known(verified):
            return Assessment(Outcome.IGNORE, verified, "known", f"repository {verified.rid} is held already")
    except InvalidAnnouncement as exc:
        return Assessment(Outcome.REJECT, None, exc.reason, str(exc))
    return Assessment(Outcome.ACCEPT, verified)
