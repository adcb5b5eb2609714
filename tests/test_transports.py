"""Transports: one shared suite every transport passes, then per-transport
checks (stream conformance on memory pipes, real-socket smoke tests)."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

import guts.transport
from guts.errors import DialError
from guts.multiaddr import Multiaddr
from guts.transport import (
    MemoryConnection,
    MemoryNetwork,
    MemoryTransport,
    RawConnection,
    TcpConnection,
    TcpTransport,
    Transport,
    WebSocketConnection,
    WebSocketTransport,
    memory_connection_pair,
)
from guts.transport.websocket import client_handshake, server_handshake

PEER = "12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A"


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _free_tcp_port() -> int:
    """A port nobody listens on (bound then released), for refused dials."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Case:
    name: str
    transport: Transport
    listen: Multiaddr
    refused: Multiaddr
    half_close: bool


def _case(name: str) -> Case:
    if name == "memory":
        return Case("memory", MemoryTransport(MemoryNetwork()), Multiaddr.parse("/memory/0"),
                    Multiaddr.parse("/memory/4242"), True)
    port = _free_tcp_port()
    if name == "tcp":
        return Case("tcp", TcpTransport(), Multiaddr.parse("/ip4/127.0.0.1/tcp/0"),
                    Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}"), True)
    return Case("ws", WebSocketTransport(), Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"),
                Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}/ws"), False)


@pytest.fixture(params=["memory", "tcp", "ws"])
async def case(request: pytest.FixtureRequest) -> Case:
    return _case(request.param)


@pytest.fixture(params=["memory", "tcp"])
async def half_closeable_case(request: pytest.FixtureRequest) -> Case:
    """The transports whose connections can half-close (WebSocket cannot)."""
    case = _case(request.param)
    assert case.half_close
    return case


Handler = Callable[[RawConnection], Awaitable[None]]


@asynccontextmanager
async def serving(transport: Transport, addr: Multiaddr, handler: Handler) -> AsyncIterator[Multiaddr]:
    """Run ``transport.serve`` for the duration of the block; yield the bound address."""
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(transport.serve, addr, handler)
        assert len(addrs) == 1
        yield addrs[0]
        nursery.cancel_scope.cancel()


async def echo(conn: RawConnection) -> None:
    while data := await conn.receive_some():
        await conn.send_all(data)


async def receive_exactly(conn: trio.abc.ReceiveStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await conn.receive_some(n - len(buf))
        assert data, f"EOF after {len(buf)} of {n} bytes"
        buf += data
    return bytes(buf)


async def receive_until_eof(conn: trio.abc.ReceiveStream) -> bytes:
    buf = bytearray()
    while data := await conn.receive_some():
        buf += data
    return bytes(buf)


# -- the shared suite ---------------------------------------------------------


async def test_serve_reports_bound_address(case: Case) -> None:
    assert case.transport.can_listen(case.listen)
    async with serving(case.transport, case.listen, echo) as addr:
        assert addr.protocols() == case.listen.protocols()
        assert addr != case.listen  # port 0 was replaced
        assert case.transport.can_dial(addr)
        assert not case.transport.can_listen(addr.with_p2p(PEER))


async def test_echo_both_ways_and_addresses(case: Case) -> None:
    accepted: list[RawConnection] = []

    async def handler(conn: RawConnection) -> None:
        accepted.append(conn)
        await echo(conn)

    async with serving(case.transport, case.listen, handler) as addr:
        with trio.fail_after(10):
            conn = await case.transport.dial(addr)
            await conn.send_all(b"hello")
            assert await receive_exactly(conn, 5) == b"hello"
            await conn.send_all(bytearray(b" world"))
            await conn.send_all(memoryview(b"!"))
            assert await receive_exactly(conn, 7) == b" world!"
            assert conn.remote_addr == addr
            (server_side,) = accepted
            assert server_side.local_addr == addr
            assert server_side.remote_addr == conn.local_addr
            await conn.aclose()


async def test_dial_ignores_trailing_p2p(case: Case) -> None:
    async with serving(case.transport, case.listen, echo) as addr:
        with trio.fail_after(10):
            conn = await case.transport.dial(addr.with_p2p(PEER))
            await conn.send_all(b"x")
            assert await receive_exactly(conn, 1) == b"x"
            await conn.aclose()


async def test_half_close(half_closeable_case: Case) -> None:
    case = half_closeable_case

    async def handler(conn: RawConnection) -> None:
        data = await receive_until_eof(conn)
        await conn.send_all(data[::-1])

    async with serving(case.transport, case.listen, handler) as addr:
        with trio.fail_after(10):
            conn = await case.transport.dial(addr)
            assert isinstance(conn, trio.abc.HalfCloseableStream)
            await conn.send_all(b"abc")
            await conn.send_eof()
            assert await receive_until_eof(conn) == b"cba"
            await conn.aclose()


async def test_large_payload_both_directions_at_once(case: Case) -> None:
    size = 8 * 1024 * 1024
    up = os.urandom(size)
    down = os.urandom(size)

    async def handler(conn: RawConnection) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.send_all, down)
            got = await receive_exactly(conn, size)
        await conn.send_all(hashlib.sha256(got).digest())
        await conn.receive_some()  # until the client hangs up

    async with serving(case.transport, case.listen, handler) as addr:
        with trio.fail_after(60):
            conn = await case.transport.dial(addr)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.send_all, up)
                got = await receive_exactly(conn, size)
            assert got == down
            assert await receive_exactly(conn, 32) == hashlib.sha256(up).digest()
            await conn.aclose()


