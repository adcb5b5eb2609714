"""What a peer's signed state changes, judged before anything is fetched:
the pure part of :meth:`guts.repo.state.Repositories.receive`.

:func:`sort_statements` puts each statement a peer sent in one of three
places: left out (unchanged, or older than ours: the peer is behind on
that namespace), *accepted* (its sigrefs commit rebuilt here, since we hold
the statement before it or it is the first), or *chains* (its sigrefs
commit must be fetched with the objects and read back); anything else
refuses the whole state with :class:`~guts.errors.InvalidRefs`.
:func:`bound_namespaces` then leaves out the new contributors past the
repository's namespace limit, the same ones on every node.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from guts.errors import InputError, InvalidRefs
from guts.peer import PeerId
from guts.repo._state_base import RepoState, _check_storable
from guts.repo.layout import LayoutCommit, sigrefs_commit
from guts.repo.revisions import VerifiedIdentity
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Verdict, judge

__all__ = ["Accepted", "Chains", "bound_namespaces", "sort_statements"]

log = logging.getLogger("guts.repo.state")

#: Statements whose sigrefs commit was rebuilt here, by namespace.
Accepted = dict[PeerId, tuple[SignedStatement, LayoutCommit]]
#: Statements whose sigrefs commit (the peer's oid) is to be fetched.
Chains = dict[PeerId, tuple[SignedStatement, str]]


def sort_statements(
    key: str,
    rid: Rid,
    held: RepoState | None,
    statements: Sequence[tuple[SignedStatement, str]],
    known: Collection[bytes],
) -> tuple[Accepted, Chains]:
    """Judge each of a peer's ``statements`` (with its sigrefs commit)
    against ``held``; ``known`` are the digests of the identity revisions a
    statement may stand on (module docstring).

    Raises:
        InvalidRefs: two statements of one namespace, one on an identity of
            no revision of this repository, an equivocation, a fork, a
            statement git could not store, or a sigrefs commit that is not
            the layout's.
    """
    accepted: Accepted = {}
    chains: Chains = {}
    for signed, commit_oid in statements:
        peer = signed.statement.signer
        if peer in accepted or peer in chains:
            raise InvalidRefs(f"two statements of namespace {peer}")
        if signed.statement.identity not in known:
            raise InvalidRefs(
                f"namespace {peer}: its statement stands on identity {signed.statement.identity.hex()[:16]}..., "
                "no revision of this repository's chain"
            )
        before = None if held is None else held.namespaces.get(peer)
        stored = None if before is None else before.statement
        verdict = judge(stored, signed.statement, rid=rid, namespace=peer)
        if verdict is Verdict.STALE:
            # A peer behind on this namespace (it may be ahead on another):
            # ours stays, the rest is taken.
            assert stored is not None
            log.info(
                "repository %s: namespace %s: left the peer's older statement (seq %d, ours is seq %d)",
                key, peer, signed.statement.seq, stored.seq,
            )  # fmt: skip
            continue
        if verdict.refused:
            was = "" if stored is None else f", ours is seq {stored.seq}"
            raise InvalidRefs(f"namespace {peer}: {verdict.value} statement (seq {signed.statement.seq}{was})")
        if verdict is Verdict.UNCHANGED:
            continue
        try:
            _check_storable(peer, signed.statement)
        except InputError as exc:
            raise InvalidRefs(f"namespace {peer}: {exc}") from None
        after = before.commit if before is not None and signed.statement.parent == before.statement.id else None
        if signed.statement.seq == 1 or after is not None:
            rebuilt = sigrefs_commit(signed, after)
            if rebuilt.oid != commit_oid:
                raise InvalidRefs(f"namespace {peer}: sigrefs commit {commit_oid} is not the layout's")
            accepted[peer] = (signed, rebuilt)
        else:
            chains[peer] = (signed, commit_oid)
    return accepted, chains


def bound_namespaces(
    key: str,
    held: RepoState | None,
    verified: VerifiedIdentity,
    accepted: Accepted,
    chains: Chains,
    max_namespaces: int,
) -> None:
    """Leave out of ``accepted`` and ``chains`` the new contributors'
    namespaces past ``max_namespaces`` (in peer id order, so every node
    keeps the same ones); delegates' always stay."""
    current = set() if held is None else set(held.namespaces)
    delegates = set(verified.delegate_ids)
    room = max_namespaces - len(current | delegates)
    newcomers = sorted((p for p in [*accepted, *chains] if p not in current and p not in delegates), key=str)
    dropped = newcomers[max(room, 0):]
    for peer in dropped:
        accepted.pop(peer, None)
        chains.pop(peer, None)
    if dropped:
        log.warning(
            "repository %s: %d new namespace(s) left out, past the limit of %d (first: %s)",
            key, len(dropped), max_namespaces, dropped[0],
        )  # fmt: skip
