"""Announcements: codec (round trips, strictness, a fixed vector), topics,
the checks that trust no relay, and the validator's decision."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.crypto import KeyPair
from guts.errors import DecodeError
from guts.pb import announce_pb2, repo_pb2
from guts.peer import PeerId
from guts.repo.identity import IdentityLimits, SignedRevision, create_genesis, sign_revision
from guts.repo.revisions import propose_revision, verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, sign_statement
from guts.replicate.announce import (
    REPOSITORIES_TOPIC,
    AnnounceLimits,
    ConflictingStatement,
    ForgedAnnouncement,
    InvalidAnnouncement,
    MisdirectedAnnouncement,
    Outcome,
    OversizedAnnouncement,
    RefsAnnounced,
    RepositoryAnnounced,
    VerifiedRefs,
    VerifiedRepository,
    announce_refs,
    announce_repository,
    assess,
    check_announcement,
    decode_announcement,
    encode_announcement,
    is_newer,
    refs_topic,
    topic_of,
    topic_rid,
)

ALICE = KeyPair.from_seed(bytes(range(32)))
BOB = KeyPair.from_seed(bytes(range(1, 33)))
GENESIS = create_genesis(ALICE, name="demo", nonce=bytes(16))
RID = Rid.of_genesis(GENESIS.document.raw)
OTHER_GENESIS = create_genesis(ALICE, name="other", nonce=bytes(16))
OTHER_RID = Rid.of_genesis(OTHER_GENESIS.document.raw)
MAIN = "refs/heads/main"
SIGREFS = "5" * 40


def statement(
    previous: Statement | None = None, oid: str = "a" * 40, rid: Rid = RID, key: KeyPair = ALICE
) -> SignedStatement:
    genesis = GENESIS if rid == RID else OTHER_GENESIS
    made = next_statement(previous, rid=rid, signer=key.peer_id, identity=genesis.document, refs=[(MAIN, oid)])
    return sign_statement(key, made)


S1 = statement()
S2 = statement(S1.statement, "b" * 40)
S3 = statement(S2.statement, "c" * 40)

#: encode_announcement(announce_refs(S1, SIGREFS)): fixed key seed, nonce and refs.
REFS_VECTOR = bytes.fromhex(
    "0ad3030a3b6261666b726569666b376f666c7137346f79666965367664696f6175786b75786c6b72636478716e703637"
    "3263373372353774613469617a75626d12e9020aa40267757473207369676e6564207265667320310a72696420626166"
    "6b726569666b376f666c7137346f79666965367664696f6175786b75786c6b72636478716e7036373263373372353774"
    "613469617a75626d0a7369676e657220313244334b6f6f574134586f70314a6154334d487877594d6b43657059737634"
    "6950566f704d5877437a356948596442666553420a73657120310a706172656e74206e6f6e650a6964656e7469747920"
    "616166623861623837663865633135303466353436383730323937353532656235343434336263316166663766343266"
    "656533646663633163343033333430620a61616161616161616161616161616161616161616161616161616161616161"
    "61616161616161616120726566732f68656164732f6d61696e0a1240b4a994cb298bdd2f468ac1a8f84027cfcfce2436"
    "90a8a02a5d3d4ceae3673dfb5c1b17cacfefe108ec1dbd5619cbf9ca422da9df3d2b9c3a094344ff2395a00e1a283535"
    "3535353535353535353535353535353535353535353535353535353535353535353535353535"
)


# ---------------------------------------------------------------- codec


def test_refs_round_trip() -> None:
    announcement = announce_refs(S1, SIGREFS)
    assert announcement == RefsAnnounced(RID, S1.encode(), SIGREFS)
    assert decode_announcement(encode_announcement(announcement)) == announcement
    assert topic_of(announcement) == refs_topic(RID) == f"guts/repo/{RID}"


def test_repository_round_trip() -> None:
    second = sign_revision(propose_revision(verify_chain(RID, [GENESIS]), name="renamed"), ALICE, RID)
    announcement = announce_repository([GENESIS, second])
    assert announcement == RepositoryAnnounced(RID, (GENESIS.encode(), second.encode()))
    assert decode_announcement(encode_announcement(announcement)) == announcement
    assert topic_of(announcement) == REPOSITORIES_TOPIC == "guts/repos"
    with pytest.raises(ValueError):
        announce_repository([])


def test_fixed_vector() -> None:
    """Fixed keys and nonce give fixed bytes; the protobuf runtime and
    hashlib read them back without our codec."""
    data = encode_announcement(announce_refs(S1, SIGREFS))
    assert data == REFS_VECTOR
    assert decode_announcement(REFS_VECTOR) == announce_refs(S1, SIGREFS)
    assert str(ALICE.peer_id) == "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
    multihash = b"\x12\x20" + hashlib.sha256(GENESIS.document.raw).digest()
    assert str(RID) == "b" + base64.b32encode(b"\x01\x55" + multihash).decode().lower().rstrip("=")
    assert str(RID) == "bafkreifk7oflq74oyfie6vdioauxkuxlkrcdxqnp672c73r57ta4iazubm"
    msg = announce_pb2.Announcement()
    msg.ParseFromString(data)
    assert msg.WhichOneof("kind") == "refs"
    assert msg.refs.rid == str(RID) and msg.refs.sigrefs == SIGREFS
    envelope = repo_pb2.SignedRefs()
    envelope.ParseFromString(msg.refs.statement)
    assert envelope.statement == (
        "guts signed refs 1\n"
        f"rid {RID}\n"
        f"signer {ALICE.peer_id}\n"
        "seq 1\n"
        "parent none\n"
        f"identity {GENESIS.document.digest.hex()}\n"
        f"{'a' * 40} refs/heads/main\n"
    ).encode()
    assert ALICE.public_key.verify(envelope.statement, envelope.signature)
    repository = encode_announcement(announce_repository([GENESIS]))
    assert hashlib.sha256(repository).hexdigest() == "05e077d5e8955b46e159430258a35b5504176f2e0a9555bfee878d9291350f26"


def _encoded(**fields: object) -> bytes:
    msg = announce_pb2.Announcement()
    msg.refs.SetInParent()
    msg.refs.rid = str(fields.get("rid", RID))
    msg.refs.statement = fields.get("statement", S1.encode())  # type: ignore[assignment]
    msg.refs.sigrefs = fields.get("sigrefs", SIGREFS)  # type: ignore[assignment]
    return msg.SerializeToString(deterministic=True)


def _repository(identity: list[bytes] | None = None) -> bytes:
    repository = announce_pb2.RepositoryAnnounced(rid=str(RID), identity=identity or [])
    return announce_pb2.Announcement(repository=repository).SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", InvalidAnnouncement, "no known kind"),
        (b"\xff\xff", InvalidAnnouncement, "not an announcement"),
        (b"\x0a\x03\x0a\x01\xff", InvalidAnnouncement, "UTF-8"),  # a rid that is not text
        (_encoded() + b"\x18\x01", InvalidAnnouncement, "canonical"),  # unknown field 3
        (_encoded() + _encoded(), InvalidAnnouncement, "canonical"),  # the kind twice
        (
            _encoded() + _repository(identity=[b"x"]),
            InvalidAnnouncement,
            "canonical",
        ),  # both kinds: the last would win silently
        (_encoded(rid="bafy"), InvalidAnnouncement, "rid"),
        (_encoded(rid="x" * 200), InvalidAnnouncement, "characters"),
        (_encoded(rid="z" + "1" * 40), InvalidAnnouncement, "rid"),
        (_encoded(sigrefs="A" * 40), InvalidAnnouncement, "sigrefs"),
        (_encoded(sigrefs="0" * 40), InvalidAnnouncement, "sigrefs"),
        (_encoded(sigrefs="a" * 41), InvalidAnnouncement, "sigrefs"),
        (_encoded(sigrefs=""), InvalidAnnouncement, "sigrefs"),
        (_repository(), InvalidAnnouncement, "identity chain"),
    ],
)
def test_strict_decoding(data: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        decode_announcement(data)


def test_a_rid_in_another_multibase_is_refused() -> None:
    base58 = RID.cid.encode("base58btc")
    assert Rid.parse(base58) == RID
    with pytest.raises(InvalidAnnouncement, match="as Guts writes it"):
        decode_announcement(_encoded(rid=base58))


def test_bounds() -> None:
    limits = AnnounceLimits(max_message=200)
    data = _encoded()
    assert len(data) > 200
    with pytest.raises(OversizedAnnouncement, match="limit 200"):
        decode_announcement(data, limits)
    small = AnnounceLimits(refs=replace(AnnounceLimits().refs, max_bytes=64))
    with pytest.raises(OversizedAnnouncement, match="statement"):
        decode_announcement(data, small)
    chain = announce_pb2.Announcement(repository=announce_pb2.RepositoryAnnounced(rid=str(RID), identity=[b"x"] * 3))
    with pytest.raises(OversizedAnnouncement, match="3 revisions"):
        decode_announcement(chain.SerializeToString(deterministic=True), AnnounceLimits(max_revisions=2))
    with pytest.raises(ValueError):
        AnnounceLimits(max_revisions=2000)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    try:
        decode_announcement(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_announcements_decode_or_fail_cleanly(data: st.DataObject) -> None:
    valid = bytearray(encode_announcement(announce_refs(S1, SIGREFS)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(valid) - 1))
        valid[i] = data.draw(st.integers(0, 255))
    try:
        announcement = decode_announcement(bytes(valid))
    except DecodeError:
        return
    try:  # whatever decodes is checked without another kind of exception
        check_announcement(announcement, topic_of(announcement))
    except DecodeError:
        pass


# ---------------------------------------------------------------- topics


def test_topic_rid() -> None:
    assert topic_rid(refs_topic(RID)) == RID
    assert topic_rid(REPOSITORIES_TOPIC) is None
    assert topic_rid("guts/repo/") is None
    assert topic_rid("guts/repo/bafy") is None
    assert topic_rid("guts/repo/" + RID.cid.encode("base58btc")) is None
    assert topic_rid("other/" + str(RID)) is None


# ---------------------------------------------------------------- checks


def test_a_valid_refs_announcement() -> None:
    verified = check_announcement(announce_refs(S2, SIGREFS), refs_topic(RID))
    assert isinstance(verified, VerifiedRefs)
    assert verified.statement == S2.statement and verified.sigrefs == SIGREFS and verified.rid == RID


def test_a_forged_signature_is_refused() -> None:
    envelope = bytearray(S1.encode())
    envelope[-1] ^= 1  # the signature's last byte
    announcement = RefsAnnounced(RID, bytes(envelope), SIGREFS)
    with pytest.raises(ForgedAnnouncement, match="bad signature"):
        check_announcement(announcement, refs_topic(RID))


def test_an_unsigned_statement_is_refused() -> None:
    unsigned = repo_pb2.SignedRefs(statement=S1.statement.canonical).SerializeToString()
    with pytest.raises(ForgedAnnouncement, match="bad signature"):
        check_announcement(RefsAnnounced(RID, unsigned, SIGREFS), refs_topic(RID))


def test_a_garbled_statement_is_refused() -> None:
    garbled = repo_pb2.SignedRefs(statement=b"guts signed refs 1\nrid x\n", signature=b"s" * 64).SerializeToString()
    with pytest.raises(ForgedAnnouncement, match="announced statement"):
        check_announcement(RefsAnnounced(RID, garbled, SIGREFS), refs_topic(RID))
    with pytest.raises(ForgedAnnouncement):
        check_announcement(RefsAnnounced(RID, b"\xff", SIGREFS), refs_topic(RID))


def test_mismatches_are_refused() -> None:
    announcement = announce_refs(S1, SIGREFS)
    with pytest.raises(MisdirectedAnnouncement, match="on topic"):
        check_announcement(announcement, refs_topic(OTHER_RID))
    with pytest.raises(MisdirectedAnnouncement, match="on topic"):
        check_announcement(announcement, REPOSITORIES_TOPIC)
    other = statement(rid=OTHER_RID)  # validly signed, about another repository
    with pytest.raises(MisdirectedAnnouncement, match="a statement about"):
        check_announcement(RefsAnnounced(RID, other.encode(), SIGREFS), refs_topic(RID))
    with pytest.raises(MisdirectedAnnouncement, match="another hash"):
        check_announcement(RefsAnnounced(RID, S1.encode(), "5" * 64), refs_topic(RID))
    with pytest.raises(MisdirectedAnnouncement, match="not 'guts/repos'"):
        check_announcement(announce_repository([GENESIS]), refs_topic(RID))


def test_a_valid_repository_announcement() -> None:
    verified = check_announcement(announce_repository([GENESIS]), REPOSITORIES_TOPIC)
    assert isinstance(verified, VerifiedRepository)
    assert verified.rid == RID and verified.chain == (GENESIS,) and verified.identity.length == 1


def test_forged_identities_are_refused() -> None:
    with pytest.raises(ForgedAnnouncement, match="not of"):  # the genesis of another repository
        check_announcement(RepositoryAnnounced(RID, (OTHER_GENESIS.encode(),)), REPOSITORIES_TOPIC)
    unsigned = SignedRevision(GENESIS.document)
    with pytest.raises(ForgedAnnouncement, match="not signed by any of its delegates"):
        check_announcement(RepositoryAnnounced(RID, (unsigned.encode(),)), REPOSITORIES_TOPIC)
    bad = bytearray(GENESIS.encode())
    bad[-1] ^= 1
    with pytest.raises(ForgedAnnouncement, match="bad signature"):
        check_announcement(RepositoryAnnounced(RID, (bytes(bad),)), REPOSITORIES_TOPIC)
    with pytest.raises(ForgedAnnouncement, match="revision 1"):
        check_announcement(RepositoryAnnounced(RID, (b"\xff",)), REPOSITORIES_TOPIC)
    rogue = sign_revision(propose_revision(verify_chain(RID, [GENESIS]), name="taken"), BOB, RID)
    with pytest.raises(ForgedAnnouncement, match="needs 1"):  # signed by a non-delegate
        check_announcement(announce_repository([GENESIS, rogue]), REPOSITORIES_TOPIC)


def test_signatures_to_check_are_bounded() -> None:
    crowded = GENESIS
    for i in range(3):
        crowded = sign_revision(crowded, KeyPair.from_seed(bytes([i + 7]) * 32), RID)
    announcement = RepositoryAnnounced(RID, (crowded.encode(),))
    with pytest.raises(OversizedAnnouncement, match="signatures"):
        check_announcement(announcement, REPOSITORIES_TOPIC, AnnounceLimits(max_signatures=3))
    limits = AnnounceLimits(max_revisions=1, identity=IdentityLimits(max_revisions=1))
    with pytest.raises(OversizedAnnouncement, match="revisions"):
        check_announcement(RepositoryAnnounced(RID, (GENESIS.encode(),) * 2), REPOSITORIES_TOPIC, limits)


# ---------------------------------------------------------------- newer or not


def test_is_newer() -> None:
    assert is_newer(None, S1.statement)
    assert is_newer(S1.statement, S2.statement)
    assert is_newer(S1.statement, S3.statement)  # a gap is fine
    assert not is_newer(S2.statement, S2.statement)  # equal
    assert not is_newer(S2.statement, S1.statement)  # stale or replayed
    twin = statement(S1.statement, "d" * 40)  # seq 2 again, other refs
    with pytest.raises(ConflictingStatement, match="two different statements with seq 2"):
        is_newer(S2.statement, twin.statement)
    fork = statement(twin.statement, "e" * 40)  # seq 3 on the other branch
    with pytest.raises(ConflictingStatement, match="does not follow"):
        is_newer(S2.statement, fork.statement)
    with pytest.raises(ValueError):
        is_newer(statement(key=BOB).statement, S2.statement)


# ---------------------------------------------------------------- the decision


def test_assess() -> None:
    topic = refs_topic(RID)
    held = {(RID, ALICE.peer_id): S2.statement}

    def lookup(rid: Rid, signer: PeerId) -> Statement | None:
        return held.get((rid, signer))

    def outcome(signed: SignedStatement) -> tuple[Outcome, str]:
        a = assess(encode_announcement(announce_refs(signed, SIGREFS)), topic, lookup)
        return a.outcome, a.reason

    assert outcome(S3) == (Outcome.ACCEPT, "")
    assert outcome(S2) == (Outcome.IGNORE, "stale")
    assert outcome(S1) == (Outcome.IGNORE, "stale")
    assert outcome(statement(key=BOB)) == (Outcome.ACCEPT, "")  # a contributor's first statement
    assert outcome(statement(S1.statement, "d" * 40)) == (Outcome.REJECT, "equivocation")
    forged = bytearray(encode_announcement(announce_refs(S3, SIGREFS)))
    forged[-45] ^= 1  # inside the signature, before the sigrefs field
    rejected = assess(bytes(forged), topic, lookup)
    assert (rejected.outcome, rejected.reason, rejected.verified) == (Outcome.REJECT, "forged", None)
    assert "bad signature" in rejected.detail
    assert assess(b"\x00" * 10, topic, lookup).reason == "malformed"
    assert assess(encode_announcement(announce_refs(S3, SIGREFS)), REPOSITORIES_TOPIC, lookup).reason == "mismatched"
    big = assess(encode_announcement(announce_refs(S3, SIGREFS)), topic, lookup, limits=AnnounceLimits(max_message=10))
    assert big.reason == "oversized"

    repository = encode_announcement(announce_repository([GENESIS]))
    accepted = assess(repository, REPOSITORIES_TOPIC, lookup)
    assert accepted.outcome is Outcome.ACCEPT and isinstance(accepted.verified, VerifiedRepository)
    assert assess(repository, REPOSITORIES_TOPIC, lookup, known=lambda verified: verified.rid == RID).outcome is Outcome.IGNORE
    assert assess(repository, REPOSITORIES_TOPIC, lookup, known=lambda verified: False).outcome is Outcome.ACCEPT