async def test_concurrent_connections(case: Case) -> None:
    async with serving(case.transport, case.listen, echo) as addr:

        async def client(i: int) -> None:
            conn = await case.transport.dial(addr)
            payload = f"client {i} ".encode() * (i + 1)
            for _ in range(3):
                await conn.send_all(payload)
                assert await receive_exactly(conn, len(payload)) == payload
            await conn.aclose()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(25):
                    nursery.start_soon(client, i)


async def test_handler_return_closes_connection(case: Case) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.send_all(b"bye")

    async with serving(case.transport, case.listen, handler) as addr:
        with trio.fail_after(10):
            conn = await case.transport.dial(addr)
            assert await receive_until_eof(conn) == b"bye"
            await conn.aclose()


async def test_handler_error_is_logged_and_listener_survives(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def handler(conn: RawConnection) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler blew up")
        await echo(conn)

    with caplog.at_level(logging.ERROR, logger="guts.transport"):
        async with serving(case.transport, case.listen, handler) as addr:
            with trio.fail_after(10):
                first = await case.transport.dial(addr)
                try:
                    assert await first.receive_some() == b""
                except trio.BrokenResourceError:
                    pass  # closed with our bytes unread: a reset is fine too
                await first.aclose()
                second = await case.transport.dial(addr)
                await second.send_all(b"still here")
                assert await receive_exactly(second, 10) == b"still here"
                await second.aclose()
    assert "handler blew up" in caplog.text


async def test_cancelling_serve_closes_listener_and_connections(case: Case) -> None:
    handler_started = trio.Event()

    async def handler(conn: RawConnection) -> None:
        handler_started.set()
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            addr = (await nursery.start(case.transport.serve, case.listen, handler))[0]
            conn = await case.transport.dial(addr)
            await handler_started.wait()
            nursery.cancel_scope.cancel()
        try:
            assert await conn.receive_some() == b""
        except trio.BrokenResourceError:
            pass
        await conn.aclose()
        with pytest.raises(DialError):
            await case.transport.dial(addr)


async def test_refused_dial_raises_dial_error_quickly(case: Case) -> None:
    with trio.fail_after(5):
        with pytest.raises(DialError) as info:
            await case.transport.dial(case.refused)
    assert str(case.refused) in str(info.value)


async def test_dial_of_foreign_address_raises_dial_error(case: Case) -> None:
    foreign = Multiaddr.parse("/ip4/127.0.0.1/udp/1/quic-v1")
    assert not case.transport.can_dial(foreign)
    with pytest.raises(DialError):
        await case.transport.dial(foreign)


async def test_closed_connection_raises_closed_resource_error(case: Case) -> None:
    async with serving(case.transport, case.listen, echo) as addr:
        with trio.fail_after(10):
            conn = await case.transport.dial(addr)
            await conn.aclose()
            await conn.aclose()  # idempotent
            with pytest.raises(trio.ClosedResourceError):
                await conn.send_all(b"x")
            with pytest.raises(trio.ClosedResourceError):
                await conn.receive_some()


# -- address matching ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tcp", "ws"),
    [
        ("/ip4/1.2.3.4/tcp/1", True, False),
        ("/ip6/::1/tcp/1", True, False),
        ("/dns/example.com/tcp/1", True, False),
        ("/dns4/example.com/tcp/1", True, False),
        (f"/dns6/example.com/tcp/1/p2p/{PEER}", True, False),
        ("/ip4/1.2.3.4/tcp/1/ws", False, True),
        (f"/dns4/example.com/tcp/443/ws/p2p/{PEER}", False, True),
        ("/ip4/1.2.3.4/tcp/1/wss", False, False),
        ("/ip4/1.2.3.4/udp/1", False, False),
        ("/ip4/1.2.3.4", False, False),
        ("/tcp/1", False, False),
        ("/memory/1", False, False),
        (f"/p2p/{PEER}", False, False),
        ("/ip4/1.2.3.4/tcp/1/ws/ws", False, False),
    ],
)
def test_can_dial(text: str, tcp: bool, ws: bool) -> None:
    addr = Multiaddr.parse(text)
    assert TcpTransport().can_dial(addr) is tcp
    assert WebSocketTransport().can_dial(addr) is ws
    assert MemoryTransport(MemoryNetwork()).can_dial(addr) is (addr.protocols() == ("memory",))


