"""The one error tree of Guts.

Every error a caller may want to catch derives from :class:`GutsError`.
Protocol errors are split the way h11 and wsproto split them: a
:class:`LocalProtocolError` means *we* were asked to do something the
protocol forbids; a :class:`RemoteProtocolError` means the peer sent
something the protocol forbids. Remote errors may carry a hint (for
instance the yamux GoAway code to answer with) so that adapters can tell
the peer why they are hanging up.

What a *person* wrote (a command-line argument, a configuration value, a
control API request) is another kind of input again: an
:class:`InputError`, which is also a ``ValueError``, never a
:class:`RemoteProtocolError`. Parsers that serve both (multiaddrs, peer
ids) raise a subclass of each kind, so ``except DecodeError`` in a wire
decoder never catches a typo, and a typo is never logged as a peer's
misbehaviour.
"""

from __future__ import annotations

__all__ = [
    "GutsError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "DecodeError",
    "HandshakeError",
    "PeerIdMismatch",
    "NegotiationError",
    "StreamReset",
    "DialError",
    "PeerNotFound",
    "RecordNotFound",
    "InvalidRecord",
    "InputError",
    "ConfigError",
    "NodeNotRunning",
    "InvalidIdentity",
    "InvalidRefs",
    "InvalidRid",
]


class GutsError(Exception):
    """Base class of every error Guts raises on purpose."""


class ProtocolError(GutsError):
    """A wire protocol was violated."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The remote peer broke the protocol.

    Args:
        message: what was wrong, for the log line.
        hint: protocol-specific value to answer with before closing
            (for yamux, the GoAway error code), or ``None``.
    """

    def __init__(self, message: str, hint: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class DecodeError(RemoteProtocolError):
    """Bytes from the network could not be decoded (bad varint, oversized
    or truncated frame, malformed protobuf, ...)."""


class HandshakeError(ProtocolError):
    """The security handshake failed (bad signature, bad key, ...)."""


class PeerIdMismatch(HandshakeError):
    """The remote authenticated as a different peer than the one dialled."""


class NegotiationError(ProtocolError):
    """multistream-select found no protocol both sides speak."""


class StreamReset(GutsError):
    """The stream was reset by either side; no more data will flow."""


class DialError(GutsError):
    """Every address of a peer failed to connect or upgrade."""


class PeerNotFound(GutsError):
    """No address is known for the peer."""


class RecordNotFound(GutsError):
    """No valid record was found for a key (DHT ``get_value``)."""


class InvalidRecord(ProtocolError):
    """A DHT record failed validation: unknown namespace, oversized value,
    or a value its namespace's validator refuses."""


class InputError(GutsError, ValueError):
    """Text a person wrote does not parse or is out of range: a
    command-line argument, a configuration value, a control API request.

    Local, like :class:`LocalProtocolError`: nothing here came from a peer.
    """


class ConfigError(InputError):
    """The configuration (file, environment or flags) is invalid."""


class NodeNotRunning(GutsError):
    """No node answers on the control socket of this ``GUTS_HOME``."""


class InvalidIdentity(RemoteProtocolError):
    """A repository identity document, revision or chain that a peer sent
    breaks the rules: malformed or non-canonical bytes, a limit exceeded, a
    bad signature, too few delegate signatures, a parent that does not
    match (``guts.repo.identity``)."""


class InvalidRefs(RemoteProtocolError):
    """A signed ref statement that a peer sent breaks the rules: not in
    canonical form, a hostile ref name, a limit exceeded, a bad signature
    (``guts.repo.sigrefs``)."""


class InvalidRid(InputError):
    """Text that is not a repository id (a CIDv1, codec raw, of a sha2-256
    multihash) or not a ``guts://<RID>`` URL."""
