"""ping (``/ipfs/ping/1.0.0``, libp2p/specs ping/ping.md).

The dialer sends 32 random bytes, the listener sends them back, again and
again on the same stream. Like js-libp2p we serve at most
:data:`MAX_INBOUND_PER_PEER` ping streams per peer at a time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import AsyncGenerator

import trio

from guts.errors import RemoteProtocolError
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.wire import NegotiatedStream

__all__ = ["PING", "PING_SIZE", "Ping", "ping"]

log = logging.getLogger("guts.ping")

PING = "/ipfs/ping/1.0.0"
PING_SIZE = 32
MAX_INBOUND_PER_PEER = 2


async def _receive_exactly(stream: trio.abc.Stream, n: int) -> bytes:
    """``n`` bytes, or fewer if the stream ends first."""
    chunk = await stream.receive_some(n)
    if len(chunk) == n or not chunk:  # the usual case: all of it at once
        return bytes(chunk)
    buf = bytearray(chunk)
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


class Ping:
    """Serves ping on ``host``."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._active: Counter[PeerId] = Counter()
        host.set_handler(PING, self._serve)

    async def _serve(self, stream: NegotiatedStream) -> None:
        peer = stream.connection.peer_id
        if self._active[peer] >= MAX_INBOUND_PER_PEER:
            log.info("peer %s: refusing a third concurrent ping stream", peer)
            return
        self._active[peer] += 1
        try:
            while True:
                # The muxer stream itself once nothing of the negotiation is
                # left in the wrapper: one layer less per message.
                direct = stream.unwrap()
                data = await _receive_exactly(direct, PING_SIZE)
                if not data:
                    return
                if len(data) != PING_SIZE:
                    raise RemoteProtocolError(f"ping payload of {len(data)} bytes")
                await direct.send_all(data)
        finally:
            self._active[peer] -= 1
            if not self._active[peer]:
                del self._active[peer]


async def ping(host: Host, target: PeerId | Multiaddr, count: int = 1) -> AsyncGenerator[float, None]:
    """Ping ``target`` ``count`` times on one stream, yielding each round trip
    in seconds.

    Raises:
        RemoteProtocolError: the answer did not match what we sent.
    """
    stream = await host.new_stream(target, [PING])
    async with stream:
        direct = stream.unwrap()  # select_protocol leaves nothing pending
        for _ in range(count):
            payload = os.urandom(PING_SIZE)
            start = time.perf_counter()
            await direct.send_all(payload)
            answer = await _receive_exactly(direct, PING_SIZE)
            rtt = time.perf_counter() - start
            if answer != payload:
                raise RemoteProtocolError("ping answer differs from what was sent")
            yield rtt
