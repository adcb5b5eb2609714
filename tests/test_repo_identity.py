"""Repository identities: the RID, the document's rules and canonical bytes,
signed revisions and every rule of the chain (guts.repo.rid, .identity,
.revisions), and hostile bytes."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.cid import Cid
from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, InputError, InvalidIdentity, InvalidRid, RemoteProtocolError
from guts.pb import repo_pb2
from guts.repo import _codec
from guts.repo.identity import (
    IDENTITY_VERSION,
    Identity,
    IdentityLimits,
    Signature,
    SignedRevision,
    create_genesis,
    sign_revision,
    signing_payload,
)
from guts.repo.revisions import VerifiedIdentity, propose_revision, verify_chain, verify_genesis, verify_revision
from guts.repo.rid import Rid

K1, K2, K3, K4 = (KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3, 4))
NONCE = bytes(range(16))
NONCE_FIELD = b"\x42\x10" + NONCE  # field 8, length-delimited, 16 bytes
PARENT = b"\x12\x20" + bytes(32)


def doc(**changes: object) -> Identity:
    """A genesis document (with :data:`NONCE`), or a later revision when
    ``parent`` is given (no nonce unless given too)."""
    fields: dict[str, object] = dict(
        name="guts", default_branch="main", delegates=(K1.public_key, K2.public_key), threshold=1
    )
    fields["nonce"] = b"" if "parent" in changes else NONCE
    fields.update(changes)
    return Identity(**fields)  # type: ignore[arg-type]


def genesis(threshold: int = 1, *keys: KeyPair, nonce: bytes = NONCE) -> tuple[Rid, SignedRevision]:
    keys = keys or (K1, K2)
    rev = create_genesis(
        keys[0], name="guts", nonce=nonce, delegates=[k.public_key for k in keys], threshold=threshold
    )
    return Rid.of_genesis(rev.document.raw), rev


def pb_identity(**fields: object) -> bytes:
    return repo_pb2.Identity(**fields).SerializeToString()  # type: ignore[arg-type]


# -- RID -------------------------------------------------------------------------


def test_rid_is_the_raw_cid_of_the_genesis_hash() -> None:
    rid, rev = genesis()
    assert rid.multihash == b"\x12\x20" + hashlib.sha256(rev.document.raw).digest()
    text = str(rid)
    assert text.startswith("bafkrei") and len(text) == 59
    assert Cid.parse(text) == Cid(1, 0x55, rid.multihash)
    assert rid.git_url == f"guts://{text}"
    assert repr(rid) == f"Rid({text!r})"
    assert Rid.parse(text) == rid
    assert Rid.from_git_url(rid.git_url) == rid
    assert Rid.from_git_url(rid.git_url + "/") == rid
    # Other multibases of the same CID name the same repository.
    assert Rid.parse(rid.cid.encode("base36")) == rid
    assert Rid.parse(text.upper()) == rid


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bafkrei",
        "not a rid",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CID v0 (dag-pb)
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb v1
        "bafkqaaa",  # raw, identity hash
        "x" * 1000,
    ],
)
def test_rid_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidRid):
        Rid.parse(text)


@pytest.mark.parametrize("url", ["http://x", "guts:/bafkrei", "guts://", "bafkreigakadocb53gtdeytd5wfwdpsntjnec2efe3xc6iq6kg2iwqajw7u"])
def test_git_url_refuses(url: str) -> None:
    with pytest.raises(InvalidRid):
        Rid.from_git_url(url)


def test_rid_errors_by_kind() -> None:
    assert issubclass(InvalidRid, InputError) and issubclass(InvalidRid, ValueError)
    with pytest.raises(DecodeError):  # bytes from a peer
        Rid(b"\x12\x20" + bytes(31))
    with pytest.raises(DecodeError):
        Rid(b"\x13\x20" + bytes(32))


# -- the document ----------------------------------------------------------------


def test_document_encoding_is_canonical_protobuf() -> None:
    d = doc(description="p2p", parent=PARENT)
    msg = repo_pb2.Identity()
    msg.ParseFromString(d.raw)
    assert msg.version == IDENTITY_VERSION and msg.name == "guts" and msg.description == "p2p"
    assert list(msg.delegates) == [K1.public_key.to_protobuf(), K2.public_key.to_protobuf()]
    assert msg.threshold == 1 and msg.parent == d.parent and msg.nonce == b""
    assert d.raw.endswith(b"\x30\x01\x3a\x22" + PARENT)  # no nonce field at all
    # Field numbers in order, each once.
    assert d.raw.startswith(b"\x08\x01\x12\x04guts\x1a\x03p2p\x22\x04main\x2a\x24")
    assert Identity.decode(d.raw) == d
    assert d.digest == hashlib.sha256(d.raw).digest()
    assert d.multihash == b"\x12\x20" + d.digest
    assert d.delegate_ids == (K1.peer_id, K2.peer_id)
    assert d.is_delegate(K1.public_key) and d.is_delegate(K2.peer_id) and not d.is_delegate(K3.public_key)


def test_genesis_encoding_ends_with_the_nonce() -> None:
    g = doc(description="p2p")
    assert g.is_genesis and g.nonce == NONCE
    # Threshold (6), no parent (7: empty, left out), then the nonce (8).
    assert g.raw.endswith(b"\x30\x01" + NONCE_FIELD)
    msg = repo_pb2.Identity()
    msg.ParseFromString(g.raw)
    assert msg.nonce == NONCE and msg.parent == b""
    assert Identity.decode(g.raw) == g
    assert Identity.decode(bytearray(g.raw)).nonce == NONCE
    assert doc(nonce=bytearray(NONCE)).raw == doc().raw == doc(nonce=memoryview(NONCE)).raw


def test_the_nonce_alone_makes_another_rid() -> None:
    rid, g = genesis()
    other_rid, other = genesis(nonce=bytes(16))
    assert g.document.nonce != other.document.nonce
    assert replace(other.document, nonce=g.document.nonce) == g.document  # nothing else differs
    assert other_rid != rid and other.document.raw != g.document.raw
    assert genesis()[0] == rid  # the same nonce and fields: the same RID again
    # A signature made for one does not verify for the other.
    with pytest.raises(InvalidIdentity, match="not of"):
        verify_genesis(other_rid, g)
    with pytest.raises(InvalidIdentity, match="bad signature"):
        verify_genesis(other_rid, SignedRevision(other.document, g.signatures))


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"name": ""},
        {"name": "a\x1bb"},
        {"name": "a\nb"},
        {"name": "evil\u202egnp.exe"},
        {"description": "x\x00"},
        {"description": "zero\u200bwidth"},
        {"default_branch": ""},
        {"default_branch": "HEAD"},
        {"default_branch": "-x"},
        {"default_branch": "a..b"},
        {"default_branch": "a b"},
        {"default_branch": "x.lock"},
        {"delegates": ()},
        {"delegates": (K1.public_key, K1.public_key)},
        {"threshold": 0},
        {"threshold": 3},
        {"threshold": True},
        {"parent": b"\x12\x20" + bytes(31)},
        {"parent": b"\x13\x20" + bytes(32)},
        {"nonce": b""},
        {"nonce": bytes(15)},
        {"nonce": bytes(17)},
        {"nonce": "0123456789abcdef"},
        {"nonce": 16},
        {"parent": PARENT, "nonce": NONCE},
        {"parent": PARENT, "nonce": b"\x00"},
    ],
)
def test_document_rules(changes: dict[str, object]) -> None:
    with pytest.raises(InputError):
        doc(**changes)


def test_description_may_span_lines() -> None:
    assert Identity.decode(doc(description="line one\n\tline two — ünïcode").raw).description.startswith("line one\n")


def test_decode_refuses_non_canonical_bytes() -> None:
    good = doc(description="d")
    keys = [K1.public_key.to_protobuf(), K2.public_key.to_protobuf()]
    base = dict(
        version=1, name="guts", description="d", default_branch="main", delegates=keys, threshold=1, nonce=NONCE
    )
    assert pb_identity(**base) == good.raw and good.raw.endswith(NONCE_FIELD)
    without_nonce = good.raw[: -len(NONCE_FIELD)]
    revision = doc(description="d", parent=PARENT)
    variants = {
        "unknown field": good.raw + b"\x48\x01",
        "field 8 again, as a varint": good.raw + b"\x40\x01",
        "a field twice": good.raw + b"\x08\x01",
        "nonce twice": good.raw + NONCE_FIELD,
        "fields out of order": b"\x12\x04guts" + good.raw.replace(b"\x12\x04guts", b"", 1),
        "nonce before the threshold": without_nonce.replace(b"\x30\x01", NONCE_FIELD + b"\x30\x01"),
        "explicit default parent": without_nonce + b"\x3a\x00" + NONCE_FIELD,
        "explicit default nonce": revision.raw + b"\x42\x00",
        "non-minimal varint": good.raw.replace(b"\x08\x01", b"\x08\x81\x00", 1),
        "non-minimal nonce length": without_nonce + b"\x42\x90\x00" + NONCE,
    }
    for why, data in variants.items():
        with pytest.raises(InvalidIdentity, match="canonical"):
            Identity.decode(data)


def test_decode_refuses_bad_documents() -> None:
    keys = [K1.public_key.to_protobuf(), K2.public_key.to_protobuf()]
    base = dict(version=1, name="guts", default_branch="main", delegates=keys, threshold=1, nonce=NONCE)
    rsa = b"\x08\x00\x12\x04abcd"
    no_nonce = {k: v for k, v in base.items() if k != "nonce"}
    cases = {
        "version 2 is not supported": dict(base, version=2),
        "version 0 is not supported": dict(base, version=0),
        "threshold is 0": dict(base, threshold=0),
        "threshold is 3": dict(base, threshold=3),
        "listed twice": dict(base, delegates=[keys[0], keys[0]]),
        "RSA": dict(base, delegates=[keys[0], rsa]),
        "at least one delegate": dict(base, delegates=[]),
        "name is empty": dict(base, name=""),
        "not a branch name": dict(base, default_branch="a..b"),
        "parent is not": dict(base, parent=b"\x12\x20"),
        "a genesis needs a nonce of 16 random bytes": no_nonce,
        "the nonce is 15 bytes, not 16": dict(base, nonce=NONCE[:15]),
        "the nonce is 17 bytes, not 16": dict(base, nonce=NONCE + b"\x00"),
        "the nonce is 32 bytes": dict(base, nonce=bytes(32)),
        "a revision after the genesis has no nonce": dict(base, parent=PARENT),
        "a revision after the genesis has no nonce ": dict(no_nonce, parent=PARENT, nonce=b"\x01"),
    }
    for match, fields in cases.items():
        with pytest.raises(InvalidIdentity, match=match):
            Identity.decode(pb_identity(**fields))
    # A delegate key in a non-canonical encoding (fields swapped) parses, but
    # is not the canonical document.
    swapped = b"\x12\x20" + K2.public_key.raw + b"\x08\x01"
    assert PublicKey.from_protobuf(swapped) == K2.public_key
    with pytest.raises(InvalidIdentity, match="canonical"):
        Identity.decode(pb_identity(**dict(base, delegates=[keys[0], swapped])))


def test_decode_limits() -> None:
    limits = IdentityLimits(max_document=200, max_name=8, max_description=16, max_delegates=2)
    keys = (K1.public_key, K2.public_key, K3.public_key)
    with pytest.raises(InvalidIdentity, match="name"):
        Identity.decode(doc(name="n" * 9).raw, limits)
    with pytest.raises(InvalidIdentity, match="description"):
        Identity.decode(doc(description="ü" * 9).raw, limits)  # 18 bytes of UTF-8
    with pytest.raises(InvalidIdentity, match="3 delegates"):
        Identity.decode(doc(delegates=keys).raw, limits)
    with pytest.raises(InvalidIdentity, match="bytes"):
        Identity.decode(b"\x1a" + b"\x80\x02" + b"x" * 256, limits)
    with pytest.raises(InvalidIdentity, match="bytes"):
        Identity.decode(bytes(16 * 1024 + 1))
    Identity.decode(doc(name="n" * 8, description="d" * 16).raw, limits)


def test_decode_refuses_malformed_and_invalid_utf8() -> None:
    for data in (b"\x12\x02\xff\xfe", b"\x0a", b"\x12\x05ab", b"\xff" * 8):
        with pytest.raises(InvalidIdentity):
            Identity.decode(data)


# -- creating and proposing -------------------------------------------------------


def test_create_genesis() -> None:
    rev = create_genesis(K1, name="solo", nonce=NONCE)
    assert rev.document.delegates == (K1.public_key,) and rev.document.threshold == 1
    assert rev.document.is_genesis and rev.document.default_branch == "main" and rev.document.nonce == NONCE
    rid = Rid.of_genesis(rev.document.raw)
    assert [s.key for s in rev.signatures] == [K1.public_key]
    assert K1.public_key.verify(b"guts identity v1\n" + rid.multihash + rev.document.raw, rev.signatures[0].signature)
    head = verify_chain(rid, [rev])
    assert head == VerifiedIdentity(rid, rev.document, 1)
    assert head.delegate_ids == (K1.peer_id,) and head.threshold == 1


def test_create_genesis_refuses() -> None:
    with pytest.raises(InputError, match="creator"):
        create_genesis(K1, name="x", nonce=NONCE, delegates=[K2.public_key])
    with pytest.raises(InputError, match="threshold"):
        create_genesis(K1, name="x", nonce=NONCE, threshold=2)
    with pytest.raises(InputError, match="name"):
        create_genesis(K1, name="x" * 257, nonce=NONCE)
    with pytest.raises(InputError, match="delegates"):
        keys = [KeyPair.from_seed(bytes([i]) * 32).public_key for i in range(1, 34)]
        create_genesis(K1, name="x", nonce=NONCE, delegates=keys)
    with pytest.raises(InputError, match="needs a nonce of 16 random bytes"):
        create_genesis(K1, name="x", nonce=b"")
    for size in (8, 15, 17, 32):
        with pytest.raises(InputError, match=f"the nonce is {size} bytes, not 16"):
            create_genesis(K1, name="x", nonce=bytes(size))


def test_sign_revision_is_idempotent_per_key() -> None:
    rid, rev = genesis()
    assert sign_revision(rev, K1, rid) is rev
    both = sign_revision(rev, K2, rid)
    assert [s.key for s in both.signatures] == [K1.public_key, K2.public_key]


def test_signed_revision_round_trip() -> None:
    rid, rev = genesis()
    rev = sign_revision(rev, K2, rid)
    data = rev.encode()
    back = SignedRevision.decode(data)
    assert back == rev and back.document.raw == rev.document.raw
    msg = repo_pb2.SignedRevision()
    msg.ParseFromString(data)
    assert msg.document == rev.document.raw
    assert [(s.public_key, s.signature) for s in msg.signatures] == [
        (s.key.to_protobuf(), s.signature) for s in rev.signatures
    ]


def test_signed_revision_decode_refuses() -> None:
    rid, rev = genesis()
    sig = rev.signatures[0]

    def encoded(pairs: list[tuple[bytes, bytes]]) -> bytes:
        msg = repo_pb2.SignedRevision(document=rev.document.raw)
        for key, signature in pairs:
            msg.signatures.add(public_key=key, signature=signature)
        return msg.SerializeToString()

    with pytest.raises(InvalidIdentity, match="64 bytes"):
        SignedRevision.decode(encoded([(sig.key.to_protobuf(), sig.signature[:63])]))
    with pytest.raises(InvalidIdentity, match="RSA"):
        SignedRevision.decode(encoded([(b"\x08\x00\x12\x01x", sig.signature)]))
    with pytest.raises(InvalidIdentity, match="signatures"):
        SignedRevision.decode(encoded([(sig.key.to_protobuf(), sig.signature)] * 3), IdentityLimits(max_signatures=2))
    with pytest.raises(InvalidIdentity, match="bytes"):
        SignedRevision.decode(bytes(40_000))
    with pytest.raises(InvalidIdentity, match="malformed"):
        SignedRevision.decode(b"\x0a\x05abc")
    with pytest.raises(InvalidIdentity):
        SignedRevision.decode(repo_pb2.SignedRevision(document=b"\x08\x02").SerializeToString())


# -- the chain --------------------------------------------------------------------


def test_chain_of_three_revisions() -> None:
    rid, g = genesis(1, K1, K2)
    # Revision 2 adds K3 and raises the threshold: revision 1's threshold (1) governs it.
    r2 = sign_revision(propose_revision(verify_chain(rid, [g]), delegates=[K1.public_key, K2.public_key, K3.public_key], threshold=2), K2, rid)
    head = verify_chain(rid, [g, r2])
    assert head.length == 2 and head.threshold == 2 and r2.document.parent == g.document.multihash
    # Revision 3 drops K1: two of revision 2's delegates must sign, and K3 counts.
    draft = propose_revision(head, delegates=[K2.public_key, K3.public_key], description="no K1")
    r3 = sign_revision(sign_revision(draft, K3, rid), K1, rid)
    head3 = verify_chain(rid, [g, r2, r3])
    assert head3.length == 3 and head3.current.description == "no K1"
    # Only the genesis has a nonce; each later revision has a parent instead.
    assert g.document.nonce == NONCE and r2.document.nonce == r3.document.nonce == b""
    assert NONCE not in r2.document.raw and NONCE not in r3.document.raw
    assert head3.delegates == (K2.public_key, K3.public_key)
    assert verify_revision(head, r3) == head3
    assert verify_chain(rid, [SignedRevision.decode(r.encode()) for r in (g, r2, r3)]) == head3


def test_genesis_refusals() -> None:
    rid, g = genesis()
    other_rid, _ = genesis(1, K3)
    with pytest.raises(InvalidIdentity, match="not of"):
        verify_genesis(other_rid, g)
    with pytest.raises(InvalidIdentity, match="empty"):
        verify_chain(rid, [])
    unsigned = SignedRevision(g.document)
    with pytest.raises(InvalidIdentity, match="not signed by any of its delegates"):
        verify_genesis(rid, unsigned)
    by_outsider = sign_revision(unsigned, K3, rid)
    with pytest.raises(InvalidIdentity, match="not signed by any of its delegates"):
        verify_genesis(rid, by_outsider)
    bad = SignedRevision(g.document, (Signature(K1.public_key, bytes(64)),))
    with pytest.raises(InvalidIdentity, match="bad signature"):
        verify_genesis(rid, bad)
    # A delegate's signature plus an outsider's is fine...
    verify_genesis(rid, sign_revision(g, K3, rid))
    # ...but any bad signature refuses the revision.
    with pytest.raises(InvalidIdentity, match="bad signature"):
        verify_genesis(rid, SignedRevision(g.document, (*g.signatures, Signature(K3.public_key, b"\x01" * 64))))
    # A document with a parent is no genesis.
    child = propose_revision(verify_chain(rid, [g]))
    child_rid = Rid.of_genesis(child.document.raw)
    with pytest.raises(InvalidIdentity, match="not a genesis"):
        verify_genesis(child_rid, sign_revision(child, K1, child_rid))


def test_revision_refusals() -> None:
    rid, g = genesis(2, K1, K2, K3)
    head = verify_chain(rid, [g])
    draft = propose_revision(head, name="renamed")

    with pytest.raises(InvalidIdentity, match="signed by 1 of the delegates of revision 1; it needs 2"):
        verify_revision(head, sign_revision(draft, K1, rid))
    # Repeating one delegate's signature does not count twice.
    once = sign_revision(draft, K1, rid)
    twice = SignedRevision(draft.document, once.signatures * 2)
    with pytest.raises(InvalidIdentity, match="it needs 2"):
        verify_revision(head, twice)
    # An outsider's valid signature does not count.
    with pytest.raises(InvalidIdentity, match="it needs 2"):
        verify_revision(head, sign_revision(once, K4, rid))
    # Nor does a key the revision itself makes a delegate.
    adds_k4 = propose_revision(head, delegates=[K1.public_key, K2.public_key, K3.public_key, K4.public_key])
    with pytest.raises(InvalidIdentity, match="it needs 2"):
        verify_revision(head, sign_revision(sign_revision(adds_k4, K1, rid), K4, rid))
    # A signature made for another repository does not verify here (replay).
    other_rid, _ = genesis(1, K4)
    replayed = SignedRevision(draft.document, (once.signatures[0], sign_revision(draft, K2, other_rid).signatures[0]))
    with pytest.raises(InvalidIdentity, match="bad signature by"):
        verify_revision(head, replayed)
    # A parent that is not the previous document.
    stray = Identity(
        name="x", default_branch="main", delegates=head.delegates, threshold=2, parent=b"\x12\x20" + bytes(32)
    )
    signed_stray = sign_revision(sign_revision(SignedRevision(stray), K1, rid), K2, rid)
    with pytest.raises(InvalidIdentity, match="parent is not the hash of revision 1"):
        verify_revision(head, signed_stray)
    # A second genesis in place of a revision.
    with pytest.raises(InvalidIdentity, match="parent"):
        verify_chain(rid, [g, g])
    # A revision that carries a nonce is no document at all, signed or not.
    with pytest.raises(InputError, match="no nonce"):
        replace(draft.document, nonce=NONCE)
    with_nonce = pb_identity(
        version=1, name="renamed", default_branch="main", delegates=[k.to_protobuf() for k in head.delegates],
        threshold=2, parent=g.document.multihash, nonce=NONCE,
    )  # fmt: skip
    assert with_nonce == draft.document.raw + NONCE_FIELD
    with pytest.raises(InvalidIdentity, match="a revision after the genesis has no nonce"):
        SignedRevision.decode(_codec.encode_signed_revision(with_nonce, [(K1.public_key.to_protobuf(), bytes(64))]))
    # The good one.
    good = sign_revision(once, K3, rid)
    assert verify_revision(head, good).current.name == "renamed"


def test_chain_length_limit() -> None:
    rid, g = genesis()
    chain = [g]
    head = verify_chain(rid, chain)
    for i in range(3):
        rev = sign_revision(propose_revision(head, description=str(i)), K1, rid)
        chain.append(rev)
        head = verify_revision(head, rev)
    limits = IdentityLimits(max_revisions=3)
    with pytest.raises(InvalidIdentity, match="4 revisions"):
        verify_chain(rid, chain, limits)
    with pytest.raises(InvalidIdentity, match="longer than 3"):
        verify_revision(verify_chain(rid, chain[:3], limits), chain[3], limits)


def test_signing_payload_is_domain_separated() -> None:
    rid, g = genesis()
    payload = signing_payload(rid, g.document)
    assert payload == b"guts identity v1\n" + rid.multihash + g.document.raw
    assert not payload.startswith(b"guts signed refs")


def test_errors_are_remote() -> None:
    assert issubclass(InvalidIdentity, RemoteProtocolError)


# -- properties -------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_only_typed_errors(data: bytes) -> None:
    for decode in (Identity.decode, SignedRevision.decode):
        try:
            decode(data)
        except InvalidIdentity:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_random_text_gives_only_invalid_rid(text: str) -> None:
    for parse in (Rid.parse, Rid.from_git_url):
        try:
            parse(text)
        except InvalidRid:
            pass


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(_names, _names, st.integers(1, 4), st.binary(min_size=16, max_size=16), st.data())
def test_documents_round_trip(name: str, description: str, n: int, nonce: bytes, data: st.DataObject) -> None:
    keys = tuple(KeyPair.from_seed(bytes([i]) * 32).public_key for i in range(1, n + 1))
    threshold = data.draw(st.integers(1, n))
    try:
        d = Identity(
            name=name, description=description, default_branch="main", delegates=keys, threshold=threshold, nonce=nonce
        )
    except InputError:
        return  # an unsafe character: refused alike on decode
    back = Identity.decode(d.raw)
    assert back == d and back.raw == d.raw
    assert replace(back, name=back.name).raw == d.raw
