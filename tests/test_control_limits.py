"""The control socket's bounds: idle clients are dropped (after
IDLE_TIMEOUT, or at once when the table is full and someone new comes),
``guts status`` always gets through, and JSON bodies are bounded in depth."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from guts.config import NodeConfig
from guts.control import ControlClient
from guts.control import _http
from guts.control._http import MAX_JSON_DEPTH, HttpRequest
from guts.control._server import MAX_CLIENTS, _Clients
from guts.control.node import open_controlled_node
from guts.crypto import KeyPair
from guts.errors import InputError
from guts.multiaddr import Multiaddr
from guts.node import Node
from guts.transport import MemoryNetwork, MemoryTransport


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="guts-", dir="/tmp"))  # a socket path holds 107 bytes
    yield path / "home"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node(home: Path) -> AsyncIterator[Node]:
    config = NodeConfig(home=home, listen=(Multiaddr.parse("/memory/0"),), keep_alive=0)
    async with open_controlled_node(config, keypair=KeyPair.generate(), transports=[MemoryTransport(MemoryNetwork())]) as n:
        yield n


def socket_path(node: Node) -> Path:
    path = node.config.control_socket
    assert path is not None
    return path


async def test_status_answers_within_1_s_with_70_idle_clients(node: Node) -> None:
    path = socket_path(node)
    idle: list[trio.SocketStream] = []
    for i in range(70):
        stream = await trio.open_unix_socket(os.fspath(path))
        idle.append(stream)
        if i < 10:  # a few of them half-way through a request head
            await stream.send_all(b"GET /v1/status HTTP/1.1\r\nHo")
        await trio.testing.wait_all_tasks_blocked()  # accepted in this order
    try:
        for _ in range(3):  # and again, the table being full of idle ones
            with trio.fail_after(1):
                status = await ControlClient(path).call("GET", "/v1/status")
            assert status["peer_id"] == str(node.host.peer_id)
        # 70 - 64 were dropped as they came, the longest idle first, then one
        # for the first status (the others found the slot it freed)
        dropped = 70 - MAX_CLIENTS + 1
        with trio.fail_after(2):
            for stream in idle[:dropped]:
                try:
                    assert await stream.receive_some() == b""
                except trio.BrokenResourceError:
                    pass
        with trio.move_on_after(0.2) as scope:
            await idle[dropped].receive_some()
        assert scope.cancelled_caught  # still connected
    finally:
        for stream in idle:
            await stream.aclose()


async def test_an_idle_client_is_dropped_after_the_idle_timeout(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _http.IDLE_TIMEOUT <= 10  # "a few seconds" (it was 60)
    monkeypatch.setattr(_http, "IDLE_TIMEOUT", 0.2)
    stream = await trio.open_unix_socket(os.fspath(socket_path(node)))
    async with stream:
        with trio.fail_after(2):
            assert await stream.receive_some() == b""


async def test_a_request_started_in_time_is_not_cut_by_the_idle_timeout(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "IDLE_TIMEOUT", 0.2)
    body = b'{"key": "x"}'
    stream = await trio.open_unix_socket(os.fspath(socket_path(node)))
    async with stream:
        await stream.send_all(
            b"POST /v1/dht/get HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        await trio.sleep(0.4)  # the body comes later than the idle timeout
        await stream.send_all(body)
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 ") and not answer.startswith(b"HTTP/1.1 408")


async def test_json_nested_100000_deep_gets_400_without_a_traceback(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guts")
    body = b'{"key": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    stream = await trio.open_unix_socket(os.fspath(socket_path(node)))
    async with stream:
        await stream.send_all(
            b"POST /v1/dht/get HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert error["kind"] == "bad_request" and "nested deeper" in error["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert (await ControlClient(socket_path(node)).call("GET", "/v1/status"))["peer_id"]


def test_json_depth_limit() -> None:
    def parse(body: bytes) -> object:
        return HttpRequest("POST", "/", {}, body).json()

    deep = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse(b'{"a": ' + deep[1:-1] + b"}") == {"a": json.loads(deep[1:-1])}
    with pytest.raises(InputError, match="nested deeper"):
        parse(b'{"a": ' + deep + b"}")
    # brackets inside strings do not nest, escaped quotes do not end them
    text = '\\"' + "[{" * 1000
    assert parse(json.dumps({"a": text}).encode()) == {"a": text}


async def test_a_full_table_drops_the_longest_idle_and_refuses_when_all_are_busy() -> None:
    clients = _Clients(3)
    a, b, c = clients.admit(), clients.admit(), clients.admit()
    assert a and b and c
    b.idle(True)
    await trio.sleep(0.01)
    a.idle(True)
    d = clients.admit()
    assert d is not None and b.scope.cancel_called and not a.scope.cancel_called
    assert len(clients) == 3 and clients.evicted == 1
    a.idle(False)
    assert clients.admit() is None  # a, c, d busy
    clients.remove(c)
    assert clients.admit() is not None
    assert MAX_CLIENTS >= 16


async def test_when_every_client_is_busy_a_new_one_gets_503(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from guts.control import _server

    monkeypatch.setattr(_server, "MAX_CLIENTS", 3)
    config = NodeConfig(home=home, listen=(Multiaddr.parse("/memory/0"),), keep_alive=0)
    async with open_controlled_node(config, keypair=KeyPair.generate(), transports=[MemoryTransport(MemoryNetwork())]) as node:
        path = socket_path(node)
        busy = []
        for _ in range(3):  # subscriptions: busy for as long as they last
            stream = await trio.open_unix_socket(os.fspath(path))
            await stream.send_all(b"GET /v1/pubsub/subscribe?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 200 ")
            busy.append(stream)
        try:
            stream = await trio.open_unix_socket(os.fspath(path))
            async with stream:
                answer = b""
                with trio.fail_after(5):
                    while chunk := await stream.receive_some():
                        answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["kind"] == "busy"
        finally:
            for stream in busy:
                await stream.aclose()
        # the subscriptions gone, status gets through again
        with trio.fail_after(5):
            while True:
                try:
                    await ControlClient(path).call("GET", "/v1/status")
                    break
                except Exception:
                    await trio.sleep(0.05)
