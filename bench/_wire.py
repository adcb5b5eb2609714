"""What the benchmark workers of both stacks agree on. Standard library only.

The worker scripts (``_guts_*.py``, ``_libp2p_*.py``) run by path, each in
its own interpreter and venv, so they import this as the top-level module
``_wire``; the harness imports it as ``bench._wire``.

Protocols served by every benchmark server:

* ``/ipfs/ping/1.0.0``: libp2p ping (the stack's own implementation).
* :data:`ECHO`: copies what it reads back until EOF, then closes.
* :data:`SINK`: reads and discards until EOF, then writes the byte count
  as 8 bytes big-endian and closes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Any

ECHO = "/guts-bench/echo/1.0.0"
SINK = "/guts-bench/sink/1.0.0"
PING = "/ipfs/ping/1.0.0"
PING_SIZE = 32
COUNT_SIZE = 8

#: Size of each write in the throughput test, the same for both stacks.
#: (py-libp2p does ~47 MB/s with 64 KiB writes, ~64 MB/s with 256 KiB.)
CHUNK = 256 * 1024
#: How many bytes each read asks for.
READ_SIZE = 256 * 1024

METRICS = ("throughput", "handshakes", "ping", "streams", "rss", "rss_node", "import", "import_node")


def emit(**record: Any) -> None:
    """One JSON object per line on stdout, flushed: the harness reads these."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    sys.stderr.write(f"[{os.path.basename(sys.argv[0])} {os.getpid()}] {message}\n")
    sys.stderr.flush()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def parse_params(args: list[str]) -> dict[str, Any]:
    """``key=value`` words into a dict; values parsed as JSON when they are."""
    params: dict[str, Any] = {}
    for arg in args:
        key, _, value = arg.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params
