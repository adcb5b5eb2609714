"""``python -m fuzz``: run the coverage-guided fuzz targets of :mod:`fuzz.targets`.

Usage::

    python -m fuzz TARGET [--seconds N] [--runs N] [--corpus DIR]
    python -m fuzz --all [--seconds N] [--jobs 2]
    python -m fuzz --seed [TARGET ...]     # write the encoders' seeds into the corpus
    python -m fuzz --merge [TARGET ...]    # minimise the committed corpus (libFuzzer -merge=1)
    python -m fuzz --list

Theory of operation
-------------------
One target runs in one process: libFuzzer (through atheris) owns the
process and exits when the run ends. Every ``guts`` module is imported
once inside ``atheris.instrument_imports`` (nothing imports ``guts``
before), so the mutations are guided by the decoders' own branch
coverage; then ``--all`` (or several targets named) forks one child per
target, at most ``--jobs`` at once, each writing its log to ``--logs``,
and reports each one's outcome in a line. Forking spares each target the
seconds a fresh interpreter spends instrumenting.

The committed corpus of a target is ``fuzz/corpus/<target>/``. By default
a run reads it and writes what it finds there; ``--corpus DIR`` writes new
inputs to ``DIR`` instead and only reads the committed one (what the test
suite does, so that a test run leaves the tree as it was). A crash (any
exception the decoder does not document) is saved as
``<artifacts>/crash-<sha1>`` and the child exits non-zero; an input that
takes more than ``--timeout`` seconds counts as a crash too.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from fuzz.targets import Target

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
#: Bounds on a committed corpus (per target), kept by --merge.
MAX_CORPUS_FILES = 50
MAX_CORPUS_BYTES = 200 * 1024


def _targets() -> dict[str, Target]:
    """The targets, not instrumented (for --list, --seed and --merge, which
    do not fuzz here: a fuzzing process must import them under atheris's
    instrumentation, :func:`_instrumented_targets`, before anything else
    imports ``guts``)."""
    from fuzz.targets import TARGETS

    return dict(TARGETS)


def _name_file(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def write_seeds(names: list[str]) -> None:
    """Write each target's seeds (the project's encoders' output) into its corpus."""
    from fuzz.targets import TARGETS

    for name in names:
        directory = CORPUS / name
        directory.mkdir(parents=True, exist_ok=True)
        for seed in TARGETS[name].seeds():
            (directory / _name_file(seed)).write_bytes(seed)


def _instrumented_targets(module: str = "fuzz.targets") -> dict[str, Target]:
    """Import the targets (and so every ``guts`` module) instrumented.

    Args:
        module: the module whose ``TARGETS`` to fuzz (the test suite names
            one of its own to check that a crash is caught).
    """
    import atheris

    with atheris.instrument_imports(include=["guts", module]):
        targets: dict[str, Target] = importlib.import_module(module).TARGETS
    return targets


