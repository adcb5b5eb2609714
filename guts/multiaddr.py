"""Multiaddr: self-describing network addresses, text and binary forms.

A multiaddr is a sequence of ``(protocol, value)`` components, written as
``/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...`` and sent on the wire as
``<varint code><value>`` pairs (``047f000001060fa1...``). The spec lives in
``multiformats/multiaddr``; the codes come from the multicodec table.

Why hand-written: the PyPI ``multiaddr`` package pulls in pydantic, psutil,
dnspython, netaddr and py-cid and costs tens of milliseconds of import
time, while Guts needs a handful of protocols and a fast ``import guts``.

Theory of operation:

* Every multiaddr is held in canonical form. Parsing text runs each value
  through its codec, which returns both the binary value and the canonical
  text (IPv6 compressed, ports without leading zeros, ``/ipfs/`` and CIDv1
  peer ids rewritten to ``/p2p/<base58btc multihash>``). Hence two
  multiaddrs are equal exactly when their binary forms are equal, and
  ``parse(str(m)) == m`` and ``from_bytes(m.to_bytes()) == m`` always hold.
* Binary input usually comes from the network (identify, DHT records), so
  :meth:`Multiaddr.from_bytes` is bounded: a total size cap, per-value
  caps, minimal varints only, and every failure is an
  :class:`InvalidMultiaddrBytes`, which is a :class:`~guts.errors.DecodeError`.
  Text comes from people (flags, config files): its failures are
  :class:`InvalidMultiaddrText`, an :class:`~guts.errors.InputError`. Both
  are :class:`InvalidMultiaddr` and ``ValueError``.
* Unknown protocol codes are rejected rather than skipped: their value
  size is unknown, so nothing after them could be decoded either.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import base58

from guts.errors import DecodeError, GutsError, InputError

__all__ = [
    "Component",
    "InvalidMultiaddr",
    "InvalidMultiaddrBytes",
    "InvalidMultiaddrText",
    "Multiaddr",
    "MAX_BINARY_SIZE",
    "MAX_TEXT_SIZE",
]

#: Largest binary multiaddr :meth:`Multiaddr.from_bytes` accepts. The
#: longest realistic address (a relayed DNS address with two peer ids) is
#: about 350 bytes.
MAX_BINARY_SIZE = 1024
#: Largest text multiaddr :meth:`Multiaddr.parse` accepts.
MAX_TEXT_SIZE = 4096
#: Largest value of a length-prefixed component (a DNS name is <= 253).
_MAX_VALUE_SIZE = 255
#: Largest peer id multihash (an identity-hashed key is at most 42 bytes,
#: a sha2-256 one 34; the cap only bounds hostile input).
_MAX_MULTIHASH_SIZE = 128
#: multicodec code of a libp2p public key CID (``/p2p/bafz...``).
_LIBP2P_KEY_CODEC = 0x72


class InvalidMultiaddr(GutsError, ValueError):
    """A multiaddr could not be parsed or decoded: one of the two below."""


class InvalidMultiaddrBytes(InvalidMultiaddr, DecodeError):
    """A binary multiaddr is malformed: remote input (identify, DHT peer
    records), so a :class:`~guts.errors.DecodeError`."""


class InvalidMultiaddrText(InvalidMultiaddr, InputError):
    """A text multiaddr is malformed: what a person wrote (a flag, a
    config file), so an :class:`~guts.errors.InputError`."""


class Component(NamedTuple):
    """One ``/protocol/value`` step of a multiaddr.

    Attributes:
        protocol: canonical protocol name (``"ip4"``, ``"p2p"``, ...).
        value: canonical text of the value, ``None`` for protocols that
            carry none (``ws``, ``p2p-circuit``, ...).
    """

    protocol: str
    value: str | None


# --------------------------------------------------------------------------
# unsigned varint (multiformats/unsigned-varint: minimal, at most 9 bytes)


def _encode_uvarint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _decode_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return ``(value, next_pos)``."""
    result = 0
    shift = 0
    for i in range(9):
        if pos >= len(data):
            raise InvalidMultiaddr("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise InvalidMultiaddr("non-minimal varint")
            return result, pos
        shift += 7
    raise InvalidMultiaddr("varint longer than 9 bytes")


# --------------------------------------------------------------------------
# value codecs: text -> (binary, canonical text) and binary -> text


def _ip4_from_text(text: str) -> tuple[bytes, str]:
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidMultiaddr(f"invalid IPv4 address {text!r}") from None
    return addr.packed, str(addr)


def _ip4_to_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _ip6_text(addr: ipaddress.IPv6Address) -> str:
    # Python < 3.13 prints ::ffff:1.2.3.4 as ::ffff:102:304; go-multiaddr
    # and newer Pythons print the dotted form, so pin that.
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return f"::ffff:{mapped}"
    return addr.compressed


def _ip6_from_text(text: str) -> tuple[bytes, str]:
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidMultiaddr(f"invalid IPv6 address {text!r}") from None
    if addr.scope_id is not None:
        raise InvalidMultiaddr(f"IPv6 zone not allowed in /ip6/ (use /ip6zone/): {text!r}")
    return addr.packed, _ip6_text(addr)


def _ip6_to_text(raw: bytes) -> str:
    return _ip6_text(ipaddress.IPv6Address(raw))


def _decimal(text: str, limit: int, what: str) -> int:
    # int() alone would accept " 1", "+1", "1_0" and non-ASCII digits.
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):
        raise InvalidMultiaddr(f"invalid {what} {text!r}")
    value = int(text)
    if value > limit:
        raise InvalidMultiaddr(f"{what} out of range: {text!r}")
    return value


