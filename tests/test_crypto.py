"""Ed25519 identity keys: encodings, signatures and the key file."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from guts.crypto import KeyPair, PublicKey, UnsupportedKeyType, load_or_create_keypair
from guts.errors import ConfigError, DecodeError, GutsError
from guts.pb import crypto_pb2

SEED_1 = bytes(31) + b"\x01"
PEER_1 = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def test_public_surface() -> None:
    import guts.crypto

    assert sorted(guts.crypto.__all__) == ["KeyPair", "PublicKey", "UnsupportedKeyType", "load_or_create_keypair"]


def test_seed_vector() -> None:
    pair = KeyPair.from_seed(SEED_1)
    assert str(pair.peer_id) == PEER_1
    assert pair.seed == SEED_1
    assert pair.public_key.to_protobuf() == b"\x08\x01\x12\x20" + pair.public_key.raw


def test_generate_gives_distinct_working_keys() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert a != b and a.peer_id != b.peer_id
    assert a.public_key.verify(b"data", a.sign(b"data"))


def test_seed_is_not_in_repr() -> None:
    pair = KeyPair.from_seed(bytes(range(32)))
    assert "seed" not in repr(pair)
    assert repr(bytes(range(32))) not in repr(pair)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_seed_length(seed: bytes) -> None:
    with pytest.raises(ValueError):
        KeyPair.from_seed(seed)


def test_public_key_length() -> None:
    with pytest.raises(ValueError):
        PublicKey(bytes(31))
    assert PublicKey(bytearray(32)).raw == bytes(32)


def test_constructor_checks_the_halves_match() -> None:
    pair = KeyPair.from_seed(SEED_1)
    assert KeyPair(SEED_1, pair.public_key) == pair
    with pytest.raises(ValueError):
        KeyPair(SEED_1, KeyPair.generate().public_key)


def test_key_pair_pickles() -> None:
    import pickle

    pair = KeyPair.from_seed(SEED_1)
    copy = pickle.loads(pickle.dumps(pair))
    assert copy == pair and copy.sign(b"x") == pair.sign(b"x")


def test_sign_and_verify() -> None:
    pair = KeyPair.from_seed(SEED_1)
    signature = pair.sign(b"message")
    assert len(signature) == 64
    assert signature == pair.sign(b"message")  # Ed25519 is deterministic
    key = pair.public_key
    assert key.verify(b"message", signature)
    assert not key.verify(b"messagf", signature)
    assert not key.verify(b"message", signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not key.verify(b"message", signature[:63])
    assert not key.verify(b"message", b"")
    assert not KeyPair.generate().public_key.verify(b"message", signature)


def test_verify_with_a_key_that_is_not_a_curve_point() -> None:
    # Not every 32-byte string decodes to a point; verify must just say no.
    for raw in (bytes(32), b"\xff" * 32, b"\x02" + bytes(31)):
        assert not PublicKey(raw).verify(b"m", bytes(64))


def test_public_key_protobuf_round_trip() -> None:
    key = KeyPair.generate().public_key
    assert PublicKey.from_protobuf(key.to_protobuf()) == key
    assert PublicKey.from_protobuf(memoryview(key.to_protobuf())) == key


def test_public_key_from_non_canonical_protobuf() -> None:
    # Fields in the other order: still a valid message.
    key = KeyPair.from_seed(SEED_1).public_key
    data = b"\x12\x20" + key.raw + b"\x08\x01"
    assert PublicKey.from_protobuf(data) == key


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x08\x01",  # no Data
        b"\x12\x20" + bytes(32),  # no Type
        b"\x08\x01\x12\x1f" + bytes(31),  # short key
        b"\x08\x01\x12\x21" + bytes(33),  # long key
        b"\x08\x01\x12\x20" + bytes(31),  # truncated
        b"\xff\xff\xff",
        b"\x08\x09\x12\x20" + bytes(32),  # unknown key type
    ],
)
def test_public_key_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        PublicKey.from_protobuf(data)


@pytest.mark.parametrize("key_type", ["RSA", "Secp256k1", "ECDSA"])
def test_other_key_types_are_refused_clearly(key_type: str) -> None:
    data = crypto_pb2.PublicKey(Type=key_type, Data=bytes(33)).SerializeToString()
    with pytest.raises(UnsupportedKeyType, match=f"{key_type}.*Ed25519") as info:
        PublicKey.from_protobuf(data)
    assert isinstance(info.value, DecodeError) and isinstance(info.value, GutsError)


def test_peer_id_is_cached() -> None:
    key = KeyPair.generate().public_key
    assert key.peer_id is key.peer_id
    assert key == PublicKey(key.raw)  # the cache takes no part in equality
    assert hash(key) == hash(PublicKey(key.raw))


def test_private_key_protobuf_round_trip() -> None:
    pair = KeyPair.from_seed(SEED_1)
    data = pair.to_protobuf()
    assert data == b"\x08\x01\x12\x40" + SEED_1 + pair.public_key.raw
    assert KeyPair.from_protobuf(data) == pair


def test_private_key_legacy_96_byte_form() -> None:
    pair = KeyPair.from_seed(SEED_1)
    raw = SEED_1 + pair.public_key.raw + pair.public_key.raw
    data = crypto_pb2.PrivateKey(Type="Ed25519", Data=raw).SerializeToString()
    assert KeyPair.from_protobuf(data) == pair
    bad = crypto_pb2.PrivateKey(Type="Ed25519", Data=raw[:-1] + b"\x00").SerializeToString()
    with pytest.raises(DecodeError):
        KeyPair.from_protobuf(bad)


def test_private_key_with_foreign_public_half() -> None:
    other = KeyPair.generate().public_key.raw
    data = crypto_pb2.PrivateKey(Type="Ed25519", Data=SEED_1 + other).SerializeToString()
    with pytest.raises(DecodeError, match="does not match"):
        KeyPair.from_protobuf(data)


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_private_key_bad_length(length: int) -> None:
    data = crypto_pb2.PrivateKey(Type="Ed25519", Data=bytes(length)).SerializeToString()
    with pytest.raises(DecodeError):
        KeyPair.from_protobuf(data)


def test_private_key_other_type() -> None:
    data = crypto_pb2.PrivateKey(Type="Secp256k1", Data=bytes(32)).SerializeToString()
    with pytest.raises(UnsupportedKeyType):
        KeyPair.from_protobuf(data)


# -- the key file -----------------------------------------------------------


@posix_only
def test_key_file_is_created_private(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a" / "b" / "identity.key"
    old_umask = os.umask(0)  # the modes must not rely on a friendly umask
    try:
        pair = load_or_create_keypair(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert path.read_bytes() == pair.to_protobuf()
    assert os.listdir(path.parent) == ["identity.key"]  # no temporary file left
    assert load_or_create_keypair(path) == pair


def test_key_file_written_by_others_is_loaded(tmp_path: pathlib.Path) -> None:
    pair = KeyPair.from_seed(SEED_1)
    path = tmp_path / "key"
    path.write_bytes(pair.to_protobuf())
    path.chmod(0o600)
    assert load_or_create_keypair(path) == pair


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_key_file_readable_by_others_is_refused(tmp_path: pathlib.Path, mode: int) -> None:
    path = tmp_path / "key"
    path.write_bytes(KeyPair.generate().to_protobuf())
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_keypair(path)


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x01\x12\x40" + bytes(10), bytes(5000)])
def test_corrupt_key_file_is_refused_not_replaced(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        load_or_create_keypair(path)
    assert path.read_bytes() == content


@posix_only
def test_key_path_that_is_a_fifo(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "key"
    os.mkfifo(path, 0o600)
    with pytest.raises(ConfigError, match="regular file"):
        load_or_create_keypair(path)


def test_key_path_that_is_a_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError):
        load_or_create_keypair(tmp_path)


def test_key_file_under_a_file(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(ConfigError):
        load_or_create_keypair(blocker / "home" / "key")
