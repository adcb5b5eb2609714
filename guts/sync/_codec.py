"""``proto/sync.proto`` messages <-> frozen dataclasses, the protocol's
limits and errors. The only module of :mod:`guts.sync` that touches the
generated protobuf classes; no trio.

Callers bound a message's size before decoding it (the framing refuses a
declared length above the limit before buffering anything); here each
field is bounded again, so a decoded message is within
:class:`SyncConfig`'s limits.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import DecodeError, GutsError
from guts.pb import sync_pb2

__all__ = [
    "SYNC_PROTOCOL",
    "GetObjects",
    "GetRefs",
    "Objects",
    "Refs",
    "Refused",
    "RefusedReason",
    "Request",
    "Response",
    "SyncConfig",
    "SyncError",
    "SyncRefused",
    "SyncStalled",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

#: The protocol id on the host.
SYNC_PROTOCOL = "/guts/sync/1.0.0"

_MAX_RID = 256
_MAX_REASON = 1000
_OID = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """The sync protocol's limits, both sides.

    Args:
        max_request: bytes of one request message (a ``GetObjects`` holds
            git's wants and haves: about 50 bytes each).
        max_refs_message: bytes of one ``Refs`` answer (identity chain and
            every statement; each is bounded again by the repository's
            identity and refs limits).
        max_namespaces: statements in one ``Refs``.
        max_proposals: pending identity revisions in one ``Refs`` (what a
            node keeps, :data:`~guts.repo.proposals.MAX_PROPOSALS`).
        idle_timeout: seconds a transfer may make no progress (a stalled
            peer) before it is abandoned.
        deadline: seconds one whole fetch may take, pack included.
        max_uploads: upload-packs this node runs at once.
        max_uploads_per_peer: of those, for one peer.
        requests_per_second: requests (streams) one peer may open a
            second, on average; past its bucket of ``request_burst`` (a
            catch-up asks one ``GetRefs`` per repository both hold, at most
            256), a request is refused ``BUSY`` before it is read.
        request_burst: requests one peer may make at once.
    """

    max_request: int = 4 * 1024 * 1024
    max_refs_message: int = 64 * 1024 * 1024
    max_namespaces: int = 1024
    max_proposals: int = 16
    idle_timeout: float = 60.0
    deadline: float = 6 * 3600.0
    max_uploads: int = 16
    max_uploads_per_peer: int = 4
    requests_per_second: float = 32.0
    request_burst: int = 320


class RefusedReason(enum.IntEnum):
    """Why a request was refused (``Refused.Reason``)."""

    UNSPECIFIED = 0
    NOT_FOUND = 1
    BAD_REQUEST = 2
    BUSY = 3


class SyncError(GutsError):
    """A sync with a peer failed; nothing was changed."""


class SyncRefused(SyncError):
    """The peer answered with a refusal (it does not hold the repository,
    refused our request, or is busy)."""

    def __init__(self, message: str, reason: RefusedReason) -> None:
        super().__init__(message)
        self.reason = reason


class SyncStalled(SyncError):
    """The peer sent nothing for the idle timeout, or the fetch passed its
    deadline."""


@dataclass(frozen=True, slots=True)
class GetRefs:
    """Ask for a repository's signed state."""

    rid: str


@dataclass(frozen=True, slots=True)
class GetObjects:
    """Ask for objects: one protocol v2 stateless upload-pack request."""

    rid: str
    request: bytes


@dataclass(frozen=True, slots=True)
class Refs:
    """A repository's signed state: the identity chain (``SignedRevision``
    encodings, genesis first), each namespace's latest statement
    (``SignedRefs`` encodings) and, in the same order, the sigrefs commit
    that records it on the serving node; and the pending identity
    revisions (``SignedRevision`` encodings, their parent the chain's head)."""

    identity: tuple[bytes, ...]
    statements: tuple[bytes, ...]
    sigrefs: tuple[str, ...]
    proposals: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Objects:
    """upload-pack's raw response follows, until the stream ends."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The request was not served, and why."""

    reason: RefusedReason
    message: str


Request: TypeAlias = GetRefs | GetObjects
Response: TypeAlias = Refs | Objects | Refused


def _rid(text: str) -> str:
    if len(text) > _MAX_RID:
        raise DecodeError(f"a rid of {len(text)} characters")
    return text


def encode_request(request: Request) -> bytes:
    msg = sync_pb2.Request()
    if isinstance(request, GetRefs):
        msg.get_refs.rid = request.rid
    else:
        msg.get_objects.rid = request.rid
        msg.get_objects.request = request.request
    return msg.SerializeToString(deterministic=True)


def decode_request(data: bytes, config: SyncConfig) -> Request:
    """Raises:
    DecodeError: not a ``Request``, none of its kinds, or over a limit."""
    if len(data) > config.max_request:
        raise DecodeError(f"a request of {len(data)} bytes (limit {config.max_request})")
    msg = sync_pb2.Request()
    try:
        msg.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"not a sync request: {exc}") from None
    kind = msg.WhichOneof("kind")
    if kind == "get_refs":
        return GetRefs(_rid(msg.get_refs.rid))
    if kind == "get_objects":
        return GetObjects(_rid(msg.get_objects.rid), bytes(msg.get_objects.request))
    raise DecodeError("a sync request of no known kind")


def encode_response(response: Response) -> bytes:
    msg = sync_pb2.Response()
    if isinstance(response, Refs):
        msg.refs.identity.extend(response.identity)
        msg.refs.statements.extend(response.statements)
        msg.refs.sigrefs.extend(response.sigrefs)
        msg.refs.proposals.extend(response.proposals)
    elif isinstance(response, Objects):
        msg.objects.SetInParent()
    else:
        msg.refused.reason = int(response.reason)  # type: ignore[assignment]
        msg.refused.message = response.message[:_MAX_REASON]
    return msg.SerializeToString(deterministic=True)


def decode_response(data: bytes, config: SyncConfig) -> Response:
    """Raises:
    DecodeError: not a ``Response``, none of its kinds, or over a limit."""
    if len(data) > config.max_refs_message:
        raise DecodeError(f"a response of {len(data)} bytes (limit {config.max_refs_message})")
    msg = sync_pb2.Response()
    try:
        msg.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"not a sync response: {exc}") from None
    kind = msg.WhichOneof("kind")
    if kind == "refs":
        refs = msg.refs
        if len(refs.statements) > config.max_namespaces:
            raise DecodeError(f"{len(refs.statements)} statements (limit {config.max_namespaces})")
        if len(refs.sigrefs) != len(refs.statements) or not all(_OID.fullmatch(oid) for oid in refs.sigrefs):
            raise DecodeError("Refs needs one sigrefs commit oid per statement")
        if len(refs.proposals) > config.max_proposals:
            raise DecodeError(f"{len(refs.proposals)} proposals (limit {config.max_proposals})")
        return Refs(
            tuple(bytes(b) for b in refs.identity),
            tuple(bytes(b) for b in refs.statements),
            tuple(refs.sigrefs),
            tuple(bytes(b) for b in refs.proposals),
        )
    if kind == "objects":
        return Objects()
    if kind == "refused":
        try:
            reason = RefusedReason(msg.refused.reason)
        except ValueError:
            reason = RefusedReason.UNSPECIFIED
        return Refused(reason, msg.refused.message[:_MAX_REASON])
    raise DecodeError("a sync response of no known kind")
