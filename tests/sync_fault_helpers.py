"""Real ``guts start`` nodes for the fault tests: started with their log in
a file, killed with ``SIGKILL``, restarted on the same home; and a ``git``
on the node's ``PATH`` that stops at a named step of a sync until the test
lets it go (or kills the node there).

These helpers are synchronous: the tests drive real processes, outside
any Trio loop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .repo_helpers import git, git_text
from .test_cli import GUTS

#: How long any one wait of these helpers may take.
WAIT = 20.0

#: The storage commands a test can stop ``git`` at, by what their arguments
#: hold (see guts.repo.storage for the order of a write). A step stops at
#: the first command that matches one of its patterns.
STEPS = {
    # After git fetch-pack: the layout's own objects indexed into the
    # quarantine, or the connectivity check; the peer's pack is whole there.
    "whole": ("index-pack --stdin --fix-thin --strict", "rev-list --objects --stdin"),
    # Storage.set_head of a new repository: objects moved in, no HEAD or ref written.
    "head": ("symbolic-ref HEAD",),
    # Storage.update_refs: the one ref transaction of an update.
    "refs": ("update-ref --no-deref --stdin",),
}


@dataclass
class Node:
    """A running ``guts start`` process."""

    home: Path
    process: subprocess.Popen[str]
    peer_id: str
    addr: str
    log: Path
    #: Where this run's lines start in ``log`` (a restart appends).
    log_start: int = 0

    def log_text(self) -> str:
        """What this run of the node logged."""
        with open(self.log, "rb") as file:
            file.seek(self.log_start)
            return file.read().decode(errors="replace")


def start_node(home: Path, env: dict[str, str] | None = None) -> Node:
    """``guts start --json`` on ``home``, its stderr (INFO logging) appended to
    ``<home>.log``; returns once the node says it is ready."""
    home.mkdir(parents=True, exist_ok=True)
    log = home.with_name(home.name + ".log")
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a", encoding="utf-8") as err:
        process = subprocess.Popen(
            [*GUTS, "start", "--json", "--listen", "/ip4/127.0.0.1/tcp/0"],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, **(env or {}), "GUTS_HOME": str(home)},
        )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=WAIT)
        raise AssertionError(f"the node on {home} did not start: {log.read_text()[-2000:]}")
    ready = json.loads(line)
    assert ready["event"] == "ready", ready
    return Node(home, process, ready["peer_id"], ready["addrs"][0], log, start)


def stop_node(node: Node) -> None:
    """Stop cleanly (SIGINT), as a person does."""
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGINT)
    assert node.process.wait(timeout=WAIT) == 0, node.log_text()[-2000:]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def kill9(node: Node, also: Iterable[int] = ()) -> set[int]:
    """``kill -9`` the node, then ``also`` (processes the test holds
    stopped); return the node's git processes, orphaned now."""
    orphans = descendants(node.process.pid)
    os.kill(node.process.pid, signal.SIGKILL)
    node.process.wait(timeout=WAIT)
    for pid in also:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return orphans


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT, every: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def guts(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUTS_HOME": str(home)}
    return subprocess.run([*GUTS, *args], capture_output=True, text=True, timeout=timeout, env=env)


def guts_json(home: Path, *args: str) -> dict[str, Any]:
    done = guts(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def listed(home: Path) -> dict[str, dict[str, Any]]:
    """``guts repo list --json``, by RID."""
    return {repo["rid"]: repo for repo in guts_json(home, "repo", "list")["repositories"]}


def fsck(path: Path) -> None:
    git("fsck", "--strict", "--no-progress", git_dir=path)


def crash_leftovers(storage: Path) -> list[Path]:
    """What a crash can leave under a storage root (see guts.repo.storage)."""
    found = [*storage.glob(".creating-*"), *storage.glob("*/objects/incoming-*")]
    found += [*storage.glob("*/objects/pack/tmp_*"), *storage.glob("*/refs/**/*.lock"), *storage.glob("*/*.lock")]
    return sorted(found)


class GitPauser:
    """A ``git`` first on the node's ``PATH`` that, while ``pause(step)``
    holds, stops each command of that step (:data:`STEPS`) before it runs,
    having written its pid to ``reached-<step>``; the real git runs when
    the pause is lifted. git's own subcommands go through its exec path,
    never through this one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        real = shutil.which("git")
        assert real is not None
        cases = "\n".join(
            "  " + "|".join(f'*" {args}"*' for args in patterns) + f") step={name} ;;"
            for name, patterns in STEPS.items()
        )
        script = bin_dir / "git"
        script.write_text(
            "#!/bin/sh\n"
            'step=""\n'
            f'case " $* " in\n{cases}\nesac\n'
            f'if [ -n "$step" ] && [ -e "{root}/pause-$step" ]; then\n'
            f'  echo $$ > "{root}/reached-$step.tmp" && mv "{root}/reached-$step.tmp" "{root}/reached-$step"\n'
            f'  while [ -e "{root}/pause-$step" ]; do sleep 0.05; done\n'
            "fi\n"
            f'exec {real} "$@"\n'
        )
        script.chmod(0o755)
        self.env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def pause(self, step: str) -> None:
        assert step in STEPS
        (self.root / f"reached-{step}").unlink(missing_ok=True)
        (self.root / f"pause-{step}").touch()

    def release(self, step: str) -> None:
        (self.root / f"pause-{step}").unlink(missing_ok=True)

    def reached(self, step: str) -> int | None:
        """The pid of the git stopped at ``step``, once one is."""
        try:
            return int((self.root / f"reached-{step}").read_text())
        except (OSError, ValueError):
            return None


def commit_big_files(work_tree: Path, count: int, size: int = 1 << 20, name: str = "big") -> str:
    """A commit on ``main`` of ``work_tree`` adding ``count`` files of random
    bytes (incompressible: the pack is at least ``count * size`` bytes)."""
    git_dir = work_tree / ".git"
    main = git_text("rev-parse", "refs/heads/main", git_dir=git_dir)
    entries = git_text("ls-tree", main, git_dir=git_dir).splitlines()
    for i in range(count):
        oid = git_text("hash-object", "-w", "--stdin", git_dir=git_dir, input=os.urandom(size))
        entries.append(f"100644 blob {oid}\t{name}{i}.bin")
    tree = git_text("mktree", git_dir=git_dir, input=("\n".join(entries) + "\n").encode())
    done = subprocess.run(
        ["git", "commit-tree", tree, "-p", main, "-m", f"add {count} files of random bytes"],
        env={**os.environ, "GIT_DIR": str(git_dir), "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
             "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com"},
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    commit = done.stdout.strip()
    git("update-ref", "refs/heads/main", commit, main, git_dir=git_dir)
    return commit
