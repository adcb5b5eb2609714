"""guts.control.blocking: the control client without Trio, against the
control API's own HTTP server on a real Unix socket (served from a Trio
thread), and the import cost it exists for."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from guts.control._http import App, BodyLimit, HttpRequest, HttpResponse, JsonLines, RawStream, serve_http
from guts.control.blocking import BlockingControlClient, ControlError
from guts.errors import GutsError, InputError, NodeNotRunning


@contextmanager
def served(app: App, where: Path, limit: int = 100_000) -> Iterator[Path]:
    """``app`` behind the control API's HTTP server on a Unix socket."""
    path = where / "control.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    ready = threading.Event()
    handle: dict[str, Any] = {}

    async def main() -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        with trio.CancelScope() as scope:
            handle["scope"], handle["token"] = scope, trio.lowlevel.current_trio_token()
            ready.set()

            async def handler(stream: trio.SocketStream) -> None:
                await serve_http(stream, app, lambda method, target: BodyLimit(limit, streamed=target == "/pack"))

            await trio.serve_listeners(handler, [listener])

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield path
    finally:
        trio.from_thread.run_sync(handle["scope"].cancel, trio_token=handle["token"])
        thread.join(10)


async def app(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/echo"):
        return HttpResponse(200, {"method": request.method, "body": request.json() if request.body else None})
    if request.path == "/missing":
        return HttpResponse(404, {"error": "no such thing", "kind": "not_found"})
    if request.path == "/lines":

        async def lines() -> AsyncIterator[dict[str, Any]]:
            for n in range(3):
                yield {"n": n}

        return HttpResponse(200, JsonLines(lines()))
    if request.path == "/cut":

        async def chunks() -> AsyncIterator[bytes]:
            yield b"0008abcd"
            raise GutsError("git died")

        return HttpResponse(200, RawStream(chunks()))
    if request.path == "/pack":
        assert request.chunks is not None
        total = 0
        try:
            async for chunk in request.chunks:
                total += len(chunk)
        except InputError as exc:
            return HttpResponse(400, {"error": str(exc), "kind": "bad_request"})
        return HttpResponse(200, {"bytes": total})
    return HttpResponse(200, RawStream(_one(request.body[::-1])))


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_call_stream_raw_and_errors(tmp_path: Path) -> None:
    with served(app, tmp_path) as path:
        client = BlockingControlClient(path)
        assert client.call("GET", "/echo") == {"method": "GET", "body": None}
        assert client.call("POST", "/echo", {"a": 1}) == {"method": "POST", "body": {"a": 1}}
        with pytest.raises(ControlError) as caught:
            client.call("GET", "/missing")
        assert (caught.value.status, caught.value.kind, str(caught.value)) == (404, "not_found", "no such thing")
        assert list(client.stream("GET", "/lines")) == [{"n": 0}, {"n": 1}, {"n": 2}]
        with pytest.raises(ControlError):
            list(client.stream("GET", "/missing"))
        assert b"".join(client.raw("POST", "/reverse", b"abc")) == b"cba"
        got: list[bytes] = []
        with pytest.raises(ValueError, match="cut"):
            for chunk in client.raw("POST", "/cut", b""):
                got.append(chunk)
        assert got == [b"0008abcd"]


def test_a_streamed_body_and_an_early_refusal(tmp_path: Path) -> None:
    closed: list[bool] = []

    def body(total: int) -> Iterator[bytes]:
        try:
            for _ in range(total // 1000):
                yield b"x" * 1000
        finally:
            closed.append(True)  # as a pack-objects behind it would be stopped

    with served(app, tmp_path) as path:
        client = BlockingControlClient(path)
        assert client.send("POST", "/pack", body(50_000)) == {"bytes": 50_000}
        with pytest.raises(ControlError, match="over 100000 bytes"):
            client.send("POST", "/pack", body(2_000_000))
    assert closed == [True, True]


def test_no_node_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="no node is running"):
        BlockingControlClient(tmp_path / "control.sock").call("GET", "/v1/status")
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # a socket file nobody listens on
    with pytest.raises(NodeNotRunning, match="stale"):
        BlockingControlClient(stale).call("GET", "/v1/status")


def test_the_helper_and_the_client_import_no_trio() -> None:
    code = (
        "import sys, json, guts.control.blocking, guts._cli.remote, guts._cli.common; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'trio' or m.startswith('guts.control.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == ["guts.control._common", "guts.control.blocking"]
