"""The lookup driver on its own: it needs something that answers requests
(:class:`~guts.dht._driver.LookupPeers`), not a Dht or a host."""

from __future__ import annotations

from collections.abc import Iterable

import trio
import trio.testing

from guts.dht._client import RequestFailed
from guts.dht._codec import KadMessage, KadPeer, MessageType
from guts.dht._config import DhtConfig
from guts.dht._driver import LookupPeers, run_lookup
from guts.dht._key import kad_key
from guts.dht.routing_table import RoutingTable
from guts.multiaddr import Multiaddr
from guts.peer import PeerId

from .dht_helpers import hashed_peer, true_closest

ADDR = Multiaddr.parse("/memory/1")


class FakePeers:
    """Every peer knows everyone; some never answer, all take ``delay`` to."""

    def __init__(self, n: int, *, silent: Iterable[PeerId] = (), delay: float = 0.1) -> None:
        self.population = [hashed_peer(i) for i in range(n)]
        self.silent = set(silent)
        self.delay = delay
        self.asked: list[PeerId] = []

    def closest(self, key: bytes, count: int) -> list[PeerId]:
        return true_closest(kad_key(key), self.population, count)

    async def request(self, peer: PeerId, message: KadMessage) -> KadMessage | None:
        self.asked.append(peer)
        if peer in self.silent:
            await trio.sleep_forever()
        await trio.sleep(self.delay)
        assert message.key is not None
        table = RoutingTable(peer)
        for p in self.population:
            table.add(p, [ADDR], 0)
        closer = tuple(KadPeer(e.peer_id, (ADDR,)) for e in table.closest(kad_key(message.key), 20))
        return KadMessage(message.type, key=message.key, closer_peers=closer)

    def learn(self, peers: Iterable[KadPeer]) -> list[PeerId]:
        return [p.peer_id for p in peers]

    def addrs_of(self, peer: PeerId) -> tuple[Multiaddr, ...]:
        return (ADDR,)


class FailingPeers(FakePeers):
    async def request(self, peer: PeerId, message: KadMessage) -> KadMessage | None:
        raise RequestFailed(peer, "refused")


async def test_finds_the_k_closest_through_the_protocol(autojump_clock: trio.testing.MockClock) -> None:
    net = FakePeers(200)
    peers: LookupPeers = net  # all the driver sees
    me, key = hashed_peer(0), b"some key"
    seeds = [p for p in net.population[:30] if p != me]
    result = await run_lookup(peers, key, KadMessage(MessageType.FIND_NODE, key=key), seeds=seeds, exclude=[me], config=DhtConfig())
    expected = true_closest(kad_key(key), [p for p in net.population if p != me], 20)
    assert [p.peer_id for p in result.peers] == expected
    assert all(p.addrs == (ADDR,) for p in result.peers)
    assert me not in net.asked
    assert result.failed == 0 and result.succeeded == result.queried and not result.timed_out


async def test_a_silent_peer_holds_its_slot_no_longer_than_peer_timeout(autojump_clock: trio.testing.MockClock) -> None:
    net = FakePeers(60)
    key = b"k"
    closest = net.closest(key, 3)
    net.silent = set(closest)  # the three best never answer
    config = DhtConfig(peer_timeout=2.0, request_timeout=10.0, query_timeout=60.0)
    start = trio.current_time()
    result = await run_lookup(net, key, KadMessage(MessageType.FIND_NODE, key=key), seeds=net.population, exclude=[], config=config)
    # the lookup ends once the closest answering peers are settled, waiting on
    # the silent ones for at most their timeout, and its requests are cancelled
    assert net.silent <= set(net.asked)
    assert trio.current_time() - start < 10.0
    assert not {p.peer_id for p in result.peers} & net.silent
    assert not result.timed_out


async def test_on_response_ends_the_lookup(autojump_clock: trio.testing.MockClock) -> None:
    net = FakePeers(100)
    seen: list[PeerId] = []

    def on_response(sender: PeerId, response: KadMessage) -> bool:
        seen.append(sender)
        return len(seen) >= 2

    config = DhtConfig(alpha=1)
    await run_lookup(net, b"k", KadMessage(MessageType.FIND_NODE, key=b"k"), seeds=net.population[:5], exclude=[], config=config, on_response=on_response)
    assert len(seen) == 2 and len(net.asked) == 2


async def test_failures_are_counted(autojump_clock: trio.testing.MockClock) -> None:
    net = FailingPeers(10)
    result = await run_lookup(net, b"k", KadMessage(MessageType.FIND_NODE, key=b"k"), seeds=net.population, exclude=[], config=DhtConfig())
    assert result.peers == () and result.failed == result.queried == 10
