"""A node with its control API: what ``guts start`` runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from guts.config import NodeConfig
from guts.control._api import ControlApi
from guts.control.dht import add_dht_routes
from guts.control.pubsub import add_pubsub_routes
from guts.control.repo import add_repo_routes
from guts.control._peers import add_peer_routes
from guts.control._seeding import add_seeding_routes
from guts.control._server import serve_control
from guts.control._socket import bind_control_socket
from guts.crypto import KeyPair
from guts.node import Node, open_node
from guts.transport import Transport

__all__ = ["open_controlled_node"]


@asynccontextmanager
async def open_controlled_node(
    config: NodeConfig,
    *,
    keypair: KeyPair | None = None,
    transports: list[Transport] | None = None,
    persist: bool = True,
) -> AsyncIterator[Node]:
    """Run a node (as :func:`guts.node.open_node` does, with the same
    arguments) and serve its control API on ``config.control_socket``
    unless ``config.control`` is off.

    The socket is bound first, before any port or file is taken, so that a
    second node on the same home is refused at once.

    Raises:
        ConfigError: another node runs with the same home (its control
            socket answers), or the home is unusable.
    """
    control = bind_control_socket(config.control_socket) if config.control else None
    try:
        async with open_node(config, keypair=keypair, transports=transports, persist=persist) as node:
            if control is not None:
                api = ControlApi(node)
                add_dht_routes(api, node.dht)
                add_pubsub_routes(api, node.pubsub)
                add_repo_routes(
                    api, node.repos, node.host.keypair, node.host, node.sync.config if node.sync else None,
                    dht=node.dht, providing=node.providing, replicator=node.replicator,
                )  # fmt: skip
                add_seeding_routes(api, node.seeding, node.replicator)
                add_peer_routes(api, node.reputation, node.host)
                serving, control = control, None  # serve_control closes it from now on
                await node.host.start(serve_control, api, serving)
            yield node
    finally:
        if control is not None:
            await control.aclose()
