"""StrictSign signatures and message ids, as js-libp2p computes them."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from guts.crypto import KeyPair
from guts.gossip._codec import RawMessage, decode_rpc, encode_rpc, RPC
from guts.gossip._signing import (
    SIGN_PREFIX,
    AuthorCache,
    InvalidMessage,
    Rejection,
    SignaturePolicy,
    anonymous_message,
    check_author,
    default_message_id,
    hash_message_id,
    sign_message,
    verify_signature,
)
from guts.peer import PeerId

KEY = KeyPair.from_seed(bytes(range(32)))
OTHER = KeyPair.from_seed(bytes(range(1, 33)))


def signed(data: bytes = b"hello", seqno: int = 0x0102030405060708) -> RawMessage:
    return sign_message(KEY, "topic", data, seqno)


def test_fields_of_a_signed_message() -> None:
    msg = signed()
    assert msg.from_peer == KEY.peer_id.to_bytes()
    assert msg.seqno == bytes.fromhex("0102030405060708")
    assert msg.key == KEY.public_key.to_protobuf()
    assert len(msg.signature or b"") == 64


def test_signature_covers_prefix_and_message_without_signature_and_key() -> None:
    msg = signed()
    from_peer = KEY.peer_id.to_bytes()
    expected = (
        SIGN_PREFIX
        + b"\x0a" + bytes([len(from_peer)]) + from_peer
        + b"\x12\x05hello"
        + b"\x1a\x08" + bytes.fromhex("0102030405060708")
        + b"\x22\x05topic"
    )
    assert KEY.public_key.verify(expected, msg.signature or b"")
    assert verify_signature(msg, KEY.public_key)


def test_signature_survives_the_wire() -> None:
    msg = decode_rpc(encode_rpc(RPC(messages=(signed(),)))).messages[0]
    author = check_author(msg, SignaturePolicy.STRICT_SIGN)
    assert author is not None and author.peer_id == KEY.peer_id
    assert verify_signature(msg, author.public_key)


@pytest.mark.parametrize("change", [{"data": b"hellO"}, {"topic": "other"}, {"seqno": b"\x00" * 8}])
def test_tampering_breaks_the_signature(change: dict) -> None:
    msg = dataclasses.replace(signed(), wire=b"", **change)
    assert not verify_signature(msg, KEY.public_key)


def test_message_id_is_key_protobuf_then_seqno() -> None:
    msg = signed()
    msg_id = default_message_id(msg)
    assert msg_id == KEY.public_key.to_protobuf() + bytes.fromhex("0102030405060708")
    assert len(msg_id) == 44
    # not the peer id (two more bytes of multihash prefix) + seqno
    assert msg_id != KEY.peer_id.to_bytes() + msg.seqno
    # the same id whether the key comes inlined in `from` or in `key`
    assert default_message_id(dataclasses.replace(msg, wire=b"", key=None)) == msg_id
    assert default_message_id(dataclasses.replace(msg, wire=b"", from_peer=None)) == msg_id


def test_hash_message_id() -> None:
    msg = anonymous_message("t", b"abc")
    assert hash_message_id(msg) == hashlib.sha256(b"abc").digest()
    assert check_author(msg, SignaturePolicy.STRICT_NO_SIGN) is None


def _sha256_peer_id() -> bytes:
    return b"\x12\x20" + bytes(32)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"seqno": None}, Rejection.MISSING_SEQNO),
        ({"seqno": b"\x01" * 7}, Rejection.BAD_SEQNO),
        ({"signature": None}, Rejection.MISSING_SIGNATURE),
        ({"from_peer": None}, Rejection.MISSING_FROM),
        ({"from_peer": b"\x99\x01\x00"}, Rejection.BAD_FROM),
        ({"key": OTHER.public_key.to_protobuf()}, Rejection.KEY_MISMATCH),
        ({"key": b"\x08\x01\x12\x03abc"}, Rejection.BAD_KEY),
        ({"key": None, "from_peer": _sha256_peer_id()}, Rejection.NO_KEY),
        ({"key": b"\x08\x02\x12\x21" + bytes(33)}, Rejection.UNSUPPORTED_KEY),  # secp256k1
        ({"key": None, "from_peer": b"\x00\x25\x08\x02\x12\x21" + bytes(33)}, Rejection.UNSUPPORTED_KEY),
    ],
)
def test_strict_sign_rejections(change: dict, reason: Rejection) -> None:
    msg = dataclasses.replace(signed(), wire=b"", **change)
    with pytest.raises(InvalidMessage) as info:
        check_author(msg, SignaturePolicy.STRICT_SIGN)
    assert info.value.reason is reason


def test_strict_no_sign_refuses_signed_fields() -> None:
    with pytest.raises(InvalidMessage) as info:
        check_author(signed(), SignaturePolicy.STRICT_NO_SIGN)
    assert info.value.reason is Rejection.UNEXPECTED_FIELDS


def test_key_matching_author_is_accepted_without_inlining() -> None:
    msg = dataclasses.replace(signed(), wire=b"", key=None)
    author = check_author(msg, SignaturePolicy.STRICT_SIGN)
    assert author is not None and author.public_key == KEY.public_key
    assert PeerId.from_bytes(msg.from_peer or b"") == KEY.peer_id


def test_author_cache_remembers_authors_and_rejections() -> None:
    cache = AuthorCache(size=2)
    msg = signed()
    first = check_author(msg, SignaturePolicy.STRICT_SIGN, cache)
    assert check_author(msg, SignaturePolicy.STRICT_SIGN, cache) is first
    bad = dataclasses.replace(msg, wire=b"", key=OTHER.public_key.to_protobuf())
    for _ in range(2):  # the second time from the cache
        with pytest.raises(InvalidMessage) as info:
            check_author(bad, SignaturePolicy.STRICT_SIGN, cache)
        assert info.value.reason is Rejection.KEY_MISMATCH
    # bounded: a third author starts the cache afresh
    check_author(sign_message(OTHER, "t", b"x", 1), SignaturePolicy.STRICT_SIGN, cache)
    assert len(cache._known) == 1
    # per-message checks still run for a cached author
    with pytest.raises(InvalidMessage):
        check_author(dataclasses.replace(msg, wire=b"", seqno=b"\x01"), SignaturePolicy.STRICT_SIGN, cache)
