"""Conformance: a mixed kad-dht network of Guts nodes and real js-libp2p
kad-dht 16 nodes on ``/ipfs/kad/1.0.0``, all in server mode on loopback.

Each side finds the other's peers, providers announced on one side are
found from the other, and values put on one side are read from the other.
The ``guts dht`` commands do the same by CID, as kubo users write them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from guts.cid import Cid
from guts.crypto import KeyPair
from guts.dht import IPFS_PROTOCOL, Dht, DhtConfig, DhtMode, KadMessage, MessageType, Record, RequestFailed
from guts.dht.signed import SignedValue, guts_key, open_record, sign_record
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.ping import Ping
from guts.transport import TcpTransport

from .conftest import SpawnJs
from .jspeer import JsPeer

TCP = "/ip4/127.0.0.1/tcp/0"
GUTS = [sys.executable, "-m", "guts.cli"]


@dataclass
class GutsNode:
    host: Host
    dht: Dht

    @property
    def addr(self) -> Multiaddr:
        return self.host.listen_addrs[0]


@asynccontextmanager
async def guts_nodes(bootstraps: list[list[str]]) -> AsyncIterator[list[GutsNode]]:
    """One Guts DHT node per entry, each bootstrapping from the given addresses."""
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        nodes = []
        for boot in bootstraps:
            host = await stack.enter_async_context(open_host(KeyPair.generate(), [TcpTransport()], HostConfig()))
            Identify(host)
            Ping(host)
            await host.listen(Multiaddr.parse(TCP))
            config = DhtConfig(
                protocol=IPFS_PROTOCOL,
                mode=DhtMode.SERVER,
                bootstrap=tuple(Multiaddr.parse(a) for a in boot),
                request_timeout=5.0,
                query_timeout=30.0,
            )
            dht = Dht(host, config)
            await nursery.start(dht.run)
            nodes.append(GutsNode(host, dht))
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


def strip(addr: str) -> str:
    return addr.split("/p2p/")[0]


def multihash(data: bytes) -> bytes:
    return b"\x12\x20" + hashlib.sha256(data).digest()


async def js_table(js: JsPeer) -> set[str]:
    return set((await js.call("dht:routing-table"))["peers"])


async def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.1)


async def test_mixed_network(spawn_js: SpawnJs) -> None:
    # j1 is the rendezvous; g1 and g2 bootstrap from it; j2 dials g2 only:
    #      g1 - j1 - g2 - j2
    j1 = await spawn_js(listen=[TCP], args=["--dht"])
    j2 = await spawn_js(listen=[TCP], args=["--dht"])
    async with guts_nodes([[j1.addr("tcp")], [j1.addr("tcp")]]) as (g1, g2):
        await g1.dht.bootstrap()
        await g2.dht.bootstrap()
        g2_full = str(g2.addr.with_p2p(str(g2.host.peer_id)))
        await j2.call("dial", addr=g2_full)
        j1_id, j2_id = PeerId.from_string(j1.peer_id), PeerId.from_string(j2.peer_id)
        g1_id, g2_id = g1.host.peer_id, g2.host.peer_id

        # Routing tables: js keeps Guts servers (learnt through identify) and Guts keeps js's.
        async def tables_filled() -> bool:
            return {str(g1_id), str(g2_id)} <= await js_table(j1) and str(g2_id) in await js_table(j2)

        await wait_until(tables_filled)
        assert j1_id in g1.dht.table and j1_id in g2.dht.table
        with trio.fail_after(20):
            while j2_id not in g2.dht.table:
                await trio.sleep(0.1)

        # Peer routing, Guts -> js: g1 has never talked to j2.
        closest = await g1.dht.find_closest_peers(j2_id.to_bytes())
        assert closest.peers and closest.peers[0].peer_id == j2_id
        assert {j1_id, g2_id} <= {p.peer_id for p in closest.peers}
        if g1.host.connection(j2_id) is not None:
            await g1.host.disconnect(j2_id)
            with trio.fail_after(5):
                while g1.host.connection(j2_id) is not None:
                    await trio.sleep(0.05)
        info = await g1.dht.find_peer(j2_id)
        assert Multiaddr.parse(strip(j2.addr("tcp"))) in info.addrs
        # Peer routing, js -> Guts: j2 looks up g1 (known to it only through the DHT).
        found = await j2.call("dht:find-peer", peer=str(g1_id))
        assert strip(str(g1.addr)) in found["addrs"]
        js_closest = (await j2.call("dht:closest", key_hex=g1_id.to_bytes().hex()))["peers"]
        assert {p["peer_id"] for p in js_closest} >= {str(g1_id), str(g2_id)}

        # Providers, Guts -> js.
        key = multihash(b"guts repository")
        published = await g1.dht.provide(key)
        assert {j1_id, j2_id} & set(published.stored_at)  # js nodes took the ADD_PROVIDER
        providers = (await j2.call("dht:find-providers", key_hex=key.hex()))["providers"]
        assert [p["peer_id"] for p in providers] == [str(g1_id)]
        assert strip(str(g1.addr)) in providers[0]["addrs"]
        # Providers, js -> Guts.
        key2 = multihash(b"js repository")
        await j2.call("dht:provide", key_hex=key2.hex())
        got = await g1.dht.find_providers(key2)
        assert [p.peer_id for p in got] == [j2_id]
        assert Multiaddr.parse(strip(j2.addr("tcp"))) in got[0].addrs
        assert g2.dht.providers.get(key2, j2_id) is not None  # js's ADD_PROVIDER, accepted by Guts

        # Values, Guts -> js: js checks the owner's signature (its validator
        # for /guts/ in interop/peer.mjs), stores and serves the signed record.
        from_guts = guts_key(g1_id, b"from-guts")
        stored = await g1.dht.put_value(from_guts, b"value one")
        assert {j1_id, j2_id} & set(stored.stored_at)  # js echoed the PUT_VALUE
        served = bytes.fromhex((await j2.call("dht:get", key_hex=from_guts.hex()))["value_hex"])
        assert open_record(from_guts, served, 1024) == SignedValue(g1_id, b"from-guts", stored.seq, b"value one")
        # the owner's next put wins on js too (js selects the highest seq)
        newer = await g1.dht.put_value(from_guts, b"value \x00ne")
        served = bytes.fromhex((await j2.call("dht:get", key_hex=from_guts.hex()))["value_hex"])
        assert open_record(from_guts, served, 1024).seq == newer.seq
        # Values, js -> Guts: js puts a record a Guts key signed; a Guts node
        # that did not take part in the put reads it.
        writer = KeyPair.generate()
        from_js = guts_key(writer.peer_id, b"from-js")
        record = sign_record(writer, from_js, 7, b"value two")
        await j2.call("dht:put", key_hex=from_js.hex(), value_hex=record.hex())
        assert await g1.dht.get_value(from_js) == b"value two"
        assert await g2.dht.get_value(from_js) == b"value two"
        assert g2.dht.values.get(from_js, 0) is not None  # js's PUT_VALUE, stored by Guts
        # js refuses a record its owner did not sign, and keeps serving the genuine one
        forger = KeyPair.generate()
        forged = sign_record(forger, guts_key(forger.peer_id, b"from-js"), 8, b"forged")
        put = KadMessage(MessageType.PUT_VALUE, key=from_js, record=Record(from_js, forged))
        with pytest.raises(RequestFailed):
            await g1.dht.request(j2_id, put)
        assert bytes.fromhex((await j2.call("dht:get", key_hex=from_js.hex()))["value_hex"]) == record


async def test_guts_client_mode_against_js(spawn_js: SpawnJs) -> None:
    """A Guts node in client mode uses the js DHT; it does not announce the
    protocol, so js does not put it in its routing table on connecting.

    (js does add any peer that a DHT answer lists, provider peers included,
    so once the client provides something it may appear there, and js's
    requests to it are then refused at protocol negotiation.)"""
    j1 = await spawn_js(listen=[TCP], args=["--dht"])
    j2 = await spawn_js(listen=[TCP], args=["--dht"])
    await j2.call("dial", addr=j1.addr("tcp"))
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        host = await stack.enter_async_context(open_host(KeyPair.generate(), [TcpTransport()], HostConfig()))
        Identify(host)
        Ping(host)
        await host.listen(Multiaddr.parse(TCP))
        config = DhtConfig(protocol=IPFS_PROTOCOL, mode=DhtMode.CLIENT, bootstrap=(Multiaddr.parse(j1.addr("tcp")),))
        dht = Dht(host, config)
        await nursery.start(dht.run)
        with trio.fail_after(20):
            await dht.bootstrapped.wait()
        assert IPFS_PROTOCOL not in host.protocols
        j2_id = PeerId.from_string(j2.peer_id)
        with trio.fail_after(20):
            while j2_id not in dht.table:
                await trio.sleep(0.1)
        # (a lookup for the client's own id would list it: js and Guts answer
        # a FIND_NODE for a peer they are connected to with that peer)
        await j1.call("dht:closest", key_hex=multihash(b"anything").hex())
        assert str(host.peer_id) not in await js_table(j1)
        assert str(host.peer_id) not in await js_table(j2)
        key = multihash(b"from a client")
        await dht.provide(key)
        providers = (await j2.call("dht:find-providers", key_hex=key.hex()))["providers"]
        assert [p["peer_id"] for p in providers] == [str(host.peer_id)]
        writer = KeyPair.generate()
        key = guts_key(writer.peer_id, b"c")
        await j1.call("dht:put", key_hex=key.hex(), value_hex=sign_record(writer, key, 1, b"v").hex())
        assert await dht.get_value(key) == b"v"
        nursery.cancel_scope.cancel()


async def guts(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    """Run the guts command as users run it."""
    return await trio.run_process(
        [*GUTS, *args], capture_stdout=True, capture_stderr=True, check=False,
        env={**os.environ, "GUTS_HOME": str(home)},
    )


async def two_js_servers(spawn_js: SpawnJs) -> tuple[JsPeer, JsPeer]:
    j1 = await spawn_js(listen=[TCP], args=["--dht"])
    j2 = await spawn_js(listen=[TCP], args=["--dht"])
    await j2.call("dial", addr=j1.addr("tcp"))

    async def tables_filled() -> bool:
        return j2.peer_id in await js_table(j1) and j1.peer_id in await js_table(j2)

    await wait_until(tables_filled)
    return j1, j2


async def test_cids_read_as_js_writes_them(spawn_js: SpawnJs) -> None:
    """Every multibase js writes a CID in parses to js's multihash, and back."""
    js = await spawn_js(listen=[TCP])
    peer = PeerId.from_string(js.peer_id)
    for args in (
        {"data_hex": b"raw".hex()},
        {"data_hex": b"dag-pb".hex(), "codec": 0x70},
        {"data_hex": b"dag-cbor".hex(), "codec": 0x71},
        {"data_hex": b"v0".hex(), "version": 0},
        {"multihash_hex": "0005" + b"hello".hex()},  # identity, inline
        {"multihash_hex": peer.to_bytes().hex(), "codec": 0x72},
    ):
        made = await js.call("cid", **args)
        for base, text in made["texts"].items():
            cid = Cid.parse(text)
            assert (cid.version, cid.codec, cid.multihash.hex()) == (made["version"], made["codec"], made["multihash_hex"])
            assert cid.encode(base) == text and cid.to_bytes().hex() == made["bytes_hex"]
        # and js reads what Guts writes
        ours = Cid.parse(made["text"])
        for base in ("base36", "base58btc", "base64url", "base16"):
            assert (await js.call("cid", cid=ours.encode(base)))["bytes_hex"] == made["bytes_hex"]
    # a js peer id in its CID forms is read as the peer id
    forms = (await js.call("cid", multihash_hex=peer.to_bytes().hex(), codec=0x72))["texts"]
    assert forms["base36"].startswith("k51")
    assert {PeerId.from_bytes(Cid.parse(t).multihash) for t in forms.values()} == {peer}


