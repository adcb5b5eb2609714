"""A libp2p TLS 1.3 session over a byte stream, sans-IO.

Theory of operation
-------------------
Two parts meet here. ``aioquic.tls.Context`` is a TLS 1.3 handshake state
machine in Python (on ``cryptography``): it takes whole handshake
messages, writes its answers into one buffer per *epoch* (initial =
plaintext, handshake keys, application keys), and reports each new traffic
secret through a callback. QUIC, for which it was written, protects those
messages itself; on TCP, :mod:`._record` does: this module moves handshake
messages between the two, and carries application data, alerts and the
post-handshake messages in records.

The exchange (RFC 8446 §2; the server always asks for a certificate, the
libp2p spec requires client authentication)::

    client                                          server
    ClientHello (ALPN: muxers..., "libp2p")  -->
                                             <--  ServerHello
                                             <--  {EncryptedExtensions (ALPN choice)}
                                             <--  {CertificateRequest}
                                             <--  {Certificate, CertificateVerify, Finished}
    {Certificate, CertificateVerify, Finished} -->
    [application data]                       <->  [application data]

``{}`` is under handshake keys, ``[]`` under application keys. Each side
checks the peer's certificate (:func:`._cert.verify_certificate_chain`) as
soon as its Certificate message is processed, before anything else of the
peer's counts, and the server refuses an empty one. Handshake messages are
reassembled here (at most :data:`MAX_HANDSHAKE_MESSAGE` bytes each,
:data:`MAX_HANDSHAKE_BYTES` in all before completion) and handed to the
context one at a time; a message may not straddle a change of keys.

ALPN carries the inlined muxer negotiation (libp2p/specs
``connections/inlined-muxer-negotiation.md``): the client lists its muxers,
preferred first, then ``"libp2p"``; the server picks by its own preference
among them; ``"libp2p"`` means "no muxer chosen here, negotiate it with
multistream-select" (go-libp2p offers only that).

After the handshake: application data (23) is returned to the caller;
close_notify is end-of-file; user_canceled is ignored; any other alert
ends the session with a :class:`TlsError`; NewSessionTicket is ignored
(no resumption); KeyUpdate (§4.6.3) moves the receive keys on and, when
the peer asks, ours too before our next record. We update our own keys every
:data:`KEY_UPDATE_INTERVAL` records, far inside the AES-GCM limits of
§5.5.

On our own error the session fails: :meth:`data_to_send` then holds an
alert for the peer, under the keys we send with at that point.

Choices made for the context: no SNI (the spec forbids it), no session
tickets or early data, TLS 1.3 only (all aioquic speaks), cipher suites
AES-128-GCM first, then ChaCha20-Poly1305 and AES-256-GCM. As a client we
offer X25519 alone, with one key share (every libp2p TLS stack has it, and
aioquic cannot answer a HelloRetryRequest anyway); as a server we also
take P-256, P-384 and X448 shares (aioquic's defaults), and, as aioquic
never sends a HelloRetryRequest, refuse a client whose shares are all of
other groups. ``Context`` has no public switch to ask for a client
certificate, or to read the peer's, so this module sets and reads those
attributes (``_request_client_certificate``, ``_peer_certificate``,
``_peer_certificate_chain``, ``_supported_groups``); the test suite
exercises each of them.

Nothing here imports trio.
"""

from __future__ import annotations

import datetime
import enum
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aioquic._buffer import Buffer
from aioquic.tls import Alert, CipherSuite, Context, Direction, Epoch, Group, State
from guts.crypto import PublicKey
from guts.errors import PeerIdMismatch
from guts.peer import PeerId
from guts.security.tls._cert import TlsIdentity, verify_certificate
from guts.security.tls._errors import CertificateError, TlsError
from guts.security.tls._record import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    RecordKeys,
    RecordReader,
    plaintext_records,
)

__all__ = ["LIBP2P_ALPN", "MAX_HANDSHAKE_BYTES", "MAX_HANDSHAKE_MESSAGE", "TlsConnection", "TlsState"]

#: The ALPN token every libp2p TLS peer offers; chosen, it means "no muxer".
LIBP2P_ALPN = "libp2p"
#: The largest handshake message accepted (a certificate is ~400 bytes).
MAX_HANDSHAKE_MESSAGE = 32 * 1024
#: Handshake bytes accepted before the handshake completes.
MAX_HANDSHAKE_BYTES = 64 * 1024
#: Records sent under one key before we update it ourselves (§5.5 allows
#: 2^24.5 AES-GCM records per key).
KEY_UPDATE_INTERVAL = 1 << 23

