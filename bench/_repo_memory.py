"""The memory row of ``python -m bench.repo``: both nodes' RSS while a
large pack passes from A to B (``guts repo sync``), sampled from
``/proc/<pid>/status`` every 20 ms, against each node's RSS just before.

The history is one commit of incompressible 1 MiB blobs, made with
``git fast-import`` and stored undeflated, so the pack on the wire is
about as large as the blobs. Neither node may hold the pack: A streams
``git upload-pack``'s output through Noise and yamux, B streams it into
``git fetch-pack`` in a quarantine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from bench._procs import MeasureError
from bench._repo_history import git_env


def random_history(path: Path, mib: int) -> None:
    """A repository at ``path`` (a work tree) whose ``main`` holds ``mib``
    incompressible blobs of 1 MiB."""
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(path)], check=True, env=git_env())
    fast = ["git", "-c", "core.compression=0", "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet"]
    env = {**git_env(), "GIT_DIR": str(path / ".git")}
    importer = subprocess.Popen(fast, stdin=subprocess.PIPE, env=env)
    assert importer.stdin is not None
    for i in range(mib):
        importer.stdin.write(b"blob\nmark :%d\ndata %d\n%s\n" % (i + 1, 1 << 20, os.urandom(1 << 20)))
    importer.stdin.write(b"commit refs/heads/main\ncommitter A <a@b> 0 +0000\ndata 0\n")
    importer.stdin.write(b"".join(b"M 100644 :%d f%d\n" % (i + 1, i) for i in range(mib)))
    importer.stdin.close()
    if importer.wait() != 0:
        raise MeasureError("git fast-import failed")


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


class Sampler:
    """The peak RSS of some processes, sampled on a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.before = {name: rss_kib(pid) for name, pid in pids.items()}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_kib(pid))
                except (OSError, StopIteration):
                    pass
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def memory(
    mib: int,
    tmp: Path,
    node: Callable[..., Any],
    guts: Callable[..., tuple[float, Any]],
) -> dict[str, Any]:
    """A ``mib`` MiB history on a node A, synced by a fresh node B: each
    node's RSS before and at its peak during the sync, and the time."""
    source = tmp / "big"
    t0 = time.monotonic()
    random_history(source, mib)
    print(f"    {mib} MiB of random blobs made in {time.monotonic() - t0:.1f} s", flush=True)
    try:
        with node(tmp / "big-a", "repo-node-a-memory") as a, node(tmp / "big-b", "repo-node-b-memory") as b:
            _, made = guts(tmp / "big-a", "repo", "init", str(source))
            with Sampler({"a": a["pid"], "b": b["pid"]}) as sampler:
                seconds, answer = guts(tmp / "big-b", "repo", "sync", made["rid"], "--from", a["addrs"][0])
            if not answer["repository"]["refs"]:
                raise MeasureError("B holds no refs after the big sync")
            pack_bytes = sum(p.stat().st_size for p in (tmp / "big-b" / "storage" / made["rid"]).rglob("*.pack"))
    finally:
        for path in (source, tmp / "big-a", tmp / "big-b"):
            shutil.rmtree(path, ignore_errors=True)
    out = {"mib": mib, "seconds": seconds, "pack_bytes": pack_bytes}
    for name in ("a", "b"):
        out[f"{name}_before_kib"] = sampler.before[name]
        out[f"{name}_peak_kib"] = sampler.peak[name]
    print(f"    {pack_bytes / 2**20:.0f} MiB synced in {seconds:.1f} s; RSS growth A {_growth(out, 'a')},"
          f" B {_growth(out, 'b')}", flush=True)  # fmt: skip
    return out


def _growth(out: dict[str, Any], name: str) -> str:
    return f"{(out[f'{name}_peak_kib'] - out[f'{name}_before_kib']) / 1024:.1f} MiB"


def growth_mib(out: dict[str, Any], name: str) -> float:
    return float(out[f"{name}_peak_kib"] - out[f"{name}_before_kib"]) / 1024
