"""The QUIC v1 transport over real UDP sockets on 127.0.0.1: hosts on it,
the libp2p TLS checks inside the handshake, flow control, the limits, and
garbage datagrams. (The shared muxer suite runs over it too:
tests/test_muxer_suite.py.)"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from typing import Any

import pytest
import trio

from guts.crypto import KeyPair
from guts.errors import DialError, HandshakeError
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping, ping
from guts.security.tls import TlsIdentity, make_certificate
from guts.transport import UpgradedConnection
from guts.transport.quic import QuicConfig, QuicConnection, QuicMuxedConnection, QuicTransport

from .helpers import ECHO, echo_handler

LOCAL = Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1")


def test_addresses_it_dials_and_listens_on() -> None:
    t = QuicTransport(KeyPair.generate())
    peer = str(KeyPair.generate().peer_id)
    for text in ("/ip4/1.2.3.4/udp/4001/quic-v1", "/ip6/::1/udp/4001/quic-v1"):
        addr = Multiaddr.parse(text)
        assert t.can_dial(addr) and t.can_listen(addr)
        assert t.can_dial(addr.with_p2p(peer)) and not t.can_listen(addr.with_p2p(peer))
    for text in ("/ip4/1.2.3.4/udp/4001/quic", "/ip4/1.2.3.4/tcp/4001", "/ip4/1.2.3.4/udp/4001", "/dns4/a.b/udp/1/quic-v1"):
        assert not t.can_dial(Multiaddr.parse(text)) and not t.can_listen(Multiaddr.parse(text))


@asynccontextmanager
async def quic_hosts(n: int, config: QuicConfig | None = None) -> AsyncIterator[list[tuple[Host, QuicTransport]]]:
    async with AsyncExitStack() as stack:
        hosts = []
        for _ in range(n):
            key = KeyPair.generate()
            transport = QuicTransport(key, config)
            host = await stack.enter_async_context(open_host(key, [transport], HostConfig(keep_alive=0, max_streams_per_protocol=128)))
            Identify(host)
            Ping(host)
            host.set_handler(ECHO, echo_handler)
            await host.listen(LOCAL)
            hosts.append((host, transport))
        yield hosts


def _full(host: Host) -> Multiaddr:
    return host.listen_addrs[0].with_p2p(str(host.peer_id))


async def _echo(host: Host, peer: Any, payload: bytes) -> bytes:
    stream = await host.new_stream(peer, [ECHO])
    got = bytearray()

    async def read() -> None:
        while data := await stream.receive_some():
            got.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await stream.send_all(payload)
        await stream.send_eof()
    return bytes(got)


async def test_two_hosts_connect_identify_ping_echo_and_close() -> None:
    async with quic_hosts(2) as [(a, _), (b, _)]:
        with trio.fail_after(60):
            assert b.listen_addrs[0].protocols() == ("ip4", "udp", "quic-v1")
            conn = await a.connect(_full(b))
            assert conn.peer_id == b.peer_id
            assert isinstance(conn.raw, UpgradedConnection)
            await conn.identified.wait()
            assert a.peerstore.public_key(b.peer_id) == b.keypair.public_key
            while b.connection(a.peer_id) is None:
                await trio.sleep(0.01)
            async with aclosing(ping(a, b.peer_id, count=3)) as pings:
                assert len([rtt async for rtt in pings if rtt >= 0]) == 3
            assert 0 <= await conn.ping() < 1  # a QUIC PING
            payload = os.urandom(16 << 20)
            assert await _echo(a, b.peer_id, payload) == payload
            await conn.aclose()
            while b.connection(a.peer_id) is not None:  # the peer saw CONNECTION_CLOSE
                await trio.sleep(0.01)


async def test_a_hundred_concurrent_streams_between_hosts() -> None:
    async with quic_hosts(2) as [(a, _), (b, _)]:
        with trio.fail_after(60):
            await a.connect(_full(b))
            results: dict[int, bool] = {}

            async def one(i: int) -> None:
                payload = os.urandom(32 * 1024) + i.to_bytes(4, "big")
                results[i] = await _echo(a, b.peer_id, payload) == payload

            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(one, i)
            assert len(results) == 100 and all(results.values())


async def test_a_wrong_peer_id_is_refused_in_the_handshake() -> None:
    async with quic_hosts(2) as [(a, _), (b, _)]:
        with trio.fail_after(20):
            wrong = b.listen_addrs[0].with_p2p(str(KeyPair.generate().peer_id))
            with pytest.raises(DialError, match="0x12a"):  # CRYPTO_ERROR + bad_certificate (42)
                await a.connect(wrong)
            assert a.connection(b.peer_id) is None
            assert (await a.connect(_full(b))).peer_id == b.peer_id  # the listener still serves


class _Forger:
    """Names ``victim``'s host key in the certificate, but signs with another key."""

    def __init__(self, victim: KeyPair) -> None:
        self.public_key = victim.public_key
        self.sign = KeyPair.generate().sign


