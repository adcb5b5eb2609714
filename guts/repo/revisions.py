"""The chain of identity revisions: what makes a revision valid.

A repository's identity is a chain of revisions (:mod:`guts.repo.identity`),
genesis first. :func:`verify_chain` checks it against the RID it is meant
to be, and returns its head, whose delegates and threshold govern the
canonical refs and the next revision. The rules:

1. the genesis has no parent, hashes to the RID asked for, and is signed by
   at least one of its own delegates: the creator. One signature is enough,
   because the delegates it names may not have their keys at hand when the
   repository is made; its threshold governs every later revision. (So a
   genesis can name a delegate who never agreed to be one; nothing that
   person signs elsewhere is affected.)
2. every later revision's ``parent`` is the multihash of the previous
   document, and it carries valid signatures from at least ``threshold``
   distinct delegates *of the previous revision*. Signatures by other keys,
   and repeated signatures by one key, do not count; but every signature
   present must verify: a revision carrying a bad one is refused whole.
3. a chain holds at most :attr:`~guts.repo.identity.IdentityLimits.max_revisions`
   revisions.

Choosing between two valid chains (an older prefix a peer still serves,
say) is the caller's: :attr:`VerifiedIdentity.length` tells how far each
got. A chain a peer sent that breaks a rule fails as
:class:`~guts.errors.InvalidIdentity`, naming the revision and the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guts.crypto import PublicKey
from guts.errors import InputError, InvalidIdentity
from guts.peer import PeerId
from guts.repo.identity import Identity, IdentityLimits, SignedRevision, signing_payload
from guts.repo.rid import Rid

__all__ = [
    "VerifiedIdentity",
    "propose_revision",
    "verify_chain",
    "verify_genesis",
    "verify_revision",
]

_DEFAULT_LIMITS = IdentityLimits()


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """The head of a verified identity chain.

    Args:
        rid: the repository.
        current: the latest valid revision: its delegates and threshold
            govern canonical refs and the next revision.
        length: revisions in the chain, genesis included.
    """

    rid: Rid
    current: Identity
    length: int

    @property
    def delegates(self) -> tuple[PublicKey, ...]:
        return self.current.delegates

    @property
    def delegate_ids(self) -> tuple[PeerId, ...]:
        return self.current.delegate_ids

    @property
    def threshold(self) -> int:
        return self.current.threshold


def propose_revision(
    head: VerifiedIdentity,
    *,
    name: str | None = None,
    description: str | None = None,
    default_branch: str | None = None,
    delegates: Sequence[PublicKey] | None = None,
    threshold: int | None = None,
    limits: IdentityLimits = _DEFAULT_LIMITS,
) -> SignedRevision:
    """Draft the revision after ``head``, with the fields given changed and
    no signature yet (collect them with
    :func:`~guts.repo.identity.sign_revision`).

    Raises:
        InputError: the new document breaks a rule or exceeds ``limits``.
    """
    old = head.current
    document = Identity(
        name=old.name if name is None else name,
        description=old.description if description is None else description,
        default_branch=old.default_branch if default_branch is None else default_branch,
        delegates=old.delegates if delegates is None else tuple(delegates),
        threshold=old.threshold if threshold is None else threshold,
        parent=old.multihash,
    )
    problem = document.limit_problem(limits)
    if problem is not None:
        raise InputError(problem)
    return SignedRevision(document)


def _signers(rid: Rid, revision: SignedRevision, position: int) -> set[bytes]:
    """The raw keys that validly signed ``revision``; any bad signature
    refuses it."""
    payload = signing_payload(rid, revision.document)
    signers = set()
    for signature in revision.signatures:
        if not signature.key.verify(payload, signature.signature):
            raise InvalidIdentity(
                f"identity revision {position}: bad signature by {signature.key.peer_id}"
            )
        signers.add(signature.key.raw)
    return signers


def verify_genesis(rid: Rid, genesis: SignedRevision) -> VerifiedIdentity:
    """Check the first revision of ``rid``'s chain (rule 1).

    Raises:
        InvalidIdentity: it has a parent, hashes to another RID, carries a
            bad signature, or no delegate of its own signed it.
    """
    document = genesis.document
    if not document.is_genesis:
        raise InvalidIdentity("identity revision 1 has a parent: it is not a genesis")
    actual = Rid.of_genesis(document.raw)
    if actual != rid:
        raise InvalidIdentity(f"the genesis is the one of {actual}, not of {rid}")
    signers = _signers(rid, genesis, 1)
    if not signers & {key.raw for key in document.delegates}:
        raise InvalidIdentity("the genesis is not signed by any of its delegates")
    return VerifiedIdentity(rid, document, 1)


def verify_revision(
    head: VerifiedIdentity, revision: SignedRevision, limits: IdentityLimits = _DEFAULT_LIMITS
) -> VerifiedIdentity:
    """Check the revision that follows ``head`` (rules 2 and 3).

    Raises:
        InvalidIdentity: the chain would exceed ``limits.max_revisions``,
            the parent is not ``head``'s document, a signature is bad, or
            fewer than ``head.threshold`` of ``head``'s delegates signed.
    """
    position = head.length + 1
    if position > limits.max_revisions:
        raise InvalidIdentity(f"identity chain longer than {limits.max_revisions} revisions")
    if revision.document.parent != head.current.multihash:
        raise InvalidIdentity(
            f"identity revision {position}: its parent is not the hash of revision {head.length}"
        )
    counted = _signers(head.rid, revision, position) & {key.raw for key in head.delegates}
    if len(counted) < head.threshold:
        raise InvalidIdentity(
            f"identity revision {position} is signed by {len(counted)} of the delegates of revision "
            f"{head.length}; it needs {head.threshold}"
        )
    return VerifiedIdentity(head.rid, revision.document, position)


def verify_chain(
    rid: Rid, chain: Sequence[SignedRevision], limits: IdentityLimits = _DEFAULT_LIMITS
) -> VerifiedIdentity:
    """Verify ``rid``'s identity chain, genesis first, and return its head.

    Raises:
        InvalidIdentity: the chain is empty, too long, or breaks a rule of
            the module docstring; the message names the revision and rule.
    """
    if not chain:
        raise InvalidIdentity("the identity chain is empty")
    if len(chain) > limits.max_revisions:
        raise InvalidIdentity(f"identity chain of {len(chain)} revisions (limit {limits.max_revisions})")
    head = verify_genesis(rid, chain[0])
    for revision in chain[1:]:
        head = verify_revision(head, revision, limits)
    return head
