"""``guts dht ...`` and ``guts status`` against a local network of real
``guts start`` processes on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_cli import _start, run


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Path, dict]]]:
    """Four DHT servers: the first is everyone's bootstrap peer."""
    root = tmp_path_factory.mktemp("net")
    nodes: list[subprocess.Popen[str]] = []
    out: list[tuple[Path, dict]] = []
    try:
        first = _start(root / "n0", "--dht-mode", "server")
        nodes.append(first)
        assert first.stdout is not None
        ready = json.loads(first.stdout.readline())
        out.append((root / "n0", ready))
        for i in range(1, 4):
            node = _start(root / f"n{i}", "--dht-mode", "server", "--bootstrap", ready["addrs"][0])
            nodes.append(node)
            assert node.stdout is not None
            out.append((root / f"n{i}", json.loads(node.stdout.readline())))
        # Every node knows the others once its self-lookup has run.
        for home, _ in out:
            for _ in range(100):
                status = json.loads(run("status", "--json", home=home).stdout)
                if status["dht"]["routing_table_size"] == 3:
                    break
            else:
                raise AssertionError(f"{home}: routing table never filled: {status}")
        yield out
    finally:
        for node in nodes:
            node.send_signal(signal.SIGINT)
        for node in nodes:
            assert node.wait(timeout=15) == 0


def test_status_shows_the_dht(network: list[tuple[Path, dict]]) -> None:
    home, ready = network[1]
    assert ready["dht_mode"] == "server"
    status = json.loads(run("status", "--json", home=home).stdout)
    assert status["dht"]["mode"] == "server" and status["dht"]["protocol"] == "/guts/kad/1.0.0"
    text = run("status", home=home).stdout
    assert "dht:          server on /guts/kad/1.0.0, routing table 3 peers" in text


def test_find_peers_prints_the_closest_peers(network: list[tuple[Path, dict]]) -> None:
    home = network[2][0]
    others = {ready["peer_id"] for h, ready in network if h != home}
    result = run("dht", "find-peers", "guts/some-repository", home=home)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["#", "PEER", "ID", "BITS"]
    listed = [line.split()[1] for line in lines[1:-1] if line.split()[0].isdigit()]
    assert set(listed) == others
    assert "3 closest peers to 'guts/some-repository'" in lines[-1] and "peers queried" in lines[-1]
    as_json = json.loads(run("dht", "find-peers", "guts/some-repository", "--json", home=home).stdout)
    assert {p["peer_id"] for p in as_json["peers"]} == others
    bits = [p["common_prefix_bits"] for p in as_json["peers"]]
    assert bits == sorted(bits, reverse=True)  # nearest first
    assert as_json["queried"] >= 3 and as_json["rounds"] >= 1


def test_provide_and_find_providers(network: list[tuple[Path, dict]]) -> None:
    (provider, ready), (seeker, _) = network[1], network[3]
    result = run("dht", "provide", "guts/repo-a", home=provider)
    assert result.returncode == 0, result.stderr
    assert "provided 'guts/repo-a'" in result.stdout
    found = json.loads(run("dht", "find-providers", "guts/repo-a", "--json", home=seeker).stdout)
    assert [p["peer_id"] for p in found["providers"]] == [ready["peer_id"]]
    assert ready["addrs"][0].split("/p2p/")[0] in found["providers"][0]["addrs"]


def test_put_get_and_a_missing_key(network: list[tuple[Path, dict]]) -> None:
    owner = network[0][1]["peer_id"]
    put = run("dht", "put", "greeting", "hello, world", "--json", home=network[0][0])
    assert put.returncode == 0, put.stderr
    answer = json.loads(put.stdout)
    assert answer["key"] == f"/guts/{owner}/greeting" and answer["stored"] == len(answer["stored_at"]) >= 1
    assert answer["stored_locally"] and answer["seq"] > 0
    got = run("dht", "get", f"{owner}/greeting", home=network[2][0])
    assert got.returncode == 0, got.stderr
    assert got.stdout == "hello, world\n"
    as_json = json.loads(run("dht", "get", f"/guts/{owner}/greeting", "--json", home=network[3][0]).stdout)
    assert as_json["owner"] == owner and as_json["seq"] == answer["seq"] and as_json["value"] == "hello, world"
    missing = run("dht", "get", "no-such-key", home=network[2][0])
    assert missing.returncode == 1
    assert "no value found" in missing.stderr and f"/guts/{network[2][1]['peer_id']}/no-such-key" in missing.stderr
    as_json = run("dht", "get", "no-such-key", "--json", home=network[2][0])
    assert json.loads(as_json.stdout)["kind"] == "not_found"


