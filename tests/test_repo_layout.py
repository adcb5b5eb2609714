"""guts.repo.layout: ref names and their parsing, the layout's commits byte
for byte, and packs of them (checked once against real git)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from guts.crypto import KeyPair
from guts.repo.identity import create_genesis
from guts.repo.layout import (
    AUTHOR,
    IDENTITY_REF,
    MAX_DATE,
    GitObject,
    LayoutRef,
    RefKind,
    commit_parents,
    encode_pack,
    identity_commit,
    namespace_prefix,
    namespace_ref,
    parse_ref,
    sigrefs_commit,
    sigrefs_ref,
    state_refs,
)
from guts.repo.rid import Rid
from guts.repo.sigrefs import MAX_SEQ, Statement, next_statement, sign_statement

from .repo_helpers import git, git_text, init_bare

K1, K2 = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
GENESIS = create_genesis(K1, name="layout", nonce=bytes(range(16)), delegates=[K1.public_key, K2.public_key])
RID = Rid.of_genesis(GENESIS.document.raw)
P1 = K1.peer_id
A, B = "a" * 40, "b" * 40


def statement(previous: Statement | None = None, refs: dict[str, str] | None = None) -> Statement:
    refs = {"refs/heads/main": A, "refs/tags/v1": B} if refs is None else refs
    return next_statement(previous, rid=RID, signer=P1, identity=GENESIS.document, refs=refs.items())


# -- names -------------------------------------------------------------------------


def test_names() -> None:
    assert IDENTITY_REF == "refs/guts/identity"
    assert namespace_prefix(P1) == f"refs/guts/{P1}/"
    assert sigrefs_ref(P1) == f"refs/guts/{P1}/sigrefs"
    assert namespace_ref(P1, "refs/heads/main") == f"refs/guts/{P1}/heads/main"
    assert namespace_ref(P1, "refs/tags/v1.0") == f"refs/guts/{P1}/tags/v1.0"
    with pytest.raises(ValueError):
        namespace_ref(P1, "refs/notes/commits")


def test_parse_ref_reads_every_kind_back() -> None:
    assert parse_ref("refs/heads/topic/x") == LayoutRef(RefKind.CANONICAL, None, "refs/heads/topic/x")
    assert parse_ref("refs/tags/v1") == LayoutRef(RefKind.CANONICAL, None, "refs/tags/v1")
    assert parse_ref(IDENTITY_REF) == LayoutRef(RefKind.IDENTITY)
    assert parse_ref(sigrefs_ref(P1)) == LayoutRef(RefKind.SIGREFS, P1)
    for name in ("refs/heads/main", "refs/heads/a/b", "refs/tags/v1", "refs/heads/sigrefs"):
        assert parse_ref(namespace_ref(P1, name)) == LayoutRef(RefKind.SIGNED, P1, name)


@pytest.mark.parametrize(
    "name",
    [
        "refs/notes/commits",
        "refs/remotes/origin/main",
        "refs/heads/",
        "refs/guts/",
        "refs/guts/identity/x",
        "refs/guts/not-a-peer/sigrefs",
        "refs/guts/12D3KooWbroken/sigrefs",
        f"refs/guts/{P1}",
        f"refs/guts/{P1}/",
        f"refs/guts/{P1}/heads/",
        f"refs/guts/{P1}/notes/x",
        f"refs/guts/{P1}/sigrefs/x",
        f"refs/guts/{P1.to_cid()}/sigrefs",  # a peer id, but not as the layout writes it
        "HEAD",
    ],
)
def test_parse_ref_has_no_place_for_others(name: str) -> None:
    assert parse_ref(name) is None


def test_state_refs() -> None:
    s = statement()
    refs = state_refs("1" * 40, {P1: ("2" * 40, s)}, [("refs/heads/main", A)])
    assert refs == {
        IDENTITY_REF: "1" * 40,
        sigrefs_ref(P1): "2" * 40,
        namespace_ref(P1, "refs/heads/main"): A,
        namespace_ref(P1, "refs/tags/v1"): B,
        "refs/heads/main": A,
    }
    assert all(parse_ref(name) is not None for name in refs)


# -- objects -----------------------------------------------------------------------


def test_object_ids_are_gits() -> None:
    assert GitObject("blob", b"").oid == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert GitObject("tree", b"").oid == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    assert GitObject("blob", b"hello\n").oid == hashlib.sha1(b"blob 6\0hello\n").hexdigest()
    with pytest.raises(ValueError):
        GitObject("note", b"")


def test_sigrefs_commit_bytes() -> None:
    first = sign_statement(K1, statement())
    commit = sigrefs_commit(first, None)
    signature, text, tree, body = commit.objects
    assert (signature.kind, signature.body) == ("blob", first.signature)
    assert (text.kind, text.body) == ("blob", first.statement.canonical)
    assert tree.body == (
        b"100644 signature\0" + bytes.fromhex(signature.oid) + b"100644 statement\0" + bytes.fromhex(text.oid)
    )
    assert body.body.decode() == (
        f"tree {tree.oid}\nauthor {AUTHOR} 1 +0000\ncommitter {AUTHOR} 1 +0000\n\nguts signed refs: seq 1\n"
    )
    assert commit.oid == body.oid and commit.commit is body
    # Deterministic: the same statement is the same commit, on any node.
    assert sigrefs_commit(sign_statement(K1, statement()), None).oid == commit.oid
    second = sign_statement(K1, statement(first.statement, {"refs/heads/main": B}))
    child = sigrefs_commit(second, commit.oid)
    assert child.commit.body.decode().splitlines()[1] == f"parent {commit.oid}"
    assert f"committer {AUTHOR} 2 +0000" in child.commit.body.decode()
    assert commit_parents(child.commit.body) == [commit.oid] and commit_parents(body.body) == []
    with pytest.raises(ValueError):
        sigrefs_commit(second, None)
    with pytest.raises(ValueError):
        sigrefs_commit(first, commit.oid)
    with pytest.raises(ValueError):
        sigrefs_commit(second, "not an oid")


def test_identity_commit_bytes() -> None:
    commit = identity_commit(GENESIS, 1, None)
    revision, tree, body = commit.objects
    assert revision.body == GENESIS.encode()
    assert tree.body == b"100644 revision\0" + bytes.fromhex(revision.oid)
    assert body.body.decode() == (
        f"tree {tree.oid}\nauthor {AUTHOR} 1 +0000\ncommitter {AUTHOR} 1 +0000\n\nguts identity: revision 1\n"
    )
    assert "parent " + commit.oid in identity_commit(GENESIS, 2, commit.oid).commit.body.decode()
    for number, parent in ((1, commit.oid), (2, None), (0, None)):
        with pytest.raises(ValueError):
            identity_commit(GENESIS, number, parent)


def test_commit_parents_needs_a_commit() -> None:
    with pytest.raises(ValueError):
        commit_parents(b"object 1234\n")


def test_dates_are_capped() -> None:
    big = Statement(rid=RID, signer=P1, seq=MAX_SEQ, parent=b"\1" * 32, identity=GENESIS.document.digest)
    body = sigrefs_commit(sign_statement(K1, big), "c" * 40).commit.body.decode()
    assert f"author {AUTHOR} {MAX_DATE} +0000" in body and f"seq {MAX_SEQ}" in body


def read_pack(data: bytes) -> list[tuple[int, bytes]]:
    """A whole-object pack decoded by hand: (type, body) per object."""
    assert data[:4] == b"PACK" and data[-20:] == hashlib.sha1(data[:-20]).digest()
    version, count = struct.unpack(">II", data[4:12])
    assert version == 2
    out, pos = [], 12
    for _ in range(count):
        byte = data[pos]
        kind, size, shift = (byte >> 4) & 7, byte & 0x0F, 4
        pos += 1
        while byte & 0x80:
            byte = data[pos]
            size |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
        inflater = zlib.decompressobj()
        body = inflater.decompress(data[pos:-20])
        assert len(body) == size
        pos = len(data) - 20 - len(inflater.unused_data)
        out.append((kind, body))
    assert pos == len(data) - 20
    return out


def test_encode_pack() -> None:
    objects = [GitObject("blob", b"x" * n) for n in (0, 15, 16, 2000, 70000)]
    assert read_pack(encode_pack(objects)) == [(3, o.body) for o in objects]
    assert read_pack(encode_pack([])) == []


def test_git_reads_the_layout_as_written(tmp_path: Path) -> None:
    """index-pack --strict takes the pack; git's oids and bytes are ours;
    fsck finds nothing wrong, the capped date included."""
    repo = init_bare(tmp_path / "r.git")
    first = sign_statement(K1, statement())
    chain = identity_commit(GENESIS, 1, None)
    sigrefs = sigrefs_commit(first, None)
    big = Statement(rid=RID, signer=P1, seq=MAX_SEQ, parent=first.id, identity=GENESIS.document.digest)
    last = sigrefs_commit(sign_statement(K1, big), sigrefs.oid)
    objects = [*chain.objects, *sigrefs.objects, *last.objects]
    pack = tmp_path / "layout.pack"
    pack.write_bytes(encode_pack(objects))
    git("index-pack", "--strict", str(pack), git_dir=repo)
    (tmp_path / "layout.pack").rename(repo / "objects" / "pack" / "pack-layout.pack")
    (tmp_path / "layout.idx").rename(repo / "objects" / "pack" / "pack-layout.idx")
    for item in objects:
        assert git_text("cat-file", "-t", item.oid, git_dir=repo) == item.kind
        assert git("cat-file", item.kind, item.oid, git_dir=repo) == item.body
    git("update-ref", "refs/guts/identity", chain.oid, git_dir=repo)
    git("update-ref", sigrefs_ref(P1), last.oid, git_dir=repo)
    git("fsck", "--strict", "--no-dangling", git_dir=repo)
    assert git_text("log", "--format=%s", sigrefs_ref(P1), git_dir=repo).splitlines() == [
        f"guts signed refs: seq {MAX_SEQ}",
        "guts signed refs: seq 1",
    ]
    assert git(
        "cat-file", "blob", f"{sigrefs_ref(P1)}~1:statement", git_dir=repo
    ) == first.statement.canonical
