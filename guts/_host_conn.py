"""One upgraded connection of a host (:class:`Connection`), and the small
stream helpers the host and it share.

A :class:`Connection` is what the host hands out for a peer: its secure
channel and muxer (Noise or TLS and yamux over a raw stream, or a
transport's own, as QUIC's), its direction and addresses, and the stream
opening that negotiates a protocol within the host's deadline. It belongs
to :mod:`guts.host`'s namespace (``from guts.host import Connection``);
this module only keeps the host module to a readable size.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

import trio

from guts._host_events import Direction
from guts.connmgr import ConnManager
from guts.multiaddr import Multiaddr
from guts.mux import MuxedConnection
from guts.peer import PeerId
from guts.security import SecureChannel
from guts.transport import RawConnection, UpgradedConnection
from guts.wire import NegotiatedStream, select_protocol

__all__ = ["Connection"]

T = TypeVar("T")


class _Timeouts(Protocol):
    @property
    def negotiation_timeout(self) -> float: ...


class _Owner(Protocol):
    """What a connection asks of its host (:class:`guts.host.Host`)."""

    @property
    def peer_id(self) -> PeerId: ...

    @property
    def config(self) -> _Timeouts: ...

    connmgr: ConnManager


class Connection:
    """One upgraded connection to one peer."""

    def __init__(
        self,
        host: _Owner,
        raw: RawConnection | UpgradedConnection,
        secure: SecureChannel,
        muxer: MuxedConnection,
        direction: Direction,
        slot: int = -1,
    ) -> None:
        self._host = host
        #: The connection manager's slot (``host.connmgr.info(slot)``).
        self.slot = slot
        self.raw = raw
        self.secure = secure
        self.muxer = muxer
        self.direction = direction
        self.peer_id: PeerId = secure.remote_peer
        self.remote_addr: Multiaddr = raw.remote_addr
        self.local_addr: Multiaddr = raw.local_addr
        self.opened_at = time.monotonic()
        self.closed = trio.Event()
        #: Set once identify on this connection finished, well or not.
        self.identified = trio.Event()
        #: Inbound streams being served now, by protocol.
        self.serving: dict[str, int] = {}

    @property
    def dialer(self) -> PeerId:
        """The peer that dialled this connection."""
        return self._host.peer_id if self.direction is Direction.OUTBOUND else self.peer_id

    @property
    def is_closed(self) -> bool:
        return self.closed.is_set() or self.muxer.is_closed

    async def new_stream(self, protocols: Sequence[str]) -> NegotiatedStream:
        """Open a stream and agree on one of ``protocols`` (in preference order).

        Raises:
            NegotiationError: the peer speaks none of them.
        """
        stream = await self.muxer.open_stream()
        try:
            negotiated = await _within(self._host.config.negotiation_timeout, select_protocol(stream, protocols))
        except BaseException:
            with trio.CancelScope(shield=True):
                await _abort(stream)
            raise
        negotiated.connection = self
        self._host.connmgr.used(self.slot, negotiated.protocol, trio.current_time())
        return negotiated

    async def ping(self) -> float:
        """Round trip of the muxer's ping (yamux's, QUIC's), in seconds."""
        return await self.muxer.ping()

    async def aclose(self) -> None:
        """Close gracefully (a yamux GoAway, a QUIC CONNECTION_CLOSE); idempotent."""
        await self.muxer.aclose()

    def __repr__(self) -> str:
        return f"<Connection {self.direction.value} {self.peer_id} {self.remote_addr}>"


async def _within(seconds: float, work: Awaitable[T]) -> T:
    """``await work`` under a deadline, raising :class:`trio.TooSlowError`.

    The same as ``trio.fail_after`` without its context-manager layers: it
    runs twice for every stream, once on each side.
    """
    scope = trio.CancelScope(deadline=trio.current_time() + seconds)
    with scope:
        return await work
    raise trio.TooSlowError


async def _close_forcefully(muxer: MuxedConnection) -> None:
    # trio.aclose_forcefully, for a muxer that is not a trio AsyncResource:
    # start a graceful close already cancelled, so it does only what is immediate
    with trio.CancelScope() as scope:
        scope.cancel()
        await muxer.aclose()


async def _abort(stream: Any) -> None:
    reset = getattr(stream, "reset", None)
    try:
        if reset is not None:
            result = reset()
            if isinstance(result, Awaitable):
                await result
        else:
            await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
