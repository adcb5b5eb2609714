"""Owner-signed values under ``/guts/``, sans-IO: encoding, signing, checking, ordering.

Theory of operation
-------------------

A value under ``/guts/`` belongs to one key pair, named in the record's
DHT key, and only that key pair can write it (the idea of IPNS records,
libp2p/specs ``ipns/ipns-record.md``, cut down to what Guts needs)::

    /guts/<owner peer id, base58>/<name>

Guts peer ids are Ed25519 keys inlined in an identity multihash, so the
key names the public key that must have signed the record, and the record
need not carry it. The record (the DHT value) is::

    uvarint(seq) | uvarint(len(value)) | value | signature (64 bytes)

and the signature is Ed25519 over the domain-separated bytes::

    b"guts-dht-record:" | uvarint(len(key)) | key | uvarint(seq) | uvarint(len(value)) | value

The key is signed too, so a record cannot be replayed under another name
of the same owner, and the domain prefix keeps a record signature from
ever being a valid signature of anything else the identity key signs
(Noise payloads, gossip messages, ref statements).

Ordering (:func:`select_signed`): the highest ``seq`` wins; between two
records of one seq (an owner that signed two values with one seq) the
greater record bytes win, so every node still picks the same one. A
stranger cannot sign for another owner's key, so it can neither overwrite
a record nor outbid its seq: the hijack of "greatest bytes wins" is gone.

The owner picks ``seq``: :func:`next_seq` takes the milliseconds since the
epoch, or one more than the seq of the record it holds if that is higher.
The clock makes a node that lost its store (a new home with an old key)
still outbid what it published before, without asking the network first.

Decoding is bounded: a record longer than ``max_value`` plus its framing,
trailing bytes, or a seq past 2**63 - 1 are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, InvalidRecord
from guts.peer import PeerId

__all__ = [
    "DOMAIN",
    "MAX_SEQ",
    "NAMESPACE",
    "SignedValue",
    "guts_key",
    "next_seq",
    "open_record",
    "owner_of",
    "select_signed",
    "seq_of",
    "sign_record",
]

#: The namespace whose values are owner-signed.
NAMESPACE = b"/guts/"
#: What a record signature signs begins with this, and nothing else Guts signs does.
DOMAIN = b"guts-dht-record:"
#: Largest sequence number (fits a signed 64-bit integer, for js and SQLite).
MAX_SEQ = 2**63 - 1
_SIGNATURE = 64


# The unsigned varints of the layout, here rather than from guts.wire, whose
# package brings trio along (this module is a sans-IO core).
def encode_uvarint(value: int) -> bytes:
    """``value`` (0 to :data:`MAX_SEQ`) as an unsigned LEB128 varint."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """One minimal varint of at most 9 bytes at ``pos``: ``(value, next pos)``.

    Raises:
        DecodeError: truncated, longer than 9 bytes, or not minimal.
    """
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                raise DecodeError("varint not minimal")
            return value, pos + i + 1
    raise DecodeError("varint longer than 9 bytes")


@dataclass(frozen=True, slots=True)
class SignedValue:
    """A checked record: who owns it, its sequence number and its value."""

    owner: PeerId
    name: bytes
    seq: int
    value: bytes


def guts_key(owner: PeerId, name: bytes) -> bytes:
    """The DHT key of ``owner``'s value called ``name``.

    Raises:
        InvalidRecord: the name is empty.
    """
    if not name:
        raise InvalidRecord("a /guts/ record needs a name after the owner")
    return NAMESPACE + str(owner).encode() + b"/" + name


def owner_of(key: bytes) -> tuple[PeerId, bytes]:
    """The owner and the name a ``/guts/<owner>/<name>`` key names.

    Raises:
        InvalidRecord: the key is not of that form, or the owner's id
            inlines no Ed25519 key (so no signature could be checked).
    """
    if not key.startswith(NAMESPACE):
        raise InvalidRecord("signed record key outside /guts/")
    owner_text, slash, name = key[len(NAMESPACE) :].partition(b"/")
    if not slash or not name:
        raise InvalidRecord(f"record key {key[:80]!r} is not /guts/<peer id>/<name>")
    try:
        owner = PeerId.from_string(owner_text.decode("ascii"))
    except (UnicodeDecodeError, DecodeError, ValueError):
        raise InvalidRecord(f"record key {key[:80]!r}: {owner_text[:60]!r} is not a peer id") from None
    if PublicKey.from_peer_id(owner) is None:
        raise InvalidRecord(f"record key names {owner}, whose id does not carry an Ed25519 key")
    return owner, name


def _signed_bytes(key: bytes, seq: int, value: bytes) -> bytes:
    return DOMAIN + encode_uvarint(len(key)) + key + encode_uvarint(seq) + encode_uvarint(len(value)) + value


def sign_record(keypair: KeyPair, key: bytes, seq: int, value: bytes) -> bytes:
    """The record for ``value`` under ``key``, signed by ``keypair``.

    Raises:
        InvalidRecord: ``key`` is not ``keypair``'s, or ``seq`` is out of range.
    """
    owner, _ = owner_of(key)
    if owner != keypair.peer_id:
        raise InvalidRecord(f"{key[:80]!r} belongs to {owner}; this node can only sign its own records")
    if not 0 <= seq <= MAX_SEQ:
        raise InvalidRecord(f"sequence number {seq} out of range")
    signature = keypair.sign(_signed_bytes(key, seq, value))
    return encode_uvarint(seq) + encode_uvarint(len(value)) + value + signature


def open_record(key: bytes, record: bytes, max_value: int) -> SignedValue:
    """Decode ``record`` and check its owner's signature.

    Raises:
        InvalidRecord: the record does not decode, is over ``max_value``,
            or its signature is not the key's owner's.
    """
    owner, name = owner_of(key)
    try:
        seq, pos = decode_uvarint(record, 0)
        length, pos = decode_uvarint(record, pos)
    except DecodeError as exc:
        raise InvalidRecord(f"signed record does not decode: {exc}") from None
    if seq > MAX_SEQ:
        raise InvalidRecord(f"sequence number {seq} out of range")
    if length > max_value:
        raise InvalidRecord(f"value of {length} bytes (limit {max_value})")
    if len(record) != pos + length + _SIGNATURE:
        raise InvalidRecord("signed record length does not match its value and signature")
    value = record[pos : pos + length]
    public_key = PublicKey.from_peer_id(owner)
    assert public_key is not None  # owner_of checked it
    if not public_key.verify(_signed_bytes(key, seq, value), record[pos + length :]):
        raise InvalidRecord(f"record signature is not {owner}'s")
    return SignedValue(owner, name, seq, bytes(value))


def seq_of(record: bytes) -> int:
    """The sequence number of a record already checked (no signature check)."""
    return decode_uvarint(record, 0)[0]


def select_signed(records: Sequence[bytes]) -> int:
    """Index of the best of checked ``records``: highest seq, then greatest bytes."""
    best = 0
    best_rank = (seq_of(records[0]), records[0])
    for i in range(1, len(records)):
        rank = (seq_of(records[i]), records[i])
        if rank > best_rank:
            best, best_rank = i, rank
    return best


def next_seq(now: float, held: int | None) -> int:
    """The seq of a new record: milliseconds since the epoch, or one more
    than the seq of the record held (``held``) if that is later."""
    seq = int(now * 1000)
    if held is not None and held >= seq:
        seq = held + 1
    return min(seq, MAX_SEQ)