async def test_guts_dht_find_providers_of_a_cid_js_provided(spawn_js: SpawnJs, tmp_path: Path) -> None:
    """``guts dht find-providers CID --bootstrap JS --dht-protocol /ipfs/kad/1.0.0``
    with no node running: a short-lived node finds the js provider."""
    j1, j2 = await two_js_servers(spawn_js)
    raw = await j1.call("cid", data_hex=b"provided by js".hex())
    v0 = await j1.call("cid", data_hex=b"provided by js, v0".hex(), version=0)
    await j2.call("dht:provide", cid=raw["text"])  # bafkrei...
    await j2.call("dht:provide", cid=v0["text"])  # Qm...
    pb_v1 = Cid(1, 0x70, bytes.fromhex(v0["multihash_hex"])).encode()  # the v0's content as bafybei...
    for text, multihash in ((raw["texts"]["base36"], raw["multihash_hex"]), (raw["text"], raw["multihash_hex"]),
                            (v0["text"], v0["multihash_hex"]), (pb_v1, v0["multihash_hex"])):
        result = await guts(
            "dht", "find-providers", text, "--json", "--bootstrap", j1.addr("tcp"), "--dht-protocol", IPFS_PROTOCOL,
            home=tmp_path / "cli",
        )
        assert result.returncode == 0, result.stderr.decode()
        found = json.loads(result.stdout)
        assert found["key_hex"] == multihash
        assert [p["peer_id"] for p in found["providers"]] == [j2.peer_id], text
        assert strip(j2.addr("tcp")) in found["providers"][0]["addrs"]
    # The text form names the same providers.
    result = await guts(
        "dht", "find-providers", raw["text"], "--bootstrap", j1.addr("tcp"), "--dht-protocol", IPFS_PROTOCOL,
        home=tmp_path / "cli",
    )
    assert f"1 providers of '{raw['text']}' (CID v1 raw" in result.stdout.decode()
    assert not (tmp_path / "cli" / "control.sock").exists()


