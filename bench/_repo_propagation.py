"""The propagation row of ``python -m bench.repo``: a one-commit ``git push``
through node A until the new state is in node B's storage, B having run
no command (it follows the repository since it cloned it).

Times, per push: from the start of ``git push`` and from its end (A has
signed and announced by then) until B's control API shows the new
canonical ``main`` (polled every 5 ms from the bench's process).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from bench._procs import MeasureError
from bench._repo_clone import person_env
from bench._repo_history import git_env
from bench._wire import median


def _git(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], capture_output=True, env=env, cwd=cwd, timeout=120)
    if done.returncode != 0:
        raise MeasureError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')[-1000:]}")
    return done.stdout.decode().strip()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def propagation(
    tmp: Path, pushes: int, node: Callable[..., Any], guts: Callable[..., tuple[float, Any]]
) -> dict[str, Any]:
    """``pushes`` one-commit pushes on A, each timed until B has it."""
    from guts.control.blocking import BlockingControlClient

    work = tmp / "prop-work"
    env = {**git_env(), "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com"}  # fmt: skip
    _git(env, "init", "-q", "--initial-branch=main", str(work))
    (work / "file").write_text("0\n")
    _git(env, "add", "file", cwd=work)
    _git(env, "commit", "-qm", "first", cwd=work)
    runs: list[dict[str, float]] = []
    try:
        with node(tmp / "prop-a", "repo-node-a-propagation") as a:
            _, made = guts(tmp / "prop-a", "repo", "init", str(work))
            rid = made["rid"]
            with node(tmp / "prop-b", "repo-node-b-propagation", "--bootstrap", a["addrs"][0]):
                b_env, a_env = person_env(tmp / "prop-b"), {**env, **person_env(tmp / "prop-a")}
                deadline = time.monotonic() + 20
                while subprocess.run(["git", "clone", "-q", f"guts://{rid}", str(tmp / "prop-clone")],
                                     capture_output=True, env=b_env, cwd=tmp).returncode != 0:  # fmt: skip
                    if time.monotonic() > deadline:
                        raise MeasureError("B could not clone the repository from A")
                    time.sleep(0.2)
                time.sleep(1.5)  # a gossip heartbeat: A learns that B follows the topic
                client = BlockingControlClient(tmp / "prop-b" / "control.sock")
                for n in range(pushes):
                    (work / "file").write_text(f"{n + 1}\n")
                    _git(env, "commit", "-qam", f"change {n + 1}", cwd=work)
                    new = _git(env, "rev-parse", "HEAD", cwd=work)
                    t0 = time.perf_counter()
                    _git(a_env, "push", "-q", "guts", "main", cwd=work)
                    t1 = time.perf_counter()
                    while client.call("GET", f"/v1/repo/show?rid={rid}")["refs"].get("refs/heads/main") != new:
                        if time.perf_counter() - t1 > 10:
                            raise MeasureError(f"push {n + 1} did not reach B within 10 s")
                        time.sleep(0.005)
                    t2 = time.perf_counter()
                    runs.append({"push_s": t1 - t0, "after_push_s": t2 - t1, "total_s": t2 - t0})
    finally:
        for path in (work, tmp / "prop-a", tmp / "prop-b", tmp / "prop-clone"):
            shutil.rmtree(path, ignore_errors=True)
    out: dict[str, Any] = {"pushes": pushes, "runs": runs}
    for key in ("push_s", "after_push_s", "total_s"):
        out[key] = median([r[key] for r in runs])
        out[f"{key}_p99"] = _p99([r[key] for r in runs])
    print(f"    {pushes} pushes: after the push {out['after_push_s'] * 1000:.0f} ms median"
          f" ({out['after_push_s_p99'] * 1000:.0f} ms p99); git push itself {out['push_s'] * 1000:.0f} ms",
          flush=True)  # fmt: skip
    return out

