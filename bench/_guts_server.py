"""Benchmark server on Guts: TCP + Noise + yamux, identify, ping, echo, sink.

Runs in the project's ``.venv`` interpreter, by path. Prints one JSON line
``{"addr": "/ip4/127.0.0.1/tcp/N/p2p/12D3..."}`` once it listens, then
serves until its standard input closes (or it is terminated).
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

import trio

from guts.crypto import KeyPair
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping
from guts.mux.yamux import YamuxConfig
from guts.transport import TcpTransport
from guts.wire import NegotiatedStream

if TYPE_CHECKING:  # mypy sees the bench package; the script runs by path, bench/ on sys.path
    from bench._wire import ECHO, READ_SIZE, SINK, emit, log
else:
    from _wire import ECHO, READ_SIZE, SINK, emit, log

#: No keep-alive pings during a benchmark; room for the 1,000-stream test:
#: no per-protocol cap on streams served at once, and room for 1,000
#: streams in negotiation at once (a node allows 64 of each).
CONFIG = HostConfig(
    keep_alive=0, max_streams_per_protocol=0, muxer=YamuxConfig(keepalive_interval=None, max_negotiating=2048)
)


async def echo(stream: NegotiatedStream) -> None:
    while data := await stream.receive_some(READ_SIZE):
        await stream.send_all(data)
    await stream.send_eof()


async def sink(stream: NegotiatedStream) -> None:
    total = 0
    while data := await stream.receive_some(READ_SIZE):
        total += len(data)
    await stream.send_all(struct.pack(">Q", total))
    await stream.send_eof()


def serve_node(host: Host) -> None:
    """What a realistic node serves, plus the benchmark protocols."""
    Identify(host)
    Ping(host)
    host.set_handler(ECHO, echo)
    host.set_handler(SINK, sink)


async def wait_for_stdin_eof() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with stdin:
        while await stdin.receive_some(4096):
            pass


#: Where the server listens, by ``--transport``.
LISTEN = {"tcp": "/ip4/127.0.0.1/tcp/0", "quic": "/ip4/127.0.0.1/udp/0/quic-v1"}


async def main(transport: str = "tcp") -> None:
    keypair = KeyPair.generate()
    transports: list[Any] = [TcpTransport()]
    if transport == "quic":  # imported only then: the TCP server's RSS is a row of its own
        from guts.transport.quic import QuicTransport

        transports = [QuicTransport(keypair)]
    async with open_host(keypair, transports, CONFIG) as host:
        serve_node(host)
        addrs = await host.listen(Multiaddr.parse(LISTEN[transport]))
        emit(addr=str(addrs[0].with_p2p(str(host.peer_id))), peer_id=str(host.peer_id), pid=os.getpid())
        await wait_for_stdin_eof()
        log("stdin closed, stopping")
        await host.aclose()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Guts benchmark server")
    parser.add_argument("--transport", choices=sorted(LISTEN), default="tcp")
    try:
        trio.run(main, parser.parse_args().transport)
    except KeyboardInterrupt:
        pass
