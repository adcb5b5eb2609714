"""Neither node holds a pack in memory: two real ``guts start`` processes,
a history of 128 MiB of incompressible blobs synced from A to B, and
both nodes' RSS sampled from ``/proc`` while it passes. (``make bench``
measures the same with 1 GiB.)"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from .repo_helpers import git, random_blobs
from .test_cli import _start, run
from .test_cli_repo import run_in, stop

MIB = 128


def random_work_tree(path: Path, mib: int) -> str:
    """A work tree whose ``main`` is one commit of ``mib`` incompressible
    1 MiB blobs; its oid."""
    git("init", "--quiet", "--initial-branch=main", str(path))
    return random_blobs(path / ".git", mib)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def test_a_large_pack_passes_through_both_nodes_in_bounded_memory(tmp_path: Path) -> None:
    main = random_work_tree(tmp_path / "big", MIB)
    a = b = None
    try:
        a = _start(tmp_path / "a")
        assert a.stdout is not None
        ready = json.loads(a.stdout.readline())
        made = run_in(tmp_path / "big", "repo", "init", "--json", home=tmp_path / "a")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["rid"]
        b = _start(tmp_path / "b")
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        pids = {"a": a.pid, "b": b.pid}
        before = {name: rss_kib(pid) for name, pid in pids.items()}
        peak = dict(before)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for name, pid in pids.items():
                    peak[name] = max(peak[name], rss_kib(pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            synced = run("repo", "sync", rid, "--from", ready["addrs"][0], "--json", home=tmp_path / "b", timeout=120)
        finally:
            done.set()
            sampler.join()
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["repository"]["refs"]["refs/heads/main"] == main
        stored = sum(p.stat().st_size for p in (tmp_path / "b" / "storage" / rid).rglob("*.pack"))
        assert stored > MIB * 2**20  # the whole pack did pass
        growth = {name: (peak[name] - before[name]) / 1024 for name in pids}
        assert max(growth.values()) < 48, growth  # MiB, for a 128 MiB pack
    finally:
        for node in (a, b):
            if node is not None:
                stop(node)
