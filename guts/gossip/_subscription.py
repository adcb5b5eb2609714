"""One topic's messages as the application reads them: a bounded channel
that drops rather than slows the network down."""

from __future__ import annotations

from collections.abc import Callable

import trio

from guts.gossip._events import GossipMessage

__all__ = ["Subscription"]


class Subscription:
    """Messages of one topic, as an async iterator.

    Bounded: when the application falls ``buffer`` messages or ``max_bytes``
    bytes of payload behind, newer ones are dropped (and counted in
    :attr:`dropped`); the network is not slowed down by a slow reader, and
    a topic of big messages cannot pile up unread (one message is always
    let in, whatever its size). Closing it (or leaving its ``with``
    block) unsubscribes; it also ends when the gossipsub service stops.

    :meth:`guts.gossip.Gossipsub.subscribe` makes them; ``on_close`` is how
    it learns that one was closed.
    """

    def __init__(
        self, topic: str, buffer: int, on_close: Callable[[Subscription], None], max_bytes: int = 16 << 20
    ) -> None:
        self.topic = topic
        self.dropped = 0
        self.max_bytes = max_bytes
        self._queued_bytes = 0
        self._on_close = on_close
        self._send, self._receive = trio.open_memory_channel[GossipMessage](buffer)
        self._closed = False

    def _deliver(self, message: GossipMessage) -> bool:
        """Queue ``message``; False if the buffer is full (it is dropped)."""
        size = len(message.data)
        if self._queued_bytes and self._queued_bytes + size > self.max_bytes:
            self.dropped += 1
            return False
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.dropped += 1
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True
        self._queued_bytes += size
        return True

    def _taken(self, message: GossipMessage) -> GossipMessage:
        self._queued_bytes -= len(message.data)
        return message

    def _end(self) -> None:
        self._send.close()

    async def receive(self) -> GossipMessage:
        """The next message.

        Raises:
            trio.EndOfChannel: the subscription was closed or gossip stopped.
        """
        return self._taken(await self._receive.receive())

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> GossipMessage:
        try:
            return self._taken(await self._receive.receive())
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        if not self._closed:
            self._closed = True
            self._send.close()
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
