"""libp2p TLS 1.3 (``/tls/1.0.0``): the certificate and its checks."""

from guts.security.tls._cert import (
    EXTENSION_OID,
    MAX_CERTIFICATE_SIZE,
    SIGNING_PREFIX,
    TlsIdentity,
    make_certificate,
    verify_certificate,
    verify_certificate_chain,
)
from guts.security.tls._errors import CertificateError, TlsError, UnsupportedHostKey

#: The protocol id negotiated with multistream-select.
PROTOCOL_ID = "/tls/1.0.0"

__all__ = [
    "EXTENSION_OID",
    "MAX_CERTIFICATE_SIZE",
    "PROTOCOL_ID",
    "SIGNING_PREFIX",
    "CertificateError",
    "TlsError",
    "TlsIdentity",
    "UnsupportedHostKey",
    "make_certificate",
    "verify_certificate",
    "verify_certificate_chain",
]
