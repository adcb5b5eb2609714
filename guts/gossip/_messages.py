"""Messages received: checks, validation, delivery and forwarding.

A received message goes: size and signature-policy fields -> message id ->
seen? (a duplicate only feeds the score) -> signature -> seen -> IDONTWANT
to the mesh if large -> the application's validator if the topic has one
(:class:`ValidationRequested`, answered by :func:`report_validation`) ->
cache, deliver, forward to the mesh and the direct peers. Bad messages are
dropped and their sender charged through the score (P4). Functions over the
shared :class:`RouterState`, with ``now`` passed in; the router has already
dropped the RPCs of graylisted peers.
"""

from __future__ import annotations

import logging

from guts.gossip._codec import RawMessage
from guts.gossip._control import send_idontwant
from guts.gossip._events import GossipMessage, MessageDelivered, ValidationRequested, ValidationResult
from guts.gossip._signing import InvalidMessage, Rejection, check_author, verify_signature
from guts.gossip._state import Pending, RouterState
from guts.gossip.score import RejectReason
from guts.peer import PeerId

__all__ = ["gossip_message", "on_message", "report_validation"]

log = logging.getLogger("guts.gossip")


def on_message(st: RouterState, source: PeerId, raw: RawMessage, now: float) -> None:
    """One message of an RPC from ``source``: checked, then delivered and
    forwarded, held for the validator, or dropped."""
    cfg = st.config
    stats = st.stats
    stats.messages_received += 1
    topic = raw.topic
    if topic not in st.subscriptions:
        stats.messages_not_subscribed += 1
        stats.dropped.add("not_subscribed")
        return
    if raw.size > cfg.max_message_size:
        _reject(st, source, None, topic, Rejection.TOO_LARGE, now)
        return
    try:
        author = check_author(raw, cfg.signature_policy, st.authors)
        msg_id = st.message_id(raw)
    except InvalidMessage as exc:
        if exc.reason is Rejection.UNSUPPORTED_KEY:
            _ignore(st, source, "unsupported key", now)
            return
        _reject(st, source, None, topic, exc.reason, now)
        return
    except Exception as exc:  # a custom message id function failed
        _reject(st, source, None, topic, f"message id function failed: {exc!r}", now)
        return
    if len(msg_id) > cfg.max_message_id_length:
        _reject(st, source, None, topic, "message id too long", now)
        return
    if msg_id in st.seen:
        stats.messages_duplicate += 1
        st.score.duplicate_message(source, msg_id, topic, now)
        st.promises.delivered(msg_id)
        return
    if author is not None:
        if author.peer_id == st.local:
            # ours from before a restart, or a forgery: either way not
            # delivered nor forwarded, but a relay cannot tell, so nobody
            # is charged (go charges P4 here)
            st.seen.add(msg_id, now)
            _ignore(st, source, "claims to be ours", now)
            return
        if not verify_signature(raw, author.public_key):
            _reject(st, source, None, topic, Rejection.BAD_SIGNATURE, now)
            return
    st.seen.add(msg_id, now)
    st.score.validate_message(msg_id, now)
    st.promises.delivered(msg_id)
    if raw.size >= cfg.idontwant_min_data_size:
        send_idontwant(st, msg_id, topic, source)
    message = gossip_message(raw, msg_id, source, author.peer_id if author else None)
    if topic in st.validated:
        if len(st.pending) >= cfg.max_pending_validations:
            st.score.reject_message(source, msg_id, topic, RejectReason.IGNORED, now)
            _ignore(st, source, "validation queue full", now)
            return
        st.pending[msg_id] = Pending(source, raw, message)
        st.events.append(ValidationRequested(message))
        return
    _accept(st, msg_id, source, raw, message, now)


def report_validation(st: RouterState, msg_id: bytes, result: ValidationResult, now: float) -> bool:
    """The application's verdict on a :class:`ValidationRequested` message.

    Returns:
        False if no such message awaits validation (already reported).
    """
    pending = st.pending.pop(msg_id, None)
    if pending is None:
        return False
    if result is ValidationResult.ACCEPT:
        _accept(st, msg_id, pending.source, pending.raw, pending.message, now)
    elif result is ValidationResult.REJECT:
        _reject(st, pending.source, msg_id, pending.raw.topic, "rejected by the validator", now)
    else:
        st.score.reject_message(pending.source, msg_id, pending.raw.topic, RejectReason.IGNORED, now)
        _ignore(st, pending.source, "by the validator", now)
    return True


def gossip_message(raw: RawMessage, msg_id: bytes, source: PeerId | None, author: PeerId | None) -> GossipMessage:
    """The application's view of ``raw``."""
    return GossipMessage(
        topic=raw.topic,
        data=raw.data or b"",
        message_id=msg_id,
        author=author,
        seqno=raw.seqno,
        signature=raw.signature,
        key=raw.key,
        propagation_source=source,
        raw=raw,
    )


def _accept(st: RouterState, msg_id: bytes, source: PeerId, raw: RawMessage, message: GossipMessage, now: float) -> None:
    st.mcache.put(msg_id, raw)
    st.score.deliver_message(source, msg_id, raw.topic, now)
    st.stats.messages_delivered += 1
    st.events.append(MessageDelivered(message))
    _forward(st, msg_id, raw, source, message.author)


def _forward(st: RouterState, msg_id: bytes, raw: RawMessage, source: PeerId, author: PeerId | None) -> None:
    topic = raw.topic
    targets: set[PeerId] = set(st.mesh.get(topic, ()))
    if st.direct:
        subscribed = st.topics.get(topic, ())
        targets.update(p for p in st.direct if p in subscribed)
    targets.discard(source)
    if author is not None:
        targets.discard(author)
    if not targets:
        return
    field_bytes = raw.wire
    peers = st.peers
    sent = 0
    for peer in targets:
        state = peers.get(peer)
        if state is None or msg_id in state.dont_send:
            continue
        st.box(peer).messages.append(field_bytes)
        sent += 1
    st.stats.messages_forwarded += sent


def _reject(st: RouterState, source: PeerId, msg_id: bytes | None, topic: str, why: Rejection | str, now: float) -> None:
    reason = why.value if isinstance(why, Rejection) else why
    st.stats.messages_rejected += 1
    st.stats.rejections[reason] = st.stats.rejections.get(reason, 0) + 1
    st.stats.dropped.add("rejected: " + reason)
    st.score.reject_message(source, msg_id, topic, RejectReason.INVALID if msg_id else RejectReason.UNTRACKED, now)
    # one line per peer and reason a minute, not one per message of a flood
    st.drop_log.note(source, "rejected: " + reason, now)


def _ignore(st: RouterState, source: PeerId, why: str, now: float) -> None:
    st.stats.messages_ignored += 1
    st.stats.dropped.add("ignored: " + why)
    st.drop_log.note(source, "ignored: " + why, now)
