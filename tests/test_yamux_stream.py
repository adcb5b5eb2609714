"""The trio adapter: YamuxConnection and YamuxStream over in-memory pipes."""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from trio.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    check_half_closeable_stream,
    lockstep_stream_pair,
    memory_stream_pair,
    memory_stream_pump,
)

from guts.crypto import KeyPair
from guts.errors import DecodeError, LocalProtocolError, StreamReset
from guts.mux.yamux import (
    HEADER_SIZE,
    PROTOCOL_ID,
    Flag,
    FrameType,
    GoAwayCode,
    YamuxConfig,
    YamuxConnection,
    YamuxStream,
    YamuxStreamReset,
    decode_header,
    encode_header,
)
from guts.security.noise import NoiseStream, noise_handshake
from guts.transport import memory_connection_pair

KiB = 1024
MiB = 1024 * KiB

StreamPair = tuple[trio.abc.Stream, trio.abc.Stream]
PairFactory = Callable[[], StreamPair | Awaitable[StreamPair]]


def _split_one_way() -> tuple[MemorySendStream, MemoryReceiveStream]:
    """A one-way memory pipe that delivers one byte per read."""
    send = MemorySendStream()
    recv = MemoryReceiveStream()

    async def pump() -> None:
        memory_stream_pump(send, recv, max_bytes=1)

    send.send_all_hook = pump
    recv.receive_some_hook = pump
    return send, recv


def byte_split_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """A two-way memory pipe that splits everything into single bytes."""
    s1, r1 = _split_one_way()
    s2, r2 = _split_one_way()
    return trio.StapledStream(s1, r2), trio.StapledStream(s2, r1)


def socket_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


async def noise_pair(capacity: int = 64 * KiB) -> tuple[NoiseStream, NoiseStream]:
    """Noise over a bounded in-memory connection: the transport yamux runs
    on in a host, down to the writes that never wait."""
    a, b = memory_connection_pair(capacity)
    results: dict[str, NoiseStream] = {}

    async def side(name: str, stream: trio.abc.Stream, seed: int, initiator: bool) -> None:
        keypair = KeyPair.from_seed(bytes(31) + bytes([seed]))
        results[name] = await noise_handshake(stream, keypair, initiator=initiator)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "a", a, 1, True)
            nursery.start_soon(side, "b", b, 2, False)
    return results["a"], results["b"]


async def connect(
    nursery: trio.Nursery,
    pair: PairFactory = memory_stream_pair,
    client_config: YamuxConfig | None = None,
    server_config: YamuxConfig | None = None,
) -> tuple[YamuxConnection, YamuxConnection]:
    streams = pair()
    a, b = await streams if inspect.isawaitable(streams) else streams
    client = YamuxConnection(a, is_initiator=True, config=client_config)
    server = YamuxConnection(b, is_initiator=False, config=server_config)
    await nursery.start(client.run)
    await nursery.start(server.run)
    return client, server


async def stream_pair(
    nursery: trio.Nursery, pair: PairFactory = memory_stream_pair
) -> tuple[YamuxStream, YamuxStream]:
    client, server = await connect(nursery, pair)
    s = await client.open_stream()
    r = await server.accept_stream()
    return s, r


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    parts = []
    while data := await stream.receive_some():
        parts.append(data)
    return b"".join(parts)


# ---------------------------------------------------------------------------
# trio's generic stream checks


@pytest.mark.parametrize(
    "pair", [memory_stream_pair, lockstep_stream_pair, noise_pair], ids=["memory", "lockstep", "noise"]
)
async def test_check_half_closeable_stream(nursery: trio.Nursery, pair: PairFactory) -> None:
    async def maker() -> tuple[YamuxStream, YamuxStream]:
        return await stream_pair(nursery, pair)

    async def clogged_maker() -> tuple[YamuxStream, YamuxStream]:
        s, r = await maker()
        # Use up both send windows: further sends wait for the peer to read.
        await s.send_all(bytes(256 * KiB))
        await r.send_all(bytes(256 * KiB))
        return s, r

    await check_half_closeable_stream(maker, clogged_maker)