def test_only_the_owner_can_replace_its_value(network: list[tuple[Path, dict]]) -> None:
    owner = network[1][1]["peer_id"]
    first = run("dht", "put", "motd", "first", home=network[1][0])
    assert first.returncode == 0, first.stderr
    assert f"stored /guts/{owner}/motd (seq " in first.stdout
    hijack = run("dht", "put", f"{owner}/motd", "\xff" * 20, home=network[2][0])
    assert hijack.returncode == 1 and "can only sign its own records" in hijack.stderr
    assert run("dht", "put", "motd", "second", home=network[1][0]).returncode == 0
    for home, _ in network:
        got = run("dht", "get", f"{owner}/motd", home=home)
        assert got.returncode == 0 and got.stdout == "second\n", (home, got.stdout, got.stderr)


def test_a_put_that_stored_nowhere_fails(tmp_path: Path) -> None:
    lone = _start(tmp_path / "lone", "--dht-mode", "server")
    try:
        assert lone.stdout is not None
        json.loads(lone.stdout.readline())
        result = run("dht", "put", "alone", "v", home=tmp_path / "lone")
        assert result.returncode == 1
        assert "stored at no peer" in result.stderr and "at 0 peers" in result.stdout
        as_json = run("dht", "put", "alone", "v", "--json", home=tmp_path / "lone")
        assert as_json.returncode == 1
        answer = json.loads(as_json.stdout)
        assert answer["stored"] == 0 and answer["stored_at"] == [] and answer["stored_locally"]
    finally:
        lone.send_signal(signal.SIGINT)
        assert lone.wait(timeout=15) == 0


def test_find_peer(network: list[tuple[Path, dict]]) -> None:
    target = network[1][1]
    result = run("dht", "find-peer", target["peer_id"], home=network[3][0])
    assert result.returncode == 0, result.stderr
    assert target["addrs"][0].split("/p2p/")[0] in result.stdout


def test_without_a_node_a_bootstrap_peer_serves_one_query(network: list[tuple[Path, dict]], tmp_path: Path) -> None:
    nobody = tmp_path / "nobody"
    refused = run("dht", "find-peers", "x", home=nobody)
    assert refused.returncode == 1
    assert "no node is running" in refused.stderr and "--bootstrap" in refused.stderr
    bootstrap = network[0][1]["addrs"][0]
    result = run("dht", "find-peers", "guts/repo-a", "--json", "--bootstrap", bootstrap, home=nobody)
    assert result.returncode == 0, result.stderr
    assert {p["peer_id"] for p in json.loads(result.stdout)["peers"]} == {r["peer_id"] for _, r in network}
    got = run("dht", "get", f"{network[0][1]['peer_id']}/greeting", "--bootstrap", bootstrap, home=nobody)
    assert got.returncode == 0 and got.stdout == "hello, world\n"
    assert not (nobody / "control.sock").exists() and not (nobody / "dht.sqlite").exists()


def test_unreachable_bootstrap_is_a_clear_error(tmp_path: Path) -> None:
    result = run("dht", "find-peers", "x", "--bootstrap", "/ip4/127.0.0.1/tcp/1", "--timeout", "20", home=tmp_path)
    assert result.returncode == 1
    assert "could not reach any bootstrap peer" in result.stderr and "/ip4/127.0.0.1/tcp/1" in result.stderr


def test_bad_key_is_a_clear_error(network: list[tuple[Path, dict]]) -> None:
    result = run("dht", "put", "/nonamespace", "v", home=network[0][0])
    assert result.returncode == 1 and "error:" in result.stderr


# The CIDs of b"hello world" (raw codec) as js multiformats writes them.
HELLO_BASE32 = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
HELLO_BASE58 = "zb2rhj7crUKTQYRGCRATFaQ6YFLTde2YzdqbbhAASkL9uRDXn"
HELLO_MULTIHASH = "1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
OTHER_PROTOCOL = "/test/kad/1.0.0"


@pytest.fixture(scope="module")
def other_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Path, dict]]]:
    """Two DHT servers on another protocol than Guts's default."""
    root = tmp_path_factory.mktemp("other")
    nodes: list[subprocess.Popen[str]] = []
    out: list[tuple[Path, dict]] = []
    try:
        for i in range(2):
            boot = ["--bootstrap", out[0][1]["addrs"][0]] if out else []
            node = _start(root / f"o{i}", "--dht-mode", "server", "--dht-protocol", OTHER_PROTOCOL, *boot)
            nodes.append(node)
            assert node.stdout is not None
            out.append((root / f"o{i}", json.loads(node.stdout.readline())))
        for home, _ in out:
            for _ in range(100):
                status = json.loads(run("status", "--json", home=home).stdout)
                if status["dht"]["routing_table_size"] == 1:
                    break
            else:
                raise AssertionError(f"{home}: routing table never filled: {status}")
        yield out
    finally:
        for node in nodes:
            node.send_signal(signal.SIGINT)
        for node in nodes:
            assert node.wait(timeout=15) == 0


