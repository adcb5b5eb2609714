"""The WebSocket upgrade: bytes sent in the same write as the request are
kept, the request head is bounded, and a failed upgrade is logged once
per address per interval."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
import wsproto
from wsproto.events import AcceptConnection, BytesMessage, Request

from guts.errors import RemoteProtocolError
from guts.multiaddr import Multiaddr
from guts.transport import MemoryConnection, RawConnection, WebSocketConnection, WebSocketTransport, memory_connection_pair
from guts.transport.websocket import MAX_REQUEST_HEAD, server_handshake

from .test_transports import echo, serving


async def _server_with(first_writes: list[bytes]) -> tuple[WebSocketConnection, MemoryConnection]:
    """A server handshake fed ``first_writes`` by a raw wsproto client."""
    a, b = memory_connection_pair(1024 * 1024)
    got: list[WebSocketConnection] = []

    async def accept() -> None:
        got.append(await server_handshake(b, b.local_addr, b.remote_addr))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        for data in first_writes:
            await a.send_all(data)
            await trio.testing.wait_all_tasks_blocked()
    return got[0], a


async def test_frames_in_the_same_write_as_the_request_are_kept() -> None:
    raw = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = raw.send(Request(host="test", target="/"))
    # wsproto (the raw client) will not frame before the answer; frame by hand
    # what a client would send: a masked binary message of 5 bytes
    frame = b"\x82\x85" + b"\x00\x00\x00\x00" + b"early"
    conn, a = await _server_with([request + frame])
    with trio.fail_after(2):
        assert await conn.receive_some() == b"early"
    await conn.aclose()


async def test_a_request_head_split_anywhere_and_frames_behind_it() -> None:
    raw = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = raw.send(Request(host="test", target="/"))
    frame = b"\x82\x83\x00\x00\x00\x00abc"
    data = request + frame + frame
    cut = request.index(b"\r\n\r\n") + 2  # in the middle of the blank line
    conn, a = await _server_with([data[:5], data[5:cut], data[cut : cut + 1], data[cut + 1 : -3], data[-3:]])
    got = b""
    with trio.fail_after(2):
        while len(got) < 6:
            got += await conn.receive_some()
    assert got == b"abcabc"
    # and the client got the acceptance
    raw.receive_data(await a.receive_some())
    assert any(isinstance(e, AcceptConnection) for e in raw.events())
    await conn.aclose()


async def test_an_oversized_request_head_is_refused() -> None:
    a, b = memory_connection_pair(1024 * 1024)
    async with trio.open_nursery() as nursery:

        async def flood() -> None:
            try:
                for _ in range(MAX_REQUEST_HEAD // 1024 + 2):
                    await a.send_all(b"X-Filler: " + b"y" * 1014)
            except trio.BrokenResourceError:
                pass

        nursery.start_soon(flood)
        with trio.fail_after(5), pytest.raises(RemoteProtocolError, match="over"):
            await server_handshake(b, b.local_addr, b.remote_addr)
        await b.aclose()


async def test_a_failed_upgrade_is_logged_once_per_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guts.transport")
    transport = WebSocketTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"), echo) as addr:
        port = int(addr.value_for("tcp") or 0)
        for _ in range(20):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no upgrade
                with trio.fail_after(5):
                    answer = b""
                    while chunk := await stream.receive_some():
                        answer += chunk
                assert answer.startswith(b"HTTP/1.1 400")
        with trio.fail_after(5):
            while not caplog.records:
                await trio.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "guts.transport"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("websocket upgrade from 127.0.0.1 on /ip4/127.0.0.1/tcp/") and "Upgrade" in lines[0]
    assert transport.failures.info("127.0.0.1", "upgrade failed", "x") is False  # 19 held back, still counting


async def test_a_client_that_hangs_up_before_upgrading_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guts.transport")
    transport = WebSocketTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"), echo) as addr:
        stream = await trio.open_tcp_stream("127.0.0.1", int(addr.value_for("tcp") or 0))
        await stream.aclose()
        with trio.fail_after(5):
            while not caplog.records:
                await trio.sleep(0.01)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "guts.transport"]
    assert "failed: connection closed during the websocket handshake" in line


async def test_the_upgrade_still_works_end_to_end_over_tcp() -> None:
    transport = WebSocketTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"), echo) as addr:
        with trio.fail_after(10):
            conn: RawConnection = await transport.dial(addr)
            await conn.send_all(b"ping")
            assert await conn.receive_some() == b"ping"
            await conn.aclose()
