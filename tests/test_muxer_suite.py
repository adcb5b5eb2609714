"""One suite for every kind of multiplexed connection the host can run
(:class:`guts.mux.MuxedConnection`): yamux over a raw stream and over
Noise today, a transport's own streams (QUIC) when it comes. Each kind is
a factory of a connected pair; every test speaks only the protocol's API,
as go-libp2p's muxer test suite does for its muxers."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from guts.crypto import KeyPair
from guts.mux import MuxedConnection, MuxedStream
from guts.mux.yamux import YamuxConfig, YamuxConnection
from guts.security.noise import noise_handshake

Pair = tuple[MuxedConnection, MuxedConnection]
Factory = Callable[[trio.Nursery], Awaitable[Pair]]


async def _yamux(nursery: trio.Nursery, a: trio.abc.Stream, b: trio.abc.Stream) -> Pair:
    config = YamuxConfig(keepalive_interval=None)
    client = YamuxConnection(a, is_initiator=True, config=config)
    server = YamuxConnection(b, is_initiator=False, config=config)
    await nursery.start(client.run)
    await nursery.start(server.run)
    return client, server


async def yamux_over_memory(nursery: trio.Nursery) -> Pair:
    a, b = trio.testing.memory_stream_pair()
    return await _yamux(nursery, a, b)


async def yamux_over_noise(nursery: trio.Nursery) -> Pair:
    a, b = trio.testing.memory_stream_pair()
    secured: dict[bool, trio.abc.Stream] = {}

    async def side(stream: trio.abc.Stream, initiator: bool) -> None:
        secured[initiator] = await noise_handshake(stream, KeyPair.generate(), initiator=initiator)

    async with trio.open_nursery() as handshakes:
        handshakes.start_soon(side, a, True)
        handshakes.start_soon(side, b, False)
    return await _yamux(nursery, secured[True], secured[False])


async def quic_over_udp(nursery: trio.Nursery) -> Pair:
    from guts.multiaddr import Multiaddr
    from guts.transport.quic import QuicTransport

    served: trio.MemorySendChannel[MuxedConnection]
    served, accepted = trio.open_memory_channel[MuxedConnection](1)

    async def handler(conn: object) -> None:
        muxer = conn.muxer  # type: ignore[attr-defined]
        await served.send(muxer)
        await trio.sleep_forever()  # the connection lives as long as the test

    server = QuicTransport(KeyPair.generate())
    [addr] = await nursery.start(server.serve, Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1"), handler)
    upgraded = await QuicTransport(KeyPair.generate()).dial(addr)
    await nursery.start(upgraded.muxer.run)
    server_side = await accepted.receive()
    await nursery.start(server_side.run)
    return upgraded.muxer, server_side


KINDS: dict[str, Factory] = {"yamux": yamux_over_memory, "yamux over noise": yamux_over_noise, "quic": quic_over_udp}


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> Factory:
    return KINDS[request.param]


async def _streams(client: MuxedConnection, server: MuxedConnection) -> tuple[MuxedStream, MuxedStream]:
    mine = await client.open_stream()
    await mine.send_all(b"!")  # some muxers tell the peer of a stream with its first frame
    theirs = await server.accept_stream()
    assert await theirs.receive_some(1) == b"!"
    return mine, theirs


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = await stream.receive_some(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


async def _read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    parts = []
    while data := await stream.receive_some():
        parts.append(data)
    return b"".join(parts)


async def test_trio_generic_half_closeable_stream_checks(kind: Factory) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await kind(nursery)

        async def maker() -> tuple[MuxedStream, MuxedStream]:
            return await _streams(client, server)

        with trio.fail_after(30):
            await trio.testing.check_half_closeable_stream(maker, None)
        nursery.cancel_scope.cancel()


async def test_echo_and_half_close(kind: Factory) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await kind(nursery)
        mine, theirs = await _streams(client, server)
        data = os.urandom(1 << 20)
        with trio.fail_after(30):
            async with trio.open_nursery() as inner:
                inner.start_soon(mine.send_all, data)
                assert await _read_exactly(theirs, len(data)) == data
            await mine.send_eof()
            assert await theirs.receive_some() == b""  # the end, after every byte
            await theirs.send_all(b"still open this way")  # a half-closed stream still carries the other way
            await theirs.send_eof()
            assert await _read_to_end(mine) == b"still open this way"
        nursery.cancel_scope.cancel()


async def test_a_reset_breaks_both_directions_on_the_other_side(kind: Factory) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await kind(nursery)
        mine, theirs = await _streams(client, server)
        await mine.reset()
        with trio.fail_after(10):
            with pytest.raises(trio.BrokenResourceError):
                while True:  # what arrived before the reset may be read first
                    if not await theirs.receive_some():
                        raise AssertionError("a reset stream ended cleanly")
            with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                for _ in range(100):
                    await theirs.send_all(b"x" * 1000)
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_a_sender_waits_for_a_reader_that_does_not_read(kind: Factory) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await kind(nursery)
        mine, theirs = await _streams(client, server)
        data = os.urandom(32 << 20)
        done = trio.Event()

        async def send() -> None:
            await mine.send_all(data)
            done.set()

        nursery.start_soon(send)
        await trio.sleep(1.0)
        assert not done.is_set()  # held back by flow control, not buffered whole
        with trio.fail_after(60):
            assert await _read_exactly(theirs, len(data)) == data
            await done.wait()
        nursery.cancel_scope.cancel()


async def test_a_hundred_concurrent_streams(kind: Factory) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await kind(nursery)

        async def serve() -> None:
            async with trio.open_nursery() as handlers:
                for _ in range(100):
                    stream = await server.accept_stream()

                    async def echo(s: MuxedStream = stream) -> None:
                        await s.send_all(await _read_to_end(s))
                        await s.send_eof()

                    handlers.start_soon(echo)

        results: dict[int, bytes] = {}

        async def use(i: int) -> None:
            stream = await client.open_stream()
            payload = os.urandom(64 * 1024) + i.to_bytes(4, "big")
            await stream.send_all(payload)
            await stream.send_eof()
            results[i] = await _read_to_end(stream)
            assert results[i] == payload

        with trio.fail_after(60):
            async with trio.open_nursery() as work:
                work.start_soon(serve)
                for i in range(100):
                    work.start_soon(use, i)
        assert len(results) == 100
        nursery.cancel_scope.cancel()


async def test_stream_count_ping_and_close(kind: Factory) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await kind(nursery)
        streams = [await _streams(client, server) for _ in range(3)]
        assert client.stream_count == 3
        assert 0 <= await client.ping() < 5
        assert not client.is_closed
        with trio.fail_after(10):
            await client.aclose()
            assert client.is_closed and client.error is None
            with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel)):
                await server.accept_stream()
            with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                await client.open_stream()
            mine, theirs = streams[0]
            with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                await mine.send_all(b"after close")
        nursery.cancel_scope.cancel()
