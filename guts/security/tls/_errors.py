"""The errors of libp2p TLS, all :class:`~guts.errors.HandshakeError` s.

A caller that already handles a failed Noise handshake handles a failed
TLS one the same way; the subclasses say what went wrong for the log line
and for tests.
"""

from __future__ import annotations

from guts.errors import HandshakeError

__all__ = ["CertificateError", "TlsError", "UnsupportedHostKey"]


class TlsError(HandshakeError):
    """The TLS session failed: a bad record, an alert from the peer, a
    handshake message TLS 1.3 forbids, or a limit exceeded.

    Args:
        message: what was wrong, for the log line.
        alert: the TLS alert description that fits (RFC 8446 §6), sent to
            the peer when there is still a way to send it, or ``None``.
    """

    def __init__(self, message: str, alert: int | None = None) -> None:
        super().__init__(message)
        self.alert = alert


class CertificateError(TlsError):
    """The peer's certificate fails the libp2p rules (libp2p/specs
    ``tls/tls.md``): not exactly one, not self-signed, outside its validity
    period, without the libp2p Public Key Extension or with a bad signature
    in it, or carrying a critical extension we do not understand."""


class UnsupportedHostKey(CertificateError):
    """The certificate is well formed but names a host key type Guts does
    not accept (secp256k1, ECDSA, RSA): Guts identities are Ed25519.

    Attributes:
        public_key_protobuf: the host key as the certificate carries it (a
            libp2p ``PublicKey`` protobuf), for the log line or a caller
            that wants the peer id it claimed.
    """

    def __init__(self, message: str, public_key_protobuf: bytes) -> None:
        super().__init__(message, alert=43)  # unsupported_certificate
        self.public_key_protobuf = public_key_protobuf
