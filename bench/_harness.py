"""``python -m bench``: Guts and py-libp2p side by side, two processes each.

For each stack and metric a fresh server process listens on 127.0.0.1 and
a client process (same stack) runs the measurement several times, one
JSON line per run; the figure is the median of the runs. See
``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import _procs, _report
from bench._procs import ROOT, STATE_DIR, MeasureError
from bench._wire import METRICS, median

LIBP2P_VERSION = "0.8.1"
LIBP2P_VENV = STATE_DIR / "venv-libp2p"
RESULTS = STATE_DIR / "results.json"
PIP_TIMEOUT = 1200.0
MiB = 1024 * 1024


@dataclass(frozen=True)
class Stack:
    key: str  # "guts" | "guts-quic" | "libp2p" | "libp2p-quic"
    title: str
    python: Path
    server: str
    client: str
    import_code: str  # what `import NAME` means for the import row
    import_node_code: str  # the imports needed to run a node
    #: the command that runs the stack's own full node (printing a JSON
    #: line when ready), if it has one
    node_command: tuple[str, ...] = ()
    #: arguments after the server script (``--transport quic``)
    server_args: tuple[str, ...] = ()
    #: the metrics this stack has figures for (all when empty)
    metrics: tuple[str, ...] = ()


def stacks() -> dict[str, Stack]:
    return {
        "guts": Stack(
            "guts", "Guts", Path(sys.executable), "_guts_server.py", "_guts_client.py",
            "import guts",
            # the full node: host, DHT, gossip, control API
            "import guts.node",
            ("-m", "guts.cli", "start", "--listen", "/ip4/127.0.0.1/tcp/0", "--json"),
        ),
        # Guts over QUIC (its own TLS and streams): the server listens on
        # /udp/0/quic-v1, the client dials what it printed.
        "guts-quic": Stack(
            "guts-quic", "Guts QUIC", Path(sys.executable), "_guts_server.py", "_guts_client.py",
            "import guts", "import guts.node",
            server_args=("--transport", "quic"), metrics=("throughput", "handshakes", "ping", "streams"),
        ),
        "libp2p": Stack(
            "libp2p", "py-libp2p", LIBP2P_VENV / "bin" / "python", "_libp2p_server.py", "_libp2p_client.py",
            "import libp2p",
            "import libp2p",
        ),
        # The same py-libp2p over its QUIC transport (aioquic): the server
        # listens on /udp/0/quic-v1, the client dials what it printed.
        "libp2p-quic": Stack(
            "libp2p-quic", "py-libp2p QUIC", LIBP2P_VENV / "bin" / "python", "_libp2p_server.py",
            "_libp2p_client.py", "import libp2p", "import libp2p",
            server_args=("--transport", "quic"), metrics=("throughput", "handshakes", "ping", "streams"),
        ),
    }


@dataclass(frozen=True)
class Profile:
    """Sizes and counts of one kind of run."""

    runs: int
    throughput_max: int  # bytes a run, at most
    throughput_seconds: float  # a run's target length (py-libp2p is scaled by it)
    throughput_probe: int  # warm-up size, which also measures the rate
    handshake_seconds: float
    handshake_max: int
    pings: int
    ping_warmup: int
    streams: int
    stream_warmup: int
    stream_size: int
    rss_runs: int
    import_runs: int


FULL = Profile(
    runs=5, throughput_max=256 * MiB, throughput_seconds=1.0, throughput_probe=16 * MiB,
    handshake_seconds=3.0, handshake_max=10_000, pings=1000, ping_warmup=50,
    streams=1000, stream_warmup=50, stream_size=32, rss_runs=5, import_runs=7,
)
QUICK = Profile(
    runs=2, throughput_max=32 * MiB, throughput_seconds=0.3, throughput_probe=4 * MiB,
    handshake_seconds=1.0, handshake_max=2_000, pings=200, ping_warmup=10,
    streams=1000, stream_warmup=10, stream_size=32, rss_runs=1, import_runs=3,
)


# -- the py-libp2p venv -------------------------------------------------------


def installed_libp2p_version() -> str | None:
    python = LIBP2P_VENV / "bin" / "python"
    if not python.exists():
        return None
    try:
        return _procs.run_python(python, "import importlib.metadata as m; print(m.version('libp2p'))", timeout=30)
    except MeasureError:
        return None


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def ensure_libp2p_venv() -> None:
    """Create ``.bench/venv-libp2p`` with py-libp2p pinned, unless it is there."""
    if installed_libp2p_version() == LIBP2P_VERSION:
        print(f"py-libp2p {LIBP2P_VERSION}: using {_shown(LIBP2P_VENV)}", flush=True)
        return
    python = LIBP2P_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {_shown(LIBP2P_VENV)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LIBP2P_VENV)], check=True, timeout=300)
    print(f"installing libp2p=={LIBP2P_VERSION} into it (a few minutes: it builds fastecdsa) ...", flush=True)
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", f"libp2p=={LIBP2P_VERSION}"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _procs._live.add(proc)
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            output.append(line)
            # pip's own progress, trimmed to the lines that say what happens
            if line.startswith(("Collecting", "Building", "Installing", "Successfully", "ERROR", "error")):
                print(f"  [pip {time.monotonic() - start:5.0f} s] {line[:150]}", flush=True)
            if time.monotonic() - start > PIP_TIMEOUT:
                raise MeasureError(f"pip install took more than {PIP_TIMEOUT:.0f} s")
        proc.wait(60)
    finally:
        _procs._stop(proc, grace=1.0)
    if proc.returncode != 0:
        hint = ""
        if any("gmp.h" in line for line in output):
            hint = "\nfastecdsa (a py-libp2p dependency, source only) needs a C compiler and GMP: apt-get install gcc libgmp-dev"
        tail = "\n".join(output[-30:])
        raise MeasureError(f"pip install libp2p=={LIBP2P_VERSION} failed ({proc.returncode}):\n{tail}{hint}")


# -- measurements ----------------------------------------------------------------


def _client_metric(stack: Stack, metric: str, params: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    params = {**params, "timeout": timeout - 15}
    log_name = f"{stack.key}-{metric}-server"
    command = [*_procs.worker_cmd(stack.python, stack.server, log_name), *stack.server_args] if stack.server_args else None
    with _procs.server(stack.python, stack.server, log_name, command=command) as ready:
        args = [metric, ready["addr"], *(f"{k}={json.dumps(v)}" for k, v in params.items())]
        runs = _procs.run_client(stack.python, stack.client, args, timeout, f"{stack.key}-{metric}-client")
        # The server's memory after the test: dead state piling up shows here.
        status = _procs.proc_status(ready["pid"])
        runs[-1]["server_rss_mib"] = status["VmRSS"] / 1024
        runs[-1]["server_hwm_mib"] = status["VmHWM"] / 1024
        return runs


def measure_throughput(stack: Stack, p: Profile) -> dict[str, Any]:
    runs = _client_metric(stack, "throughput", {
        "runs": p.runs, "probe": p.throughput_probe, "seconds": p.throughput_seconds, "max_size": p.throughput_max,
    }, timeout=120 + 10 * p.runs)
    return {"value": median([r["value"] for r in runs]), "bytes": runs[0]["bytes"], "runs": runs}


def measure_handshakes(stack: Stack, p: Profile) -> dict[str, Any]:
    runs = _client_metric(stack, "handshakes", {
        "runs": p.runs, "seconds": p.handshake_seconds, "max_count": p.handshake_max,
    }, timeout=60 + (p.runs + 1) * (p.handshake_seconds + 10))
    return {
        "value": median([r["value"] for r in runs]),
        "connect_ms": median([r["connect_ms"] for r in runs]),
        "close_ms": median([r["close_ms"] for r in runs]),
        "runs": runs,
    }


def measure_ping(stack: Stack, p: Profile) -> dict[str, Any]:
    runs = _client_metric(stack, "ping", {
        "runs": p.runs, "count": p.pings, "warmup": p.ping_warmup,
    }, timeout=120 + p.runs * p.pings * 0.02)
    return {"value": median([r["value"] for r in runs]), "p99": median([r["p99"] for r in runs]), "runs": runs}


def measure_streams(stack: Stack, p: Profile) -> dict[str, Any]:
    runs = _client_metric(stack, "streams", {
        "runs": p.runs, "count": p.streams, "warmup": p.stream_warmup, "size": p.stream_size,
    }, timeout=120 + 30 * p.runs)
    return {"value": median([r["value"] for r in runs]), "streams": p.streams, "runs": runs}


def measure_rss(stack: Stack, p: Profile) -> dict[str, Any]:
    runs = []
    for run in range(p.rss_runs):
        with _procs.server(stack.python, stack.server, f"{stack.key}-rss-server") as ready:
            time.sleep(0.5)  # let start-up tasks settle
            status = _procs.proc_status(ready["pid"])
        runs.append({"run": run, "value": status["VmHWM"] / 1024, "rss": status["VmRSS"] / 1024})
    return {"value": median([r["value"] for r in runs]), "runs": runs}


def measure_rss_node(stack: Stack, p: Profile) -> dict[str, Any]:
    """The stack's own full node, idle: Guts's ``guts start`` (host, DHT,
    gossip, control API, the command line) with a fresh home, listening on
    loopback; ``VmHWM`` 0.5 s after its ready line. py-libp2p ships no node
    command, so it has no figure here."""
    if not stack.node_command:
        return {"value": None, "runs": []}
    runs = []
    for run in range(p.rss_runs):
        with tempfile.TemporaryDirectory(dir=STATE_DIR) as home:
            command = [str(stack.python), *stack.node_command, "--home", home]
            with _procs.server(stack.python, "", f"{stack.key}-rss-node", command=command, grace=0.5) as ready:
                time.sleep(0.5)
                status = _procs.proc_status(ready["pid"])
        runs.append({"run": run, "value": status["VmHWM"] / 1024, "rss": status["VmRSS"] / 1024})
    return {"value": median([r["value"] for r in runs]), "runs": runs}


def _import_seconds(stack: Stack, code: str, p: Profile) -> dict[str, Any]:
    timed = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    cwd = STATE_DIR  # nothing importable there: the import resolves as installed
    _procs.run_python(stack.python, timed, cwd=cwd)  # warm the bytecode cache
    runs = [
        {"run": run, "value": float(_procs.run_python(stack.python, timed, cwd=cwd))}
        for run in range(p.import_runs)
    ]
    return {"value": median([r["value"] for r in runs]), "code": code, "runs": runs}


def measure_import(stack: Stack, p: Profile) -> dict[str, Any]:
    return _import_seconds(stack, stack.import_code, p)


def measure_import_node(stack: Stack, p: Profile, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    if earlier and earlier.get("code") == stack.import_node_code:
        return earlier  # py-libp2p: `import libp2p` already is the whole node
    return _import_seconds(stack, stack.import_node_code, p)


MEASURES: dict[str, Callable[[Stack, Profile], dict[str, Any]]] = {
    "throughput": measure_throughput,
    "handshakes": measure_handshakes,
    "ping": measure_ping,
    "streams": measure_streams,
    "rss": measure_rss,
    "rss_node": measure_rss_node,
    "import": measure_import,
    "import_node": measure_import_node,
}
assert tuple(MEASURES) == METRICS


def measure_floor(p: Profile) -> dict[str, Any]:
    """The floors (bench/_floor.py) with the harness's own interpreter: trio
    and no libp2p. Only context for the table, never a stack's figure."""
    python = Path(sys.executable)
    runs = []
    for _ in range(min(p.runs, 3)):
        runs += _procs.run_client(python, "_floor.py", [str(1000 if p is QUICK else 3000)], 120, "floor")
    trio_import = _import_seconds(
        Stack("floor", "floor", python, "", "", "import trio", "import trio"), "import trio", p
    )
    out: dict[str, Any] = {k: median([r[k] for r in runs]) for k in runs[0]}
    out["import_trio_s"] = trio_import["value"]
    return out


