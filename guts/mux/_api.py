"""What the host needs of a multiplexed connection, whoever multiplexes it.

Theory of operation
-------------------
A connection reaches the host multiplexed in one of two ways: a raw byte
stream secured (Noise) and then multiplexed by yamux in user space, or a
transport that brings its own streams (QUIC, whose streams are the
transport's). The host, identify, ping and the protocols see neither: they
open and accept :class:`MuxedStream` s on a :class:`MuxedConnection` and
run it. Both are small on purpose, what the host actually uses.

:class:`MuxedStream` is an abstract class rather than a protocol because
every stream is also a :class:`trio.abc.HalfCloseableStream`, which the
negotiation code (:mod:`guts.wire`) takes as it is; it adds
:meth:`MuxedStream.reset`, the abrupt close that tells the other side the
stream's data is incomplete (a yamux RST, a QUIC RESET_STREAM and
STOP_SENDING).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol

import trio

__all__ = ["MuxedConnection", "MuxedStream"]


class MuxedStream(trio.abc.HalfCloseableStream):
    """One stream of a :class:`MuxedConnection`.

    ``send_eof`` half-closes it (the other side reads the end), ``aclose``
    closes both directions, and :meth:`reset` abandons it: the other side's
    reads and writes fail with :class:`trio.BrokenResourceError`.
    """

    __slots__ = ()

    @abstractmethod
    async def reset(self) -> None:
        """Abandon the stream in both directions; idempotent."""


class MuxedConnection(Protocol):
    """A connection carrying many streams to one peer.

    Attributes:
        error: why the connection ended, if it ended on an error (a
            protocol violation of the peer's, a broken transport);
            ``None`` while it runs and after a clean close.
    """

    error: BaseException | None

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended (either side closed it, or it broke)."""
        ...

    @property
    def stream_count(self) -> int:
        """Streams open now, in either direction."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Carry the connection until it ends (started once by the host)."""
        ...

    async def open_stream(self) -> MuxedStream:
        """Open a stream to the peer.

        Raises:
            trio.ClosedResourceError, trio.BrokenResourceError: the connection ended.
        """
        ...

    async def accept_stream(self) -> MuxedStream:
        """The next stream the peer opened.

        Raises:
            trio.ClosedResourceError, trio.BrokenResourceError, trio.EndOfChannel:
                the connection ended.
        """
        ...

    async def ping(self) -> float:
        """A round trip to the peer, in seconds (the keep-alive's probe)."""
        ...

    async def aclose(self) -> None:
        """Close the connection gracefully; idempotent."""
        ...
