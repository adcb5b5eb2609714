"""identify (``/ipfs/id/1.0.0``) and identify push (``/ipfs/id/push/1.0.0``).

On every new connection we ask the peer who it is; the answer fills the
peerstore (protocols, listen addresses, agent) and is announced as a
:class:`~guts.host.PeerIdentified` event. The protocol list is the node's
capabilities: what the design calls the Hello/HelloAck exchange. When our
own protocols change, every connected peer gets a push.
"""

from __future__ import annotations

import logging

import trio

from guts import __version__
from guts.crypto import PublicKey
from guts.errors import DecodeError, GutsError, HandshakeError
from guts.host import Connection, Host, HostEvent, PeerConnected, PeerIdentified
from guts.identify._codec import IdentifyInfo, decode_identify, encode_identify
from guts.multiaddr import Multiaddr
from guts.wire import MessageStream, NegotiatedStream

__all__ = ["Identify", "IDENTIFY", "IDENTIFY_PUSH", "PROTOCOL_VERSION", "AGENT_VERSION"]

log = logging.getLogger("guts.identify")

IDENTIFY = "/ipfs/id/1.0.0"
IDENTIFY_PUSH = "/ipfs/id/push/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
AGENT_VERSION = f"guts/{__version__}"
#: js-libp2p caps identify messages at 8 KiB; allow more, but bounded.
MAX_MESSAGE = 64 * 1024
TIMEOUT = 10.0


class Identify:
    """The identify service of one host.

    Args:
        host: the host to serve and identify peers on.
        agent_version: what we call ourselves.
    """

    def __init__(self, host: Host, agent_version: str = AGENT_VERSION) -> None:
        self.host = host
        self.agent_version = agent_version
        self._pushing: dict[Connection, bool] = {}  # connection -> changed again since push began
        host.set_handler(IDENTIFY, self._serve)
        host.set_handler(IDENTIFY_PUSH, self._receive_push)
        host.add_event_handler(self._on_event)
        host.on_protocols_changed(self._on_protocols_changed)

    def _info_for(self, conn: Connection) -> IdentifyInfo:
        return IdentifyInfo(
            protocol_version=PROTOCOL_VERSION,
            agent_version=self.agent_version,
            public_key=self.host.keypair.public_key.to_protobuf(),
            listen_addrs=tuple(self.host.announce_addrs),
            observed_addr=conn.remote_addr,
            protocols=tuple(self.host.protocols),
        )

    async def _serve(self, stream: NegotiatedStream) -> None:
        await MessageStream(stream, MAX_MESSAGE).send(encode_identify(self._info_for(stream.connection)))

    def _on_event(self, event: HostEvent) -> None:
        if isinstance(event, PeerConnected):
            conn = self.host.connection(event.peer_id)
            if conn is not None:
                self.host.start_soon(self._identify_connection, conn)

    async def _identify_connection(self, conn: Connection) -> None:
        try:
            with trio.fail_after(TIMEOUT):
                stream = await conn.new_stream([IDENTIFY])
                try:
                    data = await MessageStream(stream, MAX_MESSAGE).receive()
                finally:
                    await stream.aclose()
            if data is None:
                raise DecodeError("identify stream closed without a message")
            self._apply(conn, decode_identify(data), push=False)
        except trio.TooSlowError:
            log.info("peer %s: identify timed out", conn.peer_id)
        except GutsError as exc:
            log.warning("peer %s: identify failed: %s: %s", conn.peer_id, type(exc).__name__, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("peer %s: identify failed: %s", conn.peer_id, exc)
        finally:
            conn.identified.set()

    async def _receive_push(self, stream: NegotiatedStream) -> None:
        with trio.fail_after(TIMEOUT):
            data = await MessageStream(stream, MAX_MESSAGE).receive()
        if data is not None:
            self._apply(stream.connection, decode_identify(data), push=True)

    def _apply(self, conn: Connection, info: IdentifyInfo, *, push: bool) -> None:
        peer = conn.peer_id
        store = self.host.peerstore
        if info.public_key is not None:
            key = PublicKey.from_protobuf(info.public_key)
            if not peer.matches(key):
                raise HandshakeError(f"identify from {peer} carries another peer's key")
        if info.protocols is not None or not push:
            store.set_protocols(peer, info.protocols or ())
        if info.listen_addrs is not None:
            store.add_addrs(peer, info.listen_addrs)
        if info.agent_version is not None or info.protocol_version is not None or not push:
            store.set_versions(peer, info.agent_version, info.protocol_version)
        self.host.emit(
            PeerIdentified(peer, store.protocols(peer), info.agent_version, tuple(info.listen_addrs or ()))
        )

    def _on_protocols_changed(self) -> None:
        # One push in flight per connection (js accepts one at a time); a
        # change during a push is sent by a second push when it finishes.
        for conn in self.host.connections:
            if conn in self._pushing:
                self._pushing[conn] = True
            else:
                self._pushing[conn] = False
                self.host.start_soon(self._push, conn)

    async def _push(self, conn: Connection) -> None:
        try:
            while True:
                try:
                    with trio.fail_after(TIMEOUT):
                        stream = await conn.new_stream([IDENTIFY_PUSH])
                        try:
                            await MessageStream(stream, MAX_MESSAGE).send(encode_identify(self._info_for(conn)))
                        finally:
                            await stream.aclose()
                except (trio.TooSlowError, GutsError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    log.debug("peer %s: identify push failed: %s", conn.peer_id, exc)
                    return
                if not self._pushing.get(conn):
                    return
                self._pushing[conn] = False
        finally:
            self._pushing.pop(conn, None)
