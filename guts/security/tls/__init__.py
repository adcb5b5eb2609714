"""libp2p TLS 1.3 (``/tls/1.0.0``): the certificate, its checks, and
protected streams over a byte stream.

The sans-IO parts (:mod:`._cert`, :mod:`._record`, :class:`TlsConnection`)
do not import trio; :func:`tls_handshake` and :class:`TlsStream` drive them
over a ``trio.abc.Stream``, the way ``guts.security.noise`` does. The TLS
1.3 handshake itself is ``aioquic.tls.Context``; the record layer is ours.
"""

from guts.security.tls._cert import (
    EXTENSION_OID,
    MAX_CERTIFICATE_SIZE,
    SIGNING_PREFIX,
    TlsIdentity,
    make_certificate,
    verify_certificate,
    verify_certificate_chain,
)
from guts.security.tls._connection import LIBP2P_ALPN, TlsConnection, TlsState
from guts.security.tls._errors import CertificateError, TlsError, UnsupportedHostKey
from guts.security.tls._stream import TlsStream, tls_handshake

#: The protocol id negotiated with multistream-select.
PROTOCOL_ID = "/tls/1.0.0"

__all__ = [
    "EXTENSION_OID",
    "LIBP2P_ALPN",
    "MAX_CERTIFICATE_SIZE",
    "PROTOCOL_ID",
    "SIGNING_PREFIX",
    "CertificateError",
    "TlsConnection",
    "TlsError",
    "TlsIdentity",
    "TlsState",
    "TlsStream",
    "UnsupportedHostKey",
    "make_certificate",
    "tls_handshake",
    "verify_certificate",
    "verify_certificate_chain",
]