# ---------------------------------------------------------------------------
# Basics


async def test_request_response(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery)
    assert s.stream_id == 1 and r.stream_id == 1
    assert s.protocol is None
    s.protocol = "/echo/1.0.0"
    await s.send_all(b"ping?")
    await s.send_eof()
    assert await read_all(r) == b"ping?"
    await r.send_all(b"pong!")
    await r.aclose()
    assert await read_all(s) == b"pong!"
    await s.aclose()


async def test_frames_split_into_single_bytes(nursery: trio.Nursery) -> None:
    client, server = await connect(nursery, byte_split_pair)
    s = await client.open_stream()
    await s.send_all(b"hello over a one-byte pipe")
    await s.send_eof()
    r = await server.accept_stream()
    assert await read_all(r) == b"hello over a one-byte pipe"
    await r.send_all(b"ok")
    await r.send_eof()
    assert await read_all(s) == b"ok"
    assert await client.ping() >= 0


async def test_streams_are_forgotten_after_both_sides_close(nursery: trio.Nursery) -> None:
    client, server = await connect(nursery)
    for _ in range(5):
        s = await client.open_stream()
        await s.send_all(b"x")
        await s.send_eof()
        r = await server.accept_stream()
        assert await read_all(r) == b"x"
        await r.aclose()
        assert await read_all(s) == b""
        await s.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert client.stream_count == server.stream_count == 0
    assert not client._streams and not server._streams


async def test_ping_measures_rtt(nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery)
    rtt = await client.ping()
    assert rtt >= 0
    assert client.rtt is not None


