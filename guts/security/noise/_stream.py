"""Trio adapter: run the Noise handshake over a stream, then encrypt it.

Shaped like trio's ``SSLStream``: :class:`NoiseStream` *wraps* the
transport stream (``.transport_stream``) and drives the sans-IO cores in
``_handshake.py`` and ``_transport.py``; all protocol logic lives there.

Error contract (what callers of this module catch):

* :func:`noise_handshake` raises the typed handshake errors of
  :class:`~guts.security.noise.NoiseHandshake` (``HandshakeError``,
  ``PeerIdMismatch``, ``DecodeError``), and ``HandshakeError`` when the
  transport breaks or reaches end-of-file mid-handshake (the trio error is
  its ``__cause__``). It never closes the transport: the caller owns it,
  applies the timeout (``trio.fail_after``) and closes it on failure.
* :meth:`NoiseStream.receive_some` raises :class:`~guts.errors.DecodeError`
  when a frame fails authentication, and also when the transport ends in
  the middle of a frame (a truncation attack looks exactly like that, so it
  is reported as the protocol error it is rather than as a clean EOF).
  After such an error, and after a failed or cancelled ``send_all`` (which
  may have left half a frame on the wire), that direction of the stream is
  broken and further calls raise ``trio.BrokenResourceError``.
* Transport failures surface as ``trio.BrokenResourceError``; misuse as
  ``trio.ClosedResourceError`` and ``trio.BusyResourceError``, the way
  every trio stream reports them.

Writes that must not wait. :meth:`NoiseStream.try_send_all` encrypts and
hands the ciphertext to the transport's ``try_send`` (TCP and memory
connections have one): no await, so nothing can interrupt it halfway.
Whatever the kernel did not take stays here, already encrypted (one
message at most: another ``try_send_all`` is refused until it is gone),
and goes out ahead of anything else, in :meth:`NoiseStream.flush` or the
next :meth:`NoiseStream.send_all`; the frames on the wire are always
whole frames in order, just possibly later. This is how the muxer above writes
a small message from the sending task without a shielded cancel scope.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Sequence

import trio

from guts.crypto import KeyPair, PublicKey
from guts.errors import DecodeError, HandshakeError
from guts.peer import PeerId
from guts.security.noise._handshake import NoiseHandshake, NoiseIdentity, NoiseResult
from guts.security.noise._transport import MAX_PLAINTEXT, NoiseTransport

__all__ = ["NoiseStream", "noise_handshake"]

#: Bytes asked of the transport per read: large reads amortize the
#: per-call cost over several 64 KiB frames.
RECEIVE_SIZE = 256 * 1024
#: The read buffer a stream starts with (over a transport with
#: receive_into); it grows to RECEIVE_SIZE once a read fills it. Small
#: enough to come from the heap rather than a fresh mapping, which a
#: handshake and every light connection would pay in page faults.
FIRST_BUFFER = 64 * 1024
#: Bytes asked per read during the handshake, whose messages are small.
HANDSHAKE_RECEIVE_SIZE = 64 * 1024
#: Plaintext encrypted per transport write (16 full frames, ~1 MiB): large
#: enough to amortize the write, small enough not to double a huge
#: ``send_all`` in memory.
SEND_CHUNK = 16 * MAX_PLAINTEXT


async def noise_handshake(
    stream: trio.abc.Stream,
    identity: NoiseIdentity | KeyPair,
    *,
    initiator: bool,
    muxers: Sequence[str] = ("/yamux/1.0.0",),
    expected_peer: PeerId | None = None,
) -> NoiseStream:
    """Secure ``stream`` with a libp2p Noise XX handshake.

    Args:
        stream: the raw connection, after multistream-select chose
            ``/noise`` (or while it does, for a lazy dialer's
            :meth:`~guts.wire.NegotiatedStream.lazy`: message 1 then goes
            out with the proposal, and a refusal surfaces from here as the
            stream's ``NegotiationError`` or ``RemoteProtocolError``).
        identity: who we are: the host's :class:`NoiseIdentity` (its
            static key is reused), or a ``KeyPair`` (a static key is made
            for this handshake alone).
        initiator: ``True`` on the dialing side.
        muxers: muxers to advertise in the handshake, preferred first.
        expected_peer: on the dialing side, who we meant to reach.

    Returns:
        The encrypted stream, which knows the authenticated remote peer.

    Raises:
        HandshakeError: the remote failed to authenticate, or the
            connection broke or closed during the handshake.
        PeerIdMismatch: the remote is not ``expected_peer``.
        DecodeError: the remote sent a malformed handshake message.
        trio.ClosedResourceError: ``stream`` was closed (by us) meanwhile.

    The handshake has no timeout of its own: wrap the call in
    ``trio.fail_after``. On any failure ``stream`` is left open for the
    caller to close.
    """
    if isinstance(identity, KeyPair):
        identity = NoiseIdentity(identity)
    handshake = NoiseHandshake(identity, initiator=initiator, muxers=muxers, expected_peer=expected_peer)
    try:
        while True:
            out = handshake.data_to_send()
            if out:
                await stream.send_all(out)
            if handshake.complete:
                break
            data = await stream.receive_some(HANDSHAKE_RECEIVE_SIZE)
            if not data:
                raise HandshakeError("connection closed during the Noise handshake")
            handshake.receive_data(data)
    except (trio.BrokenResourceError, OSError) as exc:
        raise HandshakeError(f"connection broke during the Noise handshake: {exc}") from exc
    # A multistream-select wrapper (lazy dialer, held answer) is done once
    # the handshake is: the transport messages run over the stream under it.
    unwrap = getattr(stream, "unwrap", None)
    if unwrap is not None:
        stream = unwrap()
    return NoiseStream(stream, handshake.result(), local_peer=identity.keypair.peer_id, received=handshake.unused_data())


class NoiseStream(trio.abc.Stream):
    """An encrypted, authenticated stream over a transport stream.

    Normally created by :func:`noise_handshake`. One task may send and one
    may receive at the same time; two senders (or two receivers) get
    ``trio.BusyResourceError``. Noise has no way to half-close, so this is
    not a ``HalfCloseableStream``: the muxer on top provides that.

    Args:
        transport_stream: the stream the handshake ran over.
        result: the completed handshake.
        local_peer: our own peer id.
        received: transport bytes read along with the last handshake
            message (:meth:`NoiseHandshake.unused_data`).

    Attributes:
        transport_stream: the wrapped stream.
        remote_peer: the authenticated remote peer id.
        remote_public_key: the remote's identity key.
        remote_muxers: muxers the remote advertised, preferred first.
        local_peer: our peer id.
        handshake_hash: the Noise handshake hash, unique to the session.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        result: NoiseResult,
        *,
        local_peer: PeerId,
        received: bytes = b"",
    ) -> None:
        self.transport_stream = transport_stream
        self.remote_peer: PeerId = result.remote_peer
        self.remote_public_key: PublicKey = result.remote_public_key
        self.remote_muxers: tuple[str, ...] = result.remote_muxers
        self.local_peer = local_peer
        self.handshake_hash = result.handshake_hash
        self._codec = NoiseTransport(result.send_cipher, result.receive_cipher)
        self._received = received  # ciphertext not yet fed to the codec
        self._plain = b""  # plaintext not yet returned (max_bytes was smaller)...
        self._plain_pos = 0  # ...from this offset on
        self._closed = False
        self._eof = False
        self._sending = False
        self._receiving = False
        self._send_broken = False
        self._receive_error: BaseException | None = None
        #: Ciphertext a try_send_all could not write yet: it goes out first.
        self._unsent: bytes | bytearray | memoryview = b""
        self._try_send: Callable[[bytes | bytearray | memoryview], int] | None = getattr(
            transport_stream, "try_send", None
        )
        #: The transport's receive_into, and the buffer reused for it (made
        #: at the first read, FIRST_BUFFER bytes, RECEIVE_SIZE after a read
        #: filled it).
        self._receive_into: Callable[[bytearray], Awaitable[int]] | None = getattr(
            transport_stream, "receive_into", None
        )
        self._buffer: bytearray | None = None

    def __repr__(self) -> str:
        return f"<NoiseStream {self.local_peer} <-> {self.remote_peer}>"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data``, after anything :meth:`try_send_all` left.

        Raises:
            trio.BusyResourceError: another task is in ``send_all``,
                ``flush`` or ``wait_send_all_might_not_block``.
            trio.BrokenResourceError: the transport failed, or an earlier
                ``send_all`` failed or was cancelled part-way.
            trio.ClosedResourceError: this stream was closed.
        """
        self._check_send()
        self._sending = True
        try:
            with memoryview(data) as view:
                size = len(view)
                send = self.transport_stream.send_all
                if self._unsent:
                    unsent, self._unsent = self._unsent, b""
                    await self._send(send, unsent)
                elif not size:
                    await trio.lowlevel.checkpoint()
                    return
                encrypt = self._codec.encrypt
                for start in range(0, size, SEND_CHUNK):
                    await self._send(send, encrypt(view[start : start + SEND_CHUNK]))
        finally:
            self._sending = False

    async def _send(
        self, send: Callable[[bytes | bytearray | memoryview], Awaitable[None]], ciphertext: bytes | bytearray | memoryview
    ) -> None:
        try:
            await send(ciphertext)
        except BaseException as exc:
            # Part of a frame may be on the wire and the nonce has moved
            # on: nothing more can be sent safely.
            self._send_broken = True
            if isinstance(exc, OSError):
                raise trio.BrokenResourceError(f"transport failed: {exc}") from exc
            raise

    def try_send_all(self, data: bytes | bytearray | memoryview) -> bool:
        """Encrypt ``data`` and write it without waiting, as far as the
        transport takes it; never a checkpoint.

        Returns:
            ``True`` if all of it is on the wire. ``False`` if some is left
            (the transport's buffers are full, or it has no ``try_send``):
            it is kept, encrypted, and goes out first in :meth:`flush` or
            the next :meth:`send_all`. Either way ``data`` is consumed.

        Raises:
            trio.BusyResourceError: another task is sending, or what an
                earlier call left is still waiting for :meth:`flush` (so
                at most one message is ever held here); ``data`` is then
                not consumed.
            trio.BrokenResourceError, trio.ClosedResourceError: as for
                :meth:`send_all`.
            LocalProtocolError: the send nonces are exhausted.
        """
        self._check_send()
        if self._unsent:
            raise trio.BusyResourceError("the rest of an earlier write is waiting for flush()")
        ciphertext = self._codec.encrypt(data)
        if not ciphertext:
            return True
        try_send = self._try_send
        if try_send is None:
            self._unsent = ciphertext
            return False
        try:
            sent = try_send(ciphertext)
        except BaseException as exc:
            self._send_broken = True
            if isinstance(exc, OSError):
                raise trio.BrokenResourceError(f"transport failed: {exc}") from exc
            raise
        if sent == len(ciphertext):
            return True
        self._unsent = memoryview(ciphertext)[sent:]
        return False

    async def flush(self) -> None:
        """Send what :meth:`try_send_all` could not write; a checkpoint.

        Cancelling it part-way breaks the send side, as for :meth:`send_all`.
        """
        await self.send_all(b"")

    def _check_send(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the Noise stream is closed")
        if self._send_broken:
            raise trio.BrokenResourceError("an earlier send on this Noise stream failed")

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport could accept data without blocking."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the Noise stream is closed")
        self._sending = True
        try:
            await self.transport_stream.wait_send_all_might_not_block()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt data.

        Returns:
            At most ``max_bytes`` bytes (everything decrypted by one
            transport read when ``None``), or ``b""`` once the transport
            reached end-of-file cleanly, on a frame boundary.

        Raises:
            DecodeError: a frame failed authentication, or the transport
                ended mid-frame.
            trio.BrokenResourceError: the transport failed, or an earlier
                call raised ``DecodeError``.
            trio.BusyResourceError: another task is in ``receive_some``.
            trio.ClosedResourceError: this stream was closed.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the Noise stream is closed")
        if self._receive_error is not None:
            raise trio.BrokenResourceError("the Noise stream failed earlier") from self._receive_error
        self._receiving = True
        try:
            awaited = False
            plain, pos = self._plain, self._plain_pos
            if not plain and self._received:
                received, self._received = self._received, b""
                plain = self._decode(received)
            receive_into = self._receive_into
            while not plain and not self._eof:
                try:
                    if receive_into is not None:
                        buffer = self._buffer
                        if buffer is None:
                            buffer = self._buffer = bytearray(FIRST_BUFFER)
                        size = await receive_into(buffer)
                    else:
                        data = await self.transport_stream.receive_some(RECEIVE_SIZE)
                        size = len(data)
                except OSError as exc:
                    raise trio.BrokenResourceError(f"transport failed: {exc}") from exc
                awaited = True
                if not size:
                    self._eof = True
                    if self._codec.buffered:
                        error = DecodeError("connection closed in the middle of a Noise frame")
                        self._receive_error = error
                        raise error
                    break
                if receive_into is not None:
                    assert buffer is not None
                    # Decrypted straight out of the buffer: only an
                    # incomplete last frame is copied (into the codec).
                    with memoryview(buffer) as view, view[:size] as ciphertext:
                        plain = self._decode(ciphertext)
                    if size == len(buffer) < RECEIVE_SIZE:
                        self._buffer = bytearray(RECEIVE_SIZE)  # bulk data: read more at a time
                else:
                    plain = self._decode(data)
            if not awaited:
                await trio.lowlevel.checkpoint()
            end = len(plain) if max_bytes is None else min(len(plain), pos + max_bytes)
            if end == len(plain):
                self._plain, self._plain_pos = b"", 0
                return plain[pos:] if pos else plain
            # Keep the rest without copying it: small reads of a large
            # buffer cost O(bytes read), not O(bytes buffered) each.
            self._plain, self._plain_pos = plain, end
            return plain[pos:end]
        finally:
            self._receiving = False

    def _decode(self, data: bytes | bytearray | memoryview) -> bytes:
        try:
            return self._codec.receive_data(data)
        except DecodeError as exc:
            self._receive_error = exc
            raise

    async def aclose(self) -> None:
        """Close this stream and the transport under it."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._plain, self._plain_pos = b"", 0
        self._received = b""
        self._unsent = b""
        self._buffer = None
        await self.transport_stream.aclose()
