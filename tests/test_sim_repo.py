"""The ``make sim`` repository propagation, in miniature: eight full nodes
with real git seed a repository, one push at the origin reaches every one
of them, the counts add up, and the report says so."""

from __future__ import annotations

from pathlib import Path

import trio

from bench.sim import repo as sim
from bench.sim._repo_sim import Params, simulate

SMALL = Params(nodes=8, dials=2, timeout=30.0, drain=1.0, settle=1.0)


def test_one_push_reaches_every_node(tmp_path: Path) -> None:
    result = trio.run(simulate, SMALL, tmp_path)
    assert result.converged, result.missing
    assert result.survivors == 8 and not result.crashed and not result.killed
    assert result.received == 7 and len(result.per_node) == 7
    assert result.took is not None and 0 < max(result.per_node) == result.took < SMALL.timeout
    # every node fetched the push once, so packs were served for each
    packs = sum(s.packs for s in result.served)
    assert packs >= 7
    assert sum(result.log.fetched_from.values()) >= 7 and result.fetches >= 7
    assert sum(s.bytes for s in result.served) >= min(b for s in result.served for b in s.pack_responses) * 7
    text = sim.report(result, result, "today", _machine(), (0.0, 0.0))
    assert "| every survivor holds the push | yes, 7 of 7 | yes, 7 of 7 |" in text


def test_survivors_converge_when_nodes_are_killed(tmp_path: Path) -> None:
    params = Params(**{**SMALL.__dict__, "kill_fraction": 0.25, "kill_after": 1})
    result = trio.run(simulate, params, tmp_path)
    assert len(result.killed) == 2 and 0 not in result.killed
    assert result.survivors == 8 - 2 - len(result.crashed) - len(result.crashed_before)
    assert result.converged, (result.missing, result.crashed)
    assert not result.missing


def _machine() -> dict[str, str]:
    keys = ("commit", "cpu", "cores", "ram", "kernel", "python")
    return {key: key for key in keys}
