"""The DHT over memory hosts: joining, lookups, providers, values, modes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from guts.dht import Dht, DhtConfig, DhtMode
from guts.dht.signed import guts_key
from guts.errors import InvalidRecord, PeerNotFound, RecordNotFound
from guts.host import Host

from .helpers import full_addr, memory_hosts

SERVER = DhtConfig(mode=DhtMode.SERVER, refresh_interval=3600)


@asynccontextmanager
async def dht_network(n: int, config: DhtConfig = SERVER, *, modes: dict[int, DhtMode] | None = None) -> AsyncIterator[tuple[list[Host], list[Dht]]]:
    """``n`` hosts with a DHT each; node i bootstraps from node i-1 (a chain)."""
    async with memory_hosts(n) as hosts, trio.open_nursery() as nursery:
        dhts = []
        for i, host in enumerate(hosts):
            mode = (modes or {}).get(i, config.mode)
            boot = (full_addr(hosts[i - 1]),) if i else ()
            cfg = DhtConfig(**{**_fields(config), "mode": mode, "bootstrap": boot})
            dht = Dht(host, cfg)
            dhts.append(dht)
        for dht in dhts:
            await nursery.start(dht.run)
            await dht.bootstrap()
        try:
            yield hosts, dhts
        finally:
            nursery.cancel_scope.cancel()


def _fields(config: DhtConfig) -> dict:  # type: ignore[type-arg]
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def multihash(data: bytes) -> bytes:
    return b"\x12\x20" + hashlib.sha256(data).digest()


async def test_two_nodes_learn_each_other_through_identify(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(2) as (hosts, dhts):
        assert dhts[0].mode is DhtMode.SERVER
        assert hosts[1].peer_id in dhts[0].table and hosts[0].peer_id in dhts[1].table
        assert "/guts/kad/1.0.0" in hosts[0].peerstore.protocols(hosts[1].peer_id)


async def test_lookups_on_a_chain(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(12) as (hosts, dhts):
        # the last node only knows its bootstrap peer and what the self-lookup found
        result = await dhts[-1].find_closest_peers(hosts[0].peer_id.to_bytes())
        assert result.peers[0].peer_id == hosts[0].peer_id
        assert result.queried >= 1 and result.rounds >= 1 and not result.timed_out
        info = await dhts[0].find_peer(hosts[-1].peer_id)
        assert info.addrs == tuple(hosts[-1].listen_addrs)


async def test_find_peer_unknown(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(4) as (hosts, dhts):
        from guts.crypto import KeyPair

        with pytest.raises(PeerNotFound):
            await dhts[0].find_peer(KeyPair.generate().peer_id)


async def test_providers_across_the_network(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(8) as (hosts, dhts):
        key = multihash(b"repo")
        published = await dhts[2].provide(key)
        assert published.stored_at
        found = await dhts[7].find_providers(key)
        assert [p.peer_id for p in found] == [hosts[2].peer_id]
        assert found[0].addrs == tuple(hosts[2].listen_addrs)
        assert await dhts[5].find_providers(multihash(b"nobody")) == []


async def test_values_across_the_network(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(8) as (hosts, dhts):
        name = guts_key(hosts[1].peer_id, b"name")
        published = await dhts[1].put_value(name, b"\x00\x01hello")
        assert len(published.stored_at) >= 1 and published.stored_locally and published.seq is not None
        assert await dhts[6].get_value(name) == b"\x00\x01hello"
        # the owner's next put wins everywhere (a higher seq), even with smaller bytes
        again = await dhts[1].put_value(name, b"\x00\x00newer")
        assert again.seq is not None and again.seq > published.seq
        assert await dhts[6].get_value(name) == b"\x00\x00newer"
        # nobody else can sign for the key
        with pytest.raises(InvalidRecord, match="can only sign its own"):
            await dhts[3].put_value(name, b"\xff" * 32)
        with pytest.raises(RecordNotFound):
            await dhts[4].get_value(guts_key(hosts[1].peer_id, b"missing"))
        with pytest.raises(InvalidRecord):
            await dhts[4].put_value(b"/unknown/x", b"v")
        with pytest.raises(InvalidRecord):
            await dhts[4].get_value(b"/unknown/x")


async def test_public_key_records(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(3) as (hosts, dhts):
        key = b"/pk/" + hosts[2].peer_id.to_bytes()
        value = await dhts[0].get_value(key)  # served from a peerstore that knows the key
        assert value == hosts[2].keypair.public_key.to_protobuf()


async def test_client_mode_is_not_in_tables(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(4, modes={3: DhtMode.CLIENT}) as (hosts, dhts):
        client = dhts[3]
        assert client.mode is DhtMode.CLIENT
        assert "/guts/kad/1.0.0" not in hosts[3].protocols
        assert all(hosts[3].peer_id not in d.table for d in dhts[:3])
        # the client can still use the DHT
        result = await client.find_closest_peers(b"anything")
        assert {p.peer_id for p in result.peers} <= {h.peer_id for h in hosts[:3]}
        assert result.peers
        await client.provide(multihash(b"c"))
        assert [p.peer_id for p in await dhts[0].find_providers(multihash(b"c"))] == [hosts[3].peer_id]


async def test_auto_mode_on_loopback_is_client(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_hosts(1) as (host,):
        dht = Dht(host, DhtConfig(mode=DhtMode.AUTO))
        assert dht.mode is DhtMode.CLIENT
        assert dht.addr_scope.value == "local"


async def test_custom_protocol_id(autojump_clock: trio.testing.MockClock) -> None:
    cfg = DhtConfig(mode=DhtMode.SERVER, protocol="/ipfs/kad/1.0.0")
    async with dht_network(3, cfg) as (hosts, dhts):
        assert "/ipfs/kad/1.0.0" in hosts[0].protocols and "/guts/kad/1.0.0" not in hosts[0].protocols
        assert len(dhts[0].table) == 2


async def test_connections_opened_by_lookups_are_trimmed(autojump_clock: trio.testing.MockClock) -> None:
    from guts.host import Direction

    cfg = DhtConfig(mode=DhtMode.SERVER, refresh_interval=3600, max_dialed_connections=2)
    async with dht_network(12, cfg) as (hosts, dhts):
        for key in (b"a", b"b", b"c"):
            result = await dhts[-1].find_closest_peers(key)
            assert len(result.peers) == 11
        await trio.sleep(1)
        outbound = [c for c in hosts[-1].connections if c.direction is Direction.OUTBOUND]
        # the bootstrap connection, plus at most two the DHT dialled itself
        assert len(outbound) <= 3
        assert dhts[-1].client.dialed <= 2
        # still works after trimming: dials again as needed
        info = await dhts[-1].find_peer(hosts[0].peer_id)
        assert info.addrs == tuple(hosts[0].listen_addrs)


class FakeWallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_republish_and_expiry(autojump_clock: trio.testing.MockClock) -> None:
    clock = FakeWallClock()
    async with memory_hosts(3) as hosts, trio.open_nursery() as nursery:
        dhts = []
        for i, host in enumerate(hosts):
            boot = (full_addr(hosts[0]),) if i else ()
            # No run(): under the autojump clock its timers would fire at once;
            # cleanup() runs only when the test calls it.
            dht = Dht(host, DhtConfig(mode=DhtMode.SERVER, bootstrap=boot), clock=clock)
            await dht.bootstrap()
            dhts.append(dht)
        key = multihash(b"republished")
        await dhts[1].provide(key)
        value_key = guts_key(hosts[1].peer_id, b"v")
        await dhts[1].put_value(value_key, b"x")
        held = dhts[2].providers.get(key, hosts[1].peer_id)
        assert held is not None and dhts[2].values.get(value_key, clock.now) is not None
        # 23 h later: the provider republishes (its 22 h interval passed), so the
        # copies elsewhere are renewed
        clock.now += 23 * 3600
        await dhts[1].cleanup()
        renewed = dhts[2].providers.get(key, hosts[1].peer_id)
        assert renewed is not None and renewed.received == clock.now
        assert dhts[2].values.get(value_key, clock.now).received == clock.now
        # a record nobody renews is gone 48 h after it arrived
        await dhts[2].provide(multihash(b"left alone"))
        clock.now += 49 * 3600
        await dhts[0].cleanup()
        assert dhts[0].providers.get(multihash(b"left alone"), hosts[2].peer_id) is None
        assert dhts[0].providers.get(key, hosts[1].peer_id) is None
        nursery.cancel_scope.cancel()


async def test_full_bucket_pings_its_oldest_peer(autojump_clock: trio.testing.MockClock) -> None:
    from contextlib import AsyncExitStack

    from guts.crypto import KeyPair
    from guts.dht._key import bucket_index, kad_key
    from guts.host import HostConfig, open_host
    from guts.identify import Identify
    from guts.multiaddr import Multiaddr
    from guts.transport import MemoryNetwork, MemoryTransport

    me_key = KeyPair.from_seed(bytes(32))
    local = kad_key(me_key.peer_id.to_bytes())
    keys = [me_key]
    seed = 1
    while len(keys) < 4:  # three more peers, all in our bucket 255
        pair = KeyPair.from_seed(seed.to_bytes(32, "big"))
        seed += 1
        if bucket_index(local, kad_key(pair.peer_id.to_bytes())) == 255:
            keys.append(pair)
    network = MemoryNetwork()
    async with AsyncExitStack() as stack:
        hosts = []
        for pair in keys:
            h = await stack.enter_async_context(open_host(pair, [MemoryTransport(network)], HostConfig(keep_alive=0)))
            Identify(h)
            await h.listen(Multiaddr.parse("/memory/0"))
            hosts.append(h)
        me, first, second, third = hosts
        dht = Dht(me, DhtConfig(mode=DhtMode.SERVER, k=1))
        for h in hosts[1:]:
            Dht(h, DhtConfig(mode=DhtMode.SERVER))

        async def join(h: Host) -> None:
            conn = await me.connect(full_addr(h))
            await conn.identified.wait()
            await trio.sleep(1)

        await join(first)
        assert dht.table.peers() == [first.peer_id]
        await join(second)  # bucket full: first is pinged, answers, stays
        assert dht.table.peers() == [first.peer_id] and dht.table.replacement_count() == 1
        await first.aclose()  # first goes away
        await join(third)  # the check of first fails: the newest candidate takes its place
        assert dht.table.peers() == [third.peer_id]


async def test_find_peer_of_a_client(autojump_clock: trio.testing.MockClock) -> None:
    async with dht_network(5, modes={4: DhtMode.CLIENT}) as (hosts, dhts):
        client = hosts[4].peer_id
        assert all(client not in d.table for d in dhts[:4])
        # node 3 (its bootstrap peer) stays connected to the client; node 0
        # is not, and finds it through a server that is
        await hosts[0].disconnect(client)
        with trio.fail_after(5):
            while hosts[0].connection(client) is not None:
                await trio.sleep(0.01)
        info = await dhts[0].find_peer(client)
        assert info.addrs == tuple(hosts[4].listen_addrs)
