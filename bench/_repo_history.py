"""Source repositories for ``python -m bench.repo``: a synthesized history
(``git fast-import``, seconds for 10,000 commits) and a bare copy of the
project's own history. Synchronous: the bench drives git directly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENT = "A U Thor <author@example.com>"
EPOCH = 1_600_000_000


def git_env() -> dict[str, str]:
    """Our environment without ``GIT_*`` and without the person's git
    configuration: both sides of every comparison run the same git."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return env


def git(*args: str, git_dir: Path | None = None, input: bytes | None = None, timeout: float = 300) -> str:
    cmd = ["git", *([f"--git-dir={git_dir}"] if git_dir is not None else []), *args]
    done = subprocess.run(cmd, input=input, capture_output=True, env=git_env(), timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode().strip()


def refs_of(git_dir: Path, *prefixes: str) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", *prefixes, git_dir=git_dir)
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def _repack(path: Path) -> None:
    # One pack with good deltas, as a served repository has; no bitmap,
    # since Guts's storage has none either.
    git("-c", "repack.writeBitmaps=false", "repack", "-adq", git_dir=path, timeout=600)


def synthesize(path: Path, commits: int) -> int:
    """A bare repository with about ``commits`` commits (returns the exact
    count): ``main`` changing files in 60 source files over 12 directories,
    a topic branch every 100 commits (8 commits, merged back but for the
    last three), an annotated tag every 1,000 commits and a lightweight one
    every 250, and a ``release`` branch off an older commit."""
    git("init", "--bare", "--quiet", "--initial-branch=main", str(path))
    parts: list[bytes] = []
    mark = 0
    clock = EPOCH

    def data(payload: bytes) -> None:
        parts.append(b"data %d\n%s\n" % (len(payload), payload))

    def commit(ref: str, message: str, files: dict[str, bytes], parents: list[int]) -> int:
        nonlocal mark, clock
        mark += 1
        clock += 97
        parts.append(f"commit {ref}\nmark :{mark}\n".encode())
        parts.append(f"author {IDENT} {clock} +0100\ncommitter {IDENT} {clock} +0100\n".encode())
        data(message.encode())
        for index, parent in enumerate(parents):
            parts.append(f"{'from' if index == 0 else 'merge'} :{parent}\n".encode())
        for name, content in files.items():
            parts.append(f"M 100644 inline {name}\n".encode())
            data(content)
        return mark

    def body(i: int, n: int) -> bytes:
        # A file that grows and changes in place: deltas like a real one's.
        lines = [f"// file {n}: line {k} of revision {i - (i % (k + 3))}\n" for k in range(20 + n % 30 + i % 11)]
        return "".join(lines).encode()

    main = commit("refs/heads/main", "root", {"README": b"synthesized history\n"}, [])
    count = 1
    i = 0
    while count < commits:
        i += 1
        n = (i * 7) % 60
        main = commit("refs/heads/main", f"change {i}\n\nfile {n}", {f"src/d{n % 12}/f{n}.txt": body(i, n)}, [main])
        count += 1
        if i % 100 == 0:
            tip = main
            for j in range(8):
                tip = commit(f"refs/heads/topic/{i}", f"topic {i} step {j}", {f"topic/{i}.txt": body(j, i % 60)}, [tip])
                count += 1
            if commits - count > 300:
                main = commit("refs/heads/main", f"merge topic {i}", {}, [main, tip])
                count += 1
        if i % 1000 == 0:
            parts.append(f"tag v{i // 1000}.0\nfrom :{main}\ntagger {IDENT} {clock} +0100\n".encode())
            data(f"release {i // 1000}.0\n".encode())
        elif i % 250 == 0:
            parts.append(f"reset refs/tags/v{i // 1000}.{i % 1000 // 250}\nfrom :{main}\n\n".encode())
    commit("refs/heads/release", "release fix", {"RELEASE": b"1\n"}, [main - 50])
    count += 1
    git("fast-import", "--quiet", "--done", git_dir=path, input=b"".join(parts) + b"done\n", timeout=600)
    _repack(path)
    return count


def copy_project(root: Path, path: Path) -> int | None:
    """A bare copy of the repository at ``root`` (its branches and tags);
    returns its commit count, or ``None`` when it is shallow (a CI checkout
    of depth 1 has no history to measure)."""
    if git("rev-parse", "--is-shallow-repository", git_dir=root / ".git") == "true":
        return None
    git("clone", "--bare", "--quiet", "--no-local", str(root), str(path), timeout=600)
    _repack(path)
    return int(git("rev-list", "--all", "--count", git_dir=path))


def add_commit(path: Path, n: int) -> tuple[str, str]:
    """One new commit on ``main`` of the bare repository at ``path`` that
    changes one existing file (as a developer's commit does); returns
    (old tip, new tip)."""
    old = git("rev-parse", "refs/heads/main", git_dir=path)
    tree = git("ls-tree", "-r", old, git_dir=path).splitlines()
    blobs = [line.split(None, 3) for line in tree if line.split(None, 3)[1] == "blob"]
    mode, _, oid, name = max(blobs, key=lambda entry: (entry[3].count("/"), entry[3]))[:4]
    content = git("cat-file", "blob", oid, git_dir=path) + f"\nbench line {n}\n"
    blob = git("hash-object", "-w", "--stdin", git_dir=path, input=content.encode())
    index = path / "bench-index"
    env = {**git_env(), "GIT_INDEX_FILE": str(index), "GIT_DIR": str(path)}

    def run(*args: str, input: bytes | None = None) -> str:
        done = subprocess.run(["git", *args], input=input, capture_output=True, env=env, timeout=60, check=True)
        return done.stdout.decode().strip()

    run("read-tree", old)
    run("update-index", "--cacheinfo", f"{mode},{blob},{name}")
    new_tree = run("write-tree")
    index.unlink()
    stamp = f"{EPOCH + 10_000_000 + n} +0100"
    commit_env = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_NAME": "A U Thor",
                  "GIT_AUTHOR_EMAIL": "author@example.com", "GIT_COMMITTER_NAME": "A U Thor",
                  "GIT_COMMITTER_EMAIL": "author@example.com"}
    done = subprocess.run(
        ["git", "commit-tree", new_tree, "-p", old, "-m", f"bench commit {n}"],
        capture_output=True, env={**env, **commit_env}, timeout=60, check=True,
    )
    new = done.stdout.decode().strip()
    git("update-ref", "refs/heads/main", new, old, git_dir=path)
    return old, new
