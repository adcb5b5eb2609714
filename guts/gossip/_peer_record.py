"""Signed peer records, as gossipsub peer exchange carries them.

A signed peer record is a signed envelope (libp2p/specs RFC 0002) whose
payload is a ``PeerRecord`` (RFC 0003): a peer's id, a sequence number and
its addresses, signed by that peer. The RFCs' drafts differ from what
implementations settled on; this module follows go-libp2p and js-libp2p:
the domain is ``libp2p-peer-record``, the payload type the multicodec
``libp2p-peer-record`` (bytes ``03 01``), and the signature covers::

    uvarint(len(domain)) domain uvarint(len(type)) type uvarint(len(payload)) payload

A PRUNE's peer exchange entry may carry the record of the peer it offers, so
that the pruned peer can dial it without asking anyone for its addresses;
the record proves the addresses come from that peer, whoever relayed them.
Only the receiving side is here: Guts does not keep other peers' records,
so the PRUNEs it sends offer peer ids alone. :func:`px_peer_id` and
:func:`open_px_record` are the checks of a received offer, so that the
Trio layer only acts on their verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError
from guts.gossip._codec import PxPeer
from guts.multiaddr import Multiaddr
from guts.pb import peer_record_pb2
from guts.peer import InvalidPeerId, PeerId
from guts.wire import encode_uvarint

__all__ = [
    "MAX_RECORD_ADDRS",
    "MAX_RECORD_SIZE",
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "InvalidPeerRecord",
    "PeerRecord",
    "open_peer_record",
    "open_px_record",
    "px_peer_id",
    "seal_peer_record",
]

PEER_RECORD_DOMAIN = "libp2p-peer-record"
PEER_RECORD_PAYLOAD_TYPE = b"\x03\x01"
#: A record with a few dozen addresses is well under 4 KiB.
MAX_RECORD_SIZE = 8 * 1024
MAX_RECORD_ADDRS = 64


class InvalidPeerRecord(DecodeError):
    """A signed peer record that does not decode, verify or match its peer."""


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer's own statement of its addresses."""

    peer_id: PeerId
    seq: int
    addrs: tuple[Multiaddr, ...]


def _signed_bytes(payload_type: bytes, payload: bytes) -> bytes:
    domain = PEER_RECORD_DOMAIN.encode()
    return (
        encode_uvarint(len(domain)) + domain
        + encode_uvarint(len(payload_type)) + payload_type
        + encode_uvarint(len(payload)) + payload
    )


def seal_peer_record(keypair: KeyPair, seq: int, addrs: list[Multiaddr] | tuple[Multiaddr, ...]) -> bytes:
    """Our own signed peer record (an encoded envelope)."""
    record = peer_record_pb2.PeerRecord(peer_id=keypair.peer_id.to_bytes(), seq=seq)
    for addr in addrs:
        record.addresses.add().multiaddr = addr.to_bytes()
    payload = record.SerializeToString()
    envelope = peer_record_pb2.Envelope(
        public_key=keypair.public_key.to_protobuf(),
        payload_type=PEER_RECORD_PAYLOAD_TYPE,
        payload=payload,
        signature=keypair.sign(_signed_bytes(PEER_RECORD_PAYLOAD_TYPE, payload)),
    )
    sealed: bytes = envelope.SerializeToString()
    return sealed


def open_peer_record(data: bytes) -> PeerRecord:
    """Verify a signed peer record and return what it says.

    The signature is checked before the payload is decoded, and the record
    must name the peer whose key signed it. Addresses Guts cannot parse (a
    newer transport) are skipped.

    Raises:
        InvalidPeerRecord: too large, malformed, not a peer record, a bad
            signature, a key Guts does not support, or another peer's record.
    """
    if len(data) > MAX_RECORD_SIZE:
        raise InvalidPeerRecord(f"peer record of {len(data)} bytes (limit {MAX_RECORD_SIZE})")
    envelope = peer_record_pb2.Envelope()
    try:
        envelope.ParseFromString(data)
    except _PbDecodeError as exc:
        raise InvalidPeerRecord(f"malformed envelope: {exc}") from None
    if envelope.payload_type != PEER_RECORD_PAYLOAD_TYPE:
        raise InvalidPeerRecord(f"envelope payload type {envelope.payload_type.hex()} is not a peer record")
    try:
        key = PublicKey.from_protobuf(envelope.public_key)
    except DecodeError as exc:
        raise InvalidPeerRecord(f"envelope key: {exc}") from None
    if not key.verify(_signed_bytes(envelope.payload_type, envelope.payload), envelope.signature):
        raise InvalidPeerRecord("bad envelope signature")
    record = peer_record_pb2.PeerRecord()
    try:
        record.ParseFromString(envelope.payload)
    except _PbDecodeError as exc:
        raise InvalidPeerRecord(f"malformed peer record: {exc}") from None
    try:
        peer = PeerId.from_bytes(record.peer_id)
    except DecodeError:
        raise InvalidPeerRecord("peer record names no valid peer id") from None
    if not peer.matches(key):
        raise InvalidPeerRecord(f"peer record of {peer} signed by another key")
    if len(record.addresses) > MAX_RECORD_ADDRS:
        raise InvalidPeerRecord(f"peer record lists {len(record.addresses)} addresses (limit {MAX_RECORD_ADDRS})")
    addrs = []
    for info in record.addresses:
        try:
            addrs.append(Multiaddr.from_bytes(info.multiaddr))
        except DecodeError:
            continue
    return PeerRecord(peer, record.seq, tuple(addrs))


def px_peer_id(px: PxPeer) -> PeerId | None:
    """The peer a peer-exchange entry offers, or ``None`` if its id does not
    decode (the entry is then skipped, not held against the pruner)."""
    try:
        return PeerId.from_bytes(px.peer_id)
    except InvalidPeerId:
        return None


def open_px_record(px: PxPeer, peer: PeerId) -> PeerRecord | None:
    """The signed peer record a peer-exchange entry carries for ``peer``,
    verified; ``None`` if it carries none.

    Whoever relayed the entry, only ``peer``'s own signature makes its
    addresses worth dialling.

    Raises:
        InvalidPeerRecord: the record does not open (see
            :func:`open_peer_record`), or it is another peer's.
    """
    if px.signed_peer_record is None:
        return None
    record = open_peer_record(px.signed_peer_record)
    if record.peer_id != peer:
        raise InvalidPeerRecord(f"the record is {record.peer_id}'s")
    return record
