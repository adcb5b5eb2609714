"""Keys and peer ids against the libp2p spec's vectors and js-libp2p's output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from guts.crypto import KeyPair, PublicKey, UnsupportedKeyType
from guts.peer import PeerId

VECTORS = json.loads((Path(__file__).parent / "vectors" / "peer_ids.json").read_text())


@pytest.mark.parametrize("case", VECTORS["ed25519"], ids=lambda c: c["peer_id"])
def test_ed25519_identity(case: dict[str, Any]) -> None:
    private = bytes.fromhex(case["private_key_protobuf"])
    public = bytes.fromhex(case["public_key_protobuf"])
    pair = KeyPair.from_seed(bytes.fromhex(case["seed"]))
    assert pair.to_protobuf() == private
    assert KeyPair.from_protobuf(private) == pair
    assert pair.public_key.to_protobuf() == public
    assert PublicKey.from_protobuf(public) == pair.public_key
    pid = pair.peer_id
    assert str(pid) == case["peer_id"]
    assert pid.to_cid() == case["cid"]
    assert pid.to_bytes().hex() == case["multihash"]
    assert PeerId.from_string(case["peer_id"]) == pid
    assert PeerId.from_string(case["cid"]) == pid
    assert PublicKey.from_peer_id(PeerId.from_string(case["peer_id"])) == pair.public_key


@pytest.mark.parametrize("case", VECTORS["unsupported"], ids=lambda c: c["type"])
def test_other_key_types(case: dict[str, Any]) -> None:
    public = bytes.fromhex(case["public_key_protobuf"])
    # Guts refuses such identities...
    with pytest.raises(UnsupportedKeyType, match=case["type"]):
        PublicKey.from_protobuf(public)
    # ...but their peer ids are ordinary peer ids.
    pid = PeerId.from_string(case["peer_id"])
    assert pid.to_bytes().hex() == case["multihash"]
    assert pid.to_cid() == case["cid"]
    assert PeerId.from_string(case["cid"]) == pid
    assert str(pid) == case["peer_id"]
    assert PublicKey.from_peer_id(pid) is None
    if len(public) <= 42:
        assert pid.multihash == bytes((0, len(public))) + public
    else:
        assert pid.multihash == b"\x12\x20" + hashlib.sha256(public).digest()


@pytest.mark.parametrize("case", VECTORS["text_forms"], ids=lambda c: c["base58"])
def test_text_forms(case: dict[str, Any]) -> None:
    pid = PeerId.from_string(case["base58"])
    assert PeerId.from_string(case["cid"]) == pid
    assert pid.to_bytes().hex() == case["multihash"]
    assert str(pid) == case["base58"]
    assert pid.to_cid() == case["cid"]


@pytest.mark.parametrize("text", VECTORS["invalid_text"])
def test_invalid_text(text: str) -> None:
    with pytest.raises(ValueError):
        PeerId.from_string(text)
