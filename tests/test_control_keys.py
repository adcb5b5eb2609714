import hashlib

import pytest

from guts.cid import Cid
from guts.control.keys import dht_key, read_dht_key, record_key
from guts.crypto import KeyPair


def test_peer_id_is_its_own_key() -> None:
    peer = KeyPair.from_seed(bytes(31) + b"\x01").peer_id
    assert dht_key(str(peer)) == peer.to_bytes()
    assert dht_key(peer.to_cid()) == peer.to_bytes()


def test_a_name_is_its_sha256_multihash() -> None:
    assert dht_key("guts/repo") == b"\x12\x20" + hashlib.sha256(b"guts/repo").digest()
    assert dht_key("12D3KooWnotapeer") != dht_key("12D3KooWnotapeer2")


def test_record_keys() -> None:
    assert record_key("hello") == b"/guts/hello"
    assert record_key("/pk/abc") == b"/pk/abc"
    for bad in ("", "/", "//x", "/nons", "x" * 1025):
        with pytest.raises(ValueError):
            record_key(bad)
    with pytest.raises(ValueError):
        dht_key("")


# The CIDs of b"hello world" as js multiformats writes them (tests/test_cid.py).
HELLO = b"\x12\x20" + hashlib.sha256(b"hello world").digest()


@pytest.mark.parametrize(
    "cid",
    [
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",  # v1 raw, base32
        "bafybeifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",  # v1 dag-pb
        "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4",  # v0
        "zb2rhj7crUKTQYRGCRATFaQ6YFLTde2YzdqbbhAASkL9uRDXn",
        "k2cwued9o1pvrt3q271rrqbo49x30tbxwpoeaq75z14e5ui2rzygpbe1",
        "f01551220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        "mAVUSILlNJ7mTTT4IpS5S19p9q/rEhO/jelOA7pCI96zi783p",
        "uAVUSILlNJ7mTTT4IpS5S19p9q_rEhO_jelOA7pCI96zi783p",
    ],
)
def test_a_cid_is_its_multihash(cid: str) -> None:
    assert dht_key(cid) == HELLO
    assert dht_key(cid) != b"\x12\x20" + hashlib.sha256(cid.encode()).digest()


def test_how_a_key_was_read() -> None:
    assert read_dht_key("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").kind == "CID v1 raw sha2-256"
    assert read_dht_key("QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4").kind == "peer id or CID v0"
    assert read_dht_key("guts/repo").kind == "name"
    peer = KeyPair.from_seed(bytes(31) + b"\x01").peer_id
    assert read_dht_key(str(peer)).peer == peer and read_dht_key(str(peer)).kind == "peer id"


def test_a_peer_id_written_as_a_cid_stays_a_peer_id() -> None:
    peer = KeyPair.from_seed(bytes(31) + b"\x01").peer_id
    as_cid = Cid(1, 0x72, peer.to_bytes())
    for text in (peer.to_cid(), as_cid.encode("base36"), as_cid.encode("base58btc"), as_cid.encode("base64url")):
        key = read_dht_key(text)
        assert key.key == peer.to_bytes() and key.peer == peer and key.kind == "peer id"
    assert as_cid.encode("base36").startswith("k51")  # the IPNS name form
    not_a_peer = Cid(1, 0x72, b"\x13\x40" + bytes(64)).encode("base36")  # sha2-512
    with pytest.raises(ValueError, match="libp2p-key CID but holds no peer id"):
        dht_key(not_a_peer)


def test_a_mistyped_cid_is_refused_and_a_name_is_hashed() -> None:
    for typo in (
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5",  # a character lost
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e8",
        "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L",
    ):
        with pytest.raises(ValueError, match="looks like a CID but is not one"):
            dht_key(typo)
    for name in ("bagel", "my-org/my-repo", "zebra", "bafkrei", "f0123"):
        assert dht_key(name) == b"\x12\x20" + hashlib.sha256(name.encode()).digest()
