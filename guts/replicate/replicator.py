"""Replication: a node announces its new signed refs on gossip and fetches
what others announce, for the repositories it holds.

Theory of operation
-------------------
For every repository it holds, the node subscribes to the repository's
topic (:func:`~guts.replicate.announce.refs_topic`) with the
:class:`~guts.replicate.validator.AnnouncementValidator` on it: gossip
forwards only announcements that verify and are news to this node, and
charges the senders of forged ones. The node itself reads nothing from
the topic; the validator's ``on_accept`` offers each accepted statement
to a :class:`~guts.replicate.coalesce.Coalescer`, so that a burst of
announcements for one repository becomes one fetch of its newest state.

:meth:`Replicator.run` sleeps until the coalescer has an order due, then
runs it (at most ``max_fetches`` at once, one per repository): a sync
(:func:`guts.sync.fetch`, everything verified before anything moves) from
the peers that announced it, then from the seeds the DHT knows. The order
is finished either way, and the coalescer retries a failed one a few
times.

Announcements travel only between peers that follow a topic and are
connected, so a node joins each repository's swarm: when it starts to
follow one, and every :attr:`Replicator.rejoin` seconds while it knows no
other follower of its topic, it connects to a few of the seeds the DHT
knows (:attr:`Replicator.swarm`).

A node that was offline catches up when it meets a peer again: on each
peer identified as serving the sync protocol, the node syncs each
repository it holds from that peer (``GetRefs`` first, so a peer that
has nothing newer costs one round trip, and one that lacks the
repository answers ``NOT_FOUND``), at most :attr:`Replicator.catch_up_repos`
of them, one peer at a time, while announced fetches of the same
repository wait.

When the node signs new refs (a push, ``guts repo init``) the control API
calls :meth:`Replicator.announce`: the namespace's new statement and its
sigrefs commit go out on the repository's topic. A repository the node
starts to hold (made here, or fetched by a sync) is followed with
:meth:`Replicator.follow`.

This is the ``selected`` seeding policy of
:mod:`guts.replicate.policy`: the repositories a node made, cloned or
synced. The network-wide topic of new repositories, ``all``, scopes and
block lists come with the policy's wiring.
"""

from __future__ import annotations

import logging
import math

import trio

from guts.dht import Dht
from guts.errors import GutsError
from guts.gossip import GossipMessage, Gossipsub, Subscription
from guts.host import Host, HostEvent, PeerIdentified
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.sigrefs import Statement
from guts.repo.state import Repositories
from guts.repo.storage import RepositoryNotFound
from guts.replicate.announce import (
    Verified,
    VerifiedRefs,
    announce_refs,
    encode_announcement,
    refs_topic,
    topic_rid,
)
from guts.replicate.coalesce import Coalescer, CoalesceConfig, FetchOrder
from guts.replicate.providing import RepoProvider, find_seeds
from guts.replicate.validator import AnnouncementValidator
from guts.sync import SYNC_PROTOCOL, RefusedReason, SyncConfig, SyncRefused, fetch

__all__ = ["QUICK", "Replicator"]

log = logging.getLogger("guts.replicate")

#: A node's coalescing: a push's announcement is fetched 50 ms after it
#: arrives (what comes in those 50 ms, or during the fetch, joins one
#: more fetch after it), and a steady stream waits at most 1 s.
QUICK = CoalesceConfig(debounce=0.05, max_delay=1.0)


