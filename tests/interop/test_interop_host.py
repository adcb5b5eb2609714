"""Guts against real js-libp2p 3.3 nodes, both directions, TCP and WebSocket:
handshake, ping, identify, a 16 MiB echo, 100 concurrent streams, and js's
keep-alive pings answered over more than 30 s."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest
import trio

from guts.crypto import KeyPair
from guts.host import Host, HostConfig, open_host
from guts.identify import AGENT_VERSION, IDENTIFY, IDENTIFY_PUSH, Identify
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.ping import PING, Ping, ping
from guts.transport import TcpTransport, WebSocketTransport

from ..helpers import ECHO, echo_handler
from .conftest import SpawnJs
from .jspeer import JsPeer

MIB = 1024 * 1024
LISTEN = {"tcp": "/ip4/127.0.0.1/tcp/0", "ws": "/ip4/127.0.0.1/tcp/0/ws"}


@pytest.fixture(params=["tcp", "ws"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def guts_host(keep_alive: float = 0) -> AsyncIterator[Host]:
    async with open_host(
        KeyPair.generate(), [TcpTransport(), WebSocketTransport()],
        # js opens 100 echo streams at once: above the default 64 of one protocol served at once
        HostConfig(keep_alive=keep_alive, max_streams_per_protocol=128),
    ) as host:
        Identify(host)
        Ping(host)
        host.set_handler(ECHO, echo_handler)
        await host.listen(Multiaddr.parse(LISTEN["tcp"]), Multiaddr.parse(LISTEN["ws"]))
        yield host


def guts_addr(host: Host, transport: str) -> str:
    for addr in host.listen_addrs:
        if ("ws" in addr.protocols()) == (transport == "ws"):
            return str(addr.with_p2p(str(host.peer_id)))
    raise AssertionError(f"no {transport} listen address")


async def wait_for(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def pattern(n: int, seed: int) -> bytes:
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


async def guts_echo(host: Host, peer: PeerId, size: int, seed: int = 0) -> None:
    payload = pattern(size, seed)
    stream = await host.new_stream(peer, [ECHO])
    received = bytearray()

    async def reader() -> None:
        while chunk := await stream.receive_some(256 * 1024):
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        view = memoryview(payload)
        for i in range(0, size, 256 * 1024):
            await stream.send_all(view[i : i + 256 * 1024])
        await stream.send_eof()
    await stream.aclose()
    assert len(received) == size
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


# -- js dials Guts -------------------------------------------------------------


async def test_js_dials_guts(spawn_js: SpawnJs, transport: str) -> None:
    js = await spawn_js()
    async with guts_host() as host:
        reply = await js.call("dial", addr=guts_addr(host, transport))
        assert reply["peer_id"] == str(host.peer_id)
        assert reply["encryption"] == "/noise" and reply["multiplexer"] == "/yamux/1.0.0"
        js_peer = PeerId.from_string(js.peer_id)
        await wait_for(lambda: host.connection(js_peer) is not None)

        # ping: js pings us
        rtts = (await js.call("ping", peer=str(host.peer_id), count=5))["rtts_ms"]
        assert len(rtts) == 5

        # identify, both ways
        info = await js.call("identify", peer=str(host.peer_id))
        assert info["agentVersion"] == AGENT_VERSION
        assert {ECHO, IDENTIFY, IDENTIFY_PUSH, PING} <= set(info["protocols"])
        conn = host.connection(js_peer)
        assert conn is not None
        with trio.fail_after(10):
            await conn.identified.wait()
        assert {ECHO, IDENTIFY, PING} <= set(host.peerstore.protocols(js_peer))
        assert host.peerstore.info(js_peer).agent_version.startswith("js-libp2p/")

        # echo: 16 MiB on one stream, then 100 concurrent streams
        result = await js.call("echo", peer=str(host.peer_id), bytes=16 * MIB, streams=1, timeout=120)
        assert result["bytes"] == 16 * MIB
        result = await js.call("echo", peer=str(host.peer_id), bytes=256 * 1024, streams=100, timeout=120)
        assert result["streams"] == 100


# -- Guts dials js ---------------------------------------------------------------


async def test_guts_dials_js(spawn_js: SpawnJs, transport: str) -> None:
    js = await spawn_js()
    async with guts_host() as host:
        conn = await host.connect(Multiaddr.parse(js.addr(transport)))
        js_peer = PeerId.from_string(js.peer_id)
        assert conn.peer_id == js_peer
        await js.next_event("peer:connect", peer_id=str(host.peer_id))

        # ping: we ping js
        async with aclosing(ping(host, js_peer, count=5)) as pings:
            rtts = [r async for r in pings]
        assert len(rtts) == 5

        # identify, both ways
        with trio.fail_after(10):
            await conn.identified.wait()
        assert {ECHO, IDENTIFY, PING} <= set(host.peerstore.protocols(js_peer))
        info = await js.call("identify", peer=str(host.peer_id))
        assert info["agentVersion"] == AGENT_VERSION
        assert {ECHO, IDENTIFY, PING} <= set(info["protocols"])

        # identify push: a new protocol reaches js
        host.set_handler("/guts/extra/1.0.0", echo_handler)
        ev = await js.next_event("peer:identify", peer_id=str(host.peer_id), timeout=10)
        while "/guts/extra/1.0.0" not in ev["protocols"]:
            ev = await js.next_event("peer:identify", peer_id=str(host.peer_id), timeout=10)

        # echo: 16 MiB, then 100 concurrent streams
        with trio.fail_after(120):
            await guts_echo(host, js_peer, 16 * MIB)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(guts_echo, host, js_peer, 256 * 1024, i)


# -- keep-alive ------------------------------------------------------------------


async def test_keep_alive_over_30_seconds(spawn_js: SpawnJs) -> None:
    """js pings every connection at yamux level on connect and every 30 s, and
    over /ipfs/ping/1.0.0 every 10 s, closing it if that fails. Four connections
    (each direction, each transport) must all survive 35 s of that."""
    js = await spawn_js()
    async with guts_host(keep_alive=10) as g1, guts_host(keep_alive=10) as g2, \
            guts_host(keep_alive=10) as g3, guts_host(keep_alive=10) as g4:
        await g1.connect(Multiaddr.parse(js.addr("tcp")))
        await g2.connect(Multiaddr.parse(js.addr("ws")))
        await js.call("dial", addr=guts_addr(g3, "tcp"))
        await js.call("dial", addr=guts_addr(g4, "ws"))
        js_peer = PeerId.from_string(js.peer_id)
        hosts = (g1, g2, g3, g4)
        await wait_for(lambda: all(h.connection(js_peer) for h in hosts))
        conns = [h.connection(js_peer) for h in hosts]
        await trio.sleep(float(os.environ.get("GUTS_KEEPALIVE_SECONDS", "35")))
        for h, c in zip(hosts, conns):
            assert h.connection(js_peer) is c, "connection to js was dropped"
        peers = (await js.call("peers"))["peers"]
        assert {p["peer_id"] for p in peers} >= {str(h.peer_id) for h in hosts}
        assert not [e for e in js.events if e.get("event") == "connection:close"]
        for h in hosts:
            async with aclosing(ping(h, js_peer, count=1)) as pings:
                assert len([r async for r in pings]) == 1
