"""CIDs: content identifiers as kubo and js-libp2p write them (multiformats ``cid``).

A CID is a version, a content codec and a multihash. Version 0 is a bare
sha2-256 multihash in base58btc (``Qm…``, codec dag-pb implied); version 1
is a multibase prefix followed by the base-encoded bytes ``varint(1)
varint(codec) multihash`` (``bafkrei…`` is base32, raw, sha2-256). The
DHT knows a CID by its multihash: js and go nodes put their provider
records for a CID under the multihash bytes, not under the CID's text.

:func:`recognize_cid` is how a command line tells a CID from any other
string. Many ordinary names begin with a multibase prefix (``b``, ``f``,
``m``, ``z``...), so a string that does not parse is a CID mistyped only
when it is plainly meant as one; see its docstring for where that line is.
"""

from __future__ import annotations

from dataclasses import dataclass

from guts.errors import InputError

__all__ = ["CODECS", "HASHES", "MULTIBASES", "Cid", "InvalidCid", "recognize_cid"]

#: Longest text read as a CID. A CID with the longest digest allowed here in
#: base16 stays well below it; base58's and base36's decoders are quadratic.
MAX_TEXT = 512
#: Longest multihash digest accepted, as boxo's verifcid allows identity CIDs.
MAX_DIGEST = 128
#: Shortest text that is refused rather than hashed when it looks like a
#: broken CID (see :func:`recognize_cid`).
MIN_MEANT = 16

_V0_CODEC = 0x70
_SHA2_256 = 0x12

#: Content codecs by code (multicodec table): the common ones by name, for
#: messages and for telling a mistyped CID from a name.
CODECS: dict[int, str] = {
    0x51: "cbor",
    0x55: "raw",
    0x70: "dag-pb",
    0x71: "dag-cbor",
    0x72: "libp2p-key",
    0x78: "git-raw",
    0x85: "dag-jose",
    0x86: "dag-cose",
    0x0129: "dag-json",
    0x0200: "json",
}

#: Hash functions by multihash code: name and digest size (``None``: any
#: size up to :data:`MAX_DIGEST`).
HASHES: dict[int, tuple[str, int | None]] = {
    0x00: ("identity", None),
    0x11: ("sha1", 20),
    0x12: ("sha2-256", 32),
    0x13: ("sha2-512", 64),
    0x14: ("sha3-512", 64),
    0x15: ("sha3-384", 48),
    0x16: ("sha3-256", 32),
    0x17: ("sha3-224", 28),
    0x1B: ("keccak-256", 32),
    0x1E: ("blake3", None),
    0x1012: ("sha2-256-trunc254-padded", 32),
    0xB220: ("blake2b-256", 32),
    0xB240: ("blake2b-512", 64),
    0xB260: ("blake2s-256", 32),
}


class InvalidCid(InputError):
    """Text or bytes that are not a valid CID: an
    :class:`~guts.errors.InputError` (so a :class:`ValueError`, the way
    ``int("x")`` is), since CIDs come from what a person wrote."""


# -- multibase -----------------------------------------------------------------

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64URL = _B64[:62] + "-_"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class _Base:
    name: str
    alphabet: str
    bits: int = 0  # bits per character for RFC 4648 bases; 0: a big-number base
    padded: bool = False


_BASES: dict[str, _Base] = {
    "f": _Base("base16", "0123456789abcdef", 4),
    "F": _Base("base16upper", "0123456789ABCDEF", 4),
    "b": _Base("base32", _B32, 5),
    "B": _Base("base32upper", _B32.upper(), 5),
    "c": _Base("base32pad", _B32, 5, padded=True),
    "C": _Base("base32padupper", _B32.upper(), 5, padded=True),
    "k": _Base("base36", _B36),
    "K": _Base("base36upper", _B36.upper()),
    "z": _Base("base58btc", _B58),
    "m": _Base("base64", _B64, 6),
    "M": _Base("base64pad", _B64, 6, padded=True),
    "u": _Base("base64url", _B64URL, 6),
    "U": _Base("base64urlpad", _B64URL, 6, padded=True),
}
#: Multibases read and written, by prefix (multiformats/multibase).
MULTIBASES: dict[str, str] = {prefix: base.name for prefix, base in _BASES.items()}
_BY_NAME = {name: prefix for prefix, name in MULTIBASES.items()}


