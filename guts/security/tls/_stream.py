"""Trio adapter: run the libp2p TLS handshake over a stream, then protect it.

Shaped like trio's ``SSLStream`` and Guts's ``NoiseStream``:
:class:`TlsStream` *wraps* the transport stream (``.transport_stream``) and
drives the sans-IO :class:`~guts.security.tls.TlsConnection`; all protocol
logic lives there.

Error contract (what callers of this module catch):

* :func:`tls_handshake` raises :class:`TlsError` (the handshake failed,
  the peer sent an alert, or the transport broke or ended mid-handshake;
  the trio error is then its ``__cause__``), :class:`CertificateError` /
  :class:`UnsupportedHostKey` (the peer's certificate is refused) and
  :class:`~guts.errors.PeerIdMismatch`, all ``HandshakeError`` s. Before
  raising it tries to tell the peer with an alert. It never closes the
  transport: the caller owns it, applies the timeout and closes it.
* :meth:`TlsStream.receive_some` raises :class:`TlsError` on a bad record
  or a fatal alert, and when the transport ends in the middle of a record;
  that direction is then broken (``trio.BrokenResourceError`` after).
  close_notify from the peer is end-of-file (``b""``); so is the transport
  ending on a record boundary, the way ``NoiseStream`` treats it (the muxer
  above frames its own messages).
* A failed or cancelled ``send_all`` breaks the send direction, as in
  ``NoiseStream``; misuse raises ``trio.ClosedResourceError`` and
  ``trio.BusyResourceError``.

TLS 1.3 closes each direction on its own, so this is a
``HalfCloseableStream``: :meth:`TlsStream.send_eof` sends close_notify and
the peer may go on sending. :meth:`TlsStream.aclose` sends close_notify too
(if it can without waiting on a busy sender) and closes the transport.

A note for clients, from the spec: the client's handshake completes before
the server has checked the client's certificate; a server that refuses it
answers the client's first read with an alert (a :class:`TlsError`).
"""

from __future__ import annotations

import datetime
import operator
from collections.abc import Callable, Sequence

import trio

from guts.crypto import KeyPair, PublicKey
from guts.errors import PeerIdMismatch
from guts.peer import PeerId
from guts.security.tls._cert import TlsIdentity
from guts.security.tls._connection import LIBP2P_ALPN, TlsConnection, TlsState
from guts.security.tls._errors import TlsError
from guts.security.tls._record import MAX_PLAINTEXT

__all__ = ["TlsStream", "tls_handshake"]

#: Bytes asked of the transport per read once the session is open.
RECEIVE_SIZE = 256 * 1024
#: Bytes asked per read during the handshake, whose messages are small.
HANDSHAKE_RECEIVE_SIZE = 16 * 1024
#: Plaintext protected per transport write (64 full records, 1 MiB): large
#: enough to amortize the write, small enough not to double a huge
#: ``send_all`` in memory.
SEND_CHUNK = 64 * MAX_PLAINTEXT


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def tls_handshake(
    stream: trio.abc.Stream,
    identity: TlsIdentity | KeyPair,
    *,
    initiator: bool,
    expected_peer: PeerId | None = None,
    alpn: Sequence[str] = (LIBP2P_ALPN,),
    muxers: Sequence[str] = ("/yamux/1.0.0",),
    clock: Callable[[], datetime.datetime] = _utcnow,
) -> TlsStream:
    """Secure ``stream`` with libp2p TLS 1.3 (``/tls/1.0.0``).

    Args:
        stream: the raw connection, after multistream-select chose
            ``/tls/1.0.0`` (or while it does, for a lazy dialer's
            :meth:`~guts.wire.NegotiatedStream.lazy`: the ClientHello then
            goes out with the proposal).
        identity: who we are: the host's :class:`TlsIdentity` (its
            certificate is reused), or a ``KeyPair`` (a certificate is made
            for this handshake alone, which costs a key generation and a
            signature).
        initiator: ``True`` on the dialing side (the TLS client).
        expected_peer: on the dialing side, who we meant to reach.
        alpn: ALPN tokens after the muxers.
        muxers: muxers to offer in ALPN (inlined muxer negotiation),
            preferred first; ``()`` leaves the muxer to multistream-select.
        clock: the time the peer's certificate is checked against.

    Returns:
        The protected stream, which knows the authenticated remote peer and
        the muxer ALPN agreed on (``muxer``, ``None`` if none).

    The handshake has no timeout of its own: wrap the call in
    ``trio.fail_after``. On any failure ``stream`` is left open for the
    caller to close.
    """
    if isinstance(identity, KeyPair):
        identity = TlsIdentity.generate(identity, now=clock())
    connection = TlsConnection(
        identity, initiator=initiator, muxers=muxers, alpn=alpn, expected_peer=expected_peer, now=clock()
    )
    received = b""
    try:
        while True:
            out = connection.data_to_send()
            if out:
                await stream.send_all(out)
            if connection.state is TlsState.OPEN:
                break
            data = await stream.receive_some(HANDSHAKE_RECEIVE_SIZE)
            if not data:
                raise TlsError("connection closed during the TLS handshake")
            received += connection.receive_data(data)
    except (TlsError, PeerIdMismatch):
        alert = connection.data_to_send()
        if alert:
            with trio.move_on_after(1):  # the peer may be gone: a courtesy only
                try:
                    await stream.send_all(alert)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        raise
    except (trio.BrokenResourceError, OSError) as exc:
        raise TlsError(f"connection broke during the TLS handshake: {exc}") from exc
    # A multistream-select wrapper (lazy dialer, held answer) is done once
    # the handshake is: the records run over the stream under it.
    unwrap = getattr(stream, "unwrap", None)
    if unwrap is not None:
        stream = unwrap()
    return TlsStream(stream, connection, local_peer=identity.keypair.peer_id, received=received)


