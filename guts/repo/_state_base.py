"""What :mod:`guts.repo.state` is made of besides :class:`Repositories`:
its limits and errors, the verified state it keeps, and the checks of
what ``init`` is given."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from guts.crypto import KeyPair, PublicKey
from guts.errors import InputError
from guts.peer import PeerId
from guts.repo.canonical import Canonical
from guts.repo.identity import Identity, IdentityLimits, SignedRevision
from guts.repo.layout import LayoutCommit, namespace_ref, proposal_ref, sigrefs_ref, state_refs
from guts.repo.refname import refname_problem
from guts.repo.revisions import VerifiedIdentity
from guts.repo.rid import Rid
from guts.repo.sigrefs import RefsLimits, SignedStatement, Statement
from guts.repo.storage import Quarantine, SourceRepository, StorageConfig, StorageError, check_rid

__all__ = ["BrokenRepository", "FetchObjects", "Namespace", "RepoState", "RepositoriesConfig", "StoredProposal"]

#: Longest path ``init`` reads a repository from (Linux's PATH_MAX).
MAX_PATH = 4096
_COMMIT_BYTES = 4096  # a layout commit is about 250 bytes


class BrokenRepository(StorageError):
    """A stored repository's identity chain is missing or does not verify."""


#: What :meth:`Repositories.receive` calls to bring objects into a
#: quarantine: the quarantine and the oids it lacks (the sync protocol's
#: fetch, ``git fetch-pack`` run with the quarantine's environment).
FetchObjects = Callable[[Quarantine, list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RepositoriesConfig:
    """Limits: on identity documents and chains, on statements, and the
    storage's (pack size, git deadlines)."""

    identity: IdentityLimits = IdentityLimits()
    refs: RefsLimits = RefsLimits()
    storage: StorageConfig = StorageConfig()
    #: Namespaces one repository keeps: a received statement that would
    #: open one more is left out (the delegates' are always kept).
    max_namespaces: int = 1024


@dataclass(frozen=True, slots=True)
class Namespace:
    """One publisher's namespace: its latest verified statement and the
    sigrefs commit that records it."""

    peer: PeerId
    signed: SignedStatement
    commit: str

    @property
    def statement(self) -> Statement:
        return self.signed.statement


@dataclass(frozen=True, slots=True)
class StoredProposal:
    """A pending identity revision (:mod:`guts.repo.proposals`) and the
    proposal commit that records it."""

    revision: SignedRevision
    commit: str


@dataclass(frozen=True, slots=True)
class RepoState:
    """A repository's verified signed state.

    Args:
        rid: the repository.
        identity: the verified identity head (document, delegates,
            threshold; ``length`` revisions).
        identity_commit: the commit of the identity chain's head.
        namespaces: the verified namespaces, by publisher.
        canonical: the canonical refs, divergences and delegates' status.
        refused: namespaces whose sigrefs did not verify: the sigrefs
            commit as found, and why.
        proposals: the pending identity revisions, by proposal id.
    """

    rid: Rid
    identity: VerifiedIdentity
    identity_commit: str
    namespaces: Mapping[PeerId, Namespace]
    canonical: Canonical
    refused: Mapping[PeerId, tuple[str, str]] = field(default_factory=dict)
    proposals: Mapping[str, StoredProposal] = field(default_factory=dict)

    @property
    def document(self) -> Identity:
        return self.identity.current

    def refs(self) -> dict[str, str]:
        """Every ref this state implies in storage (see :mod:`guts.repo.layout`)."""
        refs = state_refs(
            self.identity_commit,
            {peer: (ns.commit, ns.statement) for peer, ns in self.namespaces.items()},
            self.canonical.refs,
        )
        refs.update((sigrefs_ref(peer), commit) for peer, (commit, _) in self.refused.items())
        refs.update((proposal_ref(pid), proposal.commit) for pid, proposal in self.proposals.items())
        return refs


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _checked(commits: Iterable[LayoutCommit]) -> list[str]:
    """What the connectivity check needs of layout commits built here: their
    trees. Each commit is ours, byte for byte, and its parent is a chain
    head a ref of this repository names or another of these commits, so
    only its tree can be incomplete; and its date (a sequence number, near
    1970) would have ``rev-list`` paint the whole history, newer than it,
    before reaching it (30 ms of a one-commit fetch of 10,000 commits)."""
    return [next(obj.oid for obj in commit.objects if obj.kind == "tree") for commit in commits]


def _key(rid: Rid | str) -> str:
    return str(rid) if isinstance(rid, Rid) else check_rid(str(Rid.parse(rid)))


def _source_path(path: Path | str) -> Path:
    text = os.fspath(path)
    if not isinstance(text, str) or not text or "\0" in text or len(text.encode("utf-8", "replace")) > MAX_PATH:
        raise InputError(f"a repository path is 1 to {MAX_PATH} bytes of text")
    if not os.path.isabs(text):
        raise InputError(f"{text!r:.200}: the path must be absolute (the node does not know your working directory)")
    return Path(os.path.normpath(text))


def _default_name(source: SourceRepository) -> str:
    if source.work_tree is not None:
        return source.work_tree.name
    if source.git_dir.name == ".git":
        return source.git_dir.parent.name or "repository"
    name = source.git_dir.name
    return (name[:-4] if name.endswith(".git") else name) or "repository"


def _default_branch(source: SourceRepository, given: str | None, where: Path) -> str:
    branches = sorted(n[len("refs/heads/"):] for n in source.refs if n.startswith("refs/heads/"))
    listed = ", ".join(branches[:10]) + (", ..." if len(branches) > 10 else "")
    if given is not None:
        short = given[len("refs/heads/"):] if given.startswith("refs/heads/") else given
        if short not in branches:
            raise InputError(f"{short!r:.200} is not a branch of {where} (its branches: {listed})")
        return short
    if source.head is not None and source.head.startswith("refs/heads/") and source.head[11:] in branches:
        return source.head[11:]
    for usual in ("main", "master"):
        if usual in branches:
            return usual
    if len(branches) == 1:
        return branches[0]
    raise InputError(f"HEAD of {where} names no branch: pick the default branch with --default-branch ({listed})")


def _delegate_keys(keypair: KeyPair, delegates: Iterable[PeerId | str]) -> list[PublicKey]:
    keys = [keypair.public_key]
    for item in delegates:
        peer = item if isinstance(item, PeerId) else PeerId.from_string(str(item))
        key = PublicKey.from_peer_id(peer)
        if key is None:
            raise InputError(f"delegate {peer}: a delegate's peer id inlines its Ed25519 key (12D3KooW...)")
        if all(key.raw != known.raw for known in keys):
            keys.append(key)
    return keys


def _check_storable(peer: PeerId, statement: Statement) -> None:
    """Refuse a statement whose namespace refs git could not store."""
    for name, _ in statement.refs:
        problem = refname_problem(namespace_ref(peer, name))
        if problem is not None:
            raise InputError(f"{name!r:.120} cannot be stored in a namespace: {problem}")
