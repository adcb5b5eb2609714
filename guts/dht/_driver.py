"""Driving a sans-IO :class:`~guts.dht.lookup.Lookup` with Trio.

One task per request in flight, all in a nursery that ends with the
lookup: when the lookup finishes (or its ``query_timeout`` passes), the
requests still out are cancelled. The loop wakes when an answer arrives
or when the earliest waiting request reaches its per-peer timeout,
whichever comes first, so a silent peer holds its slot no longer than
the lookup's adaptive per-peer timeout (at most ``peer_timeout``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from guts.dht._client import RequestFailed
from guts.dht._codec import KadMessage, KadPeer
from guts.dht._config import DhtConfig
from guts.dht._key import kad_key
from guts.dht.lookup import Lookup, LookupConfig
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.peerstore import PeerInfo

__all__ = ["LookupPeers", "LookupResult", "run_lookup"]


class LookupPeers(Protocol):
    """What a lookup needs from the node it runs for (a
    :class:`~guts.dht.Dht`, or a fake network in a test).

    The driver asks peers and reports what it found; it never reaches
    into the node's routing table or peerstore itself, so it stays one
    loop over one :class:`~guts.dht.lookup.Lookup`.
    """

    async def request(self, peer: PeerId, message: KadMessage) -> KadMessage | None:
        """Ask ``peer``; raise :class:`RequestFailed` when it does not answer."""
        ...

    def learn(self, peers: Iterable[KadPeer]) -> list[PeerId]:
        """Note the peers an answer lists; returns those worth asking."""
        ...

    def addrs_of(self, peer: PeerId) -> tuple[Multiaddr, ...]:
        """The addresses to hand out for ``peer`` in the result."""
        ...


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The outcome of one lookup.

    Attributes:
        key: what was looked up.
        peers: the closest peers that answered, nearest first, with the
            addresses we keep for them.
        queried: requests sent.
        succeeded: answers received.
        failed: requests that failed.
        rounds: the longest chain of answers that led to a peer we asked.
        seconds: how long the lookup took.
        timed_out: whether ``query_timeout`` cut it short.
    """

    key: bytes
    peers: tuple[PeerInfo, ...]
    queried: int
    succeeded: int
    failed: int
    rounds: int
    seconds: float
    timed_out: bool = False


class _Waker:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()


async def run_lookup(
    peers: LookupPeers,
    key: bytes,
    message: KadMessage,
    *,
    seeds: Iterable[PeerId],
    exclude: Iterable[PeerId],
    config: DhtConfig,
    on_response: Callable[[PeerId, KadMessage], bool] | None = None,
) -> LookupResult:
    """Run one iterative lookup for ``key``, sending ``message`` to each peer.

    Args:
        peers: whom the requests go through.
        key: the key looked up (hashed into the key space here).
        message: the request sent to every peer asked.
        seeds: the peers to start from (our closest to the key).
        exclude: peers never asked (ourselves).
        config: k, alpha and the timeouts.
        on_response: sees every answer, ``on_response(peer, answer)``;
            returning True ends the lookup (the caller found what it wanted).
    """
    cfg = config
    lookup = Lookup(
        kad_key(key),
        seeds,
        LookupConfig(k=cfg.k, alpha=cfg.alpha, peer_timeout=min(cfg.peer_timeout, cfg.request_timeout), max_peers=cfg.lookup_max_peers),
        exclude=exclude,
    )
    waker = _Waker()
    start = trio.current_time()

    async def ask(peer: PeerId) -> None:
        try:
            response = await peers.request(peer, message)
        except RequestFailed:
            lookup.on_failure(peer, trio.current_time())
        else:
            assert response is not None
            closer = peers.learn(response.closer_peers)
            lookup.on_success(peer, closer, trio.current_time())
            if on_response is not None and on_response(peer, response):
                lookup.finish()
        waker.event.set()

    with trio.move_on_after(cfg.query_timeout) as overall:
        async with trio.open_nursery() as nursery:
            while True:
                waker.event = trio.Event()
                for peer in lookup.next(trio.current_time()):
                    nursery.start_soon(ask, peer)
                if lookup.finished:
                    break
                deadline = lookup.next_deadline()
                with trio.move_on_at(deadline if deadline is not None else math.inf):
                    await waker.event.wait()
            nursery.cancel_scope.cancel()
    stats = lookup.stats()
    found = tuple(PeerInfo(p, peers.addrs_of(p)) for p in lookup.closest())
    return LookupResult(
        key=key,
        peers=found,
        queried=stats.queried,
        succeeded=stats.succeeded,
        failed=stats.failed,
        rounds=stats.rounds,
        seconds=trio.current_time() - start,
        timed_out=overall.cancelled_caught,
    )
