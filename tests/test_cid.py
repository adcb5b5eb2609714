"""CIDs: parsing every multibase kubo and js print, validation, and telling a
mistyped CID from an ordinary name."""

from __future__ import annotations

import base64
import hashlib

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guts.cid import CODECS, HASHES, MULTIBASES, Cid, InvalidCid, recognize_cid
from guts.errors import GutsError

# sha2-256 of b"hello world", and the CIDs of that content as js multiformats
# 14.0.5 writes them (interop/peer.mjs `cid`, data_hex of b"hello world").
HELLO = "1220" + hashlib.sha256(b"hello world").hexdigest()
RAW = {
    "base16": "f01551220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
    "base16upper": "F01551220B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9",
    "base32": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
    "base32pad": "cafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e======",
    "base32padupper": "CAFKREIFZJUT3TE2NHYEKKLSS27NH3K72YSCO7Y32KOAO5EEI66WOF36N5E======",
    "base32upper": "BAFKREIFZJUT3TE2NHYEKKLSS27NH3K72YSCO7Y32KOAO5EEI66WOF36N5E",
    "base36": "k2cwued9o1pvrt3q271rrqbo49x30tbxwpoeaq75z14e5ui2rzygpbe1",
    "base36upper": "K2CWUED9O1PVRT3Q271RRQBO49X30TBXWPOEAQ75Z14E5UI2RZYGPBE1",
    "base58btc": "zb2rhj7crUKTQYRGCRATFaQ6YFLTde2YzdqbbhAASkL9uRDXn",
    "base64": "mAVUSILlNJ7mTTT4IpS5S19p9q/rEhO/jelOA7pCI96zi783p",
    "base64pad": "MAVUSILlNJ7mTTT4IpS5S19p9q/rEhO/jelOA7pCI96zi783p",
    "base64url": "uAVUSILlNJ7mTTT4IpS5S19p9q_rEhO_jelOA7pCI96zi783p",
    "base64urlpad": "UAVUSILlNJ7mTTT4IpS5S19p9q_rEhO_jelOA7pCI96zi783p",
}
DAG_PB_V0 = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"
DAG_PB_V1 = "bafybeifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
# The pair the IPFS documentation uses to show one content's two CIDs.
DOCS_V0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
DOCS_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def test_public_surface() -> None:
    import guts.cid

    assert sorted(guts.cid.__all__) == ["CODECS", "Cid", "HASHES", "InvalidCid", "MULTIBASES", "recognize_cid"]


@pytest.mark.parametrize("base", sorted(RAW))
def test_every_base_js_writes(base: str) -> None:
    cid = Cid.parse(RAW[base])
    assert (cid.version, cid.codec, cid.multihash.hex()) == (1, 0x55, HELLO)
    assert cid.encode(base) == RAW[base]
    assert (cid.codec_name, cid.hash_name) == ("raw", "sha2-256")
    assert str(cid) == RAW["base32"]


def test_version_0_and_its_version_1() -> None:
    v0, v1 = Cid.parse(DAG_PB_V0), Cid.parse(DAG_PB_V1)
    assert (v0.version, v0.codec, v0.multihash.hex()) == (0, 0x70, HELLO)
    assert (v1.version, v1.codec, v1.multihash) == (1, 0x70, v0.multihash)
    assert str(v0) == DAG_PB_V0 and v0.encode("base36") == DAG_PB_V0  # a v0 has one text form
    assert v0.to_bytes() == bytes.fromhex(HELLO)
    assert v1.to_bytes() == bytes.fromhex("0170" + HELLO)
    assert Cid.decode(v0.to_bytes()) == v0 and Cid.decode(v1.to_bytes()) == v1
    assert Cid.parse(DOCS_V0).multihash == Cid.parse(DOCS_V1).multihash


def test_identity_cids_and_other_hashes() -> None:
    empty = Cid.parse("bafkqaaa")  # raw, identity multihash of no bytes
    assert (empty.codec, empty.multihash, empty.hash_name) == (0x55, b"\x00\x00", "identity")
    inline = Cid(1, 0x55, b"\x00\x05hello")
    assert Cid.parse(str(inline)) == inline
    blake = Cid(1, 0x71, bytes.fromhex("a0e40220") + bytes(32))  # blake2b-256, dag-cbor
    assert Cid.parse(blake.encode("base58btc")) == blake and blake.hash_name == "blake2b-256"
    unknown = Cid(1, 0x300001, b"\x99\x03\x04" + bytes(4))  # codes nobody registered, lengths right
    assert Cid.parse(unknown.encode("base16")) == unknown and unknown.codec_name == "codec 0x300001"


@given(
    st.sampled_from(sorted(CODECS)),
    st.sampled_from(sorted(c for c, (_, size) in HASHES.items() if size)),
    st.randoms(use_true_random=False),
    st.sampled_from(sorted(MULTIBASES.values())),
)
def test_round_trip(codec: int, code: int, rnd: object, base: str) -> None:
    import random

    assert isinstance(rnd, random.Random)
    size = HASHES[code][1]
    assert size is not None
    digest = bytes(rnd.choice((0, 0, rnd.randrange(256))) for _ in range(size))  # zeros test leading-zero digits
    varint = bytearray()
    value = code
    while value >= 0x80:
        varint.append(value & 0x7F | 0x80)
        value >>= 7
    varint.append(value)
    cid = Cid(1, codec, bytes(varint) + bytes([size]) + digest)
    text = cid.encode(base)
    assert Cid.parse(text) == cid
    assert recognize_cid(text) == cid


