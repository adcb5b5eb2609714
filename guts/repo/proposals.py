"""Pending identity revisions: what a delegate proposed, the signatures
collected for it, and when it takes effect.

Theory of operation
-------------------
A **proposal** is a :class:`~guts.repo.identity.SignedRevision` whose
document's ``parent`` is the multihash of the repository's current
identity revision (the head of its verified chain), with the signatures
collected so far. Its id is the lowercase hex of the document's sha2-256
digest (:attr:`~guts.repo.identity.Identity.digest`, the same digest a
signed ref statement names its revision by): 64 characters, shown
shortened, and given back as any unique prefix.

A delegate proposes from its node (its key signs at once), the others
accept it from theirs (each adds its signature), and the signatures travel
by sync. Every node merges what it hears with what it holds by the same
rules (:func:`merge_proposals`):

1. *Checked against the head.* A proposal whose parent is not the current
   head's multihash is stale: it is left out without complaint (the chain
   moved on, or the peer is behind). Every signature a proposal carries
   must verify, or the proposal is refused whole as
   :class:`~guts.errors.InvalidIdentity`, as
   :func:`~guts.repo.revisions.verify_revision` refuses a revision. Of
   the valid ones only the signatures of the head's delegates are kept, in
   the delegates' order; a proposal none of them signed is refused too (no
   one else may fill a node's pending list).
2. *Union.* The signatures of one proposal from everywhere are united, one
   per key.
3. *Adoption.* A proposal signed by at least the head's ``threshold``
   delegates is adopted: it is the chain's next revision and no longer
   pending. When several reach it at once, the one with the most
   signatures, then the smallest id, wins; the others, like every pending
   proposal, then stand on a revision that is no longer the head and are
   dropped. (With a threshold at most half the delegates, two groups can
   adopt two different revisions on two nodes; their chains then fork and
   each refuses the other's, as :meth:`~guts.repo.state.Repositories.receive`
   refuses any fork. A threshold above half the delegates rules that out.)
4. *Bound.* A node keeps at most :data:`MAX_PROPOSALS` pending proposals per
   repository: those it holds stay; new ones past the bound are left out,
   the most signed first, then by id.

Pure: no git, no trio. Storage (one layout commit per proposal under
``refs/guts/proposals/<id>``) is :mod:`guts.repo.layout`'s and
:mod:`guts.repo.state`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guts.errors import InputError, InvalidIdentity
from guts.peer import PeerId
from guts.repo.identity import Identity, IdentityLimits, Signature, SignedRevision, signing_payload
from guts.repo.revisions import VerifiedIdentity, verify_chain
from guts.repo.rid import Rid

__all__ = [
    "MAX_PROPOSALS",
    "MIN_PREFIX",
    "ProposalMerge",
    "ProposalNotFound",
    "changes",
    "check_proposal",
    "check_served",
    "find_proposal",
    "merge_proposals",
    "proposal_id",
    "signers",
]

#: Pending proposals a node keeps per repository.
MAX_PROPOSALS = 16
#: Shortest id prefix :func:`find_proposal` takes.
MIN_PREFIX = 4


class ProposalNotFound(InputError):
    """No pending proposal has the id (or prefix) given, or several do."""


def proposal_id(revision: SignedRevision | Identity) -> str:
    """A proposal's id: the hex of its document's sha2-256 digest."""
    document = revision.document if isinstance(revision, SignedRevision) else revision
    return document.digest.hex()


def signers(revision: SignedRevision) -> tuple[PeerId, ...]:
    """Who signed ``revision``, in the order of its signatures."""
    return tuple(signature.key.peer_id for signature in revision.signatures)


def _ordered(head: VerifiedIdentity, by_key: Mapping[bytes, Signature]) -> tuple[Signature, ...]:
    """The signatures of ``head``'s delegates among ``by_key``, in the delegates' order."""
    return tuple(by_key[key.raw] for key in head.delegates if key.raw in by_key)


def check_proposal(head: VerifiedIdentity, revision: SignedRevision) -> SignedRevision | None:
    """``revision`` as a proposal after ``head`` (rule 1): ``None`` when it
    is stale, else the revision keeping only the signatures of ``head``'s
    delegates, in their order.

    Raises:
        InvalidIdentity: a signature does not verify, or none of ``head``'s
            delegates signed it.
    """
    if revision.document.parent != head.current.multihash:
        return None
    short = proposal_id(revision)[:12]
    payload = signing_payload(head.rid, revision.document)
    by_key: dict[bytes, Signature] = {}
    for signature in revision.signatures:
        if not signature.key.verify(payload, signature.signature):
            raise InvalidIdentity(f"proposed identity revision {short}: bad signature by {signature.key.peer_id}")
        by_key.setdefault(signature.key.raw, signature)
    kept = _ordered(head, by_key)
    if not kept:
        raise InvalidIdentity(
            f"proposed identity revision {short} is signed by none of the delegates of revision {head.length}"
        )
    return SignedRevision(revision.document, kept)


@dataclass(frozen=True, slots=True)
class ProposalMerge:
    """What :func:`merge_proposals` made of held and incoming proposals.

    Args:
        pending: the proposals still pending, by id (empty when one was
            adopted: the others are stale then).
        adopted: the proposal that reached the threshold, if any: the
            chain's next revision.
        changed: ids of ``pending`` that are new or gained signatures.
        left_out: ids of new proposals left out past the bound.
    """

    pending: dict[str, SignedRevision]
    adopted: SignedRevision | None
    changed: frozenset[str]
    left_out: tuple[str, ...] = ()


def merge_proposals(
    head: VerifiedIdentity,
    held: Mapping[str, SignedRevision],
    incoming: Iterable[SignedRevision],
    limit: int = MAX_PROPOSALS,
) -> ProposalMerge:
    """Merge ``incoming`` proposals into those ``held`` (already checked
    against ``head``), by the rules of the module docstring.

    Raises:
        InvalidIdentity: an incoming proposal is refused (rule 1); nothing
            is merged then.
    """
    union: dict[str, dict[bytes, Signature]] = {}
    documents: dict[str, Identity] = {}
    for pid, revision in held.items():
        documents[pid] = revision.document
        union[pid] = {s.key.raw: s for s in revision.signatures}
    for revision in incoming:
        checked = check_proposal(head, revision)
        if checked is None:
            continue
        pid = proposal_id(checked)
        documents.setdefault(pid, checked.document)
        signatures = union.setdefault(pid, {})
        for signature in checked.signatures:
            signatures.setdefault(signature.key.raw, signature)
    merged = {pid: SignedRevision(documents[pid], _ordered(head, union[pid])) for pid in union}
    ready = [pid for pid, revision in merged.items() if len(revision.signatures) >= head.threshold]
    if ready:
        best = min(ready, key=lambda pid: (-len(merged[pid].signatures), pid))
        return ProposalMerge({}, merged[best], frozenset())
    new = sorted((pid for pid in merged if pid not in held), key=lambda pid: (-len(merged[pid].signatures), pid))
    room = max(limit - len(held), 0)
    kept, left_out = new[:room], tuple(new[room:])
    pending = {pid: merged[pid] for pid in [*held, *kept]}
    changed = frozenset(
        pid for pid in pending if pid not in held or len(pending[pid].signatures) != len(held[pid].signatures)
    )
    return ProposalMerge(pending, None, changed, left_out)


def find_proposal(pending: Mapping[str, SignedRevision], text: str) -> str:
    """The id of the pending proposal ``text`` names: its id or a unique
    prefix of at least :data:`MIN_PREFIX` characters.

    Raises:
        ProposalNotFound: none or several match.
    """
    wanted = text.strip().lower()
    if len(wanted) < MIN_PREFIX or wanted.strip("0123456789abcdef"):
        raise ProposalNotFound(f"{text!r:.80} is not a proposal id (at least {MIN_PREFIX} hex digits)")
    matches = [pid for pid in pending if pid.startswith(wanted)]
    if not matches:
        raise ProposalNotFound(f"no pending proposal {wanted[:64]} (sync from the proposer's node first)")
    if len(matches) > 1:
        raise ProposalNotFound(f"{wanted} names {len(matches)} pending proposals: give more of the id")
    return matches[0]


def check_served(
    rid: Rid, chain: Sequence[SignedRevision], proposals: Sequence[SignedRevision], limits: IdentityLimits
) -> list[SignedRevision]:
    """What a peer served, checked before anything of its state is applied:
    each proposal against the head of the peer's own ``chain`` (rule 1).
    Stale ones are left out. (Without proposals the chain is not verified
    here: :meth:`~guts.repo.state.Repositories.receive` does.)

    Raises:
        InvalidIdentity: the chain does not verify, or a proposal is refused.
    """
    if not proposals:
        return []
    head = verify_chain(rid, chain, limits)
    return [checked for revision in proposals if (checked := check_proposal(head, revision)) is not None]


def changes(current: Identity, proposed: Identity) -> dict[str, Any]:
    """What ``proposed`` changes of ``current``, for people: each field
    that differs as ``{"from": old, "to": new}``; delegates as ``added``
    and ``removed`` peer ids."""
    out: dict[str, Any] = {}
    for name in ("name", "description", "default_branch", "threshold"):
        old, new = getattr(current, name), getattr(proposed, name)
        if old != new:
            out[name] = {"from": old, "to": new}
    before, after = current.delegate_ids, proposed.delegate_ids
    added = [str(peer) for peer in after if peer not in before]
    removed = [str(peer) for peer in before if peer not in after]
    if added or removed:
        out["delegates"] = {"added": added, "removed": removed}
    elif before != after:
        out["delegates"] = {"reordered": [str(peer) for peer in after]}
    return out
