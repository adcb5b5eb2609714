"""The host's per-peer log lines are bounded: a peer that opens and resets
streams as fast as it can gets one line per reason per 10 s, not one per
stream."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from .helpers import full_addr, memory_hosts


async def test_20000_stream_resets_write_a_bounded_number_of_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guts.host")
    async with memory_hosts(2) as (client, server):
        conn = await client.connect(full_addr(server))
        caplog.clear()
        with trio.fail_after(120):
            for _ in range(20_000):
                stream = await conn.muxer.open_stream()
                await stream.send_all(b"\x13/multistream/1.0.0\n")
                await stream.reset()
                await trio.sleep(0)
            await trio.testing.wait_all_tasks_blocked()
        assert not conn.is_closed
    lines = [r.getMessage() for r in caplog.records if r.name == "guts.host" and str(client.peer_id) in r.getMessage()]
    negotiation = [line for line in lines if "stream negotiation" in line]
    assert 1 <= len(negotiation) <= 4, negotiation[:10]
