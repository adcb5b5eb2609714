"""The libp2p TLS certificate: making ours, checking the peer's.

Theory of operation
-------------------
libp2p/specs ``tls/tls.md``: a peer does not sign its TLS certificate with
its host key (which may be of a type no TLS stack signs with). It makes a
fresh certificate key, a self-signed certificate for it, and puts its host
key in the certificate's *libp2p Public Key Extension* (OID
``1.3.6.1.4.1.53594.1.1``)::

    SignedKey ::= SEQUENCE {
      publicKey OCTET STRING,  -- the host key, a libp2p PublicKey protobuf
      signature OCTET STRING   -- host key signs "libp2p-tls-handshake:" ||
    }                          --   the certificate's SubjectPublicKeyInfo DER

TLS proves the peer holds the certificate key (CertificateVerify); the
extension proves the host key vouched for that certificate key. Together
they authenticate the host key, and so the peer id.

Our certificate follows go-libp2p and js-libp2p (``@libp2p/tls``), the
implementations Guts meets on the wire:

* the certificate key is ECDSA P-256, signed with SHA-256. It is what both
  generate (and rust-libp2p too), every TLS 1.3 stack can verify
  ``ecdsa_secp256r1_sha256``, and a signature is ~70 bytes. An Ed25519
  certificate key would be smaller still, but is not universally accepted
  by TLS stacks for certificates;
* valid from an hour ago (clock skew) for 100 years;
* the libp2p extension is the first and only extension, marked critical.
  js-libp2p reads ``extensions[0]`` and nothing else, so the order matters;
  go and rust accept it critical;
* the subject and issuer are empty names, as in the spec's test vectors.

One certificate serves every connection of a host (the spec allows reuse),
so a handshake signs nothing with the host key: :class:`TlsIdentity` holds
it.

Checking a peer's chain (:func:`verify_certificate_chain`), every rule of
the spec, each failure a :class:`CertificateError`: exactly one
certificate; at most :data:`MAX_CERTIFICATE_SIZE` bytes; X.509 v3;
self-signed (issuer is subject, and the signature verifies with the
certificate's own key), with a hash of at least 256 bits; inside its
validity period at ``now`` (passed in, never read from a clock here); no
critical extension but ours that we do not understand; our extension
present exactly once, its ``SignedKey`` well formed DER, its host key an
Ed25519 key (other types raise :class:`UnsupportedHostKey`), and its
signature valid. Explicit elliptic-curve parameters ("Whose Curve Is It
Anyway") are refused by ``cryptography`` itself when the key is loaded.

Nothing here imports trio.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ObjectIdentifier

from guts.crypto import KeyPair, PublicKey, UnsupportedKeyType
from guts.errors import DecodeError, PeerIdMismatch
from guts.peer import PeerId
from guts.security.tls._errors import CertificateError, UnsupportedHostKey

__all__ = [
    "EXTENSION_OID",
    "MAX_CERTIFICATE_SIZE",
    "SIGNING_PREFIX",
    "TlsIdentity",
    "encode_signed_key",
    "make_certificate",
    "verify_certificate",
    "verify_certificate_chain",
]

#: The libp2p Public Key Extension, allocated by IANA to libp2p.
EXTENSION_OID = ObjectIdentifier("1.3.6.1.4.1.53594.1.1")
#: What the host key signs, followed by the certificate key's SPKI DER.
SIGNING_PREFIX = b"libp2p-tls-handshake:"
#: A libp2p certificate is ~400 bytes; this leaves room for any host key
#: type (RSA included) while bounding what we hand to the X.509 parser.
MAX_CERTIFICATE_SIZE = 16 * 1024
#: How far back ``not_before`` is set: a peer whose clock runs behind ours
#: must still find the certificate valid (go-libp2p and js-libp2p: 1 hour).
VALID_BEFORE = datetime.timedelta(hours=1)
#: How long the certificate stays valid (go-libp2p and js-libp2p: ~100 years).
VALID_FOR = datetime.timedelta(days=100 * 365)
#: The SignedKey value is bounded by the certificate; its two fields more so.
_MAX_HOST_KEY = 2048
_MAX_SIGNATURE = 1024

_BAD_CERTIFICATE = 42
_UNSUPPORTED_CERTIFICATE = 43
_CERTIFICATE_EXPIRED = 45
_DECODE_ERROR = 50

#: Hashes too short to sign a certificate with (the spec: under 256 bits,
#: MD5 and SHA-1 in particular).
_WEAK_HASHES = (hashes.MD5, hashes.SHA1, hashes.SHA224, hashes.SHA512_224)


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _der(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(content)) + content


def encode_signed_key(host_key: bytes, signature: bytes) -> bytes:
    """The DER ``SignedKey`` of the extension: two OCTET STRINGs in a SEQUENCE."""
    return _der(0x30, _der(0x04, host_key) + _der(0x04, signature))


def _read_der(data: bytes, pos: int, tag: int, what: str) -> tuple[bytes, int]:
    """One DER element of type ``tag`` at ``pos``: its content and the end.

    Definite, minimal lengths only (DER), at most 4 length bytes, and never
    past the end of ``data``.
    """
    if pos + 2 > len(data):
        raise CertificateError(f"libp2p extension: {what} is truncated", _DECODE_ERROR)
    if data[pos] != tag:
        raise CertificateError(f"libp2p extension: {what} has tag {data[pos]:#04x}, not {tag:#04x}", _DECODE_ERROR)
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + count > len(data):
            raise CertificateError(f"libp2p extension: {what} has a bad length", _DECODE_ERROR)
        size = int.from_bytes(data[pos : pos + count], "big")
        if size < 0x80 or data[pos] == 0:
            raise CertificateError(f"libp2p extension: {what} length is not minimal DER", _DECODE_ERROR)
        pos += count
    end = pos + size
    if end > len(data):
        raise CertificateError(f"libp2p extension: {what} runs past its end", _DECODE_ERROR)
    return data[pos:end], end


def decode_signed_key(value: bytes) -> tuple[bytes, bytes]:
    """Parse the extension value: ``(host key protobuf, signature)``.

    Raises:
        CertificateError: not exactly a DER SEQUENCE of two OCTET STRINGs
            of sane sizes.
    """
    body, end = _read_der(value, 0, 0x30, "SignedKey")
    if end != len(value):
        raise CertificateError("libp2p extension: bytes after SignedKey", _DECODE_ERROR)
    host_key, pos = _read_der(body, 0, 0x04, "publicKey")
    signature, pos = _read_der(body, pos, 0x04, "signature")
    if pos != len(body):
        raise CertificateError("libp2p extension: SignedKey has more than two fields", _DECODE_ERROR)
    if not 0 < len(host_key) <= _MAX_HOST_KEY or not 0 < len(signature) <= _MAX_SIGNATURE:
        raise CertificateError("libp2p extension: publicKey or signature of an impossible size", _DECODE_ERROR)
    return host_key, signature


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_certificate(
    keypair: KeyPair,
    *,
    now: datetime.datetime,
    certificate_key: ec.EllipticCurvePrivateKey | None = None,
    serial: int | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Make the self-signed libp2p certificate of ``keypair``.

    Args:
        keypair: the host identity the certificate vouches for.
        now: the current time (timezone-aware).
        certificate_key: the P-256 certificate key; a fresh one by default.
        serial: the serial number; 63 random bits by default.
        not_before, not_after: the validity period; by default from
            :data:`VALID_BEFORE` before ``now`` for :data:`VALID_FOR`.

    Returns:
        The certificate and its private key.

    With a fixed ``certificate_key`` the extension bytes are fixed too
    (Ed25519 signatures are deterministic); the certificate's own ECDSA
    signature is not.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    key = certificate_key if certificate_key is not None else ec.generate_private_key(ec.SECP256R1())
    if serial is None:
        serial = int.from_bytes(os.urandom(8), "big") >> 1 or 1
    host_key = keypair.public_key.to_protobuf()
    signature = keypair.sign(SIGNING_PREFIX + _spki(key.public_key()))
    name = x509.Name([])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before if not_before is not None else now - VALID_BEFORE)
        .not_valid_after(not_after if not_after is not None else now + VALID_FOR)
        .add_extension(x509.UnrecognizedExtension(EXTENSION_OID, encode_signed_key(host_key, signature)), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """Who we are in TLS: the host key pair, and the certificate (and its
    key) that vouches for it, shared by every connection of a host.

    Built with :meth:`generate`; tests build one from a crafted certificate
    to see how a peer refuses it.

    Args:
        keypair: the host identity.
        certificate: our certificate.
        private_key: the certificate's key, which signs CertificateVerify.
    """

    keypair: KeyPair
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls, keypair: KeyPair, *, now: datetime.datetime | None = None) -> TlsIdentity:
        """Make a fresh certificate key and certificate for ``keypair``.

        Args:
            keypair: the host identity.
            now: the current time; the system clock by default.
        """
        if now is None:
            now = datetime.datetime.now(datetime.UTC)
        certificate, key = make_certificate(keypair, now=now)
        return cls(keypair, certificate, key)


def _check_signature_hash(certificate: x509.Certificate) -> None:
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise CertificateError(f"certificate signed with an unsupported algorithm: {exc}", _UNSUPPORTED_CERTIFICATE) from None
    if isinstance(algorithm, _WEAK_HASHES):
        raise CertificateError(f"certificate signed with {algorithm.name}, a hash under 256 bits", _BAD_CERTIFICATE)


def _libp2p_extension(certificate: x509.Certificate) -> bytes:
    """The value of the libp2p extension; refuses unknown critical ones."""
    try:
        extensions = certificate.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CertificateError(f"certificate extensions do not parse: {exc}", _BAD_CERTIFICATE) from None
    value: bytes | None = None
    for extension in extensions:
        if isinstance(extension.value, x509.UnrecognizedExtension):
            if extension.oid == EXTENSION_OID:
                value = extension.value.value
            elif extension.critical:
                raise CertificateError(
                    f"certificate has a critical extension we do not understand ({extension.oid.dotted_string})",
                    _UNSUPPORTED_CERTIFICATE,
                )
    if value is None:
        raise CertificateError("certificate lacks the libp2p Public Key Extension", _BAD_CERTIFICATE)
    return value


def verify_certificate(der: bytes, *, now: datetime.datetime) -> PublicKey:
    """Check one libp2p certificate; return the host key it authenticates.

    Args:
        der: the certificate, DER encoded.
        now: the current time (timezone-aware).

    Raises:
        CertificateError: the certificate breaks a rule of the spec (see
            the module docstring).
        UnsupportedHostKey: it names a host key that is not Ed25519.
    """
    if len(der) > MAX_CERTIFICATE_SIZE:
        raise CertificateError(f"certificate of {len(der)} bytes, over {MAX_CERTIFICATE_SIZE}", _BAD_CERTIFICATE)
    try:
        certificate = x509.load_der_x509_certificate(bytes(der))
        if certificate.version is not x509.Version.v3:
            raise CertificateError("certificate is not X.509 v3", _BAD_CERTIFICATE)
        # Parsed on first use, and refused then: a time of year 0, say.
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except (ValueError, x509.InvalidVersion) as exc:
        raise CertificateError(f"certificate does not parse: {exc}", _BAD_CERTIFICATE) from None
    if now < not_before:
        raise CertificateError(f"certificate is not valid before {not_before.isoformat()}", _BAD_CERTIFICATE)
    if now > not_after:
        raise CertificateError(f"certificate expired at {not_after.isoformat()}", _CERTIFICATE_EXPIRED)
    _check_signature_hash(certificate)
    try:
        certificate_key = certificate.public_key()
        certificate.verify_directly_issued_by(certificate)
    except InvalidSignature:
        raise CertificateError("certificate self-signature is not valid", _BAD_CERTIFICATE) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # Issuer is not the subject, an unusable key (explicit curve
        # parameters among them), or a key type that cannot sign.
        raise CertificateError(f"certificate is not validly self-signed: {exc}", _BAD_CERTIFICATE) from None
    host_key_bytes, signature = decode_signed_key(_libp2p_extension(certificate))
    try:
        host_key = PublicKey.from_protobuf(host_key_bytes)
    except UnsupportedKeyType as exc:
        raise UnsupportedHostKey(f"certificate names a host key Guts does not accept: {exc}", host_key_bytes) from None
    except DecodeError as exc:
        raise CertificateError(f"libp2p extension: bad host key: {exc}", _BAD_CERTIFICATE) from None
    if not host_key.verify(SIGNING_PREFIX + _spki(certificate_key), signature):
        raise CertificateError("libp2p extension: the host key's signature is not valid", _BAD_CERTIFICATE)
    return host_key


def verify_certificate_chain(
    chain: Sequence[bytes], *, now: datetime.datetime, expected_peer: PeerId | None = None
) -> PeerId:
    """Check the certificate chain a peer presented; return its peer id.

    Args:
        chain: the certificates of the TLS Certificate message, DER.
        now: the current time (timezone-aware).
        expected_peer: who we meant to reach, if we know.

    Raises:
        CertificateError: the chain is not exactly one valid libp2p
            certificate.
        UnsupportedHostKey: its host key is not Ed25519.
        PeerIdMismatch: it authenticates someone other than ``expected_peer``.
    """
    if len(chain) != 1:
        raise CertificateError(f"expected exactly one certificate, got {len(chain)}", _BAD_CERTIFICATE)
    peer = verify_certificate(chain[0], now=now).peer_id
    if expected_peer is not None and peer != expected_peer:
        raise PeerIdMismatch(f"dialled {expected_peer}, but the certificate authenticates {peer}")
    return peer