_CERTIFICATE = 11
_KEY_UPDATE = 24
_NEW_SESSION_TICKET = 4

_CLOSE_NOTIFY = 0
_UNEXPECTED_MESSAGE = 10
_DECODE_ERROR = 50
_BAD_CERTIFICATE = 42
_INTERNAL_ERROR = 80
_USER_CANCELED = 90
_CERTIFICATE_REQUIRED = 116

_CIPHER_SUITES = [
    CipherSuite.AES_128_GCM_SHA256,
    CipherSuite.CHACHA20_POLY1305_SHA256,
    CipherSuite.AES_256_GCM_SHA384,
]
#: aioquic writes at most this much per epoch for one message we feed.
_OUTPUT_CAPACITY = 64 * 1024
_EPOCHS = (Epoch.INITIAL, Epoch.HANDSHAKE, Epoch.ONE_RTT)


class TlsState(enum.Enum):
    """Where the session is."""

    HANDSHAKING = "handshaking"
    OPEN = "open"
    FAILED = "failed"


class TlsConnection:
    """One side of a libp2p TLS 1.3 session, bytes in, bytes out.

    Args:
        identity: our host key and certificate.
        initiator: ``True`` on the dialing side (the TLS client).
        muxers: muxers to offer in ALPN, preferred first.
        alpn: ALPN tokens after the muxers; ``("libp2p",)`` for libp2p.
        expected_peer: on the dialing side, who we meant to reach.
        now: the current time, to check the peer's certificate against.

    The initiator's ClientHello is in :meth:`data_to_send` at once.
    """

    def __init__(
        self,
        identity: TlsIdentity,
        *,
        initiator: bool,
        muxers: Sequence[str] = (),
        alpn: Sequence[str] = (LIBP2P_ALPN,),
        expected_peer: PeerId | None = None,
        now: datetime.datetime,
    ) -> None:
        offered = [*muxers, *alpn]
        if not offered:
            raise ValueError("offer at least one ALPN token")
        self._muxers = tuple(muxers)
        self._initiator = initiator
        self._expected_peer = expected_peer
        self._now = now
        context = Context(
            is_client=initiator, alpn_protocols=offered, cipher_suites=list(_CIPHER_SUITES), verify_mode=ssl.CERT_NONE
        )
        context.certificate = identity.certificate
        context.certificate_private_key = identity.private_key
        context.update_traffic_key_cb = self._install_key
        if initiator:
            context._supported_groups = [Group.X25519]
        else:
            context._request_client_certificate = True
        self._context = context
        self.state = TlsState.HANDSHAKING
        #: The authenticated peer, once its certificate checked out.
        self.remote_peer: PeerId | None = None
        self.remote_public_key: PublicKey | None = None
        #: The ALPN token agreed on, and the muxer if it names one of ours.
        self.alpn: str | None = None
        self.muxer: str | None = None
        #: ``True`` once the peer sent close_notify: no more data comes.
        self.eof_received = False
        #: ``True`` once we sent close_notify: we send no more data.
        self.eof_sent = False
        self._reader = RecordReader()
        self._receive_keys: RecordKeys | None = None
        self._send_keys: dict[Epoch, RecordKeys] = {}
        self._handshake_buffer = bytearray()
        self._handshake_bytes = 0
        self._key_update_owed = False
        self._outgoing: list[bytes] = []
        if initiator:
            self._drive(b"")

    # -- keys and handshake ------------------------------------------------

    def _install_key(self, direction: Direction, epoch: Epoch, cipher_suite: CipherSuite, secret: bytes) -> None:
        keys = RecordKeys(cipher_suite, secret)
        if direction == Direction.DECRYPT:
            self._receive_keys = keys
        else:
            self._send_keys[epoch] = keys

    def _drive(self, message: bytes) -> None:
        """Hand one handshake message to the context; queue its answers."""
        buffers = {epoch: Buffer(capacity=_OUTPUT_CAPACITY) for epoch in _EPOCHS}
        buffers[Epoch.ZERO_RTT] = Buffer(capacity=0)
        try:
            self._context.handle_message(message, buffers)
        except Alert as exc:
            raise TlsError(f"TLS handshake failed: {exc or type(exc).__name__}", int(getattr(exc, "description", _INTERNAL_ERROR))) from None
        except x509.InvalidVersion as exc:  # the peer's certificate, parsed in there
            raise CertificateError(f"certificate does not parse: {exc}", _BAD_CERTIFICATE) from None
        except ValueError as exc:  # BufferWriteError: an answer we cannot hold
            raise TlsError(f"TLS handshake failed: {exc}", _INTERNAL_ERROR) from None
        for epoch in _EPOCHS:
            data = buffers[epoch].data
            if not data:
                continue
            if epoch == Epoch.INITIAL:
                self._outgoing.append(plaintext_records(HANDSHAKE, data))
            else:
                self._outgoing.append(self._send_keys[epoch].seal_all(HANDSHAKE, data))

    def _check_certificate(self) -> None:
        """After the peer's Certificate: check it, or refuse an empty one."""
        certificate = self._context._peer_certificate
        if certificate is None:
            raise CertificateError("the peer sent no certificate", _CERTIFICATE_REQUIRED)
        chain = [certificate, *self._context._peer_certificate_chain]
        if len(chain) != 1:
            raise CertificateError(f"expected exactly one certificate, got {len(chain)}", _BAD_CERTIFICATE)
        key = verify_certificate(certificate.public_bytes(serialization.Encoding.DER), now=self._now)
        if self._expected_peer is not None and key.peer_id != self._expected_peer:
            raise PeerIdMismatch(f"dialled {self._expected_peer}, but the certificate authenticates {key.peer_id}")
        self.remote_public_key = key
        self.remote_peer = key.peer_id

    def _finish_handshake(self) -> None:
        if self.remote_peer is None:  # unreachable: the server always asks for a certificate
            raise CertificateError("the handshake completed without a peer certificate", _CERTIFICATE_REQUIRED)
        alpn = self._context.alpn_negotiated
        self.alpn = alpn
        self.muxer = alpn if alpn in self._muxers else None
        self.state = TlsState.OPEN

    def _handshake_messages(self, data: bytes) -> None:
        buffer = self._handshake_buffer
        buffer += data
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[1:4], "big")
            if size > MAX_HANDSHAKE_MESSAGE:
                raise TlsError(f"a TLS handshake message of {size} bytes, over {MAX_HANDSHAKE_MESSAGE}", _DECODE_ERROR)
            if len(buffer) < 4 + size:
                break
            message = bytes(buffer[: 4 + size])
            del buffer[: 4 + size]
            self._handshake_message(message)

    def _handshake_message(self, message: bytes) -> None:
        kind = message[0]
        if self.state is TlsState.HANDSHAKING:
            self._drive(message)
            if kind == _CERTIFICATE:
                self._check_certificate()
            done = State.CLIENT_POST_HANDSHAKE if self._initiator else State.SERVER_POST_HANDSHAKE
            if self._context.state == done:
                self._finish_handshake()
        elif kind == _KEY_UPDATE:
            if len(message) != 5 or message[4] not in (0, 1):
                raise TlsError("malformed KeyUpdate", _DECODE_ERROR)
            if self._handshake_buffer:
                raise TlsError("a handshake message straddles a KeyUpdate", _UNEXPECTED_MESSAGE)
            assert self._receive_keys is not None
            self._receive_keys = self._receive_keys.updated()
            if message[4]:
                self._key_update_owed = True
        elif kind == _NEW_SESSION_TICKET and self._initiator:
            pass  # we never resume a session
        else:
            raise TlsError(f"unexpected TLS handshake message {kind} after the handshake", _UNEXPECTED_MESSAGE)

    # -- records -----------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed bytes from the transport.

        Returns:
            The application data they completed (possibly ``b""``).

        Raises:
            TlsError: a bad record, a fatal alert from the peer, or a
                handshake failure; the session is then FAILED and
                :meth:`data_to_send` may hold an alert for the peer.
            CertificateError: the peer's certificate is refused.
            PeerIdMismatch: it authenticates someone else than expected.
        """
        if self.state is TlsState.FAILED:
            raise TlsError("the TLS session failed earlier")
        if self.eof_received:
            return b""
        try:
            return self._receive(data)
        except (TlsError, PeerIdMismatch) as exc:
            self._fail(exc.alert if isinstance(exc, TlsError) and exc.alert is not None else _BAD_CERTIFICATE)
            raise

    def _receive(self, data: bytes | bytearray | memoryview) -> bytes:
        plain: list[bytes] = []
        for header, fragment in self._reader.feed(data):
            outer = header[0]
            keys = self._receive_keys
            if outer == CHANGE_CIPHER_SPEC:
                if self.state is not TlsState.HANDSHAKING or fragment != b"\x01":
                    raise TlsError("unexpected change_cipher_spec record", _UNEXPECTED_MESSAGE)
                continue
            if keys is None:
                if outer == ALERT:
                    self._alert(fragment)
                    continue
                if outer != HANDSHAKE:
                    raise TlsError(f"unprotected TLS record of type {outer}", _UNEXPECTED_MESSAGE)
                content_type, content = HANDSHAKE, fragment
            else:
                if outer != APPLICATION_DATA:
                    raise TlsError(f"unprotected TLS record of type {outer} after keys were set", _UNEXPECTED_MESSAGE)
                content_type, content = keys.open(header, fragment)
            if content_type == APPLICATION_DATA:
                if self.state is not TlsState.OPEN:
                    raise TlsError("application data before the handshake completed", _UNEXPECTED_MESSAGE)
                if content:
                    plain.append(content)
            elif content_type == HANDSHAKE:
                if not content:
                    raise TlsError("an empty handshake record", _UNEXPECTED_MESSAGE)
                self._handshake_bytes += len(content)
                if self.state is TlsState.HANDSHAKING and self._handshake_bytes > MAX_HANDSHAKE_BYTES:
                    raise TlsError(f"over {MAX_HANDSHAKE_BYTES} bytes of TLS handshake", _DECODE_ERROR)
                self._handshake_messages(content)
                if self._receive_keys is not keys and self._handshake_buffer:
                    raise TlsError("a handshake message straddles a change of keys", _UNEXPECTED_MESSAGE)
            elif content_type == ALERT:
                self._alert(content)
                if self.eof_received:
                    break  # anything after close_notify is ignored
            else:
                raise TlsError(f"TLS record of unknown type {content_type}", _UNEXPECTED_MESSAGE)
        return b"".join(plain)

    def _alert(self, content: bytes) -> None:
        if len(content) != 2:
            raise TlsError("malformed TLS alert", _DECODE_ERROR)
        description = content[1]
        if description == _CLOSE_NOTIFY:
            self.eof_received = True
        elif description != _USER_CANCELED:
            raise TlsError(f"the peer sent TLS alert {description}")

    def _fail(self, alert: int) -> None:
        """Enter FAILED; queue ``alert`` under the best keys we have."""
        self.state = TlsState.FAILED
        self._outgoing.clear()
        record = bytes((2, alert))  # level fatal
        # The keys we send under now: the server's application keys once
        # it sent its Finished (the client reads under them from then on).
        keys = self._send_keys.get(Epoch.ONE_RTT) or self._send_keys.get(Epoch.HANDSHAKE)
        try:
            self._outgoing.append(keys.seal(ALERT, record) if keys is not None else plaintext_records(ALERT, record))
        except TlsError:
            pass

    def data_to_send(self) -> bytes:
        """Bytes for the transport: handshake records, alerts, close_notify."""
        if not self._outgoing:
            return b""
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        return out

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Protect application data; return the records for the transport.

        Anything :meth:`data_to_send` holds comes first, then a KeyUpdate
        when one is owed or due.

        Raises:
            TlsError: the session is not open, or we already sent
                close_notify.
        """
        if self.state is not TlsState.OPEN:
            raise TlsError("the TLS session is not open")
        if self.eof_sent:
            raise TlsError("close_notify was sent: no more data may follow")
        keys = self._send_keys[Epoch.ONE_RTT]
        if self._key_update_owed or keys.sequence >= KEY_UPDATE_INTERVAL:
            # update_not_requested when answering; a routine update asks the
            # peer to move its keys on too.
            requested = 0 if self._key_update_owed else 1
            self._outgoing.append(keys.seal(HANDSHAKE, bytes((_KEY_UPDATE, 0, 0, 1, requested))))
            keys = self._send_keys[Epoch.ONE_RTT] = keys.updated()
            self._key_update_owed = False
        records = keys.seal_all(APPLICATION_DATA, data) if len(data) else b""
        if self._outgoing:
            return self.data_to_send() + records
        return records

    def close(self) -> bytes:
        """Send close_notify: return the record (``b""`` if already sent).

        TLS 1.3 closes each direction on its own: the peer may still send.
        """
        if self.eof_sent or self.state is not TlsState.OPEN:
            return b""
        self.eof_sent = True
        record = self._send_keys[Epoch.ONE_RTT].seal(ALERT, bytes((1, _CLOSE_NOTIFY)))
        return self.data_to_send() + record

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held."""
        return self._reader.buffered