def test_can_listen() -> None:
    tcp, ws, mem = TcpTransport(), WebSocketTransport(), MemoryTransport(MemoryNetwork())
    assert tcp.can_listen(Multiaddr.parse("/ip4/0.0.0.0/tcp/0"))
    assert tcp.can_listen(Multiaddr.parse("/ip6/::/tcp/4001"))
    assert not tcp.can_listen(Multiaddr.parse("/dns4/example.com/tcp/1"))
    assert not tcp.can_listen(Multiaddr.parse(f"/ip4/0.0.0.0/tcp/0/p2p/{PEER}"))
    assert ws.can_listen(Multiaddr.parse("/ip4/0.0.0.0/tcp/0/ws"))
    assert not ws.can_listen(Multiaddr.parse("/ip4/0.0.0.0/tcp/0"))
    assert mem.can_listen(Multiaddr.parse("/memory/0"))
    assert not mem.can_listen(Multiaddr.parse(f"/memory/1/p2p/{PEER}"))
    assert mem.can_dial(Multiaddr.parse(f"/memory/1/p2p/{PEER}"))


def test_public_surface() -> None:
    assert sorted(guts.transport.__all__) == sorted([
        "ConnectionHandler", "MemoryConnection", "MemoryLink", "MemoryNetwork", "MemoryTransport", "RawConnection",
        "TcpConnection", "TcpTransport", "Transport", "UpgradedConnection", "WebSocketConfig", "WebSocketConnection",
        "WebSocketTransport", "memory_connection_pair",
    ])
    # Structural conformance, checked by mypy.
    transports: list[Transport] = [TcpTransport(), WebSocketTransport(), MemoryTransport(MemoryNetwork())]
    assert len(transports) == 3


# -- memory transport ---------------------------------------------------------------


async def _memory_pair() -> tuple[MemoryConnection, MemoryConnection]:
    return memory_connection_pair(1024)


async def _clogged_memory_pair() -> tuple[MemoryConnection, MemoryConnection]:
    a, b = memory_connection_pair(1)
    await a.send_all(b"\0")  # the one byte of buffer each way is now full
    await b.send_all(b"\0")
    return a, b


async def test_memory_stream_conformance() -> None:
    await trio.testing.check_half_closeable_stream(_memory_pair, _clogged_memory_pair)


async def test_memory_backpressure() -> None:
    a, b = memory_connection_pair(16)
    sent = trio.Event()

    async def send() -> None:
        await a.send_all(b"x" * 40)
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # 40 bytes do not fit in 16
        assert await b.receive_some() == b"x" * 16
        assert await receive_exactly(b, 24) == b"x" * 24
    assert sent.is_set()


