"""Trio adapter: a :class:`YamuxSession` driven over a transport stream.

Theory of operation
-------------------
:meth:`YamuxConnection.run` runs in the owner's nursery and holds two
tasks of its own: a *reader* that feeds transport bytes into the session
and routes the resulting events to :class:`YamuxStream` objects, and a
*writer* that drains the session's queued frames into the transport.

The split is what avoids the classic multiplexer deadlock: the reader
never waits on anything but the transport, so however full the outgoing
pipe is we keep draining the peer, and the peer keeps draining us. Data
senders wait instead: :meth:`YamuxStream.send_all` blocks while the
stream's send window is empty (the peer's backpressure) or while more
than ``config.write_high_water`` bytes are queued for the writer (the
transport's backpressure). Control frames (window updates, ping and SYN
answers) never wait; they join whatever is written next.

Direct writes. Handing each message to the writer task costs a task
switch and a run-loop iteration on each side of every exchange, a good
part of a small request's latency. So when a stream operation
(``send_all``, ``send_eof``) leaves at most ``_DIRECT_WRITE_MAX`` bytes
queued while the writer is idle and nothing is being written, the
calling task writes the queued output itself. A transport write must
never be cancelled midway (a Noise stream that sent half a frame is
broken for good). Over a transport that can write without waiting
(``try_send_all`` and ``flush``, as :class:`~guts.security.noise.NoiseStream`
over TCP or memory connections has), the direct write is one
synchronous call: nothing can interrupt it, and in the usual case the
kernel takes it all, so the stream operation's only await left is its
closing schedule point (trio's checkpoint contract; it cannot be
cancelled, since the bytes are out). When the kernel takes only part,
the rest is already encrypted and queued in the transport, and the
caller waits for it in a shielded cancel scope. Over any other transport
the whole write runs in that shielded scope. The trade-off: if the
transport cannot take the bytes at once because its buffers are full
(the peer stopped reading from the socket), the caller cannot be
cancelled until they go out or the connection is closed (closing the
transport ends the write). A small write with an idle writer almost
never waits; bulk data goes through the writer, where senders always
wait cancellably. A direct write that finds other tasks queued output
meanwhile, or a read that brings data for several streams (many streams
busy at once), turns direct writes off for ``_BATCHING_HOLD`` seconds:
then one write of everything queued, by the writer, beats one write per
task (and spares the peer as many wake-ups).

Flow-control credit is returned only as the application reads
(:meth:`YamuxStream.receive_some` calls
:meth:`YamuxSession.acknowledge_received`), so a stream's buffer is
bounded by its receive window and a slow reader slows its sender.

Tasks are woken only when something they wait for happened: each stream
has at most one pending :class:`trio.Event` per direction, created by
the waiting task and set (then dropped) by whoever satisfies it.

Closing. :meth:`YamuxStream.aclose` means "I will neither read nor
write": it sends FIN, and RST instead if unread data from a peer that
has not finished is being thrown away. If the peer keeps sending on a
stream we closed, the data is dropped and the stream reset then, so the
peer's writer fails rather than stalls. :meth:`YamuxConnection.aclose`
sends GoAway (normal), lets the writer flush for at most
``config.close_timeout`` seconds and closes the transport.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import trio

from guts.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from guts.mux.yamux import _events as ev
from guts.mux.yamux._config import YamuxConfig
from guts.mux.yamux._frames import GoAwayCode
from guts.mux.yamux._session import YamuxSession
from guts.mux.yamux._stream import YamuxStream
from guts.wire import NegotiationLimit

__all__ = ["YamuxConnection"]

#: Unanswered keepalive pings after which keepalive stops adding more.
_MAX_PENDING_PINGS = 16
#: Largest output a sending task writes to the transport itself rather
#: than through the writer task (see "Direct writes" above).
_DIRECT_WRITE_MAX = 64 * 1024
#: Seconds during which output goes through the writer task only, once
#: several streams were seen busy at the same time.
_BATCHING_HOLD = 0.005


class _DirectTransport(Protocol):
    """What a transport offers for writes that never wait (see "Direct
    writes" above); :class:`~guts.security.noise.NoiseStream` has it."""

    def try_send_all(self, data: bytes) -> bool: ...

    async def flush(self) -> None: ...


def _direct_transport(stream: trio.abc.Stream) -> _DirectTransport | None:
    if callable(getattr(stream, "try_send_all", None)) and callable(getattr(stream, "flush", None)):
        return stream  # type: ignore[return-value]
    return None


def _clock() -> Callable[[], float]:
    """The current run's clock as a function (trio.current_time outside a run)."""
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:
        return trio.current_time


async def _close_transport(transport: trio.abc.AsyncResource) -> None:
    try:
        await trio.aclose_forcefully(transport)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


class _Ping:
    __slots__ = ("start", "done", "rtt")

    def __init__(self, start: float) -> None:
        self.start = start
        self.done = trio.Event()
        self.rtt: float | None = None


class YamuxConnection(trio.abc.AsyncResource):
    """A yamux session over a transport stream (usually a Noise stream).

    Run :meth:`run` in a nursery you own (``await nursery.start(conn.run)``)
    for as long as the connection should live; it starts no task anywhere
    else. Then :meth:`open_stream` and :meth:`accept_stream`.

    Args:
        transport_stream: the secured byte stream to multiplex.
        is_initiator: whether we dialled (we then open odd stream ids).
        config: window sizes, limits and timeouts.

    Attributes:
        transport_stream: the wrapped stream.
        closed: set once the connection is over, whichever side ended it.
        error: why it ended, when that was not our own :meth:`aclose`:
            the transport's error, or the peer's
            :class:`~guts.errors.RemoteProtocolError`; ``None`` for a
            clean end of stream.
        negotiation_limit: streams the peer opened that are in protocol
            negotiation (``config.max_negotiating`` at once); each such
            stream's ``negotiation_limit`` is this one, which
            :func:`~guts.wire.accept_protocol` consults.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        is_initiator: bool,
        config: YamuxConfig | None = None,
    ) -> None:
        self.transport_stream = transport_stream
        self.is_initiator = is_initiator
        self.config = config if config is not None else YamuxConfig()
        self.closed = trio.Event()
        self.error: BaseException | None = None
        self.negotiation_limit = NegotiationLimit(self.config.max_negotiating)
        self._session = YamuxSession(is_initiator, self.config)
        self._streams: dict[int, YamuxStream] = {}
        self._accept_queue: deque[YamuxStream] = deque()
        self._accept_waiter: trio.Event | None = None
        self._writer_wake: trio.Event | None = None
        #: A transport ``send_all`` is in progress (writer task or direct).
        self._writing = False
        #: No direct writes before this time (trio clock), if set: see
        #: _BATCHING_HOLD.
        self._direct_after: float | None = None
        #: trio's clock, read without trio.current_time()'s two layers (the
        #: adapter reads it on every received message).
        self._now = _clock()
        self._run_scope: trio.CancelScope | None = None
        self._output_waiters: list[YamuxStream] = []
        self._pings: dict[int, _Ping] = {}
        self._run_called = False
        self._writer_done = trio.Event()
        self._dead = False
        self._closed_locally = False
        self._direct = _direct_transport(transport_stream)

    @property
    def is_closed(self) -> bool:
        """Whether the connection can no longer carry new streams."""
        return self._dead or self._closed_locally

    @property
    def rtt(self) -> float | None:
        """Latest measured round-trip time in seconds (``None`` before any)."""
        return self._session.rtt

    @property
    def stream_count(self) -> int:
        """Live streams, both directions."""
        return self._session.stream_count

    @property
    def remote_goaway(self) -> int | None:
        """The GoAway code the peer sent, if it did."""
        return self._session.remote_goaway

    # ------------------------------------------------------------------
    # Public API

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Move bytes until the connection ends; call exactly once.

        Reports started as soon as streams can be used. Returns normally
        when the transport ends, fails or the peer breaks the protocol
        (see :attr:`error`); the transport is closed on the way out.
        """
        if self._run_called:
            raise RuntimeError("YamuxConnection.run() may only be called once")
        self._run_called = True
        try:
            async with trio.open_nursery() as nursery:
                self._run_scope = nursery.cancel_scope
                nursery.start_soon(self._write_loop)
                if self.config.keepalive_interval is not None:
                    nursery.start_soon(self._keepalive_loop, self.config.keepalive_interval)
                if not self._dead:
                    self._send_ping()  # establishes the RTT auto-tuning needs
                task_status.started()
                await self._read_loop()
                self._mark_dead(None)
                with trio.move_on_after(self.config.close_timeout):
                    await self._writer_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._mark_dead(None)
            self._writer_done.set()
            await _close_transport(self.transport_stream)
            self.closed.set()

    async def open_stream(self) -> YamuxStream:
        """Open a new outbound stream (its SYN goes out with the next write).

        Raises:
            trio.ClosedResourceError: we closed the connection.
            trio.BrokenResourceError: the connection is gone or the peer
                sent GoAway.
            LocalProtocolError: ``config.max_streams`` streams are live.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        session = self._session
        if session.remote_goaway is not None or session.local_goaway is not None:
            raise trio.BrokenResourceError("yamux connection is going away")
        sid = session.open_stream()
        stream = YamuxStream(self, sid)
        self._streams[sid] = stream
        self._wake_writer()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return stream

    async def accept_stream(self) -> YamuxStream:
        """Wait for the next stream the peer opens.

        Raises:
            trio.EndOfChannel: the connection ended (peer closed it, it
                broke, or the peer broke the protocol): no more streams
                will come. Mirrors a channel whose sender closed.
            trio.ClosedResourceError: we closed the connection ourselves.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        blocked = False
        while not self._accept_queue:
            if self._closed_locally:
                raise trio.ClosedResourceError("yamux connection was closed")
            if self._dead:
                raise trio.EndOfChannel("yamux connection ended")
            blocked = True
            waiter = self._accept_waiter
            if waiter is None:
                waiter = self._accept_waiter = trio.Event()
            await waiter.wait()
        stream = self._accept_queue.popleft()
        if not blocked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return stream

    async def ping(self) -> float:
        """Send a yamux ping and return the round-trip time in seconds.

        Raises:
            trio.ClosedResourceError: we closed the connection.
            trio.BrokenResourceError: the connection ended before the answer.
        """
        self._check_open()
        entry = self._send_ping()
        await entry.done.wait()
        if entry.rtt is None:
            raise trio.BrokenResourceError("yamux connection ended before the ping answer")
        return entry.rtt

    async def aclose(self) -> None:
        """Send GoAway (normal), flush briefly, close the transport.

        Idempotent. Streams still open fail with
        :class:`trio.BrokenResourceError`.
        """
        if self._closed_locally:
            await trio.lowlevel.checkpoint()
            return
        self._closed_locally = True
        try:
            if not self._dead:
                self._session.go_away(GoAwayCode.NORMAL)
                self._mark_dead(None)  # streams stop queueing; the writer drains
                with trio.move_on_after(self.config.close_timeout):
                    if self._run_called:
                        await self._writer_done.wait()
                    else:
                        await self.transport_stream.send_all(self._session.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._mark_dead(None)
            await _close_transport(self.transport_stream)
            if not self._run_called:
                self.closed.set()

    # ------------------------------------------------------------------
    # Tasks

    async def _read_loop(self) -> None:
        session = self._session
        receive_some = self.transport_stream.receive_some
        read_size = self.config.read_size
        while not self._dead:
            try:
                data = await receive_some(read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
                if not self._closed_locally and self.error is None:
                    self.error = exc
                return
            if not data:
                return
            try:
                events = session.receive_data(data)
            except RemoteProtocolError as exc:
                self.error = exc  # the session queued the GoAway already
                return
            if events:
                self._dispatch(events)
            if session.pending_output:
                self._wake_writer()

    async def _write_loop(self) -> None:
        session = self._session
        send_all = self.transport_stream.send_all
        try:
            while True:
                if not self._writing:
                    data = session.data_to_send()
                    if data:
                        self._wake_output_waiters()
                        self._writing = True
                        try:
                            await send_all(data)
                        finally:
                            self._writing = False
                        continue
                    if self._dead:
                        return
                # Idle, or a direct write is in progress: it wakes us when
                # it is done and output is left.
                waiter = self._writer_wake = trio.Event()
                await waiter.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._transport_failed(exc)
        finally:
            self._writer_done.set()

    async def _flush(self) -> None:
        """Get queued output moving; the checkpoint of a stream operation.

        Writes from the calling task when that is cheap and safe (see
        "Direct writes" above), otherwise wakes the writer task and yields.
        Raises :class:`trio.BrokenResourceError` if a direct write finds the
        transport broken (the connection is then dead).
        """
        session = self._session
        pending = session.pending_output
        hold = self._direct_after
        if (
            not pending
            or pending > _DIRECT_WRITE_MAX
            or self._writer_wake is None
            or self._writing
            or (hold is not None and self._now() < hold)
        ):
            self._wake_writer()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._direct_after = None
        data = session.data_to_send()
        if self._output_waiters:
            self._wake_output_waiters()
        self._writing = True
        direct = self._direct
        written = False
        try:
            if direct is not None and direct.try_send_all(data):
                written = True
            else:
                # Not cancellable midway: a transport write cancelled after
                # part of a frame went out breaks the transport for good.
                with trio.CancelScope(shield=True):
                    if direct is not None:
                        await direct.flush()  # what try_send_all could not write
                    else:
                        await self.transport_stream.send_all(data)
        except BaseException as exc:
            self._transport_failed(exc)
            if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
                raise trio.BrokenResourceError("yamux connection is gone") from exc
            raise
        finally:
            self._writing = False
            if session.pending_output:
                # Other tasks queued output while we wrote: they are better
                # served by one write from the writer task for a while.
                self._direct_after = self._now() + _BATCHING_HOLD
                self._wake_writer()
            elif self._dead:
                self._wake_writer()
        if written:
            # The schedule point of the stream operation; the bytes are out,
            # so it must not raise Cancelled.
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _keepalive_loop(self, interval: float) -> None:
        while not self._dead:
            await trio.sleep(interval)
            if not self._dead and len(self._pings) < _MAX_PENDING_PINGS:
                self._send_ping()

    # ------------------------------------------------------------------
    # Event routing

    def _dispatch(self, events: list[ev.Event]) -> None:
        streams = self._streams
        # The session has already applied the whole batch, so whether it
        # still tracks a stream is only known after the last event: drop
        # our records at the end, not while later events may need them.
        finished: list[YamuxStream] = []
        # Whether the batch woke more than one stream (see _BATCHING_HOLD).
        last_sid = 0
        several = False
        for event in events:
            if isinstance(event, ev.DataReceived):
                sid = event.stream_id
                if sid != last_sid:
                    if last_sid:
                        several = True
                    last_sid = sid
                stream = streams.get(sid)
                if stream is None:
                    continue
                if stream._closed:
                    # We said we would not read: refuse the data for good.
                    self._session.reset_stream(stream.stream_id)
                    stream._send_reset = stream._recv_reset = True
                    finished.append(stream)
                else:
                    stream._on_data(event.data)
            elif isinstance(event, ev.WindowUpdated):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._wake_sender()
            elif isinstance(event, ev.StreamOpened):
                if last_sid:
                    several = True
                last_sid = event.stream_id
                stream = YamuxStream(self, event.stream_id)
                streams[event.stream_id] = stream
                self._accept_queue.append(stream)
                waiter = self._accept_waiter
                if waiter is not None:
                    self._accept_waiter = None
                    waiter.set()
            elif isinstance(event, ev.StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_eof()
                    finished.append(stream)
            elif isinstance(event, ev.StreamReset):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_reset()
                    finished.append(stream)
            elif isinstance(event, ev.PingAcknowledged):
                entry = self._pings.pop(event.opaque, None)
                if entry is not None:
                    entry.rtt = self._now() - entry.start
                    self._session.record_rtt(entry.rtt)
                    entry.done.set()
            # GoAwayReceived: the session now refuses new outbound streams;
            # existing ones run on until the peer closes the transport.
        for stream in finished:
            self._forget(stream)
        if several:
            # Several streams' tasks are about to run at once: their output
            # is better written together, by the writer task.
            self._direct_after = self._now() + _BATCHING_HOLD

    # ------------------------------------------------------------------
    # Called by streams

    def _consumed(self, stream: YamuxStream, n: int) -> None:
        session = self._session
        session.acknowledge_received(stream.stream_id, n, self._now())
        if session.pending_output:
            self._wake_writer()

    def _half_close(self, stream: YamuxStream) -> None:
        """Queue FIN; the caller (:meth:`YamuxStream.send_eof`) flushes."""
        if not self._dead and self._session.has_stream(stream.stream_id):
            self._session.close_stream(stream.stream_id)
        self._forget(stream)

    def _reset(self, stream: YamuxStream) -> None:
        if not self._dead:
            self._session.reset_stream(stream.stream_id)
            self._wake_writer()
        self._forget(stream)

    def _stream_closed(self, stream: YamuxStream) -> None:
        session = self._session
        sid = stream.stream_id
        if not self._dead and session.has_stream(sid):
            if stream._buffered and not stream._eof_received:
                session.reset_stream(sid)
            elif not stream._eof_sent:
                session.close_stream(sid)
            self._wake_writer()
        stream._drop_buffer()
        stream._wake()
        self._forget(stream)

    def _forget(self, stream: YamuxStream) -> None:
        """Drop our record once the session stopped tracking the stream."""
        sid = stream.stream_id
        if not self._session.has_stream(sid) and self._streams.get(sid) is stream:
            del self._streams[sid]

    # ------------------------------------------------------------------
    # Helpers

    def _check_open(self) -> None:
        if self._closed_locally:
            raise trio.ClosedResourceError("yamux connection was closed")
        if self._dead:
            raise trio.BrokenResourceError("yamux connection is gone")

    def _send_ping(self) -> _Ping:
        entry = _Ping(self._now())
        try:
            opaque = self._session.ping()
        except LocalProtocolError:
            entry.done.set()
            return entry
        self._pings[opaque] = entry
        self._wake_writer()
        return entry

    def _transport_failed(self, exc: BaseException) -> None:
        if not self._closed_locally and self.error is None:
            self.error = exc
        self._mark_dead(None)
        if self._run_scope is not None:
            self._run_scope.cancel()

    def _wake_output_waiters(self) -> None:
        waiters = self._output_waiters
        if waiters:
            self._output_waiters = []
            for stream in waiters:
                stream._wake_sender()

    def _wake_writer(self) -> None:
        waiter = self._writer_wake
        if waiter is not None:
            self._writer_wake = None
            waiter.set()

    def _mark_dead(self, error: BaseException | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        if self._dead:
            return
        self._dead = True
        for stream in self._streams.values():
            stream._on_connection_lost()
        self._streams.clear()
        self._accept_queue.clear()
        for waiter in (self._accept_waiter, self._writer_wake):
            if waiter is not None:
                waiter.set()
        self._accept_waiter = self._writer_wake = None
        for entry in self._pings.values():
            entry.done.set()
        self._pings.clear()
        for stream in self._output_waiters:
            stream._wake_sender()
        self._output_waiters.clear()
