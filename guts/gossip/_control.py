"""Control messages: GRAFT, PRUNE, IHAVE, IWANT, IDONTWANT.

What the router does with the control part of a peer's RPC
(gossipsub-v1.0.md "Control Messages", v1.1's backoff, peer exchange and
spam limits, v1.2's IDONTWANT), and how it builds the PRUNEs and
IDONTWANTs it sends. Functions over the shared :class:`RouterState`, so
that the router, the heartbeat and this module each stay one concern;
misbehaviour seen here is charged to the peer through the score (P7).
"""

from __future__ import annotations

import logging

from guts.gossip._codec import ControlMessage, Graft, IDontWant, IHave, IWant, Prune, PxPeer
from guts.gossip._events import PeersExchanged
from guts.gossip._state import PeerState, RouterState
from guts.peer import PeerId

__all__ = ["MAX_BACKOFF", "handle_control", "make_prune", "send_idontwant"]

log = logging.getLogger("guts.gossip")

#: Longest backoff we honour from a PRUNE, in seconds.
MAX_BACKOFF = 3600.0


def handle_control(st: RouterState, peer: PeerId, state: PeerState, control: ControlMessage, now: float) -> None:
    """Act on the control part of one RPC from ``peer`` (in the spec's order)."""
    if control.ihave:
        _on_ihave(st, peer, state, control.ihave, now)
    if control.iwant:
        _on_iwant(st, peer, state, control.iwant, now)
    if control.graft:
        _on_graft(st, peer, state, control.graft, now)
    if control.prune:
        _on_prune(st, peer, control.prune, now)
    if control.idontwant:
        _on_idontwant(st, state, control.idontwant)


def make_prune(st: RouterState, peer: PeerId, topic: str, *, do_px: bool, unsubscribe: bool, now: float) -> Prune:
    """The PRUNE taking ``peer`` out of our ``topic`` mesh, and our backoff
    of it; to a v1.1 peer it carries the backoff, and peers to try instead
    when ``do_px``."""
    st.score.prune(peer, topic)
    state = st.peers.get(peer)
    if state is None or not state.v11:
        return Prune(topic)  # v1.0: no backoff, no PX
    cfg = st.config
    backoff = cfg.unsubscribe_backoff if unsubscribe else cfg.prune_backoff
    st.add_backoff(peer, topic, backoff, now)
    peers: tuple[PxPeer, ...] = ()
    if do_px:
        candidates = [p for p in st.topics.get(topic, ()) if p != peer and st.score.score(p, now) >= 0]
        st.rng.shuffle(candidates)
        peers = tuple(PxPeer(p.to_bytes()) for p in candidates[: cfg.prune_peers])
    return Prune(topic, peers, int(backoff))


def send_idontwant(st: RouterState, msg_id: bytes, topic: str, source: PeerId) -> None:
    """Tell our v1.2 mesh peers (but ``source``) not to send us ``msg_id``."""
    entry = IDontWant((msg_id,))
    for peer in st.mesh.get(topic, ()):
        state = st.peers.get(peer)
        if peer != source and state is not None and state.v12:
            st.box(peer).idontwant.append(entry)
            st.stats.idontwant_sent += 1


def _on_ihave(st: RouterState, peer: PeerId, state: PeerState, ihaves: tuple[IHave, ...], now: float) -> None:
    cfg = st.config
    if st.score.score(peer, now) < cfg.score_thresholds.gossip_threshold:
        st.stats.ihave_ignored += 1
        return
    state.ihave_count += 1
    if state.ihave_count > cfg.max_ihave_messages or state.iasked >= cfg.max_ihave_length:
        st.stats.ihave_ignored += 1
        log.debug("peer %s: IHAVE beyond this heartbeat's limits ignored", peer)
        return
    wanted: dict[bytes, None] = {}
    processed = 0
    for ihave in ihaves:
        if ihave.topic not in st.mesh:
            continue
        for msg_id in ihave.message_ids:
            if processed >= cfg.max_ihave_length:
                break
            processed += 1
            if msg_id not in st.seen and len(msg_id) <= cfg.max_message_id_length:
                wanted[msg_id] = None
    if not wanted:
        return
    ask = list(wanted)
    st.rng.shuffle(ask)
    ask = ask[: cfg.max_ihave_length - state.iasked]
    state.iasked += len(ask)
    st.box(peer).iwant.append(IWant(tuple(ask)))
    st.promises.add(peer, ask, now)


