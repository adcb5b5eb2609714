"""The repositories a node holds: their verified signed state, one writer each.

Theory of operation
-------------------
What a repository *is* on a node is its signed state: the identity chain
and each namespace's latest signed statement, stored in git as
:mod:`guts.repo.layout` describes. Everything else follows from it by the
pure cores: namespace refs are what the statements list, canonical refs
what :func:`~guts.repo.canonical.compute_canonical` makes of the
delegates' statements. :class:`Repositories` keeps the verified state of
each repository in memory (:class:`RepoState`, immutable, swapped whole
after each write) and is the only writer of their refs:

- **One writer per repository.** Every change of a repository runs under
  its ``trio.Lock``, so concurrent operations serialize; readers take the
  current :class:`RepoState` and never see half of one.
- **Writes.** New objects (the person's history at ``init``, the layout's
  own commits) arrive as packs in a quarantine (``index-pack --strict``),
  are checked for connectivity, and migrate; then every ref change of the
  operation (identity, sigrefs, namespace refs, canonical refs) is one
  ``update-ref`` transaction, computed as the difference between the refs
  git holds and the refs the new state implies. A repository made by the
  operation (``init``, the first ``receive``) has no refs to differ from:
  its refs are written at once as one ``packed-refs`` file
  (:meth:`~guts.repo.storage.Storage.create_refs`).
- **Reads.** :meth:`Repositories.load` reads the identity chain and every
  namespace's sigrefs from git and verifies them with the pure cores
  (:func:`~guts.repo.revisions.verify_chain`, strict statement parsing,
  signatures, each commit rebuilt byte for byte, each chain link's parent).
- **Repair at start.** :meth:`Repositories.open` loads every repository and
  moves every ref that differs from what the verified state implies back
  (a crash between the renames of one transaction, a ref moved by hand),
  logging a warning that names each, and points ``HEAD`` at the default
  branch again. Refs no valid signature covers are removed. A repository
  without an identity ref never finished being made (the crash came before
  its one transaction) and is deleted. One whose
  identity chain does not verify is logged and left alone, unserved. A
  namespace whose sigrefs do not verify loses its refs, but its sigrefs ref
  stays as found (the evidence), and the warning repeats at each start.

- **Identity revisions.** A delegate proposes the next revision
  (:meth:`Repositories.propose`), the others accept it
  (:meth:`Repositories.accept`), and what peers sent merges in
  (:meth:`Repositories.merge_proposals`); pending proposals are stored as
  layout commits under ``refs/guts/proposals/`` and read back at load. The
  one that reaches the current threshold becomes the chain's next revision
  in one write, with the canonical refs its delegates and threshold imply
  (:mod:`guts.repo.proposals`, ``_state_identity``).

Canonical refs keep their previous value when the delegates diverge. After
a restart the previous value is taken from git only when a signature covers
it: some delegate's latest statement lists it for that ref, or it is an
ancestor of every oid they list (where diverged delegates started from).
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import trio

from guts.crypto import KeyPair
from guts.errors import GutsError, InputError, InvalidIdentity, InvalidRefs
from guts.peer import PeerId
from guts.repo._state_base import (
    BrokenRepository,
    FetchObjects,
    Namespace,
    RepositoriesConfig,
    RepoState,
    StoredProposal,
    _check_storable,
    _checked,
    _default_branch,
    _default_name,
    _delegate_keys,
    _key,
    _once,
    _source_path,
)
from guts.repo import _state_identity
from guts.repo._state_read import read_chain, read_identity, read_namespace
from guts.repo._state_receive import bound_namespaces, sort_statements
from guts.repo.canonical import Canonical, ancestry_questions, compute_canonical
from guts.repo.identity import SignedRevision, create_genesis
from guts.repo.layout import (
    IDENTITY_REF,
    LayoutCommit,
    RefKind,
    encode_pack,
    identity_commit,
    parse_ref,
    sigrefs_commit,
)
from guts.repo.refname import refname_problem
from guts.repo.revisions import VerifiedIdentity, verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, ref_problem, sign_statement
from guts.repo.storage import RefUpdate, RepositoryExists, RepositoryNotFound, Storage, StorageError

__all__ = [
    "BrokenRepository",
    "FetchObjects",
    "Namespace",
    "RepoState",
    "Repositories",
    "RepositoriesConfig",
    "StoredProposal",
]

log = logging.getLogger("guts.repo.state")


class Repositories:
    """The repositories of one node, under ``GUTS_HOME/storage`` (see the
    module docstring); made by :meth:`open`."""

    def __init__(self, storage: Storage, config: RepositoriesConfig | None = None) -> None:
        self.storage = storage
        self.config = config or RepositoriesConfig()
        self._states: dict[str, RepoState] = {}
        self._locks: dict[str, trio.Lock] = {}
        #: Per repository, its identity chain as last read, and the commit
        #: read (immutable: a new head reads again). One per repository held.
        self._chains: dict[str, tuple[str, builtins.list[SignedRevision]]] = {}

    @classmethod
    async def open(cls, root: Path, config: RepositoriesConfig | None = None) -> Repositories:
        """Open the storage at ``root``, load and verify every repository,
        and repair refs that differ from the verified state."""
        config = config or RepositoriesConfig()
        repos = cls(await Storage.open(root, config.storage), config)
        for key in await repos.storage.list():
            async with repos._lock(key):
                await repos._open_one(key)
        return repos

    def _lock(self, key: str) -> trio.Lock:
        return self._locks.setdefault(key, trio.Lock())

    async def _open_one(self, key: str) -> None:
        try:
            current = await self.storage.refs(key)
            if IDENTITY_REF not in current:
                log.warning("repository %s has no identity: its creation never finished; removing it", key)
                await self.storage.delete(key)
                return
            state = await self._load(key, current)
            await self._write_refs(key, state.refs(), current, expected=None)
            await self.storage.set_head(key, "refs/heads/" + state.document.default_branch)
        except GutsError as exc:
            log.error("repository %s is not served: %s", key, exc)
            return
        self._states[key] = state

    # -- reading -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._states)

    def list(self) -> builtins.list[RepoState]:
        """The verified state of every repository, by RID."""
        return [self._states[key] for key in sorted(self._states)]

    def show(self, rid: Rid | str) -> RepoState:
        """The verified state of ``rid``.

        Raises:
            InvalidRid: ``rid`` is not a repository id.
            RepositoryNotFound: this node does not hold it.
        """
        key = _key(rid)
        state = self._states.get(key)
        if state is None:
            raise RepositoryNotFound(f"no repository {key} on this node")
        return state

    async def load(self, rid: Rid | str) -> RepoState:
        """Read ``rid``'s identity chain and namespaces from git and verify
        them (nothing is written).

        Raises:
            RepositoryNotFound: no such repository is stored.
            BrokenRepository: its identity chain is missing or invalid.
        """
        key = _key(rid)
        return await self._load(key, await self.storage.refs(key))

    async def _load(self, key: str, current: Mapping[str, str]) -> RepoState:
        rid = Rid.parse(key)
        head = current.get(IDENTITY_REF)
        if head is None:
            raise BrokenRepository(f"repository {key} has no {IDENTITY_REF}")
        namespaces: dict[PeerId, Namespace] = {}
        refused: dict[PeerId, tuple[str, str]] = {}
        async with self.storage.objects(key) as reader:
            try:
                identity, identity_head = await read_identity(reader, rid, head, self.config.identity)
            except (InvalidIdentity, ValueError) as exc:
                raise BrokenRepository(f"repository {key}: {exc}") from None
            proposals = await _state_identity.load_proposals(
                reader, key, identity, identity_head, current, self.config.identity
            )
            for name, oid in current.items():
                where = parse_ref(name)
                if where is None or where.kind is not RefKind.SIGREFS or where.namespace is None:
                    continue
                try:
                    namespaces[where.namespace] = await read_namespace(reader, rid, where.namespace, oid, self.config.refs)
                except (InvalidRefs, ValueError) as exc:
                    refused[where.namespace] = (oid, str(exc))
        listed = {oid for ns in namespaces.values() for _, oid in ns.statement.refs}
        missing = set(await self.storage.missing_objects(key, sorted(listed)))
        for peer, ns in builtins.list(namespaces.items()):
            lost = sorted({oid for _, oid in ns.statement.refs} & missing)
            if lost:
                refused[peer] = (ns.commit, f"objects its statement lists are missing: {', '.join(lost[:3])}")
                del namespaces[peer]
        for peer, (_, why) in refused.items():
            log.warning("repository %s: namespace %s does not verify, its refs are not served: %s", key, peer, why)
        statements = {peer: ns.statement for peer, ns in namespaces.items()}
        previous = await self._covered_canonical(key, identity, statements, current)
        canonical = await self._canonical(key, identity, statements, previous)
        return RepoState(rid, identity, identity_head, namespaces, canonical, refused, proposals)

    async def revisions(self, rid: Rid | str) -> builtins.list[SignedRevision]:
        """The identity chain of a repository this node serves, genesis
        first, as read from git (what the sync protocol's ``Refs`` carries);
        read once per identity head, then answered from memory.

        Raises:
            RepositoryNotFound: this node does not serve ``rid``.
            BrokenRepository: the chain no longer reads back (changed by hand).
        """
        state = self.show(rid)
        key = str(state.rid)
        cached = self._chains.get(key)
        if cached is not None and cached[0] == state.identity_commit:
            return list(cached[1])
        async with self.storage.objects(key) as reader:
            try:
                chain = await read_chain(reader, state.identity_commit, self.config.identity)
            except (InvalidIdentity, ValueError) as exc:
                raise BrokenRepository(f"repository {key}: {exc}") from None
        revisions = [revision for _, revision, _ in chain]
        if key in self._states:  # not removed meanwhile
            self._chains[key] = (state.identity_commit, revisions)
        return list(revisions)

    async def _descends(self, key: str, a: str, b: str) -> bool:
        try:
            return await self.storage.is_ancestor(key, b, a)
        except StorageError:
            return False  # not commits (a tag of a tree, say): no ancestry

    async def _canonical(
        self, key: str, identity: VerifiedIdentity, statements: Mapping[PeerId, Statement], previous: Mapping[str, str]
    ) -> Canonical:
        answers = {pair: await self._descends(key, *pair) for pair in ancestry_questions(identity, statements)}
        return compute_canonical(identity, statements, previous, lambda a, b: answers.get((a, b), False))

    async def _covered_canonical(
        self, key: str, identity: VerifiedIdentity, statements: Mapping[PeerId, Statement], current: Mapping[str, str]
    ) -> dict[str, str]:
        """The canonical refs in git that a signature covers (module docstring)."""
        signed = [statements[peer].ref_map() for peer in identity.delegate_ids if peer in statements]
        covered = {}
        for name, oid in current.items():
            where = parse_ref(name)
            if where is None or where.kind is not RefKind.CANONICAL:
                continue
            candidates = {refs[name] for refs in signed if name in refs}
            if oid in candidates:
                covered[name] = oid
            elif candidates and all([await self._descends(key, c, oid) for c in sorted(candidates)]):
                covered[name] = oid
        return covered

    # -- writing -------------------------------------------------------------

    async def _write_refs(
        self,
        key: str,
        target: Mapping[str, str],
        current: Mapping[str, str],
        *,
        expected: Mapping[str, str] | None,
        fresh: bool = False,
    ) -> None:
        """Move the refs from ``current`` to ``target`` in one transaction,
        warning about each ref that was not what Guts left (``expected``;
        ``None``: every difference is a repair). ``fresh``: the repository
        was made by this operation and has no ref yet (``current`` is
        empty), so the refs are written as one ``packed-refs`` file."""
        updates = []
        for name in sorted(set(current) | set(target)):
            old, new = current.get(name), target.get(name)
            if old == new:
                continue
            if refname_problem(name) is not None:
                log.warning("repository %s: ref %r is not one Guts can name; left alone", key, name)
                continue
            before = None if expected is None else expected.get(name)
            if expected is None or old != before:
                log.warning(
                    "repository %s: ref %s was %s outside Guts, the signed state says %s: repaired",
                    key, name, old or "absent", new or "absent",
                )  # fmt: skip
            updates.append(RefUpdate(name, old, new))
        if fresh:
            await self.storage.create_refs(key, {u.name: u.new for u in updates if u.new is not None})
        else:
            await self.storage.update_refs(key, updates)

    async def init(
        self,
        path: Path | str,
        *,
        keypair: KeyPair,
        name: str | None = None,
        description: str = "",
        default_branch: str | None = None,
        delegates: Sequence[PeerId | str] = (),
        threshold: int = 1,
    ) -> RepoState:
        """Make the git repository at ``path`` a Guts repository.

        The genesis identity names ``keypair`` (the node's key) and
        ``delegates`` as delegates; its RID names the new storage
        repository, which receives every branch and tag of ``path`` and our
        namespace's first statement, listing them.

        Args:
            path: an absolute path to a work tree (or inside one) or a bare
                repository.
            name: default: the work tree's directory name.
            default_branch: default: the branch ``HEAD`` names, else
                ``main`` or ``master``, else the only branch.

        Raises:
            InputError: ``path`` is not a git repository, has no branch,
                uses sha256 object ids, or a field breaks a rule.
            RepositoryExists: the new RID names a repository on this node
                already. Each genesis has a random nonce, so two inits (of
                the same repository too) make two RIDs; this guards against
                a broken random source.
            PackRejected: git refused the repository's objects.
        """
        where = _source_path(path)
        if not await trio.Path(where).is_dir():
            raise InputError(f"{where}: no such directory")
        source = await self.storage.read_source(where)
        if source is None:
            raise InputError(
                f"{where} is not a git repository: run `git init` and commit there, or give a repository's path"
            )
        if source.object_format != "sha1":
            raise InputError(f"{where} uses {source.object_format} object ids; Guts stores sha1 repositories only")
        if not any(n.startswith("refs/heads/") for n in source.refs):
            raise InputError(f"{where} has no branch yet: commit something first (`git commit`), then run this again")
        refs = dict(source.refs)
        for ref, oid in refs.items():
            problem = ref_problem(ref, oid)
            if problem is not None:
                raise InputError(f"{problem}: rename that branch or tag (git branch -m, git tag), then run this again")
        genesis = create_genesis(
            keypair,
            name=_default_name(source) if name is None else name,
            nonce=os.urandom(16),
            description=description,
            default_branch=_default_branch(source, default_branch, where),
            delegates=_delegate_keys(keypair, delegates),
            threshold=threshold,
            limits=self.config.identity,
        )
        rid = Rid.of_genesis(genesis.document.raw)
        identity = verify_chain(rid, [genesis], self.config.identity)
        me = keypair.peer_id
        statement = next_statement(
            None, rid=rid, signer=me, identity=genesis.document, refs=refs.items(), limits=self.config.refs
        )
        _check_storable(me, statement)
        signed = sign_statement(keypair, statement)
        chain = identity_commit(genesis, 1, None)
        sigrefs = sigrefs_commit(signed, None)
        key = str(rid)
        async with self._lock(key):
            if key in self._states or await self.storage.exists(key):
                raise RepositoryExists(
                    f"repository {key} is on this node already (`guts repo show {key}`): the new genesis, its 16 "
                    "random bytes included, equals that repository's, which a working random source does not "
                    "produce; nothing was changed"
                )
            await self.storage.create(key)
            try:
                async with self.storage.quarantine(key) as quarantine:
                    async with self.storage.pack_source(source, set(refs.values())) as chunks:
                        await quarantine.ingest_pack(chunks)
                    await quarantine.ingest_pack(_once(encode_pack((*chain.objects, *sigrefs.objects))))
                    await quarantine.check_connected([*sorted(set(refs.values())), chain.oid, sigrefs.oid])
                    await quarantine.migrate()
                canonical = await self._canonical(key, identity, {me: statement}, {})
                state = RepoState(rid, identity, chain.oid, {me: Namespace(me, signed, sigrefs.oid)}, canonical)
                await self.storage.set_head(key, "refs/heads/" + genesis.document.default_branch)
                await self._write_refs(key, state.refs(), {}, expected={}, fresh=True)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.storage.delete(key)
                raise
            self._states[key] = state
        log.info("repository %s made from %s: %d refs", key, where, len(refs))
        return state

    async def publish(
        self, rid: Rid | str, keypair: KeyPair, refs: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> RepoState:
        """Sign ``refs`` as ``keypair``'s namespace's next statement (seq + 1,
        its parent the previous one) and apply it with the canonical refs
        it changes, in one transaction. The objects must be stored already.

        Raises:
            RepositoryNotFound: this node does not hold ``rid``.
            InputError: a ref peers would refuse, or over the limits.
            NotConnected: an object ``refs`` names is missing or incomplete.
        """
        key = _key(rid)
        pairs = builtins.list(refs.items() if isinstance(refs, Mapping) else refs)
        async with self._lock(key):
            state = self.show(key)
            me = keypair.peer_id
            before = state.namespaces.get(me)
            statement = next_statement(
                None if before is None else before.statement,
                rid=state.rid,
                signer=me,
                identity=state.document,
                refs=pairs,
                limits=self.config.refs,
            )
            _check_storable(me, statement)
            signed = sign_statement(keypair, statement)
            commit = sigrefs_commit(signed, None if before is None else before.commit)
            async with self.storage.quarantine(key) as quarantine:
                await quarantine.ingest_pack(_once(encode_pack(commit.objects)))
                await quarantine.check_connected([*sorted({oid for _, oid in statement.refs}), *_checked([commit])])
                await quarantine.migrate()
            statements = {peer: ns.statement for peer, ns in state.namespaces.items()} | {me: statement}
            canonical = await self._canonical(key, state.identity, statements, state.canonical.ref_map())
            namespaces = {**state.namespaces, me: Namespace(me, signed, commit.oid)}
            refused = {peer: why for peer, why in state.refused.items() if peer != me}
            new = replace(state, namespaces=namespaces, canonical=canonical, refused=refused)
            await self._write_refs(key, new.refs(), await self.storage.refs(key), expected=state.refs())
            self._states[key] = new
        return new

    async def propose(
        self,
        rid: Rid | str,
        keypair: KeyPair,
        *,
        name: str | None = None,
        description: str | None = None,
        default_branch: str | None = None,
        delegates: Sequence[PeerId | str] | None = None,
        threshold: int | None = None,
    ) -> tuple[RepoState, str]:
        """Propose the identity revision after the current one, with the
        fields given changed (``delegates``: the whole new list), signed by
        ``keypair``, a delegate; pending until the current threshold of
        delegates signed it (at once when that is 1). See
        :mod:`guts.repo.proposals`.

        Returns:
            The new state and the proposal's id.

        Raises:
            RepositoryNotFound: this node does not hold ``rid``.
            InputError: ``keypair`` is no delegate, a field breaks a rule,
                nothing changes, or the pending proposals are at their bound.
        """
        return await _state_identity.propose(
            self, rid, keypair, name=name, description=description, default_branch=default_branch,
            delegates=delegates, threshold=threshold,
        )  # fmt: skip

    async def accept(self, rid: Rid | str, keypair: KeyPair, proposal: str) -> tuple[RepoState, str]:
        """Sign the pending proposal ``proposal`` (its id or a unique prefix)
        as ``keypair``, a delegate; it takes effect once the threshold is
        met. Accepting one signed already, or the revision in effect, changes
        nothing.

        Returns:
            The new state and the proposal's id.

        Raises:
            ProposalNotFound: no pending proposal has that id.
            InputError: ``keypair`` is no delegate.
        """
        return await _state_identity.accept(self, rid, keypair, proposal)

    async def merge_proposals(self, rid: Rid | str, proposals: Sequence[SignedRevision]) -> RepoState:
        """Merge proposals a peer sent into those held (union of signatures;
        stale ones left out), adopting one that reaches the threshold.

        Raises:
            InvalidIdentity: a proposal with a bad signature, or signed by
                no delegate; nothing changes.
        """
        return await _state_identity.merge(self, rid, proposals)

    async def receive(
        self,
        rid: Rid | str,
        identity: Sequence[SignedRevision],
        statements: Sequence[tuple[SignedStatement, str]],
        fetch: FetchObjects,
    ) -> RepoState:
        """Apply a peer's signed state of ``rid`` (the sync protocol's fetch),
        creating the storage repository if this node does not hold it yet.

        Everything is checked before anything moves, under the repository's
        lock: the identity chain verifies against ``rid`` and extends the
        one held (a shorter one that is a prefix of ours is ignored); each
        statement is validly signed (a :class:`SignedStatement` is), is its
        signer's namespace's, and :func:`~guts.repo.sigrefs.judge` accepts
        it (newer) or finds it unchanged; an older one is left out (the peer
        is behind on that namespace: ours stays, and what it has newer in
        other namespaces is taken); an equivocating or forked statement
        refuses the whole state. Each statement comes with the
        peer's sigrefs commit for it. The identity commits are rebuilt here
        from the revisions; so is a sigrefs commit whose parent statement
        we hold (it must then equal the peer's). Otherwise the peer's
        sigrefs commit is fetched with the objects the accepted statements
        list that we lack (``fetch`` into a quarantine), and read back from
        the quarantine as :meth:`load` reads one: the layout's commit of
        this very statement, its parent holding the statement before it.
        Every listed oid and chain commit is checked connected,
        the objects migrate, and every ref changes in one transaction. On
        any failure no ref moves, no object leaves the quarantine, and a
        repository created here is deleted again.

        Returns:
            The new state (the held one when nothing was newer).

        Raises:
            InvalidIdentity: the chain does not verify, or forks from ours.
            InvalidRefs: a statement refused (its message says why).
            BrokenRepository: the repository is stored but not served.
            PackRejected, NotConnected: the objects did not arrive whole.
        """
        key = _key(rid)
        parsed = Rid.parse(key)
        async with self._lock(key):
            held = self._states.get(key)
            if held is None and await self.storage.exists(key):
                raise BrokenRepository(f"repository {key} is stored but not served (see the log at start)")
            chain = verify_chain(parsed, identity, self.config.identity)
            commits: list[LayoutCommit] = []
            for number, revision in enumerate(identity, 1):
                commits.append(identity_commit(revision, number, commits[-1].oid if commits else None))
            verified, identity_head, new_chain = chain, commits[-1].oid, True
            if held is not None:
                if chain.length < held.identity.length:
                    if not await self._descends(key, held.identity_commit, identity_head):
                        raise InvalidIdentity(f"the identity chain of {chain.length} revisions forks from ours")
                    verified, identity_head, new_chain = held.identity, held.identity_commit, False
                elif commits[held.identity.length - 1].oid != held.identity_commit:
                    raise InvalidIdentity(
                        f"the identity chain forks from ours at or before revision {held.identity.length}"
                    )
                elif chain.length == held.identity.length:
                    new_chain = False
            # Each statement names the identity revision its signer stood on:
            # one of this repository's, never one of another chain.
            revisions = identity if held is None or len(identity) >= held.identity.length else await self.revisions(key)
            known = {revision.document.digest for revision in revisions}
            accepted, chains = sort_statements(key, parsed, held, statements, known)
            bound_namespaces(key, held, verified, accepted, chains, self.config.max_namespaces)
            if held is not None and not accepted and not chains and not new_chain:
                return held
            listed = {oid for signed, _ in [*accepted.values(), *chains.values()] for _, oid in signed.statement.refs}
            wanted = sorted(listed | {oid for _, oid in chains.values()})
            layout = [commit for _, commit in accepted.values()] + (commits if new_chain else [])
            created = False
            if held is None:
                await self.storage.create(key)
                created = True
            try:
                async with self.storage.quarantine(key) as quarantine:
                    # (a repository made just now has no object to look up)
                    missing = wanted if created else await self.storage.missing_objects(key, wanted)
                    if missing:
                        await fetch(quarantine, missing)
                    objects = [obj for commit in layout for obj in commit.objects]
                    if objects:
                        await quarantine.ingest_pack(_once(encode_pack(objects)))
                    await quarantine.check_connected([*wanted, *_checked(layout)])
                    if chains:
                        async with quarantine.objects() as reader:
                            for peer, (signed, commit_oid) in chains.items():
                                try:
                                    read = await read_namespace(reader, parsed, peer, commit_oid, self.config.refs)
                                except (InvalidRefs, ValueError) as exc:
                                    raise InvalidRefs(f"namespace {peer}: {exc}") from None
                                if read.signed.id != signed.id:
                                    raise InvalidRefs(
                                        f"namespace {peer}: sigrefs commit {commit_oid} records another statement"
                                    )
                    await quarantine.migrate()
                namespaces = {} if held is None else dict(held.namespaces)
                namespaces.update((peer, Namespace(peer, s, c.oid)) for peer, (s, c) in accepted.items())
                namespaces.update((peer, Namespace(peer, s, oid)) for peer, (s, oid) in chains.items())
                statements_now = {peer: ns.statement for peer, ns in namespaces.items()}
                previous = {} if held is None else held.canonical.ref_map()
                canonical = await self._canonical(key, verified, statements_now, previous)
                refused = {} if held is None else {p: w for p, w in held.refused.items() if p not in namespaces}
                # A new chain head leaves every pending proposal stale.
                proposals = {} if held is None or new_chain else held.proposals
                state = RepoState(parsed, verified, identity_head, namespaces, canonical, refused, proposals)
                if held is None or new_chain:
                    await self.storage.set_head(key, "refs/heads/" + verified.current.default_branch)
                if held is None:
                    await self._write_refs(key, state.refs(), {}, expected={}, fresh=True)
                else:
                    await self._write_refs(key, state.refs(), await self.storage.refs(key), expected=held.refs())
            except BaseException:
                if created:
                    with trio.CancelScope(shield=True):
                        await self.storage.delete(key)
                raise
            self._states[key] = state
        return state
