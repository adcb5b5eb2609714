"""multistream-select bounded: ``ls`` answers count against the stream,
each answer is bounded in bytes, and a connection holds a bounded number
of streams in negotiation (a peer cannot make the node buffer for it)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import trio
import trio.testing

from guts.errors import LocalProtocolError, NegotiationError
from guts.host import Host
from guts.mux.yamux import YamuxStreamReset
from guts.wire import ListenerNegotiation, NegotiationLimit, accept_protocol, encode_line
from guts.wire._multistream import MAX_LISTING, MAX_LS

from .helpers import full_addr, memory_hosts

HEADER = encode_line("/multistream/1.0.0")
LS = encode_line("ls")


def test_ls_answered_at_most_max_ls_times() -> None:
    listener = ListenerNegotiation({"/a": 1})
    listener.receive_data(HEADER + LS * MAX_LS)
    assert listener.data_to_send().count(b"/a\n") == MAX_LS
    with pytest.raises(NegotiationError, match="ls"):
        listener.receive_data(LS)


def test_a_flood_of_ls_in_one_read_queues_almost_nothing() -> None:
    # 4 KiB of ls used to queue about 1,400 listings.
    listener = ListenerNegotiation({"/a": 1})
    with pytest.raises(NegotiationError):
        listener.receive_data(HEADER + LS * 1365)
    assert len(listener.data_to_send()) <= len(HEADER) + MAX_LS * (MAX_LISTING + 3)


def test_ls_answer_bounded_in_bytes() -> None:
    protocols = [f"/p/{i:04d}/" + "x" * 100 for i in range(1000)]
    listener = ListenerNegotiation(set(protocols), listing=protocols)
    listener.receive_data(HEADER + LS)
    answer = listener.data_to_send()[len(HEADER) :]
    assert MAX_LISTING - 120 < len(answer) <= MAX_LISTING + 3
    assert b"/p/0000/" in answer and b"/p/0999/" not in answer
    assert answer.endswith(b"\n\n")


def test_negotiation_limit_counts() -> None:
    limit = NegotiationLimit(2)
    assert limit.try_acquire() and limit.try_acquire()
    assert not limit.try_acquire()
    assert (limit.pending, limit.refused) == (2, 1)
    limit.release()
    assert limit.try_acquire()
    limit.release()
    limit.release()
    with pytest.raises(LocalProtocolError):
        limit.release()
    with pytest.raises(LocalProtocolError):
        NegotiationLimit(0)


async def test_accept_protocol_refuses_without_a_slot_and_gives_slots_back() -> None:
    limit = NegotiationLimit(1)
    a, b = trio.testing.memory_stream_pair()
    assert limit.try_acquire()  # someone else holds the only slot
    with pytest.raises(NegotiationError, match="too many streams"):
        await accept_protocol(b, {"/a"}, limit=limit)
    limit.release()
    await a.send_all(HEADER + encode_line("/a"))
    with trio.fail_after(5):
        negotiated = await accept_protocol(b, {"/a"}, limit=limit)
    assert negotiated.protocol == "/a" and limit.pending == 0
    await a.send_all(HEADER + encode_line("/b") * 40)
    with pytest.raises(NegotiationError):
        await accept_protocol(b, {"/a"}, limit=limit)
    assert limit.pending == 0


async def _drain(stream: trio.abc.Stream) -> int:
    got = 0
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return got
        got += len(data)


async def test_a_peer_spamming_ls_gets_its_stream_reset() -> None:
    async with memory_hosts(2) as (client, server):
        conn = await client.connect(full_addr(server))
        stream = await conn.muxer.open_stream()
        with trio.fail_after(5):
            # keeps asking without reading, as the attack did
            await stream.send_all(HEADER)
            with pytest.raises(YamuxStreamReset):
                for _ in range(10_000):
                    await stream.send_all(LS * 100)
                    await trio.sleep(0)
            with pytest.raises(YamuxStreamReset):
                await _drain(stream)
        # the connection itself is fine
        echo = await client.new_stream(server.peer_id, ["/guts/echo/1.0.0"])
        await echo.send_all(b"still here")
        with trio.fail_after(5):
            assert await echo.receive_some() == b"still here"


def _pending(server: Host) -> int:
    return sum(c.muxer.negotiation_limit.pending for c in server.connections)


async def test_stalled_negotiations_are_capped_per_connection() -> None:
    # 10 connections each open 1,000 streams that send the header and stall:
    # the node keeps at most max_negotiating of them per connection and
    # resets the rest at once. Before, each held a task and its buffers
    # until the negotiation timeout (10 connections: +55 MiB).
    tracemalloc.start()
    try:
        async with memory_hosts(11) as (server, *clients):
            conns = [await c.connect(full_addr(server)) for c in clients]
            with trio.fail_after(10):
                while len(server.connections) < 10:
                    await trio.sleep(0.01)
            cap = server.config.muxer.max_negotiating
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            start, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            with trio.fail_after(30):
                for conn in conns:
                    for _ in range(1000):
                        stream = await conn.muxer.open_stream()
                        await stream.send_all(HEADER)
                    await trio.testing.wait_all_tasks_blocked()
                assert _pending(server) <= 10 * cap
                refused = sum(c.muxer.negotiation_limit.refused for c in server.connections)
                assert refused >= 10 * (1000 - cap)
                assert all(c.muxer.stream_count <= cap + 2 for c in server.connections)
                _, peak = tracemalloc.get_traced_memory()
            # both ends live in this process: the clients' streams count too
            assert peak - start < 32 * 2**20, f"{(peak - start) / 2**20:.1f} MiB"
            for conn in conns:
                await conn.aclose()
            with trio.fail_after(10):
                while server.connections:
                    await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            end, _ = tracemalloc.get_traced_memory()
            assert end - start < 4 * 2**20, f"{(end - start) / 2**20:.1f} MiB left"
    finally:
        tracemalloc.stop()
