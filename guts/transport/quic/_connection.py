"""aioquic's ``QuicConnection`` held to libp2p's TLS profile, sans-IO.

Theory of operation
-------------------
aioquic builds its TLS context inside ``QuicConnection._initialize`` (on
``connect()`` for a client, on the first Initial for a server), so no
constructor argument reaches it. :class:`Libp2pQuicConnection` subclasses
it and, right after ``_initialize``:

* swaps the context's class for :class:`Libp2pTlsContext` (a subclass of
  ``aioquic.tls.Context``: the instance keeps its state, two methods
  change);
* asks for the client's certificate (``_request_client_certificate``):
  libp2p authenticates both ends;
* offers X25519 alone as a client (one key share, not four; every libp2p
  QUIC stack has it) and drops RSA-PKCS1-SHA1 from the signature list.

:class:`Libp2pTlsContext` checks the peer's certificate *inside* the
handshake, right after aioquic has checked its CertificateVerify (so the
peer holds the certificate key), with
:func:`guts.security.tls.verify_certificate_chain`, which also compares
the peer id with the one the dialler expected. A refusal raises a TLS
alert, which aioquic turns into CONNECTION_CLOSE with CRYPTO_ERROR + the
alert, before the handshake completes. A server refuses an empty client
Certificate (aioquic takes it by default) with ``certificate_required``.
``verify_mode`` is ``CERT_NONE``: there is no CA or server name to check;
the libp2p check replaces that.

Receive windows ("credit flow control"). Stock aioquic doubles a window
whenever the peer has sent more than half of it, whatever the application
has read, so a reader that stalls does not slow the sender and the data
piles up here. Instead a window is "bytes the application consumed + the
configured size", advanced once half a window has been consumed
(:meth:`Libp2pQuicConnection.consumed` reports reads). aioquic's own
doubling is kept out by hiding the counters it looks at while the parent
method runs; it is synchronous, so nothing else sees them. A stream's
buffer is thus bounded by ``max_stream_data``, a connection's by
``max_data``.

Streams: the peer may have ``max_streams`` bidirectional streams open at
once (aioquic hard-codes 128 and, as each finishes, lets one more be
opened); no unidirectional ones (libp2p uses none).

Nothing here imports trio.
"""

from __future__ import annotations

import datetime
import ssl
from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography.hazmat.primitives import serialization

from guts.crypto import PublicKey
from guts.errors import PeerIdMismatch
from guts.peer import PeerId
from guts.security.tls import LIBP2P_ALPN, CertificateError, TlsIdentity, verify_certificate

__all__ = ["Libp2pQuicConnection", "Libp2pTlsContext", "make_configuration"]

#: QUIC version 1 (RFC 9000), the one ``/quic-v1`` names.
QUIC_V1 = 0x00000001


class _CertificateRequired(tls.Alert):
    description = tls.AlertDescription.certificate_required


class Libp2pTlsContext(tls.Context):
    """aioquic's TLS context with the libp2p certificate check.

    Attributes set by :class:`Libp2pQuicConnection`: ``expected_peer``;
    set here once the peer's certificate checked out: ``remote_public_key``.
    """

    expected_peer: PeerId | None
    remote_public_key: PublicKey | None

    def _check_certificate_verify_signature(self, verify: Any) -> None:
        super()._check_certificate_verify_signature(verify)
        certificate = self._peer_certificate
        if certificate is None:  # the server asked; a client never gets here without one
            raise _CertificateRequired("the peer sent no certificate")
        if self._peer_certificate_chain:
            raise tls.AlertBadCertificate("expected exactly one certificate")
        der = certificate.public_bytes(serialization.Encoding.DER)
        try:
            key = verify_certificate(der, now=datetime.datetime.now(datetime.UTC))
        except CertificateError as exc:
            raise tls.AlertBadCertificate(str(exc)) from None
        if self.expected_peer is not None and key.peer_id != self.expected_peer:
            raise tls.AlertBadCertificate(str(PeerIdMismatch(f"dialled {self.expected_peer}, reached {key.peer_id}")))
        self.remote_public_key = key

    def _server_handle_certificate(self, input_buf: Buffer) -> None:
        super()._server_handle_certificate(input_buf)
        if self._peer_certificate is None:
            raise _CertificateRequired("the client sent no certificate")


class Libp2pQuicConnection(QuicConnection):
    """A ``QuicConnection`` that authenticates both ends the libp2p way.

    Args:
        max_streams: bidirectional streams the peer may have open at once.
        expected_peer: on the dialling side, who we meant to reach.
        **kwargs: for ``QuicConnection``.
    """

    def __init__(self, *, max_streams: int, expected_peer: PeerId | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Both value and sent: the transport parameters announce the value,
        # and aioquic compares the two to decide when to send MAX_STREAMS.
        for limit, value in ((self._local_max_streams_bidi, max_streams), (self._local_max_streams_uni, 0)):
            limit.value = limit.sent = value
        self._expected_peer = expected_peer
        self._consumed: dict[int, int] = {}
        self._consumed_total = 0

    @property
    def remote_public_key(self) -> PublicKey | None:
        """The peer's host key, once its certificate checked out."""
        context = getattr(self, "tls", None)
        return getattr(context, "remote_public_key", None)

    def consumed(self, stream_id: int, n: int) -> None:
        """The application has read ``n`` more bytes of ``stream_id``."""
        self._consumed[stream_id] = self._consumed.get(stream_id, 0) + n
        self._consumed_total += n

    def forget_stream(self, stream_id: int) -> None:
        """The application is done with ``stream_id``."""
        self._consumed.pop(stream_id, None)

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        if not stream.max_stream_data_local:
            return super()._write_stream_limits(builder=builder, space=space, stream=stream)
        window = self._configuration.max_stream_data
        target = self._consumed.get(stream.stream_id, 0) + window
        if target - stream.max_stream_data_local >= window // 2:
            stream.max_stream_data_local = target
        receiver = stream.receiver
        highest, receiver.highest_offset = receiver.highest_offset, 0
        try:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
        finally:
            receiver.highest_offset = highest

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        limit = self._local_max_data
        window = self._configuration.max_data
        target = self._consumed_total + window
        if target - limit.value >= window // 2:
            limit.value = target
        used, limit.used = limit.used, 0
        try:
            super()._write_connection_limits(builder=builder, space=space)
        finally:
            limit.used = used

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        context = self.tls
        context.__class__ = Libp2pTlsContext
        assert isinstance(context, Libp2pTlsContext)
        context.expected_peer = self._expected_peer
        context.remote_public_key = None
        context._request_client_certificate = True
        if self._is_client:
            context._supported_groups = [tls.Group.X25519]
        context._signature_algorithms = [
            a for a in context._signature_algorithms if a != tls.SignatureAlgorithm.RSA_PKCS1_SHA1
        ]


def make_configuration(
    identity: TlsIdentity,
    *,
    is_client: bool,
    idle_timeout: float,
    max_data: int,
    max_stream_data: int,
    max_datagram_size: int = 1350,
) -> QuicConfiguration:
    """The aioquic configuration of one side of a libp2p QUIC connection."""
    return QuicConfiguration(
        alpn_protocols=[LIBP2P_ALPN],
        is_client=is_client,
        certificate=identity.certificate,
        private_key=identity.private_key,
        verify_mode=ssl.CERT_NONE,
        idle_timeout=idle_timeout,
        max_data=max_data,
        max_stream_data=max_stream_data,
        max_datagram_size=max_datagram_size,
        supported_versions=[QUIC_V1],
    )
