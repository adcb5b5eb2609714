"""The results table (terminal and Markdown), the machine, BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._procs import ROOT

BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
BEGIN = "<!-- bench:results:begin (python -m bench --write rewrites this part) -->"
END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Row:
    metric: str
    field: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None
    digits: int


ROWS = (
    Row("throughput", "value", "single-stream throughput", "MB/s", True, 500, 1),
    Row("handshakes", "value", "handshakes (sequential)", "/s", True, 500, 1),
    Row("ping", "value", "ping round trip, median", "ms", False, 0.25, 3),
    Row("ping", "p99", "ping round trip, p99", "ms", False, None, 3),
    Row("streams", "value", "1,000 concurrent streams", "s", False, 0.3, 3),
    Row("rss", "value", "idle host peak RSS (identify, ping)", "MiB", False, 40, 1),
    Row("rss_node", "value", "idle full node peak RSS (`guts start`)", "MiB", False, None, 1),
    Row("import", "value", "`import guts` / `import libp2p`", "s", False, 0.25, 3),
    Row("import_node", "value", "import a full node (`guts.node` / `libp2p`)", "s", False, 0.25, 3),
)

HEADER = ("metric", "Guts", "py-libp2p", "ratio", "target")


def brief(metric: str, result: dict[str, Any]) -> str:
    """One line for the progress output."""
    runs = ", ".join(_fmt(r["value"], 3) for r in result.get("runs", []))
    rows = [r for r in ROWS if r.metric == metric]
    figures = "; ".join(
        f"{r.label} {_fmt(result[r.field], r.digits)} {r.unit}" for r in rows if result.get(r.field) is not None
    ) or "no figure for this stack"
    extra = ""
    if "connect_ms" in result:
        extra = f"; connect {result['connect_ms']:.2f} ms + close {result['close_ms']:.2f} ms"
    elif "bytes" in result:
        extra = f"; {result['bytes'] / 2**20:.0f} MiB a run"
    return f"{figures}{extra}  [runs: {runs}]"


def _fmt(value: float, digits: int) -> str:
    if 0 < value < 0.01:
        return f"{value:.2g}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def _cell(result: dict[str, Any] | None, row: Row) -> tuple[str, float | None]:
    if result is None:
        return "—", None
    if "error" in result:
        return "failed", None
    value = result.get(row.field)
    if value is None:
        return "—", None
    return f"{_fmt(value, row.digits)} {row.unit}", value


def _ratio(row: Row, guts: float | None, libp2p: float | None) -> str:
    if not guts or not libp2p:
        return "—"
    factor = guts / libp2p if row.higher_is_better else libp2p / guts
    return f"{factor:.1f}×" if factor < 100 else f"{factor:.0f}×"


def _target(row: Row, guts: float | None, *, markdown: bool) -> str:
    if row.target is None:
        return "—"
    text = f"{'≥' if row.higher_is_better else '≤'} {row.target:g} {row.unit}"
    if guts is None:
        return text
    met = guts >= row.target if row.higher_is_better else guts <= row.target
    return f"{text} {'✓' if met else '✗'}" if not markdown else f"{text} {'✅' if met else '❌'}"


#: The stacks side by side in each part of the table: (Guts's, py-libp2p's,
#: what the part's labels end with). The QUIC rows come after TCP's.
PAIRS = (("guts", "libp2p", ""), ("guts-quic", "libp2p-quic", ", QUIC"))
#: The metrics the QUIC part has.
QUIC_METRICS = ("throughput", "handshakes", "ping", "streams")


def table_rows(record: dict[str, Any], *, markdown: bool) -> list[tuple[str, ...]]:
    results = record["results"]
    rows: list[tuple[str, ...]] = []
    for guts_key, lib_key, suffix in PAIRS:
        for row in ROWS:
            if suffix and row.metric not in QUIC_METRICS:
                continue
            guts_text, guts = _cell(results.get(guts_key, {}).get(row.metric), row)
            lib_text, lib = _cell(results.get(lib_key, {}).get(row.metric), row)
            if guts is None and lib is None and guts_text == lib_text == "—":
                continue
            label = (row.label if markdown else row.label.replace("`", "")) + suffix
            target = _target(row, guts, markdown=markdown) if not suffix else "—"
            rows.append((label, guts_text, lib_text, _ratio(row, guts, lib), target))
    return rows


def text_table(record: dict[str, Any]) -> str:
    rows = [HEADER, *table_rows(record, markdown=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append(" | ".join(cells))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    notes = ["ratio: how many times better Guts is (higher throughput, or lower time / memory)."]
    if record.get("floor"):
        notes.append(f"floors (no libp2p): {floor_line(record['floor'])}.")
    if record.get("quick"):
        notes.append("QUICK RUN: fewer runs and smaller sizes; not for the record.")
    for stack, res in record["results"].items():
        for metric, r in res.items():
            if "error" in r:
                notes.append(f"{stack} {metric} failed: {error_summary(r['error'])}")
    return "\n".join(lines + [""] + notes)


def floor_line(floor: dict[str, Any]) -> str:
    """The floors in one sentence (empty when they were not measured)."""
    if not floor:
        return ""
    return (
        f"32-byte TCP round trip between two processes: {floor['socket_rtt_ms']:.3f} ms with blocking"
        f" sockets, {floor['trio_rtt_ms']:.3f} ms with trio (p99 {floor['trio_rtt_p99_ms']:.3f} ms);"
        f" import trio {floor['import_trio_s']:.3f} s"
    )


def error_summary(error: str) -> str:
    """The line of a failure that says what went wrong: the last exception
    line of the traceback (trio wraps them in exception groups), else the first."""
    lines = [line.strip(" |") for line in error.strip().splitlines()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Exit", "Interrupt", "TooSlow", "Reset")) and " " not in head:
            return line[:300]
    return lines[0][:300] if lines else "?"


def markdown_table(record: dict[str, Any]) -> str:
    rows = table_rows(record, markdown=True)
    lines = ["| " + " | ".join(HEADER) + " |", "| --- | ---: | ---: | ---: | --- |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "commit": _git_commit(),
    }


def load_average() -> float:
    """The 1-minute load average (0 where /proc/loadavg is missing)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, timeout=10, text=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if done.returncode != 0:
        return "uncommitted"
    commit = done.stdout.strip()
    try:  # read-only: does the measured guts/ differ from the commit?
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "guts"], cwd=ROOT, capture_output=True, timeout=10, text=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return f"{commit} + uncommitted changes in guts/" if dirty else commit