def test_every_command_takes_dht_protocol(tmp_path: Path) -> None:
    for command in ("find-peers", "find-peer", "provide", "find-providers", "put", "get"):
        result = run("dht", command, "--help", home=tmp_path)
        assert result.returncode == 0 and "--dht-protocol" in result.stdout, command
    # The short-lived node is always a client, and the help says why.
    assert "always a DHT client" in " ".join(run("dht", "--help", home=tmp_path).stdout.split())


def test_a_short_lived_node_joins_a_network_on_another_protocol(
    other_network: list[tuple[Path, dict]], tmp_path: Path
) -> None:
    (_, first), (_, second) = other_network
    nobody = tmp_path / "nobody"
    # Without the flag, the short-lived node speaks /guts/kad/1.0.0 and says what to do.
    wrong = run("dht", "find-peer", second["peer_id"], "--bootstrap", first["addrs"][0], home=nobody)
    assert wrong.returncode == 1
    assert "no bootstrap peer serves the DHT on /guts/kad/1.0.0" in wrong.stderr and "--dht-protocol" in wrong.stderr
    found = run(
        "dht", "find-peer", second["peer_id"], "--bootstrap", first["addrs"][0], "--dht-protocol", OTHER_PROTOCOL,
        home=nobody,
    )
    assert found.returncode == 0, found.stderr
    assert second["addrs"][0].split("/p2p/")[0] in found.stdout
    peers = run(
        "dht", "find-peers", "guts/x", "--json", "--bootstrap", first["addrs"][0], "--dht-protocol", OTHER_PROTOCOL,
        home=nobody,
    )
    assert {p["peer_id"] for p in json.loads(peers.stdout)["peers"]} == {first["peer_id"], second["peer_id"]}
    assert not (nobody / "control.sock").exists()


def test_dht_protocol_must_be_the_running_nodes(network: list[tuple[Path, dict]]) -> None:
    home = network[1][0]
    refused = run("dht", "find-peers", "x", "--dht-protocol", "/ipfs/kad/1.0.0", home=home)
    assert refused.returncode == 1
    assert "queries the DHT on /guts/kad/1.0.0, not /ipfs/kad/1.0.0" in refused.stderr
    assert "guts start --dht-protocol /ipfs/kad/1.0.0" in refused.stderr
    as_json = run("dht", "get", "greeting", "--json", "--dht-protocol", "/ipfs/kad/1.0.0", home=home)
    assert json.loads(as_json.stdout)["kind"] == "bad_request"
    same = run("dht", "find-peers", "x", "--dht-protocol", "/guts/kad/1.0.0", home=home)
    assert same.returncode == 0, same.stderr


def test_bad_dht_protocol_is_refused(tmp_path: Path) -> None:
    result = run("dht", "find-peers", "x", "--dht-protocol", "kad", home=tmp_path)
    assert result.returncode == 2
    assert "a protocol id looks like /ipfs/kad/1.0.0" in " ".join(result.stderr.replace("│", " ").split())


def test_a_cid_key_is_the_cids_multihash(network: list[tuple[Path, dict]]) -> None:
    (provider, ready), (seeker, _) = network[2], network[0]
    result = run("dht", "provide", HELLO_BASE32, home=provider)
    assert result.returncode == 0, result.stderr
    assert f"provided '{HELLO_BASE32}' (CID v1 raw sha2-256, key {HELLO_MULTIHASH[:16]}...)" in result.stdout
    # The same CID in another base names the same key.
    found = json.loads(run("dht", "find-providers", HELLO_BASE58, "--json", home=seeker).stdout)
    assert found["key_hex"] == HELLO_MULTIHASH
    assert [p["peer_id"] for p in found["providers"]] == [ready["peer_id"]]
    text = run("dht", "find-providers", HELLO_BASE58, home=seeker).stdout
    assert f"1 providers of '{HELLO_BASE58}' (CID v1 raw sha2-256, key {HELLO_MULTIHASH[:16]}...)" in text
    closest = run("dht", "find-peers", HELLO_BASE32, home=seeker).stdout
    assert "(CID v1 raw sha2-256, key 1220b94d27b9934d...)" in closest


def test_a_mistyped_cid_is_refused(network: list[tuple[Path, dict]], tmp_path: Path) -> None:
    typo = HELLO_BASE32[:-1]
    result = run("dht", "find-providers", typo, home=network[0][0])
    assert result.returncode == 1
    assert "looks like a CID but is not one" in result.stderr
    as_json = run("dht", "provide", typo, "--json", home=network[0][0])
    assert json.loads(as_json.stdout)["kind"] == "bad_request"
    # Refused before a short-lived node starts: the unreachable bootstrap peer is never dialled.
    early = run("dht", "find-providers", typo, "--bootstrap", "/ip4/127.0.0.1/tcp/1", home=tmp_path)
    assert early.returncode == 1 and "looks like a CID" in early.stderr
