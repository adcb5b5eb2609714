"""Repository rows: ``python -m bench.repo [--quick] [--write]`` (also the
last part of ``python -m bench``).

Guts beside git itself, in the same run, on a synthesized history of
10,000 commits and on the project's own history:

* replication: ``guts repo sync RID --from A`` on a fresh node B (two
  ``guts start`` processes) against ``git clone --mirror`` from a
  ``git daemon`` serving the same repository, with fsck of the received
  objects on (as Guts always does) and off;
* one new commit: A publishes it, B syncs it, against ``git fetch`` into
  the mirror: time and pack bytes;
* a sync with nothing new against a ``git fetch`` with nothing new;
* ``git clone guts://<RID>`` through a node that never saw the repository
  (cold) and through one that holds it (warm), against ``git clone
  git://`` (``bench/_repo_clone.py``).

See bench/README.md. ``--write`` rewrites the ``bench:repo`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import _procs, _report
from bench._procs import ROOT, STATE_DIR, MeasureError
from bench._repo_clone import clones
from bench._repo_memory import growth_mib, memory
from bench._repo_propagation import propagation
from bench._repo_history import add_commit, copy_project, git, git_env, refs_of, synthesize
from bench._sections import write_section
from bench._wire import median

RESULTS = STATE_DIR / "repo-results.json"
GUTS = [sys.executable, "-m", "guts.cli"]
FSCK = ["-c", "transfer.fsckObjects=true"]


@dataclass(frozen=True)
class Profile:
    commits: int
    runs: int  # cold replications per source (each on a fresh node B)
    fetch_runs: int  # one-commit fetches per source
    memory_mib: int = 1024  # the history whose sync the memory row watches


FULL = Profile(commits=10_000, runs=3, fetch_runs=5)
QUICK = Profile(commits=2_000, runs=1, fetch_runs=2, memory_mib=64)


def _timed(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[float, str]:
    """Run ``cmd``; (wall seconds, stdout). Raises MeasureError on failure."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, env=env or git_env(), timeout=timeout, cwd=STATE_DIR)
    except subprocess.TimeoutExpired:
        raise MeasureError(f"{' '.join(cmd[:6])} ... timed out after {timeout:.0f} s") from None
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise MeasureError(f"{' '.join(cmd)}: {done.stderr.decode(errors='replace').strip()[-2000:]}")
    return seconds, done.stdout.decode()


def _guts(home: Path, *args: str, timeout: float = 600) -> tuple[float, Any]:
    seconds, out = _timed([*GUTS, *args, "--json", "--home", str(home)], env=_procs.child_env(), timeout=timeout)
    return seconds, json.loads(out)


def _api(home: Path, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[float, Any]:
    """The same request through the control API from this process: the
    node's own time, without the command's start-up."""
    import trio

    from guts.control import ControlClient

    client = ControlClient(home / "control.sock")
    t0 = time.perf_counter()
    answer = trio.run(client.call, method, path, body)
    return time.perf_counter() - t0, answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """A ``git daemon`` serving every repository under ``base``; yields its
    ``git://127.0.0.1:PORT`` and kills it at the end."""
    port = _free_port()
    _procs.LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(_procs.LOG_DIR / "repo-git-daemon.log", "wb") as log:
        proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", f"--base-path={base}",
             "--export-all", "--informative-errors", str(base)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=git_env(),
        )  # fmt: skip
    _procs._live.add(proc)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_tail = _procs.tail(_procs.LOG_DIR / "repo-git-daemon.log")
                    raise MeasureError(f"git daemon did not start\n{log_tail}")
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        _procs._stop(proc, grace=0.1)


def _node(home: Path, name: str, *extra: str) -> Any:
    command = [*GUTS, "start", "--listen", "/ip4/127.0.0.1/tcp/0", "--json", "--home", str(home), *extra]
    # grace: ``guts start`` stops on SIGTERM (sent after it), not at the end of its stdin
    return _procs.server(Path(sys.executable), "", name, command=command, grace=0.1)


