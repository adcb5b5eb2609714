"""The ``make sim`` DHT simulations, in miniature: they run and report."""

from __future__ import annotations

from bench.sim import _dht_msgsim as msgsim
from bench.sim import _dht_net as fullstack


def test_message_level_simulation() -> None:
    find, closest = msgsim.simulate(500, 0.10, 30, seed=3)
    assert (find.mode, closest.mode) == ("find peer", "closest peers")
    assert find.unresponsive == 50
    assert find.successes == 30  # every live target is found
    assert sum(closest.recall) / len(closest.recall) > 0.9
    # a lookup needs O(log N) messages, and never waits a silent peer's full timeout twice
    assert msgsim.median(find.messages) < 40 and max(closest.seconds) < 10


def test_full_stack_simulation() -> None:
    run = fullstack.measure(12, 12, seed=2)
    assert run.nodes == 12
    assert run.find_peer_ok == run.find_peer_total == 12
    assert run.closest_exact == 12
    assert min(run.table_sizes) >= 1
