"""How far a push got: which peers hold a statement this node signed.

Theory of operation
-------------------
After a push the node has signed its namespace's next statement and
announced it on the repository's topic; the followers fetch it within a
fraction of a second. :func:`find_replicas` tells the person how many
did: it asks peers, each with one ``GetRefs``
(:func:`~guts.sync.probe.probe_seq`), which statement of the namespace
they hold, and counts those at ``seq`` or later. A peer serves a
statement only once its objects are in place, so a peer that lists it
holds the whole push.

Which peers: the connected followers of the repository's topic
(``gossip.subscribers(refs_topic(rid))``: the peers an announcement
reaches), and, when they are fewer than wanted, the seeds the DHT knows
(one lookup, run beside the probes). Without a wanted count, the target
is every follower known when the wait begins (none known: nothing to
wait for). With one, followers that appear during the wait are asked
too.

When: every known peer is asked at once; one that answered with an older
statement (or none) is asked again :attr:`ReplicasConfig.interval` later,
one that failed (unreachable, does not hold the repository yet, too slow)
after a backoff that doubles up to :attr:`ReplicasConfig.max_backoff`.
The wait ends as soon as ``want`` peers hold it, or at the deadline.

The bookkeeping (who is known, due, in flight, has it) is
:class:`ReplicaWatch`, pure: time comes in as ``now``. :func:`wait_for_replicas`
drives it with Trio over injected ``followers``, ``seeds`` and ``probe``
callables (so tests use fakes); :func:`find_replicas` plugs in the host,
gossip, DHT and the sync probe.

Bounds: at most :attr:`ReplicasConfig.max_peers` peers known (so at
most that many probes in flight), each probe under
:attr:`ReplicasConfig.probe_timeout`, the whole under the caller's
``timeout``, and one DHT lookup.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio

from guts.dht import Dht
from guts.errors import GutsError
from guts.gossip import Gossipsub
from guts.host import Host
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.sigrefs import RefsLimits
from guts.replicate.announce import refs_topic
from guts.replicate.providing import find_seeds
from guts.sync import SyncConfig
from guts.sync.probe import probe_seq

__all__ = ["MAX_PEERS", "ReplicaReport", "ReplicaWatch", "ReplicasConfig", "find_replicas", "wait_for_replicas"]

#: Peers one wait asks at most (and so the largest count one may want).
MAX_PEERS = 32


@dataclass(frozen=True, slots=True)
class ReplicasConfig:
    """The bounds and pace of one wait.

    Args:
        max_peers: peers known (followers and seeds) at most.
        interval: seconds before a peer that lacked the statement is
            asked again (a follower fetches about 50 ms after the
            announcement, and a fetch of one push takes a few tenths).
        max_backoff: seconds at most between two asks of a peer that
            failed (the backoff starts at ``interval`` and doubles).
        probe_timeout: seconds one ``GetRefs`` may take.
        seeds: providers asked of the DHT.
    """

    max_peers: int = MAX_PEERS
    interval: float = 0.15
    max_backoff: float = 2.0
    probe_timeout: float = 5.0
    seeds: int = 20


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """What a wait found.

    Attributes:
        want: peers wanted.
        have: peers that hold the statement (or a later one), in the order
            they were found to.
        asked: every peer asked at least once, sorted.
        elapsed: seconds the wait took.
    """

    want: int
    have: tuple[PeerId, ...]
    asked: tuple[PeerId, ...]
    elapsed: float

    @property
    def reached(self) -> bool:
        """Whether ``want`` peers hold it."""
        return len(self.have) >= self.want


class ReplicaWatch:
    """Who is asked when, for one statement (pure; module docstring).

    Args:
        seq: the statement's seq; a peer holding this or a later one has it.
        want: peers that must hold it for the wait to be done.
        config: bounds and pace.
    """

    def __init__(self, seq: int, want: int, config: ReplicasConfig | None = None) -> None:
        self.seq = seq
        self.want = want
        self.config = config or ReplicasConfig()
        self._due: dict[PeerId, float] = {}  # peers waiting for their next ask, and when
        self._backoff: dict[PeerId, float] = {}
        self._flying: set[PeerId] = set()
        self._asked: set[PeerId] = set()
        self._have: dict[PeerId, None] = {}

    @property
    def known(self) -> int:
        """Peers known (asked or to be asked)."""
        return len(self._due) + len(self._flying) + len(self._have)

    @property
    def done(self) -> bool:
        return len(self._have) >= self.want

    @property
    def short(self) -> bool:
        """Fewer peers known than wanted: worth asking the DHT for seeds."""
        return self.known < self.want

    def add(self, peers: Iterable[PeerId], now: float) -> int:
        """Know ``peers`` (new ones are due at once, up to the bound);
        how many were new."""
        added = 0
        for peer in peers:
            if self.known >= self.config.max_peers:
                break
            if peer in self._due or peer in self._flying or peer in self._have:
                continue
            self._due[peer] = now
            added += 1
        return added

    def due(self, now: float) -> list[PeerId]:
        """The peers to ask now; each is in flight until answered."""
        ready = [peer for peer, at in self._due.items() if at <= now]
        for peer in ready:
            del self._due[peer]
            self._flying.add(peer)
            self._asked.add(peer)
        return ready

    def next_at(self) -> float | None:
        """When the next waiting peer is due (``None``: none waits)."""
        return min(self._due.values(), default=None)

    def answered(self, peer: PeerId, held: int | None, now: float) -> None:
        """``peer`` holds ``held`` (``None``: no statement of the namespace)."""
        if peer not in self._flying:
            return
        self._flying.discard(peer)
        self._backoff.pop(peer, None)
        if held is not None and held >= self.seq:
            self._have[peer] = None
        else:
            self._due[peer] = now + self.config.interval

    def failed(self, peer: PeerId, now: float) -> None:
        """Asking ``peer`` failed: ask again after a growing backoff."""
        if peer not in self._flying:
            return
        self._flying.discard(peer)
        wait = self._backoff.get(peer, self.config.interval)
        self._backoff[peer] = min(wait * 2, self.config.max_backoff)
        self._due[peer] = now + wait

    def report(self, elapsed: float) -> ReplicaReport:
        return ReplicaReport(
            want=self.want,
            have=tuple(self._have),
            asked=tuple(sorted(self._asked, key=PeerId.to_bytes)),
            elapsed=elapsed,
        )


async def wait_for_replicas(
    seq: int,
    *,
    want: int | None,
    timeout: float,
    followers: Callable[[], Iterable[PeerId]],
    probe: Callable[[PeerId], Awaitable[int | None]],
    seeds: Callable[[], Awaitable[Iterable[PeerId]]] | None = None,
    config: ReplicasConfig | None = None,
) -> ReplicaReport:
    """Ask peers until ``want`` hold ``seq`` or ``timeout`` seconds pass
    (module docstring).

    Args:
        seq: the statement's seq.
        want: peers wanted; ``None``: every follower known now.
        timeout: seconds the whole wait may take.
        followers: the connected followers of the repository, now.
        probe: the seq a peer holds (``None``: none); raises
            :class:`~guts.errors.GutsError` (or a broken stream) when
            asking fails.
        seeds: more peers, from the DHT; asked once, when the followers
            are fewer than wanted.
        config: bounds and pace.
    """
    cfg = config or ReplicasConfig()
    started = trio.current_time()
    initial = list(followers())
    if want is None:
        want = min(len(dict.fromkeys(initial)), cfg.max_peers)
    watch = ReplicaWatch(seq, want, cfg)
    watch.add(initial, started)
    changed = [trio.Event()]

    def wake() -> None:
        changed[0].set()

    async def ask(peer: PeerId) -> None:
        try:
            with trio.fail_after(cfg.probe_timeout):
                held = await probe(peer)
        except (GutsError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            watch.failed(peer, trio.current_time())
        else:
            watch.answered(peer, held, trio.current_time())
        wake()

    async def look_up() -> None:
        assert seeds is not None
        try:
            found = await seeds()
        except GutsError:
            return
        watch.add(found, trio.current_time())
        wake()

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            if seeds is not None and watch.short:
                nursery.start_soon(look_up)
            while not watch.done:
                now = trio.current_time()
                if watch.short:  # followers that joined meanwhile count too
                    watch.add(followers(), now)
                for peer in watch.due(now):
                    nursery.start_soon(ask, peer)
                changed[0] = trio.Event()
                upcoming = watch.next_at()
                at = min(upcoming if upcoming is not None else math.inf, now + cfg.interval)
                with trio.move_on_at(at):
                    await changed[0].wait()
            nursery.cancel_scope.cancel()
    return watch.report(trio.current_time() - started)


async def find_replicas(
    host: Host,
    gossip: Gossipsub,
    dht: Dht | None,
    rid: Rid,
    signer: PeerId,
    seq: int,
    *,
    want: int | None,
    timeout: float,
    sync_config: SyncConfig | None = None,
    limits: RefsLimits | None = None,
    config: ReplicasConfig | None = None,
) -> ReplicaReport:
    """Which peers hold ``signer``'s statement ``seq`` of ``rid`` (or a
    later one): :func:`wait_for_replicas` over the repository's followers
    on ``gossip``, the seeds ``dht`` knows, and
    :func:`~guts.sync.probe.probe_seq` under ``sync_config`` and ``limits``."""
    cfg = config or ReplicasConfig()
    topic = refs_topic(rid)

    def followers() -> list[PeerId]:
        return [peer for peer in gossip.subscribers(topic) if peer != host.peer_id]

    async def probe(peer: PeerId) -> int | None:
        return await probe_seq(host, peer, rid, signer, sync_config, limits)

    async def seeds() -> list[PeerId]:
        assert dht is not None
        return await find_seeds(host, dht, rid, count=cfg.seeds)

    return await wait_for_replicas(
        seq, want=want, timeout=timeout, followers=followers, probe=probe,
        seeds=seeds if dht is not None else None, config=cfg,
    )  # fmt: skip
