"""The seeding policy: which repositories a node seeds, whose namespaces
it replicates, and how much it takes on. Pure; no trio, no disk.

Theory of operation. Three inputs decide everything, each passed in:

- the node-wide :class:`SeedPolicy` (config ``seed_policy``):
  ``selected``, the default, seeds only what the person chose: the
  repositories created or cloned here (the caller says so with
  ``held``) and those seeded with ``guts repo seed``; ``all`` makes a
  public seed node that also seeds every repository it hears announced.
- :class:`Seeds`: the per-repository choices and the block lists, as kept
  by :class:`guts.replicate.seeds.SeedStore` (a RID seeded with its
  :class:`SeedScope`; blocked RIDs; blocked peers).
- :class:`SeedLimits` (config ``seed_max_*``): repositories seeded, bytes
  of storage, fetches at once.

The rules, in the order they apply (:meth:`SeedingPolicy.should_seed`):

1. A blocked RID is never seeded, whatever else holds: not held, not
   seeded explicitly, not under ``all``.
2. A RID seeded explicitly is seeded; one the person unseeded is not
   (neither by being held nor under ``all``); one held (created or cloned
   here) is seeded.
   Limits never refuse it: the person asked for it, and a limit refuses
   new work rather than failing old (a node past its storage limit keeps
   updating what it already seeds).
3. Under ``selected``, anything else is refused (not selected).
4. Under ``all``, anything else is seeded unless a limit is reached
   (repositories seeded, then storage): the node refuses to take the new
   repository on, says why, and counts the refusal for ``guts status``.

Namespaces (:meth:`SeedingPolicy.namespaces_to_replicate`): scope
``delegates`` replicates the delegates' namespaces only, scope ``all``
every namespace announced too; a blocked peer's namespace is never
replicated, even a delegate's (the answer lists the blocked delegates,
since the canonical refs then lack their votes). The scope of a RID not
seeded explicitly (held, or taken on under ``all``) is
:attr:`SeedingPolicy.default_scope`, ``delegates`` unless given: a
contributor's namespace is someone's unreviewed work, replicated only
where a person asked for it.

Fetches (:meth:`SeedingPolicy.may_start_fetch`): at most
:attr:`SeedLimits.max_fetches` at once; one more waits (deferred, never
dropped: the caller keeps it queued).

Every decision returns a typed answer with its reason (an enum, and a
sentence for the log). Refusals are remembered, bounded: counts by reason
and the latest few repositories refused (:meth:`SeedingPolicy.status`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from guts.peer import PeerId
from guts.repo.rid import Rid

__all__ = [
    "FetchDecision",
    "NamespaceChoice",
    "PolicyStatus",
    "Refusal",
    "SeedDecision",
    "SeedLimits",
    "SeedPolicy",
    "SeedReason",
    "SeedScope",
    "Seeds",
    "SeedingPolicy",
]

_GIB = 1024**3


class SeedScope(enum.Enum):
    """Whose namespaces of a seeded repository to replicate."""

    #: The delegates' namespaces only (what the canonical refs are made of).
    DELEGATES = "delegates"
    #: Every namespace announced: the delegates' and the contributors'.
    ALL = "all"


class SeedPolicy(enum.Enum):
    """Which repositories a node seeds by itself (config ``seed_policy``)."""

    #: Only what the person chose: created, cloned or seeded here.
    SELECTED = "selected"
    #: A public seed node: every repository announced, within the limits.
    ALL = "all"


@dataclass(frozen=True, slots=True)
class SeedLimits:
    """What a seed node takes on (config ``seed_max_repositories``,
    ``seed_max_storage_bytes``, ``seed_max_fetches``).

    Past a limit the node refuses *new* repositories (policy ``all``)
    and defers new fetches; what it seeds already keeps being updated.

    Args:
        max_repositories: repositories seeded at once. 10,000: one bare
            git repository each on disk and one provider record each in
            the DHT, republished every 22 hours.
        max_storage_bytes: bytes of repository storage, past which no
            new repository is taken on. 128 GiB: eight of the largest
            packs a node accepts (``repo_max_pack_bytes``, 16 GiB), or
            thousands of ordinary repositories.
        max_fetches: fetches running at once, all repositories together.
            8: a burst of announcements fetches a few at a time, each
            bounded by the sync deadline, rather than every one at once.
    """

    max_repositories: int = 10_000
    max_storage_bytes: int = 128 * _GIB
    max_fetches: int = 8

    def __post_init__(self) -> None:
        for name in ("max_repositories", "max_storage_bytes", "max_fetches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SeedLimits.{name} must be a whole number of at least 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class Seeds:
    """The person's choices, as the seed store keeps them.

    Args:
        scopes: each repository seeded explicitly, with its scope.
        blocked_rids: repositories never seeded.
        blocked_peers: peers whose namespaces are never replicated.
        unseeded: repositories the person stopped seeding (``guts repo
            unseed``): not seeded again, even when held or under ``all``,
            until seeded explicitly.
    """

    scopes: Mapping[Rid, SeedScope] = field(default_factory=dict, hash=False)  # a mapping does not hash
    blocked_rids: frozenset[Rid] = frozenset()
    blocked_peers: frozenset[PeerId] = frozenset()
    unseeded: frozenset[Rid] = frozenset()

    def __post_init__(self) -> None:
        # A private copy: a caller's dict changing later does not change us.
        object.__setattr__(self, "scopes", MappingProxyType(dict(self.scopes)))
        object.__setattr__(self, "blocked_rids", frozenset(self.blocked_rids))
        object.__setattr__(self, "blocked_peers", frozenset(self.blocked_peers))
        object.__setattr__(self, "unseeded", frozenset(self.unseeded))


class SeedReason(enum.Enum):
    """Why a repository is seeded or not."""

    # seeded
    SEEDED = "seeded"  # seeded explicitly (guts repo seed)
    HELD = "held"  # created or cloned here
    POLICY_ALL = "policy-all"  # taken on by a node of policy all
    # refused
    BLOCKED = "blocked"  # on the block list
    UNSEEDED = "unseeded"  # unseeded by the person (guts repo unseed)
    NOT_SELECTED = "not-selected"  # policy selected, and the person did not choose it
    REPOSITORY_LIMIT = "repository-limit"  # policy all, seed_max_repositories reached
    STORAGE_LIMIT = "storage-limit"  # policy all, seed_max_storage_bytes reached


_SENTENCES = {
    SeedReason.SEEDED: "seeded explicitly",
    SeedReason.HELD: "created or cloned here",
    SeedReason.POLICY_ALL: "seed_policy is all",
    SeedReason.BLOCKED: "the repository is blocked",
    SeedReason.UNSEEDED: "unseeded here (`guts repo seed RID` takes it back)",
    SeedReason.NOT_SELECTED: "seed_policy is selected and it was not created, cloned or seeded here",
    SeedReason.REPOSITORY_LIMIT: "seed_max_repositories reached",
    SeedReason.STORAGE_LIMIT: "seed_max_storage_bytes reached",
}


@dataclass(frozen=True, slots=True)
class SeedDecision:
    """The answer of :meth:`SeedingPolicy.should_seed`.

    Attributes:
        rid: the repository.
        seed: whether to seed it; the object is truthy when so.
        reason: why.
        scope: the scope to replicate with (meaningful when ``seed``).
        detail: the reason as a sentence, with the numbers of a limit.
    """

    rid: Rid
    seed: bool
    reason: SeedReason
    scope: SeedScope
    detail: str

    def __bool__(self) -> bool:
        return self.seed


@dataclass(frozen=True, slots=True)
class NamespaceChoice:
    """The answer of :meth:`SeedingPolicy.namespaces_to_replicate`.

    Attributes:
        scope: the repository's scope.
        replicate: the namespaces to fetch.
        blocked: namespaces left out because their peer is blocked.
        blocked_delegates: of those, the delegates' (the canonical refs
            will lack their votes; worth a warning).
        out_of_scope: contributors' namespaces left out by scope
            ``delegates``.
    """

    scope: SeedScope
    replicate: frozenset[PeerId]
    blocked: frozenset[PeerId]
    blocked_delegates: frozenset[PeerId]
    out_of_scope: frozenset[PeerId]


@dataclass(frozen=True, slots=True)
class FetchDecision:
    """The answer of :meth:`SeedingPolicy.may_start_fetch`: ``start`` (the
    object is truthy when so), or wait for one of ``running`` to end."""

    start: bool
    running: int
    limit: int

    def __bool__(self) -> bool:
        return self.start

    @property
    def detail(self) -> str:
        if self.start:
            return f"{self.running} of {self.limit} fetches running"
        return f"seed_max_fetches reached ({self.running} of {self.limit} running); the fetch waits"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A repository refused, as :attr:`PolicyStatus.recent` lists it.

    Attributes:
        rid: the repository.
        reason: the latest reason.
        detail: its sentence.
        times: how many times it was refused since it entered the list.
        at: when it was last refused (the ``now`` the caller passed), if known.
    """

    rid: Rid
    reason: SeedReason
    detail: str
    times: int
    at: float | None


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """A summary for ``guts status``: the policy, the limits and how near
    the node is to them, and what was refused.

    Attributes:
        policy: the node-wide policy.
        limits: the limits.
        seeded: repositories seeded now (as the caller counted them).
        storage_bytes: storage used now (likewise).
        fetches: fetches running now (likewise).
        selected: repositories seeded explicitly.
        blocked_rids: repositories blocked.
        blocked_peers: peers blocked.
        limits_reached: the names of the limits reached
            (``max_repositories``, ``max_storage_bytes``, ``max_fetches``).
        refused: refusals counted by reason since the node started
            (``not-selected`` included; it is the normal answer of
            ``selected`` to a stranger's announcement).
        deferred_fetches: fetches that had to wait for a free slot.
        recent: the latest repositories refused for a reason worth
            showing (a block or a limit), newest last, at most
            :attr:`SeedingPolicy.recent_limit`.
    """

    policy: SeedPolicy
    limits: SeedLimits
    seeded: int
    storage_bytes: int
    fetches: int
    selected: int
    blocked_rids: int
    blocked_peers: int
    limits_reached: tuple[str, ...]
    refused: Mapping[SeedReason, int] = field(hash=False)
    deferred_fetches: int
    recent: tuple[Refusal, ...]


