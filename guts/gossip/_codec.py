"""pubsub RPCs <-> frozen dataclasses. The only module of the gossip package
that touches the generated protobuf classes.

Decoding is bounded twice: the frame itself is capped by the stream reader
(:class:`~guts.wire.LengthPrefixedDecoder`), and :func:`decode_rpc` caps the
number of subscriptions, messages, control entries, message ids and peer
exchange entries, raising :class:`~guts.errors.DecodeError` past any of
them, so that a small frame of many tiny entries cannot make the router do
unbounded work.

Encoding goes the other way, field by field, because a protobuf message is
the concatenation of its fields: a forwarded message is encoded once, as
the RPC field that carries it (:attr:`RawMessage.wire`), and the same bytes
go into the RPC for every peer, next to whatever control entries that
peer's RPC piggybacks (a big message goes as a frame of its own, so that
one bytes object serves every peer's queue and the message cache).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import DecodeError
from guts.pb import pubsub_pb2
from guts.wire import decode_uvarint, encode_uvarint

__all__ = [
    "ControlMessage",
    "Graft",
    "IDontWant",
    "IHave",
    "IWant",
    "Outbox",
    "Prune",
    "PxPeer",
    "RPC",
    "RawMessage",
    "RpcLimits",
    "SubOpts",
    "decode_rpc",
    "encode_control",
    "encode_message",
    "encode_rpc",
    "encode_signable",
    "message_field",
    "subscription_field",
]


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """How much one RPC may carry; each limit exceeded is a :class:`DecodeError`.

    The defaults are js-libp2p's decoding limits (5000 of each), except peer
    exchange, where js refuses more than 16 entries and go sends at most 16.
    """

    max_subscriptions: int = 5000
    max_messages: int = 5000
    max_control_entries: int = 5000
    max_ids_per_entry: int = 5000
    max_px_peers: int = 32


@dataclass(frozen=True, slots=True)
class SubOpts:
    """A subscription change: ``subscribe`` is False for an unsubscription."""

    subscribe: bool
    topic: str


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A pubsub ``Message`` as it travels: optional fields are ``None`` when absent.

    Field presence matters: the StrictSign signature covers the message
    re-encoded without ``signature`` and ``key``, so an empty ``data`` that
    was sent must stay distinguishable from one that was not.

    Attributes:
        from_peer: the author's peer id (multihash bytes).
        data: the payload.
        seqno: the author's sequence number (8 bytes, big-endian).
        topic: the one topic of the message.
        signature: Ed25519 signature of ``libp2p-pubsub:`` + the message
            encoded without ``signature`` and ``key``.
        key: the author's ``PublicKey`` protobuf, when it is not inlined in
            ``from_peer``.
        wire: the RPC ``publish`` field carrying the message: tag, length
            and the ``Message`` protobuf bytes (computed once; a decoded
            message keeps the bytes it came with).
    """

    from_peer: bytes | None
    data: bytes | None
    seqno: bytes | None
    topic: str
    signature: bytes | None = None
    key: bytes | None = None
    wire: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.wire:
            object.__setattr__(self, "wire", message_field(encode_message(self)))

    @property
    def encoded(self) -> bytes:
        """The ``Message`` protobuf bytes (a copy, out of :attr:`wire`)."""
        _, start = decode_uvarint(self.wire, 1)
        return self.wire[start:]

    @property
    def size(self) -> int:
        """Bytes of payload (0 when ``data`` is absent)."""
        return len(self.data) if self.data is not None else 0


@dataclass(frozen=True, slots=True)
class IHave:
    topic: str
    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class IWant:
    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Graft:
    topic: str


@dataclass(frozen=True, slots=True)
class PxPeer:
    """One peer offered in peer exchange: its id and maybe a signed peer record."""

    peer_id: bytes
    signed_peer_record: bytes | None = None


@dataclass(frozen=True, slots=True)
class Prune:
    """A PRUNE; ``backoff`` in seconds (``None``: not given, a v1.0 peer)."""

    topic: str
    peers: tuple[PxPeer, ...] = ()
    backoff: int | None = None


@dataclass(frozen=True, slots=True)
class IDontWant:
    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ControlMessage:
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    idontwant: tuple[IDontWant, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ihave or self.iwant or self.graft or self.prune or self.idontwant)