def check_importable(stack: Stack) -> str | None:
    """None if the stack's node modules import, else the traceback."""
    try:
        _procs.run_python(stack.python, stack.import_node_code, cwd=STATE_DIR)
    except MeasureError as exc:
        return str(exc)
    return None


def versions(selected: list[Stack]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, platform; "
        "print(m.version('{dist}'), m.version('trio'), platform.python_version())"
    )
    out: dict[str, str] = {}
    for stack in selected:
        dist = "guts" if stack.key.startswith("guts") else "libp2p"
        try:
            pkg, trio_v, py = _procs.run_python(stack.python, code.format(dist=dist), cwd=STATE_DIR).split()
            out[stack.key] = f"{dist} {pkg}, trio {trio_v}, Python {py}"
        except (MeasureError, ValueError) as exc:
            out[stack.key] = f"unknown ({exc})"
    return out


def summarize_profiles(top: int = 30) -> None:
    """Next to each ``.prof``, a ``.txt`` with the functions that took the most
    time of their own, then the most time including callees."""
    import io
    import pstats

    for prof in sorted(_procs.PROFILE_DIR.glob("*.prof")):
        out = io.StringIO()
        stats = pstats.Stats(str(prof), stream=out)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        prof.with_suffix(".txt").write_text(out.getvalue())
    print(f"profiles: {_procs.PROFILE_DIR.relative_to(ROOT)}/*.txt (pstats summaries), *.prof (raw)")


