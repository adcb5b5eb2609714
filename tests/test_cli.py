"""The guts command, run as users run it (real processes, real TCP on loopback)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

GUTS = [sys.executable, "-m", "guts.cli"]


def run(*args: str, home: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUTS_HOME": str(home)}
    return subprocess.run([*GUTS, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_id_is_created_once_and_private(tmp_path: Path) -> None:
    first = run("id", home=tmp_path / "home")
    assert first.returncode == 0, first.stderr
    peer_id = first.stdout.strip()
    assert peer_id.startswith("12D3KooW")
    assert run("id", home=tmp_path / "home").stdout.strip() == peer_id
    key = tmp_path / "home" / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("listen = 5\n")
    result = run("start", home=tmp_path)
    assert result.returncode == 1
    assert "config.toml" in result.stderr and "listen" in result.stderr


def test_start_json_ping_and_clean_shutdown(tmp_path: Path) -> None:
    env = {**os.environ, "GUTS_HOME": str(tmp_path)}
    node = subprocess.Popen(
        [*GUTS, "start", "--json", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert node.stdout is not None
        ready = json.loads(node.stdout.readline())
        assert ready["event"] == "ready"
        assert ready["peer_id"] == run("id", home=tmp_path).stdout.strip()
        assert len(ready["addrs"]) == 2
        assert all(a.endswith("/p2p/" + ready["peer_id"]) for a in ready["addrs"])
        for addr in ready["addrs"]:
            result = run("ping", addr, "--count", "3", home=tmp_path / "other")
            assert result.returncode == 0, result.stderr
            assert result.stdout.count("pong from " + ready["peer_id"]) == 3
        events = []
        while True:
            line = json.loads(node.stdout.readline())
            events.append(line["event"])
            if events.count("peer_disconnected") == 2:
                break
        assert events.count("peer_connected") == 2
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=10) == 0
        assert json.loads(node.stdout.read().splitlines()[-1]) == {"event": "stopped"}
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_ping_unreachable_is_a_clear_error(tmp_path: Path) -> None:
    result = run("ping", "/ip4/127.0.0.1/tcp/1", "--timeout", "5", home=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr and "/ip4/127.0.0.1/tcp/1" in result.stderr


@pytest.mark.parametrize("bad", ["/ip4/1.2.3", "not-a-multiaddr"])
def test_ping_bad_address(tmp_path: Path, bad: str) -> None:
    result = run("ping", bad, home=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr


def _start(home: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GUTS_HOME": str(home)}
    return subprocess.Popen(
        [*GUTS, "start", "--json", "--listen", "/ip4/127.0.0.1/tcp/0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _events_until(node: subprocess.Popen[str], event: str, peer_id: str) -> dict:
    assert node.stdout is not None
    for _ in range(50):
        line = json.loads(node.stdout.readline())
        if line["event"] == event and line.get("peer_id") == peer_id:
            return line
    raise AssertionError(f"no {event} for {peer_id}")


def test_bootstrap_peers_are_dialled_and_identified(tmp_path: Path) -> None:
    a = _start(tmp_path / "a")
    b = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        ready_b = json.loads(b.stdout.readline())
        assert _events_until(b, "peer_connected", ready_a["peer_id"])["direction"] == "outbound"
        identified = _events_until(b, "peer_identified", ready_a["peer_id"])
        assert "/ipfs/ping/1.0.0" in identified["protocols"]
        assert identified["agent_version"].startswith("guts/")
        assert _events_until(a, "peer_connected", ready_b["peer_id"])["direction"] == "inbound"
    finally:
        for node in (a, b):
            if node is not None:
                node.send_signal(signal.SIGINT)
                assert node.wait(timeout=10) == 0


def test_status_of_the_running_node(tmp_path: Path) -> None:
    a = _start(tmp_path / "a")
    b = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        b = _start(tmp_path / "b", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        ready_b = json.loads(b.stdout.readline())
        _events_until(b, "peer_identified", ready_a["peer_id"])
        result = run("status", "--json", home=tmp_path / "b")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["peer_id"] == ready_b["peer_id"]
        assert status["addrs"] == ready_b["addrs"]
        [conn] = status["connections"]
        assert conn["peer_id"] == ready_a["peer_id"] and conn["direction"] == "outbound"
        assert conn["agent_version"].startswith("guts/")
        text = run("status", home=tmp_path / "b")
        assert text.returncode == 0
        assert f"peer id:      {ready_b['peer_id']}" in text.stdout
        assert ready_a["peer_id"] in text.stdout and "connections:  1" in text.stdout
        # A second node on the same home is refused, and says why.
        second = run("start", "--listen", "/ip4/127.0.0.1/tcp/0", home=tmp_path / "b")
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        for node in (a, b):
            if node is not None:
                node.send_signal(signal.SIGINT)
                assert node.wait(timeout=10) == 0


def test_status_without_a_node_is_a_clear_error(tmp_path: Path) -> None:
    result = run("status", home=tmp_path)
    assert result.returncode == 1
    assert "no node is running" in result.stderr and "guts start" in result.stderr
    as_json = run("status", "--json", home=tmp_path)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["kind"] == "not_running"


def test_start_says_the_dht_mode_and_topics(tmp_path: Path) -> None:
    env = {**os.environ, "GUTS_HOME": str(tmp_path)}
    node = subprocess.Popen(
        [*GUTS, "start", "--listen", "/ip4/127.0.0.1/tcp/0", "--topic", "guts/announce"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert node.stdout is not None
        lines = [node.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("peer id: 12D3KooW")
        assert lines[1].startswith("listening on /ip4/127.0.0.1/tcp/")
        assert lines[2].startswith("dht: client mode on /guts/kad/1.0.0 (auto: ")
        assert lines[3] == "subscribed to guts/announce\n"
    finally:
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=10) == 0


def test_two_nodes_connect_over_quic_and_ping_over_it(tmp_path: Path) -> None:
    """`guts start` listens on QUIC (by default on /udp/9002/quic-v1; here on
    port 0), a node bootstrapping from a QUIC address connects over it,
    identifies, and `guts ping` reaches it over QUIC."""
    from guts.config import DEFAULT_LISTEN

    assert "/ip4/0.0.0.0/udp/9002/quic-v1" in DEFAULT_LISTEN
    quic = ("--listen", "/ip4/127.0.0.1/udp/0/quic-v1")
    a = _start(tmp_path / "a", *quic)
    b = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        (quic_a,) = [addr for addr in ready_a["addrs"] if "/quic-v1/" in addr]
        b = _start(tmp_path / "b", *quic, "--bootstrap", quic_a)
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        connected = _events_until(b, "peer_connected", ready_a["peer_id"])
        assert connected["direction"] == "outbound" and "/udp/" in connected["addr"] and "quic-v1" in connected["addr"]
        assert "/ipfs/ping/1.0.0" in _events_until(b, "peer_identified", ready_a["peer_id"])["protocols"]
        pinged = run("ping", quic_a, "--count", "2", home=tmp_path / "c")
        assert pinged.returncode == 0, pinged.stderr
        assert "2 pings" in pinged.stdout
    finally:
        for node in (b, a):
            if node is not None:
                node.send_signal(signal.SIGINT)
                assert node.wait(timeout=10) == 0