async def test_memory_try_send_buffers_what_fits_without_waiting() -> None:
    a, b = memory_connection_pair(16)
    with trio.testing.assert_no_checkpoints():
        assert a.try_send(b"x" * 10) == 10
        assert a.try_send(memoryview(b"y" * 10)) == 6  # 16 bytes of room in all
        assert a.try_send(b"z") == 0
    assert await b.receive_some() == b"x" * 10 + b"y" * 6
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"w" * 40)  # blocks: 40 bytes do not fit in 16
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            a.try_send(b"interleaved")
        assert await receive_exactly(b, 40) == b"w" * 40
    await a.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        a.try_send(b"after eof")
    await b.aclose()
    c, d = memory_connection_pair(16)
    await d.aclose()
    with pytest.raises(trio.BrokenResourceError):
        c.try_send(b"nobody reads")


async def test_memory_networks_are_isolated_and_ports_unique() -> None:
    one, two = MemoryNetwork(), MemoryNetwork()
    async with serving(MemoryTransport(one), Multiaddr.parse("/memory/0"), echo) as a:
        async with serving(MemoryTransport(one), Multiaddr.parse("/memory/0"), echo) as b:
            assert a != b
            async with trio.open_nursery() as nursery:
                with pytest.raises(OSError, match="in use"):
                    await nursery.start(MemoryTransport(one).serve, a, echo)
            with pytest.raises(DialError):
                await MemoryTransport(two).dial(a)
            # The same port on another network is free.
            async with serving(MemoryTransport(two), a, echo) as same:
                assert same == a


async def test_memory_unaccepted_connections_closed_with_listener() -> None:
    network = MemoryNetwork()
    transport = MemoryTransport(network)
    listener = network._bind(0)
    conn = await transport.dial(listener.addr)  # queued, never accepted
    await listener.aclose()
    assert await conn.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await conn.send_all(b"x")
    with pytest.raises(DialError):
        await transport.dial(listener.addr)


async def test_memory_many_nodes_autojump(autojump_clock: trio.testing.MockClock) -> None:
    """The shape of a simulation: many listeners, each dialled by its neighbour."""
    network = MemoryNetwork()
    transport = MemoryTransport(network)
    n = 200
    async with trio.open_nursery() as nursery:
        addrs = [(await nursery.start(transport.serve, Multiaddr.parse("/memory/0"), echo))[0] for _ in range(n)]

        async def ping(i: int) -> None:
            conn = await transport.dial(addrs[(i + 1) % n])
            await conn.send_all(b"ping")
            assert await receive_exactly(conn, 4) == b"ping"
            await conn.aclose()

        async with trio.open_nursery() as clients:
            for i in range(n):
                clients.start_soon(ping, i)
        nursery.cancel_scope.cancel()


# -- websocket framing, over memory pipes -------------------------------------------


async def _ws_pair(nursery: trio.Nursery | None = None) -> tuple[WebSocketConnection, WebSocketConnection]:
    a, b = memory_connection_pair(64 * 1024)
    result: dict[str, WebSocketConnection] = {}

    async def server() -> None:
        result["server"] = await server_handshake(b, b.local_addr, b.remote_addr)

    async with trio.open_nursery() as n:
        n.start_soon(server)
        result["client"] = await client_handshake(a, "test", a.local_addr, a.remote_addr)
    return result["client"], result["server"]


async def test_websocket_stream_conformance() -> None:
    await trio.testing.check_two_way_stream(_ws_pair, None)


async def test_websocket_receive_some_keeps_the_rest_of_a_message() -> None:
    client, server = await _ws_pair()
    await client.send_all(b"0123456789")
    assert await server.receive_some(4) == b"0123"
    assert await server.receive_some(4) == b"4567"
    assert await server.receive_some() == b"89"
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()


async def test_websocket_large_send_is_split_into_messages() -> None:
    import wsproto
    from wsproto.events import AcceptConnection, BytesMessage, Request

    a, b = memory_connection_pair(1024 * 1024)
    raw = wsproto.WSConnection(wsproto.ConnectionType.SERVER)

    async def raw_server() -> list[int]:
        sizes: list[int] = []
        while True:
            raw.receive_data(await b.receive_some())
            for event in raw.events():
                if isinstance(event, Request):
                    await b.send_all(raw.send(AcceptConnection()))
                elif isinstance(event, BytesMessage):
                    if not sizes or sizes[-1] < 0:
                        sizes.append(0)
                    sizes[-1] += len(event.data)
                    if event.message_finished:
                        sizes[-1] = -sizes[-1]
                        if sum(-s for s in sizes) == 600_000:
                            return [-s for s in sizes]

    async with trio.open_nursery() as nursery:
        got: list[list[int]] = []

        async def run() -> None:
            got.append(await raw_server())

        nursery.start_soon(run)
        client = await client_handshake(a, "test", a.local_addr, a.remote_addr)
        await client.send_all(b"z" * 600_000)
    assert got == [[262144, 262144, 75712]]


