"""Peer ids: derivation, text forms, validation."""

from __future__ import annotations

import base64
import copy
import hashlib
import pickle

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, GutsError, InputError, RemoteProtocolError
from guts.peer import InvalidPeerId, InvalidPeerIdBytes, InvalidPeerIdText, PeerId

SEED_1 = bytes(31) + b"\x01"
PEER_1 = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"
HASHED = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
HASHED_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"


def test_public_surface() -> None:
    import guts.peer

    assert sorted(guts.peer.__all__) == ["InvalidPeerId", "InvalidPeerIdBytes", "InvalidPeerIdText", "PeerId"]


def test_seed_vector() -> None:
    pid = PeerId.from_public_key(KeyPair.from_seed(SEED_1).public_key)
    assert str(pid) == PEER_1
    assert repr(pid) == f"PeerId('{PEER_1}')"
    assert pid.multihash[:2] == b"\x00\x24"  # identity, 36 bytes


def test_identity_multihash_inlines_the_key() -> None:
    pair = KeyPair.generate()
    pid = pair.peer_id
    assert pid.multihash == b"\x00\x24" + pair.public_key.to_protobuf()
    assert PublicKey.from_peer_id(pid) == pair.public_key
    assert pid.matches(pair.public_key)
    assert not pid.matches(KeyPair.generate().public_key)


def test_text_round_trips() -> None:
    pid = KeyPair.generate().peer_id
    assert PeerId.from_string(str(pid)) == pid
    assert PeerId.from_string(pid.to_cid()) == pid
    assert PeerId.from_bytes(pid.to_bytes()) == pid
    assert pid.to_cid().startswith("bafz")


def test_hashed_peer_id() -> None:
    pid = PeerId.from_string(HASHED)
    assert pid.multihash[:2] == b"\x12\x20"
    assert pid.to_cid() == HASHED_CID
    assert PeerId.from_string(HASHED_CID) == pid
    assert PublicKey.from_peer_id(pid) is None
    assert not pid.matches(KeyPair.generate().public_key)


def test_cid_in_other_multibases() -> None:
    pid = KeyPair.from_seed(SEED_1).peer_id
    raw = b"\x01\x72" + pid.multihash
    assert PeerId.from_string("f" + raw.hex()) == pid
    assert PeerId.from_string("F" + raw.hex().upper()) == pid
    assert PeerId.from_string(pid.to_cid().upper()) == pid  # multibase "B": upper case
    assert PeerId.from_string("z" + base58.b58encode(raw).decode()) == pid


def test_equality_and_hashing_use_the_bytes() -> None:
    a = PeerId.from_string(PEER_1)
    b = PeerId.from_bytes(bytes(a.multihash))
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != PeerId.from_string(HASHED)
    assert a != PEER_1  # not equal to its text
    str(a)  # caching the text changes nothing
    assert a == b and hash(a) == hash(b)


def test_peer_id_is_immutable_and_picklable() -> None:
    pid = PeerId.from_string(PEER_1)
    with pytest.raises(AttributeError):
        pid.multihash = b""  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(pid)) == pid
    assert copy.deepcopy(pid) == pid
    assert str(pickle.loads(pickle.dumps(pid))) == PEER_1


def test_constructor_validates() -> None:
    with pytest.raises(InvalidPeerId):
        PeerId(b"\x12\x20" + bytes(31))


def test_large_key_would_be_hashed() -> None:
    class BigKey:
        def to_protobuf(self) -> bytes:
            return bytes(43)

    pid = PeerId.from_public_key(BigKey())  # type: ignore[arg-type]
    assert pid.multihash == b"\x12\x20" + hashlib.sha256(bytes(43)).digest()

    class SmallKey:
        def to_protobuf(self) -> bytes:
            return bytes(42)

    assert PeerId.from_public_key(SmallKey()).multihash == b"\x00\x2a" + bytes(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x12",
        b"\x12\x20" + bytes(31),  # truncated digest
        b"\x12\x20" + bytes(33),  # trailing byte
        b"\x12\x10" + bytes(16),  # short sha2-256 digest
        b"\x13\x20" + bytes(32),  # sha2-512 code: not a peer id hash
        b"\x00\x2b" + bytes(43),  # identity too long to be inlined
        b"\x80\x00\x20" + bytes(32),  # non-minimal varint
        b"\xff" * 12,  # varint too long
    ],
)
def test_invalid_bytes(data: bytes) -> None:
    with pytest.raises(InvalidPeerId) as info:
        PeerId.from_bytes(data)
    # Both a wire decoding error and a ValueError for user input.
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, GutsError)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        PEER_1 + " ",
        " " + PEER_1,
        PEER_1 + "\n",
        PEER_1[:-1] + "0",  # '0' is not in the base58 alphabet
        PEER_1[:20],
        "hello",
        "1",
        "Qm",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID
        HASHED_CID[:-1],
        "x" + HASHED_CID[1:],
        "é" + PEER_1,
        "1" * 1000,
    ],
)
def test_invalid_text(text: str) -> None:
    with pytest.raises(InvalidPeerId):
        PeerId.from_string(text)


def test_non_string_text() -> None:
    with pytest.raises(InvalidPeerId):
        PeerId.from_string(b"12D3KooW")  # type: ignore[arg-type]


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_invalid_peer_id(data: bytes) -> None:
    try:
        pid = PeerId.from_bytes(data)
    except InvalidPeerId:
        return
    assert PeerId.from_string(str(pid)) == pid
    assert PeerId.from_string(pid.to_cid()) == pid
    PublicKey.from_peer_id(pid)  # never raises


@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_invalid_peer_id(text: str) -> None:
    try:
        pid = PeerId.from_string(text)
    except InvalidPeerId:
        return
    assert PeerId.from_bytes(pid.to_bytes()) == pid


@given(st.binary(min_size=1, max_size=60))
def test_arbitrary_base32_cids_raise_only_invalid_peer_id(raw: bytes) -> None:
    text = "b" + base64.b32encode(raw).decode().lower().rstrip("=")
    try:
        pid = PeerId.from_string(text)
    except InvalidPeerId:
        return
    assert pid.to_cid() == text


def test_a_typo_is_input_not_a_peer_misbehaving() -> None:
    """Text a person typed is an InputError; bytes a peer sent are a
    DecodeError; never both, so neither is taken for the other."""
    with pytest.raises(InvalidPeerIdText) as typed:
        PeerId.from_string("12D3KooWnot-a-peer-id")
    assert isinstance(typed.value, InputError) and not isinstance(typed.value, RemoteProtocolError)
    with pytest.raises(InvalidPeerIdBytes) as sent:
        PeerId.from_bytes(b"\x13\x20" + bytes(32))
    assert isinstance(sent.value, DecodeError) and not isinstance(sent.value, InputError)
    # A CID whose multihash is malformed is still text a person typed.
    with pytest.raises(InvalidPeerIdText):
        PeerId.from_string("f0172" + "1310" + "00" * 16)


@pytest.mark.parametrize("base", ["base36", "base64", "base64url", "base58btc", "base32", "base16"])
def test_a_peer_id_as_a_cid_in_any_multibase(base: str) -> None:
    """kubo prints IPNS keys in base36 (k51...); every multibase reads."""
    from guts.cid import Cid

    pid = KeyPair.from_seed(bytes(32)).peer_id
    assert PeerId.from_string(Cid(1, 0x72, pid.to_bytes()).encode(base)) == pid
    with pytest.raises(InvalidPeerIdText, match="libp2p-key"):
        PeerId.from_string(Cid(1, 0x55, pid.to_bytes()).encode(base))
