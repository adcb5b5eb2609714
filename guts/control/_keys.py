"""How the command line names DHT keys.

``guts dht find-peers KEY``, ``provide KEY`` and ``find-providers KEY`` take
either a peer id (its bytes are the key, as in FIND_NODE) or any other
string, such as a repository id, whose key is the sha2-256 multihash of its
UTF-8 bytes: the same 34 bytes a CID v1 of that content carries, so js-libp2p
nodes find the same providers. ``find-peers`` of a name therefore lists the
peers that hold its provider records. The DHT places every key in its key
space by SHA-256 of these bytes (libp2p/specs kad-dht).

``guts dht put KEY VALUE`` and ``get KEY`` name records: a KEY starting with
``/`` is used as it is (``/pk/...``), any other lives in the ``/guts/``
namespace.
"""

from __future__ import annotations

import hashlib

from guts.peer import InvalidPeerId, PeerId

__all__ = ["SHA2_256", "dht_key", "record_key"]

#: multihash code and digest length of sha2-256
SHA2_256 = bytes([0x12, 0x20])
MAX_KEY_TEXT = 1024


def dht_key(text: str) -> bytes:
    """The DHT key of a peer id or a name.

    Raises:
        ValueError: ``text`` is empty or longer than 1 KiB.
    """
    _check(text)
    try:
        return PeerId.from_string(text).to_bytes()
    except InvalidPeerId:
        return SHA2_256 + hashlib.sha256(text.encode()).digest()


def record_key(text: str) -> bytes:
    """The record key of ``text``: as given under ``/ns/``, else ``/guts/<text>``.

    Raises:
        ValueError: ``text`` is empty, too long, or an empty namespace.
    """
    _check(text)
    if text.startswith("/"):
        if text.count("/") < 2 or text.startswith("//"):
            raise ValueError(f"a record key looks like /namespace/name, got {text!r}")
        return text.encode()
    return b"/guts/" + text.encode()


def _check(text: str) -> None:
    if not text:
        raise ValueError("the key is empty")
    if len(text) > MAX_KEY_TEXT:
        raise ValueError(f"the key is longer than {MAX_KEY_TEXT} characters")