class PublishingNode:
    """Node A for the one-commit rows (``bench/_repo_node.py``): publishes
    a new commit on request."""

    def __init__(self, home: Path) -> None:
        _procs.LOG_DIR.mkdir(parents=True, exist_ok=True)
        with open(_procs.LOG_DIR / "repo-node-a.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(_procs.BENCH_DIR / "_repo_node.py"), str(home)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=_procs.child_env(),
            )  # fmt: skip
        _procs._live.add(self.proc)
        ready = self._line(60)
        self.addr: str = ready["addrs"][0]

    def _line(self, timeout: float) -> dict[str, Any]:
        # one line per request: reading the pipe unbuffered loses nothing
        return _procs._read_ready(self.proc, timeout, _procs.LOG_DIR / "repo-node-a.log")

    def publish(self, rid: str, source: Path, pack: Path) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"rid": rid, "source": str(source), "pack": str(pack)}).encode() + b"\n")
        self.proc.stdin.flush()
        seconds: float = self._line(120)["seconds"]
        return seconds

    def close(self) -> None:
        _procs._stop(self.proc, grace=5.0)


def _packs(objects: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (objects / "pack").glob("*.pack")}


def _pack_sizes(objects: Path, names: list[str]) -> dict[str, int]:
    """Each object of these packs: its bytes in the pack (``verify-pack -v``)."""
    sizes: dict[str, int] = {}
    for name in names:
        out = subprocess.run(["git", "verify-pack", "-v", str((objects / "pack" / name).with_suffix(".idx"))],
                             capture_output=True, check=True, env=git_env()).stdout.decode()  # fmt: skip
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 5 and len(fields[0]) == 40 and fields[1] in ("commit", "tree", "blob", "tag"):
                sizes[fields[0]] = int(fields[3])
    return sizes


def _pack_objects(objects: Path, names: list[str]) -> int:
    total = 0
    for name in names:
        idx = (objects / "pack" / name).with_suffix(".idx")
        with open(idx, "rb") as f:
            listed = subprocess.run(["git", "show-index"], stdin=f, capture_output=True, check=True).stdout
            total += len(listed.splitlines())
    return total


@dataclass
class Source:
    key: str
    title: str
    path: Path
    commits: int


def replicate(source: Source, rid: str, a_addr: str, url: str, tmp: Path, p: Profile) -> dict[str, Any]:
    """Cold replication, ``p.runs`` times: Guts on a fresh node B, git
    into a fresh mirror with and without fsck."""
    runs: list[dict[str, Any]] = []
    want = refs_of(source.path, "refs/heads/", "refs/tags/")
    for run in range(p.runs):
        home = tmp / f"b-{source.key}-{run}"
        with _node(home, f"repo-node-b-{source.key}"):
            guts_s, answer = _guts(home, "repo", "sync", rid, "--from", a_addr)
            if answer["repository"]["refs"] != want:
                raise MeasureError(f"{source.key}: B's canonical refs differ from the source's after the sync")
            cli_s = median([_guts(home, "status")[0] for _ in range(3)])
        shutil.rmtree(home)
        with _node(home, f"repo-node-b-{source.key}-api"):
            api_s, answer = _api(home, "POST", "/v1/repo/sync", {"rid": rid, "peer": a_addr})
            if answer["repository"]["refs"] != want:
                raise MeasureError(f"{source.key}: B's canonical refs differ from the source's after the sync")
        shutil.rmtree(home)
        mirror = tmp / f"mirror-{source.key}"
        git_fsck_s, _ = _timed(["git", *FSCK, "clone", "--mirror", "-q", f"{url}/{source.key}.git", str(mirror)])
        if refs_of(mirror, "refs/heads/", "refs/tags/") != want:
            raise MeasureError(f"{source.key}: the mirror's refs differ from the source's")
        shutil.rmtree(mirror)
        git_s, _ = _timed(["git", "clone", "--mirror", "-q", f"{url}/{source.key}.git", str(mirror)])
        shutil.rmtree(mirror)
        runs.append({"guts_s": guts_s, "guts_api_s": api_s, "git_fsck_s": git_fsck_s, "git_s": git_s,
                     "guts_cli_s": cli_s})  # fmt: skip
        print(f"    run {run + 1}: guts {guts_s:.3f} s (API {api_s:.3f} s), git (fsck) {git_fsck_s:.3f} s,"
              f" git {git_s:.3f} s", flush=True)
    return {k: median([r[k] for r in runs]) for k in runs[0]} | {"runs": runs}