def _libfuzzer_args(target: Target, args: argparse.Namespace) -> list[str]:
    committed = CORPUS / target.name
    artifacts = Path(args.artifacts) if args.artifacts else Path(tempfile.gettempdir()) / "guts-fuzz"
    artifacts.mkdir(parents=True, exist_ok=True)
    libfuzzer = [
        _self_command(target.name),
        f"-artifact_prefix={artifacts}/",
        f"-timeout={args.timeout}",
        f"-max_len={args.max_len}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ]
    if args.seconds:
        libfuzzer.append(f"-max_total_time={args.seconds}")
    if args.runs is not None:
        libfuzzer.append(f"-runs={args.runs}")
    if not args.corpus:
        committed.mkdir(parents=True, exist_ok=True)
        return libfuzzer + [str(committed)]
    # One directory per target below --corpus when several run.
    out = Path(args.corpus) / target.name if args.all or len(args.target) > 1 else Path(args.corpus)
    out.mkdir(parents=True, exist_ok=True)
    return libfuzzer + [str(out)] + ([str(committed)] if committed.is_dir() else [])


def _self_command(name: str) -> str:
    """How libFuzzer starts this target again (its ``-merge=1`` runs the
    inputs in a child, through the shell, from its ``argv[0]``)."""
    python = shlex.quote(sys.executable)
    return f"env PYTHONPATH={shlex.quote(str(ROOT.parent))} {python} -m fuzz --libfuzzer {shlex.quote(name)}"


def _fuzz(target: Target, args: argparse.Namespace | list[str]) -> NoReturn:
    """Run one target under libFuzzer, which exits the process at the end.

    ``args`` is this runner's options, or libFuzzer's own arguments as is.
    """
    import atheris

    from fuzz.targets import run_one

    def one_input(data: bytes) -> None:
        run_one(target, data)

    argv = [_self_command(target.name), *args] if isinstance(args, list) else _libfuzzer_args(target, args)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    os._exit(0)  # not reached


def run_all(names: list[str], args: argparse.Namespace, targets: dict[str, Target]) -> int:
    """Fuzz ``names`` for ``args.seconds`` each, ``args.jobs`` at a time.

    The decoders are imported and instrumented once, here; each target
    then runs in a forked child (libFuzzer ends its process), which costs
    milliseconds where a fresh interpreter costs seconds of instrumenting.
    """
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="guts-fuzz-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    waiting = list(names)
    running: dict[int, tuple[str, float]] = {}
    failed: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    while waiting or running:
        while waiting and len(running) < args.jobs:
            name = waiting.pop(0)
            pid = os.fork()
            if pid == 0:  # the child: its output goes to its log
                try:
                    fd = os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 1)
                    os.dup2(fd, 2)
                    _fuzz(targets[name], args)
                except SystemExit as exc:
                    # atheris raises it after a crash; libFuzzer writes the
                    # crashing input from its C exit handler, so leave through
                    # C's exit (os._exit would skip it).
                    sys.stdout.flush()
                    ctypes.CDLL(None).exit(exc.code if isinstance(exc.code, int) else 1)
                finally:
                    os._exit(70)
            running[pid] = (name, time.monotonic())
        pid, status = os.wait()
        if pid not in running:
            continue
        name, started = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - started
        log = logs / f"{name}.log"
        if code == 0:
            print(f"{name:22} ok    {took:5.1f} s  {_summary(log)}", flush=True)
        else:
            failed.append(name)
            print(f"{name:22} CRASH {took:5.1f} s  exit {code}; log {log}", flush=True)
            print(_crash_excerpt(log), flush=True)
    if failed:
        print(f"crashed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _crash_excerpt(log: Path) -> str:
    """The traceback and the crashing input's name from a child's log."""
    lines = log.read_text(errors="replace").splitlines()
    keep = [
        line
        for line in lines
        if line.startswith(("Traceback", "  ", "===", "Test unit written", "Base64:"))
        or "Error" in line
        or "crash-" in line
    ]
    return "\n".join("    " + line for line in keep[-40:])


def _summary(log: Path) -> str:
    """libFuzzer's final stats: runs and coverage."""
    stats = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("stat::"):
            key, _, value = line[len("stat::") :].partition(":")
            stats[key.strip()] = value.strip()
    cov = ""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if " cov: " in line:
            cov = "cov " + line.split(" cov: ")[1].split()[0]
            break
    return f"{stats.get('number_of_executed_units', '?')} runs, {cov}"


def merge(names: list[str], args: argparse.Namespace) -> int:
    """Replace each committed corpus by libFuzzer's minimal subset of it
    that keeps its coverage, plus the encoders' seeds, within the bounds
    (:data:`MAX_CORPUS_FILES`, :data:`MAX_CORPUS_BYTES`)."""
    targets = _targets()
    for name in names:
        committed = CORPUS / name
        with tempfile.TemporaryDirectory(prefix=f"guts-fuzz-merge-{name}-") as fresh:
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "fuzz",
                    "--libfuzzer",
                    name,
                    "-merge=1",
                    f"-max_len={args.max_len}",
                    f"-timeout={args.timeout}",
                    fresh,
                    str(committed),
                ],
                env=dict(os.environ, PYTHONPATH=str(ROOT.parent)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            kept = sorted(Path(fresh).iterdir(), key=lambda p: p.stat().st_size)
            if code != 0 or not kept:
                print(f"{name}: merge failed (exit {code}); corpus left as it was", file=sys.stderr)
                continue
            # The encoders' seeds first (whole valid messages: the mutations'
            # best starting points), then libFuzzer's picks, smallest first.
            seeds = {_name_file(seed): seed for seed in targets[name].seeds()}
            total = sum(len(seed) for seed in seeds.values())
            chosen: list[Path] = []
            for path in kept:
                size = path.stat().st_size
                if path.name in seeds:
                    continue
                if len(seeds) + len(chosen) >= MAX_CORPUS_FILES or total + size > MAX_CORPUS_BYTES:
                    break
                chosen.append(path)
                total += size
            before = len(list(committed.iterdir()))
            shutil.rmtree(committed)
            committed.mkdir()
            for file_name, seed in seeds.items():
                (committed / file_name).write_bytes(seed)
            for path in chosen:
                shutil.copyfile(path, committed / path.name)
            count = len(seeds) + len(chosen)
            print(f"{name}: {before} inputs -> {len(kept)} kept by libFuzzer -> {count} committed, {total} bytes")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("target", nargs="*", help="targets to run (one, unless --all, --seed or --merge)")
    parser.add_argument("--all", action="store_true", help="run every target, --jobs at a time")
    parser.add_argument("--list", action="store_true", help="name the targets")
    parser.add_argument("--seed", action="store_true", help="write the encoders' seeds into the corpus")
    parser.add_argument("--merge", action="store_true", help="minimise the committed corpus")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of fuzzing per target (default 10)")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--jobs", type=int, default=2, help="targets fuzzed at once (default 2)")
    parser.add_argument("--corpus", help="write new inputs here instead of the committed corpus")
    parser.add_argument("--artifacts", help="where crashing inputs go (default: $TMPDIR/guts-fuzz)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    parser.add_argument("--max-len", type=int, default=16384, help="longest input tried (default 16384)")
    parser.add_argument("--module", default="fuzz.targets", help=argparse.SUPPRESS)
    parser.add_argument("--logs", help="where --all writes each target's log (default: a new temporary directory)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--libfuzzer"] and len(argv) > 1:
        # libFuzzer's own arguments, as its -merge=1 passes them to its children.
        _fuzz(_instrumented_targets()[argv[1]], argv[2:])
    args = parser.parse_args(argv)
    several = args.all or args.list or args.seed or args.merge or len(args.target) != 1
    if not several:
        # One target: guts must not be imported before the instrumentation.
        targets = _instrumented_targets(args.module)
        if args.target[0] not in targets:
            parser.error(f"no fuzz target {args.target[0]!r}; --list names them")
        _fuzz(targets[args.target[0]], args)
    targets = _instrumented_targets(args.module) if not (args.list or args.seed or args.merge) else _targets()
    known = sorted(targets)
    if args.list:
        print("\n".join(known))
        return 0
    names = known if args.all or not args.target else args.target
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"no fuzz target {', '.join(unknown)}; --list names them")
    if args.seed:
        write_seeds(names)
        return 0
    if args.merge:
        return merge(names, args)
    return run_all(names, args, targets)


if __name__ == "__main__":
    sys.exit(main())
