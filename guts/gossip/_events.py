"""What the router tells its caller: messages, validation requests, peer
exchange offers; and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from guts.gossip._codec import PxPeer, RawMessage
from guts.gossip._drops import DropCounts
from guts.peer import PeerId

__all__ = [
    "GossipMessage",
    "MessageDelivered",
    "PeersExchanged",
    "RouterEvent",
    "RouterStats",
    "ValidationRequested",
    "ValidationResult",
]


class ValidationResult(Enum):
    """An application validator's verdict (gossipsub-v1.1.md, "Extended Validators")."""

    ACCEPT = "accept"  # deliver and forward
    REJECT = "reject"  # drop, and charge the sender (P4)
    IGNORE = "ignore"  # drop, charge nobody


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A message as the application sees it.

    Attributes:
        topic: its topic.
        data: the payload.
        message_id: its id (what IHAVE, IWANT and IDONTWANT carry).
        author: who published it (``from``); ``None`` under StrictNoSign.
        seqno: the author's 8-byte sequence number, or ``None``.
        signature: the author's signature, or ``None``.
        key: the author's ``PublicKey`` protobuf if the message carried it.
        propagation_source: the peer we got it from; ``None`` if we published it.
        raw: the message as it travelled.
    """

    topic: str
    data: bytes
    message_id: bytes
    author: PeerId | None
    seqno: bytes | None
    signature: bytes | None
    key: bytes | None
    propagation_source: PeerId | None
    raw: RawMessage = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """A new valid message on a topic we are subscribed to."""

    message: GossipMessage


@dataclass(frozen=True, slots=True)
class ValidationRequested:
    """The topic has a validator: answer with :meth:`GossipRouter.report_validation`."""

    message: GossipMessage


@dataclass(frozen=True, slots=True)
class PeersExchanged:
    """A well-scored peer pruned us and offered these peers instead (PX)."""

    topic: str
    pruned_by: PeerId
    peers: tuple[PxPeer, ...]


RouterEvent = MessageDelivered | ValidationRequested | PeersExchanged


@dataclass(slots=True)
class RouterStats:
    """Counters, for tests, the simulation and operators."""

    rpcs_received: int = 0
    rpcs_graylisted: int = 0
    messages_received: int = 0
    messages_rate_limited: int = 0
    messages_duplicate: int = 0
    messages_rejected: int = 0
    messages_ignored: int = 0
    messages_not_subscribed: int = 0
    messages_delivered: int = 0
    messages_published: int = 0
    messages_forwarded: int = 0
    ihave_ignored: int = 0
    iwant_ignored: int = 0
    iwant_answered: int = 0
    grafts_refused: int = 0
    promises_broken: int = 0
    idontwant_sent: int = 0
    idontwant_received: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    #: Messages not delivered, by reason: ``rate_limited`` (over the peer's
    #: message rate), ``rejected: <why>``, ``ignored: <why>``,
    #: ``not_subscribed``, ``subscription_full`` (the application's buffer);
    #: ``graylisted_rpcs`` counts whole RPCs dropped unread.
    dropped: DropCounts = field(default_factory=DropCounts)
