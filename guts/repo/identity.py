"""Repository identity documents and their signed revisions.

Theory of operation
-------------------
A repository's identity is a protobuf document (``Identity`` in
``proto/repo.proto``): format version (1), name, description, default
branch, delegates (libp2p ``PublicKey`` protobufs, Ed25519 only), threshold,
``parent``, the sha2-256 multihash of the previous revision's document
bytes (empty in the genesis), and ``nonce``.

- **Bytes are the document.** A document's bytes are what is hashed and
  signed, so a received document is kept as received (:attr:`Identity.raw`)
  and is valid only in the canonical encoding: fields in number order, each
  at most once, defaults left out, no unknown fields, delegates as the
  36-byte canonical key protobuf. Decoding re-encodes the parsed fields and
  refuses the document unless that gives its bytes back, so one content has
  exactly one encoding and any implementation can produce it.
- **RID.** The repository id (:class:`~guts.repo.rid.Rid`) is the
  sha2-256 multihash of the genesis document's bytes.
- **Nonce.** A genesis carries exactly 16 random bytes, drawn when the
  repository is made (:func:`create_genesis` takes them as an argument; the
  node passes ``os.urandom(16)``). Without them the RID would be a function
  of the fields alone, and one node making two repositories with the same
  name, description, default branch, delegates and threshold (two projects
  in directories named ``app``) would get one RID for both. Every later
  revision has an empty nonce: its parent already makes its bytes unique,
  and a nonce there would only let one change be written as any number of
  documents. So a document has exactly one of the two, a parent (a later
  revision) or a 16-byte nonce (the genesis); a genesis without a nonce, a
  nonce of another length, or a later revision with one is refused.
- **Signatures.** A delegate signs ``"guts identity v1\\n" || RID multihash
  || document bytes`` with Ed25519 (:func:`signing_payload`). The RID binds
  a signature to one repository: it cannot be replayed into another whose
  document happens to match. For the genesis the RID is its own hash.
  Signed ref statements begin with ``"guts signed refs 1\\n"``, so neither
  kind of signature can pass for the other.
- **Revisions** travel as ``SignedRevision`` protobufs: the document's
  bytes verbatim and the signatures collected for it. Which signatures
  count is the chain's business (:mod:`guts.repo.revisions`).

Errors follow where the input came from: what a peer sent fails as
:class:`~guts.errors.InvalidIdentity`; what a person asked for (a threshold
above the number of delegates in ``guts repo init``) as
:class:`~guts.errors.InputError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, InputError, InvalidIdentity
from guts.peer import PeerId
from guts.repo import _codec
from guts.repo.refname import UNSAFE_CHARACTERS, branch_problem
from guts.repo.rid import Rid

__all__ = [
    "IDENTITY_VERSION",
    "SIGNING_DOMAIN",
    "Identity",
    "IdentityLimits",
    "Signature",
    "SignedRevision",
    "create_genesis",
    "sign_revision",
    "signing_payload",
]

#: The identity document format this module reads and writes.
IDENTITY_VERSION = 1
#: Prefix of every identity signature's payload.
SIGNING_DOMAIN = b"guts identity v1\n"

_SHA2_256 = b"\x12\x20"
_NONCE_SIZE = 16
_CONTROL = frozenset(chr(c) for c in range(0x20)) | {"\x7f"}


def _multihash(data: bytes) -> bytes:
    return _SHA2_256 + hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class IdentityLimits:
    """Bounds on identity documents and chains from peers.

    Args:
        max_document: bytes of one document.
        max_name: UTF-8 bytes of the name.
        max_description: UTF-8 bytes of the description.
        max_delegates: delegates in one document.
        max_signatures: signatures on one revision (delegates plus a few
            co-signers).
        max_revisions: revisions in one chain, genesis included.
    """

    max_document: int = 16 * 1024
    max_name: int = 256
    max_description: int = 4096
    max_delegates: int = 32
    max_signatures: int = 64
    max_revisions: int = 1024


_DEFAULT_LIMITS = IdentityLimits()


def _text_problem(value: str, what: str, allowed: frozenset[str] = frozenset()) -> str | None:
    if not isinstance(value, str):
        return f"the {what} is not text"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"the {what} is not valid Unicode text"
    bad = next((c for c in value if (c in _CONTROL and c not in allowed) or c in UNSAFE_CHARACTERS), None)
    if bad is not None:
        return f"the {what} contains the character {bad!r}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One revision of a repository identity document.

    Built by :meth:`decode` from a peer's bytes, or from fields for our own
    (usually through :func:`create_genesis` and
    :func:`~guts.repo.revisions.propose_revision`); either way :attr:`raw`
    is the canonical encoding of the fields, the bytes that are hashed and
    signed.

    Raises:
        InputError: the fields break a rule: version not 1, an empty name,
            control characters, an invalid default branch, no delegates or
            a repeated one, a threshold outside 1..len(delegates), a parent
            that is not a sha2-256 multihash, a genesis (no parent) without
            a 16-byte nonce, a later revision with a nonce.
    """

    name: str
    default_branch: str
    delegates: tuple[PublicKey, ...]
    threshold: int
    description: str = ""
    parent: bytes = b""
    nonce: bytes = b""
    version: int = IDENTITY_VERSION
    raw: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "delegates", tuple(self.delegates))
        object.__setattr__(self, "parent", bytes(self.parent))
        if isinstance(self.nonce, bytearray | memoryview):
            object.__setattr__(self, "nonce", bytes(self.nonce))
        problem = self._problem()
        if problem is not None:
            raise InputError(problem)
        fields = _codec.DocumentFields(
            version=self.version,
            name=self.name,
            description=self.description,
            default_branch=self.default_branch,
            delegates=tuple(key.to_protobuf() for key in self.delegates),
            threshold=self.threshold,
            parent=self.parent,
            nonce=self.nonce,
        )
        object.__setattr__(self, "raw", _codec.encode_document(fields))

    def _problem(self) -> str | None:
        if self.version != IDENTITY_VERSION:
            return f"identity format version {self.version} is not supported (version {IDENTITY_VERSION} is)"
        if not self.name:
            return "the name is empty"
        problem = (
            _text_problem(self.name, "name")
            or _text_problem(self.description, "description", frozenset("\n\t"))
            or branch_problem(self.default_branch)
        )
        if problem is not None:
            return problem
        if not self.delegates:
            return "an identity needs at least one delegate"
        if not all(isinstance(key, PublicKey) for key in self.delegates):
            return "delegates are Ed25519 public keys"
        if len({key.raw for key in self.delegates}) != len(self.delegates):
            return "a delegate is listed twice"
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            return "the threshold is a number"
        if not 1 <= self.threshold <= len(self.delegates):
            return f"the threshold is {self.threshold}, not between 1 and the {len(self.delegates)} delegates"
        if self.parent and (len(self.parent) != 34 or self.parent[:2] != _SHA2_256):
            return "the parent is not a sha2-256 multihash"
        if not isinstance(self.nonce, bytes):
            return "the nonce is not bytes"
        if self.parent and self.nonce:
            return "a revision after the genesis has no nonce (its parent makes it unique)"
        if not self.parent and len(self.nonce) != _NONCE_SIZE:
            if not self.nonce:
                return f"a genesis needs a nonce of {_NONCE_SIZE} random bytes"
            return f"the nonce is {len(self.nonce)} bytes, not {_NONCE_SIZE}"
        return None

    def limit_problem(self, limits: IdentityLimits = _DEFAULT_LIMITS) -> str | None:
        """Why this document exceeds ``limits``, or ``None`` if it does not."""
        if len(self.raw) > limits.max_document:
            return f"the document is {len(self.raw)} bytes (limit {limits.max_document})"
        if len(self.name.encode()) > limits.max_name:
            return f"the name is longer than {limits.max_name} bytes"
        if len(self.description.encode()) > limits.max_description:
            return f"the description is longer than {limits.max_description} bytes"
        if len(self.delegates) > limits.max_delegates:
            return f"{len(self.delegates)} delegates (limit {limits.max_delegates})"
        return None

    @classmethod
    def decode(cls, data: bytes, limits: IdentityLimits = _DEFAULT_LIMITS) -> Identity:
        """Decode a document a peer sent, strictly (see the module docstring).

        Raises:
            InvalidIdentity: malformed, not canonical, over a limit, or
                breaking a rule of the constructor.
        """
        data = bytes(data)
        if len(data) > limits.max_document:
            raise InvalidIdentity(f"identity document of {len(data)} bytes (limit {limits.max_document})")
        try:
            fields = _codec.decode_document(data)
        except DecodeError as exc:
            raise InvalidIdentity(str(exc)) from None
        if fields.version != IDENTITY_VERSION:
            raise InvalidIdentity(f"identity format version {fields.version} is not supported")
        if len(fields.delegates) > limits.max_delegates:
            raise InvalidIdentity(f"identity document lists {len(fields.delegates)} delegates (limit {limits.max_delegates})")
        keys = []
        for index, encoded in enumerate(fields.delegates):
            try:
                keys.append(PublicKey.from_protobuf(encoded))
            except DecodeError as exc:
                raise InvalidIdentity(f"delegate {index} of the identity document: {exc}") from None
        try:
            document = cls(
                name=fields.name,
                description=fields.description,
                default_branch=fields.default_branch,
                delegates=tuple(keys),
                threshold=fields.threshold,
                parent=fields.parent,
                nonce=fields.nonce,
            )
        except InputError as exc:
            raise InvalidIdentity(f"invalid identity document: {exc}") from None
        problem = document.limit_problem(limits)
        if problem is not None:
            raise InvalidIdentity(f"identity document over a limit: {problem}")
        if document.raw != data:
            raise InvalidIdentity("identity document is not in the canonical encoding")
        return document

    @property
    def multihash(self) -> bytes:
        """sha2-256 multihash of :attr:`raw`: the next revision's parent,
        and the RID for a genesis."""
        return _multihash(self.raw)

    @property
    def digest(self) -> bytes:
        """The 32-byte sha2-256 digest of :attr:`raw` (what signed ref
        statements name as the revision their signer stood on)."""
        return hashlib.sha256(self.raw).digest()

    @property
    def is_genesis(self) -> bool:
        return not self.parent

    @property
    def delegate_ids(self) -> tuple[PeerId, ...]:
        """The delegates' peer ids, in the document's order."""
        return tuple(key.peer_id for key in self.delegates)

    def is_delegate(self, who: PublicKey | PeerId) -> bool:
        if isinstance(who, PeerId):
            return who in self.delegate_ids
        return any(key.raw == who.raw for key in self.delegates)


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature of a revision: the signer's key and its Ed25519
    signature of :func:`signing_payload`."""

    key: PublicKey
    signature: bytes


def signing_payload(rid: Rid, document: Identity) -> bytes:
    """What delegates sign: ``"guts identity v1\\n" || RID multihash ||
    document bytes``."""
    return SIGNING_DOMAIN + rid.multihash + document.raw


@dataclass(frozen=True, slots=True)
class SignedRevision:
    """An identity revision as it travels and is stored: the document and
    the signatures collected for it (not yet judged; see
    :func:`~guts.repo.revisions.verify_chain`)."""

    document: Identity
    signatures: tuple[Signature, ...] = ()

    def encode(self) -> bytes:
        """The ``SignedRevision`` protobuf, the document's bytes verbatim."""
        pairs = [(s.key.to_protobuf(), s.signature) for s in self.signatures]
        return _codec.encode_signed_revision(self.document.raw, pairs)

    @classmethod
    def decode(cls, data: bytes, limits: IdentityLimits = _DEFAULT_LIMITS) -> SignedRevision:
        """Decode a ``SignedRevision`` a peer sent.

        Raises:
            InvalidIdentity: malformed, over a limit, a signer key that is
                not Ed25519 or a signature that is not 64 bytes, or a
                document :meth:`Identity.decode` refuses.
        """
        data = bytes(data)
        bound = limits.max_document + limits.max_signatures * 110 + 16
        if len(data) > bound:
            raise InvalidIdentity(f"signed identity revision of {len(data)} bytes (limit {bound})")
        try:
            document, pairs = _codec.decode_signed_revision(data)
        except DecodeError as exc:
            raise InvalidIdentity(str(exc)) from None
        if len(pairs) > limits.max_signatures:
            raise InvalidIdentity(f"identity revision carries {len(pairs)} signatures (limit {limits.max_signatures})")
        signatures = []
        for index, (key, signature) in enumerate(pairs):
            try:
                public = PublicKey.from_protobuf(key)
            except DecodeError as exc:
                raise InvalidIdentity(f"signature {index} of an identity revision: {exc}") from None
            if len(signature) != 64:
                raise InvalidIdentity(f"signature {index} of an identity revision is not 64 bytes")
            signatures.append(Signature(public, signature))
        return cls(Identity.decode(document, limits), tuple(signatures))


