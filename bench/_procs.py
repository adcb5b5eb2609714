"""Child processes of the harness: servers, clients, one-shot interpreters.

Every child is registered while alive and killed on the way out, whatever
the way out is (an error, a timeout, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
STATE_DIR = ROOT / ".bench"
LOG_DIR = STATE_DIR / "logs"
PROFILE_DIR = STATE_DIR / "profiles"

#: Set by ``--profile``: run every worker under cProfile.
profiling = False

_live: set[subprocess.Popen[bytes]] = set()


class MeasureError(Exception):
    """A measurement failed; the message carries the child's last words."""


def child_env() -> dict[str, str]:
    """The environment for children: no PYTHONPATH leaking across venvs, no
    py-libp2p debug logging, unbuffered output, and bytecode caches written
    as usual (with PYTHONDONTWRITEBYTECODE set, as on some CI images, every
    start would recompile Guts from source and the import time would say so)."""
    dropped = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "LIBP2P_DEBUG", "LIBP2P_DEBUG_FILE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def kill_all() -> None:
    """Kill every child still alive (the harness's own children only)."""
    for proc in list(_live):
        _stop(proc, grace=0.5)


def install_signal_handlers() -> None:
    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    # Ctrl-C raises KeyboardInterrupt even where SIGINT was inherited ignored
    # (a background job of a non-interactive shell), so children still die.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    try:
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()  # servers stop when their stdin closes
            except OSError:
                pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        _live.discard(proc)


def worker_cmd(python: Path, script: str, log_name: str) -> list[str]:
    """The command line of a worker script, under cProfile with ``--profile``."""
    if not profiling:
        return [str(python), str(BENCH_DIR / script)]
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"{log_name}.prof"
    return [str(python), "-m", "cProfile", "-o", str(out), str(BENCH_DIR / script)]


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def server(
    python: Path,
    script: str,
    log_name: str,
    ready_timeout: float = 60.0,
    *,
    command: list[str] | None = None,
    grace: float = 5.0,
) -> Iterator[dict[str, Any]]:
    """Run a benchmark server until the block ends; yield its ready record
    (``addr``, ``peer_id``, ``pid``: the first JSON line it prints, plus
    its pid).

    ``command`` runs instead of the worker ``script``; it gets ``grace``
    seconds after its stdin closes, then SIGTERM.
    """
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{log_name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command or worker_cmd(python, script, log_name),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=BENCH_DIR,
            env=child_env(),
        )
    _live.add(proc)
    try:
        ready = _read_ready(proc, ready_timeout, log_path)
        ready.setdefault("pid", proc.pid)
        yield ready
    finally:
        _stop(proc, grace=grace)


def _read_ready(proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MeasureError(f"server not ready after {timeout:.0f} s\n{tail(log_path)}")
            if not sel.select(min(left, 0.5)):
                if proc.poll() is not None:
                    raise MeasureError(f"server exited with {proc.returncode}\n{tail(log_path)}")
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(5)
                raise MeasureError(f"server exited with {proc.returncode}\n{tail(log_path)}")
            buf += chunk
    ready: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    return ready


def run_client(python: Path, script: str, args: list[str], timeout: float, log_name: str) -> list[dict[str, Any]]:
    """Run a benchmark client to completion; return its JSON records."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{log_name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*worker_cmd(python, script, log_name), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=BENCH_DIR,
            env=child_env(),
        )
        _live.add(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MeasureError(f"client timed out after {timeout:.0f} s\n{tail(log_path)}") from None
        finally:
            _stop(proc, grace=0.5)
    records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    # A client that knows why it failed says so in a last {"error": ...} line.
    errors = [r["error"] for r in records if "error" in r]
    if errors:
        raise MeasureError(errors[-1])
    if proc.returncode != 0:
        raise MeasureError(f"client exited with {proc.returncode}\n{tail(log_path)}")
    if not records:
        raise MeasureError(f"client reported nothing\n{tail(log_path)}")
    return records


def run_python(python: Path, code: str, timeout: float = 60.0, cwd: Path | None = None) -> str:
    """Run ``python -c code`` and return its stdout (stripped)."""
    try:
        done = subprocess.run(
            [str(python), "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            env=child_env(),
        )
    except subprocess.TimeoutExpired:
        raise MeasureError(f"{python} -c ... timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        raise MeasureError(done.stderr.decode(errors="replace").strip()[-3000:])
    return done.stdout.decode().strip()


def proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (VmHWM, VmRSS, ...)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0])
    return fields
