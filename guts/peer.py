"""Peer ids: the multihash of a peer's public key (libp2p/specs ``peer-ids``).

A peer id is a multihash of the canonical ``PublicKey`` protobuf: the
*identity* multihash (code 0x00, the key bytes verbatim) when the protobuf
is at most 42 bytes long, as every Ed25519 key is, and SHA2-256 (code
0x12) otherwise. So an Ed25519 peer id carries its public key, which is
why :meth:`guts.crypto.PublicKey.from_peer_id` can recover it without a
lookup.

This module knows keys only as their canonical protobuf bytes (anything
with ``to_protobuf()``); :mod:`guts.crypto` builds on it, never the other
way round.

Text forms: the legacy base58btc encoding of the multihash
(``12D3KooW…`` for Ed25519 keys, ``Qm…`` for hashed ones) is what
:meth:`PeerId.__str__` returns and what logs and other implementations
print; the CIDv1 form (multicodec ``libp2p-key`` 0x72, multibase base32
``b…``) is accepted by :meth:`PeerId.from_string` and produced by
:meth:`PeerId.to_cid`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import base58

from guts.cid import Cid, InvalidCid
from guts.errors import DecodeError, GutsError, InputError

__all__ = ["InvalidPeerId", "InvalidPeerIdBytes", "InvalidPeerIdText", "PeerId"]


class EncodedKey(Protocol):
    """What a peer id is derived from: a public key that encodes itself as
    the libp2p ``PublicKey`` protobuf (:class:`guts.crypto.PublicKey`)."""

    def to_protobuf(self) -> bytes: ...

_IDENTITY = 0x00
_SHA2_256 = 0x12
_LIBP2P_KEY = 0x72
_CID_V1 = 0x01
#: Longest key protobuf the spec inlines with the identity multihash.
_MAX_INLINE_KEY = 42
#: No valid text form comes close; the cap keeps base58's quadratic
#: decoder away from megabyte strings pasted into a config file.
_MAX_TEXT = 256


class InvalidPeerId(GutsError, ValueError):
    """Bytes or text that are not a valid peer id: one of the two below,
    and a :class:`ValueError` either way, the way ``int("x")`` is."""


class InvalidPeerIdBytes(InvalidPeerId, DecodeError):
    """A binary peer id is malformed: remote input, so a
    :class:`~guts.errors.DecodeError` that wire decoders (identify, the
    DHT) let propagate as the remote's protocol violation."""