def _on_iwant(st: RouterState, peer: PeerId, state: PeerState, iwants: tuple[IWant, ...], now: float) -> None:
    cfg = st.config
    if st.score.score(peer, now) < cfg.score_thresholds.gossip_threshold:
        st.stats.iwant_ignored += 1
        return
    state.iwant_count += 1
    if state.iwant_count > cfg.max_iwant_messages:
        state.spammed_iwant = True
        st.stats.iwant_ignored += 1
        return
    box = None
    processed = 0
    for iwant in iwants:
        for msg_id in iwant.message_ids:
            if processed >= cfg.max_ihave_length:
                break
            processed += 1
            got = st.mcache.get_for_peer(msg_id, peer)
            if got is None:
                continue
            raw, count = got
            if count > cfg.gossip_retransmission:
                state.spammed_iwant = True
                st.stats.iwant_ignored += 1
                continue
            if box is None:
                box = st.box(peer)
            box.messages.append(raw.wire)
            st.stats.iwant_answered += 1


def _on_graft(st: RouterState, peer: PeerId, state: PeerState, grafts: tuple[Graft, ...], now: float) -> None:
    cfg = st.config
    prune: list[str] = []
    do_px = cfg.do_px
    score = st.score.score(peer, now)
    for graft in grafts:
        topic = graft.topic
        mesh = st.mesh.get(topic)
        if mesh is None:  # not our topic: ignore, and leak no peers through PX
            do_px = False
            continue
        if peer in mesh:
            continue
        expiry = st.backoff.get(topic, {}).get(peer)
        if peer in st.direct:
            log.info("peer %s: GRAFT from a direct peer refused", peer)
            prune.append(topic)
            do_px = False
        elif expiry is not None and now < expiry:
            log.info("peer %s: GRAFT on %r during backoff; penalised", peer, topic)
            st.score.add_penalty(peer, 1)
            if now < expiry + cfg.graft_flood_threshold - cfg.prune_backoff:
                st.score.add_penalty(peer, 1)  # far too early: a flood
            st.add_backoff(peer, topic, cfg.prune_backoff, now)
            prune.append(topic)
            do_px = False
        elif score < 0:
            prune.append(topic)
            do_px = False
            st.add_backoff(peer, topic, cfg.prune_backoff, now)
        elif len(mesh) >= cfg.d_high and not state.outbound:
            prune.append(topic)
            st.add_backoff(peer, topic, cfg.prune_backoff, now)
        else:
            mesh.add(peer)
            st.score.graft(peer, topic, now)
            continue
        st.stats.grafts_refused += 1
    if prune:
        box = st.box(peer)
        for topic in prune:
            box.prune.append(make_prune(st, peer, topic, do_px=do_px, unsubscribe=False, now=now))


def _on_prune(st: RouterState, peer: PeerId, prunes: tuple[Prune, ...], now: float) -> None:
    cfg = st.config
    score = st.score.score(peer, now)
    for prune in prunes:
        topic = prune.topic
        mesh = st.mesh.get(topic)
        if mesh is None:
            continue
        if peer in mesh:
            mesh.discard(peer)
            st.score.prune(peer, topic)
        backoff = float(prune.backoff) if prune.backoff else cfg.prune_backoff
        st.add_backoff(peer, topic, min(backoff, MAX_BACKOFF), now)
        if prune.peers and score >= cfg.score_thresholds.accept_px_threshold:
            offered = [px for px in prune.peers[: cfg.prune_peers] if px.peer_id != st.local.to_bytes()]
            if offered:
                st.events.append(PeersExchanged(topic, peer, tuple(offered)))


def _on_idontwant(st: RouterState, state: PeerState, idontwants: tuple[IDontWant, ...]) -> None:
    limit = st.config.idontwant_max_messages
    for entry in idontwants:
        for msg_id in entry.message_ids:
            if state.idontwant_count >= limit:
                return
            state.idontwant_count += 1
            state.dont_send[msg_id] = st.ticks
            st.stats.idontwant_received += 1
