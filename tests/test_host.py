"""The host on the in-memory transport: connect, streams, identify, ping,
de-duplication, limits, shutdown."""

from contextlib import aclosing

import pytest
import trio
import trio.testing

from guts.crypto import KeyPair
from guts.errors import DialError, NegotiationError, PeerNotFound
from guts.host import HostConfig, PeerConnected, PeerDisconnected, PeerIdentified
from guts.identify import AGENT_VERSION, IDENTIFY
from guts.ping import PING, ping
from guts.multiaddr import Multiaddr
from guts.transport import MemoryNetwork
from guts.wire import NegotiatedStream

from .helpers import ECHO, full_addr, memory_hosts


async def test_connect_echo_and_identify() -> None:
    async with memory_hosts(2) as (a, b):
        conn = await a.connect(full_addr(b))
        assert conn.peer_id == b.peer_id
        stream = await a.new_stream(b.peer_id, [ECHO])
        assert stream.protocol == ECHO
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"hello"
        await stream.aclose()
        with trio.fail_after(5):
            await conn.identified.wait()
        assert ECHO in a.peerstore.protocols(b.peer_id)
        assert IDENTIFY in a.peerstore.protocols(b.peer_id)
        assert a.peerstore.info(b.peer_id).agent_version == AGENT_VERSION
        # b identified a too
        with trio.fail_after(5):
            while PING not in b.peerstore.protocols(a.peer_id):
                await trio.sleep(0.01)


async def test_connect_by_peer_id_uses_peerstore() -> None:
    async with memory_hosts(2) as (a, b):
        with pytest.raises(PeerNotFound):
            await a.connect(b.peer_id)
        a.peerstore.add_addrs(b.peer_id, b.listen_addrs)
        conn = await a.connect(b.peer_id)
        assert conn.peer_id == b.peer_id
        assert await a.connect(b.peer_id) is conn


async def test_ping() -> None:
    async with memory_hosts(2) as (a, b):
        async with aclosing(ping(a, full_addr(b), count=3)) as pings:
            rtts = [rtt async for rtt in pings]
        assert len(rtts) == 3 and all(r > 0 for r in rtts)


async def test_ping_server_takes_a_lazy_dialer_and_split_payloads() -> None:
    # The first payload arrives right behind the proposal (it is then left
    # over in the negotiation), the second one in two pieces.
    async with memory_hosts(2) as (a, b):
        conn = await a.connect(full_addr(b))
        stream = NegotiatedStream.lazy(await conn.muxer.open_stream(), PING)
        with trio.fail_after(5):
            await stream.send_all(b"1" * 32)
            got = b""
            while len(got) < 32:
                got += await stream.receive_some()
            assert got == b"1" * 32
            await stream.send_all(b"2" * 16)
            await trio.testing.wait_all_tasks_blocked()  # the server has read half a payload
            await stream.send_all(b"3" * 16)
            got = b""
            while len(got) < 32:
                got += await stream.receive_some()
            assert got == b"2" * 16 + b"3" * 16
            await stream.send_eof()
            assert await stream.receive_some() == b""


async def test_peer_id_mismatch_is_refused_and_listener_keeps_working() -> None:
    async with memory_hosts(3) as (a, b, c):
        wrong = b.listen_addrs[0].with_p2p(str(c.peer_id))
        with pytest.raises(DialError, match="PeerIdMismatch|peer"):
            await a.connect(wrong)
        assert a.connection(b.peer_id) is None
        await a.connect(full_addr(b))
        await c.connect(full_addr(b))
        assert {x.peer_id for x in b.connections} == {a.peer_id, c.peer_id}


async def test_unknown_protocol_keeps_connection() -> None:
    async with memory_hosts(2) as (a, b):
        await a.connect(full_addr(b))
        with pytest.raises(NegotiationError):
            await a.new_stream(b.peer_id, ["/nope/1.0.0"])
        stream = await a.new_stream(b.peer_id, ["/nope/1.0.0", ECHO])
        assert stream.protocol == ECHO


