"""Message signing (libp2p/specs pubsub/README.md, "Message Signing") and
message ids.

StrictSign, the default: every message carries ``from`` (the author's peer
id), an 8-byte big-endian ``seqno`` and ``signature``, an Ed25519 signature
of ``libp2p-pubsub:`` followed by the message encoded without ``signature``
and ``key``. ``key`` carries the author's ``PublicKey`` protobuf; for an
Ed25519 author it is also inlined in the peer id, and when both are present
they must agree. StrictNoSign: none of those fields may be present.

The default message id is the one js-libp2p computes for StrictSign
(``msgIdFnStrictSign``): the author's ``PublicKey`` protobuf followed by the
seqno, i.e. 36 + 8 bytes for an Ed25519 author. It is *not* the author's
peer id followed by the seqno (an Ed25519 peer id has a 2-byte multihash
prefix in front of the same key). For StrictNoSign it is the SHA-256 of the
data, as in js.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from guts.crypto import KeyPair, PublicKey, UnsupportedKeyType
from guts.errors import DecodeError
from guts.gossip._codec import RawMessage, encode_signable
from guts.peer import PeerId

__all__ = [
    "SIGN_PREFIX",
    "Author",
    "AuthorCache",
    "InvalidMessage",
    "MessageIdFn",
    "Rejection",
    "SignaturePolicy",
    "anonymous_message",
    "check_author",
    "default_message_id",
    "hash_message_id",
    "sign_message",
    "verify_signature",
]

SIGN_PREFIX = b"libp2p-pubsub:"
#: An Ed25519 peer id: identity multihash (00 24) of the key protobuf (08 01 12 20 ...).
_ED25519_PEER_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"

MessageIdFn = Callable[[RawMessage], bytes]


class SignaturePolicy(Enum):
    """What the router demands of every message (js and go use the same two)."""

    STRICT_SIGN = "strict-sign"
    STRICT_NO_SIGN = "strict-no-sign"


class Rejection(Enum):
    """Why a message was refused before any application validator saw it."""

    MISSING_SEQNO = "missing seqno"
    BAD_SEQNO = "seqno is not 8 bytes"
    MISSING_SIGNATURE = "unsigned message"
    MISSING_FROM = "no author (from)"
    BAD_FROM = "author (from) is not a peer id"
    KEY_MISMATCH = "key does not match the author"
    BAD_KEY = "malformed key"
    NO_KEY = "author's key neither inlined nor given"
    UNSUPPORTED_KEY = "author's key type is not supported"
    BAD_SIGNATURE = "bad signature"
    UNEXPECTED_FIELDS = "from, seqno, signature or key present under StrictNoSign"
    TOO_LARGE = "message over the size limit"
    SELF_ORIGINATED = "claims to be ours but we did not publish it"


class InvalidMessage(DecodeError):
    """A message that breaks the signature policy.

    Attributes:
        reason: which rule it broke.
    """

    def __init__(self, reason: Rejection) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Author:
    """The author of a signed message and the key its signature must verify with."""

    peer_id: PeerId
    public_key: PublicKey


def sign_message(keypair: KeyPair, topic: str, data: bytes, seqno: int) -> RawMessage:
    """Build a StrictSign message authored by ``keypair``."""
    from_peer = keypair.peer_id.to_bytes()
    seq = seqno.to_bytes(8, "big")
    signature = keypair.sign(SIGN_PREFIX + encode_signable(from_peer, data, seq, topic))
    return RawMessage(from_peer, data, seq, topic, signature, keypair.public_key.to_protobuf())


def anonymous_message(topic: str, data: bytes) -> RawMessage:
    """Build a StrictNoSign message: no author, seqno, signature or key."""
    return RawMessage(None, data, None, topic)


def _inlined_key(author: PeerId) -> PublicKey:
    if author.multihash[0] != 0x00:  # a sha2-256 peer id: the key must come in `key`
        raise InvalidMessage(Rejection.NO_KEY)
    try:
        return PublicKey.from_protobuf(author.multihash[2:])
    except UnsupportedKeyType:
        raise InvalidMessage(Rejection.UNSUPPORTED_KEY) from None
    except (DecodeError, ValueError):
        raise InvalidMessage(Rejection.BAD_FROM) from None


#: Authors remembered by an :class:`AuthorCache` before it starts afresh.
AUTHOR_CACHE_SIZE = 4096


class AuthorCache:
    """The author (or the reason there is none) of each ``from``/``key``
    pair seen lately: parsing a peer id and a key and checking that they
    match costs more than the rest of a message's checks, and the same
    authors come back with every message they publish."""

    def __init__(self, size: int = AUTHOR_CACHE_SIZE) -> None:
        self.size = size
        self._known: dict[tuple[bytes, bytes | None], Author | Rejection] = {}

    def resolve(self, from_peer: bytes, key: bytes | None) -> Author:
        """The author of a message from ``from_peer`` carrying ``key``.

        Raises:
            InvalidMessage: ``from`` is not a peer id, the key is malformed,
                unsupported or another peer's, or there is no key at all.
        """
        known = self._known.get((from_peer, key))
        if known is None:
            try:
                known = _resolve(from_peer, key)
            except InvalidMessage as exc:
                known = exc.reason
            if len(self._known) >= self.size:
                self._known.clear()
            self._known[(from_peer, key)] = known
        if isinstance(known, Rejection):
            raise InvalidMessage(known)
        return known


def _resolve(from_peer: bytes, key_bytes: bytes | None) -> Author:
    try:
        author = PeerId.from_bytes(from_peer)
    except DecodeError:
        raise InvalidMessage(Rejection.BAD_FROM) from None
    if key_bytes is not None:
        try:
            key = PublicKey.from_protobuf(key_bytes)
        except UnsupportedKeyType:
            raise InvalidMessage(Rejection.UNSUPPORTED_KEY) from None
        except (DecodeError, ValueError):
            raise InvalidMessage(Rejection.BAD_KEY) from None
        if not author.matches(key):
            raise InvalidMessage(Rejection.KEY_MISMATCH)
        return Author(author, key)
    return Author(author, _inlined_key(author))


def check_author(msg: RawMessage, policy: SignaturePolicy, authors: AuthorCache | None = None) -> Author | None:
    """Check the fields the policy demands (everything but the signature itself).

    Args:
        authors: where to look up and remember authors (optional).

    Returns:
        The author under StrictSign, ``None`` under StrictNoSign.

    Raises:
        InvalidMessage: the message breaks the policy. ``UNSUPPORTED_KEY``
            means a well-formed author whose key type Guts cannot verify
            (RSA, secp256k1): callers ignore such messages rather than
            penalise whoever relayed them.
    """
    if policy is SignaturePolicy.STRICT_NO_SIGN:
        if msg.from_peer is not None or msg.seqno is not None or msg.signature is not None or msg.key is not None:
            raise InvalidMessage(Rejection.UNEXPECTED_FIELDS)
        return None
    if msg.seqno is None:
        raise InvalidMessage(Rejection.MISSING_SEQNO)
    if len(msg.seqno) != 8:
        raise InvalidMessage(Rejection.BAD_SEQNO)
    if msg.signature is None:
        raise InvalidMessage(Rejection.MISSING_SIGNATURE)
    if msg.from_peer is None:
        raise InvalidMessage(Rejection.MISSING_FROM)
    if authors is not None:
        return authors.resolve(msg.from_peer, msg.key)
    return _resolve(msg.from_peer, msg.key)


def verify_signature(msg: RawMessage, key: PublicKey) -> bool:
    """Whether ``msg.signature`` is ``key``'s StrictSign signature of ``msg``."""
    if msg.signature is None:
        return False
    signed = SIGN_PREFIX + encode_signable(msg.from_peer, msg.data, msg.seqno, msg.topic)
    return key.verify(signed, msg.signature)