async def test_websocket_answers_ping_and_close_and_reports_protocol_errors() -> None:
    import wsproto
    from wsproto.events import CloseConnection, Ping, Pong, Request

    a, b = memory_connection_pair(64 * 1024)
    raw = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)

    async def raw_events() -> list[object]:
        raw.receive_data(await a.receive_some())
        return list(raw.events())

    async with trio.open_nursery() as nursery:
        server: list[WebSocketConnection] = []

        async def accept() -> None:
            server.append(await server_handshake(b, b.local_addr, b.remote_addr))

        nursery.start_soon(accept)
        await a.send_all(raw.send(Request(host="test", target="/")))
        await raw_events()  # AcceptConnection
    (conn,) = server

    # A ping between data is answered while the reader reads.
    await a.send_all(raw.send(Ping(payload=b"hi")))
    from wsproto.events import BytesMessage

    await a.send_all(raw.send(BytesMessage(data=b"data")))
    assert await conn.receive_some() == b"data"
    assert [type(e) for e in await raw_events()] == [Pong]

    # A close frame is answered and reads as EOF; writing is then broken.
    await a.send_all(raw.send(CloseConnection(code=1000)))
    assert await conn.receive_some() == b""
    (closed,) = await raw_events()
    assert isinstance(closed, CloseConnection) and closed.code == 1000
    with pytest.raises(trio.BrokenResourceError):
        await conn.send_all(b"late")
    await conn.aclose()

    # Garbage (an unmasked frame from a client) is a broken stream, with a 1002 close.
    a, b = memory_connection_pair(64 * 1024)
    raw = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        server.clear()
        nursery.start_soon(accept)
        await a.send_all(raw.send(Request(host="test", target="/")))
        await raw_events()
    (conn,) = server
    await a.send_all(b"\x82\x02hi")
    with pytest.raises(trio.BrokenResourceError, match="protocol error"):
        await conn.receive_some()
    (closed,) = await raw_events()
    assert isinstance(closed, CloseConnection) and closed.code == 1002
    await conn.aclose()


# -- real sockets --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_tcp_smoke(host: str) -> None:
    if host == "::1" and not _has_ipv6():
        pytest.skip("no IPv6 loopback")
    family = "ip4" if host == "127.0.0.1" else "ip6"
    transport = TcpTransport()
    async with serving(transport, Multiaddr.parse(f"/{family}/{host}/tcp/0"), echo) as addr:
        assert addr.value_for(family) == host
        with trio.fail_after(10):
            conn = await transport.dial(addr)
            assert isinstance(conn, TcpConnection)
            assert conn.local_addr.protocols() == (family, "tcp")
            sock = conn.socket
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            await conn.send_all(b"smoke")
            assert await receive_exactly(conn, 5) == b"smoke"
            await conn.aclose()


async def test_tcp_ip_literals_are_dialled_without_name_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    # /ip4 and /ip6 have one target: no happy-eyeballs race, no getaddrinfo.
    async def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an IP literal went through name resolution")

    transport = TcpTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0"), echo) as addr:
        monkeypatch.setattr(trio, "open_tcp_stream", forbidden)
        monkeypatch.setattr(trio.socket, "getaddrinfo", forbidden)
        with trio.fail_after(10):
            conn = await transport.dial(addr.with_p2p(PEER))
            assert conn.remote_addr == addr
            assert conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            await conn.send_all(b"direct")
            assert await receive_exactly(conn, 6) == b"direct"
            await conn.aclose()


async def _tcp_pair() -> tuple[TcpConnection, TcpConnection]:
    """Two ends of a loopback TCP connection."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    return TcpConnection(client), TcpConnection(server)


def _fill(conn: TcpConnection) -> int:
    """Write with try_send until the kernel takes no more; return the count."""
    total = 0
    while sent := conn.try_send(bytes(65536)):
        total += sent
    return total


async def _fill_until_blocked(conn: trio.abc.SendStream) -> None:
    """send_all until it blocks: the kernel's buffers are full."""

    async def sender() -> None:
        while True:
            await conn.send_all(bytes(65536))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def _clogged_tcp_pair() -> tuple[TcpConnection, TcpConnection]:
    a, b = await _tcp_pair()
    await _fill_until_blocked(a)
    await _fill_until_blocked(b)
    return a, b


