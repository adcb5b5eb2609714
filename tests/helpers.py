"""Shared test helpers: hosts on the in-memory transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from guts.crypto import KeyPair
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping
from guts.transport import MemoryNetwork, MemoryTransport

ECHO = "/guts/echo/1.0.0"


async def echo_handler(stream) -> None:  # type: ignore[no-untyped-def]
    while True:
        data = await stream.receive_some()
        if not data:
            break
        await stream.send_all(data)
    try:
        await stream.send_eof()
    except Exception:
        pass


@asynccontextmanager
async def memory_hosts(
    n: int, network: MemoryNetwork | None = None, config: HostConfig | None = None
) -> AsyncIterator[list[Host]]:
    """``n`` hosts listening on the memory transport, serving identify, ping and echo."""
    network = network or MemoryNetwork()
    async with AsyncExitStack() as stack:
        hosts = []
        for _ in range(n):
            host = await stack.enter_async_context(
                open_host(KeyPair.generate(), [MemoryTransport(network)], config or HostConfig(keep_alive=0))
            )
            Identify(host)
            Ping(host)
            host.set_handler(ECHO, echo_handler)
            await host.listen(Multiaddr.parse("/memory/0"))
            hosts.append(host)
        yield hosts


def full_addr(host: Host) -> Multiaddr:
    return host.listen_addrs[0].with_p2p(str(host.peer_id))