def results_section(record: dict[str, Any]) -> str:
    m = record["machine"]
    v = record["versions"]
    lines = [
        BEGIN,
        "",
        f"Measured {record['date']}{' (quick run: fewer runs, smaller sizes)' if record.get('quick') else ''}"
        f" at Guts commit `{m['commit']}` with `python -m bench --write`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['kernel']}, Python {m['python']}",
    ]
    if "guts" in v:
        lines.append(f"- Guts: {v['guts']}")
    if "libp2p" in v:
        lines.append(f"- py-libp2p: {v['libp2p']} (in `.bench/venv-libp2p`)")
    lines += [
        "",
        markdown_table(record),
        "",
        "Each figure is the median of several runs, server and client in two processes on"
        " loopback, each stack talking to itself over TCP + Noise + yamux. Ratio: how many"
        " times better Guts is. Targets apply to Guts. How each figure is measured:"
        " [bench/README.md](bench/README.md).",
    ]
    if record.get("partial"):
        lines += ["", "Partial run (`--only` / `--metric`): the other figures were not measured this time."]
    failures = [
        f"- {stack} {metric} failed: `{error_summary(r['error'])}`"
        for stack, res in record["results"].items() for metric, r in res.items() if "error" in r
    ]
    if failures:
        lines += ["", *failures]
    if record.get("floor"):
        lines += ["", f"Floors on this machine, no libp2p involved: {floor_line(record['floor'])}."]
    if record.get("load_before", 0) > 0.5:
        lines += [
            "",
            f"Load average before the run: {record['load_before']:.2f} (other processes shared the"
            " CPUs; the figures are noisier than on an idle machine).",
        ]
    lines += [
        "",
        END,
    ]
    return "\n".join(lines)


TEMPLATE = """# Benchmarks

`make bench` (or `.venv/bin/python -m bench`) measures Guts and py-libp2p
side by side; `--write` rewrites the results below. The first run creates
`.bench/venv-libp2p` with py-libp2p (a few minutes).

{results}

## Where the time goes

To be filled from profiles.
"""


def write_benchmarks_md(record: dict[str, Any], path: Path = BENCHMARKS_MD) -> Path:
    section = results_section(record)
    if not path.exists():
        path.write_text(TEMPLATE.format(results=section))
        return path
    text = path.read_text()
    start, end = text.find(BEGIN[: BEGIN.index(" (")]), text.find(END)
    if start == -1 or end == -1:
        # No markers: put the results right after the title, keep the rest.
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n{section}\n{rest}"
    else:
        text = text[:start] + section + text[end + len(END):]
    path.write_text(text)
    return path
