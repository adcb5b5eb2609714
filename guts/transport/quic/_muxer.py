"""One QUIC connection driven by Trio, as a :class:`guts.mux.MuxedConnection`.

Theory of operation
-------------------
:class:`QuicMuxedConnection` wraps one :class:`._connection.Libp2pQuicConnection`
(sans-IO) and the endpoint (:mod:`._endpoint`) whose UDP socket carries it.
Datagrams come in through the endpoint's receive loop, which hands each to
:meth:`QuicMuxedConnection.datagram_received`: aioquic takes it, and the
events it produced are dispatched at once (stream data to its
:class:`._stream.QuicStream`, new peer streams to :meth:`accept_stream`,
PING acknowledgements to :meth:`ping`, connection ids to the endpoint's
routing table). Nothing awaits in between, so no lock is needed.

Sending and the timer are one task, :meth:`_drive`: flush
``datagrams_to_send``, then sleep until ``get_timer()`` or until a poke
(a datagram arrived, a stream wrote, the application read and a window
may move). The dialler or the listener drives the handshake with it;
after that :meth:`run` (the host runs it in its nursery) drives it for
the connection's life, together with the receive loop of a dialled
connection's own socket.

Keep-alive: every ``keep_alive`` seconds the driver sends a PING, whose
acknowledgement keeps both ends' idle timers (30 s) from expiring on a
quiet connection; the host's own ping (its ``keep_alive``, 30 s by
default, through :meth:`QuicMuxedConnection.ping`) would come too late.

Closing: :meth:`aclose` lets what the streams queued be acknowledged
(CONNECTION_CLOSE abandons it; at most ``linger`` seconds), then sends
CONNECTION_CLOSE (code 0) and ends the connection here; the peer sees it on arrival (aioquic would report it
only after its three-PTO draining period, so the close frame's arrival is
watched directly) and its streams break. An idle timeout or a peer's
error code ends the connection with :attr:`error` set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio
from aioquic.quic import events

from guts.transport.quic._connection import Libp2pQuicConnection
from guts.transport.quic._stream import QuicStream

__all__ = ["QuicMuxedConnection"]

#: The PING uid of keep-alives (the application's pings count up from 0).
_KEEP_ALIVE_UID = -1


class QuicMuxedConnection:
    """The streams of one QUIC connection.

    Args:
        quic: the sans-IO connection.
        addr: the peer's UDP address.
        send: sends one datagram (the endpoint's socket).
        send_now: sends one datagram without waiting, or drops it.
        max_streams: peer streams waiting in :meth:`accept_stream` at most.
        send_buffer: unacknowledged bytes per stream before ``send_all`` waits.
        on_cid: ``(cid, added)`` as the connection issues and retires ids.
        on_end: called once when the connection has ended and its tasks stopped.
        receive_loop: the dialled connection's own socket's receive loop, run by :meth:`run`.
        keep_alive: seconds between PINGs sent to keep the connection
            inside the idle timeout; ``None``: none.
        linger: seconds :meth:`aclose` waits for queued stream data to be acknowledged.
    """

    def __init__(
        self,
        quic: Libp2pQuicConnection,
        addr: Any,
        *,
        send: Callable[[bytes, Any], Any],
        send_now: Callable[[bytes, Any], None],
        max_streams: int,
        send_buffer: int,
        on_cid: Callable[[bytes, bool], None],
        on_end: Callable[[], None],
        receive_loop: Callable[[], Any] | None = None,
        keep_alive: float | None = None,
        linger: float = 2.0,
    ) -> None:
        self.quic = quic
        self.addr = addr
        self.send_buffer = send_buffer
        self.error: BaseException | None = None
        self.handshake_done = trio.Event()
        self._send_datagram = send
        self._send_datagram_now = send_now
        self._on_cid = on_cid
        self._on_end = on_end
        self._receive_loop = receive_loop
        self._linger = linger
        self._keep_alive = keep_alive if keep_alive is not None else math.inf
        self._next_keep_alive = trio.current_time() + self._keep_alive
        self._streams: dict[int, QuicStream] = {}
        self._incoming_send, self._incoming = trio.open_memory_channel[QuicStream](max_streams)
        self._closed = False
        self._closed_locally = False
        self._ended = trio.Event()
        self._released = False
        self._running = False
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._pings: dict[int, tuple[float, trio.Event]] = {}
        self._ping_rtt: dict[int, float] = {}
        self._next_ping = 0
        # Peer streams already seen: every id below _seen_below, and those in _seen_above.
        self._peer_first = 0 if not quic._is_client else 1
        self._seen_below = self._peer_first
        self._seen_above: set[int] = set()

    # -- MuxedConnection -------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def packet_received(self) -> bool:
        """Whether any packet of the peer's has decrypted (an Initial of
        random bytes with a well-formed header does not)."""
        return any(space.largest_received_packet >= 0 for space in getattr(self.quic, "_spaces", {}).values())

    def discard(self) -> None:
        """Forget a connection that never received a packet, sending nothing."""
        self._terminate(None)
        self._release()

    @property
    def remote_public_key(self) -> Any:
        return self.quic.remote_public_key

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the connection until it ends; cancelled, close it (CONNECTION_CLOSE)."""
        if self._running:
            raise RuntimeError("run() is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                if self._receive_loop is not None:
                    nursery.start_soon(self._receive_loop)
                nursery.start_soon(self.drive)
                task_status.started()
                await self._ended.wait()
                self._flush_now()  # a CONNECTION_CLOSE aioquic queued on an error of the peer's
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
            if not self._closed:  # cancelled: the owner is done with the connection; tell the peer
                self._closed_locally = True
                self.quic.close(error_code=0)
                self._flush_now()
                self._terminate(None)
            self._release()

    async def open_stream(self) -> QuicStream:
        await trio.lowlevel.checkpoint()
        self._check_open()
        stream_id = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(stream_id, b"")  # allocates the id
        stream = QuicStream(self, stream_id)
        self._streams[stream_id] = stream
        return stream

    async def accept_stream(self) -> QuicStream:
        try:
            return await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._closed_locally:
                raise trio.ClosedResourceError("connection closed") from None
            raise trio.BrokenResourceError("connection ended") from None

    async def ping(self) -> float:
        """Send a QUIC PING; return the time until it was acknowledged."""
        self._check_open()
        uid = self._next_ping
        self._next_ping += 1
        done = trio.Event()
        self._pings[uid] = (trio.current_time(), done)
        self.quic.send_ping(uid)
        self.poke()
        try:
            await done.wait()
        finally:
            self._pings.pop(uid, None)
        rtt = self._ping_rtt.pop(uid, None)
        if rtt is None:
            raise trio.BrokenResourceError("connection ended before the ping was answered")
        return rtt

    async def aclose(self) -> None:
        """Close gracefully; idempotent.

        What the streams have queued is delivered first (for at most
        ``linger`` seconds: CONNECTION_CLOSE abandons whatever is still
        unacknowledged), then CONNECTION_CLOSE (no error) goes out and the
        connection ends. Cancelled, it closes at once.
        """
        try:
            if self._running and not self._closed:
                with trio.move_on_after(self._linger):
                    while not self._closed and self._undelivered():
                        await self._progress_made()
        finally:
            if not self._closed:
                self._closed_locally = True
                self.quic.close(error_code=0)
                self._flush_now()
                self._terminate(None)
            if not self._running:
                self._release()
        await trio.lowlevel.checkpoint()

    def _undelivered(self) -> bool:
        """Whether a stream has data or a FIN the peer has not acknowledged."""
        for state in self.quic._streams.values():
            sender = state.sender
            if sender.is_finished or sender._reset_error_code is not None:
                continue
            if sender._buffer_stop > sender._buffer_start or sender._buffer_fin is not None:
                return True
        return False

    def close_with_error(self, code: int, reason: str) -> None:
        """Close with a transport error code (a refused or failed connection)."""
        if not self._closed:
            self._closed_locally = True
            self.quic.close(error_code=code, reason_phrase=reason)
            self._flush_now()
            self._terminate(trio.BrokenResourceError(reason))
        if not self._running:
            self._release()

    # -- driving ---------------------------------------------------------------

    def poke(self) -> None:
        self._wake.set()

    async def drive(self, until: trio.Event | None = None) -> None:
        """Send what aioquic has queued; sleep until its timer or a poke.

        Returns when the connection has ended, or, with ``until``, at the
        first flush after ``until`` is set (the handshake drivers stop
        there, with nothing queued left unsent).
        """
        quic = self.quic
        while True:
            self._wake = trio.Event()  # before sending: a poke during a send is kept
            for data, addr in quic.datagrams_to_send(now=trio.current_time()):
                await self._send_datagram(data, addr)
            if self._closed or (until is not None and until.is_set()):
                return  # after the flush: a CONNECTION_CLOSE of ours is out
            timer = quic.get_timer()
            deadline = timer if timer is not None else math.inf
            with trio.move_on_at(min(deadline, self._next_keep_alive)):
                await self._wake.wait()
            now = trio.current_time()
            if now >= self._next_keep_alive:
                quic.send_ping(_KEEP_ALIVE_UID)  # the answer keeps the peer's idle timer from expiring too
                self._next_keep_alive = now + self._keep_alive
            if now >= deadline:
                quic.handle_timer(now=now)
                self._process_events()

    def _flush_now(self) -> None:
        for data, addr in self.quic.datagrams_to_send(now=trio.current_time()):
            self._send_datagram_now(data, addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        self.quic.receive_datagram(data, addr, now=trio.current_time())
        self._process_events()
        self.poke()

    def _process_events(self) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            if isinstance(event, events.StreamDataReceived):
                self._on_stream_data(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, events.StreamReset):
                if (stream := self._streams.get(event.stream_id)) is not None:
                    stream._on_reset(event.error_code)
                    self._maybe_forget(stream)
            elif isinstance(event, events.StopSendingReceived):
                if (stream := self._streams.get(event.stream_id)) is not None:
                    stream._on_stop_sending(event.error_code)
                    self._maybe_forget(stream)
            elif isinstance(event, events.PingAcknowledged):
                if (pending := self._pings.get(event.uid)) is not None:
                    self._ping_rtt[event.uid] = trio.current_time() - pending[0]
                    pending[1].set()
            elif isinstance(event, events.HandshakeCompleted):
                self.handshake_done.set()
            elif isinstance(event, events.ConnectionIdIssued):
                self._on_cid(event.connection_id, True)
            elif isinstance(event, events.ConnectionIdRetired):
                self._on_cid(event.connection_id, False)
            elif isinstance(event, events.ConnectionTerminated):
                self._terminate_by(event.error_code, event.reason_phrase)
        # The peer's CONNECTION_CLOSE, seen on arrival rather than after draining.
        close = quic._close_event
        if close is not None and not self._closed:
            self._terminate_by(close.error_code, close.reason_phrase)
        self._progress.set()

    def _terminate_by(self, code: int, reason: str) -> None:
        self._terminate(None if code == 0 else trio.BrokenResourceError(f"connection closed: code {code:#x} {reason}"))

    def _on_stream_data(self, stream_id: int, data: bytes, end: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._is_new_peer_stream(stream_id):
                self.quic.consumed(stream_id, len(data))  # data for a stream we dropped: let the window move
                return
            stream = QuicStream(self, stream_id)
            try:
                self._incoming_send.send_nowait(stream)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self.quic.consumed(stream_id, len(data))
                self._reset_id(stream_id, 0)
                return
            self._streams[stream_id] = stream
        stream._on_data(data, end)

    def _is_new_peer_stream(self, stream_id: int) -> bool:
        if stream_id % 4 != self._peer_first or stream_id < self._seen_below or stream_id in self._seen_above:
            return False
        self._seen_above.add(stream_id)
        while self._seen_below in self._seen_above:
            self._seen_above.discard(self._seen_below)
            self._seen_below += 4
        return True

    def _terminate(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.error = error
        self.handshake_done.set()
        for stream in self._streams.values():
            stream._on_connection_end()
        for _, done in self._pings.values():
            done.set()
        self._incoming_send.close()
        self._progress.set()
        self._ended.set()
        self.poke()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._on_end()

    # -- for the streams -------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed_locally:
            raise trio.ClosedResourceError("connection closed")
        if self._closed:
            raise trio.BrokenResourceError("connection ended")

    def _send(self, stream: QuicStream, data: bytes, end: bool = False) -> None:
        self.quic.send_stream_data(stream.stream_id, data, end_stream=end)
        self.poke()

    def _unacked(self, stream: QuicStream) -> int:
        state = self.quic._streams.get(stream.stream_id)
        if state is None:
            return 0
        sender = state.sender
        return int(sender._buffer_stop - sender._buffer_start)

    async def _progress_made(self) -> None:
        self._progress = trio.Event()
        await self._progress.wait()

    def _wake_senders(self) -> None:
        self._progress.set()

    def _consumed(self, stream: QuicStream, n: int) -> None:
        self.quic.consumed(stream.stream_id, n)
        self.poke()
        self._maybe_forget(stream)

    def _stop(self, stream: QuicStream, code: int) -> None:
        if not self._closed:
            try:
                self.quic.stop_stream(stream.stream_id, code)
            except ValueError:
                pass
            self.poke()

    def _reset(self, stream: QuicStream, code: int) -> None:
        self.quic.consumed(stream.stream_id, len(stream._recv))
        self._reset_id(stream.stream_id, code)

    def _reset_id(self, stream_id: int, code: int) -> None:
        if not self._closed:
            for method in (self.quic.reset_stream, self.quic.stop_stream):
                try:
                    method(stream_id, code)
                except ValueError:
                    pass
            self.poke()

    def _maybe_forget(self, stream: QuicStream) -> None:
        if stream._done and self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
            self.quic.forget_stream(stream.stream_id)