def _forged(victim: KeyPair) -> TlsIdentity:
    now = datetime.datetime.now(datetime.UTC)
    certificate, key = make_certificate(_Forger(victim), now=now)  # type: ignore[arg-type]
    return TlsIdentity(victim, certificate, key)


@asynccontextmanager
async def _listener(transport: QuicTransport) -> AsyncIterator[tuple[Multiaddr, list[QuicConnection]]]:
    accepted: list[QuicConnection] = []

    async def handler(conn: Any) -> None:
        accepted.append(conn)
        await conn.muxer.run()

    async with trio.open_nursery() as nursery:
        [addr] = await nursery.start(transport.serve, LOCAL, handler)
        yield addr, accepted
        nursery.cancel_scope.cancel()


async def test_a_server_certificate_with_a_bad_extension_signature_is_refused() -> None:
    key = KeyPair.generate()
    async with _listener(QuicTransport(key, identity=_forged(key))) as (addr, accepted):
        with trio.fail_after(20), pytest.raises(HandshakeError, match="0x12a"):  # CRYPTO_ERROR + bad_certificate (42)
            await QuicTransport(KeyPair.generate()).dial(addr.with_p2p(str(key.peer_id)))
        assert accepted == []


async def _refused_client(client: QuicTransport) -> None:
    server = QuicTransport(KeyPair.generate())
    async with _listener(server) as (addr, accepted):
        with trio.fail_after(20):
            try:
                conn = await client.dial(addr)
            except HandshakeError:
                pass
            else:  # the client finishes first (TLS 1.3); the server's refusal then closes it
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.muxer.run)
                    while not conn.muxer.is_closed:
                        await trio.sleep(0.01)
                assert conn.muxer.error is not None
            assert accepted == []
            # the listener still serves a proper client
            good = await QuicTransport(KeyPair.generate()).dial(addr)
            await good.aclose()


async def test_a_client_certificate_with_a_bad_extension_signature_is_refused() -> None:
    key = KeyPair.generate()
    await _refused_client(QuicTransport(key, identity=_forged(key)))


async def test_a_client_without_a_certificate_is_refused() -> None:
    client = QuicTransport(KeyPair.generate())
    client._client_configuration.certificate = None
    client._client_configuration.private_key = None
    await _refused_client(client)


async def test_garbage_datagrams_leave_the_listener_serving() -> None:
    async with quic_hosts(2) as [(a, _), (b, tb)]:
        port = b.listen_addrs[0].components[1].value
        assert port is not None
        junk = [b"", b"\x00", os.urandom(20), os.urandom(1500), b"\xc0\x00\x00\x00\x01" + os.urandom(200)]
        junk += [b"\xc0\x00\x00\x00\x01\x08" + os.urandom(1300) for _ in range(20)]  # Initial-shaped, bad inside
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in junk * 5:
                sock.sendto(data, ("127.0.0.1", int(port)))
        with trio.fail_after(20):
            await trio.sleep(0.2)
            [endpoint] = tb.endpoints
            assert endpoint.dropped >= 5 * 5  # those that do not parse, or are too small an Initial
            conn = await a.connect(_full(b))
            assert await _echo(a, b.peer_id, b"still here") == b"still here"
            await conn.aclose()


async def test_connections_and_handshakes_per_socket_are_capped() -> None:
    server = QuicTransport(KeyPair.generate(), QuicConfig(max_connections=2))
    async with _listener(server) as (addr, accepted):
        with trio.fail_after(20):
            first = await QuicTransport(KeyPair.generate()).dial(addr)
            second = await QuicTransport(KeyPair.generate()).dial(addr)
            with trio.move_on_after(1) as scope:
                await QuicTransport(KeyPair.generate()).dial(addr)
            assert scope.cancelled_caught  # the third Initial is dropped
            [endpoint] = server.endpoints
            assert endpoint.dropped >= 1 and endpoint.connections == 2
            await first.aclose()
            while endpoint.connections == 2:
                await trio.sleep(0.01)
            third = await QuicTransport(KeyPair.generate()).dial(addr)
            for conn in (second, third):
                await conn.aclose()


