"""``guts start --topic`` and ``guts pubsub ...`` with real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from guts.control import ControlClient, ControlError

from .test_cli import GUTS, _start, run


def _next_message(node: subprocess.Popen[str], deadline: float = 20) -> dict:
    assert node.stdout is not None
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = json.loads(node.stdout.readline())
        if line["event"] == "message":
            return line
    raise AssertionError("no message event")


def _wait_mesh(home: Path, topic: str, size: int) -> None:
    for _ in range(200):
        result = json.loads(run("pubsub", "peers", topic, "--json", home=home).stdout)
        if len(result["mesh"]) >= size:
            return
        time.sleep(0.05)
    raise AssertionError(f"{home}: mesh of {topic} never reached {size}: {result}")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[tuple[Path, dict, subprocess.Popen[str]], ...]]:
    """Two nodes subscribed to ``news`` at start, the second bootstrapped from the first."""
    a = _start(tmp_path / "a", "--topic", "news")
    nodes = [a]
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        b = _start(tmp_path / "b", "--topic", "news", "--bootstrap", ready_a["addrs"][0])
        nodes.append(b)
        assert b.stdout is not None
        ready_b = json.loads(b.stdout.readline())
        _wait_mesh(tmp_path / "a", "news", 1)
        _wait_mesh(tmp_path / "b", "news", 1)
        yield (tmp_path / "a", ready_a, a), (tmp_path / "b", ready_b, b)
    finally:
        for node in nodes:
            node.send_signal(signal.SIGINT)
        for node in nodes:
            assert node.wait(timeout=15) == 0


def test_publish_shows_up_in_start_topic_on_another_node(pair) -> None:  # type: ignore[no-untyped-def]
    (home_a, ready_a, node_a), (home_b, ready_b, _) = pair
    assert ready_a["topics"] == ["news"] and ready_a["dht_mode"] == "client"  # loopback only: auto is a client
    result = run("pubsub", "publish", "news", "refs/heads/main 3f2a", home=home_b)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("published ") and "on news" in result.stdout
    message = _next_message(node_a)
    assert message["topic"] == "news" and message["data"] == "refs/heads/main 3f2a"
    assert message["from"] == ready_b["peer_id"] and message["received_from"] == ready_b["peer_id"]
    assert isinstance(message["seqno"], int)
    assert message["message_id"].startswith("08011220")  # js's id: the author's key, then the seqno
    assert message["message_id"].endswith(message["seqno"].to_bytes(8, "big").hex())


def test_peers_lists_the_mesh(pair) -> None:  # type: ignore[no-untyped-def]
    (home_a, ready_a, _), (home_b, ready_b, _) = pair
    result = json.loads(run("pubsub", "peers", "news", "--json", home=home_a).stdout)
    assert result["subscribed"] is True
    assert result["mesh"] == [ready_b["peer_id"]]
    assert [p["peer_id"] for p in result["peers"]] == [ready_b["peer_id"]]
    assert result["peers"][0]["score"] >= 0
    text = run("pubsub", "peers", "news", home=home_a).stdout
    assert "news: subscribed, 1 in the mesh, 1 known subscribers" in text


def test_subscribe_streams_until_interrupted(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (home_a, ready_a, _), _ = pair
    env = {**os.environ, "GUTS_HOME": str(home_a)}
    sub = subprocess.Popen(
        [*GUTS, "pubsub", "subscribe", "other", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert sub.stdout is not None
        assert json.loads(sub.stdout.readline()) == {"event": "subscribed", "topic": "other"}
        assert "other" in json.loads(run("status", "--json", home=home_a).stdout)["pubsub"]["topics"]
        # b is not subscribed to "other": flood publishing still reaches a.
        _wait_subscribers(pair[1][0], "other", 1)
        assert run("pubsub", "publish", "other", "hi", home=pair[1][0]).returncode == 0
        message = json.loads(sub.stdout.readline())
        assert message["event"] == "message" and message["data"] == "hi"
    finally:
        sub.send_signal(signal.SIGINT)
        assert sub.wait(timeout=10) == 0
    # The node drops the subscription once its client has gone.
    for _ in range(100):
        if "other" not in json.loads(run("status", "--json", home=home_a).stdout)["pubsub"]["topics"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the subscription outlived its client")


def _wait_subscribers(home: Path, topic: str, size: int) -> None:
    for _ in range(200):
        result = json.loads(run("pubsub", "peers", topic, "--json", home=home).stdout)
        if len(result["peers"]) >= size:
            return
        time.sleep(0.05)
    raise AssertionError(f"{home}: {topic} never had {size} subscribers")


def test_errors(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (home_a, _, _), _ = pair

    async def publish(data: str) -> dict:
        return await ControlClient(home_a / "control.sock").call("POST", "/v1/pubsub/publish", {"topic": "quiet", "data": data})

    assert trio.run(publish, "x" * (1024 * 1024))["message_id"]  # the largest message goes through
    with pytest.raises(ControlError) as info:
        trio.run(publish, "x" * (1024 * 1024 + 1))
    assert info.value.status == 400 and "1048576" in str(info.value)
    empty = run("pubsub", "publish", "", "x", home=home_a)
    assert empty.returncode == 1 and "error:" in empty.stderr
    nobody = run("pubsub", "publish", "news", "x", home=tmp_path / "nobody")
    assert nobody.returncode == 1 and "no node is running" in nobody.stderr
