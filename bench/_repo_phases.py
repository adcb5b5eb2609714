"""Where a replication's time goes: ``python bench/_repo_phases.py HOME
ADDR RID`` runs a node B in this process on a fresh ``HOME`` (as
``guts start`` does, without the control API), fetches ``RID`` from
``ADDR`` with :func:`guts.sync.fetch`, and prints one JSON line: the whole
fetch and the time spent in each phase, measured by wrapping the
functions that do them (for this measurement only):

* ``get_refs``: GetRefs and its answer (a stream, one round trip);
* ``fetch_pack``: the upload-pack request, the pack streaming from A
  into ``git fetch-pack`` (which runs ``index-pack --strict``);
* ``connectivity``: ``rev-list --objects`` over the new objects;
* ``migrate``: the objects moving out of the quarantine;
* ``canonical``: the canonical refs from the delegates' statements;
* ``write_refs``: the one ``update-ref`` transaction.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from guts.config import load_config
from guts.multiaddr import Multiaddr
from guts.node import open_node
from guts.repo._quarantine import Quarantine
from guts.repo.state import Repositories

# the module (guts.sync re-exports its function under the same name)
fetch_module = importlib.import_module("guts.sync.fetch")
spent: dict[str, float] = {}


def timed(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

    return wrapper


async def main(home: Path, addr: str, rid: str) -> None:
    wrapped: list[tuple[object, str, str]] = [
        (fetch_module, "_get_refs", "get_refs"),
        (fetch_module, "_fetch_pack", "fetch_pack"),
        (Quarantine, "check_connected", "connectivity"),
        (Quarantine, "migrate", "migrate"),
        (Repositories, "_canonical", "canonical"),
        (Repositories, "_write_refs", "write_refs"),
    ]
    for owner, attr, label in wrapped:  # module globals and methods, looked up at each call
        setattr(owner, attr, timed(label, getattr(owner, attr)))
    config = load_config(home, listen=["/ip4/127.0.0.1/tcp/0"])
    async with open_node(config) as node:
        assert node.repos is not None
        target = Multiaddr.parse(addr)
        await node.host.connect(target)  # the dial is not part of the phases
        t0 = time.perf_counter()
        await fetch_module.fetch(node.host, node.repos, target, rid)
        total = time.perf_counter() - t0
        print(json.dumps({"total": total, **spent}), flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), sys.argv[2], sys.argv[3])
