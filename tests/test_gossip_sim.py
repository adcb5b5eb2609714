"""The ``make sim`` gossip simulation, in miniature: it runs, delivers
everything to the survivors of a kill, heals, and reports."""

from __future__ import annotations

import trio
import trio.testing

from bench.sim import gossip as sim
from bench.sim._delay import DelayNetwork, DelayTransport
from guts.gossip import GossipConfig
from guts.multiaddr import Multiaddr


def test_small_simulation_with_a_kill() -> None:
    params = sim.Params(nodes=12, dials=4, messages=40, rate=20.0, drain=5.0)
    config = GossipConfig()
    result = trio.run(sim._simulate, params, config, "gossipsub", True,
                      clock=trio.testing.MockClock(autojump_threshold=0))
    assert result.killed == 2
    assert result.expected > 0 and result.delivered == result.expected
    assert result.unhealthy and result.unhealthy[-1] == 0
    assert result.hops and min(result.hops) >= 1
    # latencies are in virtual time: at least one link delay
    assert min(result.latencies) >= params.delay[0]
    flood = trio.run(sim._simulate, params, sim._flooding(config), "flooding", False,
                     clock=trio.testing.MockClock(autojump_threshold=0))
    text = sim.report(result, flood)
    assert "| delivery to survivors | 100.00%" in text
    assert flood.copies / flood.first_copies > result.copies / result.first_copies


async def test_delay_links(autojump_clock: trio.testing.MockClock) -> None:
    network = DelayNetwork(lambda: 0.25, capacity=2)
    transport = DelayTransport(network)
    received: list[tuple[float, bytes]] = []

    async def handler(conn) -> None:  # type: ignore[no-untyped-def]
        while data := await conn.receive_some():
            received.append((trio.current_time(), data))

    async with trio.open_nursery() as nursery:
        [addr] = await nursery.start(transport.serve, Multiaddr.parse("/memory/0"), handler)
        conn = await transport.dial(addr)
        start = trio.current_time()
        await conn.send_all(b"one")
        await trio.sleep(0.1)
        await conn.send_all(b"two")  # 3 bytes in flight, over capacity: waits for them to land
        await conn.aclose()
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [d for _, d in received] == [b"one", b"two"]
    assert abs(received[0][0] - start - 0.25) < 1e-6
    assert abs(received[1][0] - start - 0.5) < 1e-6
