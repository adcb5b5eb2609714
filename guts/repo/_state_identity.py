"""The identity side of :class:`~guts.repo.state.Repositories`: pending
proposals read back at load, proposing, accepting, and merging a peer's.

Every change runs under the repository's lock (the caller's
:class:`~guts.repo.state.Repositories` method takes it) and is one write:
the new proposal commits or, when a proposal reaches the threshold, the
identity chain's new commit go through a quarantine, then every ref that
changes (the proposals' refs, the identity ref, the canonical refs the new
delegates and threshold imply) moves in one transaction. The rules of
merging are :mod:`guts.repo.proposals`'; where the commits live is
:mod:`guts.repo.layout`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

import trio

from guts.crypto import KeyPair, PublicKey
from guts.errors import InputError, InvalidIdentity
from guts.peer import PeerId
from guts.repo._state_base import RepositoriesConfig, RepoState, StoredProposal, _checked, _key, _once
from guts.repo._state_read import read_proposal
from guts.repo.identity import IdentityLimits, SignedRevision, sign_revision
from guts.repo.layout import RefKind, encode_pack, identity_commit, parse_ref, proposal_commit
from guts.repo.proposals import (
    MAX_PROPOSALS,
    changes,
    check_proposal,
    find_proposal,
    merge_proposals,
    proposal_id,
)
from guts.repo.revisions import VerifiedIdentity, propose_revision, verify_revision
from guts.repo.rid import Rid
from guts.repo.canonical import Canonical
from guts.repo.sigrefs import Statement
from guts.repo.storage import ObjectReader, Storage

__all__ = ["accept", "load_proposals", "merge", "propose"]

log = logging.getLogger("guts.repo.state")


class Repositories(Protocol):
    """What these operations use of :class:`guts.repo.state.Repositories`
    (its lock per repository, its states, its canonical refs and its one
    ref writer), named here so that this module does not import it."""

    storage: Storage
    config: RepositoriesConfig
    _states: dict[str, RepoState]

    def _lock(self, key: str) -> trio.Lock: ...

    def show(self, rid: Rid | str) -> RepoState: ...

    async def _canonical(
        self, key: str, identity: VerifiedIdentity, statements: Mapping[PeerId, Statement], previous: Mapping[str, str]
    ) -> Canonical: ...

    async def _write_refs(
        self,
        key: str,
        target: Mapping[str, str],
        current: Mapping[str, str],
        *,
        expected: Mapping[str, str] | None,
        fresh: bool = False,
    ) -> None: ...


async def load_proposals(
    reader: ObjectReader,
    key: str,
    identity: VerifiedIdentity,
    head: str,
    current: Mapping[str, str],
    limits: IdentityLimits,
) -> dict[str, StoredProposal]:
    """The pending proposals the refs ``current`` name that still verify
    against ``identity`` (whose chain's head commit is ``head``), at most
    :data:`~guts.repo.proposals.MAX_PROPOSALS`, by id; the others are
    logged (their refs go at the repair)."""
    found: dict[str, StoredProposal] = {}
    for name, oid in sorted(current.items()):
        where = parse_ref(name)
        if where is None or where.kind is not RefKind.PROPOSAL or where.name is None:
            continue
        if len(found) >= MAX_PROPOSALS:
            log.warning("repository %s: proposal %s dropped, past the %d kept", key, where.name[:12], MAX_PROPOSALS)
            continue
        try:
            revision = await read_proposal(reader, oid, identity.length + 1, head, limits)
            checked = check_proposal(identity, revision)
        except (InvalidIdentity, ValueError) as exc:
            log.warning("repository %s: proposal %s does not verify, dropped: %s", key, where.name[:12], exc)
            continue
        if checked is None or proposal_id(revision) != where.name or checked.encode() != revision.encode():
            log.warning("repository %s: proposal %s is not the one its ref names, dropped", key, where.name[:12])
            continue
        found[where.name] = StoredProposal(revision, oid)
    return found


async def _apply(repos: Repositories, key: str, state: RepoState, incoming: Sequence[SignedRevision]) -> RepoState:
    """Merge ``incoming`` into ``state``'s proposals and write the result
    (the caller holds the lock)."""
    held = {pid: stored.revision for pid, stored in state.proposals.items()}
    merged = merge_proposals(state.identity, held, incoming)
    if merged.left_out:
        log.warning(
            "repository %s: %d proposal(s) left out, past the %d kept (first: %s)",
            key, len(merged.left_out), MAX_PROPOSALS, merged.left_out[0][:12],
        )  # fmt: skip
    number = state.identity.length + 1
    if merged.adopted is not None:
        identity = verify_revision(state.identity, merged.adopted, repos.config.identity)
        commit = identity_commit(merged.adopted, number, state.identity_commit)
        statements = {peer: ns.statement for peer, ns in state.namespaces.items()}
        canonical = await repos._canonical(key, identity, statements, state.canonical.ref_map())
        new = replace(state, identity=identity, identity_commit=commit.oid, canonical=canonical, proposals={})
        commits = [commit]
        log.info("repository %s: identity revision %d takes effect", key, number)
    else:
        if not merged.changed:
            return state
        built = {pid: proposal_commit(merged.pending[pid], number, state.identity_commit) for pid in merged.changed}
        proposals = {
            pid: StoredProposal(revision, built[pid].oid) if pid in built else state.proposals[pid]
            for pid, revision in merged.pending.items()
        }
        new = replace(state, proposals=proposals)
        commits = list(built.values())
    async with repos.storage.quarantine(key) as quarantine:
        await quarantine.ingest_pack(_once(encode_pack(obj for commit in commits for obj in commit.objects)))
        await quarantine.check_connected(_checked(commits))
        await quarantine.migrate()
    if new.document.default_branch != state.document.default_branch:
        await repos.storage.set_head(key, "refs/heads/" + new.document.default_branch)
    await repos._write_refs(key, new.refs(), await repos.storage.refs(key), expected=state.refs())
    repos._states[key] = new
    return new


def _check_delegate(state: RepoState, keypair: KeyPair) -> None:
    if not state.document.is_delegate(keypair.public_key):
        raise InputError(
            f"this node ({keypair.peer_id}) is not a delegate of {state.rid}: "
            "only its delegates propose and accept identity revisions"
        )


def _keys(delegates: Sequence[PeerId | str]) -> list[PublicKey]:
    keys = []
    for item in delegates:
        peer = item if isinstance(item, PeerId) else PeerId.from_string(str(item))
        key = PublicKey.from_peer_id(peer)
        if key is None:
            raise InputError(f"delegate {peer}: a delegate's peer id inlines its Ed25519 key (12D3KooW...)")
        keys.append(key)
    return keys


async def propose(
    repos: Repositories,
    rid: Rid | str,
    keypair: KeyPair,
    *,
    name: str | None = None,
    description: str | None = None,
    default_branch: str | None = None,
    delegates: Sequence[PeerId | str] | None = None,
    threshold: int | None = None,
) -> tuple[RepoState, str]:
    """See :meth:`Repositories.propose <guts.repo.state.Repositories.propose>`."""
    key = _key(rid)
    async with repos._lock(key):
        state = repos.show(key)
        _check_delegate(state, keypair)
        draft = propose_revision(
            state.identity,
            name=name,
            description=description,
            default_branch=default_branch,
            delegates=None if delegates is None else _keys(delegates),
            threshold=threshold,
            limits=repos.config.identity,
        )
        if not changes(state.document, draft.document):
            raise InputError("the proposal changes nothing of the current identity")
        signed = sign_revision(draft, keypair, state.rid)
        pid = proposal_id(signed)
        new = await _apply(repos, key, state, [signed])
        if new.identity.length == state.identity.length and pid not in new.proposals:
            raise InputError(
                f"{MAX_PROPOSALS} proposals are pending already: accept one (`guts repo id show {key}`) "
                "or wait until one takes effect"
            )
        return new, pid


async def accept(repos: Repositories, rid: Rid | str, keypair: KeyPair, proposal: str) -> tuple[RepoState, str]:
    """See :meth:`Repositories.accept <guts.repo.state.Repositories.accept>`."""
    key = _key(rid)
    async with repos._lock(key):
        state = repos.show(key)
        current = state.document.digest.hex()
        if len(proposal) >= 4 and current.startswith(proposal.strip().lower()):
            return state, current  # in effect already
        pid = find_proposal({p: stored.revision for p, stored in state.proposals.items()}, proposal)
        _check_delegate(state, keypair)
        revision = state.proposals[pid].revision
        if any(s.key.raw == keypair.public_key.raw for s in revision.signatures):
            return state, pid  # signed already
        return await _apply(repos, key, state, [sign_revision(revision, keypair, state.rid)]), pid


async def merge(repos: Repositories, rid: Rid | str, proposals: Sequence[SignedRevision]) -> RepoState:
    """See :meth:`Repositories.merge_proposals <guts.repo.state.Repositories.merge_proposals>`."""
    key = _key(rid)
    async with repos._lock(key):
        return await _apply(repos, key, repos.show(key), proposals)