async def test_tcp_stream_conformance() -> None:
    await trio.testing.check_half_closeable_stream(_tcp_pair, _clogged_tcp_pair)


async def test_tcp_try_send_writes_what_fits_without_waiting() -> None:
    a, b = await _tcp_pair()
    async with a, b:
        with trio.testing.assert_no_checkpoints():
            assert a.try_send(b"now") == 3
        assert await receive_exactly(b, 3) == b"now"
        filled = _fill(a)  # ends when the socket buffers are full
        assert filled > 0

        async def drain() -> None:
            assert await receive_exactly(b, filled + 5) == bytes(filled) + b"later"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await a.send_all(b"later")  # waits for the reader, then goes out whole
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send_all, bytes(64 * 1024 * 1024))  # more than any buffer
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                a.try_send(b"interleaved")  # would land inside the other write
            nursery.cancel_scope.cancel()
        await a.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            a.try_send(b"after eof")
    with pytest.raises(trio.ClosedResourceError):
        a.try_send(b"after close")


async def test_tcp_receive_into_reads_into_the_callers_buffer() -> None:
    a, b = await _tcp_pair()
    async with a, b:
        buffer = bytearray(4)
        with pytest.raises(ValueError):
            await b.receive_into(bytearray())
        await a.send_all(b"0123456789")
        await trio.testing.wait_all_tasks_blocked()
        got = b""
        while len(got) < 10:
            with trio.testing.assert_checkpoints():
                count = await b.receive_into(buffer)  # fills the buffer: the next read tries first
            got += buffer[:count]
        assert got == b"0123456789"
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await b.receive_into(buffer)  # a checkpoint even with nothing to wait for
        await a.send_eof()
        assert await b.receive_into(buffer) == 0
        assert await b.receive_some() == b""


async def test_tcp_peer_reset_breaks_the_connection() -> None:
    a, b = await _tcp_pair()
    # SO_LINGER 0: close() sends RST instead of FIN.
    b.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await b.aclose()
    with trio.fail_after(5):
        with pytest.raises(trio.BrokenResourceError):
            await a.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # the first writes may still be accepted
                await a.send_all(b"x")
                await trio.sleep(0.01)
    await a.aclose()


async def test_tcp_close_wakes_a_blocked_receiver() -> None:
    a, b = await _tcp_pair()
    async with b:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                async def receiver() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await a.receive_some()

                nursery.start_soon(receiver)
                await trio.testing.wait_all_tasks_blocked()
                await a.aclose()


