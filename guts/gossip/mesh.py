"""Mesh and fanout maintenance: what the heartbeat changes in one topic.

Pure functions over one topic's peer sets, the score and the backoffs
(passed in as functions), following gossipsub-v1.0.md "Mesh Maintenance"
and "Fanout Maintenance" with v1.1's additions::

    prune mesh peers with a negative score (no PX to them)
    |mesh| < D_low           -> graft D - |mesh| random eligible peers
    |mesh| > D_high          -> keep the best D_score by score and the rest
                                of D at random, with D_out outbound peers
                                among them; prune the others
    |mesh| >= D_low, fewer than D_out outbound -> graft outbound peers
    every opportunistic_graft_ticks, if the median mesh score is below the
    threshold -> graft a few eligible peers scoring above the median

An eligible peer is subscribed, not in the mesh, not a direct peer, not
backed off, with a score >= 0. Gossip (IHAVE) then goes to topic peers
outside the mesh above the gossip threshold: ``gossip_factor`` of them, and
at least ``D_lazy``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Container, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from guts.gossip._config import GossipConfig

__all__ = ["MeshChanges", "gossip_peers", "maintain_fanout", "maintain_mesh", "select_excess"]

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class MeshChanges(Generic[P]):
    """What :func:`maintain_mesh` did to one topic's mesh."""

    grafted: list[P] = field(default_factory=list)
    pruned: list[P] = field(default_factory=list)
    no_px: set[P] = field(default_factory=set)  # pruned for a negative score
    gossip: set[P] = field(default_factory=set)  # topic peers outside the mesh, above the gossip threshold


def maintain_mesh(
    mesh: set[P],
    subscribed: Iterable[P],
    config: GossipConfig,
    rng: random.Random,
    *,
    score_of: Callable[[P], float],
    backed_off: Callable[[P], bool],
    is_outbound: Callable[[P], bool],
    excluded: Container[P] = (),
    opportunistic: bool = False,
) -> MeshChanges[P]:
    """Bring ``mesh`` (changed in place) within bounds; see the module docstring."""
    cfg = config
    changes: MeshChanges[P] = MeshChanges()
    gossip_threshold = cfg.score_thresholds.gossip_threshold
    candidates: list[P] = []  # eligible for grafting, in random order
    peers = list(subscribed)
    rng.shuffle(peers)
    for peer in peers:
        if peer in mesh or peer in excluded:
            continue
        score = score_of(peer)
        if score >= 0 and not backed_off(peer):
            candidates.append(peer)
        if score >= gossip_threshold:
            changes.gossip.add(peer)

    def prune(peer: P) -> None:
        mesh.discard(peer)
        changes.pruned.append(peer)
        if score_of(peer) >= gossip_threshold:
            changes.gossip.add(peer)

    def graft(peer: P) -> None:
        mesh.add(peer)
        changes.grafted.append(peer)
        changes.gossip.discard(peer)
        candidates.remove(peer)

    for peer in [p for p in mesh if score_of(p) < 0]:
        prune(peer)
        changes.no_px.add(peer)

    if len(mesh) < cfg.d_low:
        for peer in candidates[: cfg.d - len(mesh)]:
            graft(peer)

    if len(mesh) > cfg.d_high:
        for peer in select_excess(mesh, cfg, rng, score_of=score_of, is_outbound=is_outbound):
            prune(peer)

    if cfg.d_out and len(mesh) >= cfg.d_low:
        outbound = sum(1 for p in mesh if is_outbound(p))
        if outbound < cfg.d_out:
            for peer in [p for p in candidates if is_outbound(p)][: cfg.d_out - outbound]:
                graft(peer)

    if opportunistic and len(mesh) > 1:
        ranked = sorted(mesh, key=score_of)
        median = score_of(ranked[len(ranked) // 2])
        if median < cfg.score_thresholds.opportunistic_graft_threshold:
            for peer in [p for p in candidates if score_of(p) > median][: cfg.opportunistic_graft_peers]:
                graft(peer)
    return changes


def select_excess(
    mesh: Collection[P],
    config: GossipConfig,
    rng: random.Random,
    *,
    score_of: Callable[[P], float],
    is_outbound: Callable[[P], bool],
) -> list[P]:
    """Peers to prune from an oversubscribed mesh: keep the best ``d_score``
    by score and the rest of ``d`` at random, with at least ``d_out``
    outbound peers among those kept."""
    cfg = config
    ranked = sorted(mesh, key=score_of, reverse=True)
    rest = ranked[cfg.d_score:]
    rng.shuffle(rest)
    ordered = ranked[: cfg.d_score] + rest
    keep, drop = ordered[: cfg.d], ordered[cfg.d:]
    outbound = sum(1 for p in keep if is_outbound(p))
    if outbound < cfg.d_out:
        # swap outbound peers in for the last-chosen (random, then lowest-scored) inbound ones
        for peer in [p for p in drop if is_outbound(p)][: cfg.d_out - outbound]:
            for i in range(len(keep) - 1, -1, -1):
                if not is_outbound(keep[i]):
                    drop.append(keep[i])
                    keep[i] = peer
                    drop.remove(peer)
                    break
    return drop


def maintain_fanout(
    fanout: set[P],
    subscribed: Collection[P],
    config: GossipConfig,
    rng: random.Random,
    *,
    score_of: Callable[[P], float],
    excluded: Container[P] = (),
) -> set[P]:
    """Drop fanout peers that left the topic or fell below the publish
    threshold, refill to ``d``; return the topic peers to gossip to."""
    cfg = config
    publish_threshold = cfg.score_thresholds.publish_threshold
    for peer in [p for p in fanout if p not in subscribed or score_of(p) < publish_threshold]:
        fanout.discard(peer)
    gossip: set[P] = set()
    candidates: list[P] = []
    peers = list(subscribed)
    rng.shuffle(peers)
    for peer in peers:
        if peer in fanout or peer in excluded:
            continue
        score = score_of(peer)
        if score >= publish_threshold:
            candidates.append(peer)
        if score >= cfg.score_thresholds.gossip_threshold:
            gossip.add(peer)
    for peer in candidates[: max(0, cfg.d - len(fanout))]:
        fanout.add(peer)
        gossip.discard(peer)
    return gossip


def gossip_peers(candidates: Collection[P], config: GossipConfig, rng: random.Random) -> list[P]:
    """The peers that get IHAVE: ``gossip_factor`` of the candidates, at least ``d_lazy``."""
    peers = list(candidates)
    target = max(config.d_lazy, int(config.gossip_factor * len(peers)))
    if target < len(peers):
        return rng.sample(peers, target)
    return peers
