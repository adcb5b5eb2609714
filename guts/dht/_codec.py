"""kad-dht messages <-> frozen dataclasses; the only module of the DHT
that touches the generated protobuf classes.

Everything decoded here is remote input, so the decoder is bounded: the
message size (checked by the framing before we get here), the number of
peers in each list, the addresses kept per peer, the key and record
sizes. A violation raises :class:`~guts.errors.DecodeError`; addresses
that do not parse (a transport we do not know, or garbage) are skipped
and counted, since a newer peer may announce transports we cannot dial.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import DecodeError
from guts.multiaddr import Multiaddr
from guts.pb import dht_pb2
from guts.peer import PeerId

__all__ = [
    "ConnectionType",
    "KadMessage",
    "KadPeer",
    "Limits",
    "MessageType",
    "Record",
    "decode_message",
    "decode_record",
    "encode_message",
    "encode_record",
    "format_time_received",
]


class MessageType(IntEnum):
    PUT_VALUE = 0
    GET_VALUE = 1
    ADD_PROVIDER = 2
    GET_PROVIDERS = 3
    FIND_NODE = 4
    PING = 5


class ConnectionType(IntEnum):
    NOT_CONNECTED = 0
    CONNECTED = 1
    CAN_CONNECT = 2
    CANNOT_CONNECT = 3


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on decoded messages.

    Attributes:
        max_message: largest framed message in bytes (enforced by the framing).
        max_peers: most entries in ``closerPeers`` or ``providerPeers``; an
            honest peer sends at most k (20).
        max_addrs: addresses kept per peer; later ones are dropped.
        max_key: longest key in bytes.
        max_value: longest record value in bytes.
    """

    max_message: int = 64 * 1024
    max_peers: int = 64
    max_addrs: int = 16
    max_key: int = 1024
    max_value: int = 16 * 1024


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class KadPeer:
    """A peer as listed in a message: its id, addresses and connection hint."""

    peer_id: PeerId
    addrs: tuple[Multiaddr, ...] = ()
    connection: ConnectionType = ConnectionType.NOT_CONNECTED


@dataclass(frozen=True, slots=True)
class Record:
    """A value record. ``time_received`` is the receiver's RFC 3339 UTC time
    (go and js write ``2006-01-02T15:04:05.999999999Z``); empty when unset."""

    key: bytes
    value: bytes
    time_received: str = ""


@dataclass(frozen=True, slots=True)
class KadMessage:
    """One kad-dht RPC message, request or response.

    Attributes:
        skipped_addrs: addresses in the message that did not decode or were
            over the per-peer limit (decoder output only; never encoded).
    """

    type: MessageType
    key: bytes = b""
    record: Record | None = None
    closer_peers: tuple[KadPeer, ...] = ()
    provider_peers: tuple[KadPeer, ...] = ()
    cluster_level: int = 0
    skipped_addrs: int = 0


def format_time_received(epoch_seconds: float) -> str:
    """RFC 3339 with nanoseconds in UTC, the form go and js use."""
    whole = int(epoch_seconds // 1)
    nanos = int(round((epoch_seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.datetime.fromtimestamp(whole, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _fill_peer(pb: dht_pb2.Message.Peer, peer: KadPeer) -> None:
    pb.id = peer.peer_id.to_bytes()
    pb.addrs.extend(a.to_bytes() for a in peer.addrs)
    pb.connection = int(peer.connection)  # type: ignore[assignment]


def _fill_record(pb: dht_pb2.Record, record: Record) -> None:
    pb.key = record.key
    pb.value = record.value
    pb.timeReceived = record.time_received


def encode_record(record: Record) -> bytes:
    pb = dht_pb2.Record()
    _fill_record(pb, record)
    return pb.SerializeToString()


def encode_message(message: KadMessage) -> bytes:
    pb = dht_pb2.Message()
    pb.type = int(message.type)  # type: ignore[assignment]
    if message.key:
        pb.key = message.key
    if message.cluster_level:
        pb.clusterLevelRaw = message.cluster_level
    if message.record is not None:
        _fill_record(pb.record, message.record)
    for peer in message.closer_peers:
        _fill_peer(pb.closerPeers.add(), peer)
    for peer in message.provider_peers:
        _fill_peer(pb.providerPeers.add(), peer)
    return pb.SerializeToString()


def _decode_record(pb: dht_pb2.Record, limits: Limits) -> Record:
    if len(pb.key) > limits.max_key:
        raise DecodeError(f"record key of {len(pb.key)} bytes (limit {limits.max_key})")
    if len(pb.value) > limits.max_value:
        raise DecodeError(f"record value of {len(pb.value)} bytes (limit {limits.max_value})")
    if len(pb.timeReceived) > 64:
        raise DecodeError("record timeReceived longer than 64 characters")
    return Record(bytes(pb.key), bytes(pb.value), pb.timeReceived)


def decode_record(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Record:
    """Decode a serialized Record (as kept in a datastore)."""
    pb = dht_pb2.Record()
    try:
        pb.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed DHT record: {exc}") from None
    return _decode_record(pb, limits)


def _decode_peers(
    entries: object, what: str, limits: Limits
) -> tuple[tuple[KadPeer, ...], int]:
    pbs = list(entries)  # type: ignore[call-overload]
    if len(pbs) > limits.max_peers:
        raise DecodeError(f"message lists {len(pbs)} {what} (limit {limits.max_peers})")
    peers: list[KadPeer] = []
    skipped = 0
    for pb in pbs:
        peer_id = PeerId.from_bytes(pb.id)  # InvalidPeerId is a DecodeError
        addrs: list[Multiaddr] = []
        for raw in pb.addrs:
            if len(addrs) >= limits.max_addrs:
                skipped += 1
                continue
            try:
                addr = Multiaddr.from_bytes(raw)
            except DecodeError:
                skipped += 1
                continue
            if addr not in addrs:
                addrs.append(addr)
        try:
            connection = ConnectionType(pb.connection)
        except ValueError:
            connection = ConnectionType.NOT_CONNECTED
        peers.append(KadPeer(peer_id, tuple(addrs), connection))
    return tuple(peers), skipped


def decode_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> KadMessage:
    """Decode one kad-dht message.

    Raises:
        DecodeError: malformed protobuf, unknown message type, an invalid
            peer id, too many peers, or an oversized key or record.
    """
    if len(data) > limits.max_message:
        raise DecodeError(f"DHT message of {len(data)} bytes (limit {limits.max_message})")
    pb = dht_pb2.Message()
    try:
        pb.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed DHT message: {exc}") from None
    try:
        kind = MessageType(pb.type)
    except ValueError:
        raise DecodeError(f"unknown DHT message type {pb.type}") from None
    if len(pb.key) > limits.max_key:
        raise DecodeError(f"DHT key of {len(pb.key)} bytes (limit {limits.max_key})")
    record = _decode_record(pb.record, limits) if pb.HasField("record") else None
    closer, skipped_closer = _decode_peers(pb.closerPeers, "closer peers", limits)
    providers, skipped_providers = _decode_peers(pb.providerPeers, "provider peers", limits)
    return KadMessage(
        type=kind,
        key=bytes(pb.key),
        record=record,
        closer_peers=closer,
        provider_peers=providers,
        cluster_level=pb.clusterLevelRaw,
        skipped_addrs=skipped_closer + skipped_providers,
    )
