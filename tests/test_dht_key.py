"""Keys: SHA-256 points, XOR distance, bucket numbering."""

import hashlib
import random

from guts.dht._key import (
    KEY_BITS,
    bucket_index,
    common_prefix_length,
    distance,
    kad_key,
    random_key_bytes_in_bucket,
)


def test_kad_key_is_sha256_big_endian() -> None:
    assert kad_key(b"") == int.from_bytes(hashlib.sha256(b"").digest(), "big")
    assert kad_key(b"abc").bit_length() <= KEY_BITS


def test_distance_is_xor_metric() -> None:
    rng = random.Random(1)
    for _ in range(100):
        a, b, c = (rng.getrandbits(256) for _ in range(3))
        assert distance(a, a) == 0
        assert distance(a, b) == distance(b, a)
        # XOR satisfies the triangle inequality (d(a,c) <= d(a,b) + d(b,c))
        assert distance(a, c) <= distance(a, b) + distance(b, c)


def test_bucket_index_and_prefix() -> None:
    assert bucket_index(0, 0) is None
    assert bucket_index(0, 1) == 0
    assert bucket_index(0, 2) == 1 and bucket_index(0, 3) == 1
    assert bucket_index(0, 1 << 255) == 255
    assert common_prefix_length(0, 1 << 255) == 0
    assert common_prefix_length(5, 5) == 256
    assert common_prefix_length(0, 1) == 255


def test_random_key_in_bucket() -> None:
    rng = random.Random(7)
    local = kad_key(b"me")
    for index in (255, 250, 245):
        key = random_key_bytes_in_bucket(local, index, rng)
        assert key is not None and key[:2] == b"\x12\x20"
        assert bucket_index(local, kad_key(key)) == index
    assert random_key_bytes_in_bucket(local, 10, rng, max_tries=100) is None