def phases(source: Source, rid: str, a_addr: str, tmp: Path, p: Profile) -> dict[str, Any]:
    """Where a cold replication's time goes (``bench/_repo_phases.py``: B's
    fetch in one process, its phases timed), median of ``p.runs``."""
    runs = []
    for run in range(p.runs):
        home = tmp / f"phases-{source.key}-{run}"
        _, out = _timed([sys.executable, str(_procs.BENCH_DIR / "_repo_phases.py"), str(home), a_addr, rid],
                        env=_procs.child_env(), timeout=600)  # fmt: skip
        runs.append(json.loads(out.splitlines()[-1]))
        shutil.rmtree(home, ignore_errors=True)
    keys = sorted({k for r in runs for k in r})
    return {k: median([r.get(k, 0.0) for r in runs]) for k in keys}


def one_commit(
    source: Source, rid: str, node_a: PublishingNode, url: str, tmp: Path, p: Profile
) -> dict[str, Any]:
    """B (fresh, synced untimed) and a mirror (cloned untimed) fetch one
    new commit A published, ``p.fetch_runs`` times; then a fetch with
    nothing new."""
    home = tmp / f"b-{source.key}"
    mirror = tmp / f"mirror-{source.key}"
    runs: list[dict[str, Any]] = []
    with _node(home, f"repo-node-b-{source.key}-fetch"):
        _guts(home, "repo", "sync", rid, "--from", node_a.addr)  # untimed: the history, and the connection
        _timed(["git", *FSCK, "clone", "--mirror", "-q", f"{url}/{source.key}.git", str(mirror)])
        b_objects = home / "storage" / rid / "objects"
        for run in range(2 * p.fetch_runs):
            via_api = run % 2 == 1  # every other commit through the control API, without the command
            old, new = add_commit(source.path, run)
            pack = tmp / "new.pack"
            pack.write_bytes(subprocess.run(
                ["git", f"--git-dir={source.path}", "pack-objects", "--revs", "--stdout", "--quiet"],
                input=f"{new}\n^{old}\n".encode(), capture_output=True, check=True, env=git_env(),
            ).stdout)  # fmt: skip
            node_a.publish(rid, source.path, pack)
            before = _packs(b_objects)
            if via_api:
                guts_s, answer = _api(home, "POST", "/v1/repo/sync", {"rid": rid, "peer": node_a.addr})
            else:
                guts_s, answer = _guts(home, "repo", "sync", rid, "--from", node_a.addr)
            if answer["repository"]["refs"].get("refs/heads/main") != new:
                raise MeasureError(f"{source.key}: B did not get the new commit")
            after = _packs(b_objects)
            fresh = sorted(set(after) - set(before))
            trace = tmp / "packfile"
            mirror_before = _packs(mirror / "objects")
            env = {**git_env(), "GIT_TRACE_PACKFILE": str(trace)}
            git_s, _ = _timed(["git", *FSCK, "-c", "fetch.unpackLimit=1", "-C", str(mirror), "fetch", "-q"], env=env)
            mirror_fresh = sorted(set(_packs(mirror / "objects")) - set(mirror_before))
            if git("rev-parse", "refs/heads/main", git_dir=mirror) != new:
                raise MeasureError(f"{source.key}: the mirror did not get the new commit")
            in_guts, in_git = _pack_sizes(b_objects, fresh), _pack_sizes(mirror / "objects", mirror_fresh)
            runs.append({
                "via": "api" if via_api else "command",
                # the objects both packs hold, and Guts's own (its signed refs commit)
                "guts_shared_bytes": sum(n for oid, n in in_guts.items() if oid in in_git),
                "git_shared_bytes": sum(n for oid, n in in_git.items() if oid in in_guts),
                "guts_own_bytes": sum(n for oid, n in in_guts.items() if oid not in in_git),
                "guts_s": guts_s,
                "git_s": git_s,
                "guts_pack_bytes": sum(after[n] for n in fresh),
                "guts_pack_objects": _pack_objects(b_objects, fresh),
                "git_pack_bytes": sum(_packs(mirror / "objects")[n] for n in mirror_fresh),
                "git_pack_objects": _pack_objects(mirror / "objects", mirror_fresh),
                "git_wire_bytes": trace.stat().st_size if trace.exists() else 0,
                "guts_wire_bytes": int(answer.get("received", 0)),
            })  # fmt: skip
            trace.unlink(missing_ok=True)
            r = runs[-1]
            print(f"    commit {run + 1}: guts {'API' if via_api else 'command'} {guts_s * 1000:.0f} ms,"
                  f" {r['guts_pack_bytes']} B ({r['guts_pack_objects']} objects); git {git_s * 1000:.0f} ms,"
                  f" {r['git_pack_bytes']} B ({r['git_pack_objects']} objects, {r['git_wire_bytes']} B on the wire)",
                  flush=True)  # fmt: skip
        noop = [(_guts(home, "repo", "sync", rid, "--from", node_a.addr)[0],
                 _api(home, "POST", "/v1/repo/sync", {"rid": rid, "peer": node_a.addr})[0],
                 _timed(["git", *FSCK, "-C", str(mirror), "fetch", "-q"])[0]) for _ in range(3)]  # fmt: skip
        cli_s = median([_guts(home, "status")[0] for _ in range(3)])
    out: dict[str, Any] = {k: median([r[k] for r in runs]) for k in runs[0] if k != "via"}
    out["guts_s"] = median([r["guts_s"] for r in runs if r["via"] == "command"])
    out["guts_api_s"] = median([r["guts_s"] for r in runs if r["via"] == "api"])
    out |= {"noop_guts_s": median([n[0] for n in noop]), "noop_guts_api_s": median([n[1] for n in noop]),
            "noop_git_s": median([n[2] for n in noop]),
            "guts_cli_s": cli_s, "runs": runs}  # fmt: skip
    return out