def sign_revision(revision: SignedRevision, signer: KeyPair, rid: Rid) -> SignedRevision:
    """Add ``signer``'s signature to ``revision`` of repository ``rid``
    (unchanged if that key signed it already)."""
    if any(s.key.raw == signer.public_key.raw for s in revision.signatures):
        return revision
    signature = Signature(signer.public_key, signer.sign(signing_payload(rid, revision.document)))
    return SignedRevision(revision.document, (*revision.signatures, signature))


def create_genesis(
    signer: KeyPair,
    *,
    name: str,
    nonce: bytes,
    description: str = "",
    default_branch: str = "main",
    delegates: Sequence[PublicKey] | None = None,
    threshold: int = 1,
    limits: IdentityLimits = _DEFAULT_LIMITS,
) -> SignedRevision:
    """Make a new repository's genesis, signed by its creator.

    ``Rid.of_genesis(result.document.raw)`` is the new repository's id.

    Args:
        signer: the creator; must be one of ``delegates``.
        nonce: 16 bytes from a cryptographic random source
            (``os.urandom(16)``): what makes the RID new even when every
            other field equals another repository's. Passed in rather than
            drawn here so that tests and vectors can fix it; the same
            nonce with the same fields gives the same RID again.
        delegates: the delegates' keys (default: the creator alone).

    Raises:
        InputError: a field breaks a rule (a nonce that is not 16 bytes
            too), exceeds ``limits``, or the creator is not a delegate.
    """
    keys = tuple(delegates) if delegates is not None else (signer.public_key,)
    document = Identity(
        name=name,
        description=description,
        default_branch=default_branch,
        delegates=keys,
        threshold=threshold,
        nonce=nonce,
    )
    if not document.is_delegate(signer.public_key):
        raise InputError("the creator of a repository must be one of its delegates")
    problem = document.limit_problem(limits)
    if problem is not None:
        raise InputError(problem)
    return sign_revision(SignedRevision(document), signer, Rid.of_genesis(document.raw))
