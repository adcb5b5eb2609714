"""The js peer over QUIC (@chainsafe/libp2p-quic), proven js to js.

Two js peers listening on ``/ip4/127.0.0.1/udp/0/quic-v1`` only: a dial gives
a connection whose security and multiplexing are QUIC's own (js reports no
separate encrypter or muxer), ping and identify run over it, 16 MiB echo
intact on one stream and 256 KiB on each of 100 streams at once. If these
fail, the js side of the QUIC interop tests is broken, not Guts.
"""

from __future__ import annotations

import pytest

from .conftest import SpawnJs
from .jspeer import ECHO_PROTOCOL, QUIC_LISTEN, JsCommandError, JsPeer

MIB = 1024 * 1024


def strip_p2p(addr: str) -> str:
    return addr.split("/p2p/")[0]


async def quic_pair(spawn_js: SpawnJs) -> tuple[JsPeer, JsPeer]:
    a = await spawn_js(listen=[QUIC_LISTEN])
    b = await spawn_js(listen=[QUIC_LISTEN])
    reply = await a.call("dial", addr=b.addr("quic"))
    assert reply["peer_id"] == b.peer_id
    assert reply["remote_addr"] == b.addr("quic")
    await a.next_event("peer:connect", peer_id=b.peer_id)
    await b.next_event("peer:connect", peer_id=a.peer_id)
    return a, b


async def test_quic_listen_address(spawn_js: SpawnJs) -> None:
    js = await spawn_js(listen=[QUIC_LISTEN])
    assert len(js.addrs) == 1
    addr = js.addr("quic")
    assert addr.startswith("/ip4/127.0.0.1/udp/") and addr.endswith("/quic-v1/p2p/" + js.peer_id)
    port = int(addr.split("/")[4])
    assert port > 0
    assert {ECHO_PROTOCOL, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(js.protocols)


async def test_quic_is_opt_in(spawn_js: SpawnJs) -> None:
    """Without a /quic-v1 listen address or --transport quic, js cannot dial QUIC."""
    plain = await spawn_js()
    assert not any("/quic-v1" in a for a in plain.addrs)
    target = await spawn_js(listen=[QUIC_LISTEN])
    with pytest.raises(JsCommandError, match="NoValidAddressesError"):
        await plain.call("dial", addr=target.addr("quic"), timeout=10)
    dialler = await spawn_js(listen=["/ip4/127.0.0.1/tcp/0"], args=["--transport", "tcp", "--transport", "quic"])
    assert (await dialler.call("dial", addr=target.addr("quic")))["peer_id"] == target.peer_id


async def test_quic_ping_identify(spawn_js: SpawnJs) -> None:
    a, b = await quic_pair(spawn_js)
    conns = (await a.call("peers"))["peers"]
    assert [p["peer_id"] for p in conns] == [b.peer_id]
    conn = conns[0]["connections"][0]
    assert "/quic-v1" in conn["remote_addr"]
    rtts = (await a.call("ping", peer=b.peer_id, count=3))["rtts_ms"]
    assert len(rtts) == 3 and all(r >= 0 for r in rtts)
    assert len((await b.call("ping", peer=a.peer_id, count=1))["rtts_ms"]) == 1

    for me, other in ((a, b), (b, a)):
        info = await me.call("identify", peer=other.peer_id)
        assert info["agentVersion"].startswith("js-libp2p/3.3.11 node/")
        assert set(other.protocols) <= set(info["protocols"])
        assert info["listenAddrs"] == [strip_p2p(other.addr("quic"))]
        # js's QUIC connections carry the remote peer id in their address,
        # and identify sends that address back as the observed one
        observed = info["observedAddr"]
        assert observed.startswith("/ip4/127.0.0.1/udp/")
        assert observed.endswith("/quic-v1/p2p/" + me.peer_id)


async def test_quic_echo_16_mib(spawn_js: SpawnJs) -> None:
    a, b = await quic_pair(spawn_js)
    reply = await a.call("echo", peer=b.peer_id, bytes=16 * MIB, streams=1, timeout=120)
    assert reply["bytes"] == 16 * MIB and reply["streams"] == 1
    served = await b.next_event("echo:served", peer_id=a.peer_id)
    assert served["bytes"] == 16 * MIB


async def test_quic_echo_100_streams(spawn_js: SpawnJs) -> None:
    a, b = await quic_pair(spawn_js)
    reply = await a.call("echo", peer=b.peer_id, bytes=256 * 1024, streams=100, timeout=120)
    assert reply["streams"] == 100
    for _ in range(100):
        served = await b.next_event("echo:served", peer_id=a.peer_id)
        assert served["bytes"] == 256 * 1024
    reply = await b.call("echo", peer=a.peer_id, bytes=64 * 1024, streams=100, timeout=120)
    assert reply["streams"] == 100
