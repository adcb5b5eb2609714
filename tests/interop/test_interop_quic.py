"""Guts's QUIC transport (``/quic-v1``) against js-libp2p 3.3 with
@chainsafe/libp2p-quic, both directions: the handshake (libp2p TLS inside
QUIC, no separate security or muxer negotiation), ping and identify both
ways, a 16 MiB echo intact each way, and 100 concurrent echo streams each way,
all on the one QUIC connection; and a dial to the wrong peer id failing at
once either way.

The js peer listens on ``/ip4/127.0.0.1/udp/0/quic-v1`` only, so QUIC is the
only transport either side can use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest
import trio

from guts.crypto import KeyPair
from guts.errors import DialError
from guts.host import Connection, Host, HostConfig, open_host
from guts.identify import AGENT_VERSION, IDENTIFY, IDENTIFY_PUSH, Identify
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.ping import PING, Ping, ping
from guts.transport.quic import QuicConfig, QuicTransport

from ..helpers import ECHO, echo_handler
from .conftest import SpawnJs
from .jspeer import QUIC_LISTEN, JsCommandError, JsPeer
from .test_interop_host import guts_echo, wait_for

MIB = 1024 * 1024


@asynccontextmanager
async def guts_quic_host(quic: QuicConfig | None = None) -> AsyncIterator[Host]:
    keypair = KeyPair.generate()
    # js opens 100 echo streams at once: above the default 64 of one protocol served at once
    config = HostConfig(max_streams_per_protocol=128)
    async with open_host(keypair, [QuicTransport(keypair, quic)], config) as host:
        Identify(host)
        Ping(host)
        host.set_handler(ECHO, echo_handler)
        await host.listen(Multiaddr.parse(QUIC_LISTEN))
        yield host


def guts_addr(host: Host) -> str:
    (addr,) = host.listen_addrs
    text = str(addr)
    assert text.startswith("/ip4/127.0.0.1/udp/") and text.endswith("/quic-v1")
    return str(addr.with_p2p(str(host.peer_id)))


def without_p2p(addr: str) -> str:
    return addr.split("/p2p/")[0]


async def ping_and_identify(host: Host, conn: Connection, js: JsPeer) -> None:
    """Ping each way, and each side's identify of the other."""
    js_peer = PeerId.from_string(js.peer_id)
    async with aclosing(ping(host, js_peer, count=5)) as pings:
        assert len([r async for r in pings]) == 5
    assert len((await js.call("ping", peer=str(host.peer_id), count=5))["rtts_ms"]) == 5

    # Guts identified js
    with trio.fail_after(10):
        await conn.identified.wait()
    assert {ECHO, IDENTIFY, PING} <= set(host.peerstore.protocols(js_peer))
    agent = host.peerstore.info(js_peer).agent_version
    assert agent is not None and agent.startswith("js-libp2p/3.3.11 ")
    # js identified Guts: our protocols and our QUIC listen address
    info = await js.call("identify", peer=str(host.peer_id))
    assert info["agentVersion"] == AGENT_VERSION
    assert {ECHO, IDENTIFY, IDENTIFY_PUSH, PING} <= set(info["protocols"])
    assert without_p2p(guts_addr(host)) in info["listenAddrs"]
    assert info["peerStore"]["agentVersion"] == AGENT_VERSION


async def echo_both_ways(host: Host, js: JsPeer) -> None:
    """16 MiB on one stream, then 256 KiB on each of 100 concurrent streams,
    from Guts to js's echo and from js to ours."""
    js_peer = PeerId.from_string(js.peer_id)
    with trio.fail_after(120):
        await guts_echo(host, js_peer, 16 * MIB)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(guts_echo, host, js_peer, 256 * 1024, i)
    served = [await js.next_event("echo:served", peer_id=str(host.peer_id)) for _ in range(101)]
    assert sorted(e["bytes"] for e in served) == [256 * 1024] * 100 + [16 * MIB]

    result = await js.call("echo", peer=str(host.peer_id), bytes=16 * MIB, streams=1, timeout=120)
    assert result["bytes"] == 16 * MIB and result["streams"] == 1
    result = await js.call("echo", peer=str(host.peer_id), bytes=256 * 1024, streams=100, timeout=120)
    assert result["bytes"] == 256 * 1024 and result["streams"] == 100


async def assert_one_quic_connection(host: Host, conn: Connection, js: JsPeer) -> None:
    js_peer = PeerId.from_string(js.peer_id)
    assert host.connection(js_peer) is conn and not conn.is_closed
    (entry,) = (await js.call("peers"))["peers"]
    assert entry["peer_id"] == str(host.peer_id)
    (js_conn,) = entry["connections"]
    assert "/quic-v1" in js_conn["remote_addr"]
    assert not [e for e in js.events if e.get("event") in ("connection:close", "echo:failed")]