@given(st.binary(max_size=40))
def test_base58_agrees_with_the_base58_package(data: bytes) -> None:
    from guts.cid import _BASES, _bignum_decode, _bignum_encode

    expected = base58.b58encode(data).decode()
    assert _bignum_encode(data, _BASES["z"]) == expected
    assert _bignum_decode(expected, _BASES["z"]) == data


BROKEN = {
    "truncated base32": RAW["base32"][:-1],
    "truncated by a whole block": RAW["base32"][:-8],
    "a character too many": RAW["base32"] + "a",
    "a digit base32 lacks": RAW["base32"][:-1] + "8",
    "non-canonical trailing bits": RAW["base32"][:-1] + "f",
    "truncated base58": RAW["base58btc"][:-1],
    "truncated base36": RAW["base36"][:-1],
    "truncated base64": RAW["base64"][:-2],
    "bad base64 padding": RAW["base64pad"] + "==",
    "base16 odd length": RAW["base16"][:-1],
    "v0 too short": DAG_PB_V0[:-1],
    "v0 with a 0": DAG_PB_V0[:-1] + "0",
    "v0 behind a multibase prefix": "z" + DAG_PB_V0,
    "digest shorter than sha2-256": "b"
    + base64.b32encode(bytes.fromhex("01551220") + bytes(31)).decode().lower().rstrip("="),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_broken_cids_are_refused(what: str) -> None:
    text = BROKEN[what]
    with pytest.raises(InvalidCid) as info:
        Cid.parse(text)
    assert "is not a CID" in str(info.value)
    with pytest.raises(InvalidCid) as info:
        recognize_cid(text)
    assert "looks like a CID but is not one" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GutsError)


def test_more_than_typos_is_a_name() -> None:
    # More than two characters outside the base's alphabet: not a CID mistyped.
    text = "b" + RAW["base32"][1:].upper()
    with pytest.raises(InvalidCid):
        Cid.parse(text)
    assert recognize_cid(text) is None


def test_errors_say_what_is_wrong() -> None:
    def why(text: str) -> str:
        with pytest.raises(InvalidCid) as info:
            recognize_cid(text)
        return str(info.value)

    assert "'8' is not a base32 character" in why(RAW["base32"][:-1] + "8")
    assert "46 characters, not 45" in why(DAG_PB_V0[:-1])
    assert "wrong length" in why(RAW["base58btc"][:-1])
    assert "without a multibase prefix" in why("z" + DAG_PB_V0)
    assert "sha2-256 digest is 32 bytes, but 33 follow" in why(RAW["base16"] + "00")
    assert len(why("b" + "afkreia" * 70)) < 300  # the text is cut short in the message


def test_invalid_parts() -> None:
    sha = bytes.fromhex(HELLO)
    for bad in (
        lambda: Cid(2, 0x55, sha),
        lambda: Cid(0, 0x55, sha),  # a v0 is dag-pb
        lambda: Cid(0, 0x70, b"\x13\x40" + bytes(64)),  # and sha2-256
        lambda: Cid(1, 0x55, b"\x12\x20" + bytes(31)),
        lambda: Cid(1, 0x55, b"\x12\x1f" + bytes(31)),  # sha2-256 is 32 bytes
        lambda: Cid(1, 0x55, b"\x00\x81\x01" + bytes(129)),  # longer than MAX_DIGEST
        lambda: Cid(1, 0x55, b"\x12\xa0\x00" + bytes(32)),  # non-minimal varint
        lambda: Cid.decode(b""),
        lambda: Cid.decode(b"\x00\x55" + sha),
        lambda: Cid.decode(b"\x03\x55" + sha),
        lambda: Cid.decode(b"\x01" + b"\xff" * 10),
    ):
        with pytest.raises(InvalidCid):
            bad()
    with pytest.raises(ValueError):
        Cid.parse(DAG_PB_V1).encode("base2")


NAMES = [
    "guts/my-repo",
    "bagel",
    "baffle",
    "bafkrei",
    "foo",
    "f0123",
    "zebra",
    "kitten",
    "my-org/some-very-long-repository-name",
    "banana-split-and-other-desserts",
    "user/repo",
    "Quite a long name with spaces in it",
    "QmHello world",
    "12D3KooWnotapeer",
    "rad:z3gqcJUoA1n9HaHKufZs5FCSGazv5",
    "z3gqcJUoA1n9HaHKufZs5FCSGazv5",
    "3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e4b6d8f0a",
    "élan",
    "",
]


@pytest.mark.parametrize("name", NAMES)
def test_names_are_no_cids(name: str) -> None:
    assert recognize_cid(name) is None


def test_inputs_are_bounded() -> None:
    long = "z" + "2" * 100_000
    assert recognize_cid(long) is None
    with pytest.raises(InvalidCid, match="longer than 512"):
        Cid.parse(long)