def _rfc4648_decode(body: str, base: _Base) -> bytes:
    """Decode strictly, as js multiformats does: no stray padding, no
    leftover bits (a non-canonical text is not the same CID written twice)."""
    if base.padded:
        stripped = body.rstrip("=")
        block = {4: 1, 5: 8, 6: 4}[base.bits]
        if len(body) % block or len(body) - len(stripped) >= block:
            raise InvalidCid(f"bad {base.name} padding")
        body = stripped
    out = bytearray()
    buffer = bits = 0
    for char in body:
        value = base.alphabet.find(char)
        if value < 0:
            raise InvalidCid(f"{char!r} is not a {base.name} character")
        buffer = ((buffer << base.bits) | value) & 0xFFFF
        bits += base.bits
        if bits >= 8:
            bits -= 8
            out.append((buffer >> bits) & 0xFF)
    if bits >= base.bits or buffer & ((1 << bits) - 1):
        raise InvalidCid(f"not canonical {base.name}: the text ends mid-byte")
    return bytes(out)


def _rfc4648_encode(data: bytes, base: _Base) -> str:
    out = []
    buffer = bits = 0
    for byte in data:
        buffer = ((buffer << 8) | byte) & 0xFFFF
        bits += 8
        while bits >= base.bits:
            bits -= base.bits
            out.append(base.alphabet[(buffer >> bits) & ((1 << base.bits) - 1)])
    if bits:
        out.append(base.alphabet[(buffer << (base.bits - bits)) & ((1 << base.bits) - 1)])
    if base.padded:
        block = {4: 1, 5: 8, 6: 4}[base.bits]
        out.append("=" * (-len(out) % block))
    return "".join(out)


def _bignum_decode(body: str, base: _Base) -> bytes:
    """base36 and base58 (base-x): a big number, each leading zero digit a zero byte."""
    radix = len(base.alphabet)
    value = 0
    for char in body:
        digit = base.alphabet.find(char)
        if digit < 0:
            raise InvalidCid(f"{char!r} is not a {base.name} character")
        value = value * radix + digit
    zeros = len(body) - len(body.lstrip(base.alphabet[0]))
    return bytes(zeros) + (value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b"")


def _bignum_encode(data: bytes, base: _Base) -> str:
    radix = len(base.alphabet)
    zeros = len(data) - len(data.lstrip(b"\0"))
    value = int.from_bytes(data, "big")
    digits = []
    while value:
        value, digit = divmod(value, radix)
        digits.append(base.alphabet[digit])
    return base.alphabet[0] * zeros + "".join(reversed(digits))


def _multibase_decode(text: str) -> bytes:
    base = _BASES.get(text[:1])
    if base is None:
        raise InvalidCid(f"no multibase this parser reads starts with {text[:1]!r}")
    body = text[1:]
    return _rfc4648_decode(body, base) if base.bits else _bignum_decode(body, base)