class TlsStream(trio.abc.HalfCloseableStream):
    """A TLS-protected, authenticated stream over a transport stream.

    Normally created by :func:`tls_handshake`. One task may send and one
    may receive at the same time; two senders (or two receivers) get
    ``trio.BusyResourceError``.

    Args:
        transport_stream: the stream the handshake ran over.
        connection: the session, its handshake complete.
        local_peer: our own peer id.
        received: application data that arrived with the last handshake
            records.

    Attributes:
        transport_stream: the wrapped stream.
        remote_peer: the authenticated remote peer id.
        remote_public_key: the remote's host key.
        muxer: the muxer agreed on in ALPN, or ``None`` (``"libp2p"``
            chosen: negotiate the muxer with multistream-select).
        remote_muxers: ``(muxer,)`` or ``()``: the shape ``NoiseStream``
            gives its upgrader, so one code path picks the muxer for both.
        alpn: the ALPN token agreed on.
        local_peer: our peer id.
    """

    def __init__(
        self, transport_stream: trio.abc.Stream, connection: TlsConnection, *, local_peer: PeerId, received: bytes = b""
    ) -> None:
        if connection.remote_peer is None or connection.remote_public_key is None:
            raise ValueError("the TLS handshake is not complete")
        self.transport_stream = transport_stream
        self.remote_peer: PeerId = connection.remote_peer
        self.remote_public_key: PublicKey = connection.remote_public_key
        self.muxer: str | None = connection.muxer
        self.remote_muxers: tuple[str, ...] = (connection.muxer,) if connection.muxer else ()
        self.alpn: str | None = connection.alpn
        self.local_peer = local_peer
        self._connection = connection
        self._plain = received
        self._closed = False
        self._sending = False
        self._receiving = False
        self._send_broken = False
        self._eof = False
        self._receive_error: BaseException | None = None
        #: Records a try_send_all could not write yet: they go out first.
        self._unsent: bytes | memoryview = b""
        self._try_send: Callable[[bytes | bytearray | memoryview], int] | None = getattr(
            transport_stream, "try_send", None
        )

    def __repr__(self) -> str:
        return f"<TlsStream {self.local_peer} <-> {self.remote_peer}>"

    # -- sending -----------------------------------------------------------

    def _check_send(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._connection.eof_sent:
            raise trio.ClosedResourceError("send_eof() was called on this TLS stream")
        if self._send_broken:
            raise trio.BrokenResourceError("an earlier send on this TLS stream failed")

    async def _send(self, records: bytes | memoryview) -> None:
        try:
            await self.transport_stream.send_all(records)
        except BaseException as exc:
            # Part of a record may be on the wire and the sequence number
            # has moved on: nothing more can be sent safely.
            self._send_broken = True
            if isinstance(exc, OSError):
                raise trio.BrokenResourceError(f"transport failed: {exc}") from exc
            raise

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Protect and send ``data``.

        Raises:
            trio.BusyResourceError: another task is sending.
            trio.BrokenResourceError: the transport failed, or an earlier
                ``send_all`` failed or was cancelled part-way.
            trio.ClosedResourceError: this stream was closed, or
                :meth:`send_eof` was called.
        """
        self._check_send()
        self._sending = True
        try:
            with memoryview(data) as view:
                size = len(view)
                if self._unsent:
                    unsent, self._unsent = self._unsent, b""
                    await self._send(unsent)
                elif not size:
                    await trio.lowlevel.checkpoint()
                    return
                encrypt = self._connection.encrypt
                for start in range(0, size, SEND_CHUNK):
                    await self._send(encrypt(view[start : start + SEND_CHUNK]))
        finally:
            self._sending = False

    def try_send_all(self, data: bytes | bytearray | memoryview) -> bool:
        """Protect ``data`` and write it without waiting, as far as the
        transport takes it; never a checkpoint (what the muxer's direct
        writes use, as with ``NoiseStream``).

        Returns:
            ``True`` if all of it is on the wire. ``False`` if some is left
            (the transport's buffers are full, or it has no ``try_send``):
            it is kept, protected, and goes out first in :meth:`flush` or
            the next :meth:`send_all`. Either way ``data`` is consumed.

        Raises:
            trio.BusyResourceError: another task is sending, or what an
                earlier call left is still waiting for :meth:`flush`;
                ``data`` is then not consumed.
            trio.BrokenResourceError, trio.ClosedResourceError: as for
                :meth:`send_all`.
        """
        self._check_send()
        if self._unsent:
            raise trio.BusyResourceError("the rest of an earlier write is waiting for flush()")
        records = self._connection.encrypt(data)
        if not records:
            return True
        try_send = self._try_send
        if try_send is None:
            self._unsent = records
            return False
        try:
            sent = try_send(records)
        except BaseException as exc:
            self._send_broken = True
            if isinstance(exc, OSError):
                raise trio.BrokenResourceError(f"transport failed: {exc}") from exc
            raise
        if sent == len(records):
            return True
        self._unsent = memoryview(records)[sent:]
        return False

    async def flush(self) -> None:
        """Send what :meth:`try_send_all` could not write; a checkpoint.

        Cancelling it part-way breaks the send side, as for :meth:`send_all`.
        """
        await self.send_all(b"")

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport could accept data without blocking."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        self._sending = True
        try:
            await self.transport_stream.wait_send_all_might_not_block()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Send close_notify: the peer reads end-of-file, and may still send.

        Calling it again does nothing.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._send_broken:
            raise trio.BrokenResourceError("an earlier send on this TLS stream failed")
        record = self._connection.close()
        if not record:
            await trio.lowlevel.checkpoint()
            return
        if self._unsent:
            record, self._unsent = bytes(self._unsent) + record, b""
        self._sending = True
        try:
            await self._send(record)
        finally:
            self._sending = False

    # -- receiving ---------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt data.

        Returns:
            At most ``max_bytes`` bytes, or ``b""`` once the peer sent
            close_notify (or the transport ended on a record boundary).

        Raises:
            TlsError: a bad record or a fatal alert, or the transport ended
                mid-record.
            trio.BrokenResourceError: the transport failed, or an earlier
                call raised ``TlsError``.
            trio.BusyResourceError: another task is receiving.
            trio.ClosedResourceError: this stream was closed.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._receive_error is not None:
            raise trio.BrokenResourceError("the TLS stream failed earlier") from self._receive_error
        self._receiving = True
        try:
            awaited = False
            plain = self._plain
            while not plain and not self._eof:
                try:
                    data = await self.transport_stream.receive_some(RECEIVE_SIZE)
                except OSError as exc:
                    raise trio.BrokenResourceError(f"transport failed: {exc}") from exc
                awaited = True
                if not data:
                    self._eof = True
                    if self._connection.buffered:
                        error = TlsError("connection closed in the middle of a TLS record")
                        self._receive_error = error
                        raise error
                    break
                try:
                    plain = self._connection.receive_data(data)
                except TlsError as exc:
                    self._receive_error = exc
                    raise
                if self._connection.eof_received:
                    self._eof = True
            if not awaited:
                await trio.lowlevel.checkpoint()
            if max_bytes is None or len(plain) <= max_bytes:
                self._plain = b""
                return plain
            self._plain = plain[max_bytes:]
            return plain[:max_bytes]
        finally:
            self._receiving = False

    # -- closing -----------------------------------------------------------

    async def aclose(self) -> None:
        """Send close_notify, then close the transport.

        Over a transport with ``try_send`` (Guts's TCP and memory
        connections) close_notify goes out only if the kernel takes it at
        once: a peer that stopped reading cannot hold up the close. Over
        any other it is awaited, as trio's ``SSLStream`` does; cancelling
        the close still closes the transport.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._plain = b""
        try:
            if not self._sending and not self._send_broken:
                record = self._connection.close()
                if record and self._unsent:
                    record = bytes(self._unsent) + record
                self._unsent = b""
                try_send = self._try_send
                try:
                    if not record:
                        pass
                    elif try_send is not None:
                        try_send(record)  # never waits: a slow peer cannot hold up the close
                    else:
                        await self.transport_stream.send_all(record)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                    pass
        finally:
            await self.transport_stream.aclose()