def default_message_id(msg: RawMessage) -> bytes:
    """js-libp2p's StrictSign message id: author ``PublicKey`` protobuf + seqno.

    The key is the one inlined in the author's peer id, else ``key``,
    re-encoded canonically, as js does.

    Raises:
        InvalidMessage: the message has no seqno or no usable key.
    """
    seqno = msg.seqno
    if seqno is None:
        raise InvalidMessage(Rejection.MISSING_SEQNO)
    from_peer = msg.from_peer
    if from_peer is not None and len(from_peer) == 38 and from_peer.startswith(_ED25519_PEER_ID_PREFIX):
        return from_peer[2:] + seqno  # the common case: already canonical
    key: PublicKey | None = None
    if from_peer is not None:
        try:
            key = PublicKey.from_peer_id(PeerId.from_bytes(from_peer))
        except DecodeError:
            key = None
    if key is None and msg.key is not None:
        try:
            key = PublicKey.from_protobuf(msg.key)
        except (DecodeError, ValueError):
            key = None
    if key is None:
        raise InvalidMessage(Rejection.NO_KEY)
    return key.to_protobuf() + seqno


def hash_message_id(msg: RawMessage) -> bytes:
    """js-libp2p's StrictNoSign message id: SHA-256 of the data."""
    return hashlib.sha256(msg.data or b"").digest()
