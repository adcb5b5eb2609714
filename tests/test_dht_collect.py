"""The lookup collectors and the PUT_VALUE echo check, synchronously:
answers in, decisions out."""

from __future__ import annotations

import pytest

from guts.crypto import KeyPair
from guts.dht._codec import KadMessage, KadPeer, MessageType, Record
from guts.dht.addrbook import AddrBook
from guts.dht.collect import PeerCollector, ProviderCollector, ValueCollector, ValueFound, put_echoed
from guts.dht.records import ProviderRecord, ValueStore
from guts.errors import InvalidRecord, PeerNotFound, RecordNotFound
from guts.multiaddr import Multiaddr
from guts.peerstore import PeerInfo

from .dht_helpers import FakeHost, peer
from .dht_signed_helpers import gkey, record

LOOP = Multiaddr.parse("/ip4/127.0.0.1/tcp/1")
PUB = Multiaddr.parse("/ip4/8.8.8.8/tcp/1")
PUB2 = Multiaddr.parse("/ip4/1.1.1.1/tcp/2")
ME = peer(0)
KEY = gkey(b"name")


def v(text: bytes) -> bytes:
    """A record of ``text`` under KEY; a greater text has a higher seq."""
    return record(b"name", text, seq=sum(text))


def book(host: FakeHost | None = None) -> AddrBook:
    return AddrBook(host or FakeHost(announce_addrs=[PUB]))


def answer(kind: MessageType = MessageType.FIND_NODE, **fields: object) -> KadMessage:
    return KadMessage(kind, key=KEY, **fields)  # type: ignore[arg-type]


# -- a peer's addresses ----------------------------------------------------------


def test_the_peer_itself_answering_ends_the_search() -> None:
    host = FakeHost(announce_addrs=[PUB])
    host.peerstore.add_addrs(peer(5), [PUB2])
    found = PeerCollector(peer(5), book(host))
    assert found.on_response(peer(5), answer()) is True
    assert found.result() == PeerInfo(peer(5), (PUB2,))


def test_a_peer_listed_with_addresses_in_scope_is_found() -> None:
    found = PeerCollector(peer(5), book())
    assert not found.on_response(peer(1), answer(closer_peers=(KadPeer(peer(2), (PUB,)),)))
    assert not found.on_response(peer(1), answer(closer_peers=(KadPeer(peer(5), ()),)))  # no address
    assert not found.on_response(peer(1), answer(closer_peers=(KadPeer(peer(5), (LOOP,)),)))  # none in scope
    with pytest.raises(PeerNotFound):
        found.result()
    assert found.on_response(peer(2), answer(closer_peers=(KadPeer(peer(5), (PUB2, LOOP)),)))
    found.on_response(peer(3), answer(closer_peers=(KadPeer(peer(5), (PUB2, PUB)),)))
    assert found.result() == PeerInfo(peer(5), (PUB2, PUB))  # each address once, in order


# -- providers -------------------------------------------------------------------


def providers_answer(*peers: KadPeer) -> KadMessage:
    return KadMessage(MessageType.GET_PROVIDERS, key=b"k", provider_peers=peers)


def test_our_providers_first_then_the_network_each_once_up_to_count() -> None:
    host = FakeHost(announce_addrs=[PUB])
    found = ProviderCollector(4, book(host))
    found.add_local(
        [ProviderRecord(b"k", ME, (), 0, 1), ProviderRecord(b"k", peer(1), (PUB2, LOOP), 0, 1)], ME
    )
    assert [p.peer_id for p in found.providers()] == [ME, peer(1)]
    assert found.providers()[0].addrs == (PUB,)  # ours: what we announce
    assert found.providers()[1].addrs == (PUB2,)  # within scope
    assert not found.done
    assert not found.on_response(peer(9), providers_answer(KadPeer(peer(1), (PUB,)), KadPeer(peer(2), (PUB2,))))
    assert found.on_response(
        peer(9), providers_answer(KadPeer(peer(2), ()), KadPeer(peer(3), (PUB,)), KadPeer(peer(4), (PUB,)))
    )
    assert [p.peer_id for p in found.providers()] == [ME, peer(1), peer(2), peer(3)]
    # the addresses of providers named in answers are remembered for dialling them
    assert host.peerstore.addrs(peer(3)) == (PUB,)
    assert peer(4) not in host.peerstore


