"""The yamux session as a pure state machine (sans-IO, no trio).

Theory of operation
-------------------
A :class:`YamuxSession` sits between two byte pipes it never touches:
bytes from the peer go into :meth:`~YamuxSession.receive_data`, which
returns a list of :mod:`events <guts.mux.yamux._events>`; frames for the
peer pile up until :meth:`~YamuxSession.data_to_send` takes them. Local
actions (:meth:`~YamuxSession.open_stream`, :meth:`~YamuxSession.send`,
:meth:`~YamuxSession.close_stream`, ...) only queue frames. The shape is
h2's ``H2Connection``; the trio adapter in :mod:`._stream` moves the
bytes.

Parsing. Headers are twelve bytes; a DATA payload is handed on *as it
arrives*, possibly as several :class:`DataReceived` events, rather than
buffered until complete. That keeps memory at one partial header per
session whatever length a header claims, and lets a chunk that lies
wholly inside a payload pass through without a copy. FIN and RST on a
DATA frame take effect after its payload; SYN and ACK before it.

Streams. Stream ids are odd for the initiator and even for the
responder. Opening a stream queues a WINDOW_UPDATE flagged SYN whose
delta is our extra window over the spec's 256 KiB (so 0 by default, as
js-libp2p sends); inbound SYNs (on DATA or WINDOW_UPDATE frames) are
acknowledged at once with an ACK window update. (The libp2p spec's
"ACK backlog" section suggests delaying the ACK until the application
first writes, to give openers backpressure; the refusal past
``max_streams`` below is our backpressure instead, and an immediate ACK
keeps peers that cap their unacknowledged streams moving.)

A stream is forgotten once both sides sent FIN or either sent RST; late
frames for forgotten streams are dropped, as go-yamux and js-libp2p do.
Past
``config.max_streams`` live streams, or after we sent GoAway, an inbound
SYN is answered with RST: refusing a stream is not a session error.

Flow control. Each direction of each stream has its own window, no
session window. Sending is limited by the credit the peer granted
(``send`` accepts only what fits). Receiving, we track the credit the
peer still has; a DATA header longer than that is a protocol violation.
Credit is returned only when the *application* consumes data
(:meth:`~YamuxSession.acknowledge_received`), which is what makes a slow
reader slow down the sender, and only once at least half the window is
free, which coalesces window updates. Auto-tuning follows go-yamux and
js-libp2p: if the window had to be refilled within four round trips of
the previous refill, the peer is limited by our window, so it doubles
(up to ``config.max_window``). The RTT comes from pings, fed in by the
adapter through :meth:`~YamuxSession.record_rtt`; time is always passed
in, never read.

Errors. Peer misbehaviour raises :class:`~guts.errors.RemoteProtocolError`
(or its :class:`~guts.errors.DecodeError` subclass) whose ``hint`` is the
GoAway code; the session has then already queued that GoAway and
ignores further input. Misuse by the local side raises
:class:`~guts.errors.LocalProtocolError`. Frames the peer makes us queue
(ping answers, ACKs, refusals) are capped between two calls to
:meth:`~YamuxSession.data_to_send`, so a peer that floods us while never
reading cannot grow our memory.
"""

from __future__ import annotations

