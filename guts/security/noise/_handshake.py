"""The libp2p Noise XX handshake as a sans-IO state machine.

Theory of operation
-------------------
``Noise_XX_25519_ChaChaPoly_SHA256`` with an empty prologue (Noise
protocol framework rev 34; libp2p/specs ``noise/README.md``)::

    -> e                      message 1, initiator: ephemeral key, no payload
    <- e, ee, s, es           message 2, responder: + its signed payload
    -> s, se                  message 3, initiator: + its signed payload

Each message travels in a frame with a 2-byte big-endian length. The
payload is a ``NoiseHandshakePayload`` protobuf: the sender's libp2p
identity key, its Ed25519 signature over ``"noise-libp2p-static-key:" ||
static X25519 public key`` (which binds the identity to the Noise static
key the handshake authenticated), and extensions listing the stream
muxers it supports, so the muxer can be chosen without another round of
multistream-select.

States, per role (the table is the whole state machine)::

    initiator: SEND_E -> (message 1 queued at construction) -> WAIT_2
               WAIT_2 --message 2--> (message 3 queued)      -> DONE
    responder: WAIT_1 --message 1--> (message 2 queued)      -> WAIT_3
               WAIT_3 --message 3-->                          -> DONE

Any error leaves the machine in FAILED; it then refuses further input.
Bytes that arrive after the last handshake message are the peer's first
transport frames (the initiator may write them right behind message 3)
and are kept for :meth:`NoiseHandshake.unused_data`.

Nothing here imports trio: keys are injectable so that a test can pin the
whole transcript, and the caller moves the bytes.

The static key and the signed payload depend only on who we are, so a host
builds one :class:`NoiseIdentity` and shares it across its handshakes, as
go-libp2p and js-libp2p keep one static key per Noise instance and
rust-libp2p's ``noise::Config`` signs its key once: a handshake then costs
one X25519 key generation (the ephemeral, always fresh, which is what gives
forward secrecy) and no signature.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings
from google.protobuf.message import DecodeError as _PbDecodeError

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, HandshakeError, LocalProtocolError, PeerIdMismatch
from guts.pb import noise_pb2
from guts.peer import PeerId
from guts.security.noise._transport import MAX_FRAME, TAG_LEN, CipherState, frame

__all__ = [
    "NOISE_PROTOCOL_NAME",
    "SIGNATURE_PREFIX",
    "NoiseHandshake",
    "NoiseIdentity",
    "NoiseResult",
    "decode_payload",
    "encode_payload",
]

#: The Noise protocol name; it is exactly 32 bytes (HASHLEN), so it is
#: used as the initial handshake hash unpadded and unhashed.
NOISE_PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
#: What the identity key signs, followed by the Noise static public key.
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"

_DHLEN = 32
#: A host advertises one muxer list; this only bounds a misuse.
_MAX_CACHED_PAYLOADS = 8
_unpack_len = struct.Struct(">H").unpack_from


class _State(enum.Enum):
    WAIT_1 = "responder waits for message 1"
    WAIT_2 = "initiator waits for message 2"
    WAIT_3 = "responder waits for message 3"
    DONE = "handshake complete"
    FAILED = "handshake failed"


@dataclass(frozen=True, slots=True)
class NoiseResult:
    """What a completed handshake established.

    Attributes:
        remote_peer: the authenticated peer id of the remote.
        remote_public_key: its identity key.
        remote_muxers: the stream muxers it listed in its payload
            extensions, in its order of preference (may be empty).
        send_cipher: encrypts our transport messages.
        receive_cipher: decrypts the remote's transport messages.
        handshake_hash: the final Noise handshake hash ``h``, a value
            both sides share that is unique to this session (usable for
            channel binding, and pinned by the conformance vectors).
    """

    remote_peer: PeerId
    remote_public_key: PublicKey
    remote_muxers: tuple[str, ...]
    send_cipher: CipherState
    receive_cipher: CipherState
    handshake_hash: bytes


def encode_payload(
    keypair: KeyPair, static_public: bytes, muxers: Sequence[str], *, signature: bytes | None = None
) -> bytes:
    """Build the ``NoiseHandshakePayload`` for our identity.

    Extensions are always present, as js-libp2p sends them: ``22 00`` when
    ``muxers`` is empty, ``22 0e 12 0c "/yamux/1.0.0"`` for yamux alone.
    ``signature`` is ``keypair``'s signature of the static key when the
    caller already made it.
    """
    if signature is None:
        signature = keypair.sign(SIGNATURE_PREFIX + static_public)
    payload = noise_pb2.NoiseHandshakePayload(
        identity_key=keypair.public_key.to_protobuf(),
        identity_sig=signature,
    )
    payload.extensions.SetInParent()
    payload.extensions.stream_muxers.extend(muxers)
    encoded: bytes = payload.SerializeToString(deterministic=True)
    return encoded


class NoiseIdentity:
    """Our side of libp2p Noise: the identity, a static X25519 key and the
    identity's signature over it, built once and shared by many handshakes.

    The spec lets a peer keep a static key for as long as its Noise module
    lives ("they may generate new static Noise keys when initializing the
    noise-libp2p module"), which is what the other implementations do; each
    handshake still has its own ephemeral key. The encoded payload is cached
    per muxer list.

    Args:
        keypair: our libp2p identity, which signs the static key.
        static_private: 32-byte X25519 static private key; generated by
            default. Injected by tests to pin transcripts.

    Attributes:
        keypair: the identity.
        static_public: the 32-byte X25519 static public key.
    """

    __slots__ = ("_payloads", "_private", "_signature", "keypair", "static_public")

    def __init__(self, keypair: KeyPair, *, static_private: bytes | None = None) -> None:
        self.keypair = keypair
        self._private = _x25519_private(static_private)
        self.static_public = _x25519_public(self._private)
        self._signature = keypair.sign(SIGNATURE_PREFIX + self.static_public)
        self._payloads: dict[tuple[str, ...], bytes] = {}

    def __repr__(self) -> str:
        return f"<NoiseIdentity {self.keypair.peer_id}>"

    def payload(self, muxers: Sequence[str]) -> bytes:
        """The encoded ``NoiseHandshakePayload`` advertising ``muxers``.

        Raises:
            LocalProtocolError: it would not fit in a handshake message.
        """
        key = tuple(muxers)
        payload = self._payloads.get(key)
        if payload is None:
            payload = encode_payload(self.keypair, self.static_public, key, signature=self._signature)
            if len(payload) > MAX_FRAME - 2 * TAG_LEN - 2 * _DHLEN:
                raise LocalProtocolError("Noise handshake payload too large (too many muxers?)")
            if len(self._payloads) >= _MAX_CACHED_PAYLOADS:
                self._payloads.clear()
            self._payloads[key] = payload
        return payload


def decode_payload(data: bytes, remote_static: bytes) -> tuple[PublicKey, tuple[str, ...]]:
    """Parse and authenticate a remote ``NoiseHandshakePayload``.

    Args:
        data: the decrypted payload.
        remote_static: the remote's Noise static public key, which the
            payload's signature must cover.

    Returns:
        The remote identity key and its muxer list.

    Raises:
        DecodeError: the payload is not a valid protobuf, or a muxer name
            is not UTF-8.
        HandshakeError: the identity key is missing, malformed or not
            Ed25519, or the signature does not verify.
    """
    try:
        payload = noise_pb2.NoiseHandshakePayload.FromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed Noise handshake payload: {exc}") from None
    if not payload.identity_key or not payload.identity_sig:
        raise HandshakeError("Noise handshake payload lacks the identity key or its signature")
    try:
        key = PublicKey.from_protobuf(payload.identity_key)
    except DecodeError as exc:
        raise HandshakeError(f"remote identity key refused: {exc}") from exc
    if not key.verify(SIGNATURE_PREFIX + remote_static, payload.identity_sig):
        raise HandshakeError("remote signature over its Noise static key does not verify")
    muxers = tuple(payload.extensions.stream_muxers)
    # proto2 does not enforce UTF-8: upb hands back bytes for a bad string.
    if not all(isinstance(muxer, str) for muxer in muxers):
        raise DecodeError("Noise handshake payload lists a muxer name that is not UTF-8")
    return key, muxers


def _x25519_private(private: bytes | None) -> bytes:
    """A 32-byte X25519 private key: ``private`` checked, or a fresh one."""
    if private is None:
        return os.urandom(_DHLEN)
    private = bytes(private)
    if len(private) != _DHLEN:
        raise ValueError(f"an X25519 private key is {_DHLEN} bytes")
    return private


def _x25519_public(private: bytes) -> bytes:
    # libsodium rather than OpenSSL (``cryptography``) for X25519: its
    # fixed-base multiplication takes half the time of OpenSSL's key
    # generation, and raw bytes spare the key objects on every DH.
    return nacl.bindings.crypto_scalarmult_base(private)


def _dh(private: bytes, public: bytes) -> bytes:
    """X25519, refusing a remote key that forces an all-zero shared secret.

    Such keys (the low-order points) would make the session key
    predictable. libsodium already refuses them; the explicit check keeps
    the guarantee independent of the backend.
    """
    try:
        shared = nacl.bindings.crypto_scalarmult(private, public)
    except RuntimeError:  # nacl.exceptions.RuntimeError: the all-zero result
        raise HandshakeError("remote X25519 key is a low-order point") from None
    if not any(shared):
        raise HandshakeError("remote X25519 key is a low-order point")
    return shared


def _hkdf2(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs, HMAC-SHA256."""
    temp = hmac.digest(chaining_key, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    out2 = hmac.digest(temp, out1 + b"\x02", "sha256")
    return out1, out2


class _SymmetricState:
    """Noise ``SymmetricState``: chaining key, handshake hash and cipher."""

    __slots__ = ("ck", "cs", "h")

    def __init__(self) -> None:
        self.h = NOISE_PROTOCOL_NAME
        self.ck = NOISE_PROTOCOL_NAME
        self.cs = CipherState()
        self.mix_hash(b"")  # the empty prologue

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, key = _hkdf2(self.ck, ikm)
        self.cs = CipherState(key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cs.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        try:
            plaintext = self.cs.decrypt_with_ad(self.h, ciphertext)
        except DecodeError:
            raise HandshakeError("Noise handshake message failed authentication") from None
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = _hkdf2(self.ck, b"")
        return CipherState(k1), CipherState(k2)


class NoiseHandshake:
    """One side of a libp2p Noise XX handshake, without I/O.

    Drive it by writing :meth:`data_to_send` to the peer and passing what
    the peer sends to :meth:`receive_data`, until :attr:`complete`. The
    initiator's first message is ready as soon as the object exists.

    Args:
        identity: who we are: a :class:`NoiseIdentity` shared by the
            handshakes of a host, or just the ``KeyPair`` (then a static key
            is generated and signed for this handshake alone).
        initiator: ``True`` on the dialing side.
        muxers: stream muxers to advertise in the payload extensions, in
            order of preference; empty to advertise none.
        expected_peer: on the dialing side, the peer we meant to reach; a
            remote authenticating as anyone else is refused.
        static_private: 32-byte X25519 static private key when ``identity``
            is a ``KeyPair``; a fresh one is generated by default. Injected
            by tests to pin transcripts.
        ephemeral_private: 32-byte X25519 ephemeral private key; generated
            by default. Injected by tests only: reusing one is insecure.
    """

    def __init__(
        self,
        identity: NoiseIdentity | KeyPair,
        *,
        initiator: bool,
        muxers: Sequence[str] = ("/yamux/1.0.0",),
        expected_peer: PeerId | None = None,
        static_private: bytes | None = None,
        ephemeral_private: bytes | None = None,
    ) -> None:
        if isinstance(muxers, str):
            raise TypeError("muxers is a sequence of protocol ids, not one string")
        self.initiator = initiator
        self._expected_peer = expected_peer
        if isinstance(identity, KeyPair):
            identity = NoiseIdentity(identity, static_private=static_private)
        elif static_private is not None:
            raise TypeError("static_private goes with a KeyPair; a NoiseIdentity has its own static key")
        self._s = identity._private
        self._s_pub = identity.static_public
        self._e = _x25519_private(ephemeral_private)
        self._e_pub = _x25519_public(self._e)
        self._payload = identity.payload(muxers)
        self._ss = _SymmetricState()
        self._re = b""
        self._rs = b""
        self._in = bytearray()
        self._out: list[bytes] = []
        self._unused = b""
        self._remote: tuple[PublicKey, tuple[str, ...]] | None = None
        self._result: NoiseResult | None = None
        if initiator:
            self._out.append(frame(self._write_message_1()))
            self._state = _State.WAIT_2
        else:
            self._state = _State.WAIT_1

    # -- public interface ---------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether the handshake finished successfully on our side.

        The initiator is complete once it has queued message 3 (send it!);
        the responder once it has processed message 3.
        """
        return self._state is _State.DONE

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete handshake message held (at most 65536)."""
        return len(self._in)

    def data_to_send(self) -> bytes:
        """Framed handshake bytes to write to the peer now (maybe ``b""``)."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes received from the peer.

        Partial frames are buffered; at most one frame (65537 bytes) is held
        while the handshake runs. Bytes after the last handshake message are
        kept for :meth:`unused_data`.

        Raises:
            HandshakeError: a message fails authentication, the remote key
                or signature is refused, or the DH result is degenerate.
            PeerIdMismatch: the remote is not ``expected_peer``.
            DecodeError: a message is malformed (too short, bad payload
                protobuf).
            LocalProtocolError: called after the handshake failed.
        """
        state = self._state
        if state is _State.FAILED:
            raise LocalProtocolError("the Noise handshake already failed")
        if state is _State.DONE:
            self._unused += bytes(data)
            return
        self._in += data
        try:
            while self._state in (_State.WAIT_1, _State.WAIT_2, _State.WAIT_3):
                message = self._next_frame()
                if message is None:
                    return
                if self._state is _State.WAIT_1:
                    self._read_message_1(message)
                    self._out.append(frame(self._write_message_2()))
                    self._state = _State.WAIT_3
                elif self._state is _State.WAIT_2:
                    self._read_message_2(message)
                    self._out.append(frame(self._write_message_3()))
                    self._finish()
                else:
                    self._read_message_3(message)
                    self._finish()
        except BaseException:
            self._fail()
            raise
        self._unused = bytes(self._in)
        self._in.clear()

    def result(self) -> NoiseResult:
        """The established session.

        Raises:
            LocalProtocolError: the handshake is not complete.
        """
        if self._result is None:
            raise LocalProtocolError("the Noise handshake is not complete")
        return self._result

    def unused_data(self) -> bytes:
        """Bytes received after the last handshake message: the start of the
        peer's transport frames. Feed them to the transport decoder first."""
        return self._unused

    # -- internals --------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        buf = self._in
        if len(buf) < 2:
            return None
        (length,) = _unpack_len(buf)
        if len(buf) < 2 + length:
            return None
        message = bytes(buf[2 : 2 + length])
        del buf[: 2 + length]
        return message

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._in.clear()
        self._out.clear()
        self._unused = b""

    def _finish(self) -> None:
        assert self._remote is not None
        key, muxers = self._remote
        if self.initiator:
            send, receive = self._ss.split()
        else:
            receive, send = self._ss.split()
        self._result = NoiseResult(
            remote_peer=key.peer_id,
            remote_public_key=key,
            remote_muxers=muxers,
            send_cipher=send,
            receive_cipher=receive,
            handshake_hash=self._ss.h,
        )
        self._state = _State.DONE

    def _accept_remote(self, payload: bytes) -> None:
        key, muxers = decode_payload(payload, self._rs)
        expected = self._expected_peer
        if expected is not None and not expected.matches(key):
            raise PeerIdMismatch(f"expected peer {expected} but the remote authenticated as {key.peer_id}")
        self._remote = (key, muxers)

    # Message 1: -> e
    def _write_message_1(self) -> bytes:
        self._ss.mix_hash(self._e_pub)
        return self._e_pub + self._ss.encrypt_and_hash(b"")

    def _read_message_1(self, message: bytes) -> None:
        if len(message) < _DHLEN:
            raise DecodeError(f"Noise message 1 of {len(message)} bytes is too short")
        ss = self._ss
        self._re = message[:_DHLEN]
        ss.mix_hash(self._re)
        # The spec forbids a payload here; one that is present anyway is
        # unauthenticated, so it is hashed (as Noise requires) and ignored.
        ss.decrypt_and_hash(message[_DHLEN:])

    # Message 2: <- e, ee, s, es
    def _write_message_2(self) -> bytes:
        ss = self._ss
        ss.mix_hash(self._e_pub)
        ss.mix_key(_dh(self._e, self._re))
        encrypted_s = ss.encrypt_and_hash(self._s_pub)
        ss.mix_key(_dh(self._s, self._re))
        return self._e_pub + encrypted_s + ss.encrypt_and_hash(self._payload)

    def _read_message_2(self, message: bytes) -> None:
        if len(message) < _DHLEN + _DHLEN + 2 * TAG_LEN:
            raise DecodeError(f"Noise message 2 of {len(message)} bytes is too short")
        ss = self._ss
        self._re = message[:_DHLEN]
        ss.mix_hash(self._re)
        ss.mix_key(_dh(self._e, self._re))
        self._rs = ss.decrypt_and_hash(message[_DHLEN : 2 * _DHLEN + TAG_LEN])
        ss.mix_key(_dh(self._e, self._rs))
        self._accept_remote(ss.decrypt_and_hash(message[2 * _DHLEN + TAG_LEN :]))

    # Message 3: -> s, se
    def _write_message_3(self) -> bytes:
        ss = self._ss
        encrypted_s = ss.encrypt_and_hash(self._s_pub)
        ss.mix_key(_dh(self._s, self._re))
        return encrypted_s + ss.encrypt_and_hash(self._payload)

    def _read_message_3(self, message: bytes) -> None:
        if len(message) < _DHLEN + 2 * TAG_LEN:
            raise DecodeError(f"Noise message 3 of {len(message)} bytes is too short")
        ss = self._ss
        self._rs = ss.decrypt_and_hash(message[: _DHLEN + TAG_LEN])
        ss.mix_key(_dh(self._e, self._rs))
        self._accept_remote(ss.decrypt_and_hash(message[_DHLEN + TAG_LEN :]))