async def _pair(
    nursery: trio.Nursery, server: QuicTransport, client_config: QuicConfig | None = None
) -> tuple[QuicMuxedConnection, QuicMuxedConnection]:
    served, accepted = trio.open_memory_channel[QuicMuxedConnection](1)

    async def handler(conn: Any) -> None:
        await served.send(conn.muxer)
        await trio.sleep_forever()

    [addr] = await nursery.start(server.serve, LOCAL, handler)
    client = (await QuicTransport(KeyPair.generate(), client_config).dial(addr)).muxer
    await nursery.start(client.run)
    theirs = await accepted.receive()
    await nursery.start(theirs.run)
    return client, theirs


async def test_the_peer_may_have_only_max_streams_open() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await _pair(nursery, QuicTransport(KeyPair.generate(), QuicConfig(max_streams=4)))
        with trio.fail_after(20):
            mine = []
            for _ in range(6):
                stream = await client.open_stream()
                await stream.send_all(b"hi")
                mine.append(stream)
            theirs = [await server.accept_stream() for _ in range(4)]
            with trio.move_on_after(0.5) as scope:
                await server.accept_stream()
            assert scope.cancelled_caught  # the fifth waits for one of the four to finish
            for s in (mine[0], theirs[0]):
                await s.send_eof()
            assert await theirs[0].receive_some() == b"hi" and await theirs[0].receive_some() == b""
            assert await mine[0].receive_some() == b""
            fifth = await server.accept_stream()
            assert await fifth.receive_some() == b"hi"
        nursery.cancel_scope.cancel()


async def test_a_reader_that_does_not_read_buffers_at_most_its_window() -> None:
    window = 256 * 1024
    async with trio.open_nursery() as nursery:
        client, server = await _pair(nursery, QuicTransport(KeyPair.generate(), QuicConfig(stream_window=window)))
        mine = await client.open_stream()
        await mine.send_all(b"!")
        theirs = await server.accept_stream()
        nursery.start_soon(mine.send_all, os.urandom(8 << 20))
        await trio.sleep(1.0)
        buffered = len(theirs._recv)  # type: ignore[attr-defined]
        assert window // 2 <= buffered <= window  # the window filled, and no further
        got = 0
        with trio.fail_after(30):
            while got < (8 << 20) + 1:  # reading moves the window on
                got += len(await theirs.receive_some())
        nursery.cancel_scope.cancel()


async def test_closing_a_connection_breaks_the_peers_streams_at_once() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await _pair(nursery, QuicTransport(KeyPair.generate()))
        mine = await client.open_stream()
        await mine.send_all(b"!")
        theirs = await server.accept_stream()
        assert await theirs.receive_some() == b"!"
        with trio.fail_after(2):  # well inside the idle timeout and the draining period
            await client.aclose()
            with pytest.raises(trio.BrokenResourceError):
                await theirs.receive_some()
            assert server.is_closed and server.error is None  # a clean close
            with pytest.raises(trio.BrokenResourceError):
                await server.accept_stream()
        nursery.cancel_scope.cancel()


async def test_handshakes_in_progress_are_capped() -> None:
    """A client that sends its Initial and goes silent holds a handshake
    slot until the handshake timeout, no longer."""
    from aioquic.quic.connection import QuicConnection as AioquicConnection

    server = QuicTransport(KeyPair.generate(), QuicConfig(max_handshakes=1, handshake_timeout=1.0))
    async with _listener(server) as (addr, accepted):
        port = int(addr.components[1].value or 0)
        silent = AioquicConnection(configuration=QuicTransport(KeyPair.generate())._client_configuration)
        silent.connect(("127.0.0.1", port), now=trio.current_time())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data, _ in silent.datagrams_to_send(now=trio.current_time()):
                sock.sendto(data, ("127.0.0.1", port))
            [endpoint] = server.endpoints
            with trio.fail_after(20):
                while endpoint.handshakes == 0:
                    await trio.sleep(0.01)
                with trio.move_on_after(0.5) as scope:  # the only slot is taken
                    await QuicTransport(KeyPair.generate()).dial(addr)
                assert scope.cancelled_caught
                while endpoint.handshakes:  # the silent one times out
                    await trio.sleep(0.05)
                conn = await QuicTransport(KeyPair.generate()).dial(addr)
                await conn.aclose()
                assert len(accepted) == 1