async def test_js_finds_a_cid_provided_through_guts_start(spawn_js: SpawnJs, tmp_path: Path) -> None:
    """``guts dht provide CID`` through a running ``guts start`` on the IPFS
    protocol; js's ``findProviders(cid)`` finds the Guts node."""
    j1, j2 = await two_js_servers(spawn_js)
    home = tmp_path / "node"
    with (tmp_path / "node.log").open("w") as log:
        node = subprocess.Popen(
            [*GUTS, "start", "--json", "--listen", TCP, "--dht-mode", "server", "--dht-protocol", IPFS_PROTOCOL,
             "--bootstrap", j1.addr("tcp")],
            stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "GUTS_HOME": str(home)},
        )
    try:
        assert node.stdout is not None
        ready = json.loads(await trio.to_thread.run_sync(node.stdout.readline))
        assert ready["event"] == "ready"

        async def joined() -> bool:
            status = json.loads((await guts("status", "--json", home=home)).stdout)
            return bool(status["dht"]["routing_table_size"] >= 2)

        await wait_until(joined)
        made = await j1.call("cid", data_hex=b"provided by guts".hex())
        result = await guts("dht", "provide", made["texts"]["base58btc"], "--dht-protocol", IPFS_PROTOCOL, home=home)
        assert result.returncode == 0, result.stderr.decode()
        assert "(CID v1 raw sha2-256, key " + made["multihash_hex"][:16] in result.stdout.decode()
        for js in (j1, j2):
            providers = (await js.call("dht:find-providers", cid=made["text"]))["providers"]
            assert [p["peer_id"] for p in providers] == [ready["peer_id"]]
            assert strip(ready["addrs"][0]) in providers[0]["addrs"]
        # The running node's protocol is the only one it queries on.
        refused = await guts("dht", "provide", made["text"], "--dht-protocol", "/guts/kad/1.0.0", home=home)
        assert refused.returncode == 1
        assert f"queries the DHT on {IPFS_PROTOCOL}, not /guts/kad/1.0.0" in refused.stderr.decode()
    finally:
        node.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(node.wait, 15) == 0


