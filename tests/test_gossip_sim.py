"""The ``make sim`` gossip simulation, in miniature: it runs, delivers
everything to the survivors of a kill, heals, and reports."""

from __future__ import annotations

import trio
import trio.testing

from bench.sim import gossip as sim
from guts.gossip import GossipConfig


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
