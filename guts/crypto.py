"""Ed25519 identity keys and their libp2p encodings.

A Guts node is identified by an Ed25519 key pair (libp2p/specs
``peer-ids/peer-ids.md``). Keys cross the wire as the spec's ``PublicKey``
protobuf and are stored on disk as its ``PrivateKey`` protobuf, the same
bytes go-libp2p and js-libp2p write, so an identity can move between
implementations.

Only Ed25519 is supported. The spec makes RSA mandatory, but every
current libp2p implementation defaults to Ed25519 and Guts refuses other
key types with :class:`UnsupportedKeyType` rather than carrying RSA,
secp256k1 and ECDSA code paths nobody here exercises.

Signing and verification call libsodium (through PyNaCl's low-level
bindings) directly: they sit on the Noise handshake path, and skipping
PyNaCl's wrapper objects keeps a sign at ~25 µs and a verify at ~60 µs.
"""

from __future__ import annotations

import logging
import os
import pathlib
import stat
import tempfile
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import ConfigError, DecodeError
from guts.pb import crypto_pb2
from guts.peer import PeerId

__all__ = [
    "KeyPair",
    "PublicKey",
    "UnsupportedKeyType",
    "load_or_create_keypair",
]

_log = logging.getLogger(__name__)

_ED25519 = crypto_pb2.KeyType.Ed25519
_KEY_TYPE_NAMES = {0: "RSA", 1: "Ed25519", 2: "Secp256k1", 3: "ECDSA"}

#: Canonical protobuf prefix of an Ed25519 ``PublicKey``: field 1 (Type)
#: = 1, field 2 (Data) of length 32. Written by hand because the bytes are
#: hashed into peer ids and must never depend on a serializer's choices.
_PUBLIC_PREFIX = b"\x08\x01\x12\x20"
#: Same for a ``PrivateKey`` whose Data is seed || public key (64 bytes).
_PRIVATE_PREFIX = b"\x08\x01\x12\x40"

#: A private key file is a ~68-byte protobuf; anything much larger is not one.
_MAX_KEY_FILE = 4096


class UnsupportedKeyType(DecodeError):
    """A well-formed key of a type Guts does not accept (RSA, secp256k1, ECDSA).

    A :class:`~guts.errors.DecodeError` because it is raised while decoding
    bytes from the network or from disk: callers treat it like any other
    key they cannot use. The Noise handshake turns it into a
    :class:`~guts.errors.HandshakeError`.
    """