async def test_keepalive_pings(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    config = YamuxConfig(keepalive_interval=5.0)
    client, server = await connect(nursery, client_config=config)
    await trio.sleep(60)
    assert client._session._next_ping > 10
    assert not client.is_closed and not server.is_closed


# ---------------------------------------------------------------------------
# Backpressure and flow control


async def test_sender_blocks_when_the_reader_does_not_read(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery)
    done = trio.Event()

    async def send() -> None:
        await s.send_all(bytes(1 * MiB))
        done.set()

    nursery.start_soon(send)
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set()
    assert r._buffered == 256 * KiB  # exactly one window, nothing more
    got = 0
    while got < 1 * MiB:
        got += len(await r.receive_some(64 * KiB))
    await done.wait()


async def test_slow_reader_keeps_buffer_within_window(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery, socket_pair)
    total = 8 * MiB

    async def send() -> None:
        await s.send_all(bytes(total))
        await s.send_eof()

    nursery.start_soon(send)
    got = 0
    peak = 0
    while True:
        await trio.sleep(0.0005)
        peak = max(peak, r._buffered)
        data = await r.receive_some(32 * KiB)
        if not data:
            break
        got += len(data)
    assert got == total
    assert peak <= r._conn._session.config.max_window


@pytest.mark.parametrize("pair", [lockstep_stream_pair, socket_pair], ids=["lockstep", "socket"])
async def test_both_sides_send_8_mib_at_once_without_deadlock(
    nursery: trio.Nursery, pair: PairFactory
) -> None:
    """Both peers write big streams at once into a pipe with no slack."""
    client, server = await connect(nursery, pair)
    streams = 4
    size = 2 * MiB  # per stream and direction: 8 MiB each way in total
    rng = random.Random(7)
    payloads = {i: rng.randbytes(size) for i in range(streams)}
    results: dict[tuple[str, int], bytes] = {}

    async def exchange(stream: YamuxStream, side: str, index: int) -> None:
        async def writer() -> None:
            view = memoryview(payloads[index])
            step = 100_000
            for start in range(0, size, step):
                await stream.send_all(view[start : start + step])
            await stream.send_eof()

        async def reader() -> None:
            results[(side, index)] = await read_all(stream)

        async with trio.open_nursery() as inner:
            inner.start_soon(writer)
            inner.start_soon(reader)

    async def client_side(index: int) -> None:
        stream = await client.open_stream()
        await stream.send_all(bytes([index]))
        await exchange(stream, "client", index)

    async def server_side() -> None:
        async with trio.open_nursery() as inner:
            for _ in range(streams):
                stream = await server.accept_stream()
                index = (await stream.receive_some(1))[0]
                inner.start_soon(exchange, stream, "server", index)

    with trio.fail_after(120):
        async with trio.open_nursery() as inner:
            inner.start_soon(server_side)
            for i in range(streams):
                inner.start_soon(client_side, i)
    for i in range(streams):
        assert results[("client", i)] == payloads[i]
        assert results[("server", i)] == payloads[i]


async def test_thousand_concurrent_streams(nursery: trio.Nursery) -> None:
    client, server = await connect(nursery)
    count = 1000

    async def handler(stream: YamuxStream) -> None:
        request = await read_all(stream)
        await stream.send_all(b"re:" + request)
        await stream.aclose()

    async def serve() -> None:
        async with trio.open_nursery() as handlers:
            for _ in range(count):
                handlers.start_soon(handler, await server.accept_stream())

    async def request(i: int) -> None:
        stream = await client.open_stream()
        await stream.send_all(b"%d" % i)
        await stream.send_eof()
        assert await read_all(stream) == b"re:%d" % i
        await stream.aclose()

    start = time.perf_counter()
    async with trio.open_nursery() as inner:
        inner.start_soon(serve)
        for i in range(count):
            inner.start_soon(request, i)
    elapsed = time.perf_counter() - start
    assert elapsed < 30
    await trio.testing.wait_all_tasks_blocked()
    assert client.stream_count == server.stream_count == 0


# ---------------------------------------------------------------------------
# Direct writes (see "Direct writes" in guts/mux/yamux/_connection.py)


class GatedSendStream(trio.abc.SendStream):
    """Forwards to ``inner``; while ``gate`` is set, waits (cancellably) for
    it to open first, as a socket with full buffers would. Counts writes and
    can be told to fail."""

    def __init__(self, inner: trio.abc.SendStream) -> None:
        self.inner = inner
        self.gate: trio.Event | None = None
        self.writes = 0
        self.fail = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        if self.fail:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("transport failed")
        if self.gate is not None:
            await self.gate.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def gated_pair(nursery: trio.Nursery) -> tuple[YamuxConnection, YamuxConnection, GatedSendStream]:
    """Client and server over memory streams; the client's output is gated."""
    a, b = memory_stream_pair()
    gated = GatedSendStream(a.send_stream)
    client = YamuxConnection(trio.StapledStream(gated, a.receive_stream), is_initiator=True)
    server = YamuxConnection(b, is_initiator=False)
    await nursery.start(client.run)
    await nursery.start(server.run)
    return client, server, gated


async def test_small_send_is_written_by_the_sending_task(nursery: trio.Nursery) -> None:
    client, server, gated = await gated_pair(nursery)
    s = await client.open_stream()
    r = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    parked = client._writer_wake
    assert parked is not None
    writes = gated.writes
    await s.send_all(b"hello")
    # On the wire already, and the writer task was never woken.
    assert gated.writes == writes + 1
    assert client._writer_wake is parked and not parked.is_set()
    assert await r.receive_some() == b"hello"
    await s.send_eof()
    assert gated.writes == writes + 2
    assert await r.receive_some() == b""


async def test_bulk_send_goes_through_the_writer(nursery: trio.Nursery) -> None:
    client, server, gated = await gated_pair(nursery)
    s = await client.open_stream()
    r = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    parked = client._writer_wake
    assert parked is not None
    await s.send_all(bytes(100 * KiB))  # more than _DIRECT_WRITE_MAX
    assert parked.is_set()
    got = 0
    while got < 100 * KiB:
        got += len(await r.receive_some())


async def test_concurrent_small_sends_are_batched(nursery: trio.Nursery) -> None:
    client, server, gated = await gated_pair(nursery)
    streams = [await client.open_stream() for _ in range(100)]
    await trio.testing.wait_all_tasks_blocked()
    writes = gated.writes
    async with trio.open_nursery() as senders:
        for s in streams:
            senders.start_soon(s.send_all, b"x")
    await trio.testing.wait_all_tasks_blocked()
    # One direct write at most, then the writer sends the rest at once.
    assert gated.writes - writes <= 3
    for _ in streams:
        r = await server.accept_stream()
        assert await r.receive_some() == b"x"


async def test_direct_write_is_never_cancelled_midway(nursery: trio.Nursery) -> None:
    client, server, gated = await gated_pair(nursery)
    s = await client.open_stream()
    r = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    gated.gate = trio.Event()  # the transport stops taking bytes
    done = trio.Event()
    scope = trio.CancelScope()

    async def sender() -> None:
        with scope:
            await s.send_all(b"important")
        done.set()

    nursery.start_soon(sender)
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set()
    scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set()  # shielded: the write is still under way
    gated.gate.set()
    gated.gate = None
    await done.wait()
    assert await r.receive_some() == b"important"
    # The transport is intact: the connection carries on.
    await s.send_all(b"more")
    assert await r.receive_some() == b"more"
    assert not client.is_closed


async def test_failed_direct_write_breaks_the_connection(nursery: trio.Nursery) -> None:
    client, server, gated = await gated_pair(nursery)
    s = await client.open_stream()
    other = await client.open_stream()
    await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    gated.fail = True
    with pytest.raises(trio.BrokenResourceError):
        await s.send_all(b"doomed")
    await client.closed.wait()
    assert isinstance(client.error, trio.BrokenResourceError)
    with pytest.raises(trio.BrokenResourceError):
        await other.receive_some()


async def test_reads_for_several_streams_hold_direct_writes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = memory_stream_pair()
    conn = YamuxConnection(a, is_initiator=True, config=YamuxConfig(keepalive_interval=None))
    await nursery.start(conn.run)
    peer = RawPeer(b)
    s1 = await conn.open_stream()
    s2 = await conn.open_stream()
    # One transport read brings data for both streams: busy connection.
    await peer.stream.send_all(
        encode_header(FrameType.DATA, Flag.ACK, s1.stream_id, 1)
        + b"a"
        + encode_header(FrameType.DATA, Flag.ACK, s2.stream_id, 1)
        + b"b"
    )
    assert await s1.receive_some() == b"a"
    await trio.testing.wait_all_tasks_blocked()
    parked = conn._writer_wake
    assert parked is not None
    await s1.send_all(b"x")
    assert parked.is_set()  # left to the writer, to batch with others
    await trio.sleep(1)  # the hold is over
    await trio.testing.wait_all_tasks_blocked()
    parked = conn._writer_wake
    assert parked is not None
    await s2.send_all(b"y")
    assert not parked.is_set()  # written directly again


async def test_small_send_over_noise_is_one_write_that_never_waits(nursery: trio.Nursery) -> None:
    client, server = await connect(nursery, noise_pair)
    s = await client.open_stream()
    r = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    parked = client._writer_wake
    assert parked is not None
    transport = client.transport_stream
    assert isinstance(transport, NoiseStream)

    async def no_flush() -> None:
        raise AssertionError("the kernel took everything: nothing to flush")

    transport.flush = no_flush  # type: ignore[method-assign]
    with trio.testing.assert_checkpoints():  # trio's contract still holds
        await s.send_all(b"hello")
    assert client._writer_wake is parked and not parked.is_set()
    assert await r.receive_some() == b"hello"
    await s.send_eof()
    assert client._writer_wake is parked and not parked.is_set()
    assert await r.receive_some() == b""


async def test_direct_write_taken_in_part_finishes_uncancellably(nursery: trio.Nursery) -> None:
    # A 200-byte pipe whose reader is not running yet: the kernel (here, the
    # pipe) takes part of the message, the rest must follow whatever happens.
    a, b = await noise_pair(capacity=200)
    client = YamuxConnection(a, is_initiator=True)
    server = YamuxConnection(b, is_initiator=False)
    await nursery.start(client.run)
    s = await client.open_stream()
    await trio.testing.wait_all_tasks_blocked()
    message = bytes(range(256)) * 2
    done = trio.Event()
    scope = trio.CancelScope()

    async def sender() -> None:
        with scope:
            await s.send_all(message)
        done.set()

    nursery.start_soon(sender)
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set() and client._writing  # waiting for the rest to go
    scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set()  # shielded: the rest of the frame still goes out
    await nursery.start(server.run)  # someone reads at last
    await done.wait()
    r = await server.accept_stream()
    got = b""
    while len(got) < len(message):
        got += await r.receive_some()
    assert got == message
    await s.send_all(b"more")  # the transport is intact
    assert await r.receive_some() == b"more"
    assert not client.is_closed


@pytest.mark.parametrize(
    "pair", [lockstep_stream_pair, socket_pair, noise_pair], ids=["lockstep", "socket", "noise"]
)
async def test_both_sides_send_small_writes_at_once_without_deadlock(
    nursery: trio.Nursery, pair: PairFactory
) -> None:
    """Like the 8 MiB test, but in writes small enough to go out directly."""
    client, server = await connect(nursery, pair)
    size = 1 * MiB
    step = 4 * KiB
    payloads = [random.Random(i).randbytes(size) for i in range(2)]
    results: dict[str, bytes] = {}

    async def exchange(stream: YamuxStream, side: str, payload: bytes) -> None:
        async def writer() -> None:
            for start in range(0, size, step):
                await stream.send_all(payload[start : start + step])
            await stream.send_eof()

        async def reader() -> None:
            results[side] = await read_all(stream)

        async with trio.open_nursery() as inner:
            inner.start_soon(writer)
            inner.start_soon(reader)

    async def server_side() -> None:
        stream = await server.accept_stream()
        await exchange(stream, "server", payloads[1])

    with trio.fail_after(60):
        async with trio.open_nursery() as inner:
            inner.start_soon(server_side)
            inner.start_soon(exchange, await client.open_stream(), "client", payloads[0])
    assert results["server"] == payloads[0]
    assert results["client"] == payloads[1]


# ---------------------------------------------------------------------------
# Reset and close semantics


async def test_remote_reset_breaks_both_directions(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery)
    await s.send_all(b"unread")
    await r.reset()
    with pytest.raises(YamuxStreamReset):
        await r.send_all(b"x")
    with pytest.raises(YamuxStreamReset):
        await r.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await s.receive_some()
    with pytest.raises(StreamReset):
        await s.send_all(b"x")
    await s.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await s.send_all(b"x")


async def test_data_before_fin_survives_a_later_reset(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery)
    await r.send_all(b"answer")
    await r.send_eof()
    await r.reset()
    await trio.testing.wait_all_tasks_blocked()
    assert await read_all(s) == b"answer"
    with pytest.raises(YamuxStreamReset):
        await s.send_all(b"more")


async def test_close_with_unread_data_resets(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery)
    await s.send_all(b"you will not read this")
    await trio.testing.wait_all_tasks_blocked()
    await r.aclose()
    with pytest.raises(YamuxStreamReset):
        await s.receive_some()


async def test_close_after_reading_everything_is_graceful(nursery: trio.Nursery) -> None:
    s, r = await stream_pair(nursery)
    await s.send_all(b"request")
    assert await r.receive_some() == b"request"
    await r.send_all(b"response")
    await r.aclose()  # the peer may still FIN: no reset needed
    assert await read_all(s) == b"response"
    await s.send_eof()
    await trio.testing.wait_all_tasks_blocked()
    assert s._conn.stream_count == 0


async def test_refused_stream_is_reset(nursery: trio.Nursery) -> None:
    client, server = await connect(nursery, server_config=YamuxConfig(max_streams=2))
    streams = [await client.open_stream() for _ in range(3)]
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(YamuxStreamReset):
        await streams[2].receive_some()
    assert server.stream_count == 2


async def test_open_past_own_limit_raises(nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery, client_config=YamuxConfig(max_streams=1))
    await client.open_stream()
    with pytest.raises(LocalProtocolError):
        await client.open_stream()


async def test_connection_close(nursery: trio.Nursery) -> None:
    client, server = await connect(nursery)
    s = await client.open_stream()
    r = await server.accept_stream()
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.is_closed
    with pytest.raises(trio.ClosedResourceError):
        await client.open_stream()
    with pytest.raises(trio.ClosedResourceError):
        await client.accept_stream()
    with pytest.raises(trio.BrokenResourceError):
        await s.send_all(b"x")
    with pytest.raises(trio.EndOfChannel):
        await server.accept_stream()
    assert server.remote_goaway == GoAwayCode.NORMAL
    with pytest.raises(trio.BrokenResourceError):
        await r.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await server.open_stream()
    with pytest.raises(trio.BrokenResourceError):
        await server.ping()
    await server.closed.wait()
    await client.closed.wait()
    assert server.error is None and client.error is None


async def test_close_before_run(nursery: trio.Nursery) -> None:
    a, b = memory_stream_pair()
    conn = YamuxConnection(a, is_initiator=True)
    await conn.aclose()
    assert conn.closed.is_set()
    raw = await b.receive_some()
    header = decode_header(raw)
    assert (header.frame_type, header.length) == (FrameType.GO_AWAY, 0)


async def test_transport_loss_breaks_streams(nursery: trio.Nursery) -> None:
    a, b = memory_stream_pair()
    client = YamuxConnection(a, is_initiator=True)
    server = YamuxConnection(b, is_initiator=False)
    await nursery.start(client.run)
    await nursery.start(server.run)
    s = await client.open_stream()
    await s.send_all(b"last words")
    await s.send_eof()
    r = await server.accept_stream()
    waiting_reader: list[BaseException] = []

    async def blocked_reader() -> None:
        try:
            await s.receive_some()
        except trio.BrokenResourceError as exc:
            waiting_reader.append(exc)

    nursery.start_soon(blocked_reader)
    await trio.testing.wait_all_tasks_blocked()
    await trio.aclose_forcefully(b)  # the server's transport goes away
    await client.closed.wait()
    await server.closed.wait()
    assert waiting_reader
    # What arrived before the loss, with its FIN, is still readable.
    assert await read_all(r) == b"last words"
    with pytest.raises(trio.EndOfChannel):
        await client.accept_stream()


# ---------------------------------------------------------------------------
# A raw peer speaking js-libp2p's dialect


class RawPeer:
    """Reads and writes yamux frames by hand over a memory stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def frame(self) -> tuple[int, int, int, int, bytes]:
        h = decode_header(await self.read_exactly(HEADER_SIZE))
        body = await self.read_exactly(h.length) if h.frame_type == FrameType.DATA else b""
        return int(h.frame_type), h.flags, h.stream_id, h.length, body

    async def send(self, ftype: int, flags: int, sid: int, length: int, body: bytes = b"") -> None:
        await self.stream.send_all(encode_header(ftype, flags, sid, length) + body)


async def test_speaks_js_dialect_as_responder(nursery: trio.Nursery) -> None:
    a, b = memory_stream_pair()
    conn = YamuxConnection(b, is_initiator=False)
    await nursery.start(conn.run)
    peer = RawPeer(a)
    # We ping at once to learn the RTT, like js does.
    assert await peer.frame() == (FrameType.PING, Flag.SYN, 0, 0, b"")
    await peer.send(FrameType.PING, Flag.ACK, 0, 0)
    # js opens stream 1 with a WINDOW_UPDATE|SYN of length 0.
    await peer.send(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
    assert await peer.frame() == (FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0, b"")
    await peer.send(FrameType.DATA, 0, 1, 2, b"hi")
    stream = await conn.accept_stream()
    assert stream.stream_id == 1
    assert await stream.receive_some() == b"hi"
    # js pings every 30 s: answer with ACK and the same opaque value.
    await peer.send(FrameType.PING, Flag.SYN, 0, 42)
    assert await peer.frame() == (FrameType.PING, Flag.ACK, 0, 42, b"")
    assert conn.rtt is not None
    # Our streams are even; the SYN goes out with our first write.
    ours = await conn.open_stream()
    await ours.send_all(b"yo")
    assert await peer.frame() == (FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0, b"")
    assert await peer.frame() == (FrameType.DATA, 0, 2, 2, b"yo")
    await peer.send(FrameType.GO_AWAY, 0, 0, GoAwayCode.NORMAL)
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(trio.BrokenResourceError):
        await conn.open_stream()
    assert PROTOCOL_ID == "/yamux/1.0.0"


async def test_protocol_violation_sends_go_away_and_closes(nursery: trio.Nursery) -> None:
    a, b = memory_stream_pair()
    conn = YamuxConnection(b, is_initiator=False)
    await nursery.start(conn.run)
    peer = RawPeer(a)
    await peer.frame()  # our initial ping
    await peer.stream.send_all(bytes([1]) + bytes(11))  # version 1
    assert await peer.frame() == (FrameType.GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR, b"")
    with pytest.raises(EOFError):
        await peer.frame()
    await conn.closed.wait()
    assert isinstance(conn.error, DecodeError)
    with pytest.raises(trio.EndOfChannel):
        await conn.accept_stream()


async def test_window_violation_by_raw_peer(nursery: trio.Nursery) -> None:
    a, b = memory_stream_pair()
    conn = YamuxConnection(b, is_initiator=False)
    await nursery.start(conn.run)
    peer = RawPeer(a)
    await peer.frame()
    await peer.send(FrameType.DATA, Flag.SYN, 1, 256 * KiB + 1)
    frame = await peer.frame()
    while frame[0] != FrameType.GO_AWAY:
        frame = await peer.frame()
    assert frame[3] == GoAwayCode.PROTOCOL_ERROR
    await conn.closed.wait()


async def test_output_is_bounded_while_the_transport_is_stalled(nursery: trio.Nursery) -> None:
    """Senders wait at the high-water mark; control answers still queue."""
    a, b = lockstep_stream_pair()  # no buffering at all: `b` is not read yet
    config = YamuxConfig(write_high_water=256 * KiB, max_frame_payload=64 * KiB)
    conn = YamuxConnection(a, is_initiator=True, config=config)
    await nursery.start(conn.run)
    peer = RawPeer(b)
    stream = await conn.open_stream()
    # The peer grants a huge window but does not read anything yet.
    await peer.send(FrameType.WINDOW_UPDATE, Flag.ACK, stream.stream_id, 16 * MiB)
    done = trio.Event()

    async def sender() -> None:
        await stream.send_all(bytes(10 * MiB))
        done.set()

    nursery.start_soon(sender)
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set()
    pending = conn._session.pending_output
    assert pending <= config.write_high_water + config.max_frame_payload
    for i in range(50):  # pings keep being answered into the queue
        await peer.send(FrameType.PING, Flag.SYN, 0, 1000 + i)
    await trio.testing.wait_all_tasks_blocked()
    assert conn._session.pending_output == pending + 50 * HEADER_SIZE
    # Now the peer reads: everything arrives, the ping answers among it.
    answers = set()
    data = 0
    while data < 10 * MiB:
        ftype, flags, _, length, body = await peer.frame()
        if ftype == FrameType.PING and flags == Flag.ACK:
            answers.add(length)
        data += len(body)
    assert answers >= set(range(1000, 1050))
    await done.wait()


async def test_close_gives_up_on_a_stalled_transport(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    a, _b = lockstep_stream_pair()
    conn = YamuxConnection(a, is_initiator=True, config=YamuxConfig(close_timeout=3.0))
    await nursery.start(conn.run)
    stream = await conn.open_stream()
    await stream.send_all(b"never read")
    start = trio.current_time()
    await conn.aclose()
    assert trio.current_time() - start == pytest.approx(3.0)
    await conn.closed.wait()