@dataclass(frozen=True, slots=True)
class RPC:
    subscriptions: tuple[SubOpts, ...] = ()
    messages: tuple[RawMessage, ...] = ()
    control: ControlMessage | None = None


# ---------------------------------------------------------------- encoding


def _bytes_field(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + encode_uvarint(len(value)) + value


def encode_signable(from_peer: bytes | None, data: bytes | None, seqno: bytes | None, topic: str) -> bytes:
    """The ``Message`` protobuf without ``signature`` and ``key``: what
    StrictSign signs (behind the ``libp2p-pubsub:`` prefix)."""
    parts = []
    if from_peer is not None:
        parts.append(_bytes_field(0x0A, from_peer))
    if data is not None:
        parts.append(_bytes_field(0x12, data))
    if seqno is not None:
        parts.append(_bytes_field(0x1A, seqno))
    parts.append(_bytes_field(0x22, topic.encode()))
    return b"".join(parts)


def encode_message(msg: RawMessage) -> bytes:
    """The ``Message`` protobuf of ``msg``, fields in field-number order."""
    out = encode_signable(msg.from_peer, msg.data, msg.seqno, msg.topic)
    if msg.signature is not None:
        out += _bytes_field(0x2A, msg.signature)
    if msg.key is not None:
        out += _bytes_field(0x32, msg.key)
    return out


def message_field(encoded_message: bytes) -> bytes:
    """An RPC ``publish`` field (2) holding one encoded ``Message``."""
    return _bytes_field(0x12, encoded_message)


def subscription_field(sub: SubOpts) -> bytes:
    """An RPC ``subscriptions`` field (1) holding one ``SubOpts``."""
    body = (b"\x08\x01" if sub.subscribe else b"\x08\x00") + _bytes_field(0x12, sub.topic.encode())
    return _bytes_field(0x0A, body)


def encode_control(control: ControlMessage) -> bytes:
    """An RPC ``control`` field (3), or ``b""`` for an empty control message."""
    if not control:
        return b""
    pb = pubsub_pb2.ControlMessage()
    for ihave in control.ihave:
        ihave_entry = pb.ihave.add()
        ihave_entry.topicID = ihave.topic
        ihave_entry.messageIDs.extend(ihave.message_ids)
    for iwant in control.iwant:
        pb.iwant.add().messageIDs.extend(iwant.message_ids)
    for graft in control.graft:
        pb.graft.add().topicID = graft.topic
    for prune in control.prune:
        prune_entry = pb.prune.add()
        prune_entry.topicID = prune.topic
        for px in prune.peers:
            info = prune_entry.peers.add()
            info.peerID = px.peer_id
            if px.signed_peer_record is not None:
                info.signedPeerRecord = px.signed_peer_record
        if prune.backoff is not None:
            prune_entry.backoff = prune.backoff
    for idontwant in control.idontwant:
        pb.idontwant.add().messageIDs.extend(idontwant.message_ids)
    return _bytes_field(0x1A, pb.SerializeToString())


def encode_rpc(rpc: RPC) -> bytes:
    """The RPC protobuf: subscriptions, messages, then control."""
    parts = [subscription_field(s) for s in rpc.subscriptions]
    parts.extend(m.wire for m in rpc.messages)
    if rpc.control is not None:
        parts.append(encode_control(rpc.control))
    return b"".join(parts)


#: Encoded parts this large are sent as frames of their own (see :class:`Outbox`).
SHARED_PART = 64 * 1024


@dataclass(slots=True)
class Outbox:
    """What one peer will be sent: encoded subscriptions and messages, and
    control entries, coalesced into as few RPC frames as ``limit`` allows.

    A message of ``SHARED_PART`` bytes or more is a frame of its own: an
    RPC is the concatenation of its fields, so its encoded bytes are that
    frame as they are, shared by every peer's queue and the message cache.
    """

    subscriptions: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    ihave: list[IHave] = field(default_factory=list)
    iwant: list[IWant] = field(default_factory=list)
    graft: list[Graft] = field(default_factory=list)
    prune: list[Prune] = field(default_factory=list)
    idontwant: list[IDontWant] = field(default_factory=list)

    def frames(self, limit: int) -> list[bytes]:
        if not (self.subscriptions or self.ihave or self.iwant or self.graft or self.prune or self.idontwant):
            if len(self.messages) == 1 and len(self.messages[0]) <= limit:  # the common case: one forward
                return self.messages[:]
        parts = [*self.subscriptions, *self.messages]
        control = ControlMessage(
            tuple(self.ihave), tuple(self.iwant), tuple(self.graft), tuple(self.prune), tuple(self.idontwant)
        )
        if control:
            parts.append(encode_control(control))
        frames: list[bytes] = []
        current: list[bytes] = []
        size = 0
        for part in parts:
            if len(part) >= SHARED_PART:
                # a big message goes out as a frame of its own: the same bytes
                # object for every peer it is sent to, not a copy per peer
                if current:
                    frames.append(b"".join(current))
                    current, size = [], 0
                frames.append(part)
                continue
            if current and size + len(part) > limit:
                frames.append(b"".join(current))
                current, size = [], 0
            current.append(part)
            size += len(part)
        if current:
            frames.append(b"".join(current))
        return frames


# ---------------------------------------------------------------- decoding


def _check(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise DecodeError(f"RPC carries {count} {what} (limit {limit})")


def _text(value: object, what: str) -> str:
    # proto2 strings that are not UTF-8 come back from upb as bytes
    if not isinstance(value, str):
        raise DecodeError(f"RPC {what} is not UTF-8")
    return value


def _optional(msg: object, name: str) -> bytes | None:
    return getattr(msg, name) if msg.HasField(name) else None  # type: ignore[attr-defined]


def _ids(ids: Iterable[bytes], limits: RpcLimits, what: str) -> tuple[bytes, ...]:
    out = tuple(ids)
    _check(len(out), limits.max_ids_per_entry, f"message ids in one {what}")
    return out


def decode_rpc(data: bytes, limits: RpcLimits = RpcLimits()) -> RPC:
    """Decode one RPC frame.

    Control entries without a topic are dropped (they mean nothing).

    Raises:
        DecodeError: malformed protobuf, a count over ``limits``, a topic
            that is not UTF-8, or a message without exactly one topic.
    """
    pb = pubsub_pb2.RPC()
    try:
        pb.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed RPC: {exc}") from None
    _check(len(pb.subscriptions), limits.max_subscriptions, "subscriptions")
    _check(len(pb.publish), limits.max_messages, "messages")
    subscriptions = tuple(
        SubOpts(bool(s.subscribe), _text(s.topicid, "subscription topic"))
        for s in pb.subscriptions
        if s.HasField("topicid")
    )
    messages = []
    for m in pb.publish:
        if len(m.topicIDs) != 1:
            raise DecodeError(f"RPC message has {len(m.topicIDs)} topics; gossipsub messages have one")
        messages.append(
            RawMessage(
                from_peer=_optional(m, "from"),
                data=_optional(m, "data"),
                seqno=_optional(m, "seqno"),
                topic=_text(m.topicIDs[0], "message topic"),
                signature=_optional(m, "signature"),
                key=_optional(m, "key"),
                wire=message_field(m.SerializeToString()),
            )
        )
    control = None
    if pb.HasField("control"):
        c = pb.control
        for name in ("ihave", "iwant", "graft", "prune", "idontwant"):
            _check(len(getattr(c, name)), limits.max_control_entries, f"{name} entries")
        prunes = []
        for p in c.prune:
            if not p.HasField("topicID"):
                continue
            _check(len(p.peers), limits.max_px_peers, "peer exchange entries in one prune")
            prunes.append(
                Prune(
                    topic=_text(p.topicID, "prune topic"),
                    peers=tuple(PxPeer(i.peerID, _optional(i, "signedPeerRecord")) for i in p.peers),
                    backoff=p.backoff if p.HasField("backoff") else None,
                )
            )
        control = ControlMessage(
            ihave=tuple(
                IHave(_text(i.topicID, "ihave topic"), _ids(i.messageIDs, limits, "ihave"))
                for i in c.ihave
                if i.HasField("topicID")
            ),
            iwant=tuple(IWant(_ids(i.messageIDs, limits, "iwant")) for i in c.iwant),
            graft=tuple(Graft(_text(g.topicID, "graft topic")) for g in c.graft if g.HasField("topicID")),
            prune=tuple(prunes),
            idontwant=tuple(IDontWant(_ids(i.messageIDs, limits, "idontwant")) for i in c.idontwant),
        )
    return RPC(subscriptions, tuple(messages), control)
