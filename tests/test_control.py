"""The control API: HTTP over the node's Unix socket, its errors and limits."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from guts.config import NodeConfig
from guts.control import ControlClient, ControlError, bind_control_socket
from guts.control._http import MAX_BODY
from guts.crypto import KeyPair
from guts.errors import ConfigError, NodeNotRunning
from guts.multiaddr import Multiaddr
from guts.control.node import open_controlled_node
from guts.node import Node
from guts.transport import MemoryNetwork, MemoryTransport


@pytest.fixture
def home() -> Iterator[Path]:
    # Short: a Unix socket path holds at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="guts-", dir="/tmp"))
    yield path / "home"
    shutil.rmtree(path, ignore_errors=True)


def node_config(home: Path) -> NodeConfig:
    return NodeConfig(home=home, listen=(Multiaddr.parse("/memory/0"),), keep_alive=0)


@pytest.fixture
async def node(home: Path) -> AsyncIterator[Node]:
    net = MemoryNetwork()
    async with open_controlled_node(node_config(home), keypair=KeyPair.generate(), transports=[MemoryTransport(net)]) as n:
        yield n


async def raw_exchange(path: Path, data: bytes) -> bytes:
    stream = await trio.open_unix_socket(os.fspath(path))
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                out += chunk
    return out


async def test_status(node: Node) -> None:
    assert node.config.control
    status = await ControlClient(node.config.control_socket).call("GET", "/v1/status")
    assert status["peer_id"] == str(node.host.peer_id)
    assert status["addrs"] == [str(a) for a in node.addrs]
    assert status["connections"] == []
    assert "/ipfs/ping/1.0.0" in status["protocols"]


async def test_socket_is_private_and_removed_at_exit(home: Path) -> None:
    async with open_controlled_node(node_config(home), keypair=KeyPair.generate(), transports=[MemoryTransport(MemoryNetwork())]):
        mode = os.lstat(home / "control.sock").st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert not [p.name for p in home.iterdir() if p.name.startswith(".control")]  # no temporary name left
    assert not (home / "control.sock").exists()
    with pytest.raises(NodeNotRunning, match="no node is running"):
        await ControlClient(home / "control.sock").call("GET", "/v1/status")


async def test_second_node_on_the_same_home_is_refused(node: Node, home: Path) -> None:
    with pytest.raises(ConfigError, match="already running"):
        bind_control_socket(home / "control.sock")
    # ... and the first one still answers.
    assert (await ControlClient(home / "control.sock").call("GET", "/v1/status"))["peer_id"]


async def test_stale_socket_is_replaced_but_other_files_are_not(home: Path) -> None:
    home.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(home / "control.sock"))
    stale.close()  # the file stays, nobody listens: a node that died
    control = bind_control_socket(home / "control.sock")
    await control.aclose()
    (home / "control.sock").write_text("mine")
    with pytest.raises(ConfigError, match="not a socket"):
        bind_control_socket(home / "control.sock")
    assert (home / "control.sock").read_text() == "mine"


async def test_too_long_a_path_is_a_clear_error(home: Path) -> None:
    with pytest.raises(ConfigError, match="longer than 107 bytes"):
        bind_control_socket(home / ("x" * 120) / "control.sock")


async def test_unknown_endpoint_and_method(node: Node) -> None:
    client = ControlClient(node.config.control_socket)
    with pytest.raises(ControlError) as info:
        await client.call("GET", "/v1/nope")
    assert info.value.status == 404 and "no such endpoint" in str(info.value)
    with pytest.raises(ControlError) as info:
        await client.call("POST", "/v1/status", {})
    assert info.value.status == 405


async def test_garbage_gets_400_and_the_node_keeps_serving(node: Node) -> None:
    path = node.config.control_socket
    assert path is not None
    answer = await raw_exchange(path, b"\x00\x01 this is not HTTP\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["kind"] == "bad_request"
    assert (await ControlClient(path).call("GET", "/v1/status"))["peer_id"]


async def test_oversized_body_gets_413(node: Node) -> None:
    path = node.config.control_socket
    assert path is not None
    head = f"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode()
    stream = await trio.open_unix_socket(os.fspath(path))
    async with stream:
        await stream.send_all(head)
        sent = 0
        answer = b""
        with trio.fail_after(10):
            try:
                while sent <= MAX_BODY:
                    await stream.send_all(b"x" * 65536)
                    sent += 65536
            except trio.BrokenResourceError:
                pass  # the node hung up once it had seen enough
            try:
                while chunk := await stream.receive_some():
                    answer += chunk
            except trio.BrokenResourceError:
                pass
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_keep_alive_serves_several_requests(node: Node) -> None:
    path = node.config.control_socket
    assert path is not None
    stream = await trio.open_unix_socket(os.fspath(path))
    async with stream:
        request = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
        await stream.send_all(request * 2)
        seen = b""
        with trio.fail_after(5):
            while seen.count(b"HTTP/1.1 200 ") < 2:
                seen += await stream.receive_some()


async def test_a_route_may_keep_its_own_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """The API's timeout bounds every route but those that bring their own
    (a repository import runs as long as its history needs)."""
    from guts.control import ControlApi
    from guts.control._http import HttpRequest, HttpResponse

    api = ControlApi(None, timeout=60)  # type: ignore[arg-type]  # no route here reads the node

    async def slow(request: HttpRequest) -> HttpResponse:
        await trio.sleep(120)
        return HttpResponse(200, {"done": True})

    api.route("POST", "/v1/slow", slow)
    api.route("POST", "/v1/patient", slow, timeout=math.inf)
    timed_out = await api(HttpRequest("POST", "/v1/slow", {}, b""))
    assert timed_out.status == 504 and "60 s" in timed_out.body["error"]  # type: ignore[index]
    done = await api(HttpRequest("POST", "/v1/patient", {}, b""))
    assert done.status == 200 and done.body == {"done": True}
