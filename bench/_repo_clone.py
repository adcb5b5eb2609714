"""The clone rows of ``python -m bench.repo``: ``git clone guts://<RID>``
as a person runs it, against ``git clone git://`` from the bench's
``git daemon``.

* cold: through a fresh node B that is connected to A and has never seen
  the repository (``git-remote-guts`` has B fetch and verify it, then git
  clones from B), against ``git clone`` with fsck on, which Guts always
  does on what comes from a peer;
* warm: through a node that holds the repository (git's clone from the
  local node alone), against ``git clone`` with git's default (no fsck),
  the same setting as the person's own git in the warm case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench._procs import MeasureError
from bench._repo_history import git_env, refs_of
from bench._wire import median

FSCK = ["-c", "transfer.fsckObjects=true"]


def person_env(home: Path) -> dict[str, str]:
    """git's environment with this node's home and git-remote-guts (beside
    this Python) on ``PATH``."""
    env = git_env()
    env["GUTS_HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _clone(args: list[str], env: dict[str, str], where: Path, cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(["git", *args, str(where)], capture_output=True, env=env, cwd=cwd, timeout=600)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise MeasureError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()[-2000:]}")
    return seconds


def _wait_connected(api: Callable[..., tuple[float, Any]], home: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _, status = api(home, "GET", "/v1/status")
        if status.get("connections"):
            return
        if time.monotonic() > deadline:
            raise MeasureError("node B did not connect to A")
        time.sleep(0.05)


def clones(
    key: str,
    rid: str,
    want: dict[str, str],
    a_addr: str,
    url: str,
    tmp: Path,
    runs: int,
    node: Callable[..., Any],
    api: Callable[..., tuple[float, Any]],
) -> dict[str, Any]:
    """``runs`` cold clones (each through a fresh node B), then as many
    warm ones through the last B, each beside git's; medians and runs."""
    results: list[dict[str, float]] = []
    for run in range(runs):
        home = tmp / f"clone-b-{key}-{run}"
        with node(home, f"repo-node-b-{key}-clone", "--bootstrap", a_addr):
            _wait_connected(api, home)
            env = person_env(home)
            where = tmp / f"clone-{key}"
            cold = _clone(["clone", "-q", f"guts://{rid}"], env, where, tmp)
            got = refs_of(where / ".git", "refs/remotes/origin/", "refs/tags/")
            expected = {n.replace("refs/heads/", "refs/remotes/origin/"): o for n, o in want.items()}
            if {n: o for n, o in got.items() if n != "refs/remotes/origin/HEAD"} != expected:
                raise MeasureError(f"{key}: the clone through B differs from the source's refs")
            shutil.rmtree(where)
            warm = _clone(["clone", "-q", f"guts://{rid}"], env, where, tmp)
            shutil.rmtree(where)
        shutil.rmtree(home)
        git_fsck = _clone([*FSCK, "clone", "-q", f"{url}/{key}.git"], git_env(), where, tmp)
        shutil.rmtree(where)
        git_plain = _clone(["clone", "-q", f"{url}/{key}.git"], git_env(), where, tmp)
        shutil.rmtree(where)
        results.append({"cold_s": cold, "warm_s": warm, "git_fsck_s": git_fsck, "git_s": git_plain})
        print(f"    clone {run + 1}: guts:// cold {cold:.3f} s, warm {warm:.3f} s; git:// (fsck) {git_fsck:.3f} s,"
              f" git:// {git_plain:.3f} s", flush=True)  # fmt: skip
    return {k: median([r[k] for r in results]) for k in results[0]} | {"runs": results}
