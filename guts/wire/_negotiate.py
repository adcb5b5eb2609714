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

from guts.errors import RemoteProtocolError
from guts.wire._multistream import DialerNegotiation, ListenerNegotiation

__all__ = ["NegotiatedStream", "select_protocol", "accept_protocol"]

_READ = 4096


class NegotiatedStream(trio.abc.HalfCloseableStream):
    """A stream whose protocol was agreed with multistream-select.

    Attributes:
        stream: the wrapped stream.
        protocol: the agreed protocol id.
        connection: set by the host: the connection the stream belongs to
            (``connection.peer_id`` names the remote).
    """

    def __init__(self, stream: trio.abc.Stream, protocol: str, leftover: bytes = b"") -> None:
        self.stream = stream
        self.protocol = protocol
        self._leftover = leftover
        self.connection: Any = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is None:
            raise trio.ClosedResourceError("underlying stream cannot half-close")
        await send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._leftover:
            if max_bytes is None or max_bytes >= len(self._leftover):
                data, self._leftover = self._leftover, b""
            else:
                data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
            await trio.lowlevel.checkpoint()
            return data
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        self._leftover = b""
        await self.stream.aclose()

    def unwrap(self) -> trio.abc.Stream:
        """The wrapped stream itself when no early bytes are pending, else self.

        Lets a layer built on top skip this wrapper on its hot path.
        """
        return self if self._leftover else self.stream

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
    stream: trio.abc.Stream, supported: Container[str], listing: Iterable[str] | None = None
) -> NegotiatedStream:
    """Answer the dialer's proposals as the listener.

    Raises:
        NegotiationError: the dialer proposed too many unknown protocols.
        RemoteProtocolError: the dialer broke multistream-select or hung up.
    """
    core = ListenerNegotiation(supported, listing)
    while not core.done:
        core.receive_data(await _receive(stream))
        out = core.data_to_send()
        if out:
            await stream.send_all(out)
    assert core.protocol is not None
    return NegotiatedStream(stream, core.protocol, core.unused_data())
