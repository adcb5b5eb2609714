"""Reading a repository's signed state back from git, verified: the
identity chain and a namespace's sigrefs commit (see :mod:`guts.repo.state`)."""

from __future__ import annotations

from guts.errors import InvalidIdentity, InvalidRefs
from guts.peer import PeerId
from guts.repo._state_base import _COMMIT_BYTES, Namespace
from guts.repo.identity import IdentityLimits, SignedRevision
from guts.repo.layout import commit_parents, identity_commit, proposal_commit, sigrefs_commit
from guts.repo.revisions import VerifiedIdentity, verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import RefsLimits, SignedStatement, Statement
from guts.repo.storage import ObjectReader

__all__ = ["read_chain", "read_identity", "read_namespace", "read_proposal"]


async def read_identity(
    reader: ObjectReader, rid: Rid, head: str, limits: IdentityLimits
) -> tuple[VerifiedIdentity, str]:
    """The verified identity chain whose head commit is ``head``, each commit
    rebuilt byte for byte."""
    chain = await read_chain(reader, head, limits)
    for number, (oid, revision, parent) in enumerate(chain, 1):
        if identity_commit(revision, number, parent).oid != oid:
            raise InvalidIdentity(f"identity commit {oid} is not the layout's commit of revision {number}")
    return verify_chain(rid, [revision for _, revision, _ in chain], limits), head

async def read_chain(
    reader: ObjectReader, head: str, limits: IdentityLimits
) -> list[tuple[str, SignedRevision, str | None]]:
    """The identity chain's commits, revisions and parents, genesis first."""
    chain: list[tuple[str, SignedRevision, str | None]] = []  # newest first
    oid: str | None = head
    while oid is not None:
        if len(chain) >= limits.max_revisions:
            raise InvalidIdentity(f"identity chain longer than {limits.max_revisions} revisions")
        commit = await reader.read(oid, max_size=_COMMIT_BYTES)
        blob = await reader.read(f"{oid}:revision", max_size=limits.max_document + limits.max_signatures * 110 + 16)
        if commit is None or commit[1] != "commit" or blob is None or blob[1] != "blob":
            raise InvalidIdentity(f"identity commit {oid} is missing or is not the layout's")
        parents = commit_parents(commit[2])
        if len(parents) > 1:
            raise InvalidIdentity(f"identity commit {oid} has {len(parents)} parents")
        chain.append((oid, SignedRevision.decode(blob[2], limits), parents[0] if parents else None))
        oid = parents[0] if parents else None
    chain.reverse()
    return chain

async def read_proposal(
    reader: ObjectReader, oid: str, number: int, head: str, limits: IdentityLimits
) -> SignedRevision:
    """The pending revision the proposal commit ``oid`` records, as the
    would-be revision ``number`` after the chain's head commit ``head``:
    the commit rebuilt byte for byte (its signatures are the caller's to
    check, :func:`~guts.repo.proposals.check_proposal`)."""
    blob = await reader.read(f"{oid}:revision", max_size=limits.max_document + limits.max_signatures * 110 + 16)
    if blob is None or blob[1] != "blob":
        raise InvalidIdentity(f"proposal commit {oid} is missing or is not the layout's")
    revision = SignedRevision.decode(blob[2], limits)
    if proposal_commit(revision, number, head).oid != oid:
        raise InvalidIdentity(f"proposal commit {oid} is not the layout's commit of a revision after {head}")
    return revision


async def read_namespace(reader: ObjectReader, rid: Rid, peer: PeerId, oid: str, limits: RefsLimits) -> Namespace:
    """The verified namespace whose sigrefs commit is ``oid``: the statement
    parsed strictly, signed by ``peer`` for ``rid``, the commit rebuilt byte
    for byte, and its parent holding the statement before it."""
    commit = await reader.read(oid, max_size=_COMMIT_BYTES)
    text = await reader.read(f"{oid}:statement", max_size=limits.max_bytes)
    signature = await reader.read(f"{oid}:signature", max_size=64)
    if commit is None or commit[1] != "commit" or text is None or signature is None:
        raise InvalidRefs(f"sigrefs commit {oid} is missing or is not the layout's")
    signed = SignedStatement(Statement.parse(text[2], limits), signature[2])
    statement = signed.statement
    if statement.rid != rid or statement.signer != peer:
        raise InvalidRefs(f"sigrefs commit {oid} holds a statement of {statement.signer} in {statement.rid}")
    parents = commit_parents(commit[2])
    parent = parents[0] if len(parents) == 1 else None
    if len(parents) > 1 or sigrefs_commit(signed, parent).oid != oid:
        raise InvalidRefs(f"sigrefs commit {oid} is not the layout's commit of seq {statement.seq}")
    if parent is not None:
        before = await reader.read(f"{parent}:statement", max_size=limits.max_bytes)
        if before is None or Statement.parse(before[2], limits).id != statement.parent:
            raise InvalidRefs(f"sigrefs commit {oid}: its parent does not hold the statement before it")
    return Namespace(peer, signed, oid)