async def test_js_finds_the_seed_of_a_repository(spawn_js: SpawnJs, tmp_path: Path) -> None:
    """A node holding a repository provides its RID without being asked:
    ``guts repo init`` on a running ``guts start`` (IPFS protocol), then
    js-libp2p's ``findProviders`` with the RID as a CID finds the node."""
    j1, j2 = await two_js_servers(spawn_js)
    home, source = tmp_path / "node", tmp_path / "project"
    for args in (["init", "--quiet", "--initial-branch=main", str(source)],
                 ["-C", str(source), "-c", "user.name=A", "-c", "user.email=a@b", "commit", "--quiet",
                  "--allow-empty", "-m", "first"]):  # fmt: skip
        await trio.run_process(["git", *args], capture_stdout=True)
    with (tmp_path / "node.log").open("w") as log:
        node = subprocess.Popen(
            [*GUTS, "start", "--json", "--listen", TCP, "--dht-mode", "server", "--dht-protocol", IPFS_PROTOCOL,
             "--bootstrap", j1.addr("tcp")],
            stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "GUTS_HOME": str(home)},
        )  # fmt: skip
    try:
        assert node.stdout is not None
        ready = json.loads(await trio.to_thread.run_sync(node.stdout.readline))

        async def joined() -> bool:
            status = json.loads((await guts("status", "--json", home=home)).stdout)
            return bool(status["dht"]["routing_table_size"] >= 2)

        await wait_until(joined)
        made = await guts("repo", "init", str(source), "--json", home=home)
        assert made.returncode == 0, made.stderr.decode()
        rid = json.loads(made.stdout)["rid"]

        async def found_by_both() -> bool:
            for js in (j1, j2):
                providers = (await js.call("dht:find-providers", cid=rid))["providers"]
                if [p["peer_id"] for p in providers] != [ready["peer_id"]]:
                    return False
            return True

        await wait_until(found_by_both)
    finally:
        node.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(node.wait, 15) == 0