async def test_an_initial_that_does_not_decrypt_leaves_no_connection() -> None:
    server = QuicTransport(KeyPair.generate())
    async with _listener(server) as (addr, _):
        port = int(addr.components[1].value or 0)
        # A well-formed Initial header (v1, 8-byte ids, token length 0, length) on random bytes.
        header = b"\xc3\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x08" + os.urandom(8) + b"\x00\x44\xd0"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(50):
                sock.sendto(header + os.urandom(1250), ("127.0.0.1", port))
        [endpoint] = server.endpoints
        with trio.fail_after(10):
            while endpoint.dropped < 50:
                await trio.sleep(0.01)
            assert endpoint.connections == 0 and endpoint.handshakes == 0
            conn = await QuicTransport(KeyPair.generate()).dial(addr)
            await conn.aclose()


@pytest.mark.parametrize("keep_alive", [None, 0.3])
async def test_a_quiet_connection_lives_while_kept_alive_and_ends_after_the_idle_timeout(keep_alive: float | None) -> None:
    config = QuicConfig(idle_timeout=1.0, keep_alive=keep_alive)
    async with trio.open_nursery() as nursery:
        client, server = await _pair(nursery, QuicTransport(KeyPair.generate(), config), config)
        await trio.sleep(2.5)
        if keep_alive is None:
            assert client.is_closed and server.is_closed
            assert client.error is not None  # an idle timeout is not a clean close
        else:
            assert not client.is_closed and not server.is_closed
            assert 0 <= await client.ping() < 1
        nursery.cancel_scope.cancel()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_over_ipv6_loopback() -> None:
    if not _has_ipv6_loopback():  # then the dial fails with a DialError, which is what we check
        with pytest.raises((DialError, OSError)):
            await QuicTransport(KeyPair.generate()).dial(Multiaddr.parse("/ip6/::1/udp/9/quic-v1"))
        return
    server = QuicTransport(KeyPair.generate())
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def handler(conn: Any) -> None:
            async with trio.open_nursery() as inner:
                await inner.start(conn.muxer.run)
                stream = await conn.muxer.accept_stream()
                await stream.send_all(await stream.receive_some())
                await stream.send_eof()
                await done.wait()
                inner.cancel_scope.cancel()

        [addr] = await nursery.start(server.serve, Multiaddr.parse("/ip6/::1/udp/0/quic-v1"), handler)
        assert str(addr).startswith("/ip6/::1/udp/")
        with trio.fail_after(10):
            conn = await QuicTransport(KeyPair.generate()).dial(addr.with_p2p(str(server.keypair.peer_id)))
            assert conn.secure.remote_peer == server.keypair.peer_id
            assert str(conn.remote_addr) == str(addr)
            await nursery.start(conn.muxer.run)
            stream = await conn.muxer.open_stream()
            await stream.send_all(b"over ipv6")
            assert await stream.receive_some() == b"over ipv6"
            done.set()
            await conn.aclose()
        nursery.cancel_scope.cancel()


async def test_stopping_a_listener_closes_its_connections() -> None:
    server = QuicTransport(KeyPair.generate())
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED) -> None:
            async def handler(conn: Any) -> None:
                await conn.muxer.run()

            with scope:
                await server.serve(LOCAL, handler, task_status=task_status)

        [addr] = await nursery.start(serve)
        conn = await QuicTransport(KeyPair.generate()).dial(addr)
        await nursery.start(conn.muxer.run)
        with trio.fail_after(5):
            while not server.endpoints[0].connections:
                await trio.sleep(0.01)
            scope.cancel()
            while not conn.muxer.is_closed:  # told at once by CONNECTION_CLOSE, not by the idle timeout
                await trio.sleep(0.01)
        assert conn.muxer.error is None and server.endpoints == []
        nursery.cancel_scope.cancel()