def _decode_key_message(
    message: crypto_pb2.PublicKey | crypto_pb2.PrivateKey, data: bytes, what: str
) -> bytes:
    """Parse ``data`` into ``message`` and return the Ed25519 ``Data`` field."""
    try:
        message.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed {what} protobuf: {exc}") from None
    # proto2 enums: an unknown Type value is kept as an unknown field and
    # the field reads as its default (RSA), so HasField is the real check.
    if not message.HasField("Type") or not message.HasField("Data"):
        raise DecodeError(f"{what} protobuf lacks Data or a known key Type")
    if message.Type != _ED25519:
        name = _KEY_TYPE_NAMES.get(message.Type, str(message.Type))
        raise UnsupportedKeyType(f"{name} {what}s are not supported: Guts identities are Ed25519")
    return message.Data


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key.

    Args:
        raw: the 32-byte key as defined by RFC 8032.

    Raises:
        ValueError: ``raw`` is not 32 bytes.
    """

    raw: bytes
    _peer_id: PeerId | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes):
            object.__setattr__(self, "raw", bytes(self.raw))
        if len(self.raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    def to_protobuf(self) -> bytes:
        """Encode as the libp2p ``PublicKey`` protobuf (``08 01 12 20 <key>``).

        The encoding is canonical: it is what peer ids are derived from.
        """
        return _PUBLIC_PREFIX + self.raw

    @classmethod
    def from_protobuf(cls, data: bytes) -> PublicKey:
        """Decode a libp2p ``PublicKey`` protobuf.

        Raises:
            DecodeError: the bytes are not a valid ``PublicKey`` message or
                the key is not 32 bytes.
            UnsupportedKeyType: the key is valid but not Ed25519.
        """
        if len(data) == 36 and data[:4] == _PUBLIC_PREFIX:  # the common, canonical case
            return cls(bytes(data[4:]))
        raw = _decode_key_message(crypto_pb2.PublicKey(), bytes(data), "public key")
        if len(raw) != 32:
            raise DecodeError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
        return cls(raw)

    @classmethod
    def from_peer_id(cls, peer: PeerId) -> PublicKey | None:
        """The public key inlined in an identity-multihash peer id.

        Returns:
            The key, or ``None`` when the id is a hash of the key (or inlines
            a key type Guts does not support, such as secp256k1): the key
            must then come from the peer itself, for instance in the Noise
            handshake or identify.
        """
        encoded = peer.inlined_key()
        if encoded is None:
            return None
        try:
            return cls.from_protobuf(encoded)
        except DecodeError:
            return None

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Check an Ed25519 ``signature`` of ``data``.

        Returns:
            ``True`` if the signature is valid, ``False`` otherwise
            (including a signature of the wrong length or a public key that
            is not a valid curve point).
        """
        if len(signature) != 64:
            return False
        try:
            nacl.bindings.crypto_sign_open(bytes(signature) + bytes(data), self.raw)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            return False
        return True

    @property
    def peer_id(self) -> PeerId:
        """The peer id derived from this key (computed once, then cached)."""
        pid = self._peer_id
        if pid is None:
            pid = PeerId.from_public_key(self)
            object.__setattr__(self, "_peer_id", pid)
        return pid


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 identity key pair.

    Usually built with :meth:`generate`, :meth:`from_seed` or
    :meth:`from_protobuf`. The seed is kept out of ``repr`` so that a key
    pair in a log line or a traceback does not leak it.

    Args:
        seed: the 32-byte RFC 8032 private key.
        public_key: its public key.

    Raises:
        ValueError: ``seed`` is not 32 bytes or ``public_key`` is not its
            public key.
    """

    seed: bytes = field(repr=False)
    public_key: PublicKey
    _secret: bytes = field(default=b"", init=False, repr=False, compare=False)  # libsodium's form

    def __post_init__(self) -> None:
        seed = bytes(self.seed)
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        if public != self.public_key.raw:
            raise ValueError("the public key does not belong to the seed")
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "_secret", secret)

    @classmethod
    def generate(cls) -> KeyPair:
        """Create a key pair from 32 bytes of OS randomness."""
        return cls.from_seed(os.urandom(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """Derive the key pair of a 32-byte RFC 8032 seed (private key).

        Raises:
            ValueError: ``seed`` is not 32 bytes.
        """
        seed = bytes(seed)
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
        return cls(seed, PublicKey(public))

    @property
    def peer_id(self) -> PeerId:
        """The peer id of this identity."""
        return self.public_key.peer_id

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return nacl.bindings.crypto_sign(bytes(data), self._secret)[:64]

    def to_protobuf(self) -> bytes:
        """Encode as the libp2p ``PrivateKey`` protobuf.

        ``Data`` is seed || public key (64 bytes), the layout go-libp2p and
        js-libp2p write, so the file can be used by either.
        """
        return _PRIVATE_PREFIX + self.seed + self.public_key.raw

    @classmethod
    def from_protobuf(cls, data: bytes) -> KeyPair:
        """Decode a libp2p ``PrivateKey`` protobuf.

        Accepts the 64-byte ``seed || public`` layout and the legacy 96-byte
        ``seed || public || public`` one; in both the stored public key must
        match the one derived from the seed, which catches corrupted files.

        Raises:
            DecodeError: malformed message, wrong length, or a public key
                that does not belong to the seed.
            UnsupportedKeyType: the key is not Ed25519.
        """
        raw = _decode_key_message(crypto_pb2.PrivateKey(), bytes(data), "private key")
        if len(raw) not in (64, 96):
            raise DecodeError(f"Ed25519 private key data must be 64 or 96 bytes, got {len(raw)}")
        pair = cls.from_seed(raw[:32])
        stored = [raw[32:64]] if len(raw) == 64 else [raw[32:64], raw[64:96]]
        if any(public != pair.public_key.raw for public in stored):
            raise DecodeError("Ed25519 private key data holds a public key that does not match its seed")
        return pair


def _make_private_dirs(directory: pathlib.Path) -> None:
    """Create ``directory`` and any missing parent with mode 0700.

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last
    directory only; a key directory's parents we create are private too.
    """
    missing: list[pathlib.Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # created concurrently: fine


def _read_keypair(path: pathlib.Path) -> KeyPair:
    # O_NONBLOCK: a FIFO planted at the path must not hang the node.
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"identity key {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigError(
                f"identity key {path} is accessible by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}` and retry"
            )
        data = os.read(fd, _MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"identity key {path} is too large to be a libp2p private key")
    try:
        return KeyPair.from_protobuf(data)
    except DecodeError as exc:
        raise ConfigError(f"identity key {path} is unusable: {exc}") from exc


def _write_new_keypair(path: pathlib.Path, pair: KeyPair) -> bool:
    """Write ``pair`` to ``path`` unless it exists; return whether we wrote it.

    The key goes to a temporary file in the same directory (``mkstemp``
    creates it 0600, so it is never readable by others, not even for an
    instant), is flushed to disk, then hard-linked into place: ``link``
    fails if ``path`` appeared meanwhile, so two processes starting at once
    agree on one identity instead of the second silently replacing the
    first's key. File systems without hard links fall back to ``replace``.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.write(fd, pair.to_protobuf())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    try:  # make the new directory entry durable too
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return True
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return True


def load_or_create_keypair(path: pathlib.Path) -> KeyPair:
    """Load the node identity from ``path``, creating it on first use.

    The file holds the libp2p ``PrivateKey`` protobuf. Missing parent
    directories are created with mode 0700 and the file with mode 0600.

    An existing file that other users can read or write (any of the mode
    bits 0077 set) is refused rather than merely warned about, the way
    OpenSSH refuses an unprotected private key: a leaked identity key lets
    anyone impersonate the node, and the fix (``chmod 600``) is one command.
    The check applies on POSIX systems only.

    Args:
        path: the key file.

    Returns:
        The key pair stored at ``path``.

    Raises:
        ConfigError: the file is not private, not a regular file, or does
            not hold an Ed25519 ``PrivateKey`` protobuf; or it cannot be
            read or created.
    """
    path = pathlib.Path(path)
    try:
        try:
            return _read_keypair(path)
        except FileNotFoundError:
            pass
        _make_private_dirs(path.parent)
        pair = KeyPair.generate()
        if _write_new_keypair(path, pair):
            _log.info("created identity key %s for peer %s", path, pair.peer_id)
            return pair
        return _read_keypair(path)  # another process created it first
    except OSError as exc:
        raise ConfigError(f"identity key {path}: {exc.strerror or exc}") from exc
