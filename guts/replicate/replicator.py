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
the peers that announced it, then from the seeds the DHT knows, a few at
once (:func:`~guts.sync.race.fetch_first`: the first whose signed state
verifies serves, the others are cancelled). The order
is finished either way, and the coalescer retries a failed one a few
times.

Announcements travel only between peers that follow a topic and are
connected, so a node joins each repository's swarm: when it starts to
follow one, every :attr:`Replicator.rejoin` seconds while it knows no
other follower of its topic, and every :attr:`Replicator.refill` seconds
while it knows fewer than :attr:`Replicator.swarm` (a few repositories a
round), it connects to a few of the seeds the DHT knows. So the two sides
of a network partition find each other again once it heals, though every
connection across it was lost.

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

What it follows and fetches is the node's :class:`~guts.replicate.seeding.Seeding`:
the repositories it seeds (held and not unseeded or blocked, or seeded
explicitly), and in each only the namespaces the repository's scope and
the blocked peers allow (an announcement of another namespace is
forwarded but fetches nothing; every fetch passes ``select``). Every node
also follows the network-wide topic of new repositories
(:data:`~guts.replicate.announce.REPOSITORIES_TOPIC`) with the same
validator, so announcements cross any node; :meth:`Replicator.announce_new`
publishes one when ``guts repo init`` makes a repository. A node of policy
``all`` takes on each repository announced there unless a block or a limit
refuses it (:meth:`Seeding.take_on <guts.replicate.seeding.Seeding.take_on>`):
it fetches it from the announcer, then from the DHT's seeds, at most
:attr:`Replicator.take_on_queue` waiting. A repository seeded explicitly
but not held yet is fetched the same way.