# -- Guts dials js ---------------------------------------------------------------


async def test_guts_dials_js_over_quic(spawn_js: SpawnJs) -> None:
    js = await spawn_js(listen=[QUIC_LISTEN])
    async with guts_quic_host() as host:
        conn = await host.connect(Multiaddr.parse(js.addr("quic")))
        js_peer = PeerId.from_string(js.peer_id)
        assert conn.peer_id == js_peer
        assert "quic-v1" in conn.remote_addr.protocols()

        opened = await js.next_event("connection:open", peer_id=str(host.peer_id))
        assert opened["direction"] == "inbound"
        assert opened["remote_addr"].startswith("/ip4/127.0.0.1/udp/")
        assert "/quic-v1" in opened["remote_addr"]
        await js.next_event("peer:connect", peer_id=str(host.peer_id))
        # QUIC secures and multiplexes by itself: js ran neither Noise nor TLS
        assert not [e for e in js.events if e.get("event") == "connection:encrypted"]

        await ping_and_identify(host, conn, js)
        await echo_both_ways(host, js)
        await assert_one_quic_connection(host, conn, js)


# -- js dials Guts -----------------------------------------------------------------


async def test_js_dials_guts_over_quic(spawn_js: SpawnJs) -> None:
    js = await spawn_js(listen=[QUIC_LISTEN])
    async with guts_quic_host() as host:
        reply = await js.call("dial", addr=guts_addr(host))
        assert reply["peer_id"] == str(host.peer_id)
        assert reply["direction"] == "outbound"
        assert without_p2p(reply["remote_addr"]) == without_p2p(guts_addr(host))
        assert not [e for e in js.events if e.get("event") == "connection:encrypted"]

        js_peer = PeerId.from_string(js.peer_id)
        await wait_for(lambda: host.connection(js_peer) is not None)
        conn = host.connection(js_peer)
        assert conn is not None
        assert "quic-v1" in conn.remote_addr.protocols()

        await ping_and_identify(host, conn, js)
        await echo_both_ways(host, js)
        await assert_one_quic_connection(host, conn, js)


async def test_js_comes_back_from_a_retry(spawn_js: SpawnJs) -> None:
    """A Guts listener under load (here: always) answers a new client's
    Initial with a Retry; js's QUIC comes back with the token and connects."""
    js = await spawn_js(listen=[QUIC_LISTEN])
    async with guts_quic_host(QuicConfig(retry_above=0)) as host:
        reply = await js.call("dial", addr=guts_addr(host))
        assert reply["peer_id"] == str(host.peer_id)
        js_peer = PeerId.from_string(js.peer_id)
        await wait_for(lambda: host.connection(js_peer) is not None)
        conn = host.connection(js_peer)
        assert conn is not None
        await ping_and_identify(host, conn, js)
        transport = next(t for t in host._transports if isinstance(t, QuicTransport))
        assert transport.endpoints[0].retries == 1


# -- the wrong peer id -------------------------------------------------------------


async def test_wrong_peer_id_over_quic_fails_both_ways(spawn_js: SpawnJs) -> None:
    """A dial naming a peer id the certificate does not vouch for fails at
    once on either side, and leaves no connection behind; the right id then
    connects."""
    js = await spawn_js(listen=[QUIC_LISTEN])
    stranger = str(KeyPair.generate().peer_id)
    async with guts_quic_host() as host:
        js_peer = PeerId.from_string(js.peer_id)
        with trio.fail_after(5), pytest.raises(DialError) as failed:
            await host.connect(Multiaddr.parse(without_p2p(js.addr("quic")) + "/p2p/" + stranger))
        assert js.peer_id in str(failed.value)  # the peer actually reached
        assert host.connection(js_peer) is None

        with trio.fail_after(5), pytest.raises(JsCommandError) as refused:
            await js.call("dial", addr=without_p2p(guts_addr(host)) + "/p2p/" + stranger, timeout=5)
        assert f"Dialed peer {stranger} but connected to {host.peer_id}" in refused.value.error
        await trio.sleep(0.2)
        assert (await js.call("peers"))["peers"] == []
        assert host.connection(js_peer) is None
        assert not [e for e in js.events if e.get("event") == "peer:connect"]

        reply = await js.call("dial", addr=guts_addr(host))
        assert reply["peer_id"] == str(host.peer_id)
        await wait_for(lambda: host.connection(js_peer) is not None)