#: Refusals worth listing by RID in ``guts status`` (``not-selected`` is
#: the normal answer to every stranger's announcement; listing those would
#: push the interesting ones out).
_NOTABLE = frozenset({SeedReason.BLOCKED, SeedReason.REPOSITORY_LIMIT, SeedReason.STORAGE_LIMIT})


class SeedingPolicy:
    """The node's seeding decisions (module docstring), and the bounded
    memory of what they refused.

    Args:
        policy: the node-wide policy.
        limits: the limits.
        seeds: the person's choices (:meth:`guts.replicate.seeds.SeedStore.load`);
            replace them with :meth:`update` when a command changes the store.
        default_scope: the scope of a repository held or taken on under
            ``all`` without being seeded explicitly.
        recent_limit: refused repositories remembered for :meth:`status`.
    """

    def __init__(
        self,
        policy: SeedPolicy = SeedPolicy.SELECTED,
        limits: SeedLimits | None = None,
        seeds: Seeds | None = None,
        *,
        default_scope: SeedScope = SeedScope.DELEGATES,
        recent_limit: int = 32,
    ) -> None:
        if recent_limit < 0:
            raise ValueError("recent_limit must not be negative")
        self.policy = policy
        self.limits = limits or SeedLimits()
        self.seeds = seeds or Seeds()
        self.default_scope = default_scope
        self.recent_limit = recent_limit
        self._refused: dict[SeedReason, int] = {}
        self._recent: OrderedDict[Rid, Refusal] = OrderedDict()
        self._deferred = 0

    def update(self, seeds: Seeds) -> None:
        """Take the person's new choices; what was refused is kept."""
        self.seeds = seeds

    def scope_of(self, rid: Rid) -> SeedScope:
        """The scope ``rid`` is replicated with: its own if seeded
        explicitly, else :attr:`default_scope`."""
        return self.seeds.scopes.get(rid, self.default_scope)

    # -- decisions ---------------------------------------------------------

    def is_seeded(self, rid: Rid, *, held: bool) -> bool:
        """Whether ``rid`` is seeded now, by the person's choices alone
        (blocked, seeded, unseeded, held), without a limit and without
        counting a refusal: the question asked of what the node holds
        already, for each repository and often."""
        choices = self.seeds
        if rid in choices.blocked_rids:
            return False
        if rid in choices.scopes:
            return True
        return held and rid not in choices.unseeded

    def should_seed(
        self, rid: Rid, *, held: bool, storage_bytes: int, seeded_count: int, now: float | None = None
    ) -> SeedDecision:
        """Whether to seed ``rid`` (the rules of the module docstring).

        Args:
            rid: the repository (announced, asked for, or held).
            held: whether the node holds it already (created or cloned
                here, and not unseeded since).
            storage_bytes: the bytes of repository storage in use now.
            seeded_count: the repositories seeded now.
            now: the time, recorded with a refusal for :meth:`status`.
        """
        scope = self.scope_of(rid)
        if rid in self.seeds.blocked_rids:
            return self._refuse(rid, SeedReason.BLOCKED, scope, _SENTENCES[SeedReason.BLOCKED], now)
        if rid in self.seeds.scopes:
            return self._accept(rid, SeedReason.SEEDED, scope)
        if rid in self.seeds.unseeded:
            return self._refuse(rid, SeedReason.UNSEEDED, scope, _SENTENCES[SeedReason.UNSEEDED], now)
        if held:
            return self._accept(rid, SeedReason.HELD, scope)
        if self.policy is SeedPolicy.SELECTED:
            return self._refuse(rid, SeedReason.NOT_SELECTED, scope, _SENTENCES[SeedReason.NOT_SELECTED], now)
        limits = self.limits
        if seeded_count >= limits.max_repositories:
            detail = f"seed_max_repositories reached ({seeded_count} of {limits.max_repositories} seeded)"
            return self._refuse(rid, SeedReason.REPOSITORY_LIMIT, scope, detail, now)
        if storage_bytes >= limits.max_storage_bytes:
            detail = f"seed_max_storage_bytes reached ({storage_bytes} of {limits.max_storage_bytes} bytes used)"
            return self._refuse(rid, SeedReason.STORAGE_LIMIT, scope, detail, now)
        return self._accept(rid, SeedReason.POLICY_ALL, scope)

    def namespaces_to_replicate(
        self, rid: Rid, delegates: Iterable[PeerId], announced_peers: Iterable[PeerId]
    ) -> NamespaceChoice:
        """Whose namespaces of ``rid`` to fetch.

        Args:
            rid: the repository (its scope decides).
            delegates: its delegates (``state.document.delegate_ids``);
                under either scope they are replicated unless blocked.
            announced_peers: the other namespaces known to exist (in a
                peer's answer or an announcement); replicated under scope
                ``all`` unless blocked.
        """
        scope = self.scope_of(rid)
        delegate_set = frozenset(delegates)
        others = frozenset(announced_peers) - delegate_set
        blocked_peers = self.seeds.blocked_peers
        wanted = delegate_set | others if scope is SeedScope.ALL else delegate_set
        return NamespaceChoice(
            scope=scope,
            replicate=wanted - blocked_peers,
            blocked=(delegate_set | others) & blocked_peers,
            blocked_delegates=delegate_set & blocked_peers,
            out_of_scope=frozenset() if scope is SeedScope.ALL else others - blocked_peers,
        )

    def may_start_fetch(self, running: int) -> FetchDecision:
        """Whether one more fetch may start while ``running`` run; one
        refused waits (the caller keeps it queued), and is counted."""
        start = running < self.limits.max_fetches
        if not start:
            self._deferred += 1
        return FetchDecision(start, running, self.limits.max_fetches)

    # -- status ------------------------------------------------------------

    def status(self, *, seeded: int, storage_bytes: int, fetches: int) -> PolicyStatus:
        """The summary for ``guts status``, given the node's counts now."""
        limits = self.limits
        reached = tuple(
            name
            for name, used, limit in (
                ("max_repositories", seeded, limits.max_repositories),
                ("max_storage_bytes", storage_bytes, limits.max_storage_bytes),
                ("max_fetches", fetches, limits.max_fetches),
            )
            if used >= limit
        )
        return PolicyStatus(
            policy=self.policy,
            limits=limits,
            seeded=seeded,
            storage_bytes=storage_bytes,
            fetches=fetches,
            selected=len(self.seeds.scopes),
            blocked_rids=len(self.seeds.blocked_rids),
            blocked_peers=len(self.seeds.blocked_peers),
            limits_reached=reached,
            refused=MappingProxyType(dict(self._refused)),
            deferred_fetches=self._deferred,
            recent=tuple(self._recent.values()),
        )

    # -- internals ---------------------------------------------------------

    def _accept(self, rid: Rid, reason: SeedReason, scope: SeedScope) -> SeedDecision:
        return SeedDecision(rid, True, reason, scope, _SENTENCES[reason])

    def _refuse(self, rid: Rid, reason: SeedReason, scope: SeedScope, detail: str, now: float | None) -> SeedDecision:
        self._refused[reason] = self._refused.get(reason, 0) + 1
        if reason in _NOTABLE and self.recent_limit:
            # One entry per RID, moved to the end when refused again: a
            # burst of announcements for one repository takes one slot.
            earlier = self._recent.pop(rid, None)
            times = earlier.times + 1 if earlier is not None else 1
            self._recent[rid] = Refusal(rid, reason, detail, times, now)
            while len(self._recent) > self.recent_limit:
                self._recent.popitem(last=False)
        return SeedDecision(rid, False, reason, scope, detail)
