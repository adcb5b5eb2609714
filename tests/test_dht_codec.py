"""The kad-dht codec: round trips, the spec's field numbers, bounds, and
arbitrary bytes giving a typed error."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.dht._codec import (
    ConnectionType,
    KadMessage,
    KadPeer,
    Limits,
    MessageType,
    Record,
    decode_message,
    decode_record,
    encode_message,
    encode_record,
    format_time_received,
)
from guts.errors import DecodeError
from guts.multiaddr import Multiaddr
from guts.pb import dht_pb2

from .dht_helpers import peer

A1 = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")
A2 = Multiaddr.parse("/ip6/::1/tcp/4002/ws")


def test_round_trip_every_field() -> None:
    msg = KadMessage(
        type=MessageType.GET_PROVIDERS,
        key=b"\x12\x20" + bytes(32),
        record=Record(b"/guts/x", b"value", "2024-01-02T03:04:05.000000006Z"),
        closer_peers=(KadPeer(peer(1), (A1, A2), ConnectionType.CONNECTED),),
        provider_peers=(KadPeer(peer(2), (A1,)), KadPeer(peer(3))),
        cluster_level=3,
    )
    assert decode_message(encode_message(msg)) == msg


def test_spec_field_numbers() -> None:
    # type = 1, key = 2, record = 3 (key 1, value 2, timeReceived 5),
    # closerPeers = 8 (id 1, addrs 2, connection 3), providerPeers = 9,
    # clusterLevelRaw = 10 (libp2p/specs kad-dht "RPC messages").
    p = peer(1)
    raw = encode_message(
        KadMessage(
            MessageType.FIND_NODE,
            key=b"k",
            record=Record(b"a", b"b", "t"),
            closer_peers=(KadPeer(p, (A1,), ConnectionType.CAN_CONNECT),),
            cluster_level=1,
        )
    )
    pid = p.to_bytes()
    addr = A1.to_bytes()
    peer_body = b"\x0a" + bytes([len(pid)]) + pid + b"\x12" + bytes([len(addr)]) + addr + b"\x18\x02"
    expected = (
        b"\x08\x04"
        + b"\x12\x01k"
        + b"\x1a\x09" + b"\x0a\x01a\x12\x01b\x2a\x01t"
        + b"\x42" + bytes([len(peer_body)]) + peer_body
        + b"\x50\x01"
    )
    assert raw == expected


def test_record_round_trip_and_time_format() -> None:
    rec = Record(b"/pk/x", b"\x01\x02", format_time_received(1_700_000_000.5))
    assert rec.time_received == "2023-11-14T22:13:20.500000000Z"
    assert decode_record(encode_record(rec)) == rec


def test_unknown_message_type() -> None:
    pb = dht_pb2.Message()
    pb.type = 9  # type: ignore[assignment]
    with pytest.raises(DecodeError, match="unknown DHT message type"):
        decode_message(pb.SerializeToString())


def test_thousands_of_closer_peers_refused() -> None:
    msg = KadMessage(MessageType.FIND_NODE, closer_peers=tuple(KadPeer(peer(i % 5)) for i in range(2000)))
    data = encode_message(msg)
    with pytest.raises(DecodeError, match="2000 closer peers"):
        decode_message(data, Limits(max_message=1 << 20))


def test_oversized_message_and_record() -> None:
    with pytest.raises(DecodeError, match="limit"):
        decode_message(b"\x08\x01" + b"\x12\x00" * 40_000)
    big = encode_message(KadMessage(MessageType.PUT_VALUE, key=b"/guts/a", record=Record(b"/guts/a", bytes(20_000))))
    with pytest.raises(DecodeError, match="record value of 20000 bytes"):
        decode_message(big)
    with pytest.raises(DecodeError, match="key of 2000 bytes"):
        decode_message(encode_message(KadMessage(MessageType.GET_VALUE, key=bytes(2000))))


def test_invalid_peer_id_refused() -> None:
    pb = dht_pb2.Message()
    pb.type = 4  # type: ignore[assignment]
    pb.closerPeers.add().id = b"\x99\x01\x00"
    with pytest.raises(DecodeError):
        decode_message(pb.SerializeToString())


def test_invalid_and_excess_addrs_are_skipped_and_counted() -> None:
    pb = dht_pb2.Message()
    pb.type = 4  # type: ignore[assignment]
    entry = pb.closerPeers.add()
    entry.id = peer(1).to_bytes()
    entry.addrs.extend([b"\xff\xff\xff\xff", b"", A1.to_bytes(), A1.to_bytes()])
    entry.addrs.extend(Multiaddr.parse(f"/ip4/10.0.0.1/tcp/{p}").to_bytes() for p in range(1, 40))
    msg = decode_message(pb.SerializeToString())
    (got,) = msg.closer_peers
    assert got.addrs[0] == A1
    assert len(got.addrs) == Limits().max_addrs
    assert msg.skipped_addrs == 2 + (40 - Limits().max_addrs)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_typed_error(data: bytes) -> None:
    try:
        decode_message(data)
    except DecodeError:
        pass
    try:
        decode_record(data)
    except DecodeError:
        pass


_peers = st.builds(
    KadPeer,
    st.integers(0, 20).map(peer),
    st.lists(st.sampled_from([A1, A2]), max_size=2, unique=True).map(tuple),
    st.sampled_from(list(ConnectionType)),
)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(list(MessageType)),
    st.binary(max_size=64),
    st.none() | st.builds(Record, st.binary(max_size=32), st.binary(max_size=64), st.text(max_size=30)),
    st.lists(_peers, max_size=5).map(tuple),
    st.lists(_peers, max_size=5).map(tuple),
)
def test_round_trip_property(kind, key, record, closer, providers) -> None:  # type: ignore[no-untyped-def]
    msg = KadMessage(kind, key=key, record=record, closer_peers=closer, provider_peers=providers)
    assert decode_message(encode_message(msg)) == msg
