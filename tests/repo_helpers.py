"""Real git repositories for the storage tests, built fast.

Histories are written with ``git fast-import`` (thousands of commits in a
fraction of a second); objects git itself would never write (a zero-padded
tree mode, a time zone without minutes, a tree with a duplicate entry) are
made with ``git hash-object --literally``. These helpers are synchronous:
they run in pytest fixtures, before and outside the Trio loop.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from guts.repo._git import git_env

IDENT = "A U Thor <author@example.com>"
EPOCH = 1_600_000_000


def git(*args: str, git_dir: Path | None = None, input: bytes | None = None) -> bytes:
    """``git <args>`` in the same clean environment as the storage's git."""
    extra = {"GIT_DIR": str(git_dir)} if git_dir is not None else {}
    done = subprocess.run(["git", *args], input=input, capture_output=True, env=git_env(extra), timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def git_text(*args: str, git_dir: Path | None = None, input: bytes | None = None) -> str:
    return git(*args, git_dir=git_dir, input=input).decode().strip()


def make_rid(seed: str) -> str:
    """A RID as Guts writes it: CIDv1, raw codec, sha2-256, base32 lowercase."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "b" + base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().lower().rstrip("=")


def init_bare(path: Path) -> Path:
    git("init", "--bare", "--quiet", "--initial-branch=main", str(path))
    return path


def refs_of(path: Path) -> dict[str, str]:
    out = git_text("for-each-ref", "--format=%(objectname) %(refname)", git_dir=path)
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


class _Stream:
    """A ``git fast-import`` stream under construction."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.mark = 0
        self.time = EPOCH

    def data(self, payload: bytes) -> None:
        self.parts.append(b"data %d\n%s\n" % (len(payload), payload))

    def commit(self, ref: str, message: str, files: dict[str, bytes], parents: Iterable[int] = ()) -> int:
        self.mark += 1
        self.time += 60
        self.parts.append(f"commit {ref}\nmark :{self.mark}\n".encode())
        self.parts.append(f"author {IDENT} {self.time} +0100\ncommitter {IDENT} {self.time} +0100\n".encode())
        self.data(message.encode())
        for index, parent in enumerate(parents):
            self.parts.append(f"{'from' if index == 0 else 'merge'} :{parent}\n".encode())
        for path, content in files.items():
            self.parts.append(f"M 100644 inline {path}\n".encode())
            self.data(content)
        return self.mark

    def light_tag(self, name: str, mark: int) -> None:
        self.parts.append(f"reset refs/tags/{name}\nfrom :{mark}\n\n".encode())

    def tag(self, name: str, mark: int) -> None:
        self.parts.append(f"tag {name}\nfrom :{mark}\ntagger {IDENT} {self.time} +0100\n".encode())
        self.data(f"release {name}\n".encode())

    def run(self, path: Path) -> None:
        git("fast-import", "--quiet", "--done", git_dir=path, input=b"".join(self.parts) + b"done\n")


@dataclass(frozen=True, slots=True)
class History:
    path: Path
    refs: dict[str, str]
    commits: int


def build_history(path: Path, commits: int = 3000, topic_every: int = 150, topic_length: int = 12) -> History:
    """A bare repository with ``commits`` commits on ``main``, a topic branch
    every ``topic_every`` commits (merged back, except the last two, which
    stay open), annotated and lightweight tags, and a ``release`` branch."""
    stream = _Stream()
    main = stream.commit("refs/heads/main", "root", {"README": b"history\n"})
    total = 1
    topics: list[str] = []
    for i in range(1, commits):
        files = {f"src/file{i % 40}.txt": f"line {i}\n".encode() * (1 + i % 7)}
        main = stream.commit("refs/heads/main", f"commit {i}", files, [main])
        total += 1
        if i % topic_every == 0:
            name = f"refs/heads/topic/{i}"
            tip = main
            for j in range(topic_length):
                tip = stream.commit(name, f"topic {i} step {j}", {f"topic/{i}.txt": f"{j}\n".encode()}, [tip])
                total += 1
            topics.append(name)
            if i < commits - 2 * topic_every:
                main = stream.commit("refs/heads/main", f"merge topic {i}", {}, [main, tip])
                total += 1
        if i % 500 == 0:
            (stream.tag if i % 1000 == 0 else stream.light_tag)(f"v{i // 500}", main)
    stream.commit("refs/heads/release", "release fix", {"RELEASE": b"1\n"}, [main - 40])
    stream.run(path)
    return History(path, refs_of(path), total + 1)


def _tree(entries: list[tuple[str, str, str]], git_dir: Path) -> str:
    """A tree object written as is (``--literally``): (mode, name, oid)."""
    raw = b"".join(mode.encode() + b" " + name.encode() + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries)
    return git_text("hash-object", "-t", "tree", "-w", "--literally", "--stdin", git_dir=git_dir, input=raw)


def _object(kind: str, text: str, git_dir: Path) -> str:
    return git_text("hash-object", "-t", kind, "-w", "--literally", "--stdin", git_dir=git_dir, input=text.encode())


def blob(content: bytes, git_dir: Path) -> str:
    return git_text("hash-object", "-w", "--stdin", git_dir=git_dir, input=content)


@dataclass(frozen=True, slots=True)
class Messy:
    path: Path
    refs: dict[str, str]
    padded_tree: str


def build_messy(path: Path) -> Messy:
    """A legacy history as old public repositories have them: a tree entry
    with a zero-padded mode (``040000``), a commit whose time zone has no
    minutes (``+05``), and an annotated tag without a tagger."""
    init_bare(path)
    stream = _Stream()
    stream.commit("refs/heads/main", "modern", {"a.txt": b"a\n"})
    stream.run(path)
    parent = refs_of(path)["refs/heads/main"]
    inner = _tree([("100644", "file", blob(b"old\n", path))], path)
    padded = _tree([("040000", "dir", inner), ("100644", "top", blob(b"top\n", path))], path)
    commit = _object(
        "commit",
        f"tree {padded}\nparent {parent}\nauthor {IDENT} 1100000000 +05\ncommitter {IDENT} 1100000000 +05\n\nold\n",
        path,
    )
    tag = _object("tag", f"object {commit}\ntype commit\ntag legacy\n\nno tagger\n", path)
    git("update-ref", "refs/heads/main", commit, git_dir=path)
    git("update-ref", "refs/tags/legacy", tag, git_dir=path)
    return Messy(path, refs_of(path), padded)


def add_corrupt_commit(path: Path, kind: str = "duplicate") -> str:
    """A commit on ``refs/heads/corrupt`` whose tree breaks clients: two
    entries of one name (``duplicate``) or an entry named ``.git``."""
    parent = refs_of(path)["refs/heads/main"]
    file = blob(b"x\n", path)
    entries = {
        "duplicate": [("100644", "same", file), ("100644", "same", file)],
        "dotgit": [("100644", ".git", file)],
    }[kind]
    tree = _tree(entries, path)
    header = f"tree {tree}\nparent {parent}\nauthor {IDENT} {EPOCH} +0000\ncommitter {IDENT} {EPOCH} +0000\n"
    commit = _object("commit", header + "\nbad\n", path)
    git("update-ref", "refs/heads/corrupt", commit, git_dir=path)
    return commit


def pack(path: Path, include: Iterable[str], exclude: Iterable[str] = (), *, thin: bool = False) -> bytes:
    """``git pack-objects --revs``: what ``include`` reaches minus what
    ``exclude`` reaches (a thin pack may delta against the latter)."""
    revs = "".join(f"{oid}\n" for oid in include) + "".join(f"^{oid}\n" for oid in exclude)
    args = ["pack-objects", "--revs", "--stdout", "--quiet", *(["--thin"] if thin else [])]
    return git(*args, git_dir=path, input=revs.encode())


def pack_objects(path: Path, oids: Iterable[str]) -> bytes:
    """A pack of exactly these objects (no walk)."""
    return git("pack-objects", "--stdout", "--quiet", git_dir=path, input="".join(f"{o}\n" for o in oids).encode())


def objects_of(path: Path) -> set[str]:
    """Every object of the repository (loose and packed), by listing."""
    out = git_text("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", git_dir=path)
    return set(out.split())


def random_blobs(git_dir: Path, mib: int) -> str:
    """One commit on ``main`` of ``git_dir`` (an existing repository) holding
    ``mib`` incompressible 1 MiB blobs, streamed into fast-import a blob at
    a time and kept as one pack, stored undeflated (quick to make); its oid."""
    fast = ["git", "-c", "core.compression=0", "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet"]
    importer = subprocess.Popen(fast, stdin=subprocess.PIPE, env=git_env({"GIT_DIR": str(git_dir)}))
    assert importer.stdin is not None
    for i in range(mib):
        importer.stdin.write(b"blob\nmark :%d\ndata %d\n%s\n" % (i + 1, 1 << 20, os.urandom(1 << 20)))
    importer.stdin.write(b"commit refs/heads/main\ncommitter A <a@b> 0 +0000\ndata 0\n")
    importer.stdin.write(b"".join(b"M 100644 :%d f%d\n" % (i + 1, i) for i in range(mib)))
    importer.stdin.close()
    assert importer.wait() == 0
    return git_text("rev-parse", "refs/heads/main", git_dir=git_dir)
