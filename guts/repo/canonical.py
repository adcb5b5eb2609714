"""Canonical refs: what a repository's ``refs/heads/*`` and ``refs/tags/*``
are, given what its delegates signed.

Theory of operation
-------------------
Inputs: the verified identity head (its delegates and threshold), the
latest verified statement of each delegate that has one, and the previous
canonical refs. Statements of other namespaces never count, whoever
passes them in: contributors' refs stay in their own namespaces.

For every ref name that a delegate lists, or that was canonical before:

1. *Votes.* Each delegate with a statement votes for the oid it lists for
   the name, or for its absence when it does not list the name. A delegate
   without any statement yet does not vote at all.
2. *One oid reaches the threshold* (at least ``threshold`` delegates list
   it): that is the canonical value, even when it is not a descendant of
   the previous value (``threshold`` delegates may rewind a branch).
3. *Several oids reach it* (possible when ``2 * threshold <= delegates``):
   the one that descends from all the others wins. If none does, the ref is
   *diverged*: it keeps its previous value and the result lists a
   :class:`Divergence`.
4. *None reaches it*: if at least ``threshold`` delegates no longer list
   the name, it is deleted. Otherwise the ref is the newest signed oid that
   at least ``threshold`` delegates' oids *contain* (each lists it or a
   descendant of it): when one delegate moved on and another has not yet,
   the ref stays where both are, whatever a node saw before; a node that
   joins later computes the same value from the same statements. With no
   such oid, it keeps its previous value (or stays absent): the delegates
   have not agreed yet. When the oids signed for it are not all on one
   line of history (no one descends from all the others), the delegates
   have diverged rather than fallen behind, and a :class:`Divergence` says
   so. Deletion needs the threshold, like any change: one delegate
   dropping a branch deletes nothing while others keep it. (A delegate
   that steps back along the line moves the ref back to what the
   threshold still contains: what the delegates vouch for is what their
   statements say now, not what they said before.)

Ancestry comes from the caller, as ``descends(a, b)``: whether commit ``a``
has ``b`` as an ancestor (``git merge-base --is-ancestor b a``); this core
has no git. It is asked only about refs with several candidate oids, and
:func:`ancestry_questions` lists every pair it may ask about, so that an
asynchronous caller can ask git first and answer from a table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from guts.peer import PeerId
from guts.repo.revisions import VerifiedIdentity
from guts.repo.sigrefs import PUBLISHED_PREFIXES, Statement

__all__ = [
    "Candidate",
    "Canonical",
    "DelegateStatus",
    "Divergence",
    "Descends",
    "ancestry_questions",
    "compute_canonical",
]

#: ``descends(a, b)``: whether commit ``a`` has commit ``b`` as an ancestor.
Descends = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One oid signed for a ref, and the delegates who signed it."""

    oid: str
    signers: tuple[PeerId, ...]


@dataclass(frozen=True, slots=True)
class Divergence:
    """A ref the delegates disagree on, so that it could not move.

    Args:
        ref: the ref name.
        candidates: every oid delegates signed for it, most signers first.
        kept: the value it keeps (its previous canonical value), or
            ``None`` when it had none.
    """

    ref: str
    candidates: tuple[Candidate, ...]
    kept: str | None


@dataclass(frozen=True, slots=True)
class DelegateStatus:
    """Where one delegate of the current identity stands.

    Args:
        peer: the delegate.
        seq: the sequence number of its latest statement, ``None`` when
            none is known.
        statement_id: that statement's id.
        identity: digest of the identity revision the statement stood on.
        agrees: whether its statement lists exactly the canonical refs.
    """

    peer: PeerId
    seq: int | None
    statement_id: bytes | None
    identity: bytes | None
    agrees: bool


@dataclass(frozen=True, slots=True)
class Canonical:
    """The canonical refs of a repository and how they came about.

    Args:
        refs: ``(name, oid)`` pairs, sorted by name.
        divergences: refs the delegates disagree on, sorted by name.
        delegates: each delegate's status, in the identity's order.
    """

    refs: tuple[tuple[str, str], ...]
    divergences: tuple[Divergence, ...]
    delegates: tuple[DelegateStatus, ...]

    def ref_map(self) -> dict[str, str]:
        return dict(self.refs)


def _tip(oids: list[str], descends: Descends) -> str | None:
    """The oid that descends from every other one in ``oids``, if any."""
    for tip in oids:
        if all(other == tip or descends(tip, other) for other in oids):
            return tip
    return None


