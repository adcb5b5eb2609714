"""The one writer of a peer's outbound gossip stream, and its backpressure.

Frames for a peer wait in a queue bounded in bytes
(``GossipConfig.max_queued_bytes``) and one task writes them out, a batch
at a time. A peer that does not read fills its queue; further frames to it
are dropped (gossip heals the loss) and the queue reports that it
overflowed, so that the heartbeat can charge the peer a penalty. A write
that has been in progress for a long time shows in :meth:`stalled_for`,
so that the caller can close a stream whose peer stopped reading
altogether. A frame is queued as it is, beside its length prefix, not
copied: a message forwarded to many peers is one bytes object in all their
queues and in the message cache. Dropping is not left to the transport: blocking the router on
one slow peer would slow every other peer down.
"""

from __future__ import annotations

import logging
from collections import deque

import trio

from guts.peer import PeerId
from guts.wire import encode_uvarint

__all__ = ["WRITE_BATCH", "PeerWriter"]

log = logging.getLogger("guts.gossip")

#: Bytes joined into one ``send_all``: fewer writes, bounded latency.
WRITE_BATCH = 256 * 1024


class PeerWriter:
    """A bounded queue of RPC frames for one peer, and the loop that writes it.

    Args:
        peer: whose stream this is (for log lines).
        max_queued_bytes: queued bytes past which frames are dropped.
    """

    def __init__(self, peer: PeerId, max_queued_bytes: int) -> None:
        self.peer = peer
        self.max_queued_bytes = max_queued_bytes
        #: Frames dropped because the queue was full.
        self.dropped = 0
        self._queue: deque[bytes] = deque()  # length prefixes and frames, alternately
        self._queued = 0
        self._wake = trio.Event()
        self._overflowed = False  # since take_overflow() last asked
        self._writing_since: float | None = None  # a write in progress began then

    def enqueue(self, frame: bytes) -> None:
        """Queue one RPC frame (the length prefix is added here), or drop it
        if the queue is full."""
        prefix = encode_uvarint(len(frame))
        size = len(prefix) + len(frame)
        if self._queued + size > self.max_queued_bytes:
            self.dropped += 1
            if not self._overflowed:
                log.info("peer %s: send queue full (%d bytes); dropping RPCs", self.peer, self._queued)
            self._overflowed = True
            return
        self._queue.append(prefix)
        self._queue.append(frame)
        self._queued += size
        self._wake.set()

    def clear(self) -> None:
        """Forget what is queued (the stream is gone)."""
        self._queue.clear()
        self._queued = 0

    def take_overflow(self) -> bool:
        """Whether frames were dropped since the last call."""
        overflowed, self._overflowed = self._overflowed, False
        return overflowed

    def stalled_for(self, now: float) -> float | None:
        """How long the write in progress has taken so far, or ``None`` if
        no write is in progress."""
        return None if self._writing_since is None else now - self._writing_since

    async def run(self, stream: trio.abc.SendStream) -> None:
        """Write queued frames to ``stream`` until cancelled.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError, GutsError: the
                stream failed; whatever is queued is lost with it.
        """
        while True:
            while not self._queue:
                await self._wake.wait()
                self._wake = trio.Event()
            batch: list[bytes] = []
            size = 0
            while self._queue and size < WRITE_BATCH:
                prefix, frame = self._queue.popleft(), self._queue.popleft()
                batch += (prefix, frame)
                size += len(prefix) + len(frame)
            self._queued -= size
            self._writing_since = trio.current_time()
            await stream.send_all(b"".join(batch))
            self._writing_since = None