class InvalidPeerIdText(InvalidPeerId, InputError):
    """A text peer id is malformed: what a person wrote, so an
    :class:`~guts.errors.InputError`."""


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a minimal unsigned varint of at most 9 bytes at ``pos``."""
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            raise InvalidPeerId("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise InvalidPeerId("non-minimal varint")
            return value, pos + i + 1
    raise InvalidPeerId("varint too long")


def _check_multihash(data: bytes) -> None:
    code, pos = _uvarint(data, 0)
    length, pos = _uvarint(data, pos)
    if len(data) - pos != length:
        raise InvalidPeerId(f"multihash digest length {length} does not match the {len(data) - pos} bytes present")
    if code == _SHA2_256:
        if length != 32:
            raise InvalidPeerId("a sha2-256 multihash digest is 32 bytes")
    elif code == _IDENTITY:
        if length > _MAX_INLINE_KEY:
            raise InvalidPeerId(f"identity multihash longer than {_MAX_INLINE_KEY} bytes")
    else:
        raise InvalidPeerId(f"multihash code 0x{code:x} is not used for peer ids (identity or sha2-256)")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class PeerId:
    """The id of a peer: a validated multihash.

    Equality and hashing use the multihash bytes only. The base58 text is
    computed on first use and cached, since peer ids are printed in every
    log line and used as dictionary keys by their text in config files.

    Args:
        multihash: an identity or sha2-256 multihash.

    Raises:
        InvalidPeerId: ``multihash`` is not a valid peer id multihash.
    """

    multihash: bytes
    _text: str = field(default="", init=False)  # set lazily by __str__

    def __post_init__(self) -> None:
        if not isinstance(self.multihash, bytes):
            object.__setattr__(self, "multihash", bytes(self.multihash))
        try:
            _check_multihash(self.multihash)
        except InvalidPeerId as exc:
            raise InvalidPeerIdBytes(str(exc)) from None

    @classmethod
    def from_public_key(cls, key: EncodedKey) -> PeerId:
        """Derive the peer id of ``key``."""
        encoded = key.to_protobuf()
        if len(encoded) <= _MAX_INLINE_KEY:
            return cls(bytes((_IDENTITY, len(encoded))) + encoded)
        return cls(b"\x12\x20" + hashlib.sha256(encoded).digest())

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerId:
        """Parse the binary form (the multihash), as found in protobufs.

        Raises:
            InvalidPeerIdBytes: not an identity or sha2-256 multihash.
        """
        return cls(bytes(data))

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        """Parse a peer id written as base58btc (``12D3KooW…``, ``Qm…``) or as
        a CIDv1 with codec ``libp2p-key`` (``bafz…``, ``k51…``; any
        multibase of :mod:`guts.cid`).

        Raises:
            InvalidPeerIdText: ``text`` is neither.
        """
        try:
            return cls._from_string(text)
        except InvalidPeerId as exc:
            raise InvalidPeerIdText(str(exc)) from None

    @classmethod
    def _from_string(cls, text: str) -> PeerId:
        if (
            not isinstance(text, str)
            or not text
            or len(text) > _MAX_TEXT
            or not text.isascii()
            or text.strip() != text
        ):
            raise InvalidPeerId(f"not a peer id: {text!r}")
        if text[0] == "1" or text.startswith("Qm"):
            return cls(_b58decode(text))
        prefix, body = text[0], text[1:]
        try:
            if prefix in "bB":
                raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
            elif prefix == "z":
                raw = _b58decode(body)
            elif prefix in "fF":
                raw = bytes.fromhex(body)
            else:
                # The other multibases (base36 k51..., base64...), rarer.
                try:
                    raw = Cid.parse(text).to_bytes()
                except InvalidCid:
                    raise InvalidPeerId(f"not a peer id: {text!r}") from None
        except (binascii.Error, ValueError) as exc:
            if isinstance(exc, InvalidPeerId):
                raise
            raise InvalidPeerId(f"not a peer id: {text!r}") from None
        version, pos = _uvarint(raw, 0)
        codec, pos = _uvarint(raw, pos)
        if version != _CID_V1 or codec != _LIBP2P_KEY:
            raise InvalidPeerId(f"not a libp2p-key CIDv1: {text!r}")
        return cls(raw[pos:])

    def to_bytes(self) -> bytes:
        """The binary form (the multihash)."""
        return self.multihash

    def to_cid(self) -> str:
        """The CIDv1 text form: base32 multibase, codec ``libp2p-key``."""
        raw = bytes((_CID_V1, _LIBP2P_KEY)) + self.multihash
        return "b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def inlined_key(self) -> bytes | None:
        """The ``PublicKey`` protobuf inlined in an identity multihash, or
        ``None`` when the id is a hash of the key.

        :meth:`guts.crypto.PublicKey.from_peer_id` decodes it.
        """
        if self.multihash[0] != _IDENTITY:
            return None
        return self.multihash[2:]

    def matches(self, key: EncodedKey) -> bool:
        """Whether ``key`` is the key this peer id was derived from."""
        return PeerId.from_public_key(key).multihash == self.multihash

    def __str__(self) -> str:
        text = self._text
        if not text:
            text = base58.b58encode(self.multihash).decode("ascii")
            object.__setattr__(self, "_text", text)
        return text

    def __repr__(self) -> str:
        return f"PeerId({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PeerId):
            return self.multihash == other.multihash
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.multihash)


def _b58decode(text: str) -> bytes:
    try:
        return base58.b58decode(text)
    except ValueError:
        raise InvalidPeerId(f"not a peer id: {text!r}") from None
