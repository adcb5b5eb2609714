"""The router's heartbeat (gossipsub-v1.0.md, "Heartbeat"; v1.1's additions).

Once per ``heartbeat_interval``, in this order: per-heartbeat counters
reset, penalties for IWANT floods and broken promises, score decay and
backoff expiry (housekeeping); then mesh and fanout maintenance
(:mod:`guts.gossip.mesh` decides, this module applies the GRAFTs and
PRUNEs); then gossip (IHAVE) to peers outside the mesh; last, the message
cache moves on one window. A function over the shared
:class:`RouterState`, with ``now`` passed in.
"""

from __future__ import annotations

import logging
from functools import partial

from guts.gossip._codec import Graft, IHave
from guts.gossip._control import make_prune
from guts.gossip._state import RouterState
from guts.gossip.mesh import gossip_peers, maintain_fanout, maintain_mesh
from guts.peer import PeerId

__all__ = ["BACKOFF_CLEAN_TICKS", "heartbeat"]

log = logging.getLogger("guts.gossip")

#: Heartbeats between sweeps of expired backoffs (js's GossipsubPruneBackoffTicks).
BACKOFF_CLEAN_TICKS = 15


def heartbeat(st: RouterState, now: float) -> None:
    """One heartbeat: housekeeping, mesh and fanout maintenance, gossip emission,
    then the message cache shifts."""
    cfg = st.config
    st.ticks += 1
    _housekeeping(st, now)
    scores: dict[PeerId, float] = {}

    def score_of(peer: PeerId) -> float:  # each peer's score once per heartbeat
        value = scores.get(peer)
        if value is None:
            value = scores[peer] = st.score.score(peer, now)
        return value

    tograft: dict[PeerId, list[str]] = {}
    toprune: dict[PeerId, list[str]] = {}
    no_px: set[PeerId] = set()
    gossip_to: dict[str, set[PeerId]] = {}
    opportunistic = st.ticks % cfg.opportunistic_graft_ticks == 0
    for topic, mesh in st.mesh.items():
        changes = maintain_mesh(
            mesh,
            st.topics.get(topic, ()),
            cfg,
            st.rng,
            score_of=score_of,
            backed_off=partial(_backed_off, st, topic, now),
            is_outbound=st.is_outbound,
            excluded=st.direct,
            opportunistic=opportunistic,
        )
        for peer in changes.grafted:
            st.score.graft(peer, topic, now)
            tograft.setdefault(peer, []).append(topic)
        for peer in changes.pruned:
            toprune.setdefault(peer, []).append(topic)
        no_px |= changes.no_px
        gossip_to[topic] = changes.gossip
    for topic in [t for t, last in st.fanout_lastpub.items() if last + cfg.fanout_ttl < now]:
        st.fanout.pop(topic, None)
        del st.fanout_lastpub[topic]
    for topic, fanout in st.fanout.items():
        gossip_to[topic] = maintain_fanout(
            fanout, st.topics.get(topic, set()), cfg, st.rng, score_of=score_of, excluded=st.direct
        )
    _emit_gossip(st, gossip_to)
    for peer, topics in tograft.items():
        st.box(peer).graft.extend(Graft(t) for t in topics)
    for peer, topics in toprune.items():
        box = st.box(peer)
        do_px = cfg.do_px and peer not in no_px
        for topic in topics:
            box.prune.append(make_prune(st, peer, topic, do_px=do_px, unsubscribe=False, now=now))
    st.mcache.shift()


def _backed_off(st: RouterState, topic: str, now: float, peer: PeerId) -> bool:
    return st.backed_off(topic, peer, now)


def _housekeeping(st: RouterState, now: float) -> None:
    cfg = st.config
    interval = cfg.score_params.decay_interval
    if st.last_decay is None:
        st.last_decay = now
    elif now - st.last_decay >= interval * 0.99:
        st.score.refresh(now)
        st.last_decay = now
    if st.ticks % BACKOFF_CLEAN_TICKS == 0:
        slack = cfg.backoff_slack * cfg.heartbeat_interval
        for topic in list(st.backoff):
            per_topic = st.backoff[topic]
            for peer in [p for p, expiry in per_topic.items() if expiry + slack < now]:
                del per_topic[peer]
            if not per_topic:
                del st.backoff[topic]
    ticks = st.ticks
    for peer, state in st.peers.items():
        if state.spammed_iwant:
            log.info("peer %s: IWANT flood (beyond the per-heartbeat or retransmission limits); penalised", peer)
            st.score.add_penalty(peer, 1)
            state.spammed_iwant = False
        state.ihave_count = state.iasked = state.iwant_count = state.idontwant_count = 0
        if state.dont_send:
            stale = [m for m, tick in state.dont_send.items() if ticks - tick >= cfg.history_length]
            for msg_id in stale:
                del state.dont_send[msg_id]
    for peer, count in st.promises.broken(now).items():
        log.info("peer %s: %d IWANT promise(s) broken; penalised", peer, count)
        st.stats.promises_broken += count
        st.score.add_penalty(peer, count)
    st.seen.prune(now)


def _emit_gossip(st: RouterState, gossip_to: dict[str, set[PeerId]]) -> None:
    cfg = st.config
    wanted = [t for t, peers in gossip_to.items() if peers]
    if not wanted:
        return
    ids_by_topic = st.mcache.gossip_ids(wanted)
    for topic in wanted:
        ids = ids_by_topic.get(topic)
        if not ids:
            continue
        st.rng.shuffle(ids)
        for peer in gossip_peers(gossip_to[topic], cfg, st.rng):
            chosen = ids if len(ids) <= cfg.max_ihave_length else st.rng.sample(ids, cfg.max_ihave_length)
            st.box(peer).ihave.append(IHave(topic, tuple(chosen)))
