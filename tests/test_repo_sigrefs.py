"""Signed ref statements: the canonical text, every refusal of a
non-canonical or hostile one, signatures, and the acceptance rules."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.crypto import KeyPair
from guts.errors import InputError, InvalidRefs, RemoteProtocolError
from guts.pb import repo_pb2
from guts.peer import PeerId
from guts.repo.identity import Identity, create_genesis
from guts.repo.rid import Rid
from guts.repo.sigrefs import (
    FORMAT_HEADER,
    RefsLimits,
    SignedStatement,
    Statement,
    Verdict,
    judge,
    next_statement,
    ref_problem,
    sign_statement,
)

K1, K2 = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
GENESIS = create_genesis(K1, name="guts", nonce=bytes(range(16)), delegates=[K1.public_key, K2.public_key]).document
RID = Rid.of_genesis(GENESIS.raw)
OTHER_RID = Rid.of_genesis(create_genesis(K2, name="other", nonce=bytes(range(16))).document.raw)
A, B, C = "a" * 40, "b" * 40, "c" * 40


def statement(refs: dict[str, str] | None = None, previous: Statement | None = None, key: KeyPair = K1) -> Statement:
    refs = {"refs/heads/main": A, "refs/tags/v1": B} if refs is None else refs
    return next_statement(previous, rid=RID, signer=key.peer_id, identity=GENESIS, refs=refs.items())


def header(seq: int = 1, parent: str = "none", rid: str | None = None, signer: str | None = None) -> str:
    return (
        f"{FORMAT_HEADER}\nrid {rid or RID}\nsigner {signer or K1.peer_id}\nseq {seq}\n"
        f"parent {parent}\nidentity {GENESIS.digest.hex()}\n"
    )


# -- the canonical text -----------------------------------------------------------


def test_canonical_text() -> None:
    s = statement({"refs/tags/v1": B, "refs/heads/main": A})
    assert s.canonical.decode() == header() + f"{A} refs/heads/main\n{B} refs/tags/v1\n"
    assert s.refs == (("refs/heads/main", A), ("refs/tags/v1", B))
    assert s.id == hashlib.sha256(s.canonical).digest()
    assert s.ref_map() == {"refs/heads/main": A, "refs/tags/v1": B}
    assert Statement.parse(s.canonical) == s
    empty = statement({})
    assert empty.canonical.decode() == header()
    assert Statement.parse(empty.canonical) == empty


def test_sorting_is_by_utf8_bytes() -> None:
    # U+FF5E sorts before U+1F600 by code point (and UTF-8 bytes), after it in UTF-16.
    names = ["refs/heads/\U0001f600", "refs/heads/\uff5e", "refs/heads/z", "refs/heads/Z", "refs/heads/a-b", "refs/heads/a/b"]
    s = statement({n: A for n in names})
    assert [n for n, _ in s.refs] == sorted(names, key=str.encode)
    assert [n for n, _ in s.refs][-2:] == ["refs/heads/\uff5e", "refs/heads/\U0001f600"]
    assert Statement.parse(s.canonical) == s


def test_chained_statements() -> None:
    first = statement()
    second = statement({"refs/heads/main": C}, previous=first)
    assert second.seq == 2 and second.parent == first.id
    assert f"parent {first.id.hex()}\n".encode() in second.canonical
    assert Statement.parse(second.canonical) == second
    with pytest.raises(ValueError):
        statement(previous=first, key=K2)


def test_sha256_object_ids() -> None:
    s = statement({"refs/heads/main": "1" * 64})
    assert Statement.parse(s.canonical) == s
    with pytest.raises(InputError, match="mixed"):
        statement({"refs/heads/main": "1" * 64, "refs/heads/x": A})


# -- ref names and oids -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "refs/heads/main",
        "refs/heads/feature/x-1",
        "refs/tags/v1.0.0",
        "refs/heads/caf\u00e9",
        "refs/heads/a@b",
        "refs/heads/{x}",
        "refs/heads/" + "x" * 250,
    ],
)
def test_good_ref_names(name: str) -> None:
    assert ref_problem(name, A) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "refs/heads/",
        "refs/heads",
        "main",
        "HEAD",
        "refs/notes/commits",
        "refs/remotes/origin/main",
        "refs/guts/x/heads/main",
        "refs/heads/HEAD",
        "refs/heads/-x",
        "refs/tags/-x",
        "refs/heads/a..b",
        "refs/heads/../../etc/passwd",
        "refs/heads/a b",
        "refs/heads/a\tb",
        "refs/heads/a\x00b",
        "refs/heads/a\x7fb",
        "refs/heads/a~1",
        "refs/heads/a^",
        "refs/heads/a:b",
        "refs/heads/a?",
        "refs/heads/a*",
        "refs/heads/a[b",
        "refs/heads/a\\b",
        "refs/heads/a@{1}",
        "refs/heads/x.lock",
        "refs/heads/x.lock/y",
        "refs/heads/.hidden",
        "refs/heads/a/.b",
        "refs/heads/a/",
        "refs/heads//a",
        "/refs/heads/a",
        "refs/heads/a.",
        "refs/heads/evil\u202etxt",
        "refs/heads/zero\u200bwidth",
        "refs/heads/\x9b31m",
        "refs/heads/" + "x" * 251,
        "refs/heads/" + "x/" * 600 + "x",
        "refs/heads/\udc80",
    ],
)
def test_hostile_ref_names(name: str) -> None:
    assert ref_problem(name, A) is not None
    with pytest.raises(InputError):
        statement({name: A})
    body = header() + f"{A} {name}\n"
    with pytest.raises(InvalidRefs):
        Statement.parse(body.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("oid", ["A" * 40, "a" * 39, "a" * 41, "a" * 63, "0" * 40, "0" * 64, "g" * 40, ""])
def test_bad_oids(oid: str) -> None:
    assert ref_problem("refs/heads/main", oid) is not None
    with pytest.raises(InvalidRefs):
        Statement.parse((header() + f"{oid} refs/heads/main\n").encode())


def test_a_ref_inside_another_is_refused() -> None:
    with pytest.raises(InputError, match="inside another"):
        statement({"refs/heads/a": A, "refs/heads/a-b": A, "refs/heads/a/b": B})
    statement({"refs/heads/a": A, "refs/tags/a/b": B})  # different namespaces: fine


# -- parsing refuses what is not canonical ------------------------------------------


GOOD = header() + f"{A} refs/heads/main\n{B} refs/tags/v1\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD[:-1], "newline"),
        (GOOD.replace("\n", "\r\n"), None),
        ("guts signed refs 2\n" + GOOD.split("\n", 1)[1], "version 1"),
        (GOOD.replace("rid ", "rid  ", 1), None),
        (GOOD.replace("seq 1", "seq 01"), "seq"),
        (GOOD.replace("seq 1", "seq 0"), "seq"),
        (GOOD.replace("seq 1", "seq +1"), "seq"),
        (GOOD.replace("seq 1", "seq 9223372036854775808"), "seq"),
        (GOOD.replace("seq 1", "seq 2"), "parent"),
        (GOOD.replace("parent none", "parent " + "1" * 64), "parent"),
        (GOOD.replace("parent none", "parent NONE"), "parent"),
        (GOOD.replace(GENESIS.digest.hex(), GENESIS.digest.hex().upper()), "identity"),
        (GOOD.replace("identity", "identiy"), "identity"),
        (header() + f"{B} refs/tags/v1\n{A} refs/heads/main\n", "out of order"),
        (header() + f"{A} refs/heads/main\n{A} refs/heads/main\n", "repeats"),
        (header() + f"{A} refs/heads/main\n\n", None),
        (header() + f"{A}  refs/heads/main\n", None),
        (header() + f"{A}\trefs/heads/main\n", None),
        (header() + f"refs/heads/main {A}\n", None),
        (header().replace("signer ", "rid x\nsigner ", 1), None),
        (header()[: header().index("identity")], "header"),
        (header(rid=RID.cid.encode("base36")), "canonical"),
        (header(rid=str(RID).upper()), "canonical"),
        (header(signer=K1.peer_id.to_cid()), "canonical"),
        (header(signer="QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), "Ed25519"),
        (header(rid="bafkqaaa"), "repository id"),
        ("", None),
        ("\n", None),
    ],
)
def test_non_canonical_statements(text: str, match: str | None) -> None:
    with pytest.raises(InvalidRefs, match=match):
        Statement.parse(text.encode())


def test_not_utf8() -> None:
    with pytest.raises(InvalidRefs, match="UTF-8"):
        Statement.parse(header().encode() + A.encode() + b" refs/heads/\xff\n")


def test_limits() -> None:
    refs = {f"refs/heads/b{i}": A for i in range(11)}
    s = statement(refs)
    with pytest.raises(InvalidRefs, match="11 refs"):
        Statement.parse(s.canonical, RefsLimits(max_refs=10))
    with pytest.raises(InvalidRefs, match="bytes"):
        Statement.parse(s.canonical, RefsLimits(max_bytes=len(s.canonical) - 1))
    assert Statement.parse(s.canonical, RefsLimits(max_refs=11, max_bytes=len(s.canonical))) == s
    with pytest.raises(InputError, match="limit"):
        next_statement(None, rid=RID, signer=K1.peer_id, identity=GENESIS, refs=refs.items(), limits=RefsLimits(max_refs=10))
    with pytest.raises(InvalidRefs, match="bytes"):
        Statement.parse(b"x" * (2 * 1024 * 1024 + 1))
    # The line count is checked before any ref is looked at.
    many = header() + "x\n" * 10_001
    with pytest.raises(InvalidRefs, match="10001 refs"):
        Statement.parse(many.encode())


# -- signatures -------------------------------------------------------------------


def test_signed_round_trip() -> None:
    signed = sign_statement(K1, statement())
    assert K1.public_key.verify(signed.statement.canonical, signed.signature)
    data = signed.encode()
    msg = repo_pb2.SignedRefs()
    msg.ParseFromString(data)
    assert msg.statement == signed.statement.canonical and msg.signature == signed.signature
    assert SignedStatement.decode(data) == signed
    assert signed.id == signed.statement.id


def test_bad_signatures() -> None:
    s = statement()
    good = sign_statement(K1, s)
    with pytest.raises(InvalidRefs, match="bad signature"):
        SignedStatement(s, bytes(64))
    with pytest.raises(InvalidRefs, match="bad signature"):
        SignedStatement(s, good.signature[:-1])
    # Signed by a key other than the statement's signer.
    with pytest.raises(InvalidRefs, match="bad signature"):
        SignedStatement(s, K2.sign(s.canonical))
    tampered = repo_pb2.SignedRefs(statement=s.canonical.replace(A.encode(), C.encode()), signature=good.signature)
    with pytest.raises(InvalidRefs, match="bad signature"):
        SignedStatement.decode(tampered.SerializeToString())
    with pytest.raises(ValueError):
        sign_statement(K2, s)


def test_signed_decode_refusals() -> None:
    with pytest.raises(InvalidRefs, match="malformed"):
        SignedStatement.decode(b"\x0a\x05ab")
    with pytest.raises(InvalidRefs, match="bytes"):
        SignedStatement.decode(bytes(2 * 1024 * 1024 + 200))
    with pytest.raises(InvalidRefs):
        SignedStatement.decode(b"")
    assert issubclass(InvalidRefs, RemoteProtocolError)


# -- the acceptance rules ---------------------------------------------------------


def test_judge() -> None:
    s1 = statement()
    s2 = statement({"refs/heads/main": C}, previous=s1)
    s3 = statement({}, previous=s2)
    other_2 = statement({"refs/heads/main": B}, previous=s1)
    k2 = statement(key=K2)
    elsewhere = next_statement(None, rid=OTHER_RID, signer=K1.peer_id, identity=GENESIS, refs=())
    kw = dict(rid=RID, namespace=K1.peer_id)

    assert judge(None, s1, **kw) is Verdict.ACCEPTED
    assert judge(None, s2, **kw) is Verdict.ACCEPTED  # first sight: any seq
    assert judge(s1, s2, **kw) is Verdict.ACCEPTED
    assert judge(s1, s3, **kw) is Verdict.ACCEPTED  # a gap: parent unknown, accepted
    assert judge(s2, s2, **kw) is Verdict.UNCHANGED
    assert judge(s2, s1, **kw) is Verdict.STALE
    assert judge(s2, other_2, **kw) is Verdict.EQUIVOCATION
    forked = statement({}, previous=other_2)  # seq 3 built on the other seq 2
    assert judge(s2, forked, **kw) is Verdict.FORKED
    assert judge(s1, k2, **kw) is Verdict.WRONG_SIGNER
    assert judge(None, elsewhere, **kw) is Verdict.WRONG_RID
    assert not Verdict.UNCHANGED.refused and not Verdict.ACCEPTED.refused
    assert all(v.refused for v in Verdict if v not in (Verdict.ACCEPTED, Verdict.UNCHANGED))
    with pytest.raises(ValueError):
        judge(k2, s1, **kw)


# -- properties -------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_give_only_invalid_refs(data: bytes) -> None:
    for decode in (Statement.parse, SignedStatement.decode):
        try:
            decode(data)
        except InvalidRefs:
            pass


_line = st.text(st.characters(codec="utf-8"), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=6), st.integers(0, 6))
def test_mangled_statements_give_only_invalid_refs(lines: list[str], at: int) -> None:
    base = GOOD.split("\n")
    mangled = "\n".join(base[:at] + lines + base[at:])
    try:
        Statement.parse(mangled.encode())
    except InvalidRefs:
        pass


_ref_names = st.lists(
    st.text("abcxyz-_.0189é", min_size=1, max_size=12).map(lambda s: "refs/heads/" + s), max_size=20, unique=True
)


@settings(max_examples=200, deadline=None)
@given(_ref_names, st.sampled_from([40, 64]))
def test_round_trip(names: list[str], size: int) -> None:
    refs = {name: hashlib.sha256(name.encode()).hexdigest()[:size].replace("0", "1") for name in names}
    try:
        s = statement(refs)
    except InputError:
        return  # a name git refuses (a leading '.', '..', a '.lock' or a ref inside another)
    signed = sign_statement(K1, s)
    assert SignedStatement.decode(signed.encode()) == signed
    assert Statement.parse(s.canonical).canonical == s.canonical


def test_identity_line_names_the_revision() -> None:
    assert statement().identity == hashlib.sha256(GENESIS.raw).digest()
    assert isinstance(GENESIS, Identity) and isinstance(K1.peer_id, PeerId)
