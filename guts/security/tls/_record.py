"""The TLS 1.3 record layer (RFC 8446 §5), sans-IO.

Theory of operation
-------------------
On a byte stream, TLS travels in records::

    type (1) | legacy_record_version (2, 0x0303) | length (2) | fragment

Until the first keys exist (ClientHello, ServerHello), records are
plaintext ``TLSPlaintext``: ``type`` is handshake (22), alert (21) or a
dummy change_cipher_spec (20) that middlebox-compatible peers send and
every receiver ignores. From then on every record is a ``TLSCiphertext``
of outer type application_data (23)::

    fragment = AEAD(key, nonce, plaintext || real type || zero padding,
                    additional data = the 5-byte header)

The nonce is the ``iv`` XORed with the record's 64-bit sequence number
(left-padded to the iv length); the sequence restarts at 0 under every new
key. ``key`` and ``iv`` come from a traffic secret by HKDF-Expand-Label
(labels ``"key"`` and ``"iv"``, RFC 8446 §7.3), and KeyUpdate moves a secret
on with the label ``"traffic upd"`` (§7.2). :class:`RecordKeys` is one
direction's protection under one secret; :class:`RecordReader` splits a
byte stream into records without ever holding more than one record plus
one read.

Limits (§5.1, §5.2): a plaintext fragment is at most 2^14 bytes, a
ciphertext fragment at most 2^14 + 256; a longer record is refused with
``record_overflow`` before its bytes are even buffered.

Nothing here imports trio.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from aioquic.tls import CipherSuite, hkdf_expand_label
from guts.security.tls._errors import TlsError

__all__ = [
    "ALERT",
    "APPLICATION_DATA",
    "CHANGE_CIPHER_SPEC",
    "HANDSHAKE",
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "RecordKeys",
    "RecordReader",
    "plaintext_records",
]

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23

#: The largest fragment a record may carry in plaintext (RFC 8446 §5.1).
MAX_PLAINTEXT = 1 << 14
#: The largest encrypted fragment (§5.2): plaintext, type, padding, tag.
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256
HEADER_SIZE = 5
TAG_SIZE = 16

_RECORD_OVERFLOW = 22
_BAD_RECORD_MAC = 20
_DECODE_ERROR = 50
_UNEXPECTED_MESSAGE = 10

#: key length and hash of each TLS 1.3 cipher suite we offer.
_SUITES: dict[int, tuple[int, type[hashes.HashAlgorithm]]] = {
    CipherSuite.AES_128_GCM_SHA256: (16, hashes.SHA256),
    CipherSuite.AES_256_GCM_SHA384: (32, hashes.SHA384),
    CipherSuite.CHACHA20_POLY1305_SHA256: (32, hashes.SHA256),
}

#: A sequence number may not wrap (§5.3); a key update comes long before.
_MAX_SEQUENCE = (1 << 64) - 1


def _header(content_type: int, size: int) -> bytes:
    return bytes((content_type, 3, 3, size >> 8, size & 0xFF))


def plaintext_records(content_type: int, data: bytes) -> bytes:
    """``data`` as unprotected records (before any key exists)."""
    out = bytearray()
    for start in range(0, len(data), MAX_PLAINTEXT):
        chunk = data[start : start + MAX_PLAINTEXT]
        out += _header(content_type, len(chunk))
        out += chunk
    return bytes(out)


class RecordKeys:
    """One direction's record protection under one traffic secret.

    Args:
        cipher_suite: the negotiated TLS 1.3 cipher suite.
        secret: the traffic secret of this direction.
    """

    __slots__ = ("_aead", "_iv", "cipher_suite", "secret", "sequence")

    def __init__(self, cipher_suite: int, secret: bytes) -> None:
        try:
            key_size, hash_type = _SUITES[cipher_suite]
        except KeyError:
            raise TlsError(f"cipher suite {cipher_suite:#06x} is not supported", 40) from None
        algorithm = hash_type()
        key = hkdf_expand_label(algorithm, secret, b"key", b"", key_size)
        self._iv = int.from_bytes(hkdf_expand_label(algorithm, secret, b"iv", b"", 12), "big")
        self._aead: AESGCM | ChaCha20Poly1305 = (
            ChaCha20Poly1305(key) if cipher_suite == CipherSuite.CHACHA20_POLY1305_SHA256 else AESGCM(key)
        )
        self.cipher_suite = cipher_suite
        self.secret = secret
        self.sequence = 0

    def updated(self) -> RecordKeys:
        """The keys after a KeyUpdate (RFC 8446 §7.2)."""
        _, hash_type = _SUITES[self.cipher_suite]
        algorithm = hash_type()
        secret = hkdf_expand_label(algorithm, self.secret, b"traffic upd", b"", algorithm.digest_size)
        return RecordKeys(self.cipher_suite, secret)

    def _nonce(self) -> bytes:
        sequence = self.sequence
        if sequence >= _MAX_SEQUENCE:
            raise TlsError("record sequence number exhausted", 80)
        self.sequence = sequence + 1
        return (self._iv ^ sequence).to_bytes(12, "big")

    def seal(self, content_type: int, data: bytes | bytearray | memoryview) -> bytes:
        """Protect one record of at most :data:`MAX_PLAINTEXT` bytes."""
        inner = bytes(data) + bytes((content_type,))
        header = _header(APPLICATION_DATA, len(inner) + TAG_SIZE)
        return header + self._aead.encrypt(self._nonce(), inner, header)

    def seal_all(self, content_type: int, data: bytes | bytearray | memoryview) -> bytes:
        """Protect ``data`` of any size, as full records and one shorter last."""
        with memoryview(data) as view:
            return b"".join(
                [self.seal(content_type, view[start : start + MAX_PLAINTEXT]) for start in range(0, len(view), MAX_PLAINTEXT)]
            )

    def open(self, header: bytes, fragment: bytes | memoryview) -> tuple[int, bytes]:
        """Remove the protection of one record.

        Returns:
            The real content type and the content, padding removed.

        Raises:
            TlsError: the record fails authentication (``bad_record_mac``),
                or carries no content type (all padding).
        """
        try:
            inner = self._aead.decrypt(self._nonce(), fragment, header)
        except InvalidTag:
            raise TlsError("a TLS record failed authentication", _BAD_RECORD_MAC) from None
        if inner and inner[-1]:  # no padding: the usual case
            return inner[-1], inner[:-1]
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise TlsError("a TLS record has no content type", _UNEXPECTED_MESSAGE)
        if len(stripped) - 1 > MAX_PLAINTEXT:
            raise TlsError("a TLS record's plaintext is over 2^14 bytes", _RECORD_OVERFLOW)
        return stripped[-1], stripped[:-1]


class RecordReader:
    """Splits the bytes of a stream into records.

    Holds at most one incomplete record (and the rest of one read); a
    header announcing more than :data:`MAX_CIPHERTEXT` bytes is refused at
    once.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes]]:
        """Add bytes; return the complete records as ``(header, fragment)``.

        Raises:
            TlsError: a header that is not TLS (``decode_error``) or a
                record over the size limit (``record_overflow``).
        """
        buffer = self._buffer
        buffer += data
        records: list[tuple[bytes, bytes]] = []
        pos = 0
        end = len(buffer)
        while end - pos >= HEADER_SIZE:
            if buffer[pos + 1] != 3:
                raise TlsError("bytes that are not a TLS record", _DECODE_ERROR)
            size = (buffer[pos + 3] << 8) | buffer[pos + 4]
            if size > MAX_CIPHERTEXT:
                raise TlsError(f"a TLS record of {size} bytes, over {MAX_CIPHERTEXT}", _RECORD_OVERFLOW)
            stop = pos + HEADER_SIZE + size
            if stop > end:
                break
            records.append((bytes(buffer[pos : pos + HEADER_SIZE]), bytes(buffer[pos + HEADER_SIZE : stop])))
            pos = stop
        if pos:
            del buffer[:pos]
        return records
