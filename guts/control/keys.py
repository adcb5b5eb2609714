"""How the command line names DHT keys.

``guts dht find-peers KEY``, ``provide KEY`` and ``find-providers KEY`` read
KEY by three rules, in this order:

1. A peer id (``12D3KooW…``, ``Qm…``, or a CID with codec libp2p-key:
   ``bafz…``, ``k51…``): its multihash, as in FIND_NODE.
2. A CID (:mod:`guts.cid`: ``Qm…``, ``bafy…``, ``bafk…``, ``z…``, ``k…``,
   ``f…``, ``m…``, ``u…``): its multihash, the key js and go nodes provide
   a CID under (``ipfs routing findprovs CID`` looks there).
3. Any other string, such as a repository id: the sha2-256 multihash of its
   UTF-8 bytes, the multihash a CID of that content carries.

Text that is plainly a CID gone wrong (see :func:`guts.cid.recognize_cid`)
is refused rather than hashed: a mistyped CID would otherwise name a key
nobody uses, and the lookup would find nothing without saying why.
``find-peers`` of a name or a CID lists the peers that hold its provider
records. The DHT places every key in its key space by SHA-256 of these
bytes (libp2p/specs kad-dht).

``guts dht put KEY VALUE`` and ``get KEY`` name records: a KEY starting with
``/`` is used as it is (``/pk/...``), any other lives in the ``/guts/``
namespace.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from guts.cid import Cid, recognize_cid
from guts.errors import InputError
from guts.peer import InvalidPeerId, PeerId

__all__ = ["SHA2_256", "DhtKey", "dht_key", "read_dht_key", "record_key"]

#: multihash code and digest length of sha2-256
SHA2_256 = bytes([0x12, 0x20])
MAX_KEY_TEXT = 1024


#: multicodec of a peer id written as a CID
_LIBP2P_KEY = 0x72


@dataclass(frozen=True, slots=True)
class DhtKey:
    """What a KEY names, and the DHT key that is.

    Attributes:
        key: the key's bytes (a multihash).
        peer: the peer id, when KEY is one (rule 1).
        cid: the CID, when KEY is one (rule 2; also for a peer id written
            as a CID).
    """

    key: bytes
    peer: PeerId | None = None
    cid: Cid | None = None

    @property
    def kind(self) -> str:
        """How KEY was read, for people: ``peer id``, ``CID v1 raw
        sha2-256``, ``name``..."""
        if self.peer is not None:
            return "peer id or CID v0" if self.cid is not None and self.cid.version == 0 else "peer id"
        if self.cid is not None:
            return f"CID v{self.cid.version} {self.cid.codec_name} {self.cid.hash_name}"
        return "name"


def read_dht_key(text: str) -> DhtKey:
    """Read KEY by the three rules of this module.

    Raises:
        InputError: ``text`` is empty, longer than 1 KiB, a CID gone wrong,
            or a libp2p-key CID that holds no peer id.
    """
    _check(text)
    try:
        peer = PeerId.from_string(text)
    except InvalidPeerId:
        pass
    else:
        # Qm… is a hashed key's peer id and a CID v0 alike: the same multihash.
        return DhtKey(peer.to_bytes(), peer=peer, cid=recognize_cid(text) if text.startswith("Qm") else None)
    cid = recognize_cid(text)
    if cid is None:
        return DhtKey(SHA2_256 + hashlib.sha256(text.encode()).digest())
    if cid.codec == _LIBP2P_KEY:
        # A peer id in a base PeerId.from_string does not read (base36 k51…).
        try:
            peer = PeerId.from_bytes(cid.multihash)
        except InvalidPeerId as exc:
            raise InputError(f"{text!r} is a libp2p-key CID but holds no peer id: {exc}") from None
        return DhtKey(peer.to_bytes(), peer=peer, cid=cid)
    return DhtKey(cid.multihash, cid=cid)


def dht_key(text: str) -> bytes:
    """The DHT key of a peer id, a CID or a name (:func:`read_dht_key`).

    Raises:
        InputError: as :func:`read_dht_key`.
    """
    return read_dht_key(text).key


def record_key(text: str) -> bytes:
    """The record key of ``text``: as given under ``/ns/``, else ``/guts/<text>``.

    Raises:
        InputError: ``text`` is empty, too long, or an empty namespace.
    """
    _check(text)
    if text.startswith("/"):
        if text.count("/") < 2 or text.startswith("//"):
            raise InputError(f"a record key looks like /namespace/name, got {text!r}")
        return text.encode()
    return b"/guts/" + text.encode()


def _check(text: str) -> None:
    if not text:
        raise InputError("the key is empty")
    if len(text) > MAX_KEY_TEXT:
        raise InputError(f"the key is longer than {MAX_KEY_TEXT} characters")