def measure(p: Profile, tmp: Path) -> dict[str, Any]:
    src = tmp / "src"
    src.mkdir()
    sources: list[Source] = []
    t0 = time.monotonic()
    count = synthesize(src / "synth.git", p.commits)
    sources.append(Source("synth", f"synthesized, {count:,} commits", src / "synth.git", count))
    project = copy_project(ROOT, src / "project.git")
    if project is None:
        print("  the project's repository is shallow: no row for its history", flush=True)
    else:
        sources.append(Source("project", f"this project, {project:,} commits", src / "project.git", project))
    print(f"  sources built in {time.monotonic() - t0:.1f} s", flush=True)
    results: dict[str, Any] = {}
    rids: dict[str, str] = {}
    with ExitStack() as stack:
        url = stack.enter_context(git_daemon(src))
        with _node(tmp / "a", "repo-node-a-start") as ready:
            a_addr = ready["addrs"][0]
            for source in sources:
                init_s, made = _guts(tmp / "a", "repo", "init", str(source.path))
                rids[source.key] = made["rid"]
                objects = int(git("count-objects", "-v", git_dir=source.path).split("in-pack: ")[1].split()[0])
                results[source.key] = {"title": source.title, "commits": source.commits, "objects": objects,
                                       "refs": len(made["refs"]), "init_s": init_s}  # fmt: skip
                print(f"  [{source.title}] replication (init on A took {init_s:.2f} s) ...", flush=True)
                results[source.key]["replication"] = replicate(source, made["rid"], a_addr, url, tmp, p)
                print(f"  [{source.title}] git clone guts:// ...", flush=True)
                want = refs_of(source.path, "refs/heads/", "refs/tags/")
                results[source.key]["clone"] = clones(
                    source.key, made["rid"], want, a_addr, url, tmp, p.runs, _node, _api
                )
                try:
                    results[source.key]["phases"] = phases(source, made["rid"], a_addr, tmp, p)
                except (MeasureError, ValueError, KeyError) as exc:  # a note less, the figures stay
                    print(f"    where the time goes: FAILED\n{exc}", flush=True)
        node_a = PublishingNode(tmp / "a")
        try:
            for source in sources:
                print(f"  [{source.title}] one new commit ...", flush=True)
                results[source.key]["one_commit"] = one_commit(source, rids[source.key], node_a, url, tmp, p)
        finally:
            node_a.close()
    print("  [one-commit pushes] propagation to a following node ...", flush=True)
    try:
        results["propagation"] = propagation(tmp, p.fetch_runs * 4, _node, _guts)
    except (MeasureError, OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
        results["propagation"] = {"error": str(exc)}
    print(f"  [{p.memory_mib:,} MiB of random blobs] memory while it syncs ...", flush=True)
    try:
        results["memory"] = memory(p.memory_mib, tmp, _node, _guts)
    except (MeasureError, OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
        results["memory"] = {"error": str(exc)}
    return results


# -- report ------------------------------------------------------------------------


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table_rows(record: dict[str, Any], *, markdown: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    ok, bad = ("✅", "❌") if markdown else ("✓", "✗")
    for key, res in record["results"].items():
        if "error" in res:
            rows.append((f"{key}: failed", "—", "—", "—", "—"))
            continue
        if key == "propagation":
            after = res["after_push_s"]
            rows.append((
                f"propagation: one-commit `git push` on A until it is in B's storage (B follows, runs nothing),"
                f" after the push returns, median (p99) of {res['pushes']}",
                f"{_s(after)} ({_s(res['after_push_s_p99'])})", "", "",
                f"≤ 250 ms + pack {ok if after <= 0.25 else bad}",
            ))  # fmt: skip
            rows.append((f"… from the start of `git push` (its own {_s(res['push_s'])} included)",
                         f"{_s(res['total_s'])} ({_s(res['total_s_p99'])})", "", "", ""))
            continue
        if key == "memory":
            worst = max(growth_mib(res, "a"), growth_mib(res, "b"))
            rows.append((
                f"RSS growth while a {res['pack_bytes'] / 2**20:,.0f} MiB pack syncs (`guts repo sync`, "
                f"{_s(res['seconds'])}): A (serving) / B (fetching)",
                f"{growth_mib(res, 'a'):.1f} / {growth_mib(res, 'b'):.1f} MiB", "", "",
                f"≤ 50 MiB {ok if worst <= 50 else bad}",
            ))  # fmt: skip
            continue
        rep, one = res.get("replication"), res.get("one_commit")
        title = res["title"]
        if rep:
            ratio = rep["guts_s"] / rep["git_fsck_s"]
            rows.append((
                f"replication, {title}: `guts repo sync` / `git clone --mirror` (fsck on)",
                _s(rep["guts_s"]), _s(rep["git_fsck_s"]), f"{ratio:.2f}×",
                f"≤ 1.2× {ok if ratio <= 1.2 else bad}",
            ))  # fmt: skip
            rows.append(("… the node alone (control API, no command start-up)", _s(rep["guts_api_s"]),
                         _s(rep["git_fsck_s"]), f"{rep['guts_api_s'] / rep['git_fsck_s']:.2f}×", ""))
            rows.append(("… git without fsck", "", _s(rep["git_s"]), f"{rep['guts_s'] / rep['git_s']:.2f}×", ""))
        cl = res.get("clone")
        if cl:
            ratio = cl["cold_s"] / cl["git_fsck_s"]
            rows.append((
                f"cold clone, {title}: `git clone guts://` (a node that never saw it) / `git clone git://` (fsck on)",
                _s(cl["cold_s"]), _s(cl["git_fsck_s"]), f"{ratio:.2f}×", f"≤ 1.3× {ok if ratio <= 1.3 else bad}",
            ))  # fmt: skip
            rows.append(("… warm: `git clone guts://` through a node that holds it / `git clone git://`",
                         _s(cl["warm_s"]), _s(cl["git_s"]), f"{cl['warm_s'] / cl['git_s']:.2f}×", ""))
        if one:
            gap = one["guts_s"] - one["git_s"]
            rows.append((
                f"one new commit, {title}: `guts repo sync` / `git fetch`",
                _s(one["guts_s"]), _s(one["git_s"]), f"{gap * 1000:+.0f} ms",
                f"≤ +20 ms {ok if gap <= 0.020 else bad}",
            ))  # fmt: skip
            api_gap = one["guts_api_s"] - one["git_s"]
            rows.append(("… the node alone (control API)", _s(one["guts_api_s"]), _s(one["git_s"]),
                         f"{api_gap * 1000:+.0f} ms", ""))
            rows.append((
                "… its pack (stored; objects)",
                f"{one['guts_pack_bytes']:,.0f} B ({one['guts_pack_objects']:g} objects)",
                f"{one['git_pack_bytes']:,.0f} B ({one['git_pack_objects']:g} objects)",
                f"{one['guts_pack_bytes'] / max(1, one['git_pack_bytes']):.2f}×",
                "",
            ))  # fmt: skip
            if "guts_wire_bytes" in one:
                rows.append((
                    "… on the wire (Guts: upload-pack's whole responses, pkt-line framing included; git: the pack)",
                    f"{one['guts_wire_bytes']:,.0f} B", f"{one['git_wire_bytes']:,.0f} B",
                    f"{one['guts_wire_bytes'] / max(1, one['git_wire_bytes']):.2f}×",
                    f"same size, ±10% {ok if one['guts_wire_bytes'] <= 1.1 * one['git_wire_bytes'] else bad}",
                ))  # fmt: skip
            if "guts_shared_bytes" in one:
                rows.append((
                    "… of which the same objects / Guts's signed refs",
                    f"{one['guts_shared_bytes']:,.0f} B / {one['guts_own_bytes']:,.0f} B",
                    f"{one['git_shared_bytes']:,.0f} B", "", "",
                ))  # fmt: skip
            rows.append(("… nothing new: sync / fetch", _s(one["noop_guts_s"]), _s(one["noop_git_s"]),
                         f"{(one['noop_guts_s'] - one['noop_git_s']) * 1000:+.0f} ms", ""))  # fmt: skip
            rows.append(("… nothing new, the node alone (control API)", _s(one["noop_guts_api_s"]),
                         _s(one["noop_git_s"]), f"{(one['noop_guts_api_s'] - one['noop_git_s']) * 1000:+.0f} ms", ""))
    if not markdown:
        rows = [tuple(c.replace("`", "") for c in r) for r in rows]
    return rows


PHASES = (
    ("get_refs", "GetRefs"),
    ("fetch_pack", "the pack (A's upload-pack through Noise and yamux into B's fetch-pack and index-pack --strict)"),
    ("connectivity", "the connectivity check (rev-list --objects)"),
    ("migrate", "moving the objects out of the quarantine"),
    ("canonical", "the canonical refs"),
    ("write_refs", "the update-ref transaction"),
)

HEADER = ("figure", "Guts", "git", "Guts / git", "target")


def text_table(record: dict[str, Any]) -> str:
    rows = [HEADER, *table_rows(record, markdown=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(rows):
        lines.append(" | ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines + ["", *notes(record)])


def notes(record: dict[str, Any]) -> list[str]:
    out = []
    for key, res in record["results"].items():
        if "error" in res:
            out.append(f"{key} failed: {_report.error_summary(res['error'])}")
            continue
        cli = res.get("one_commit", {}).get("guts_cli_s") or res.get("replication", {}).get("guts_cli_s")
        if cli:
            out.append(
                f"{res['title']}: {res['objects']:,} objects, {res['refs']} {'ref' if res['refs'] == 1 else 'refs'}"
                f" (branches and tags); `guts repo init`"
                f" on A {_s(res['init_s'])}. Of each `guts` figure, {_s(cli)} is the command itself"
                " (`guts status --json` against the same node: Python start-up, imports, the control socket)."
            )
    for key, res in record["results"].items():
        ph = res.get("phases")
        if ph:
            parts = ", ".join(f"{name} {_s(ph.get(k, 0.0))}" for k, name in PHASES)
            rest = ph["total"] - sum(ph.get(k, 0.0) for k, _ in PHASES)
            out.append(
                f"Where a replication's time goes ({res['title']}; B's fetch alone, timed in one process:"
                f" {_s(ph['total'])}): {parts}, the rest {_s(rest)} (decoding and verifying the signed state,"
                " the quarantine, the sync streams)."
            )
    if record.get("quick"):
        out.append("QUICK RUN: a smaller history and fewer runs; not for the record.")
    return out


def markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    rows = table_rows(record, markdown=True)
    lines = [
        f"Measured {record['date']} at Guts commit `{m['commit']}` with `python -m bench.repo --write`"
        f" (git {record['git_version']}); {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['kernel']},"
        f" Python {m['python']}. Load average {record['load_before']:.2f} before, {record['load_after']:.2f} after.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "| --- | ---: | ---: | ---: | --- |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        *(f"- {n}" for n in notes(record)),
        "",
        "Medians of several runs. Guts: two `guts start` nodes on loopback, B fresh for each replication;"
        " git: `git daemon` on loopback serving the same repository as A's source. Replication compares with"
        " fsck on (`-c transfer.fsckObjects=true`), which Guts always does; one new commit and nothing new"
        " are fetched with fsck on both sides. Pack sizes are of the pack as stored (both with unpackLimit=1,"
        " thin packs completed by index-pack); Guts's carries its signed refs commit as well."
        " How it is measured: [bench/README.md](bench/README.md#repositories-guts-beside-git).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.repo", description="Guts repositories beside git.")
    parser.add_argument("--quick", action="store_true", help="2,000 commits, fewer runs: a smoke check")
    parser.add_argument("--write", action="store_true", help="rewrite the bench:repo section of BENCHMARKS.md")
    parser.add_argument("--runs", type=int, help="cold replications and one-commit fetches per source")
    parser.add_argument("--commits", type=int, help="commits of the synthesized history")
    args = parser.parse_args(argv)
    _procs.install_signal_handlers()
    STATE_DIR.mkdir(exist_ok=True)
    p = QUICK if args.quick else FULL
    if args.runs or args.commits:
        p = Profile(args.commits or p.commits, args.runs or p.runs, args.runs or p.fetch_runs)
    load = _report.load_average()
    print(f"repositories beside git (load average {load:.2f}) ...", flush=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="repo-", dir=STATE_DIR))
    try:
        try:
            results = measure(p, tmp)
        except (MeasureError, OSError, RuntimeError, KeyError, ValueError, subprocess.SubprocessError) as exc:
            print(f"FAILED\n{exc}", flush=True)
            results = {"all": {"error": str(exc)}}
    finally:
        _procs.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "load_before": load,
        "load_after": _report.load_average(),
        "machine": _report.machine(),
        "git_version": git("--version").removeprefix("git version "),
        "results": results,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print(text_table(record))
    print(f"\n{record['elapsed_s']:.0f} s in all; raw runs in {RESULTS.relative_to(ROOT)}, logs in .bench/logs/")
    failed = any("error" in r for r in results.values())
    if args.write and not failed:
        write_section("bench:repo", markdown(record), heading="Repositories: Guts beside git")
        print("wrote the bench:repo section of BENCHMARKS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _procs.kill_all()
        print("\ninterrupted; every benchmark process stopped", file=sys.stderr)
        sys.exit(130)
