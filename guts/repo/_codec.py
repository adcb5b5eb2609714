"""``proto/repo.proto`` messages <-> plain values. The only module of
:mod:`guts.repo` that touches the generated protobuf classes.

Nothing here judges what the values mean: :mod:`guts.repo.identity` and
:mod:`guts.repo.sigrefs` do, and turn the :class:`~guts.errors.DecodeError`
raised here into their own errors. Callers bound the input's size before
calling, so a parse never sees more than a limit allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import DecodeError
from guts.pb import repo_pb2

__all__ = [
    "DocumentFields",
    "decode_document",
    "decode_signed_refs",
    "decode_signed_revision",
    "encode_document",
    "encode_signed_refs",
    "encode_signed_revision",
]


@dataclass(frozen=True, slots=True)
class DocumentFields:
    """The fields of an ``Identity`` message, delegates as raw key protobufs."""

    version: int
    name: str
    description: str
    default_branch: str
    delegates: tuple[bytes, ...]
    threshold: int
    parent: bytes
    nonce: bytes


def encode_document(fields: DocumentFields) -> bytes:
    """Encode an ``Identity`` message deterministically: fields in number
    order, defaults left out, nothing else. This is the canonical encoding
    that documents must be in."""
    msg = repo_pb2.Identity(
        version=fields.version,
        name=fields.name,
        description=fields.description,
        default_branch=fields.default_branch,
        delegates=fields.delegates,
        threshold=fields.threshold,
        parent=fields.parent,
        nonce=fields.nonce,
    )
    return msg.SerializeToString(deterministic=True)


def decode_document(data: bytes) -> DocumentFields:
    """Parse an ``Identity`` message. Unknown fields are dropped here; the
    caller's canonical check (re-encoding must give ``data`` back) refuses
    them.

    Raises:
        DecodeError: not a protobuf ``Identity`` (or a string field that is
            not UTF-8).
    """
    msg = repo_pb2.Identity()
    _parse(msg, data, "identity document")
    return DocumentFields(
        version=msg.version,
        name=msg.name,
        description=msg.description,
        default_branch=msg.default_branch,
        delegates=tuple(msg.delegates),
        threshold=msg.threshold,
        parent=msg.parent,
        nonce=msg.nonce,
    )


def encode_signed_revision(document: bytes, signatures: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Encode a ``SignedRevision``: the document's bytes verbatim and
    ``(public key protobuf, signature)`` pairs."""
    msg = repo_pb2.SignedRevision(document=document)
    for key, signature in signatures:
        msg.signatures.add(public_key=key, signature=signature)
    return msg.SerializeToString(deterministic=True)


def decode_signed_revision(data: bytes) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    """Parse a ``SignedRevision`` into the document's bytes and its
    ``(public key protobuf, signature)`` pairs.

    Raises:
        DecodeError: not a protobuf ``SignedRevision``.
    """
    msg = repo_pb2.SignedRevision()
    _parse(msg, data, "signed identity revision")
    return msg.document, tuple((s.public_key, s.signature) for s in msg.signatures)


def encode_signed_refs(statement: bytes, signature: bytes) -> bytes:
    """Encode a ``SignedRefs`` envelope around a statement's canonical bytes."""
    return repo_pb2.SignedRefs(statement=statement, signature=signature).SerializeToString(deterministic=True)


def decode_signed_refs(data: bytes) -> tuple[bytes, bytes]:
    """Parse a ``SignedRefs`` envelope into the statement's bytes and the
    signature.

    Raises:
        DecodeError: not a protobuf ``SignedRefs``.
    """
    msg = repo_pb2.SignedRefs()
    _parse(msg, data, "signed refs")
    return msg.statement, msg.signature


def _parse(msg: repo_pb2.Identity | repo_pb2.SignedRevision | repo_pb2.SignedRefs, data: bytes, what: str) -> None:
    try:
        msg.ParseFromString(bytes(data))
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed {what} protobuf: {exc}") from None
