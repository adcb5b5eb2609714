"""The node's seeding: the person's choices (:mod:`guts.replicate.seeds`),
the rules (:mod:`guts.replicate.policy`) and the numbers they need, in one
place the replicator, the DHT provider and the control API ask.

Theory of operation
-------------------
:class:`Seeding` holds a :class:`~guts.replicate.policy.SeedingPolicy`
fed with the seed store's rows merged with the block lists of the
configuration (``seed_block_rids``, ``seed_block_peers``: a block in the
configuration cannot be lifted by a command, only by editing it). It
answers, from memory and at once:

- :meth:`Seeding.seeds`: whether a repository is seeded now. One the node
  holds is, unless the person unseeded or blocked it; one it does not
  hold is when seeded explicitly (its fetch is due).
- :meth:`Seeding.take_on`: whether a repository announced on the network
  is taken on (policy ``all``, within the limits), with the reason; a
  refusal of a block or a limit is logged, once a minute per reason.
- :meth:`Seeding.select`: whose namespaces a fetch keeps (the scope and
  the blocked peers), for :func:`guts.sync.fetch`'s ``select``. A
  repository this node is a delegate of, and did not seed with a scope of
  its own, replicates every namespace but the blocked: its delegates
  review what contributors push.

Changes go to the SQLite store off the Trio thread (a commit fsyncs), then
the policy takes the new rows. Storage in use is measured by walking the
storage directory in a worker thread every :attr:`Seeding.measure_every`
seconds (and after each change), bounded in entries; the limits compare
against the latest measure.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import trio

from guts.errors import GutsError
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.state import Repositories
from guts.replicate.policy import SeedDecision, SeedingPolicy, SeedReason, Seeds, SeedScope
from guts.replicate.seeds import SeedStore

__all__ = ["Seeding", "storage_bytes"]

log = logging.getLogger("guts.replicate")

#: Namespaces a fetch keeps, given the delegates and the signers a peer sent.
Select = Callable[[Sequence[PeerId], Sequence[PeerId]], Collection[PeerId]]

#: Directory entries one storage measure looks at, at most: a home with
#: more than this is measured as far as it got (and logged).
MAX_ENTRIES = 5_000_000


def storage_bytes(root: Path, max_entries: int = MAX_ENTRIES) -> int:
    """The bytes of the files under ``root`` (blocks, as ``du`` counts;
    hard links once), walking at most ``max_entries`` entries."""
    total = 0
    seen: set[tuple[int, int]] = set()
    entries = 0
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as listing:
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        log.warning("storage %s: more than %d entries; measured part of it", root, max_entries)
                        return total
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                            continue
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    if info.st_nlink > 1:
                        if (info.st_dev, info.st_ino) in seen:
                            continue
                        seen.add((info.st_dev, info.st_ino))
                    total += getattr(info, "st_blocks", 0) * 512 or info.st_size
        except OSError:
            continue
    return total


class Seeding:
    """Which repositories and namespaces this node seeds (module docstring).

    Args:
        policy: the node-wide policy and limits.
        repos: the repositories the node holds.
        store: the person's choices, kept across restarts; ``None`` keeps
            them in memory only (a node that persists nothing: an
            in-memory SQLite store).
        blocked_rids, blocked_peers: the configuration's block lists.
        me: this node's peer id (a delegate's repositories replicate
            every namespace).
        measure_every: seconds between two measures of the storage.
    """

    def __init__(
        self,
        policy: SeedingPolicy,
        repos: Repositories,
        store: SeedStore | None = None,
        *,
        blocked_rids: Collection[Rid] = (),
        blocked_peers: Collection[PeerId] = (),
        me: PeerId | None = None,
        measure_every: float = 30.0,
    ) -> None:
        self.me = me
        self.policy = policy
        self.repos = repos
        self.store = store if store is not None else SeedStore(":memory:")
        self.configured_rids = frozenset(blocked_rids)
        self.configured_peers = frozenset(blocked_peers)
        self.measure_every = measure_every
        #: Bytes of repository storage at the latest measure.
        self.storage_bytes = 0
        self._choices = self.store.load()
        self._apply(self._choices)
        self._measure = trio.Event()
        self._last_log: dict[SeedReason, float] = {}
        #: Called with a RID whose seeding changed (the replicator follows
        #: or leaves it, the provider provides or stops).
        self.on_change: list[Callable[[Rid, bool], None]] = []

    # -- what is seeded ------------------------------------------------------

    def _held(self, rid: Rid) -> bool:
        try:
            self.repos.show(rid)
        except GutsError:
            return False
        return True

    def seeds(self, rid: Rid | str) -> bool:
        """Whether ``rid`` is seeded now (module docstring)."""
        key = rid if isinstance(rid, Rid) else Rid.parse(rid)
        return self.policy.is_seeded(key, held=self._held(key))

    def seeded(self) -> list[Rid]:
        """The repositories seeded now: those held and not unseeded or
        blocked, then those seeded explicitly and not held yet."""
        held = [state.rid for state in self.repos.list() if self.policy.is_seeded(state.rid, held=True)]
        known = set(held)
        return held + [rid for rid in self.policy.seeds.scopes if rid not in known and self.seeds(rid)]

    def scope(self, rid: Rid) -> SeedScope:
        return self.policy.scope_of(rid)

    def take_on(self, rid: Rid) -> SeedDecision:
        """Whether to take on ``rid``, announced by a peer and not held."""
        decision = self.policy.should_seed(
            rid,
            held=self._held(rid),
            storage_bytes=self.storage_bytes,
            seeded_count=len(self.seeded()),
            now=trio.current_time(),
        )
        if not decision and decision.reason not in (SeedReason.NOT_SELECTED, SeedReason.UNSEEDED):
            now = trio.current_time()
            if now - self._last_log.get(decision.reason, -math.inf) >= 60.0:
                self._last_log[decision.reason] = now
                log.warning("repository %s not taken on: %s", rid, decision.detail)
        return decision

    def select(self, rid: Rid) -> Select:
        """Whose namespaces of ``rid`` a fetch keeps (for ``fetch(select=)``)."""

        def keep(delegates: Sequence[PeerId], signers: Sequence[PeerId]) -> Collection[PeerId]:
            if self.me is not None and self.me in delegates and rid not in self.policy.seeds.scopes:
                # A delegate reviews contributions: everyone's, but the blocked.
                return frozenset(delegates).union(signers) - self.policy.seeds.blocked_peers
            return self.policy.namespaces_to_replicate(rid, delegates, signers).replicate

        return keep

    def replicates(self, rid: Rid, signer: PeerId, delegates: Sequence[PeerId]) -> bool:
        """Whether an announced statement of ``signer`` in ``rid`` is one
        this node fetches."""
        return signer in self.select(rid)(delegates, (signer,))

    # -- the person's changes --------------------------------------------------

    async def seed(self, rid: Rid, scope: SeedScope) -> SeedScope | None:
        """Seed ``rid`` with ``scope``; the scope it had if seeded."""
        before = self.seeds(rid)
        had: SeedScope | None = await self._change(lambda store: store.seed(rid, scope))
        self._changed(rid, before)
        return had

    async def unseed(self, rid: Rid) -> bool:
        """Stop seeding ``rid``; whether it was seeded."""
        before = self.seeds(rid)
        await self._change(lambda store: store.unseed(rid))
        self._changed(rid, before)
        return before

    async def block_rid(self, rid: Rid) -> bool:
        before = self.seeds(rid)
        added: bool = await self._change(lambda store: store.block_rid(rid))
        self._changed(rid, before)
        return added

    async def unblock_rid(self, rid: Rid) -> bool:
        before = self.seeds(rid)
        removed: bool = await self._change(lambda store: store.unblock_rid(rid))
        self._changed(rid, before)
        return removed

    async def block_peer(self, peer: PeerId) -> bool:
        added: bool = await self._change(lambda store: store.block_peer(peer))
        return added

    async def unblock_peer(self, peer: PeerId) -> bool:
        removed: bool = await self._change(lambda store: store.unblock_peer(peer))
        return removed

    async def _change(self, write: Callable[[SeedStore], Any]) -> Any:
        store = self.store
        answer = await trio.to_thread.run_sync(write, store)
        self._choices = await trio.to_thread.run_sync(store.load)
        self._apply(self._choices)
        return answer

    def _apply(self, choices: Seeds) -> None:
        self.policy.update(
            Seeds(
                choices.scopes,
                choices.blocked_rids | self.configured_rids,
                choices.blocked_peers | self.configured_peers,
                choices.unseeded,
            )
        )

    def _changed(self, rid: Rid, before: bool) -> None:
        after = self.seeds(rid)
        if after != before:
            for callback in self.on_change:
                callback(rid, after)
        self._measure.set()

    # -- storage -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Measure the storage every :attr:`measure_every` seconds."""
        task_status.started()
        root = self.repos.storage.root
        while True:
            self._measure = trio.Event()
            self.storage_bytes = await trio.to_thread.run_sync(storage_bytes, root, abandon_on_cancel=True)
            with trio.move_on_after(self.measure_every):
                await self._measure.wait()

    def measure_soon(self) -> None:
        """A repository arrived: measure again."""
        self._measure.set()

    # -- status -------------------------------------------------------------------

    def status(self, fetches: int) -> dict[str, Any]:
        """What ``guts status`` shows of seeding."""
        seeded = self.seeded()
        summary = self.policy.status(seeded=len(seeded), storage_bytes=self.storage_bytes, fetches=fetches)
        limits = summary.limits
        return {
            "policy": summary.policy.value,
            "seeded": summary.seeded,
            "storage_bytes": summary.storage_bytes,
            "fetches": summary.fetches,
            "limits": {
                "max_repositories": limits.max_repositories,
                "max_storage_bytes": limits.max_storage_bytes,
                "max_fetches": limits.max_fetches,
            },
            "limits_reached": list(summary.limits_reached),
            "selected": summary.selected,
            "unseeded": len(self.policy.seeds.unseeded),
            "blocked_rids": summary.blocked_rids,
            "blocked_peers": summary.blocked_peers,
            "refused": {reason.value: count for reason, count in summary.refused.items()},
            "deferred_fetches": summary.deferred_fetches,
            "recent_refusals": [
                {"rid": str(r.rid), "reason": r.reason.value, "detail": r.detail, "times": r.times}
                for r in summary.recent
            ],
        }

    def choices_json(self) -> dict[str, Any]:
        """The person's choices and the configuration's block lists."""
        choices = self._choices
        return {
            "policy": self.policy.policy.value,
            "default_scope": self.policy.default_scope.value,
            "seeded": [{"rid": str(rid), "scope": scope.value} for rid, scope in choices.scopes.items()],
            "unseeded": [str(rid) for rid in sorted(choices.unseeded, key=str)],
            "blocked_rids": [
                {"rid": str(rid), "from": "config" if rid in self.configured_rids else "command"}
                for rid in sorted(choices.blocked_rids | self.configured_rids, key=str)
            ],
            "blocked_peers": [
                {"peer": str(peer), "from": "config" if peer in self.configured_peers else "command"}
                for peer in sorted(choices.blocked_peers | self.configured_peers, key=str)
            ],
        }
