"""Repository ids (RIDs): what names a repository on the network and to git.

A RID is the sha2-256 multihash of the repository's genesis identity
document (:mod:`guts.repo.identity`), written as a CIDv1 of codec raw
(0x55) in base32: ``bafkrei…``. Any libp2p kad-dht can provide and find it
as it is, since the DHT key of a CID is its multihash. git reaches the
repository at ``guts://<RID>``.

The same multihash serves three readers, each with its own error: text a
person wrote (a command-line argument, a git URL) fails as
:class:`~guts.errors.InvalidRid`, an :class:`~guts.errors.InputError`;
bytes a peer sent fail as :class:`~guts.errors.DecodeError`; and a RID
inside a signed statement fails as that statement's error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from guts.cid import Cid, InvalidCid
from guts.errors import DecodeError, InvalidRid

__all__ = ["RID_CODEC", "URL_SCHEME", "Rid"]

#: The CID codec of a RID: raw, for the bytes of a document.
RID_CODEC = 0x55
#: The scheme of a repository's git URL.
URL_SCHEME = "guts://"

_SHA2_256 = b"\x12\x20"


@dataclass(frozen=True, slots=True, repr=False)
class Rid:
    """A repository id.

    Args:
        multihash: the 34-byte sha2-256 multihash of the genesis document;
            also the repository's DHT key.

    Raises:
        DecodeError: ``multihash`` is not a sha2-256 multihash (these bytes
            come from peers; text a person wrote goes through :meth:`parse`).
    """

    multihash: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.multihash, bytes):
            object.__setattr__(self, "multihash", bytes(self.multihash))
        if len(self.multihash) != 34 or self.multihash[:2] != _SHA2_256:
            raise DecodeError("a repository id is a 34-byte sha2-256 multihash")

    @classmethod
    def of_genesis(cls, document: bytes) -> Rid:
        """The id of the repository whose genesis document is ``document``
        (its exact bytes)."""
        return cls(_SHA2_256 + hashlib.sha256(document).digest())

    @classmethod
    def parse(cls, text: str) -> Rid:
        """Parse a RID's text: a CIDv1 of codec raw over a sha2-256
        multihash, in any multibase (``bafkrei…`` is how Guts writes it).

        Raises:
            InvalidRid: ``text`` is not one.
        """
        try:
            cid = Cid.parse(text)
        except InvalidCid as exc:
            raise InvalidRid(f"not a repository id: {exc}") from None
        if cid.version != 1 or cid.codec != RID_CODEC or cid.multihash[:2] != _SHA2_256:
            raise InvalidRid(
                f"{text!r} is a CID but not a repository id (a CIDv1 of codec raw over a sha2-256 multihash)"
            )
        return cls(cid.multihash)

    @classmethod
    def from_git_url(cls, url: str) -> Rid:
        """Parse a ``guts://<RID>`` URL (a trailing ``/`` is allowed).

        Raises:
            InvalidRid: ``url`` is not one.
        """
        if not isinstance(url, str) or not url.startswith(URL_SCHEME):
            raise InvalidRid(f"{url[:80]!r} is not a guts:// URL" if isinstance(url, str) else "not a guts:// URL")
        body = url[len(URL_SCHEME):]
        return cls.parse(body[:-1] if body.endswith("/") else body)

    @property
    def git_url(self) -> str:
        """``guts://<RID>``, the URL git clones."""
        return URL_SCHEME + str(self)

    @property
    def cid(self) -> Cid:
        return Cid(1, RID_CODEC, self.multihash)

    def __str__(self) -> str:
        return self.cid.encode("base32")

    def __repr__(self) -> str:
        return f"Rid({str(self)!r})"
