import hashlib

import pytest

from guts.control._keys import dht_key, record_key
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