class Replicator:
    """Announces this node's new signed refs and fetches what peers
    announce (module docstring).

    Args:
        host: reaches the peers.
        gossip: carries the announcements.
        dht: finds more seeds when the announcers fail.
        repos: the node's repositories.
        sync_config: the limits of each fetch.
        providing: woken after a fetch, so a new repository is provided.
        coalesce: the coalescer's windows and bounds (:data:`QUICK`).
        max_fetches: fetches at once.
    """

    def __init__(
        self,
        host: Host,
        gossip: Gossipsub,
        dht: Dht | None,
        repos: Repositories,
        sync_config: SyncConfig,
        *,
        providing: RepoProvider | None = None,
        coalesce: CoalesceConfig | None = None,
        max_fetches: int = 8,
        catch_up_repos: int = 256,
        catch_up_peers: int = 64,
        swarm: int = 4,
        rejoin: float = 10.0,
    ) -> None:
        self.host = host
        self.gossip = gossip
        self.dht = dht
        self.repos = repos
        self.sync_config = sync_config
        self.providing = providing
        self.coalescer = Coalescer(coalesce or QUICK)
        self.validator = AnnouncementValidator(self._held, on_accept=self._accepted)
        self._limit = trio.CapacityLimiter(max_fetches)
        self._subscriptions: dict[str, Subscription] = {}
        self._wake = trio.Event()
        #: Fetches run for announcements, and how many of those failed.
        self.fetches = 0
        self.failures = 0
        #: Repositories synced from a peer met again (at most, per peer).
        self.catch_up_repos = catch_up_repos
        #: Peers waiting for a catch-up (more are left out, and logged).
        self.catch_up_peers = catch_up_peers
        #: Seeds of a repository a node connects to when it joins its swarm.
        self.swarm = swarm
        #: Seconds between two tries to join a swarm the node is alone in.
        self.rejoin = rejoin
        self._joining: dict[str, None] = {}
        self._join = trio.Event()
        self._meet: dict[PeerId, None] = {}
        self._met = trio.Event()
        host.add_event_handler(self._on_event)

    # -- what the node holds, for the validator ---------------------------

    def _held(self, rid: Rid, signer: PeerId) -> Statement | None:
        try:
            state = self.repos.show(str(rid))
        except (RepositoryNotFound, ValueError):
            return None
        ns = state.namespaces.get(signer)
        return ns.statement if ns is not None else None

    def _accepted(self, verified: Verified, message: GossipMessage) -> None:
        if not isinstance(verified, VerifiedRefs):
            return
        peer = message.propagation_source or message.author
        if peer is None:
            return
        statement = verified.statement
        if self.coalescer.offer(verified.rid, statement.signer, statement.seq, peer, trio.current_time()):
            self._wake.set()

    # -- catching up --------------------------------------------------------

    def _on_event(self, event: HostEvent) -> None:
        if not isinstance(event, PeerIdentified) or SYNC_PROTOCOL not in event.protocols:
            return
        if event.peer_id in self._meet:
            return
        if len(self._meet) >= self.catch_up_peers:
            log.info("catch-up with %s left out: %d peers wait already", event.peer_id, len(self._meet))
            return
        self._meet[event.peer_id] = None
        self._met.set()

    async def _catch_up_loop(self) -> None:
        while True:
            await self._met.wait()
            self._met = trio.Event()
            while self._meet:
                peer = next(iter(self._meet))
                del self._meet[peer]
                await self.catch_up(peer)

    async def _join_loop(self) -> None:
        while True:
            with trio.move_on_after(self.rejoin):
                await self._join.wait()
            self._join = trio.Event()
            for topic in self._subscriptions:  # alone in a swarm: try again
                alone = topic_rid(topic) if not self.gossip.subscribers(topic) else None
                if alone is not None:
                    self._joining[str(alone)] = None
            while self._joining:
                key = next(iter(self._joining))
                del self._joining[key]
                await self.join(key)

    async def join(self, rid: str) -> int:
        """Connect to up to :attr:`swarm` seeds of ``rid`` the node is not
        connected to; how many it reached."""
        if self.dht is None:
            return 0
        connected = {connection.peer_id for connection in self.host.connections}
        try:
            seeds = await find_seeds(self.host, self.dht, rid, exclude=connected)
        except GutsError as exc:
            log.info("repository %s: no seeds from the DHT: %s", rid, exc)
            return 0
        reached = 0
        for peer in seeds[: self.swarm]:
            try:
                await self.host.connect(peer)
                reached += 1
            except (GutsError, OSError) as exc:
                log.info("repository %s: seed %s unreachable: %s", rid, peer, exc)
        return reached

    async def catch_up(self, peer: PeerId) -> int:
        """Sync each held repository from ``peer``; how many changed."""
        held = self.repos.list()[: self.catch_up_repos]
        changed = 0
        for before in held:
            rid = before.rid
            if not self.coalescer.started(rid):
                continue  # an announced fetch runs: it brings the news
            ok = False
            try:
                after = await fetch(self.host, self.repos, peer, rid, self.sync_config)
                ok = True
                changed += after != before
            except SyncRefused as exc:
                if exc.reason is not RefusedReason.NOT_FOUND:
                    log.info("repository %s: catching up from %s: %s", rid, peer, exc)
            except GutsError as exc:
                log.info("repository %s: catching up from %s failed: %s", rid, peer, exc)
            finally:
                self.coalescer.finished(rid, ok, trio.current_time())
        if changed:
            log.info("caught up with %s: %d repositories changed", peer, changed)
            if self.providing is not None:
                self.providing.wake()
        return changed

    # -- topics -------------------------------------------------------------

    def follow(self, rid: Rid | str) -> None:
        """Take announcements for ``rid`` from now on (idempotent)."""
        topic = refs_topic(rid if isinstance(rid, Rid) else Rid.parse(rid))
        if topic in self._subscriptions:
            return
        self.gossip.set_validator(topic, self.validator)
        # The validator does the work; the node reads nothing of the topic.
        self._subscriptions[topic] = self.gossip.subscribe(topic, buffer=1)
        self._joining[str(rid)] = None
        self._join.set()

    def unfollow(self, rid: Rid | str) -> None:
        topic = refs_topic(rid if isinstance(rid, Rid) else Rid.parse(rid))
        subscription = self._subscriptions.pop(topic, None)
        if subscription is not None:
            subscription.close()
            self.gossip.set_validator(topic, None)

    async def announce(self, rid: Rid | str, signer: PeerId) -> bool:
        """Announce ``signer``'s latest statement in ``rid`` on the
        repository's topic; whether there was one to announce."""
        try:
            state = self.repos.show(str(rid))
        except (RepositoryNotFound, ValueError):
            return False
        ns = state.namespaces.get(signer)
        if ns is None:
            return False
        data = encode_announcement(announce_refs(ns.signed, ns.commit))
        try:
            await self.gossip.publish(refs_topic(state.rid), data)
        except GutsError as exc:
            log.warning("repository %s: announcing seq %d failed: %s", state.rid, ns.statement.seq, exc)
            return False
        return True

    # -- fetching -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for state in self.repos.list():
            self.follow(state.rid)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._catch_up_loop)
            nursery.start_soon(self._join_loop)
            while True:
                self._wake = trio.Event()
                now = trio.current_time()
                for order in self.coalescer.due(now):
                    nursery.start_soon(self._fetch, order)
                due = self.coalescer.next_due()
                with trio.move_on_at(due if due is not None else math.inf):
                    await self._wake.wait()

    async def _fetch(self, order: FetchOrder) -> None:
        rid = str(order.rid)
        ok = False
        tried: list[PeerId] = []
        async with self._limit:
            self.fetches += 1
            for peer in order.peers:
                tried.append(peer)
                if await self._fetch_from(peer, rid, order):
                    ok = True
                    break
            if not ok and self.dht is not None:
                try:
                    seeds = await find_seeds(self.host, self.dht, rid, exclude=tried)
                except GutsError as exc:
                    log.info("repository %s: no seeds from the DHT: %s", rid, exc)
                    seeds = []
                for peer in seeds:
                    if await self._fetch_from(peer, rid, order):
                        ok = True
                        break
        if not ok:
            self.failures += 1
        self.coalescer.finished(order.rid, ok, trio.current_time())
        self._wake.set()
        if ok and self.providing is not None:
            self.providing.wake()

    async def _fetch_from(self, peer: PeerId, rid: str, order: FetchOrder) -> bool:
        try:
            state = await fetch(self.host, self.repos, peer, rid, self.sync_config)
        except GutsError as exc:
            log.info("repository %s: fetching the announced state from %s failed: %s", rid, peer, exc)
            return False
        got = {want.signer: state.namespaces.get(want.signer) for want in order.wanted}
        behind = [w for w in order.wanted if (ns := got[w.signer]) is None or ns.statement.seq < w.seq]
        if behind:
            log.info("repository %s: %s did not have every announced statement yet", rid, peer)
            return False
        log.info("repository %s: fetched the announced state from %s", rid, peer)
        return True