def test_enough_local_providers_need_no_lookup() -> None:
    found = ProviderCollector(1, book())
    found.add_local([ProviderRecord(b"k", peer(1), (PUB,), 0, 1), ProviderRecord(b"k", peer(2), (PUB,), 0, 1)], ME)
    assert found.done and [p.peer_id for p in found.providers()] == [peer(1)]


# -- values ------------------------------------------------------------------------


def value_answer(value: bytes, key: bytes = KEY) -> KadMessage:
    return KadMessage(MessageType.GET_VALUE, key=KEY, record=Record(key, value))


def test_the_local_copy_counts_towards_the_quorum() -> None:
    assert ValueCollector(KEY, ValueStore(), 1, v(b"here")).done
    found = ValueCollector(KEY, ValueStore(), 2, v(b"here"))
    assert not found.done
    assert found.on_response(peer(1), value_answer(v(b"here")))
    assert found.result() == ValueFound(KEY, v(b"here"), ())


def test_quorum_best_value_and_who_needs_correcting() -> None:
    found = ValueCollector(KEY, ValueStore(), 3)
    assert not found.on_response(peer(1), value_answer(v(b"b")))
    assert not found.on_response(peer(2), KadMessage(MessageType.GET_VALUE, key=KEY))  # no record: not counted
    assert not found.on_response(peer(3), value_answer(v(b"c")))
    assert found.on_response(peer(4), value_answer(v(b"a")))  # three values: the quorum
    result = found.result()
    # /guts/ picks the highest seq; the holders of others get it back
    assert result.value == v(b"c") and result.outdated == (peer(1), peer(4))
    assert result.correction() == KadMessage(MessageType.PUT_VALUE, key=KEY, record=Record(KEY, v(b"c")))


def test_a_better_value_elsewhere_corrects_nobody_who_had_it() -> None:
    found = ValueCollector(KEY, ValueStore(), 3, v(b"v1"))
    found.on_response(peer(1), value_answer(v(b"v2")))
    found.on_response(peer(2), value_answer(v(b"v2")))
    # our own copy is the outdated one: no peer needs a PUT_VALUE
    assert found.result() == ValueFound(KEY, v(b"v2"), ())


def test_bad_records_are_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    found = ValueCollector(KEY, ValueStore(), 2)
    assert not found.on_response(peer(1), value_answer(b"x", key=b"/guts/other"))  # another key
    assert not found.on_response(peer(2), value_answer(b"x" * (16 * 1024 + 1)))  # fails the validator
    with pytest.raises(RecordNotFound):
        found.result()
    assert found.on_response(peer(3), value_answer(v(b"ok"))) is False
    assert found.result() == ValueFound(KEY, v(b"ok"), ())
    assert "another key" in caplog.text and "invalid record" in caplog.text


def test_public_key_records_are_checked() -> None:
    pair, other = KeyPair.from_seed(bytes(32)), KeyPair.from_seed(b"\x01" * 32)
    key = b"/pk/" + pair.peer_id.to_bytes()
    found = ValueCollector(key, ValueStore(), 1)
    assert not found.on_response(peer(1), KadMessage(MessageType.GET_VALUE, key=key, record=Record(key, other.public_key.to_protobuf())))
    assert found.on_response(peer(2), KadMessage(MessageType.GET_VALUE, key=key, record=Record(key, pair.public_key.to_protobuf())))


def test_a_key_without_a_validator_is_refused_up_front() -> None:
    with pytest.raises(InvalidRecord, match="no validator"):
        ValueCollector(b"/nope/x", ValueStore(), 1)


# -- puts --------------------------------------------------------------------------


def test_put_value_took_only_if_the_value_is_echoed() -> None:
    put = KadMessage(MessageType.PUT_VALUE, key=KEY, record=Record(KEY, b"v"))
    assert put_echoed(put, put)
    assert put_echoed(put, KadMessage(MessageType.PUT_VALUE, key=KEY, record=Record(KEY, b"v", "2024-01-01")))
    assert not put_echoed(put, KadMessage(MessageType.PUT_VALUE, key=KEY))  # no record back
    assert not put_echoed(put, KadMessage(MessageType.PUT_VALUE, key=KEY, record=Record(KEY, b"w")))
    assert not put_echoed(put, None)


def test_other_requests_need_no_echo() -> None:
    add = KadMessage(MessageType.ADD_PROVIDER, key=b"k", provider_peers=(KadPeer(ME, (PUB,)),))
    assert put_echoed(add, None)
    ping = KadMessage(MessageType.PING)
    assert put_echoed(ping, ping)