# -- command line ----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Guts and py-libp2p side by side, two processes each (bench/README.md)."
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller sizes: a smoke check")
    parser.add_argument("--only", choices=["guts", "guts-quic", "libp2p", "libp2p-quic"], help="measure one stack only")
    parser.add_argument(
        "--metric", action="append", choices=METRICS, metavar="NAME",
        help=f"measure only this metric (repeatable): {', '.join(METRICS)}",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the results section of BENCHMARKS.md")
    parser.add_argument("--runs", type=int, help="override the number of runs per figure")
    parser.add_argument(
        "--no-repo", action="store_true",
        help="skip the repository rows (Guts beside git, python -m bench.repo); they also stay out of"
        " runs limited by --only libp2p, --metric or --profile",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="run every server and client under cProfile; summaries land in .bench/profiles/",
    )
    args = parser.parse_args(argv)
    if args.write and args.profile:
        parser.error("--profile slows everything down: its figures are not for BENCHMARKS.md (drop --write)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _procs.install_signal_handlers()
    STATE_DIR.mkdir(exist_ok=True)
    _procs.profiling = args.profile
    if args.profile:
        for old in _procs.PROFILE_DIR.glob("*"):
            old.unlink()
    profile = QUICK if args.quick else FULL
    if args.runs:
        profile = replace(profile, runs=args.runs, rss_runs=args.runs, import_runs=args.runs)
    metrics = args.metric or list(METRICS)
    all_stacks = stacks()
    selected = [all_stacks[args.only]] if args.only else list(all_stacks.values())
    started = time.monotonic()
    load = _report.load_average()
    if load > 0.5:
        print(f"note: load average {load:.2f} before starting: other processes share the CPUs,"
              " expect noisy figures", flush=True)
    results: dict[str, dict[str, Any]] = {s.key: {} for s in selected}
    try:
        if any(s.key.startswith("libp2p") for s in selected):
            try:
                ensure_libp2p_venv()
            except (MeasureError, subprocess.SubprocessError, OSError) as exc:
                print(f"py-libp2p unavailable: {exc}", flush=True)
                for s in selected:
                    if s.key.startswith("libp2p"):
                        results[s.key] = {m: {"error": f"setup failed: {exc}"} for m in metrics}
        for stack in selected:
            if results[stack.key]:
                continue
            broken = check_importable(stack)
            if broken:
                print(f"\n{stack.title} does not import:\n{broken}\n", flush=True)
                results[stack.key] = {m: {"error": broken} for m in metrics}
                continue
            for metric in metrics:
                if stack.metrics and metric not in stack.metrics:
                    continue
                print(f"[{stack.title}] {metric} ...", end=" ", flush=True)
                t0 = time.monotonic()
                try:
                    if metric == "import_node":
                        res = measure_import_node(stack, profile, results[stack.key].get("import"))
                    else:
                        res = MEASURES[metric](stack, profile)
                    results[stack.key][metric] = res
                except (MeasureError, OSError, KeyError, ValueError) as exc:
                    results[stack.key][metric] = {"error": str(exc)}
                    print(f"FAILED ({time.monotonic() - t0:.0f} s)\n{_indent(str(exc))}", flush=True)
                else:
                    print(f"{_report.brief(metric, res)}  ({time.monotonic() - t0:.0f} s)", flush=True)
        floor: dict[str, Any] = {}
        if {"ping", "import", "import_node"} & set(metrics):
            print("[floor] plain TCP and trio round trips, import trio ...", end=" ", flush=True)
            try:
                floor = measure_floor(profile)
                print(_report.floor_line(floor), flush=True)
            except (MeasureError, OSError, KeyError, ValueError) as exc:
                print(f"FAILED\n{_indent(str(exc))}", flush=True)
    finally:
        _procs.kill_all()

    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "partial": bool(args.only or args.metric),
        "load_before": load,
        "load_after": _report.load_average(),
        "machine": _report.machine(),
        "versions": versions(selected),
        "results": results,
        "floor": floor,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print(_report.text_table(record))
    print(f"\n{record['elapsed_s']:.0f} s in all; raw runs in {RESULTS.relative_to(ROOT)}, logs in .bench/logs/")
    if args.profile:
        summarize_profiles()
    if args.write:
        path = _report.write_benchmarks_md(record)
        print(f"wrote {path.relative_to(ROOT)}")
    failed = any("error" in r for stack in results.values() for r in stack.values())
    if not (args.no_repo or args.metric or args.profile or (args.only or "guts") != "guts"):
        from bench import repo  # the repository rows: Guts beside git itself

        print()
        status = repo.main([*(["--quick"] if args.quick else []), *(["--write"] if args.write else [])])
        failed = failed or status != 0
    return 1 if failed else 0


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
