"""`guts start`, run as `make start` runs it, is dialled, pinged and
identified by a stock js-libp2p node; `guts ping` pings the js node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from guts.identify import AGENT_VERSION

from .conftest import SpawnJs

GUTS = [sys.executable, "-m", "guts.cli"]


async def test_js_dials_pings_and_identifies_guts_start(spawn_js: SpawnJs, tmp_path: Path) -> None:
    env = {**os.environ, "GUTS_HOME": str(tmp_path / "node")}
    node = subprocess.Popen(
        [*GUTS, "start", "--json", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert node.stdout is not None
        ready = await trio.to_thread.run_sync(node.stdout.readline)
        ready = json.loads(ready)
        js = await spawn_js()
        for addr in ready["addrs"]:
            reply = await js.call("dial", addr=addr)
            assert reply["peer_id"] == ready["peer_id"]
            rtts = (await js.call("ping", addr=addr, count=3))["rtts_ms"]
            assert len(rtts) == 3
            info = await js.call("identify", addr=addr)
            assert info["agentVersion"] == AGENT_VERSION
            assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(info["protocols"])
            await js.call("hangup", peer=ready["peer_id"])
        result = await trio.run_process(
            [*GUTS, "ping", js.addr("tcp"), "--count", "3"], capture_stdout=True, capture_stderr=True,
            env={**env, "GUTS_HOME": str(tmp_path / "pinger")}, check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().count(f"pong from {js.peer_id}") == 3
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=10) == 0
