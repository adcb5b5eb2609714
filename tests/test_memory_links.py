"""MemoryNetwork links: a delay and a loss per pair of addresses, for simulations.

Timings are read off ``MockClock(autojump_threshold=0)``: a delay costs
virtual time only, so the tests check exact arrival times.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from guts.errors import ConfigError, DialError
from guts.multiaddr import Multiaddr
from guts.transport import MemoryConnection, MemoryLink, MemoryNetwork, MemoryTransport, RawConnection
from guts.transport.memory import _delayed_connection_pair

ANY = Multiaddr.parse("/memory/0")

Handler = Callable[[RawConnection], Awaitable[None]]


async def park(conn: RawConnection) -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def listening(network: MemoryNetwork, handler: Handler = park) -> AsyncIterator[tuple[MemoryTransport, Multiaddr]]:
    """A transport serving ``handler`` on a fresh address; its dials come from that address."""
    transport = MemoryTransport(network)
    async with trio.open_nursery() as nursery:
        [addr] = await nursery.start(transport.serve, ANY, handler)
        yield transport, addr
        nursery.cancel_scope.cancel()


def recorder(into: list[tuple[float, bytes]]) -> Handler:
    async def handler(conn: RawConnection) -> None:
        while data := await conn.receive_some():
            into.append((trio.current_time(), bytes(data)))
        into.append((trio.current_time(), b""))

    return handler


async def test_bytes_and_eof_land_one_delay_after_they_are_sent(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(default_link=MemoryLink(delay=0.25))
    received: list[tuple[float, bytes]] = []
    async with listening(network, recorder(received)) as (transport, addr):
        start = trio.current_time()
        conn = await transport.dial(addr)
        assert trio.current_time() - start == pytest.approx(0.5)  # a round trip
        start = trio.current_time()
        await conn.send_all(b"one")
        await trio.sleep(0.1)
        await conn.send_all(b"two")
        await conn.send_eof()
        await trio.sleep(1)
    assert [(round(t - start, 6), data) for t, data in received] == [
        (0.25, b"one"), (0.35, b"two"), (0.35, b"")
    ]


async def test_a_full_buffer_makes_the_writer_wait_for_the_reader(autojump_clock: trio.testing.MockClock) -> None:
    """Bytes keep their room until read (the old bench/sim delay test, bounded)."""
    network = MemoryNetwork(buffer_size=4, default_link=MemoryLink(delay=0.25))
    received: list[tuple[float, bytes]] = []
    async with listening(network, recorder(received)) as (transport, addr):
        conn = await transport.dial(addr)
        start = trio.current_time()
        await conn.send_all(b"one")
        await trio.sleep(0.1)
        await conn.send_all(b"two")  # "t" fits; "wo" waits for "one" to be read
        assert trio.current_time() - start == pytest.approx(0.25)
        await conn.aclose()
        await trio.sleep(1)
    assert [(round(t - start, 6), data) for t, data in received] == [
        (0.25, b"one"), (0.35, b"t"), (0.5, b"wo"), (0.5, b"")
    ]


async def test_order_is_kept_through_writes_and_reads_of_any_size(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(5)
    payload = rng.randbytes(20_000)
    a, b = _delayed_connection_pair(333, 0.01, (Multiaddr.parse("/memory/1"), Multiaddr.parse("/memory/2")))
    received = bytearray()

    async def write() -> None:
        at = 0
        while at < len(payload):
            size = rng.randrange(1, 700)
            await a.send_all(payload[at: at + size])
            at += size
            if rng.random() < 0.3:
                await trio.sleep(rng.uniform(0, 0.02))
        await a.send_eof()

    async def read() -> None:
        while data := await b.receive_some(rng.randrange(1, 500)):
            assert len(b._in.buffer) <= 333
            received.extend(data)
            if rng.random() < 0.3:
                await trio.sleep(rng.uniform(0, 0.02))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        nursery.start_soon(read)
    assert received == payload


async def test_backpressure_stays_bounded(autojump_clock: trio.testing.MockClock) -> None:
    a, b = _delayed_connection_pair(16, 0.5, (Multiaddr.parse("/memory/1"), Multiaddr.parse("/memory/2")))
    with trio.testing.assert_no_checkpoints():
        assert a.try_send(b"x" * 10) == 10
        assert a.try_send(b"y" * 10) == 6
        assert a.try_send(b"z") == 0
    with trio.move_on_after(10) as blocked:
        await a.send_all(b"w")  # nobody reads: waits however long, buffers nothing more
    assert blocked.cancelled_caught and len(a._out.buffer) == 16
    with trio.move_on_after(10) as blocked:
        await a.wait_send_all_might_not_block()
    assert blocked.cancelled_caught
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"v" * 100)
        got = bytearray()
        while len(got) < 116:
            got += await b.receive_some()
            assert len(a._out.buffer) <= 16
    assert got == b"x" * 10 + b"y" * 6 + b"v" * 100


async def test_closing_is_a_reset_for_the_writer_and_a_late_eof_for_the_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = _delayed_connection_pair(64, 0.2, (Multiaddr.parse("/memory/1"), Multiaddr.parse("/memory/2")))
    await a.send_all(b"last words")
    await a.aclose()
    start = trio.current_time()
    assert await b.receive_some() == b"last words"
    assert await b.receive_some() == b""
    assert trio.current_time() - start == pytest.approx(0.2)
    with pytest.raises(trio.BrokenResourceError):
        await b.send_all(b"to nobody")  # at once: no delay on the reset


async def test_half_closeable_stream_conformance(autojump_clock: trio.testing.MockClock) -> None:
    async def pair() -> tuple[MemoryConnection, MemoryConnection]:
        return _delayed_connection_pair(1024, 0.001, (Multiaddr.parse("/memory/1"), Multiaddr.parse("/memory/2")))

    await trio.testing.check_half_closeable_stream(pair, None)


async def test_links_are_per_pair_of_addresses(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(default_link=MemoryLink(delay=0.1))
    async with listening(network) as (a, a_addr), listening(network) as (_, b_addr), listening(network) as (_, c_addr):
        fast = MemoryLink(delay=0.03)
        network.set_link(b_addr, a_addr.with_p2p("12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A"), fast)
        assert network.link(a_addr, b_addr) == network.link(b_addr, a_addr) == fast
        assert network.link(a_addr, c_addr) == MemoryLink(delay=0.1)
        for addr, expected in ((b_addr, 0.06), (c_addr, 0.2)):
            start = trio.current_time()
            await a.dial(addr)
            assert trio.current_time() - start == pytest.approx(expected)
        start = trio.current_time()
        await MemoryTransport(network).dial(b_addr)  # listens nowhere: the default link
        assert trio.current_time() - start == pytest.approx(0.2)
        with pytest.raises(ValueError, match="not a /memory"):
            network.set_link(Multiaddr.parse("/ip4/127.0.0.1/tcp/1"), b_addr, fast)


async def test_refused_after_a_round_trip(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(default_link=MemoryLink(delay=0.1))
    start = trio.current_time()
    with pytest.raises(DialError, match="refused"):
        await MemoryTransport(network).dial(Multiaddr.parse("/memory/99"))
    assert trio.current_time() - start == pytest.approx(0.2)


async def test_a_dial_cancelled_on_the_way_back_closes_the_accepted_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(default_link=MemoryLink(delay=0.1))
    received: list[tuple[float, bytes]] = []
    async with listening(network, recorder(received)) as (transport, addr):
        with trio.move_on_after(0.15):
            await transport.dial(addr)
        await trio.sleep(1)
    assert [data for _, data in received] == [b""]


async def _dial_fates(seed: int, concurrently: bool) -> list[bool]:
    """Whether each of 40 dials (10 pairs, 4 dials each) connects."""
    network = MemoryNetwork(default_link=MemoryLink(loss=0.5), rng=random.Random(seed))
    fates: dict[tuple[int, int], bool] = {}
    async with listening(network) as (_, target):
        sources = [MemoryTransport(network) for _ in range(10)]
        async with trio.open_nursery() as nursery:
            for transport in sources:
                await nursery.start(transport.serve, ANY, park)

            async def dial(i: int, j: int) -> None:
                with trio.move_on_after(30):
                    await sources[i].dial(target)
                    fates[i, j] = True
                    return
                fates[i, j] = False

            for j in range(4):
                async with trio.open_nursery() as dials:
                    for i in range(10):
                        if concurrently:
                            dials.start_soon(dial, i, j)
                        else:
                            await dial(i, j)
            nursery.cancel_scope.cancel()
    return [fates[key] for key in sorted(fates)]


async def test_loss_is_deterministic_for_a_seed(autojump_clock: trio.testing.MockClock) -> None:
    one = await _dial_fates(7, concurrently=False)
    # The fates do not depend on the order trio happens to run the dials in.
    assert await _dial_fates(7, concurrently=True) == one
    assert await _dial_fates(8, concurrently=True) != one
    assert 8 < one.count(False) < 32


async def test_a_lost_dial_waits_for_the_callers_deadline(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(default_link=MemoryLink(loss=1.0), rng=random.Random(1))
    async with listening(network) as (_, addr):
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(10):
                await MemoryTransport(network).dial(addr)
        assert trio.current_time() - start == pytest.approx(10)


def test_default_network_takes_the_plain_path() -> None:
    async def main() -> None:
        for network in (MemoryNetwork(), MemoryNetwork(default_link=MemoryLink(loss=0.0, delay=0.0))):
            async with listening(network, recorder(received)) as (transport, addr):
                start = trio.current_time()
                conn = await transport.dial(addr)
                assert type(conn) is MemoryConnection
                await conn.send_all(b"now")
                await conn.send_eof()
                await trio.testing.wait_all_tasks_blocked()
                assert trio.current_time() == start  # no virtual time at all
            assert network._shaped is False

    received: list[tuple[float, bytes]] = []
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [data for _, data in received] == [b"now", b"", b"now", b""]


def test_links_are_checked() -> None:
    with pytest.raises(ConfigError, match="delay"):
        MemoryLink(delay=-0.1)
    with pytest.raises(ConfigError, match="delay"):
        MemoryLink(delay=float("inf"))
    with pytest.raises(ConfigError, match="loss"):
        MemoryLink(loss=1.5)
    with pytest.raises(ConfigError, match="rng"):
        MemoryNetwork(default_link=MemoryLink(loss=0.1))
    network = MemoryNetwork()
    with pytest.raises(ConfigError, match="rng"):
        network.set_link(Multiaddr.parse("/memory/1"), Multiaddr.parse("/memory/2"), MemoryLink(loss=0.1))