# -- varints and multihashes ---------------------------------------------------


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """A minimal unsigned varint of at most 9 bytes (the multiformats bound)."""
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            raise InvalidCid("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise InvalidCid("non-minimal varint")
            return value, pos + i + 1
    raise InvalidCid("varint longer than 9 bytes")


def _uvarint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _check_multihash(data: bytes) -> int:
    """Validate ``data`` as one multihash; return its hash function code."""
    code, pos = _uvarint(data, 0)
    length, pos = _uvarint(data, pos)
    present = len(data) - pos
    name, size = HASHES.get(code, (f"hash function 0x{code:x}", None))
    if length != present:
        raise InvalidCid(f"the multihash says its {name} digest is {length} bytes, but {present} follow")
    if length > MAX_DIGEST:
        raise InvalidCid(f"a {length}-byte digest is longer than {MAX_DIGEST} bytes")
    if size is not None and length != size:
        raise InvalidCid(f"a {name} digest is {size} bytes, not {length}")
    return code


# -- CIDs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cid:
    """A validated CID.

    Args:
        version: 0 or 1.
        codec: the content's multicodec (dag-pb, 0x70, for every version 0).
        multihash: the content's multihash; also its DHT key.

    Raises:
        InvalidCid: the parts do not make a CID.
    """

    version: int
    codec: int
    multihash: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise InvalidCid(f"CID version {self.version} is not defined (0 and 1 are)")
        if not 0 <= self.codec < 1 << 63:
            raise InvalidCid(f"codec {self.codec} is out of range")
        code = _check_multihash(self.multihash)
        if self.version == 0 and (self.codec != _V0_CODEC or code != _SHA2_256):
            raise InvalidCid("a CID v0 is a dag-pb sha2-256 CID")

    @classmethod
    def decode(cls, data: bytes) -> Cid:
        """Parse the binary form: a 34-byte sha2-256 multihash for version 0,
        ``varint(1) varint(codec) multihash`` for version 1.

        Raises:
            InvalidCid: ``data`` is neither.
        """
        if data[:2] == bytes((_SHA2_256, 32)):
            return cls(0, _V0_CODEC, bytes(data))
        version, pos = _uvarint(data, 0)
        if version != 1:
            raise InvalidCid(f"CID version {version} is not defined" if version > 1 else "not a CID")
        codec, pos = _uvarint(data, pos)
        return cls(1, codec, bytes(data[pos:]))

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse a CID's text: ``Qm…`` (version 0, base58btc) or a version 1
        in any base of :data:`MULTIBASES`.

        Raises:
            InvalidCid: ``text`` is not one.
        """
        try:
            return _parse(text)
        except InvalidCid as exc:
            raise InvalidCid(f"{_shown(text)} is not a CID: {exc}") from None

    def to_bytes(self) -> bytes:
        """The binary form."""
        if self.version == 0:
            return self.multihash
        return _uvarint_bytes(1) + _uvarint_bytes(self.codec) + self.multihash

    def encode(self, base: str = "base32") -> str:
        """The text form in ``base`` (a name in :data:`MULTIBASES`, such as
        ``base58btc``); a version 0 CID is always its bare base58btc.

        Raises:
            ValueError: no such base.
        """
        if self.version == 0:
            return _bignum_encode(self.multihash, _BASES["z"])
        prefix = _BY_NAME.get(base)
        if prefix is None:
            raise ValueError(f"unknown multibase {base!r}; one of {', '.join(_BY_NAME)}")
        spec = _BASES[prefix]
        data = self.to_bytes()
        return prefix + (_rfc4648_encode(data, spec) if spec.bits else _bignum_encode(data, spec))

    @property
    def codec_name(self) -> str:
        return CODECS.get(self.codec, f"codec 0x{self.codec:x}")

    @property
    def hash_name(self) -> str:
        code, _ = _uvarint(self.multihash, 0)
        return HASHES.get(code, (f"hash function 0x{code:x}", None))[0]

    def __str__(self) -> str:
        return self.encode()


def recognize_cid(text: str) -> Cid | None:
    """The CID ``text`` is, or ``None`` when it is no CID but a string.

    Every valid CID text is a CID. Text that does not parse is a string,
    unless it is plainly a CID gone wrong (a truncated copy, a mistyped
    character): at least :data:`MIN_MEANT` characters long, and either
    ``Qm`` followed by letters and digits only (the shape of a version 0),
    or a multibase prefix followed by text whose first bytes are a version 1
    header: a codec of :data:`CODECS`, a hash function of :data:`HASHES`
    and that function's digest size, read with at most two characters
    outside the base's alphabet (for base36 and base58, also once up to two
    characters are added or dropped: there a lost character changes every
    byte). No name a person picks begins with such bytes by chance
    (about one random string in a million does), while every CID kubo or js
    prints does; a mistyped CID is then an error rather than a lookup of a
    key nobody uses.

    Raises:
        InvalidCid: ``text`` is plainly meant as a CID but is not a valid one.
    """
    try:
        return _parse(text)
    except InvalidCid as exc:
        meant = _meant_as_cid(text)
        if meant is None:
            return None
        raise InvalidCid(f"{_shown(text)} looks like a CID but is not one: {meant or exc}") from None


def _parse(text: str) -> Cid:
    if not isinstance(text, str) or not text:
        raise InvalidCid("the text is empty")
    if len(text) > MAX_TEXT:
        raise InvalidCid(f"longer than {MAX_TEXT} characters")
    if not text.isascii():
        raise InvalidCid("not ASCII")
    if text.startswith("Qm"):
        if len(text) != 46:
            raise InvalidCid(f"a CID v0 (Qm...) is 46 characters, not {len(text)}")
        return Cid(0, _V0_CODEC, _bignum_decode(text, _BASES["z"]))
    cid = Cid.decode(_multibase_decode(text))
    if cid.version == 0:
        raise InvalidCid("a CID v0 is written without a multibase prefix, as Qm...")
    return cid


def _shown(text: object) -> str:
    if isinstance(text, str) and len(text) > 80:
        return repr(text[:77] + "...")
    return repr(text)


def _meant_as_cid(text: str) -> str | None:
    """Whether ``text`` (no valid CID) is plainly meant as one: ``None`` if
    not, else what went wrong when the strict parser cannot say it better
    (``""`` when it can)."""
    if not MIN_MEANT <= len(text) <= MAX_TEXT or not text.isascii():
        return None
    if text.startswith("Qm"):
        return "" if text.isalnum() else None
    if text.startswith("zQm") and len(text) == 47:
        return ""
    base = _BASES.get(text[0])
    if base is None:
        return None
    body = text[1:].rstrip("=") if base.padded else text[1:]
    if sum(c not in base.alphabet for c in body) > 2:
        return None  # more than typos
    if _is_cid_header(_header_bytes(body, base)):
        return ""
    if base.bits:
        return None
    # In base36 and base58 a lost or extra character changes every byte.
    zero = base.alphabet[0]
    if any(_is_cid_header(_header_bytes(b, base)) for b in (body + zero, body + zero * 2, body[:-1], body[:-2])):
        return f"{base.name} text of the wrong length (a character lost or one too many?)"
    return None


def _is_cid_header(header: bytes) -> bool:
    """Whether ``header`` starts as a version 1 CID does: a codec of
    :data:`CODECS`, a hash function of :data:`HASHES` and its digest size
    (32 for blake3; identity, for inline data, is not typed by hand)."""
    try:
        version, pos = _uvarint(header, 0)
        codec, pos = _uvarint(header, pos)
        code, pos = _uvarint(header, pos)
        length, pos = _uvarint(header, pos)
    except InvalidCid:
        return False
    size = HASHES.get(code, ("", 0))[1] if code else 0
    return version == 1 and codec in CODECS and length == (size or 32 if size is None else size)


def _header_bytes(body: str, base: _Base) -> bytes:
    """The first bytes ``body`` stands for, read leniently: a character
    outside the alphabet counts as the zero digit, and a partial last byte
    is ignored. Enough to see a CID's header through a typo."""
    if base.bits:
        body = body[:16]
    cleaned = "".join(c if c in base.alphabet else base.alphabet[0] for c in body)
    if not base.bits:
        return _bignum_decode(cleaned, base)[:8]
    out = bytearray()
    buffer = bits = 0
    for char in cleaned:
        buffer = ((buffer << base.bits) | base.alphabet.index(char)) & 0xFFFF
        bits += base.bits
        if bits >= 8:
            bits -= 8
            out.append((buffer >> bits) & 0xFF)
    return bytes(out)
