"""Node A of the one-commit rows: what ``guts start`` runs
(:func:`guts.control.node.open_controlled_node` on a home, listening on
127.0.0.1), plus one thing no command does yet: publish a new commit.

Prints ``{"event": "ready", "peer_id", "addrs"}``, then reads JSON lines on
stdin, ``{"rid", "source", "pack"}``: ingest the pack file (the new
objects), publish the source repository's branches and tags as this node's
next statement, answer ``{"published": rid, "seconds": ...}``. Stops at EOF.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from guts.config import load_config
from guts.control.node import open_controlled_node
from guts.crypto import load_or_create_keypair


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def main(home: Path) -> None:
    config = load_config(home, listen=["/ip4/127.0.0.1/tcp/0"])
    keypair = load_or_create_keypair(config.key_file)
    async with open_controlled_node(config, keypair=keypair) as node:
        repos = node.repos
        assert repos is not None
        addrs = [str(a) for a in node.addrs]
        print(json.dumps({"event": "ready", "peer_id": str(node.host.peer_id), "addrs": addrs}), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buffer = b""
        while chunk := await stdin.receive_some(65536):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                order = json.loads(line)
                t0 = time.perf_counter()
                rid, source = order["rid"], Path(order["source"])
                data = Path(order["pack"]).read_bytes()
                async with repos.storage.quarantine(rid) as quarantine:
                    await quarantine.ingest_pack(_once(data))
                    found = await repos.storage.read_source(source)
                    assert found is not None
                    await quarantine.check_connected(sorted(set(found.refs.values())))
                    await quarantine.migrate()
                await repos.publish(rid, keypair, found.refs)
                answer = {"published": rid, "seconds": time.perf_counter() - t0}
                print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
