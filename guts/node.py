"""A full Guts node composed from a :class:`~guts.config.NodeConfig`: the
host with TCP and WebSocket transports, identify, ping, the bootstrap
dials, and the local control API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from guts.config import NodeConfig
from guts.control import ControlApi, serve_control
from guts.crypto import KeyPair, load_or_create_keypair
from guts.errors import GutsError
from guts._netaddrs import expand_unspecified
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping
from guts.transport import TcpTransport, Transport, WebSocketTransport

__all__ = ["Node", "open_node", "expand_unspecified"]

log = logging.getLogger("guts.node")


@dataclass(frozen=True, slots=True)
class Node:
    """A running node: its host and the protocols it serves."""

    config: NodeConfig
    host: Host
    identify: Identify
    ping: Ping
    #: Where the control API listens (``None`` when it is off).
    control_path: Path | None = None

    @property
    def addrs(self) -> list[Multiaddr]:
        """Dialable listen addresses, each ending in ``/p2p/<our id>``."""
        me = str(self.host.peer_id)
        return [a.with_p2p(me) for a in self.host.announce_addrs]

    def status(self) -> dict[str, Any]:
        """What ``guts status`` shows about the services, beyond the host."""
        return {"protocols": self.host.protocols}


async def _bootstrap(host: Host, addr: Multiaddr) -> None:
    try:
        conn = await host.connect(addr)
        log.info("bootstrap peer %s connected at %s", conn.peer_id, addr)
    except GutsError as exc:
        log.warning("bootstrap %s failed: %s", addr, exc)


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    keypair: KeyPair | None = None,
    transports: list[Transport] | None = None,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the block.

    Args:
        config: what to listen on, whom to bootstrap from, limits.
        keypair: identity; loaded from (or created in) ``config.home`` if omitted.
        transports: defaults to TCP and WebSocket.
    """
    if keypair is None:
        keypair = load_or_create_keypair(config.key_file)
    host_config = HostConfig(
        max_connections=config.max_connections,
        connection_timeout=config.connection_timeout,
        keep_alive=config.keep_alive,
    )
    if transports is None:
        transports = [TcpTransport(), WebSocketTransport()]
    async with open_host(keypair, transports, host_config) as host:
        node = Node(
            config=config,
            host=host,
            identify=Identify(host),
            ping=Ping(host),
            control_path=config.control_socket if config.control else None,
        )
        if node.control_path is not None:
            # First: it refuses to start a second node on the same home.
            await host.start(serve_control, ControlApi(node), node.control_path)
        if config.listen:
            await host.listen(*config.listen)
        for addr in config.bootstrap:
            host.start_soon(_bootstrap, host, addr)
        yield node
