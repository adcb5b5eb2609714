"""Seeds in the DHT: a node provides the RID of every repository it holds,
and finds the providers of one it lacks.

A RID is a CIDv1 over a sha2-256 multihash, and a kad-dht key is a
multihash, so a Guts repository is provided and found as any libp2p node
provides and finds content (js-libp2p's ``contentRouting.findProviders``
with the RID's CID finds Guts seeds).

:class:`RepoProvider` runs beside the node: at start, and each time it is
woken (a repository made or fetched), it provides every held RID that no
DHT peer has stored yet, a few at once; one that reached no peer (an
empty routing table at start) is tried again every :attr:`retry`
seconds. Once stored, the DHT keeps the record fresh itself: its sweep
republishes our provider records before they expire (the spec's 22 h
against 48 h of validity). A repository the node stops seeding is dropped
from its own records (:meth:`RepoProvider.stop`): no longer republished,
the copies on other peers expire. :func:`find_seeds` asks the DHT for the
providers of a RID, leaving out this node and the peers a caller already
tried, and puts their addresses in the host's peerstore so that a fetch
can dial them by peer id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection

import trio

from guts.dht import Dht
from guts.errors import GutsError
from guts.host import Host
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.state import Repositories

__all__ = ["RepoProvider", "find_seeds"]

log = logging.getLogger("guts.replicate")


class RepoProvider:
    """Keeps the repositories of ``repos`` provided in ``dht`` (module
    docstring); with ``seeds``, only those it says the node seeds."""

    def __init__(
        self,
        dht: Dht,
        repos: Repositories,
        *,
        seeds: Callable[[Rid], bool] | None = None,
        retry: float = 5.0,
        at_once: int = 4,
    ) -> None:
        self.dht = dht
        self.repos = repos
        self.seeds = seeds
        self.retry = retry
        self._limit = trio.CapacityLimiter(at_once)
        #: RIDs some DHT peer stored our provider record of.
        self.provided: set[str] = set()
        self._wake = trio.Event()

    def wake(self) -> None:
        """A repository was made or fetched: provide it now."""
        self._wake.set()

    def stop(self, rid: Rid) -> None:
        """The node stopped seeding ``rid``: no longer provide it."""
        self.provided.discard(str(rid))
        if self.dht.stop_providing(rid.multihash):
            log.info("repository %s: no longer provided in the DHT", rid)

    def _pending(self) -> list[Rid]:
        seeds = self.seeds
        return [
            state.rid
            for state in self.repos.list()
            if str(state.rid) not in self.provided and (seeds is None or seeds(state.rid))
        ]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = trio.Event()
            await self.provide_new()
            waiting = bool(self._pending())
            with trio.move_on_after(self.retry if waiting else math.inf):
                await self._wake.wait()

    async def provide_new(self) -> None:
        """Provide each held RID no DHT peer has stored yet."""
        pending = self._pending()
        if not pending:
            return
        async with trio.open_nursery() as nursery:
            for rid in pending:
                nursery.start_soon(self._provide, rid)

    async def _provide(self, rid: Rid) -> None:
        async with self._limit:
            try:
                result = await self.dht.provide(rid.multihash)
            except GutsError as exc:
                log.info("repository %s: providing it in the DHT failed: %s", rid, exc)
                return
        if self.seeds is not None and not self.seeds(rid):
            self.dht.stop_providing(rid.multihash)  # unseeded while its record went out
            return
        if result.stored_at:
            self.provided.add(str(rid))
            log.info("repository %s: provided in the DHT (%d peers store the record)", rid, len(result.stored_at))


async def find_seeds(
    host: Host, dht: Dht, rid: Rid | str, *, exclude: Collection[PeerId] = (), count: int = 20
) -> list[PeerId]:
    """The DHT's providers of ``rid`` but this node and ``exclude``, their
    addresses added to ``host``'s peerstore; ``[]`` when it finds none."""
    key = rid if isinstance(rid, Rid) else Rid.parse(rid)
    found = await dht.find_providers(key.multihash, count)
    seeds = []
    for info in found:
        if info.peer_id == host.peer_id or info.peer_id in exclude:
            continue
        if info.addrs:
            host.peerstore.add_addrs(info.peer_id, info.addrs)
        seeds.append(info.peer_id)
    return seeds