@pytest.mark.parametrize("text", ["/ip4/127.0.0.1/tcp/{port}", "/ip6/::1/tcp/{port}"])
async def test_tcp_refused_ip_dial_closes_its_socket(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if "::1" in text and not _has_ipv6():
        pytest.skip("no IPv6 loopback")
    closed: list[object] = []
    real_socket = trio.socket.socket

    def tracking_socket(*args: Any, **kwargs: Any) -> trio.socket.SocketType:
        sock = real_socket(*args, **kwargs)
        real_close = sock.close

        def close() -> None:
            closed.append(sock)
            real_close()

        sock.close = close  # type: ignore[method-assign]
        return sock

    monkeypatch.setattr(trio.socket, "socket", tracking_socket)
    addr = Multiaddr.parse(text.format(port=_free_tcp_port()))
    with trio.fail_after(5):
        with pytest.raises(DialError, match="cannot dial") as info:
            await TcpTransport().dial(addr)
    assert isinstance(info.value.__cause__, OSError)
    assert len(closed) == 1


async def test_tcp_cancelled_ip_dial_closes_its_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    sockets: list[trio.socket.SocketType] = []
    real_socket = trio.socket.socket

    def hanging_socket(*args: Any, **kwargs: Any) -> trio.socket.SocketType:
        sock = real_socket(*args, **kwargs)
        sock.connect = lambda address: trio.sleep_forever()  # type: ignore[method-assign]
        sockets.append(sock)
        return sock

    monkeypatch.setattr(trio.socket, "socket", hanging_socket)
    with trio.move_on_after(0.05) as scope:
        await TcpTransport().dial(Multiaddr.parse("/ip4/127.0.0.1/tcp/9"))
    assert scope.cancelled_caught
    assert len(sockets) == 1 and sockets[0].fileno() == -1


async def test_tcp_dns_names_respect_their_family() -> None:
    try:
        infos = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip("localhost does not resolve")
    families = {info[0] for info in infos}
    if socket.AF_INET not in families:
        pytest.skip("localhost has no IPv4 address")
    transport = TcpTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0"), echo) as addr:
        port = addr.value_for("tcp")
        with trio.fail_after(10):
            for text in (f"/dns4/localhost/tcp/{port}", f"/dns/localhost/tcp/{port}"):
                conn = await transport.dial(Multiaddr.parse(text))
                assert conn.remote_addr == addr
                await conn.aclose()
            if socket.AF_INET6 not in families:
                # Only an IPv4 listener, and /dns6 must never fall back to IPv4.
                with pytest.raises(DialError):
                    await transport.dial(Multiaddr.parse(f"/dns6/localhost/tcp/{port}"))


async def test_tcp_unresolvable_name_raises_dial_error() -> None:
    with trio.fail_after(20):
        for proto in ("dns", "dns4", "dns6"):
            with pytest.raises(DialError) as info:
                await TcpTransport().dial(Multiaddr.parse(f"/{proto}/name.invalid/tcp/1"))
            assert isinstance(info.value.__cause__, OSError)
        # Remote peers can advertise any UTF-8 name; IDNA rejects some.
        for name in ("a..b", "x" * 70 + ".com", "\u2028"):
            with pytest.raises(DialError):
                await TcpTransport().dial(Multiaddr([("dns4", name), ("tcp", "1")]))
            with pytest.raises(DialError):
                await WebSocketTransport().dial(Multiaddr([("dns", name), ("tcp", "1"), ("ws", None)]))


async def test_tcp_listen_on_busy_port_raises_oserror() -> None:
    transport = TcpTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0"), echo) as addr:
        async with trio.open_nursery() as nursery:
            with pytest.raises(OSError):
                await nursery.start(transport.serve, addr, echo)


async def test_websocket_smoke_with_trio_websocket_as_the_other_side() -> None:
    """Our client and server against an independent RFC 6455 implementation."""
    import trio_websocket

    transport = WebSocketTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"), echo) as addr:
        with trio.fail_after(10):
            url = f"ws://127.0.0.1:{addr.value_for('tcp')}/"
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.send_message(b"binary hello")
                assert await ws.get_message() == b"binary hello"

    seen: list[tuple[str, tuple[str, ...]]] = []

    async def ws_echo(request: trio_websocket.WebSocketRequest) -> None:
        seen.append((request.path, request.proposed_subprotocols))
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, ws_echo, "127.0.0.1", 0, None)
        with trio.fail_after(10):
            conn = await transport.dial(Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{server.port}/ws"))
            await conn.send_all(b"ping")
            assert await receive_exactly(conn, 4) == b"ping"
            await conn.aclose()
        nursery.cancel_scope.cancel()
    assert seen == [("/", ())]


async def test_websocket_dial_of_a_plain_tcp_port_fails_fast() -> None:
    async def hang_up(conn: RawConnection) -> None:
        await conn.receive_some()  # the HTTP upgrade request; then close

    async with serving(TcpTransport(), Multiaddr.parse("/ip4/127.0.0.1/tcp/0"), hang_up) as addr:
        with trio.fail_after(5):
            with pytest.raises(DialError, match="handshake"):
                await WebSocketTransport().dial(addr.encapsulate("/ws"))


async def test_websocket_listener_rejects_plain_http_and_keeps_serving() -> None:
    transport = WebSocketTransport()
    async with serving(transport, Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"), echo) as addr:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", int(addr.value_for("tcp") or 0))
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await receive_until_eof(stream)
            assert reply.startswith(b"HTTP/1.1 400")
            await stream.aclose()
            conn = await transport.dial(addr)
            await conn.send_all(b"ok")
            assert await receive_exactly(conn, 2) == b"ok"
            await conn.aclose()
