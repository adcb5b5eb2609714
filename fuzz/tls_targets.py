"""Fuzz targets for libp2p TLS (``guts.security.tls``), in the shape of
:mod:`fuzz.targets`: a ``feed`` per decoder, the errors it documents, and
seeds from the project's own encoders.

Theory of operation
-------------------
A TLS handshake draws fresh randomness (randoms, key shares), so only the
bytes a peer sends *before* any key exists reach the decoders the same way
twice. Three targets cover them:

* ``tls_certificate``: a peer's certificate, DER, into
  :func:`~guts.security.tls.verify_certificate` (the X.509 parser, every
  libp2p rule, the ``SignedKey`` DER reader);
* ``tls_client_hello``: the first bytes a server reads (records and the
  ClientHello, cut into reads the first byte sizes), into a responder
  :class:`~guts.security.tls.TlsConnection`;
* ``tls_server_hello``: what a client reads back, into an initiator: the
  ServerHello, then records it cannot decrypt.

What arrives under keys (records, alerts, KeyUpdate, the certificate
inside the encrypted flight) is exercised by the property tests of
``tests/test_tls_stream.py``, which mutate it before it is encrypted.

Each documents :class:`~guts.errors.HandshakeError` (``TlsError`` and its
subclasses, ``PeerIdMismatch``) as its refusal.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from guts.crypto import KeyPair
from guts.errors import HandshakeError
from guts.security.tls import TlsConnection, TlsIdentity, make_certificate, verify_certificate

__all__ = [
    "TLS_ERRORS",
    "feed_tls_certificate",
    "feed_tls_client_hello",
    "feed_tls_server_hello",
    "tls_certificate_seeds",
    "tls_client_hello_seeds",
    "tls_server_hello_seeds",
]

#: What every TLS target may raise on bad input.
TLS_ERRORS: tuple[type[BaseException], ...] = (HandshakeError,)

_NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_ALICE = KeyPair.from_seed(bytes(range(32)))
_BOB = KeyPair.from_seed(bytes(range(32, 64)))


def _identity(keypair: KeyPair, scalar: int) -> TlsIdentity:
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    certificate, _ = make_certificate(keypair, now=_NOW, certificate_key=key, serial=scalar)
    return TlsIdentity(keypair, certificate, key)


_ALICE_TLS = _identity(_ALICE, 0xA11CE)
_BOB_TLS = _identity(_BOB, 0xB0B)


def _chunks(data: bytes) -> Iterator[bytes]:
    """The input after its first byte, in pieces the first byte sizes (0: whole)."""
    if not data:
        return
    size = data[0] % 32
    body = data[1:]
    if size == 0:
        yield body
        return
    for start in range(0, len(body), size):
        yield body[start : start + size]


def feed_tls_certificate(data: bytes) -> None:
    """A peer's certificate, checked as a handshake checks it."""
    verify_certificate(data, now=_NOW)


def tls_certificate_seeds() -> list[bytes]:
    return [identity.certificate.public_bytes(serialization.Encoding.DER) for identity in (_ALICE_TLS, _BOB_TLS)]


def feed_tls_client_hello(data: bytes) -> None:
    """A server reads the input as the start of a connection."""
    server = TlsConnection(_BOB_TLS, initiator=False, muxers=("/yamux/1.0.0",), now=_NOW)
    for chunk in _chunks(data):
        server.receive_data(chunk)
        server.data_to_send()


def tls_client_hello_seeds() -> list[bytes]:
    hello = TlsConnection(_ALICE_TLS, initiator=True, muxers=("/yamux/1.0.0",), now=_NOW).data_to_send()
    middlebox = b"\x14\x03\x03\x00\x01\x01"  # the dummy change_cipher_spec OpenSSL sends
    return [b"\x00" + hello, b"\x07" + hello + middlebox]


def feed_tls_server_hello(data: bytes) -> None:
    """A client reads the input as the server's answer to its ClientHello
    (the ServerHello is plaintext; what follows is under keys the client's
    fresh share decides, so mutations past it mostly meet bad_record_mac)."""
    client = TlsConnection(_ALICE_TLS, initiator=True, expected_peer=_BOB.peer_id, now=_NOW)
    client.data_to_send()
    for chunk in _chunks(data):
        client.receive_data(chunk)
        client.data_to_send()


def tls_server_hello_seeds() -> list[bytes]:
    client = TlsConnection(_ALICE_TLS, initiator=True, now=_NOW)
    server = TlsConnection(_BOB_TLS, initiator=False, now=_NOW)
    server.receive_data(client.data_to_send())
    answer = server.data_to_send()
    hello_size = 5 + int.from_bytes(answer[3:5], "big")
    return [b"\x00" + answer, b"\x00" + answer[:hello_size]]
