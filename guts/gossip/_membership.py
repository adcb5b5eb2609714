"""Topic membership (gossipsub-v1.0.md, "Topic Membership"): JOIN and LEAVE
of our own subscriptions, and the subscriptions peers announce to us.

Both change who is in which mesh at once rather than at the next
heartbeat: JOIN builds the mesh from fanout and known subscribers, LEAVE
prunes it, and a peer subscribing to a topic whose mesh is short may be
grafted straight away (``graft_on_subscribe``). Functions over the shared
:class:`RouterState`, with ``now`` passed in.
"""

from __future__ import annotations

import logging

from guts.gossip._codec import Graft, SubOpts, subscription_field
from guts.gossip._control import make_prune
from guts.gossip._state import PeerState, RouterState
from guts.peer import PeerId

__all__ = ["announce", "join", "leave", "on_subscription"]

log = logging.getLogger("guts.gossip")


def announce(st: RouterState, peer: PeerId) -> None:
    """The hello to a new peer: every topic we are subscribed to."""
    if st.subscriptions:
        st.box(peer).subscriptions.extend(subscription_field(SubOpts(True, t)) for t in sorted(st.subscriptions))


def join(st: RouterState, topic: str, now: float) -> None:
    """JOIN(topic): announce it to every peer and build a mesh, from the
    topic's fanout first, then from its other eligible subscribers."""
    st.subscriptions.add(topic)
    sub = subscription_field(SubOpts(True, topic))
    for peer in st.peers:
        st.box(peer).subscriptions.append(sub)
    mesh: set[PeerId] = set()
    for peer in st.fanout.pop(topic, set()):
        if st.eligible(peer, topic, now):
            mesh.add(peer)
    st.fanout_lastpub.pop(topic, None)
    if len(mesh) < st.config.d:
        candidates = [p for p in st.topics.get(topic, ()) if p not in mesh and st.eligible(p, topic, now)]
        st.rng.shuffle(candidates)
        mesh.update(candidates[: st.config.d - len(mesh)])
    st.mesh[topic] = mesh
    for peer in mesh:
        st.score.graft(peer, topic, now)
        st.box(peer).graft.append(Graft(topic))


def leave(st: RouterState, topic: str, now: float) -> None:
    """LEAVE(topic): tell every peer, PRUNE the mesh (with the short backoff)."""
    st.subscriptions.discard(topic)
    sub = subscription_field(SubOpts(False, topic))
    for peer in st.peers:
        st.box(peer).subscriptions.append(sub)
    for peer in st.mesh.pop(topic, set()):
        st.box(peer).prune.append(make_prune(st, peer, topic, do_px=False, unsubscribe=True, now=now))


def on_subscription(st: RouterState, peer: PeerId, state: PeerState, sub: SubOpts, now: float) -> None:
    """``peer`` subscribed to or left ``sub.topic``; subscriptions beyond
    ``max_topics_per_peer`` or to over-long topics are not tracked."""
    cfg = st.config
    topic = sub.topic
    if sub.subscribe:
        if topic in state.topics:
            return
        if len(state.topics) >= cfg.max_topics_per_peer or len(topic.encode()) > cfg.max_topic_length:
            if not state.warned_topics:
                state.warned_topics = True
                log.info("peer %s: subscription to an over-long topic or beyond %d topics ignored",
                         peer, cfg.max_topics_per_peer)
            return
        state.topics.add(topic)
        st.topics.setdefault(topic, set()).add(peer)
        mesh = st.mesh.get(topic)
        if cfg.graft_on_subscribe and mesh is not None and len(mesh) < cfg.d_low and st.eligible(peer, topic, now):
            mesh.add(peer)
            st.score.graft(peer, topic, now)
            st.box(peer).graft.append(Graft(topic))
    elif topic in state.topics:
        state.topics.discard(topic)
        peers = st.topics.get(topic)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del st.topics[topic]
        mesh = st.mesh.get(topic)
        if mesh is not None and peer in mesh:
            mesh.discard(peer)
            st.score.prune(peer, topic, penalize=False)
        fanout = st.fanout.get(topic)
        if fanout is not None:
            fanout.discard(peer)