How a push spreads from seed to seed rather than from its author to
everyone: the author announces its new statement to
:attr:`Replicator.first_receivers` peers only (mesh first,
``publish(limit=)``); every node that fetched an announced statement
announces it again, to as many. A message's author holds what it
announces; a relay forwarded it because it did not (a node that holds it,
or awaits it already, ignores it: each node passes each statement on
once). So a node fetches from authors: at once from one that
told it directly, and, when it heard of holders only through relays, after
waiting :attr:`Replicator.patience` for one nearer (a connected peer's own
announcement), or :attr:`Replicator.author_patience` when the holders
known are the statement's signer or peers not connected; connected
holders first, in random order, the signers last. A peer that answers without the statement yet is asked again a few
times, :attr:`Replicator.behind_wait` apart, before the DHT's seeds are,
and the statement's signer comes last among those too (asked even when
the DHT does not list it).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Collection

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
    REPOSITORIES_TOPIC,
    Verified,
    VerifiedRepository,
    announce_refs,
    announce_repository,
    encode_announcement,
    refs_topic,
    topic_rid,
)
from guts.replicate.coalesce import Coalescer, CoalesceConfig, FetchOrder
from guts.replicate.policy import SeedingPolicy
from guts.replicate.providing import RepoProvider, find_seeds
from guts.replicate.seeding import Seeding
from guts.replicate.validator import AnnouncementValidator
from guts.sync import SYNC_PROTOCOL, NoPeerServed, RefusedReason, SyncConfig, SyncRefused, fetch, fetch_first

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
        seeding: what the node seeds; by default every repository it
            holds, delegates' namespaces only, policy ``selected``.
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
        seeding: Seeding | None = None,
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
        self.seeding = seeding if seeding is not None else Seeding(SeedingPolicy(), repos, me=host.peer_id)
        self.seeding.on_change.append(self._seeding_changed)
        self.coalescer = Coalescer(coalesce or QUICK)
        self.validator = AnnouncementValidator(self._held, known=self._knows, on_accept=self._accepted)
        self._limit = trio.CapacityLimiter(max_fetches)
        #: Repositories to take on (announced, or seeded and not held), with
        #: the peer to ask first; at most :attr:`take_on_queue` wait.
        self._take: dict[Rid, PeerId | None] = {}
        self._taking = trio.Event()
        self.take_on_queue = 256
        self._revised: dict[str, None] = {}
        self._revising = trio.Event()
        #: Seconds between two asks of an announcer that lacked the objects.
        self.behind_wait = 0.2
        #: Asks of such announcers before the DHT's seeds.
        self.behind_tries = 3
        #: Seconds a fetch waits for a holder that tells us directly, when
        #: the only ones known came through relays.
        self.patience = 0.75
        #: The same when the holders known are the statement's signer (a
        #: push's author, whose node every other seed would ask) or peers
        #: not connected (often not even dialable).
        self.author_patience = 3.0
        #: Seeds asked one by one after a race whose winner lacked the
        #: announced statement.
        self.race_after = 2
        #: Peers an announcement goes to (the mesh degree; mesh peers
        #: first): they fetch the statement from us, the others from them.
        self.first_receivers = gossip.router.config.d
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
        #: Seconds between two tries to fill a swarm of fewer than
        #: :attr:`swarm` followers, and repositories tried so in one round.
        self.refill = 30.0
        self.refill_per_round = 8
        self._joined: dict[str, float] = {}  # when each followed repository last joined
        self._joining: dict[str, None] = {}
        self._join = trio.Event()
        self._meet: dict[PeerId, None] = {}
        self._met = trio.Event()
        host.add_event_handler(self._on_event)

    # -- what the node holds, for the validator ---------------------------

    def _holds(self, rid: Rid) -> bool:
        try:
            self.repos.show(str(rid))
        except (RepositoryNotFound, ValueError):
            return False
        return True

    def _knows(self, announced: VerifiedRepository) -> bool:
        """Whether a repository announcement is no news: held, with an
        identity chain as long (a longer one is a revision to fetch)."""
        try:
            state = self.repos.show(str(announced.rid))
        except (RepositoryNotFound, ValueError):
            return False
        return state.identity.length >= announced.identity.length

    def _held(self, rid: Rid, signer: PeerId) -> Statement | None:
        try:
            state = self.repos.show(str(rid))
        except (RepositoryNotFound, ValueError):
            return None
        ns = state.namespaces.get(signer)
        return ns.statement if ns is not None else None

    def _accepted(self, verified: Verified, message: GossipMessage) -> bool:
        """Take an accepted announcement; ``False`` when it was no news (a
        fetch of that statement is pending already), so it goes no further."""
        # The author published it, so holds it; a relay forwarded it because
        # it did not hold it yet (a node that holds it ignores it).
        source = message.propagation_source
        peer = message.author or source
        if peer is None:
            return True
        if isinstance(verified, VerifiedRepository):
            if self.seeding.take_on(verified.rid):
                self._queue_take(verified.rid, peer)
            return True
        statement = verified.statement
        try:
            delegates = self.repos.show(str(verified.rid)).document.delegate_ids
        except (RepositoryNotFound, ValueError):
            if self.seeding.seeds(verified.rid):  # seeded, its first fetch still to come
                self._queue_take(verified.rid, peer)
            return True
        if not self.seeding.seeds(verified.rid) or not self.seeding.replicates(verified.rid, statement.signer, delegates):
            return True
        news = not self.coalescer.expects(verified.rid, statement.signer, statement.seq)
        hold = 0.0
        if source is not None and source != peer:  # heard of the holder through relays
            near = peer != statement.signer and self.host.connection(peer) is not None
            hold = self.patience if near else self.author_patience
        if self.coalescer.offer(verified.rid, statement.signer, statement.seq, peer, trio.current_time(), hold=hold):
            self._wake.set()
        return news

    def _queue_take(self, rid: Rid, peer: PeerId | None) -> None:
        if rid in self._take or self.coalescer.fetching(rid):
            return
        if len(self._take) >= self.take_on_queue:
            log.info("repository %s not taken on now: %d repositories wait already", rid, len(self._take))
            return
        self._take[rid] = peer
        self._taking.set()

    def _seeding_changed(self, rid: Rid, seeded: bool) -> None:
        if not seeded:
            self.unfollow(rid)
            self.coalescer.forget(rid)
            if self.providing is not None:
                self.providing.stop(rid)
        elif self._holds(rid):
            self.follow(rid)
            if self.providing is not None:
                self.providing.wake()

    def take_on_later(self, rid: Rid) -> None:
        """Fetch ``rid``, seeded and not held, in the background: from the
        DHT's seeds now, and from whoever announces it later."""
        if not self._holds(rid) and self.seeding.seeds(rid):
            self.follow(rid)
            self._queue_take(rid, None)

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
            now, thin = trio.current_time(), 0
            followed = {str(rid): topic for topic in self._subscriptions if (rid := topic_rid(topic)) is not None}
            self._joined = {key: at for key, at in self._joined.items() if key in followed}
            for key, topic in followed.items():  # alone in a swarm, or in too thin a one: try again
                followers, last = len(self.gossip.subscribers(topic)), self._joined.get(key, -math.inf)
                if not followers or (followers < self.swarm and thin < self.refill_per_round and now - last >= self.refill):
                    self._joining[key] = None
                    thin += followers > 0
            while self._joining:
                key = next(iter(self._joining))
                del self._joining[key]
                await self.join(key)

    async def join(self, rid: str) -> int:
        """Connect to up to :attr:`swarm` seeds of ``rid`` the node is not
        connected to; how many it reached."""
        if self.dht is None:
            return 0
        self._joined[rid] = trio.current_time()
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
        """Sync each seeded repository from ``peer``; how many changed."""
        held = [state for state in self.repos.list() if self.seeding.seeds(state.rid)][: self.catch_up_repos]
        changed = 0
        for before in held:
            rid = before.rid
            if not self.coalescer.started(rid):
                continue  # an announced fetch runs: it brings the news
            ok = False
            try:
                after = await fetch(self.host, self.repos, peer, rid, self.sync_config, select=self.seeding.select(rid))
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
        """Take announcements for ``rid`` from now on, if the node seeds it
        (idempotent)."""
        key = rid if isinstance(rid, Rid) else Rid.parse(rid)
        topic = refs_topic(key)
        if topic in self._subscriptions or not self.seeding.seeds(key):
            return
        self.gossip.set_validator(topic, self.validator)
        # The validator does the work; the node reads nothing of the topic.
        self._subscriptions[topic] = self.gossip.subscribe(topic, buffer=1)
        self._joining[str(key)] = None
        self._join.set()

    def unfollow(self, rid: Rid | str) -> None:
        topic = refs_topic(rid if isinstance(rid, Rid) else Rid.parse(rid))
        subscription = self._subscriptions.pop(topic, None)
        if subscription is not None:
            subscription.close()
            self.gossip.set_validator(topic, None)

    @property
    def following(self) -> list[Rid]:
        """The repositories whose announcements the node takes."""
        return [rid for topic in self._subscriptions if (rid := topic_rid(topic)) is not None]

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
            await self.gossip.publish(refs_topic(state.rid), data, limit=self.first_receivers)
        except GutsError as exc:
            log.warning("repository %s: announcing seq %d failed: %s", state.rid, ns.statement.seq, exc)
            return False
        return True

    def identity_changed(self, rid: Rid | str) -> None:
        """The identity chain of ``rid`` grew here (a revision adopted):
        announce it soon, so that seeds fetch the new revision."""
        self._revised[str(rid)] = None
        self._revising.set()

    async def _revised_loop(self) -> None:
        while True:
            await self._revising.wait()
            self._revising = trio.Event()
            while self._revised:
                key = next(iter(self._revised))
                del self._revised[key]
                await self.announce_new(key)

    async def announce_new(self, rid: Rid | str) -> bool:
        """Announce a repository's identity chain on the network-wide topic:
        a repository made here (what nodes of policy ``all`` take on), or a
        new revision (what its seeds fetch); whether it went out. A chain
        larger than one message is not announced (peers learn of it by
        sync)."""
        try:
            chain = await self.repos.revisions(str(rid))
            data = encode_announcement(announce_repository(chain))
        except (GutsError, ValueError) as exc:
            log.info("repository %s: not announced as new: %s", rid, exc)
            return False
        try:
            await self.gossip.publish(REPOSITORIES_TOPIC, data)
        except GutsError as exc:
            log.info("repository %s: announcing it as new failed: %s", rid, exc)
            return False
        return True

    # -- fetching -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.set_validator(REPOSITORIES_TOPIC, self.validator)
        self._subscriptions[REPOSITORIES_TOPIC] = self.gossip.subscribe(REPOSITORIES_TOPIC, buffer=1)
        for state in self.repos.list():
            self.follow(state.rid)
        for rid in self.seeding.seeded():
            self.take_on_later(rid)  # seeded, and its first fetch never finished
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._catch_up_loop)
            nursery.start_soon(self._join_loop)
            nursery.start_soon(self._take_on_loop)
            nursery.start_soon(self._revised_loop)
            while True:
                self._wake = trio.Event()
                now = trio.current_time()
                for order in self.coalescer.due(now):
                    nursery.start_soon(self._fetch, order)
                due = self.coalescer.next_due()
                with trio.move_on_at(due if due is not None else math.inf):
                    await self._wake.wait()

    async def _take_on_loop(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await self._taking.wait()
                self._taking = trio.Event()
                while self._take:
                    rid, peer = next(iter(self._take.items()))
                    del self._take[rid]
                    if self.coalescer.started(rid):
                        nursery.start_soon(self._take_on, rid, peer)

    async def _take_on(self, rid: Rid, first: PeerId | None) -> None:
        """Fetch ``rid`` (not held yet, or held with a shorter identity
        chain than one announced) from ``first``, then from the DHT's
        seeds; follow it when it arrived."""
        key = str(rid)
        ok = False
        tried: list[PeerId] = []
        revision = self._holds(rid)  # held: an announced revision of its identity
        try:
            async with self._acquire():
                self.fetches += 1
                if first is not None:
                    tried.append(first)
                    ok = bool(await self._fetch_from(first, key, None))
                if not ok:
                    ok = await self._race(await self._seeds(key, tried), key, None)
        except Exception:
            log.exception("repository %s: fetching it failed unexpectedly", rid)
        finally:
            self.coalescer.finished(rid, ok, trio.current_time())
        if not ok:
            self.failures += 1
            log.info("repository %s: no peer served it; it is fetched again when announced or seeded", rid)
            return
        if revision:
            log.info("repository %s: fetched its announced identity revision", rid)
            return
        log.info("repository %s: taken on (%s)", rid, self.seeding.policy.should_seed(
            rid, held=True, storage_bytes=self.seeding.storage_bytes, seeded_count=len(self.repos)
        ).detail)  # fmt: skip
        self.follow(rid)
        self.seeding.measure_soon()
        if self.providing is not None:
            self.providing.wake()

    def _acquire(self) -> trio.CapacityLimiter:
        if not self._limit.available_tokens:
            self.seeding.policy.may_start_fetch(self._limit.borrowed_tokens)  # counted as deferred
        return self._limit

    @property
    def running(self) -> int:
        """Fetches running now."""
        return int(self._limit.borrowed_tokens)

    async def _seeds(self, rid: str, exclude: Collection[PeerId]) -> list[PeerId]:
        """The DHT's seeds of ``rid`` but ``exclude``."""
        if self.dht is None:
            return []
        try:
            return await find_seeds(self.host, self.dht, rid, exclude=exclude)
        except GutsError as exc:
            log.info("repository %s: no seeds from the DHT: %s", rid, exc)
            return []

    async def _fetch(self, order: FetchOrder) -> None:
        ok = False
        try:
            ok = await self._fetch_order(order)
        except Exception:
            log.exception("repository %s: the announced fetch failed unexpectedly", order.rid)
        if not ok:
            self.failures += 1
        self.coalescer.finished(order.rid, ok, trio.current_time())
        self._wake.set()
        if ok:
            if self.providing is not None:
                self.providing.wake()
            for want in order.wanted:  # tell the peers still without it who holds it now
                await self.announce(order.rid, want.signer)

    async def _fetch_order(self, order: FetchOrder) -> bool:
        rid = str(order.rid)
        ok = False
        tried: list[PeerId] = []
        async with self._acquire():
            self.fetches += 1
            behind: list[PeerId] = []
            connected = {connection.peer_id for connection in self.host.connections}
            for peer in order.holders(connected, random.shuffle):
                tried.append(peer)
                answer = await self._fetch_from(peer, rid, order)
                if answer:
                    ok = True
                    break
                if answer is None:
                    behind.append(peer)
            for _ in range(self.behind_tries if not ok else 0):
                if not behind:
                    break
                await trio.sleep(self.behind_wait)
                still: list[PeerId] = []
                for peer in behind:
                    answer = await self._fetch_from(peer, rid, order)
                    if answer:
                        ok = True
                        break
                    if answer is None:
                        still.append(peer)
                behind = [] if ok else still
            if not ok:  # the DHT's seeds, then the signers (the last resort)
                signers = [want.signer for want in order.wanted]
                ok = await self._race(await self._seeds(rid, [*tried, *signers]), rid, order)
                for peer in [p for p in signers if p not in tried and p != self.host.peer_id]:
                    if ok:
                        break
                    ok = bool(await self._fetch_from(peer, rid, order))
        return ok

    async def _race(self, seeds: list[PeerId], rid: str, order: FetchOrder | None) -> bool:
        """Fetch from the first of ``seeds`` to answer (a few asked at
        once, :func:`~guts.sync.race.fetch_first`); whether it brought what
        ``order`` wants, else from :attr:`race_after` more seeds in turn."""
        if not seeds:
            return False
        try:
            fetched = await fetch_first(
                self.host, self.repos, seeds, rid, self.sync_config, select=self.seeding.select(Rid.parse(rid))
            )
        except NoPeerServed as exc:
            log.info("repository %s: no seed served it: %s", rid, exc)
            return False
        if order is None or order.brought(fetched.state.namespaces):
            log.info("repository %s: fetched from %s (asked %d seeds)", rid, fetched.peer, len(fetched.asked))
            return True
        failed = {failure.peer for failure in fetched.failures}
        rest = [peer for peer in seeds if peer != fetched.peer and peer not in failed]
        for peer in rest[: self.race_after]:  # seeds behind now get it soon: a retry asks again
            if await self._fetch_from(peer, rid, order):
                return True
        return False

    async def _fetch_from(self, peer: PeerId, rid: str, order: FetchOrder | None) -> bool | None:
        """Fetch ``rid`` from ``peer``: ``True`` when it brought what
        ``order`` wants (anything, without an order), ``None`` when the
        peer answered but lacks an announced statement yet, ``False`` when
        it failed."""
        try:
            state = await fetch(self.host, self.repos, peer, rid, self.sync_config, select=self.seeding.select(Rid.parse(rid)))
        except GutsError as exc:
            log.info("repository %s: fetching from %s failed: %s", rid, peer, exc)
            return False
        if order is not None and not order.brought(state.namespaces):
            log.info("repository %s: %s did not have every announced statement yet", rid, peer)
            return None
        log.info("repository %s: fetched from %s", rid, peer)
        return True
