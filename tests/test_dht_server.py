"""Answering requests, synchronously: the KadServer core."""

from __future__ import annotations

import pytest

from guts.crypto import KeyPair
from guts.dht._addrs import AddrScope
from guts.dht._codec import KadMessage, KadPeer, MessageType, Record
from guts.dht._key import kad_key
from guts.dht._server import KadServer
from guts.connmgr import RateLimiter
from guts.dht.records import ProviderStore, ValueStore
from guts.dht.routing_table import RoutingTable
from guts.errors import InvalidRecord, RemoteProtocolError
from guts.multiaddr import Multiaddr

from .dht_helpers import hashed_peer, peer, true_closest
from .dht_signed_helpers import signed

LOOP = Multiaddr.parse("/ip4/127.0.0.1/tcp/1")
LAN = Multiaddr.parse("/ip4/192.168.1.2/tcp/1")
PUB = Multiaddr.parse("/ip4/8.8.8.8/tcp/1")
ME = peer(0)


def make(scope: AddrScope = AddrScope.LOCAL, rate: float = 100, burst: float = 100, n: int = 50) -> KadServer:
    table = RoutingTable(ME)
    for i in range(n):
        table.add(hashed_peer(i), [LOOP, LAN, PUB], 0)
    return KadServer(
        ME, table, ProviderStore(), ValueStore(), RateLimiter(rate, burst),
        own_addrs=lambda: (LOOP, PUB),
        peer_addrs=lambda p: (),
        public_key=lambda p: None,
        scope=lambda: scope,
        k=20,
    )


def test_find_node_closest_without_the_sender() -> None:
    server = make()
    sender = hashed_peer(3)
    key = b"target"
    served = server.handle(sender, KadMessage(MessageType.FIND_NODE, key=key), 0)
    got = [p.peer_id for p in served.response.closer_peers]
    population = [hashed_peer(i) for i in range(50) if i != 3]
    assert got == true_closest(kad_key(key), population, 20)


def test_find_node_for_ourselves_includes_us() -> None:
    served = make().handle(peer(1), KadMessage(MessageType.FIND_NODE, key=ME.to_bytes()), 0)
    first = served.response.closer_peers[0]
    assert first == KadPeer(ME, (LOOP, PUB)) and len(served.response.closer_peers) == 20


def test_address_scope_filters_answers() -> None:
    served = make(AddrScope.PUBLIC).handle(peer(1), KadMessage(MessageType.FIND_NODE, key=b"x"), 0)
    assert all(p.addrs == (PUB,) for p in served.response.closer_peers)
    served = make(AddrScope.PRIVATE).handle(peer(1), KadMessage(MessageType.FIND_NODE, key=b"x"), 0)
    assert all(p.addrs == (LAN, PUB) for p in served.response.closer_peers)


def test_ping_and_missing_key() -> None:
    server = make()
    assert server.handle(peer(1), KadMessage(MessageType.PING), 0).response == KadMessage(MessageType.PING)
    for kind in (MessageType.GET_VALUE, MessageType.PUT_VALUE, MessageType.ADD_PROVIDER, MessageType.GET_PROVIDERS):
        with pytest.raises(RemoteProtocolError, match="without a key"):
            server.handle(peer(1), KadMessage(kind), 0)


def test_add_provider_only_for_the_sender() -> None:
    server = make()
    sender, other = peer(1), peer(2)
    msg = KadMessage(MessageType.ADD_PROVIDER, key=b"\x12\x20" + bytes(32), provider_peers=(KadPeer(other, (LOOP,)),))
    served = server.handle(sender, msg, 0)
    assert served.response is None and "not the sender" in served.refused
    msg = KadMessage(
        MessageType.ADD_PROVIDER, key=msg.key, provider_peers=(KadPeer(other, (LOOP,)), KadPeer(sender, (LOOP,)))
    )
    served = server.handle(sender, msg, 0)
    assert served.response is None and served.stored and served.refused is None
    got = server.handle(peer(5), KadMessage(MessageType.GET_PROVIDERS, key=msg.key), 1).response
    assert got.provider_peers == (KadPeer(sender, (LOOP,)),)
    assert len(got.closer_peers) == 20


def test_put_and_get_value() -> None:
    server = make()
    rec = Record(*signed(b"a", b"v1"))
    put = KadMessage(MessageType.PUT_VALUE, key=rec.key, record=rec)
    assert server.handle(peer(1), put, 100).response == put  # echoed
    got = server.handle(peer(2), KadMessage(MessageType.GET_VALUE, key=rec.key), 101).response
    assert got.record.value == rec.value and got.record.time_received.startswith("1970-01-01T00:01:40")
    with pytest.raises(RemoteProtocolError, match="record key differs"):
        server.handle(peer(1), KadMessage(MessageType.PUT_VALUE, key=b"/guts/b", record=rec), 0)
    with pytest.raises(RemoteProtocolError, match="without a record"):
        server.handle(peer(1), KadMessage(MessageType.PUT_VALUE, key=b"/guts/b"), 0)
    with pytest.raises(InvalidRecord, match="no validator"):
        bad = Record(b"/nope/x", b"v")
        server.handle(peer(1), KadMessage(MessageType.PUT_VALUE, key=bad.key, record=bad), 0)


def test_get_value_answers_public_keys_from_the_peerstore() -> None:
    pair = KeyPair.generate()
    server = make()
    server._public_key = lambda p: pair.public_key if p == pair.peer_id else None  # type: ignore[method-assign]
    key = b"/pk/" + pair.peer_id.to_bytes()
    got = server.handle(peer(1), KadMessage(MessageType.GET_VALUE, key=key), 0).response
    assert got.record == Record(key, pair.public_key.to_protobuf(), got.record.time_received)
    assert server.handle(peer(1), KadMessage(MessageType.GET_VALUE, key=b"/pk/\x00"), 0).response.record is None


def test_write_flood_is_rate_limited() -> None:
    server = make(rate=1, burst=5)
    flooder = peer(1)
    results = []
    for i in range(50):
        rec = Record(*signed(b"k%d" % i, b"v"))
        results.append(server.handle(flooder, KadMessage(MessageType.PUT_VALUE, key=rec.key, record=rec), 0))
    assert sum(r.response is not None for r in results) == 5
    assert all("rate limit" in r.refused for r in results[5:])
    # another peer is unaffected
    rec = Record(*signed(b"other", b"v"))
    assert server.handle(peer(2), KadMessage(MessageType.PUT_VALUE, key=rec.key, record=rec), 0).response


def test_find_node_for_a_connected_peer_outside_the_table() -> None:
    server = make()
    client = peer(7)  # a client-mode peer: connected, never in the table
    server._connected = lambda p: p == client  # type: ignore[method-assign]
    server._peer_addrs = lambda p: (LAN,) if p == client else ()  # type: ignore[method-assign]
    got = server.handle(peer(1), KadMessage(MessageType.FIND_NODE, key=client.to_bytes()), 0).response
    assert got.closer_peers[0] == KadPeer(client, (LAN,)) and len(got.closer_peers) == 20
    # not told about itself, and nothing special for peers we do not know
    got = server.handle(client, KadMessage(MessageType.FIND_NODE, key=client.to_bytes()), 0).response
    assert client not in [p.peer_id for p in got.closer_peers]
    got = server.handle(peer(1), KadMessage(MessageType.FIND_NODE, key=peer(8).to_bytes()), 0).response
    assert peer(8) not in [p.peer_id for p in got.closer_peers]
