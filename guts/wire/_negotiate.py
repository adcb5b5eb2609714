"""Trio adapter for multistream-select.

:func:`select_protocol` (dialer) and :func:`accept_protocol` (listener)
drive the sans-IO cores of :mod:`guts.wire._multistream` over any trio
stream and return a :class:`NegotiatedStream`: the same stream, plus the
agreed protocol, plus whatever bytes arrived behind the negotiation (the
remote may send its first message in the same packet as its answer).

The caller sets the deadline (``trio.fail_after``); these functions never
close the stream they were given, so the caller decides how to fail.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any

import trio

from guts.errors import NegotiationError, RemoteProtocolError
from guts.wire._multistream import DialerNegotiation, ListenerNegotiation, NegotiationLimit

__all__ = ["NegotiatedStream", "select_protocol", "accept_protocol"]

_READ = 4096


class NegotiatedStream(trio.abc.HalfCloseableStream):
    """A stream whose protocol was agreed with multistream-select.

    Usually returned by :func:`select_protocol` or :func:`accept_protocol`;
    :meth:`lazy` builds one whose negotiation travels with the protocol's
    own first messages.

    Attributes:
        stream: the wrapped stream.
        protocol: the agreed protocol id (for a lazy dialer: the one
            proposed, which the listener has maybe not confirmed yet).
        connection: set by the host: the connection the stream belongs to
            (``connection.peer_id`` names the remote).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: str,
        leftover: bytes = b"",
        *,
        unsent: bytes = b"",
        pending: DialerNegotiation | None = None,
    ) -> None:
        self.stream = stream
        self.protocol = protocol
        self._leftover = leftover  # received behind the negotiation, not yet returned
        self._unsent = unsent  # negotiation bytes that go out in front of our first write
        self._flushing: trio.Event | None = None  # set while receive_some writes _unsent
        self._pending = pending  # lazy dialer: the listener's answer is still to be read
        self.connection: Any = None

    @classmethod
    def lazy(cls, stream: trio.abc.Stream, protocol: str) -> NegotiatedStream:
        """Propose ``protocol`` as the dialer without waiting for the answer.

        Nothing is sent yet: the multistream header and the proposal go out
        in the same write as the first data, and the first
        :meth:`receive_some` reads the listener's answer before any data
        (go-libp2p's lazy ``multistream.SelectProtoOrFail``; rust-libp2p's
        ``Version::V1Lazy``). That saves a round trip, at a price: a
        listener that refuses the protocol reads our first data as garbage,
        and we only learn of the refusal (:class:`~guts.errors.NegotiationError`)
        from ``receive_some``. So use it with one protocol the listener is
        known to speak, and a first message the protocol sends unasked.
        """
        core = DialerNegotiation([protocol])
        return cls(stream, protocol, unsent=core.data_to_send(), pending=core)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._flushing is not None:
            await self._flushing.wait()
        if self._unsent:
            unsent, self._unsent = self._unsent, b""
            data = unsent + data
        await self.stream.send_all(data)

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """The wrapped stream's ``try_send`` (a write that never waits), once
        no negotiation bytes must go out first; otherwise, or when the
        wrapped stream has none, 0: nothing taken."""
        try_send = getattr(self.stream, "try_send", None)
        if try_send is None or self._unsent or self._flushing is not None:
            return 0
        return int(try_send(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is None:
            raise trio.ClosedResourceError("underlying stream cannot half-close")
        if self._unsent:
            await self.send_all(b"")
        await send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._pending is not None:
            await self._finish_negotiation()
            if self._leftover:
                return self._take_leftover(max_bytes)  # the negotiation awaited already
        if self._leftover:
            data = self._take_leftover(max_bytes)
            await trio.lowlevel.checkpoint()
            return data
        return await self.stream.receive_some(max_bytes)

    async def receive_into(self, buffer: bytearray | memoryview) -> int:
        """:meth:`receive_some` into ``buffer``; the wrapped stream's own
        ``receive_into`` once nothing is pending here."""
        receive_into = getattr(self.stream, "receive_into", None)
        if receive_into is None or self._pending is not None or self._leftover:
            with memoryview(buffer) as view:
                data = await self.receive_some(len(view))
                view[: len(data)] = data
            return len(data)
        return int(await receive_into(buffer))

    def _take_leftover(self, max_bytes: int | None) -> bytes:
        if max_bytes is None or max_bytes >= len(self._leftover):
            data, self._leftover = self._leftover, b""
        else:
            data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return data

    async def _finish_negotiation(self) -> None:
        """Lazy dialer: send the proposal if no write took it, read the answer."""
        if self._unsent:
            unsent, self._unsent = self._unsent, b""
            self._flushing = flushing = trio.Event()
            try:
                await self.stream.send_all(unsent)
            finally:
                self._flushing = None
                flushing.set()
        core = self._pending
        assert core is not None
        while not core.done:
            core.receive_data(await _receive(self.stream))
        self._pending = None
        self._leftover = core.unused_data()

    async def aclose(self) -> None:
        self._leftover = b""
        self._unsent = b""
        await self.stream.aclose()

    def unwrap(self) -> trio.abc.Stream:
        """The wrapped stream itself when nothing is pending here, else self.

        Lets a layer built on top skip this wrapper on its hot path.
        """
        if self._leftover or self._unsent or self._pending is not None:
            return self
        return self.stream

    def __getattr__(self, name: str) -> Any:
        # reset(), stream_id and other muxer-specific attributes pass through.
        return getattr(self.stream, name)


async def _receive(stream: trio.abc.Stream) -> bytes:
    data = await stream.receive_some(_READ)
    if not data:
        raise RemoteProtocolError("stream closed during protocol negotiation")
    return bytes(data)


async def select_protocol(stream: trio.abc.Stream, protocols: Sequence[str]) -> NegotiatedStream:
    """Propose ``protocols`` in order as the dialer.

    The header and the first proposal go out in one write.

    Raises:
        NegotiationError: the listener refused them all.
        RemoteProtocolError: the listener broke multistream-select or hung up.
    """
    core = DialerNegotiation(protocols)
    await stream.send_all(core.data_to_send())
    while not core.done:
        core.receive_data(await _receive(stream))
        out = core.data_to_send()
        if out:
            await stream.send_all(out)
    assert core.protocol is not None
    return NegotiatedStream(stream, core.protocol, core.unused_data())


async def accept_protocol(
    stream: trio.abc.Stream,
    supported: Container[str],
    listing: Iterable[str] | None = None,
    *,
    hold_answer: bool = False,
    limit: NegotiationLimit | None = None,
) -> NegotiatedStream:
    """Answer the dialer's proposals as the listener.

    Args:
        stream: the stream to negotiate on.
        supported: protocols we speak.
        listing: what to answer ``ls`` with (see :class:`ListenerNegotiation`).
        hold_answer: when the dialer already sent data behind its accepted
            proposal (it negotiated lazily, so it does not wait for our
            answer), keep the answer and send it in front of our first
            write on the returned stream: one packet instead of two, and
            one wakeup less for the dialer. Only for a protocol that always
            answers what the dialer sends first, like the Noise responder;
            for any other, the dialer could wait for an answer that never
            comes.
        limit: the connection's count of streams in negotiation; by
            default the stream's own ``negotiation_limit`` when it has
            one (a yamux stream the peer opened carries its
            connection's). With no slot free the stream is refused
            before anything is read.

    Raises:
        NegotiationError: the dialer proposed too many unknown protocols
            or asked ``ls`` too often, or the connection has too many
            streams in negotiation.
        RemoteProtocolError: the dialer broke multistream-select or hung up.
    """
    if limit is None:
        limit = getattr(stream, "negotiation_limit", None)
    if limit is None:
        return await _accept(stream, supported, listing, hold_answer)
    if not limit.try_acquire():
        raise NegotiationError(f"too many streams in negotiation (limit {limit.max_pending})")
    try:
        return await _accept(stream, supported, listing, hold_answer)
    finally:
        limit.release()


async def _accept(
    stream: trio.abc.Stream, supported: Container[str], listing: Iterable[str] | None, hold_answer: bool
) -> NegotiatedStream:
    core = ListenerNegotiation(supported, listing)
    while True:
        core.receive_data(await _receive(stream))
        out = core.data_to_send()
        if core.done:
            break
        if out:
            await stream.send_all(out)
    assert core.protocol is not None
    leftover = core.unused_data()
    if hold_answer and leftover:
        return NegotiatedStream(stream, core.protocol, leftover, unsent=out)
    await stream.send_all(out)
    return NegotiatedStream(stream, core.protocol, leftover)
