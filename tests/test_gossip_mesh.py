"""Mesh and fanout maintenance, as pure functions over one topic."""

from __future__ import annotations

import random

from guts.gossip._config import GossipConfig
from guts.gossip.mesh import gossip_peers, maintain_fanout, maintain_mesh, select_excess

CFG = GossipConfig()


def run(mesh: set[str], subscribed: list[str], scores: dict[str, float] | None = None,
        outbound: set[str] | None = None, backed_off: set[str] = set(), opportunistic: bool = False,
        excluded: set[str] = set(), config: GossipConfig = CFG):  # type: ignore[no-untyped-def]
    scores = scores or {}
    outbound = set(subscribed) if outbound is None else outbound
    return maintain_mesh(
        mesh, subscribed, config, random.Random(1),
        score_of=lambda p: scores.get(p, 0.0),
        backed_off=lambda p: p in backed_off,
        is_outbound=lambda p: p in outbound,
        excluded=excluded,
        opportunistic=opportunistic,
    )


PEERS = [f"p{i:02d}" for i in range(20)]


def test_undersubscribed_mesh_is_filled_to_d_with_eligible_peers() -> None:
    mesh = {"p00", "p01"}
    changes = run(mesh, PEERS, scores={"p02": -1.0}, backed_off={"p03"}, excluded={"p04"})
    assert len(mesh) == CFG.d and len(changes.grafted) == CFG.d - 2
    assert not {"p02", "p03", "p04"} & mesh
    assert changes.gossip.isdisjoint(mesh) and "p02" in changes.gossip  # -1 is above the gossip threshold


def test_negative_peers_are_pruned_without_px() -> None:
    mesh = set(PEERS[:6])
    changes = run(mesh, PEERS[:6], scores={"p00": -0.5, "p01": -100.0})
    assert changes.pruned == ["p00", "p01"] or set(changes.pruned) == {"p00", "p01"}
    assert changes.no_px == {"p00", "p01"}
    assert "p00" in changes.gossip and "p01" not in changes.gossip  # below the gossip threshold


def test_oversubscribed_mesh_keeps_the_best_and_outbound_peers() -> None:
    mesh = set(PEERS[:15])
    scores = {p: float(i) for i, p in enumerate(PEERS)}
    outbound = {"p00", "p01"}  # the two worst-scored peers are our only outbound ones
    changes = run(mesh, PEERS[:15], scores=scores, outbound=outbound)
    assert len(mesh) == CFG.d
    assert {"p14", "p13", "p12", "p11"} <= mesh  # the d_score best
    assert outbound <= mesh  # the d_out quota
    assert len(changes.pruned) == 9


def test_select_excess_without_enough_outbound_peers() -> None:
    mesh = PEERS[:13]
    drop = select_excess(mesh, CFG, random.Random(2), score_of=lambda p: 0.0, is_outbound=lambda p: False)
    assert len(drop) == 13 - CFG.d


def test_outbound_quota_grafts_outbound_peers() -> None:
    mesh = set(PEERS[:5])
    changes = run(mesh, PEERS, outbound={"p10", "p11", "p12"})
    assert len(changes.grafted) == CFG.d_out
    assert set(changes.grafted) <= {"p10", "p11", "p12"}


def test_opportunistic_grafting() -> None:
    mesh = set(PEERS[:6])
    scores = {p: 0.5 for p in PEERS[:6]} | {"p10": 5.0, "p11": 6.0, "p12": 0.1}
    changes = run(mesh, PEERS[:13], scores=scores, outbound=set(PEERS), opportunistic=True)
    assert set(changes.grafted) == {"p10", "p11"}
    # not when the median is good enough
    mesh = set(PEERS[:6])
    scores = {p: 3.0 for p in PEERS[:6]} | {"p10": 5.0}
    assert run(mesh, PEERS[:13], scores=scores, outbound=set(PEERS), opportunistic=True).grafted == []


def test_fanout_is_refilled_and_cleaned() -> None:
    fanout = {"p00", "p01", "gone"}
    scores = {"p01": -60.0}  # below the publish threshold
    gossip = maintain_fanout(fanout, PEERS, CFG, random.Random(3), score_of=lambda p: scores.get(p, 0.0))
    assert "gone" not in fanout and "p01" not in fanout and "p00" in fanout
    assert len(fanout) == CFG.d
    assert gossip.isdisjoint(fanout) and "p01" not in gossip


def test_gossip_peers_factor_and_minimum() -> None:
    rng = random.Random(4)
    assert len(gossip_peers(PEERS[:4], CFG, rng)) == 4
    assert len(gossip_peers(PEERS[:10], CFG, rng)) == CFG.d_lazy
    many = [f"q{i}" for i in range(100)]
    assert len(gossip_peers(many, CFG, rng)) == 25  # gossip_factor 0.25