async def test_many_connections_on_one_listening_socket() -> None:
    server = QuicTransport(KeyPair.generate())
    peers: set[Any] = set()

    async def handler(conn: Any) -> None:
        peers.add(conn.secure.remote_peer)
        async with trio.open_nursery() as inner:
            await inner.start(conn.muxer.run)
            stream = await conn.muxer.accept_stream()
            while data := await stream.receive_some():
                await stream.send_all(data)
            await stream.send_eof()
            await conn.aclose()  # at once: the close waits for the echo to be delivered

    async with trio.open_nursery() as nursery:
        [addr] = await nursery.start(server.serve, LOCAL, handler)
        echoed: list[bool] = []

        async def client(i: int) -> None:
            conn = await QuicTransport(KeyPair.generate()).dial(addr)
            async with trio.open_nursery() as inner:
                await inner.start(conn.muxer.run)
                stream = await conn.muxer.open_stream()
                payload = os.urandom(100_000) + bytes([i])
                await stream.send_all(payload)
                await stream.send_eof()
                got = bytearray()
                while data := await stream.receive_some():  # all of it, though the server closes at once
                    got += data
                echoed.append(bytes(got) == payload)
                await conn.aclose()

        with trio.fail_after(30):
            async with trio.open_nursery() as clients:
                for i in range(30):
                    clients.start_soon(client, i)
            assert echoed == [True] * 30 and len(peers) == 30
            while server.endpoints[0].connections:  # each closed, and forgotten
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_a_blocked_address_is_dropped_before_any_handshake() -> None:
    """The block list is asked before a QUIC Initial makes any state: a
    blocked address costs a dropped datagram, never a handshake."""
    import ipaddress

    from guts.reputation import PeerGuard

    guard = PeerGuard()
    keypair = KeyPair.generate()
    (transport,) = guard.gate([QuicTransport(keypair, QuicConfig(handshake_timeout=2.0))])
    async with open_host(keypair, [transport], HostConfig(keep_alive=0)) as server:
        Identify(server)
        guard.watch(server)
        await server.listen(Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1"))
        async with quic_hosts(1) as [(client, _)]:
            await guard.block(ipaddress.ip_network("127.0.0.1/32"), duration=60)
            with trio.move_on_after(1.5) as waited:  # the dial gets no answer at all
                await client.connect(_full(server))
            assert waited.cancelled_caught
            quic = transport.inner  # type: ignore[attr-defined]
            assert quic.endpoints[0].dropped >= 1 and quic.endpoints[0].connections == 0
            assert server.connections == []
            await guard.unblock(ipaddress.ip_network("127.0.0.1/32"))
            with trio.fail_after(30):
                assert (await client.connect(_full(server))).peer_id == server.peer_id


def _initials(count: int) -> list[bytes]:
    """First datagrams of ``count`` fresh QUIC v1 clients (real Initials)."""
    import ssl

    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection as AioquicConnection

    out = []
    for _ in range(count):
        client = AioquicConnection(configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["libp2p"], verify_mode=ssl.CERT_NONE,
        ))  # fmt: skip
        client.connect(("127.0.0.1", 9), now=0.0)
        out.append(client.datagrams_to_send(now=0.0)[0][0])
    return out


async def test_under_load_new_clients_prove_their_address_with_a_retry_first() -> None:
    """Past ``retry_above`` handshakes, a new client's Initial gets a Retry
    and no state: Initials from spoofed addresses (many ports here) cost a
    packet each, never a handshake slot; a real client comes back with
    the token and connects."""
    async with quic_hosts(2, QuicConfig(retry_above=0)) as [(a, _), (b, tb)]:
        port = int(b.listen_addrs[0].components[1].value or 0)
        [endpoint] = tb.endpoints
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
        try:
            for sock, initial in zip(sockets, _initials(50)):
                sock.sendto(initial, ("127.0.0.1", port))
            with trio.fail_after(10):
                while endpoint.retries < 50:
                    await trio.sleep(0.01)
            assert endpoint.connections == 0 and endpoint.handshakes == 0
            sockets[0].setblocking(False)
            retry = sockets[0].recv(2048)  # it arrived before the counter moved
            assert retry[0] & 0xF0 == 0xF0  # a long header of type Retry
        finally:
            for sock in sockets:
                sock.close()
        with trio.fail_after(20):
            conn = await a.connect(_full(b))
            assert endpoint.retries == 51  # the real client too, which came back with its token
            assert await _echo(a, b.peer_id, b"after a retry") == b"after a retry"
            await conn.aclose()


async def test_an_unknown_version_gets_a_version_negotiation() -> None:
    async with quic_hosts(1) as [(b, tb)]:
        port = int(b.listen_addrs[0].components[1].value or 0)
        dcid, scid = os.urandom(8), os.urandom(8)
        packet = b"\xc0" + (0x1A2A3A4A).to_bytes(4, "big") + bytes([8]) + dcid + bytes([8]) + scid
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.sendto(packet.ljust(1200, b"\x00"), ("127.0.0.1", port))
            with trio.fail_after(5):
                answer = await sock.recv(2048)
            await sock.sendto(packet.ljust(100, b"\x00"), ("127.0.0.1", port))  # under 1200 bytes: no answer
            with trio.move_on_after(0.5) as quiet:
                await sock.recv(2048)
            assert quiet.cancelled_caught
        assert answer[1:5] == b"\x00\x00\x00\x00"  # version 0: Version Negotiation
        assert answer[6:14] == scid and answer[15:23] == dcid
        assert (1).to_bytes(4, "big") in answer[23:]  # QUIC v1 offered
        assert tb.endpoints[0].connections == 0