def _port_from_text(text: str) -> tuple[bytes, str]:
    port = _decimal(text, 0xFFFF, "port")
    return port.to_bytes(2, "big"), str(port)


def _port_to_text(raw: bytes) -> str:
    return str(int.from_bytes(raw, "big"))


def _u64_from_text(text: str) -> tuple[bytes, str]:
    value = _decimal(text, 2**64 - 1, "memory address")
    return value.to_bytes(8, "big"), str(value)


_u64_to_text = _port_to_text


def _name_from_text(text: str) -> tuple[bytes, str]:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMultiaddr(f"name value is not encodable as UTF-8: {text!r}") from None
    _name_to_text(raw)
    return raw, text


def _name_to_text(raw: bytes) -> str:
    if not raw:
        raise InvalidMultiaddr("empty name value")
    if len(raw) > _MAX_VALUE_SIZE:
        raise InvalidMultiaddr(f"name longer than {_MAX_VALUE_SIZE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidMultiaddr("name value is not valid UTF-8") from None
    if "/" in text:
        # It could not be written back as text.
        raise InvalidMultiaddr(f"name value contains '/': {text!r}")
    return text


def _check_multihash(raw: bytes) -> None:
    if len(raw) > _MAX_MULTIHASH_SIZE:
        raise InvalidMultiaddr(f"peer id multihash longer than {_MAX_MULTIHASH_SIZE} bytes")
    _code, pos = _decode_uvarint(raw, 0)
    length, pos = _decode_uvarint(raw, pos)
    if len(raw) - pos != length:
        raise InvalidMultiaddr("peer id multihash length does not match its digest")


def _cid_multihash(text: str) -> bytes:
    """The multihash inside a CIDv1 peer id (``bafz...`` or ``z...``)."""
    prefix, body = text[0], text[1:]
    try:
        if prefix == "b" and body == body.lower():
            raw = base64.b32decode(body + "=" * (-len(body) % 8), casefold=True)
        elif prefix == "z":
            raw = base58.b58decode(body)
        else:
            raise InvalidMultiaddr(f"invalid peer id {text!r}: not base58btc or a CIDv1")
    except (ValueError, binascii.Error):
        raise InvalidMultiaddr(f"invalid peer id {text!r}: bad multibase encoding") from None
    version, pos = _decode_uvarint(raw, 0)
    codec, pos = _decode_uvarint(raw, pos)
    if version != 1 or codec != _LIBP2P_KEY_CODEC:
        raise InvalidMultiaddr(f"invalid peer id {text!r}: not a CIDv1 libp2p-key")
    return raw[pos:]


def _p2p_from_text(text: str) -> tuple[bytes, str]:
    if not text or len(text) > 2 * _MAX_MULTIHASH_SIZE:
        raise InvalidMultiaddr(f"invalid peer id {text!r}")
    # As go-libp2p's peer.Decode: ids are base58btc multihashes (sha2-256
    # "Qm...", identity "1...") or CIDv1s. Unlike it, other base58 multihashes
    # are accepted too, so that everything from_bytes prints parses back.
    if not text.startswith(("Qm", "1")):
        try:
            raw = _cid_multihash(text)
            _check_multihash(raw)
            return raw, base58.b58encode(raw).decode("ascii")
        except InvalidMultiaddr as exc:
            cid_error: InvalidMultiaddr | None = exc
    else:
        cid_error = None
    try:
        raw = base58.b58decode(text)
        _check_multihash(raw)
    except (ValueError, InvalidMultiaddr):
        raise (cid_error or InvalidMultiaddr(f"invalid peer id {text!r}: not a base58btc multihash")) from None
    return raw, base58.b58encode(raw).decode("ascii")


def _p2p_to_text(raw: bytes) -> str:
    _check_multihash(raw)
    return base58.b58encode(raw).decode("ascii")


# --------------------------------------------------------------------------
# protocol table


@dataclass(frozen=True, slots=True)
class _Protocol:
    name: str
    code: int
    #: value size in bytes: 0 none, -1 varint length-prefixed, else fixed.
    size: int
    from_text: Callable[[str], tuple[bytes, str]] | None = None
    to_text: Callable[[bytes], str] | None = None


_VAR = -1
_PROTOCOLS = (
    _Protocol("ip4", 4, 4, _ip4_from_text, _ip4_to_text),
    _Protocol("tcp", 6, 2, _port_from_text, _port_to_text),
    _Protocol("udp", 273, 2, _port_from_text, _port_to_text),
    _Protocol("ip6", 41, 16, _ip6_from_text, _ip6_to_text),
    _Protocol("ip6zone", 42, _VAR, _name_from_text, _name_to_text),
    _Protocol("dns", 53, _VAR, _name_from_text, _name_to_text),
    _Protocol("dns4", 54, _VAR, _name_from_text, _name_to_text),
    _Protocol("dns6", 55, _VAR, _name_from_text, _name_to_text),
    _Protocol("dnsaddr", 56, _VAR, _name_from_text, _name_to_text),
    _Protocol("p2p", 421, _VAR, _p2p_from_text, _p2p_to_text),
    _Protocol("ws", 477, 0),
    _Protocol("wss", 478, 0),
    _Protocol("memory", 777, 8, _u64_from_text, _u64_to_text),
    # Value-less protocols found in addresses js/go peers advertise; knowing
    # them lets such addresses round-trip even though Guts cannot dial them.
    _Protocol("p2p-circuit", 290, 0),
    _Protocol("webrtc-direct", 280, 0),
    _Protocol("webrtc", 281, 0),
    _Protocol("tls", 448, 0),
    _Protocol("sni", 449, _VAR, _name_from_text, _name_to_text),
    _Protocol("noise", 454, 0),
    _Protocol("quic", 460, 0),
    _Protocol("quic-v1", 461, 0),
    _Protocol("webtransport", 465, 0),
    _Protocol("https", 443, 0),
    _Protocol("http", 480, 0),
)
_BY_NAME = {p.name: p for p in _PROTOCOLS}
_BY_NAME["ipfs"] = _BY_NAME["p2p"]  # legacy text alias, same code
_BY_CODE = {p.code: p for p in _PROTOCOLS}
_CODE_PREFIX = {p.name: _encode_uvarint(p.code) for p in _PROTOCOLS}


def _protocol_named(name: str) -> _Protocol:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InvalidMultiaddr(f"unknown protocol /{name}/") from None


def _encode_component(proto: _Protocol, value: str | None) -> tuple[bytes, Component]:
    """Binary form and canonical component of one text ``(proto, value)``."""
    if proto.from_text is None:
        if value is not None:
            raise InvalidMultiaddr(f"/{proto.name} takes no value, got {value!r}")
        return _CODE_PREFIX[proto.name], Component(proto.name, None)
    if value is None:
        raise InvalidMultiaddr(f"/{proto.name} needs a value")
    raw, canonical = proto.from_text(value)
    prefix = _CODE_PREFIX[proto.name]
    if proto.size == _VAR:
        prefix += _encode_uvarint(len(raw))
    return prefix + raw, Component(proto.name, canonical)


# --------------------------------------------------------------------------
# the multiaddr


@dataclass(frozen=True, slots=True, eq=False, repr=False, init=False)
class Multiaddr:
    """An immutable, canonical multiaddr.

    Build one with :meth:`parse` (text) or :meth:`from_bytes` (binary), or
    from components: ``Multiaddr([("ip4", "1.2.3.4"), ("tcp", "1")])``.
    Equality and hashing follow the binary form.

    Attributes:
        components: the ``(protocol, value)`` steps, canonical.
    """

    components: tuple[Component, ...]
    _parts: tuple[bytes, ...]
    _binary: bytes

    def __init__(self, components: Iterable[tuple[str, str | None]]) -> None:
        if isinstance(components, (str, bytes, bytearray, memoryview)):
            raise TypeError("use Multiaddr.parse(text) or Multiaddr.from_bytes(data)")
        parts: list[bytes] = []
        canon: list[Component] = []
        for name, value in components:
            part, component = _encode_component(_protocol_named(name), value)
            parts.append(part)
            canon.append(component)
        self._init(tuple(canon), tuple(parts))

    def _init(self, components: tuple[Component, ...], parts: tuple[bytes, ...]) -> None:
        object.__setattr__(self, "components", components)
        object.__setattr__(self, "_parts", parts)
        object.__setattr__(self, "_binary", b"".join(parts))

    @classmethod
    def _make(cls, components: tuple[Component, ...], parts: tuple[bytes, ...]) -> Multiaddr:
        self = object.__new__(cls)
        self._init(components, parts)
        return self

    @classmethod
    def parse(cls, text: str) -> Multiaddr:
        """Parse the text form, e.g. ``/ip4/127.0.0.1/tcp/4001``.

        ``/ipfs/<id>`` and ``/p2p/<CIDv1>`` are accepted and normalised to
        ``/p2p/<base58btc>``; one trailing slash is tolerated.

        Raises:
            InvalidMultiaddrText: naming the offending part.
        """
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        try:
            return cls._parse(text)
        except InvalidMultiaddr as exc:
            raise InvalidMultiaddrText(str(exc)) from None

    @classmethod
    def _parse(cls, text: str) -> Multiaddr:
        if len(text) > MAX_TEXT_SIZE:
            raise InvalidMultiaddr(f"multiaddr text longer than {MAX_TEXT_SIZE} characters")
        if not text.startswith("/"):
            raise InvalidMultiaddr(f"multiaddr must start with '/': {text!r}")
        words = text[1:].split("/")
        if words[-1] == "":
            words.pop()
        if not words:
            raise InvalidMultiaddr("empty multiaddr")
        components: list[Component] = []
        parts: list[bytes] = []
        i = 0
        while i < len(words):
            name = words[i]
            if not name:
                raise InvalidMultiaddr(f"empty protocol name in {text!r}")
            proto = _protocol_named(name)
            value = None
            if proto.size != 0:
                if i + 1 >= len(words):
                    raise InvalidMultiaddr(f"/{name} needs a value in {text!r}")
                value = words[i + 1]
                i += 1
            i += 1
            part, component = _encode_component(proto, value)
            parts.append(part)
            components.append(component)
        return cls._make(tuple(components), tuple(parts))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Multiaddr:
        """Decode the binary form, e.g. from an identify message.

        Raises:
            InvalidMultiaddrBytes: on any malformed, unknown or oversized input.
        """
        try:
            return cls._from_bytes(bytes(data))
        except InvalidMultiaddr as exc:
            raise InvalidMultiaddrBytes(str(exc)) from None

    @classmethod
    def _from_bytes(cls, data: bytes) -> Multiaddr:
        if not data:
            raise InvalidMultiaddr("empty multiaddr")
        if len(data) > MAX_BINARY_SIZE:
            raise InvalidMultiaddr(f"multiaddr longer than {MAX_BINARY_SIZE} bytes")
        components: list[Component] = []
        parts: list[bytes] = []
        pos = 0
        end = len(data)
        while pos < end:
            start = pos
            code, pos = _decode_uvarint(data, pos)
            proto = _BY_CODE.get(code)
            if proto is None:
                raise InvalidMultiaddr(f"unknown protocol code {code}")
            size = proto.size
            if size == _VAR:
                size, pos = _decode_uvarint(data, pos)
                if size > _MAX_VALUE_SIZE:
                    raise InvalidMultiaddr(f"/{proto.name} value longer than {_MAX_VALUE_SIZE} bytes")
            if pos + size > end:
                raise InvalidMultiaddr(f"truncated /{proto.name} value")
            value = None
            if proto.to_text is not None:
                value = proto.to_text(data[pos : pos + size])
            pos += size
            parts.append(data[start:pos])
            components.append(Component(proto.name, value))
        return cls._make(tuple(components), tuple(parts))

    def to_bytes(self) -> bytes:
        """The binary form."""
        return self._binary

    def __bytes__(self) -> bytes:
        return self._binary

    def __str__(self) -> str:
        return "".join(
            f"/{name}" if value is None else f"/{name}/{value}" for name, value in self.components
        )

    def __repr__(self) -> str:
        return f"Multiaddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Multiaddr):
            return self._binary == other._binary
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._binary)

    def protocols(self) -> tuple[str, ...]:
        """Protocol names in order, e.g. ``("ip4", "tcp", "ws")``."""
        return tuple(c.protocol for c in self.components)

    def value_for(self, proto: str) -> str | None:
        """Value of the first ``proto`` component.

        Returns ``None`` when ``proto`` is absent *or* carries no value;
        test ``proto in m.protocols()`` for presence.
        """
        name = _protocol_named(proto).name
        for component in self.components:
            if component.protocol == name:
                return component.value
        return None

    def encapsulate(self, other: Multiaddr | str) -> Multiaddr:
        """``self`` followed by ``other`` (``/ip4/../tcp/1`` + ``/ws``)."""
        if isinstance(other, str):
            other = Multiaddr.parse(other)
        return Multiaddr._make(self.components + other.components, self._parts + other._parts)

    def decapsulate(self, proto: str) -> Multiaddr:
        """Drop the last ``proto`` component and everything after it.

        Returns ``self`` if ``proto`` does not occur; may return an empty
        multiaddr (``str`` is ``""``) if it occurs first.
        """
        name = _protocol_named(proto).name
        for i in range(len(self.components) - 1, -1, -1):
            if self.components[i].protocol == name:
                return Multiaddr._make(self.components[:i], self._parts[:i])
        return self

    @property
    def peer_id(self) -> str | None:
        """Base58btc text of the trailing ``/p2p`` component, if any."""
        if self.components and self.components[-1].protocol == "p2p":
            return self.components[-1].value
        return None

    def without_p2p(self) -> Multiaddr:
        """This address without its trailing ``/p2p/<id>`` (transports dial that)."""
        if self.peer_id is None:
            return self
        return Multiaddr._make(self.components[:-1], self._parts[:-1])

    def with_p2p(self, peer_id: str) -> Multiaddr:
        """This address ending in ``/p2p/<peer_id>``.

        Raises:
            InvalidMultiaddrText: if ``peer_id`` is not a valid peer id, or
                the address already ends with a *different* peer id
                (silently replacing it would hide a mix-up of peers and
                addresses).
        """
        try:
            part, component = _encode_component(_BY_NAME["p2p"], peer_id)
        except InvalidMultiaddr as exc:
            raise InvalidMultiaddrText(str(exc)) from None
        current = self.peer_id
        if current == component.value:
            return self
        if current is not None:
            raise InvalidMultiaddrText(f"{self} already names peer {current}, not {component.value}")
        return Multiaddr._make(self.components + (component,), self._parts + (part,))