async def test_simultaneous_dial_keeps_one_connection() -> None:
    async with memory_hosts(2) as (a, b):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.connect, full_addr(b))
            nursery.start_soon(b.connect, full_addr(a))
        with trio.fail_after(5):
            while len(a.connections) != 1 or len(b.connections) != 1:
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        (ca,), (cb,) = a.connections, b.connections
        assert ca.dialer == cb.dialer == min(a.peer_id, b.peer_id, key=lambda p: p.to_bytes())
        stream = await a.new_stream(b.peer_id, [ECHO])
        await stream.send_all(b"x")
        assert await stream.receive_some() == b"x"


async def test_concurrent_connects_share_one_dial() -> None:
    async with memory_hosts(2) as (a, b):
        a.peerstore.add_addrs(b.peer_id, b.listen_addrs)
        results = []

        async def dial() -> None:
            results.append(await a.connect(b.peer_id))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(dial)
        assert len({id(c) for c in results}) == 1


async def test_events_and_disconnect() -> None:
    async with memory_hosts(2) as (a, b):
        events: list[object] = []
        a.add_event_handler(events.append)
        await a.connect(full_addr(b))
        with trio.fail_after(5):
            while not any(isinstance(e, PeerIdentified) for e in events):
                await trio.sleep(0.01)
        await a.disconnect(b.peer_id)
        with trio.fail_after(5):
            while not any(isinstance(e, PeerDisconnected) for e in events):
                await trio.sleep(0.01)
        assert isinstance(events[0], PeerConnected)
        with trio.fail_after(5):
            while b.connections:
                await trio.sleep(0.01)


async def test_max_connections() -> None:
    net = MemoryNetwork()
    async with memory_hosts(1, net, HostConfig(max_connections=2, keep_alive=0)) as (server,):
        async with memory_hosts(3, net) as clients:
            for c in clients[:2]:
                await c.connect(full_addr(server))
            with pytest.raises(DialError):
                await clients[2].connect(full_addr(server))
            assert len(server.connections) == 2


async def test_streams_many_concurrent() -> None:
    async with memory_hosts(2) as (a, b):
        await a.connect(full_addr(b))

        async def one(i: int) -> None:
            s = await a.new_stream(b.peer_id, [ECHO])
            payload = i.to_bytes(4, "big") * 8
            await s.send_all(payload)
            await s.send_eof()
            got = b""
            while chunk := await s.receive_some():
                got += chunk
            assert got == payload
            await s.aclose()

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)


async def test_dial_nothing_listening() -> None:
    async with memory_hosts(1) as (a,):
        with pytest.raises(DialError):
            await a.connect(Multiaddr.parse("/memory/987654"))
        with pytest.raises(DialError):
            await a.connect(full_addr(a))


async def test_host_shutdown_closes_connections() -> None:
    net = MemoryNetwork()
    async with memory_hosts(1, net) as (b,):
        gone = trio.Event()
        b.add_event_handler(lambda e: gone.set() if isinstance(e, PeerDisconnected) else None)
        async with memory_hosts(1, net) as (a,):
            await a.connect(full_addr(b))
            stream = await a.new_stream(b.peer_id, [ECHO])
            await stream.send_all(b"pending")
        with trio.fail_after(5):
            await gone.wait()
        assert b.connections == []


async def test_identify_announces_dialable_addresses() -> None:
    from guts.crypto import KeyPair
    from guts.host import open_host
    from guts.identify import Identify
    from guts.transport import TcpTransport

    async with open_host(KeyPair.generate(), [TcpTransport()], HostConfig(keep_alive=0)) as a, \
            open_host(KeyPair.generate(), [TcpTransport()], HostConfig(keep_alive=0)) as b:
        Identify(a)
        Identify(b)
        (bound,) = await b.listen(Multiaddr.parse("/ip4/0.0.0.0/tcp/0"))
        port = bound.value_for("tcp")
        assert Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}") in b.announce_addrs
        conn = await a.connect(Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}"))
        with trio.fail_after(5):
            await conn.identified.wait()
        learned = a.peerstore.addrs(b.peer_id)
        assert Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}") in learned
        assert not any("0.0.0.0" in str(x) for x in learned)