from guts.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from guts.mux.yamux._config import INITIAL_WINDOW, YamuxConfig
from guts.mux.yamux._events import (
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from guts.mux.yamux._frames import HEADER, HEADER_SIZE, MAX_UINT32, VERSION, GoAwayCode

__all__ = ["YamuxSession"]

_DATA = 0
_WINDOW_UPDATE = 1
_PING = 2
_GO_AWAY = 3
_SYN = 1
_ACK = 2
_FIN = 4
_RST = 8
_pack = HEADER.pack
_unpack = HEADER.unpack
_unpack_from = HEADER.unpack_from
#: How many round trips a window refill must beat for the window to grow.
_AUTOTUNE_RTTS = 4


class _Stream:
    """Bookkeeping for one live stream (mutable, session-private)."""

    __slots__ = (
        "stream_id",
        "send_window",
        "recv_window",
        "recv_credit",
        "buffered",
        "local_closed",
        "remote_closed",
        "epoch",
    )

    def __init__(self, stream_id: int, recv_window: int) -> None:
        self.stream_id = stream_id
        #: Bytes we may still send before the peer grants more.
        self.send_window = INITIAL_WINDOW
        #: Target size of our receive window (grows with auto-tuning).
        self.recv_window = recv_window
        #: Bytes the peer may still send us.
        self.recv_credit = recv_window
        #: Bytes reported in events but not yet consumed by the application.
        self.buffered = 0
        self.local_closed = False
        self.remote_closed = False
        #: Time of the last window refill, for auto-tuning.
        self.epoch: float | None = None


class YamuxSession:
    """One side of a yamux session, as a sans-IO state machine.

    Args:
        is_initiator: whether we dialled the connection. The initiator
            (the "client" of the spec) opens odd stream ids, the responder
            even ones.
        config: window sizes and limits; see :class:`YamuxConfig`.
    """

    def __init__(self, is_initiator: bool, config: YamuxConfig | None = None) -> None:
        self.is_initiator = is_initiator
        self.config = config if config is not None else YamuxConfig()
        #: Latest round-trip time in seconds, or ``None`` before any ping.
        self.rtt: float | None = None
        #: GoAway code we sent, or ``None``.
        self.local_goaway: int | None = None
        #: GoAway code the peer sent, or ``None``.
        self.remote_goaway: int | None = None
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if is_initiator else 2
        self._next_ping = 0
        self._out: list[bytes | memoryview] = []
        #: Bytes queued for the peer and not yet taken by
        #: :meth:`data_to_send` (read it, never set it: an attribute rather
        #: than a property because the adapter reads it on every operation).
        self.pending_output = 0
        self._control_debt = 0
        self._terminated: RemoteProtocolError | None = None
        # Parser state: a partial header, or the rest of a DATA payload.
        self._hbuf = bytearray()
        self._body_left = 0
        self._body_sid = 0
        self._body_flags = 0
        self._body_stream: _Stream | None = None

    # ------------------------------------------------------------------
    # Introspection

    @property
    def stream_count(self) -> int:
        """Number of live streams (either direction)."""
        return len(self._streams)

    @property
    def terminated(self) -> RemoteProtocolError | None:
        """The peer's protocol violation that ended the session, if any."""
        return self._terminated

    def has_stream(self, stream_id: int) -> bool:
        """Whether the session still tracks ``stream_id``.

        A stream is dropped once both sides sent FIN, or either sent RST.
        """
        return stream_id in self._streams

    def send_window(self, stream_id: int) -> int:
        """Bytes :meth:`send` would accept on the stream right now (0 if gone
        or half-closed by us)."""
        st = self._streams.get(stream_id)
        if st is None or st.local_closed:
            return 0
        return st.send_window

    def receive_window(self, stream_id: int) -> int:
        """Current receive-window size of the stream (grows with auto-tuning)."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.recv_window

    # ------------------------------------------------------------------
    # Local actions

    def open_stream(self) -> int:
        """Open a stream and queue its SYN. Data may follow at once.

        Returns:
            The new stream id.

        Raises:
            LocalProtocolError: a GoAway was sent or received, the stream
                limit is reached, or stream ids are exhausted.
        """
        self._check_alive()
        if self.remote_goaway is not None:
            raise LocalProtocolError("peer sent GoAway: no new streams")
        if self.local_goaway is not None:
            raise LocalProtocolError("we sent GoAway: no new streams")
        if len(self._streams) >= self.config.max_streams:
            raise LocalProtocolError(f"stream limit reached ({self.config.max_streams})")
        sid = self._next_id
        if sid > MAX_UINT32:
            raise LocalProtocolError("yamux stream ids exhausted")
        self._next_id = sid + 2
        self._streams[sid] = _Stream(sid, self.config.initial_window)
        self._queue(_pack(VERSION, _WINDOW_UPDATE, _SYN, sid, self.config.initial_window - INITIAL_WINDOW))
        return sid

    def send(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the peer's window allows.

        The data goes out as DATA frames of at most
        ``config.max_frame_payload`` bytes each. ``bytes`` and
        ``memoryview`` arguments are queued without copying, so the caller
        must not mutate the memory behind a memoryview until
        :meth:`data_to_send` has been called; a ``bytearray`` is copied.

        Returns:
            How many bytes were accepted (possibly 0 when the window is
            exhausted: wait for a :class:`WindowUpdated` event).

        Raises:
            LocalProtocolError: the stream is unknown (never opened,
                reset or fully closed) or we already sent FIN on it.
        """
        st = self._local_stream(stream_id)
        if st.local_closed:
            raise LocalProtocolError(f"stream {stream_id} already half-closed by us")
        size = len(data)
        n = size if size <= st.send_window else st.send_window
        if n == 0:
            return 0
        if isinstance(data, bytearray):
            data = bytes(memoryview(data)[:n])
            size = n
        max_frame = self.config.max_frame_payload
        out = self._out
        if n == size and n <= max_frame:
            out.append(_pack(VERSION, _DATA, 0, stream_id, n))
            out.append(data)
            frames = 1
        else:
            view = memoryview(data)
            frames = 0
            for start in range(0, n, max_frame):
                end = min(start + max_frame, n)
                out.append(_pack(VERSION, _DATA, 0, stream_id, end - start))
                out.append(view[start:end])
                frames += 1
        st.send_window -= n
        self.pending_output += n + frames * HEADER_SIZE
        return n

    def close_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (queue FIN).

        Raises:
            LocalProtocolError: the stream is unknown or already
                half-closed by us.
        """
        st = self._local_stream(stream_id)
        if st.local_closed:
            raise LocalProtocolError(f"stream {stream_id} already half-closed by us")
        st.local_closed = True
        self._queue(_pack(VERSION, _WINDOW_UPDATE, _FIN, stream_id, 0))
        if st.remote_closed:
            self._forget(st)

    def reset_stream(self, stream_id: int) -> None:
        """Abort the stream in both directions (queue RST).

        Resetting a stream the session no longer tracks does nothing: a
        reset is a way of saying "make it go away" and may race with the
        peer's own RST or FIN.
        """
        st = self._streams.get(stream_id)
        if st is None or self._terminated is not None:
            return
        self._forget(st)
        self._queue(_pack(VERSION, _WINDOW_UPDATE, _RST, stream_id, 0))

    def acknowledge_received(self, stream_id: int, n: int, now: float | None = None) -> None:
        """Tell the session the application consumed ``n`` received bytes.

        This is what returns flow-control credit to the peer: a window
        update is queued once at least half the window is free. Pass
        ``now`` (seconds, any monotonic clock) to enable window
        auto-tuning; without it the window keeps its size.

        Raises:
            LocalProtocolError: ``n`` is negative or more than was received
                and not yet acknowledged on the stream.
        """
        st = self._streams.get(stream_id)
        if st is None or self._terminated is not None:
            return
        if not 0 <= n <= st.buffered:
            raise LocalProtocolError(f"acknowledged {n} bytes, only {st.buffered} pending")
        st.buffered -= n
        if st.remote_closed:
            return
        epoch = st.epoch
        if now is not None and epoch is None:
            # The first read starts the clock; growth needs a full epoch.
            st.epoch = now
        window = st.recv_window
        delta = window - st.recv_credit - st.buffered
        if delta < window >> 1:
            return
        if now is not None:
            rtt = self.rtt
            if (
                rtt is not None
                and epoch is not None
                and window < self.config.max_window
                and now - epoch < _AUTOTUNE_RTTS * rtt
            ):
                grown = min(window * 2, self.config.max_window)
                st.recv_window = grown
                delta += grown - window
            st.epoch = now
        st.recv_credit += delta
        self._queue(_pack(VERSION, _WINDOW_UPDATE, 0, stream_id, delta))

    def ping(self) -> int:
        """Queue a ping; the answer arrives as :class:`PingAcknowledged`.

        Returns:
            The opaque value sent, echoed back in the event.
        """
        self._check_alive()
        opaque = self._next_ping
        self._next_ping = (opaque + 1) & MAX_UINT32
        self._queue(_pack(VERSION, _PING, _SYN, 0, opaque))
        return opaque

    def record_rtt(self, seconds: float) -> None:
        """Feed a measured round-trip time (drives window auto-tuning)."""
        if seconds >= 0:
            self.rtt = seconds

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Queue a GoAway: we take no new streams; existing ones continue.

        Only the first call sends a frame; later calls do nothing.
        """
        if self.local_goaway is not None:
            return
        if not 0 <= code <= MAX_UINT32:
            raise LocalProtocolError(f"GoAway code out of range: {code}")
        self.local_goaway = code
        self._queue(_pack(VERSION, _GO_AWAY, 0, 0, code))

    def data_to_send(self) -> bytes:
        """Take every queued byte for the peer (``b""`` when none)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 and isinstance(out[0], bytes) else b"".join(out)
        out.clear()
        self.pending_output = 0
        self._control_debt = 0
        return data

    # ------------------------------------------------------------------
    # Input

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; return what happened.

        Raises:
            RemoteProtocolError: the peer broke the protocol. ``hint`` is
                the GoAway code, already queued; the session ignores all
                further input.
        """
        if self._terminated is not None:
            return []
        if not isinstance(data, bytes):
            data = bytes(data)
        events: list[Event] = []
        try:
            self._parse(data, events)
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise
        return events

    def _parse(self, data: bytes, events: list[Event]) -> None:
        n = len(data)
        pos = 0
        hbuf = self._hbuf
        while pos < n:
            left = self._body_left
            if left:
                take = n - pos if n - pos < left else left
                st = self._body_stream
                if st is not None:
                    chunk = data if take == n else data[pos : pos + take]
                    events.append(DataReceived(self._body_sid, chunk))
                pos += take
                left -= take
                self._body_left = left
                if not left:
                    self._body_stream = None
                    if self._body_flags & (_FIN | _RST):
                        self._end_flags(self._body_sid, self._body_flags, events)
                continue
            if hbuf:
                need = HEADER_SIZE - len(hbuf)
                hbuf += data[pos : pos + need]
                pos += need
                if len(hbuf) < HEADER_SIZE:
                    return
                version, ftype, flags, sid, length = _unpack(hbuf)
                hbuf.clear()
            elif n - pos < HEADER_SIZE:
                hbuf += data[pos:]
                return
            else:
                version, ftype, flags, sid, length = _unpack_from(data, pos)
                pos += HEADER_SIZE
            self._on_header(version, ftype, flags, sid, length, events)

    def _on_header(
        self, version: int, ftype: int, flags: int, sid: int, length: int, events: list[Event]
    ) -> None:
        if version != VERSION:
            raise DecodeError(f"unsupported yamux version {version}", hint=GoAwayCode.PROTOCOL_ERROR)
        if ftype == _DATA or ftype == _WINDOW_UPDATE:
            if sid == 0:
                raise RemoteProtocolError("stream frame on stream 0", hint=GoAwayCode.PROTOCOL_ERROR)
            if flags & _SYN:
                st = self._accept_syn(sid, events)
            else:
                st = self._streams.get(sid)
            if ftype == _DATA:
                if st is not None and length:
                    if st.remote_closed:
                        raise RemoteProtocolError(
                            f"data after FIN on stream {sid}", hint=GoAwayCode.PROTOCOL_ERROR
                        )
                    if length > st.recv_credit:
                        raise RemoteProtocolError(
                            f"stream {sid}: {length} bytes sent with a window of {st.recv_credit}",
                            hint=GoAwayCode.PROTOCOL_ERROR,
                        )
                    st.recv_credit -= length
                    st.buffered += length
                if length:
                    # Payload follows; FIN/RST apply once it has been read.
                    self._body_left = length
                    self._body_sid = sid
                    self._body_flags = flags
                    self._body_stream = st
                    return
            elif st is not None and length:
                window = st.send_window + length
                if window > MAX_UINT32:
                    raise RemoteProtocolError(
                        f"stream {sid}: send window overflow", hint=GoAwayCode.PROTOCOL_ERROR
                    )
                st.send_window = window
                events.append(WindowUpdated(sid, length))
            if flags & (_FIN | _RST):
                self._end_flags(sid, flags, events)
        elif ftype == _PING:
            if sid != 0:
                raise RemoteProtocolError("ping on a stream", hint=GoAwayCode.PROTOCOL_ERROR)
            if flags & _SYN:
                self._queue_reply(_pack(VERSION, _PING, _ACK, 0, length))
            elif flags & _ACK:
                events.append(PingAcknowledged(length))
            else:
                raise RemoteProtocolError("ping without SYN or ACK", hint=GoAwayCode.PROTOCOL_ERROR)
        elif ftype == _GO_AWAY:
            if sid != 0:
                raise RemoteProtocolError("GoAway on a stream", hint=GoAwayCode.PROTOCOL_ERROR)
            if self.remote_goaway is None:
                self.remote_goaway = length
                events.append(GoAwayReceived(length))
        else:
            raise DecodeError(f"unknown yamux frame type {ftype}", hint=GoAwayCode.PROTOCOL_ERROR)

    def _accept_syn(self, sid: int, events: list[Event]) -> _Stream | None:
        if (sid & 1) == self.is_initiator:
            raise RemoteProtocolError(
                f"peer opened stream {sid} with our id parity", hint=GoAwayCode.PROTOCOL_ERROR
            )
        if sid in self._streams:
            raise RemoteProtocolError(f"duplicate SYN for stream {sid}", hint=GoAwayCode.PROTOCOL_ERROR)
        if self.local_goaway is not None or len(self._streams) >= self.config.max_streams:
            self._queue_reply(_pack(VERSION, _WINDOW_UPDATE, _RST, sid, 0))
            return None
        st = _Stream(sid, self.config.initial_window)
        self._streams[sid] = st
        self._queue_reply(
            _pack(VERSION, _WINDOW_UPDATE, _ACK, sid, self.config.initial_window - INITIAL_WINDOW)
        )
        events.append(StreamOpened(sid))
        return st

    def _end_flags(self, sid: int, flags: int, events: list[Event]) -> None:
        st = self._streams.get(sid)
        if st is None:
            return
        if flags & _RST:
            self._forget(st)
            events.append(StreamReset(sid))
        elif not st.remote_closed:
            st.remote_closed = True
            events.append(StreamEnded(sid))
            if st.local_closed:
                self._forget(st)

    # ------------------------------------------------------------------
    # Helpers

    def _check_alive(self) -> None:
        if self._terminated is not None:
            raise LocalProtocolError(f"session failed: {self._terminated}")

    def _local_stream(self, stream_id: int) -> _Stream:
        self._check_alive()
        st = self._streams.get(stream_id)
        if st is None:
            raise LocalProtocolError(f"unknown or closed stream {stream_id}")
        return st

    def _forget(self, st: _Stream) -> None:
        del self._streams[st.stream_id]
        if self._body_stream is st:
            self._body_stream = None

    def _queue(self, frame: bytes) -> None:
        self._out.append(frame)
        self.pending_output += HEADER_SIZE

    def _queue_reply(self, frame: bytes) -> None:
        """Queue a frame the peer made us send, within the backlog cap."""
        self._control_debt += HEADER_SIZE
        if self._control_debt > self.config.max_control_backlog:
            raise RemoteProtocolError(
                "peer makes us queue control frames faster than it reads them",
                hint=GoAwayCode.PROTOCOL_ERROR,
            )
        self._queue(frame)

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._terminated = exc
        self._hbuf.clear()
        self._body_left = 0
        self._body_stream = None
        if self.local_goaway is None:
            code = exc.hint if exc.hint is not None else GoAwayCode.PROTOCOL_ERROR
            self.local_goaway = code
            self._queue(_pack(VERSION, _GO_AWAY, 0, 0, code))
