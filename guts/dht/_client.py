"""Outbound DHT requests: one stream per request, bounded in time, and the
connections the DHT opened for them.

js kad-dht opens one stream per request too. Lookups reach many peers,
and nothing else closes connections, so the client remembers which
connections it dialled itself and closes the least recently used idle
ones (no stream of any protocol open, no request of ours in flight)
beyond ``max_dialed_connections``.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import trio

from guts.dht._codec import KadMessage, decode_message, encode_message
from guts.dht._config import DhtConfig
from guts.errors import GutsError, RemoteProtocolError
from guts.host import Host
from guts.peer import PeerId
from guts.wire import MessageStream, NegotiatedStream

__all__ = ["KadClient", "RequestFailed"]

log = logging.getLogger("guts.dht")


class RequestFailed(GutsError):
    """A DHT request to one peer failed (a lookup carries on without it)."""

    def __init__(self, peer: PeerId, reason: str) -> None:
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason


#: Seconds after a trim that left connections in use before trying again.
_RETRIM_DELAY = 0.5


class KadClient:
    """Sends requests for one :class:`~guts.dht.Dht`.

    Args:
        host: the host to open streams on.
        config: protocol id, timeouts, codec bounds, connection cap.
        spawn: runs a background task (closing connections).
    """

    def __init__(self, host: Host, config: DhtConfig, spawn: Callable[..., Any]) -> None:
        self.host = host
        self.config = config
        self._spawn = spawn
        self._dialed: OrderedDict[PeerId, None] = OrderedDict()  # least recently used first
        self._busy: Counter[PeerId] = Counter()  # our requests in flight per peer
        self._retrim_pending = False

    @property
    def dialed(self) -> int:
        """Connections we opened and still track."""
        return len(self._dialed)

    async def request(self, peer: PeerId, message: KadMessage, *, expect_response: bool = True) -> KadMessage | None:
        """Send one request on a new stream and read the answer.

        Raises:
            RequestFailed: dial, negotiation, timeout, a broken stream, or a
                malformed or mismatched answer (the reason is logged).
        """
        if self.host.connection(peer) is None:
            self._dialed[peer] = None
        if peer in self._dialed:
            self._dialed.move_to_end(peer)
        self._busy[peer] += 1
        try:
            return await self._request(peer, message, expect_response)
        finally:
            self._busy[peer] -= 1
            if not self._busy[peer]:
                del self._busy[peer]
            self._trim()

    def _trim(self) -> None:
        cap = self.config.max_dialed_connections
        if cap is None or len(self._dialed) <= cap:
            return
        for peer in list(self._dialed):
            if len(self._dialed) <= cap:
                break
            if self._busy[peer]:
                continue  # a request of ours is dialling or using it
            conn = self.host.connection(peer)
            if conn is None:
                del self._dialed[peer]
            elif conn.muxer.stream_count == 0:
                del self._dialed[peer]
                self._spawn(conn.aclose)
        if len(self._dialed) > cap and not self._retrim_pending:
            # Connections still in use (the peer's streams, our requests)
            # are trimmed once they have had time to go idle, even if no
            # request of ours ends meanwhile.
            self._retrim_pending = True
            self._spawn(self._retrim)

    async def _retrim(self) -> None:
        await trio.sleep(_RETRIM_DELAY)
        self._retrim_pending = False
        self._trim()

    async def _new_stream(self, peer: PeerId) -> NegotiatedStream:
        """A negotiated stream to ``peer``; once more, on a new connection,
        when the one found closed between our look and our use (either side
        may trim an idle connection it dialled, at any moment)."""
        protocols = [self.config.protocol]
        conn = await self.host.connect(peer)
        try:
            return await conn.new_stream(protocols)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not conn.is_closed:
                raise
        self._dialed[peer] = None  # ours now, trimmed like any we dial
        self._dialed.move_to_end(peer)
        return await self.host.new_stream(peer, protocols)

    async def _request(self, peer: PeerId, message: KadMessage, expect_response: bool) -> KadMessage | None:
        cfg = self.config
        kind = message.type.name
        try:
            with trio.fail_after(cfg.request_timeout):
                stream = await self._new_stream(peer)
                try:
                    messages = MessageStream(stream, cfg.codec.max_message)
                    await messages.send(encode_message(message))
                    if not expect_response:
                        return None
                    data = await messages.receive()
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        try:
                            await stream.aclose()
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
            if data is None:
                raise RemoteProtocolError("stream closed without an answer")
            response = decode_message(data, cfg.codec)
            if response.type is not message.type:
                raise RemoteProtocolError(f"answered {kind} with {response.type.name}")
        except trio.TooSlowError:
            log.debug("peer %s: DHT %s timed out", peer, kind)
            raise RequestFailed(peer, "timed out") from None
        except RemoteProtocolError as exc:
            log.warning("peer %s: bad DHT answer to %s: %s", peer, kind, exc)
            raise RequestFailed(peer, str(exc)) from None
        except (GutsError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("peer %s: DHT %s failed: %s", peer, kind, exc)
            raise RequestFailed(peer, f"{type(exc).__name__}: {exc}") from None
        if response.skipped_addrs:
            log.debug("peer %s: %d addresses in a DHT answer skipped", peer, response.skipped_addrs)
        return response
