"""The js peer and its driver, proven with two js peers talking to each other.

These run before any Python host exists: if they fail, the interop harness is
broken, not Guts.
"""

from __future__ import annotations

import functools
import os

import base58
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from guts.crypto import KeyPair
from guts.dht.signed import guts_key, sign_record

from .conftest import SpawnJs
from .jspeer import ECHO_PROTOCOL, JsCommandError, JsPeer, JsPeerError

MIB = 1024 * 1024


def ed25519_peer_id(seed: bytes) -> str:
    """Peer id of an Ed25519 key: identity multihash of the protobuf PublicKey."""
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )
    public_key_pb = bytes([0x08, 0x01, 0x12, 0x20]) + raw  # Type=Ed25519, Data=raw
    return base58.b58encode(bytes([0x00, len(public_key_pb)]) + public_key_pb).decode()


def strip_p2p(addr: str) -> str:
    return addr.split("/p2p/")[0]


@pytest.fixture(params=["tcp", "ws"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def connected_pair(spawn_js: SpawnJs, transport: str) -> tuple[JsPeer, JsPeer]:
    a = await spawn_js()
    b = await spawn_js()
    reply = await a.call("dial", addr=b.addr(transport))
    assert reply["peer_id"] == b.peer_id
    await a.next_event("peer:connect", peer_id=b.peer_id)
    await b.next_event("peer:connect", peer_id=a.peer_id)
    return a, b


async def test_ready_line(js_peer: JsPeer) -> None:
    assert js_peer.peer_id.startswith("12D3KooW")
    assert all(a.endswith("/p2p/" + js_peer.peer_id) for a in js_peer.addrs)
    assert js_peer.addr("tcp").startswith("/ip4/127.0.0.1/tcp/")
    assert "/ws/p2p/" in js_peer.addr("ws")
    assert {ECHO_PROTOCOL, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(js_peer.protocols)
    info = await js_peer.call("info")
    assert info["peer_id"] == js_peer.peer_id
    assert info["addrs"] == js_peer.addrs
    assert js_peer.stray_lines == []


async def test_seed_gives_the_python_derived_peer_id(spawn_js: SpawnJs) -> None:
    seed = bytes(range(32))
    js = await spawn_js(seed=seed, listen=["/ip4/127.0.0.1/tcp/0"])
    assert js.peer_id == ed25519_peer_id(seed)
    assert len(js.addrs) == 1
    zero = await spawn_js(seed="00" * 32, listen=["/ip4/127.0.0.1/tcp/0"])
    assert zero.peer_id == "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


async def test_dial_ping_identify(spawn_js: SpawnJs, transport: str) -> None:
    a, b = await connected_pair(spawn_js, transport)

    conn = (await a.call("peers"))["peers"]
    assert [p["peer_id"] for p in conn] == [b.peer_id]
    remote = conn[0]["addrs"][0]
    assert ("/ws" in remote) == (transport == "ws")
    assert conn[0]["connections"][0]["multiplexer"] == "/yamux/1.0.0"
    assert conn[0]["connections"][0]["encryption"] == "/noise"

    rtts = (await a.call("ping", peer=b.peer_id, count=3))["rtts_ms"]
    assert len(rtts) == 3 and all(r >= 0 for r in rtts)
    rtts = (await b.call("ping", addr=a.addr(transport), count=1))["rtts_ms"]
    assert len(rtts) == 1

    event = await a.next_event("peer:identify", peer_id=b.peer_id)
    ident = await a.call("identify", peer=b.peer_id)
    for info in (event, ident):
        assert info["agentVersion"].startswith("js-libp2p/3.3.11 node/")
        assert info["protocolVersion"] == "ipfs/0.1.0"
        assert set(b.protocols) <= set(info["protocols"])
        assert sorted(info["listenAddrs"]) == sorted(strip_p2p(x) for x in b.addrs)
        assert info["observedAddr"].startswith("/ip4/127.0.0.1/tcp/")
    assert ident["peerStore"]["agentVersion"] == ident["agentVersion"]
    assert ident["signedPeerRecord"] is not None

    fresh = await b.call("identify", peer=a.peer_id, fresh=True)
    assert fresh["peer_id"] == a.peer_id
    assert set(a.protocols) <= set(fresh["protocols"])


async def test_echo_16_mib(spawn_js: SpawnJs, transport: str) -> None:
    a, b = await connected_pair(spawn_js, transport)
    reply = await a.call("echo", peer=b.peer_id, bytes=16 * MIB, streams=1, timeout=120)
    assert reply["bytes"] == 16 * MIB and reply["streams"] == 1
    served = await b.next_event("echo:served", peer_id=a.peer_id)
    assert served["bytes"] == 16 * MIB


async def test_echo_100_streams(spawn_js: SpawnJs, transport: str) -> None:
    a, b = await connected_pair(spawn_js, transport)
    reply = await a.call("echo", peer=b.peer_id, bytes=256 * 1024, streams=100, timeout=120)
    assert reply["streams"] == 100
    for _ in range(100):
        await b.next_event("echo:served", peer_id=a.peer_id)
    # both directions, and zero-byte streams
    await b.call("echo", peer=a.peer_id, bytes=0, streams=3)


async def test_hangup_and_redial(spawn_js: SpawnJs) -> None:
    a, b = await connected_pair(spawn_js, "tcp")
    await a.call("hangup", peer=b.peer_id)
    await a.next_event("peer:disconnect", peer_id=b.peer_id)
    await b.next_event("peer:disconnect", peer_id=a.peer_id)
    assert (await a.call("peers"))["peers"] == []
    await a.call("dial", addr=b.addr("ws"))
    await b.next_event("peer:connect", peer_id=a.peer_id)


async def test_errors_are_replies_not_crashes(js_peer: JsPeer) -> None:
    with pytest.raises(JsCommandError, match="unknown command"):
        await js_peer.call("no-such-command")
    with pytest.raises(JsCommandError) as info:
        await js_peer.call("dial", addr="/ip4/127.0.0.1/tcp/1/p2p/" + js_peer.peer_id)
    assert info.value.cmd == "dial"
    with pytest.raises(JsCommandError):
        await js_peer.call("ping", peer="not-a-peer-id")
    with pytest.raises(JsCommandError, match="identify"):
        # connected to nobody: waiting for an identify times out js-side
        await js_peer.call(
            "identify", peer="12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN", timeout=0.5
        )
    assert (await js_peer.call("info"))["peer_id"] == js_peer.peer_id


@pytest.mark.usefixtures("js_available")
async def test_start_and_stop_exit_cleanly() -> None:
    async with JsPeer.start(listen=["/ip4/127.0.0.1/tcp/0"]) as js:
        assert js.returncode is None
    assert js.returncode == 0
    with pytest.raises(JsPeerError, match="exited"):
        await js.call("info")


@pytest.mark.usefixtures("js_available")
async def test_bad_arguments_fail_start_with_stderr() -> None:
    with pytest.raises(JsPeerError, match="seed must be 64 hex digits"):
        async with JsPeer.start(args=["--seed", "nothex"]):
            pass  # pragma: no cover


async def test_concurrent_calls(spawn_js: SpawnJs) -> None:
    a, b = await connected_pair(spawn_js, "tcp")
    results: list[dict[str, object]] = []

    async def one(i: int) -> None:
        results.append(await a.call("echo", peer=b.peer_id, bytes=1000 + i, streams=2))

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
        nursery.start_soon(functools.partial(a.call, "ping", peer=b.peer_id))
    assert sorted(r["bytes"] for r in results) == [1000 + i for i in range(10)]  # type: ignore[type-var]


async def three_js(spawn_js: SpawnJs, *args: str) -> tuple[JsPeer, JsPeer, JsPeer]:
    """Three js peers in a line a - b - c over TCP."""
    a, b, c = [await spawn_js(listen=["/ip4/127.0.0.1/tcp/0"], args=list(args)) for _ in range(3)]
    await a.call("dial", addr=b.addr("tcp"))
    await c.call("dial", addr=b.addr("tcp"))
    return a, b, c


async def test_dht_commands(spawn_js: SpawnJs) -> None:
    a, b, c = await three_js(spawn_js, "--dht")
    with trio.fail_after(20):
        while len((await b.call("dht:routing-table"))["peers"]) < 2:
            await trio.sleep(0.1)
    assert "/ipfs/kad/1.0.0" in a.protocols
    key = bytes([0x12, 0x20]) + bytes(range(32))  # a sha2-256 multihash
    await a.call("dht:provide", key_hex=key.hex())
    providers = (await c.call("dht:find-providers", key_hex=key.hex()))["providers"]
    assert [p["peer_id"] for p in providers] == [a.peer_id]
    assert strip_p2p(a.addr("tcp")) in providers[0]["addrs"]
    owner = KeyPair.generate()  # /guts/ values are records their owner signed
    name = guts_key(owner.peer_id, b"k")
    record = sign_record(owner, name, 1, b"v")
    await a.call("dht:put", key_hex=name.hex(), value_hex=record.hex())
    assert (await c.call("dht:get", key_hex=name.hex()))["value_hex"] == record.hex()
    found = await c.call("dht:find-peer", peer=a.peer_id)
    assert strip_p2p(a.addr("tcp")) in found["addrs"]
    closest = (await c.call("dht:closest", key_hex=key.hex()))["peers"]
    assert {p["peer_id"] for p in closest} >= {a.peer_id, b.peer_id}
    with pytest.raises(JsCommandError, match="NotFoundError"):
        await c.call("dht:get", key_hex=b"/guts/absent".hex(), timeout_ms=10_000)


async def test_dht_protocol_option(spawn_js: SpawnJs) -> None:
    js = await spawn_js(listen=["/ip4/127.0.0.1/tcp/0"], args=["--dht", "--dht-protocol", "/guts/kad/1.0.0"])
    assert "/guts/kad/1.0.0" in js.protocols and "/ipfs/kad/1.0.0" not in js.protocols
    with pytest.raises(JsCommandError, match="--dht"):
        await (await spawn_js(listen=["/ip4/127.0.0.1/tcp/0"])).call("dht:routing-table")


async def test_pubsub_commands(spawn_js: SpawnJs) -> None:
    a, b, c = await three_js(spawn_js, "--gossipsub")
    for js in (a, b, c):
        await js.call("pubsub:subscribe", topic="t")
    with trio.fail_after(20):
        while len((await b.call("pubsub:mesh", topic="t"))["peers"]) < 2:
            await trio.sleep(0.2)
    assert set((await b.call("pubsub:subscribers", topic="t"))["peers"]) == {a.peer_id, c.peer_id}
    published = await a.call("pubsub:publish", topic="t", data_hex=b"hello".hex())
    assert published["recipients"] == [b.peer_id]
    got = await c.next_event("pubsub:message", timeout=10)
    assert got["data_hex"] == b"hello".hex() and got["from"] == a.peer_id
    assert got["propagation_source"] == b.peer_id
    # js's default message id: the author's protobuf PublicKey, then the seqno
    assert got["msg_id_hex"] == published["msg_id_hex"] == got["key_hex"] + got["seqno_hex"]
    assert len(bytes.fromhex(got["signature_hex"])) == 64
    assert (await b.call("pubsub:score", peer=a.peer_id))["score"] >= 0


async def test_gossip_protocol_option(spawn_js: SpawnJs) -> None:
    js = await spawn_js(listen=["/ip4/127.0.0.1/tcp/0"], args=["--gossipsub", "--gossip-protocol", "/meshsub/1.1.0"])
    assert [p for p in js.protocols if "sub/" in p] == ["/meshsub/1.1.0"]
