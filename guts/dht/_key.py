"""Keys of the Kademlia key space.

Every key (a peer id's bytes, a provider multihash, a ``/ns/...`` value
key) is placed in the 256-bit key space by SHA-256, and distance is the
XOR of two such points (libp2p/specs kad-dht, "Distance"). Points are
plain Python ints: XOR, comparison and ``bit_length`` on 256-bit ints
are fast and need no helper class.

Buckets are numbered by the position of the highest differing bit:
bucket ``i`` holds the points whose distance ``d`` from us satisfies
``2**i <= d < 2**(i + 1)``. Bucket 255 is the far half of the key space,
bucket 0 the one point next to us. The common prefix length of two points
is ``255 - bucket``.
"""

from __future__ import annotations

import hashlib
import random

__all__ = [
    "KEY_BITS",
    "bucket_index",
    "common_prefix_length",
    "distance",
    "kad_key",
    "random_key_bytes_in_bucket",
    "show_key",
]

KEY_BITS = 256


def kad_key(key: bytes) -> int:
    """The point of ``key`` in the key space: SHA-256 as a big-endian int."""
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


def distance(a: int, b: int) -> int:
    """XOR distance of two points."""
    return a ^ b


def bucket_index(local: int, other: int) -> int | None:
    """The bucket of ``other`` seen from ``local``, or ``None`` if they are equal."""
    d = local ^ other
    if d == 0:
        return None
    return d.bit_length() - 1


def common_prefix_length(a: int, b: int) -> int:
    """How many leading bits the two points share (256 when equal)."""
    return KEY_BITS - (a ^ b).bit_length()


def random_key_bytes_in_bucket(
    local: int, index: int, rng: random.Random, *, max_tries: int = 1 << 18
) -> bytes | None:
    """Key bytes (a SHA2-256 peer id multihash) whose point falls in bucket ``index``.

    A lookup to refresh a bucket must send the *key* on the wire, and the
    remote hashes it, so we cannot pick the point directly: we draw random
    peer ids until one lands in the bucket. A bucket ``i`` is hit with
    probability ``2**(i - 256)``, so this is only sensible for the far
    buckets (``index >= 240``: at most 2**17 tries on average); past
    ``max_tries`` it gives up and returns ``None``.
    """
    for _ in range(max_tries):
        candidate = b"\x12\x20" + rng.randbytes(32)
        if bucket_index(local, kad_key(candidate)) == index:
            return candidate
    return None


def show_key(key: bytes) -> str:
    """A key for log lines and errors: ``/ns/name`` as text when it is
    printable, else hex."""
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return key.hex()
    return text if text.isprintable() else key.hex()
