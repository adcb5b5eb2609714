"""Repository identities and signed ref statements against fixed vectors.

Each vector is rebuilt from its inputs with the code and compared byte for
byte, and checked a second way without it: hashes with :mod:`hashlib`, the
RID's base32 with :mod:`base64`, peer ids with :mod:`base58`, signatures
with ``cryptography``'s Ed25519. So the vectors pin the format, not
whatever the code happens to write.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from guts.crypto import KeyPair, PublicKey
from guts.errors import InvalidIdentity, InvalidRefs
from guts.pb import repo_pb2
from guts.repo.identity import Identity, SignedRevision, create_genesis, sign_revision, signing_payload
from guts.repo.revisions import propose_revision, verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, sign_statement

VECTORS = Path(__file__).parent / "vectors"
IDENTITY = json.loads((VECTORS / "repo_identity.json").read_text(encoding="utf-8"))
SIGREFS = json.loads((VECTORS / "repo_sigrefs.json").read_text(encoding="utf-8"))
KEYS = [KeyPair.from_seed(bytes.fromhex(k["seed"])) for k in IDENTITY["keys"]]
RID = Rid.parse(IDENTITY["rid"])


def ed25519_verify(key: KeyPair, signature: str, payload: bytes) -> None:
    """Raises InvalidSignature unless ``signature`` is valid (cryptography, not libsodium)."""
    Ed25519PublicKey.from_public_bytes(key.public_key.raw).verify(bytes.fromhex(signature), payload)


def test_keys() -> None:
    for key, entry in zip(KEYS, IDENTITY["keys"]):
        assert key.public_key.to_protobuf().hex() == entry["public_key_protobuf"]
        encoded = bytes.fromhex(entry["public_key_protobuf"])
        assert base58.b58encode(b"\x00" + bytes([len(encoded)]) + encoded).decode() == entry["peer_id"]
        assert str(key.peer_id) == entry["peer_id"]


def _document(fields: dict[str, Any]) -> Identity:
    return Identity(
        name=fields["name"],
        description=fields["description"],
        default_branch=fields["default_branch"],
        delegates=tuple(KEYS[i].public_key for i in fields["delegates"]),
        threshold=fields["threshold"],
        parent=bytes.fromhex(fields["parent"]),
        nonce=bytes.fromhex(fields["nonce"]),
    )


def test_documents_and_rid() -> None:
    chain = IDENTITY["chain"]
    genesis = bytes.fromhex(chain[0]["document"])
    # The RID, independently: sha2-256 multihash, CIDv1 raw, base32 lower, no padding.
    multihash = b"\x12\x20" + hashlib.sha256(genesis).digest()
    assert multihash.hex() == IDENTITY["rid_multihash"]
    text = "b" + base64.b32encode(b"\x01\x55" + multihash).decode().lower().rstrip("=")
    assert text == IDENTITY["rid"] and text.startswith("bafkrei")
    assert RID.multihash == multihash and str(RID) == text
    assert RID.git_url == IDENTITY["git_url"] == "guts://" + text
    for entry in chain:
        raw = bytes.fromhex(entry["document"])
        document = _document(entry["fields"])
        assert document.raw == raw  # our encoder writes exactly these bytes
        assert Identity.decode(raw) == document
        assert entry["multihash"] == "1220" + hashlib.sha256(raw).hexdigest()
        # ... and the protobuf runtime reads the fields back from them.
        msg = repo_pb2.Identity()
        msg.ParseFromString(raw)
        assert (msg.version, msg.name, msg.description, msg.default_branch, msg.threshold) == (
            1, entry["fields"]["name"], entry["fields"]["description"], entry["fields"]["default_branch"],
            entry["fields"]["threshold"],
        )
        assert [bytes(d) for d in msg.delegates] == [KEYS[i].public_key.to_protobuf() for i in entry["fields"]["delegates"]]
        assert msg.parent.hex() == entry["fields"]["parent"] and msg.nonce.hex() == entry["fields"]["nonce"]
        # Exactly one of parent and nonce: the genesis has a 16-byte nonce, later revisions a parent.
        if entry is chain[0]:
            assert len(msg.nonce) == 16 and msg.parent == b""
        else:
            assert msg.nonce == b"" and len(msg.parent) == 34
    for previous, entry in zip(chain, chain[1:]):
        assert entry["fields"]["parent"] == previous["multihash"]
    # The nonce is the last field of the genesis (8, length-delimited, 16 bytes), and it is in the RID.
    nonce = bytes.fromhex(chain[0]["fields"]["nonce"])
    assert nonce == bytes(range(16)) and genesis.endswith(b"\x42\x10" + nonce)
    assert hashlib.sha256(genesis[:-18]).digest() != multihash[2:]


def test_signatures_and_chain() -> None:
    revisions = []
    for entry in IDENTITY["chain"]:
        raw = bytes.fromhex(entry["document"])
        payload = bytes.fromhex(entry["signing_payload"])
        assert payload == b"guts identity v1\n" + RID.multihash + raw
        document = Identity.decode(raw)
        assert signing_payload(RID, document) == payload
        revision = SignedRevision(document)
        for signature in entry["signatures"]:
            key = KEYS[signature["key"]]
            ed25519_verify(key, signature["signature"], payload)
            revision = sign_revision(revision, key, RID)
            assert revision.signatures[-1].signature.hex() == signature["signature"]
        assert revision.encode().hex() == entry["signed_revision"]
        assert SignedRevision.decode(bytes.fromhex(entry["signed_revision"])) == revision
        revisions.append(revision)
    head = verify_chain(RID, revisions)
    expected = IDENTITY["head"]
    assert head.length == expected["length"] and head.threshold == expected["threshold"]
    assert head.delegates == tuple(KEYS[i].public_key for i in expected["delegates"])
    assert head.current.digest.hex() == expected["digest"]


def test_chain_rebuilt_with_the_helpers() -> None:
    chain = IDENTITY["chain"]
    first = chain[0]["fields"]
    genesis = create_genesis(
        KEYS[0],
        name=first["name"],
        nonce=bytes.fromhex(first["nonce"]),
        description=first["description"],
        default_branch=first["default_branch"],
        delegates=[KEYS[i].public_key for i in first["delegates"]],
        threshold=first["threshold"],
    )
    assert genesis.encode().hex() == chain[0]["signed_revision"]
    head = verify_chain(RID, [genesis])
    revisions = [genesis]
    for entry in chain[1:]:
        fields = entry["fields"]
        revision = propose_revision(
            head,
            description=fields["description"],
            default_branch=fields["default_branch"],
            delegates=[KEYS[i].public_key for i in fields["delegates"]],
            threshold=fields["threshold"],
        )
        for signature in entry["signatures"]:
            revision = sign_revision(revision, KEYS[signature["key"]], RID)
        assert revision.encode().hex() == entry["signed_revision"]
        revisions.append(revision)
        head = verify_chain(RID, revisions)


@pytest.mark.parametrize("case", IDENTITY["invalid_documents"], ids=lambda c: c["why"])
def test_invalid_documents(case: dict[str, str]) -> None:
    with pytest.raises(InvalidIdentity):
        Identity.decode(bytes.fromhex(case["document"]))


@pytest.mark.parametrize("case", SIGREFS["statements"], ids=lambda c: c["id"][:12])
def test_statements(case: dict[str, Any]) -> None:
    assert SIGREFS["rid"] == IDENTITY["rid"]
    key = KEYS[case["signer_key"]]
    text = case["statement"].encode("utf-8")
    # Independently: the header, the refs sorted by UTF-8 bytes, the id, the signature.
    parent = case["parent"] or "none"
    header = (
        f"guts signed refs 1\nrid {IDENTITY['rid']}\nsigner {IDENTITY['keys'][case['signer_key']]['peer_id']}\n"
        f"seq {case['seq']}\nparent {parent}\nidentity {case['identity']}\n"
    )
    refs = sorted(case["refs"], key=lambda ref: ref[0].encode("utf-8"))
    assert text == (header + "".join(f"{oid} {name}\n" for name, oid in refs)).encode()
    assert hashlib.sha256(text).hexdigest() == case["id"]
    ed25519_verify(key, case["signature"], text)
    envelope = repo_pb2.SignedRefs()
    envelope.ParseFromString(bytes.fromhex(case["signed_refs"]))
    assert envelope.statement == text and envelope.signature.hex() == case["signature"]
    # The code, from the inputs.
    statement = Statement(
        rid=RID,
        signer=key.peer_id,
        seq=case["seq"],
        parent=None if case["parent"] is None else bytes.fromhex(case["parent"]),
        identity=bytes.fromhex(case["identity"]),
        refs=tuple((name, oid) for name, oid in case["refs"]),
    )
    assert statement.canonical == text and statement.id.hex() == case["id"]
    signed = sign_statement(key, statement)
    assert signed.signature.hex() == case["signature"]
    assert signed.encode().hex() == case["signed_refs"]
    assert SignedStatement.decode(bytes.fromhex(case["signed_refs"])) == signed
    assert Statement.parse(text) == statement


def test_statements_chain_and_stand_on_the_identity() -> None:
    first, second, third = SIGREFS["statements"]
    assert second["parent"] == first["id"] and second["seq"] == 2
    genesis = Identity.decode(bytes.fromhex(IDENTITY["chain"][0]["document"]))
    head = Identity.decode(bytes.fromhex(IDENTITY["chain"][-1]["document"]))
    assert first["identity"] == hashlib.sha256(genesis.raw).hexdigest() == IDENTITY["rid_multihash"][4:]
    assert second["identity"] == third["identity"] == IDENTITY["head"]["digest"]
    signer = KEYS[first["signer_key"]].peer_id
    s1 = next_statement(None, rid=RID, signer=signer, identity=genesis, refs=[tuple(r) for r in first["refs"]])
    s2 = next_statement(s1, rid=RID, signer=signer, identity=head, refs=[tuple(r) for r in second["refs"]])
    assert s2.canonical.decode() == second["statement"]
    assert PublicKey.from_peer_id(signer) == KEYS[first["signer_key"]].public_key


@pytest.mark.parametrize("case", SIGREFS["invalid"], ids=lambda c: c["why"])
def test_invalid_statements(case: dict[str, str]) -> None:
    with pytest.raises(InvalidRefs):
        Statement.parse(case["statement"].encode("utf-8"))
