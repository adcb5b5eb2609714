"""Length-prefixed messages over a trio stream.

:class:`MessageStream` is the adapter that protocols (identify, and later
the DHT and gossipsub) use to exchange ``<uvarint length><protobuf>``
messages. Reads are bounded by ``max_size``; a declared length above it
raises :class:`~guts.errors.DecodeError` before anything is buffered.
"""

from __future__ import annotations

import trio

from guts.errors import DecodeError
from guts.wire._framing import LengthPrefixedDecoder, encode_length_prefixed

__all__ = ["MessageStream"]

_READ = 64 * 1024


class MessageStream:
    """Send and receive length-prefixed messages on ``stream``."""

    def __init__(self, stream: trio.abc.Stream, max_size: int) -> None:
        self.stream = stream
        self._decoder = LengthPrefixedDecoder(max_size)

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(encode_length_prefixed(payload))

    async def receive(self) -> bytes | None:
        """The next message, or ``None`` on a clean end of stream.

        Raises:
            DecodeError: oversized message, or the stream ended inside one.
        """
        while True:
            message = self._decoder.next_message()
            if message is not None:
                return message
            data = await self.stream.receive_some(_READ)
            if not data:
                if self._decoder.buffered:
                    raise DecodeError("stream ended inside a message")
                return None
            self._decoder.receive_data(data)
