"""Signed peer records: sealing, opening, and everything that must fail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.crypto import KeyPair
from guts.gossip._codec import PxPeer
from guts.gossip._peer_record import (
    PEER_RECORD_DOMAIN,
    PEER_RECORD_PAYLOAD_TYPE,
    InvalidPeerRecord,
    open_peer_record,
    open_px_record,
    px_peer_id,
    seal_peer_record,
)
from guts.multiaddr import Multiaddr
from guts.pb import peer_record_pb2
from guts.wire import encode_uvarint

KEY = KeyPair.from_seed(bytes(range(32)))
OTHER = KeyPair.from_seed(bytes(range(1, 33)))
ADDRS = [Multiaddr.parse("/ip4/127.0.0.1/tcp/4001"), Multiaddr.parse("/ip4/10.0.0.1/tcp/4001/ws")]


def test_round_trip() -> None:
    record = open_peer_record(seal_peer_record(KEY, 7, ADDRS))
    assert record.peer_id == KEY.peer_id and record.seq == 7 and record.addrs == tuple(ADDRS)


def test_signature_covers_domain_type_and_payload() -> None:
    envelope = peer_record_pb2.Envelope.FromString(seal_peer_record(KEY, 1, ADDRS))
    domain = PEER_RECORD_DOMAIN.encode()
    signed = (
        encode_uvarint(len(domain)) + domain
        + encode_uvarint(2) + PEER_RECORD_PAYLOAD_TYPE
        + encode_uvarint(len(envelope.payload)) + envelope.payload
    )
    assert KEY.public_key.verify(signed, envelope.signature)


def _envelope(**change: bytes) -> bytes:
    envelope = peer_record_pb2.Envelope.FromString(seal_peer_record(KEY, 1, ADDRS))
    for name, value in change.items():
        setattr(envelope, name, value)
    return envelope.SerializeToString()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_envelope(payload=b"\x0a\x00"), "signature"),
        (_envelope(signature=bytes(64)), "signature"),
        (_envelope(payload_type=b"\x03\x02"), "payload type"),
        (_envelope(public_key=OTHER.public_key.to_protobuf()), "signature"),
        (_envelope(public_key=b"\x08\x02\x12\x21" + bytes(33)), "key"),
        (b"\x0a\x05\x08", "malformed"),
        (bytes(9000), "limit"),
    ],
)
def test_refused(data: bytes, why: str) -> None:
    with pytest.raises(InvalidPeerRecord, match=why):
        open_peer_record(data)


def test_a_record_of_another_peer_is_refused() -> None:
    # OTHER signs a record that claims to be KEY's
    record = peer_record_pb2.PeerRecord(peer_id=KEY.peer_id.to_bytes(), seq=1)
    payload = record.SerializeToString()
    domain = PEER_RECORD_DOMAIN.encode()
    signed = encode_uvarint(len(domain)) + domain + b"\x02" + PEER_RECORD_PAYLOAD_TYPE + encode_uvarint(len(payload)) + payload
    envelope = peer_record_pb2.Envelope(
        public_key=OTHER.public_key.to_protobuf(), payload_type=PEER_RECORD_PAYLOAD_TYPE,
        payload=payload, signature=OTHER.sign(signed),
    )
    with pytest.raises(InvalidPeerRecord, match="another key"):
        open_peer_record(envelope.SerializeToString())


def test_unknown_addresses_are_skipped() -> None:
    record = peer_record_pb2.PeerRecord(peer_id=KEY.peer_id.to_bytes(), seq=1)
    record.addresses.add().multiaddr = ADDRS[0].to_bytes()
    record.addresses.add().multiaddr = b"\xff\xff\x03junk"
    payload = record.SerializeToString()
    domain = PEER_RECORD_DOMAIN.encode()
    signed = encode_uvarint(len(domain)) + domain + b"\x02" + PEER_RECORD_PAYLOAD_TYPE + encode_uvarint(len(payload)) + payload
    envelope = peer_record_pb2.Envelope(
        public_key=KEY.public_key.to_protobuf(), payload_type=PEER_RECORD_PAYLOAD_TYPE,
        payload=payload, signature=KEY.sign(signed),
    )
    assert open_peer_record(envelope.SerializeToString()).addrs == (ADDRS[0],)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_a_typed_error(data: bytes) -> None:
    with pytest.raises(InvalidPeerRecord):
        open_peer_record(data)


def test_px_entries() -> None:
    """A peer-exchange offer: the peer id, and a record only if it is that peer's own."""
    assert px_peer_id(PxPeer(KEY.peer_id.to_bytes())) == KEY.peer_id
    assert px_peer_id(PxPeer(b"\x00\x01")) is None
    assert open_px_record(PxPeer(KEY.peer_id.to_bytes()), KEY.peer_id) is None
    record = open_px_record(PxPeer(KEY.peer_id.to_bytes(), seal_peer_record(KEY, 3, ADDRS)), KEY.peer_id)
    assert record is not None and record.addrs == tuple(ADDRS)
    with pytest.raises(InvalidPeerRecord, match="record is"):
        open_px_record(PxPeer(OTHER.peer_id.to_bytes(), seal_peer_record(KEY, 3, ADDRS)), OTHER.peer_id)
    with pytest.raises(InvalidPeerRecord):
        open_px_record(PxPeer(KEY.peer_id.to_bytes(), b"junk"), KEY.peer_id)
