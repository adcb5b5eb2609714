"""``guts peers`` against real ``guts start`` processes on loopback: a
connected peer blocked by hand is disconnected and refused when it comes
back, the block survives a restart, and an address block refuses
strangers before their handshake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from .test_cli import GUTS, _events_until, _start


def peers(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUTS_HOME": str(home), "COLUMNS": "240"}
    return subprocess.run([*GUTS, "peers", *args], capture_output=True, text=True, timeout=30, env=env)


def peers_json(*args: str, home: Path) -> dict[str, Any]:
    result = peers(*args, "--json", home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def ready(node: subprocess.Popen[str]) -> dict[str, Any]:
    assert node.stdout is not None
    line: dict[str, Any] = json.loads(node.stdout.readline())
    assert line["event"] == "ready", line
    return line


def stop(node: subprocess.Popen[str] | None) -> None:
    if node is not None and node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            assert node.wait(timeout=10) == 0
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()


def ping(addr: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUTS_HOME": str(home)}
    return subprocess.run([*GUTS, "ping", addr, "--count", "1", "--timeout", "5"],
                          capture_output=True, text=True, timeout=30, env=env)  # fmt: skip


def test_block_a_connected_peer_it_stays_out_across_restarts_until_unblocked(tmp_path: Path) -> None:
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    a = b = None
    try:
        a = _start(home_a)
        info_a = ready(a)
        b = _start(home_b, "--bootstrap", info_a["addrs"][0])
        b_id = ready(b)["peer_id"]
        _events_until(a, "peer_connected", b_id)

        listed = peers_json("list", home=home_a)
        (row,) = [p for p in listed["peers"] if p["peer_id"] == b_id]
        assert row["direction"] == "inbound" and row["addr"].startswith("/ip4/127.0.0.1/tcp/")
        assert row["score"] == 0 and row["verdict"] == "ok"
        assert listed["blocks"] == []
        text = peers("list", home=home_a)
        assert text.returncode == 0 and b_id in text.stdout and "no blocks" in text.stdout

        blocked = peers_json("block", b_id, "--reason", "sent garbage", home=home_a)
        assert blocked["disconnected"] == [b_id] and blocked["previous"] is None
        assert blocked["block"] == {
            **blocked["block"], "target": b_id, "kind": "peer", "reason": "sent garbage", "expires": None,
            "manual": True, "offences": 1,
        }  # fmt: skip
        _events_until(a, "peer_disconnected", b_id)
        again = peers("block", b_id, "--reason", "garbage again", home=home_a)
        assert again.returncode == 0 and "block replaced" in again.stdout

        # It comes back (a restart dials its bootstrap peer): refused after the handshake.
        stop(b)
        b = _start(home_b, "--bootstrap", info_a["addrs"][0])
        ready(b)
        _events_until(a, "peer_connected", b_id)
        _events_until(a, "peer_disconnected", b_id)
        assert b_id not in [p["peer_id"] for p in peers_json("list", home=home_a)["peers"]]

        # The block survives a restart of the node that set it.
        stop(a)
        a = _start(home_a)
        info_a = ready(a)
        (kept,) = peers_json("list", home=home_a)["blocks"]
        assert kept["target"] == b_id and kept["reason"] == "garbage again" and kept["manual"]
        text = peers("list", home=home_a)
        assert b_id in text.stdout and "until unblocked" in text.stdout and "by hand" in text.stdout
        stop(b)
        b = _start(home_b, "--bootstrap", info_a["addrs"][0])
        ready(b)
        _events_until(a, "peer_connected", b_id)
        _events_until(a, "peer_disconnected", b_id)

        lifted = peers_json("unblock", b_id, home=home_a)
        assert lifted["removed"] is True and lifted["target"] == b_id
        assert peers_json("list", home=home_a)["blocks"] == []
        text = peers("unblock", b_id, home=home_a)
        assert text.returncode == 0 and "was not blocked" in text.stdout
        stop(b)
        b = _start(home_b, "--bootstrap", info_a["addrs"][0])
        ready(b)
        _events_until(a, "peer_identified", b_id)  # in, and it stays long enough to identify
        assert b_id in [p["peer_id"] for p in peers_json("list", home=home_a)["peers"]]
    finally:
        stop(b)
        stop(a)


def test_an_address_block_refuses_strangers_before_the_handshake(tmp_path: Path) -> None:
    home = tmp_path / "node"
    node = None
    try:
        node = _start(home)
        addr = ready(node)["addrs"][0]
        assert ping(addr, tmp_path / "pinger").returncode == 0

        blocked = peers_json("block", "127.0.0.0/8", "--for", "2h", home=home)
        assert blocked["block"]["kind"] == "ip" and blocked["block"]["target"] == "127.0.0.0/8"
        assert 7190 < blocked["block"]["remaining_s"] <= 7200 and not blocked["block"]["offences"] > 1
        refused = ping(addr, tmp_path / "pinger")
        assert refused.returncode == 1 and "error:" in refused.stderr
        counts = peers_json("list", home=home)["status"]
        assert counts["refused_inbound"] >= 1 and counts["refused_peers"] == 0

        text = peers("list", home=home)
        assert "127.0.0.0/8" in text.stdout and ("for 1h59m" in text.stdout or "for 2h" in text.stdout)
        assert peers("unblock", "127.0.0.1/8", home=home).stdout.strip() == "unblocked 127.0.0.0/8"
        assert ping(addr, tmp_path / "pinger").returncode == 0
    finally:
        stop(node)


def test_clear_errors(tmp_path: Path) -> None:
    home = tmp_path / "node"
    not_running = peers("list", home=home)
    assert not_running.returncode == 1 and "guts start" in not_running.stderr
    as_json = peers("list", "--json", home=home)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["kind"] == "not_running"
    node = None
    try:
        node = _start(home)
        me = ready(node)["peer_id"]
        bad = peers("block", "nobody", home=home)
        assert bad.returncode == 2 and "neither a peer id" in bad.stderr
        bad = peers("block", "10.0.0.1", "--for", "soon", home=home)
        assert bad.returncode == 2 and "not a duration" in bad.stderr
        itself = peers("block", me, home=home)
        assert itself.returncode == 1 and "itself" in itself.stderr
        assert peers_json("list", home=home)["blocks"] == []
    finally:
        stop(node)
