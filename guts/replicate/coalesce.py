"""Coalescing announcements into fetches: a burst of announcements for one
repository makes one fetch of its newest state, not one per message.

Theory of operation
-------------------
The adapter that receives accepted announcements calls
:meth:`Coalescer.offer` with who signed what (``signer``, ``seq``) in which
repository and which peer announced it. Per repository the coalescer keeps
the newest sequence number announced for each signer and the peers that
announced exactly that one (any of them can serve it). An older sequence
number than one already pending is dropped; the same one adds its peer.

A repository's order is due (:meth:`Coalescer.due`) once its announcements
have been quiet for ``debounce`` seconds, or ``max_delay`` seconds after its
first unfetched announcement even if they keep coming, whichever is sooner.
An offer may ask for patience (``hold``): the order then also waits that
long for an offer without one (a peer nearer than the first announcer
that holds the statement), and is due by the rule above as soon as one
comes. An offer without a hold also ends the wait before a retry: it
names a peer that holds the statement now.
Handing out an order marks the repository as fetching: at most one fetch per
repository runs at once. Announcements that arrive meanwhile wait, and when
the caller reports :meth:`Coalescer.finished`:

- after a success, what the finished order already covered (the same
  signer at a sequence number no higher) is dropped, and whatever is left
  makes one more order, due by the same debounce rule;
- after a failure, the order's wants go back, merged with anything newer,
  and are due again ``retry_delay`` seconds later; after ``max_attempts``
  failures in a row they are dropped (a new announcement starts again).

A fetch the node starts for another reason (a person's ``guts repo sync``,
catching up with a peer that just connected) is reported with
:meth:`Coalescer.started` so that announcements wait for it too.

Bounds (:class:`CoalesceConfig`): repositories tracked at once (pending or
fetching; an announcement for another one is refused, so new work is
turned away rather than old work lost), signers per repository and peers
per signer (the least recently announced is dropped). No clock inside:
every call takes ``now``, in seconds on any monotonic clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from guts.peer import PeerId
from guts.repo.rid import Rid

__all__ = ["CoalesceConfig", "Coalescer", "FetchOrder", "Wanted"]


@dataclass(frozen=True, slots=True)
class CoalesceConfig:
    """How announcements are gathered into fetches (times in seconds).

    Args:
        debounce: quiet time after the latest announcement of a repository
            before its order is due.
        max_delay: longest wait after the first unfetched announcement,
            even if more keep coming.
        retry_delay: wait after a failed fetch before its order is due again.
        max_attempts: failed fetches in a row after which an order is dropped.
        max_repositories: repositories tracked at once, pending or fetching.
        max_signers: signers remembered per repository (the least recently
            announced dropped).
        max_peers: announcing peers remembered per signer (the least
            recent dropped).
    """

    debounce: float = 0.5
    max_delay: float = 2.0
    retry_delay: float = 5.0
    max_attempts: int = 3
    max_repositories: int = 1024
    max_signers: int = 64
    max_peers: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.debounce <= self.max_delay:
            raise ValueError("0 <= debounce <= max_delay")
        if self.retry_delay < 0:
            raise ValueError("retry_delay is not negative")
        if min(self.max_attempts, self.max_repositories, self.max_signers, self.max_peers) < 1:
            raise ValueError("max_attempts, max_repositories, max_signers and max_peers are at least 1")


@dataclass(frozen=True, slots=True)
class Wanted:
    """A signer's newest announced statement in a repository.

    Attributes:
        signer: the namespace.
        seq: the newest sequence number announced for it.
        peers: the peers that announced that one, most recent first.
        direct: of those, the ones offered without a hold (that told the
            node themselves, say).
    """

    signer: PeerId
    seq: int
    peers: tuple[PeerId, ...]
    direct: tuple[PeerId, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class FetchOrder:
    """Fetch :attr:`rid`'s newest state: at least :attr:`wanted`, from any
    of :attr:`peers`.

    Attributes:
        rid: the repository.
        wanted: the newest announced statement of each signer, by signer.
        attempt: 1 for a first try, 2 after one failure, ...
    """

    rid: Rid
    wanted: tuple[Wanted, ...]
    attempt: int = 1

    @property
    def peers(self) -> tuple[PeerId, ...]:
        """Every peer that announced a wanted statement, each once, those
        that announced the most first."""
        counts: dict[PeerId, int] = {}
        for want in self.wanted:
            for peer in want.peers:
                counts[peer] = counts.get(peer, 0) + 1
        return tuple(sorted(counts, key=lambda peer: -counts[peer]))

    @property
    def direct(self) -> frozenset[PeerId]:
        """The peers offered without a hold, for any wanted statement."""
        return frozenset(peer for want in self.wanted for peer in want.direct)

    def holders(self, connected: Collection[PeerId], shuffle: Callable[[list[PeerId]], None]) -> list[PeerId]:
        """The peers to ask, in order: those offered without a hold first,
        then those ``connected``, each group shuffled by ``shuffle`` (so
        that many fetching nodes spread over them); the wanted statements'
        signers last, and only if offered without a hold (else they come
        after the DHT's seeds: a push's author is not every seed's first
        resort)."""
        signers = {want.signer for want in self.wanted}
        direct = self.direct
        others = [p for p in self.peers if p not in signers]
        shuffle(others)
        others.sort(key=lambda p: (p not in direct, p not in connected))
        return others + [p for p in self.peers if p in signers and p in direct]

    def brought(self, namespaces: Mapping[PeerId, Any]) -> bool:
        """Whether ``namespaces`` (a repository's, each with a
        ``statement``) hold every wanted statement or a newer one."""
        return all(
            (ns := namespaces.get(want.signer)) is not None and ns.statement.seq >= want.seq for want in self.wanted
        )


@dataclass(slots=True)
class _Signer:
    seq: int
    peers: OrderedDict[PeerId, bool] = field(default_factory=OrderedDict)  # least recent first; direct?


@dataclass(slots=True)
class _Repository:
    signers: OrderedDict[PeerId, _Signer] = field(default_factory=OrderedDict)  # least recent first
    first: float = 0.0  # the first unfetched announcement
    last: float = 0.0  # the latest one
    not_before: float = 0.0  # a retry waits until then
    patience: float = 0.0  # a held offer waits until then for a nearer holder
    ready: bool = False  # an offer that needs no patience came
    attempt: int = 1
    fetching: FetchOrder | None = None
    running: bool = False  # a fetch runs (an order of ours or one started elsewhere)

    def due_at(self, cfg: CoalesceConfig) -> float | None:
        if self.running or not self.signers:
            return None
        due = max(min(self.last + cfg.debounce, self.first + cfg.max_delay), self.not_before)
        return due if self.ready else max(due, self.patience)


class Coalescer:
    """Gathers announcements per repository into fetch orders (see the
    module docstring)."""

    def __init__(self, config: CoalesceConfig | None = None) -> None:
        self.config = config or CoalesceConfig()
        self._repos: dict[Rid, _Repository] = {}

    def __len__(self) -> int:
        """Repositories tracked: pending or fetching."""
        return len(self._repos)

    def fetching(self, rid: Rid) -> bool:
        """Whether a fetch of ``rid`` runs."""
        repo = self._repos.get(rid)
        return repo is not None and repo.running

    def expects(self, rid: Rid, signer: PeerId, seq: int) -> bool:
        """Whether ``signer``'s statement ``seq`` in ``rid``, or a newer
        one, is pending or in the order being fetched: an announcement of
        it is no news to pass on."""
        repo = self._repos.get(rid)
        if repo is None:
            return False
        entry = repo.signers.get(signer)
        if entry is not None and entry.seq >= seq:
            return True
        order = repo.fetching
        return order is not None and any(w.signer == signer and w.seq >= seq for w in order.wanted)

    def offer(self, rid: Rid, signer: PeerId, seq: int, peer: PeerId, now: float, *, hold: float = 0.0) -> bool:
        """``peer`` announced the statement with ``seq`` of ``signer`` in
        ``rid`` (checked and newer than the node's: the validator's job).

        ``hold`` (seconds) asks the order to wait that long for another
        offer (a nearer peer that holds it) before it is due, unless an
        offer without a hold comes first; offers without one are due by
        the debounce rule alone.

        Returns:
            ``False`` when refused: ``rid`` is new and ``max_repositories``
            are tracked already, or ``seq`` is below one pending for
            ``signer``.
        """
        cfg = self.config
        repo = self._repos.get(rid)
        if repo is None:
            if len(self._repos) >= cfg.max_repositories:
                return False
            repo = self._repos[rid] = _Repository()
        if not self._add(repo, signer, seq, (peer,), now, direct=() if hold > 0 else (peer,)):
            return False
        if hold > 0:
            repo.patience = max(repo.patience, now + hold)
        else:
            repo.ready = True
            repo.not_before = 0.0  # a peer that holds it: no reason to wait out a retry
        return True

    def _add(
        self,
        repo: _Repository,
        signer: PeerId,
        seq: int,
        peers: tuple[PeerId, ...],
        now: float,
        direct: tuple[PeerId, ...] = (),
    ) -> bool:
        cfg = self.config
        entry = repo.signers.get(signer)
        if entry is not None and seq < entry.seq:
            return False
        if not repo.signers:
            repo.first = now
        repo.last = now
        if entry is None or seq > entry.seq:
            entry = _Signer(seq)
        repo.signers.pop(signer, None)
        repo.signers[signer] = entry
        while len(repo.signers) > cfg.max_signers:
            repo.signers.popitem(last=False)
        for peer in reversed(peers):  # the first given ends most recent
            was = entry.peers.pop(peer, False)
            entry.peers[peer] = was or peer in direct
        while len(entry.peers) > cfg.max_peers:
            entry.peers.popitem(last=False)
        return True

    def next_due(self) -> float | None:
        """When the earliest pending order is due (``None``: none pending),
        for the adapter to sleep until."""
        times = [t for repo in self._repos.values() if (t := repo.due_at(self.config)) is not None]
        return min(times, default=None)

    def due(self, now: float, limit: int | None = None) -> list[FetchOrder]:
        """The orders due at ``now``, longest waiting first, at most
        ``limit``. Each repository handed out is marked as fetching until
        :meth:`finished`."""
        cfg = self.config
        ready = sorted(
            ((t, rid) for rid, repo in self._repos.items() if (t := repo.due_at(cfg)) is not None and t <= now),
            key=lambda item: item[0],
        )
        if limit is not None:
            ready = ready[: max(limit, 0)]
        orders = []
        for _, rid in ready:
            repo = self._repos[rid]
            wanted = tuple(
                Wanted(
                    signer,
                    entry.seq,
                    tuple(reversed(entry.peers)),
                    tuple(peer for peer, told in reversed(entry.peers.items()) if told),
                )
                for signer, entry in sorted(repo.signers.items(), key=lambda item: item[0].to_bytes())
            )
            order = FetchOrder(rid, wanted, repo.attempt)
            repo.signers = OrderedDict()
            repo.patience, repo.ready = 0.0, False
            repo.fetching = order
            repo.running = True
            orders.append(order)
        return orders

    def started(self, rid: Rid) -> bool:
        """A fetch of ``rid`` not handed out by :meth:`due` starts:
        announcements wait for it.

        Returns:
            ``False`` when one runs already (the caller should not start
            another), or ``rid`` is new and ``max_repositories`` are tracked.
        """
        repo = self._repos.get(rid)
        if repo is None:
            if len(self._repos) >= self.config.max_repositories:
                return False
            repo = self._repos[rid] = _Repository()
        if repo.running:
            return False
        repo.running = True
        repo.fetching = None
        return True

    def finished(self, rid: Rid, ok: bool, now: float) -> None:
        """The fetch of ``rid`` ended, successfully or not (see the module
        docstring for what stays pending)."""
        repo = self._repos.get(rid)
        if repo is None or not repo.running:
            return
        order = repo.fetching
        repo.running = False
        repo.fetching = None
        if ok:
            repo.attempt = 1
            repo.not_before = 0.0
            if order is not None:
                for want in order.wanted:
                    entry = repo.signers.get(want.signer)
                    if entry is not None and entry.seq <= want.seq:
                        del repo.signers[want.signer]
        elif order is not None:
            if order.attempt >= self.config.max_attempts:
                repo.attempt = 1
            else:
                pending = repo.signers
                repo.signers = OrderedDict()
                for want in order.wanted:  # the order's wants, then anything newer on top
                    self._add(repo, want.signer, want.seq, want.peers, now, want.direct)
                for signer, entry in pending.items():
                    told = tuple(peer for peer, direct in entry.peers.items() if direct)
                    self._add(repo, signer, entry.seq, tuple(reversed(entry.peers)), now, told)
                repo.attempt = order.attempt + 1
                repo.not_before = now + self.config.retry_delay
        if not repo.signers:
            del self._repos[rid]

    def forget(self, rid: Rid) -> None:
        """Drop everything about ``rid`` (the node stopped seeding it). A
        fetch that runs still ends with :meth:`finished`, which then does
        nothing."""
        self._repos.pop(rid, None)