def _counted(identity: VerifiedIdentity, statements: Mapping[PeerId, Statement]) -> dict[PeerId, dict[str, str]]:
    """The ref maps of the delegates' statements, checked to be theirs."""
    counted: dict[PeerId, dict[str, str]] = {}
    for peer in identity.delegate_ids:
        statement = statements.get(peer)
        if statement is None:
            continue
        if statement.signer != peer or statement.rid != identity.rid:
            raise ValueError(f"the statement given for {peer} is not its statement in {identity.rid}")
        counted[peer] = {n: o for n, o in statement.refs if n.startswith(PUBLISHED_PREFIXES)}
    return counted


def _votes(name: str, counted: dict[PeerId, dict[str, str]]) -> tuple[dict[str, list[PeerId]], int]:
    """The oids signed for ``name`` with their signers, and how many
    delegates with a statement do not list it."""
    votes: dict[str, list[PeerId]] = {}
    absent = 0
    for peer, refs in counted.items():
        oid = refs.get(name)
        if oid is None:
            absent += 1
        else:
            votes.setdefault(oid, []).append(peer)
    return votes, absent


def _names(counted: dict[PeerId, dict[str, str]], previous: Mapping[str, str]) -> list[str]:
    names = {name for refs in counted.values() for name in refs}
    names.update(name for name in previous if name.startswith(PUBLISHED_PREFIXES))
    return sorted(names, key=lambda name: name.encode())


def ancestry_questions(
    identity: VerifiedIdentity,
    statements: Mapping[PeerId, Statement],
) -> frozenset[tuple[str, str]]:
    """Every ``(a, b)`` that :func:`compute_canonical` may pass to
    ``descends`` for these inputs (a superset: it stops asking early)."""
    counted = _counted(identity, statements)
    questions: set[tuple[str, str]] = set()
    for name in _names(counted, {}):
        oids = list(_votes(name, counted)[0])
        questions.update((a, b) for a in oids for b in oids if a != b)
    return frozenset(questions)


def compute_canonical(
    identity: VerifiedIdentity,
    statements: Mapping[PeerId, Statement],
    previous: Mapping[str, str],
    descends: Descends,
) -> Canonical:
    """Compute the canonical refs (rules of the module docstring).

    Args:
        identity: the verified identity head.
        statements: latest verified statement by namespace; entries for
            non-delegates are ignored.
        previous: the canonical refs before, ``{name: oid}``.
        descends: the ancestry oracle.

    Raises:
        ValueError: a delegate's entry in ``statements`` is signed by
            someone else or is about another repository.
    """
    threshold = identity.threshold
    counted = _counted(identity, statements)
    refs: dict[str, str] = {}
    divergences: list[Divergence] = []
    for name in _names(counted, previous):
        votes, absent = _votes(name, counted)
        before = previous.get(name)
        qualified = [oid for oid, signers in votes.items() if len(signers) >= threshold]
        value: str | None
        if len(qualified) == 1:
            value = qualified[0]
        elif qualified:
            value = _tip(sorted(qualified), descends)
            if value is None:
                value = before
                divergences.append(_divergence(name, votes, before))
        elif absent >= threshold:
            value = None
        else:
            contained = [
                oid
                for oid in sorted(votes)
                if sum(len(signers) for other, signers in votes.items() if other == oid or descends(other, oid))
                >= threshold
            ]
            value = _tip(contained, descends) if contained else None
            if value is None:
                value = before
            if len(votes) > 1 and _tip(sorted(votes), descends) is None:
                divergences.append(_divergence(name, votes, value))
        if value is not None:
            refs[name] = value
    canonical = tuple(refs.items())
    status = []
    for peer in identity.delegate_ids:
        statement = statements.get(peer)
        status.append(
            DelegateStatus(
                peer=peer,
                seq=None if statement is None else statement.seq,
                statement_id=None if statement is None else statement.id,
                identity=None if statement is None else statement.identity,
                agrees=peer in counted and counted[peer] == refs,
            )
        )
    return Canonical(canonical, tuple(divergences), tuple(status))


def _divergence(name: str, votes: dict[str, list[PeerId]], kept: str | None) -> Divergence:
    candidates = sorted(votes.items(), key=lambda item: (-len(item[1]), item[0]))
    return Divergence(name, tuple(Candidate(oid, tuple(signers)) for oid, signers in candidates), kept)
