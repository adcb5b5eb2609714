"""One-way bulk throughput of the Guts transports over loopback.

Sends ``--mib`` MiB (default 256) from a dialer to a listener in
``--chunk``-byte ``send_all`` calls (default 64 KiB, the size of a full
Noise frame) and prints MB/s. WebSocket by default; ``--tcp`` and
``--memory`` measure the other transports for comparison, and
``--receive-buffer`` / ``--sndbuf`` / ``--rcvbuf`` try tuning knobs.

    .venv/bin/python -m bench.ws_throughput [--tcp | --memory] [--mib 256]
"""

from __future__ import annotations

import argparse
import socket
import time

import trio

from guts.multiaddr import Multiaddr
from guts.transport import (
    MemoryNetwork,
    MemoryTransport,
    RawConnection,
    TcpConnection,
    TcpTransport,
    Transport,
    WebSocketConfig,
    WebSocketTransport,
)


def _set_bufs(conn: RawConnection, sndbuf: int, rcvbuf: int) -> None:
    if not isinstance(conn, TcpConnection):
        return
    sock = conn.socket
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)


async def run(args: argparse.Namespace) -> float:
    total: int = args.mib * 1024 * 1024
    chunk = b"\xa5" * args.chunk
    done = trio.Event()
    received = 0
    elapsed = 0.0

    async def sink(conn: RawConnection) -> None:
        nonlocal received, elapsed
        _set_bufs(conn, args.sndbuf, args.rcvbuf)
        start = time.perf_counter()
        while received < total:
            data = await conn.receive_some()
            if not data:
                break
            received += len(data)
        elapsed = time.perf_counter() - start
        done.set()

    async with trio.open_nursery() as nursery:
        transport: Transport
        if args.tcp:
            transport, listen = TcpTransport(), "/ip4/127.0.0.1/tcp/0"
        elif args.memory:
            transport, listen = MemoryTransport(MemoryNetwork(buffer_size=args.memory_buffer)), "/memory/0"
        else:
            config = WebSocketConfig(receive_buffer_size=args.receive_buffer)
            transport, listen = WebSocketTransport(config), "/ip4/127.0.0.1/tcp/0/ws"
        addrs = await nursery.start(transport.serve, Multiaddr.parse(listen), sink)
        conn = await transport.dial(addrs[0])
        _set_bufs(conn, args.sndbuf, args.rcvbuf)
        sent = 0
        while sent < total:
            await conn.send_all(chunk)
            sent += len(chunk)
        await done.wait()
        await conn.aclose()
        nursery.cancel_scope.cancel()
    assert received >= total, (received, total)
    return total / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--tcp", action="store_true", help="raw TCP instead of WebSocket")
    kind.add_argument("--memory", action="store_true", help="memory transport instead of WebSocket")
    parser.add_argument("--mib", type=int, default=256, help="MiB to send (default 256)")
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per send_all (default 65536)")
    parser.add_argument("--receive-buffer", type=int, default=WebSocketConfig().receive_buffer_size)
    parser.add_argument("--memory-buffer", type=int, default=64 * 1024)
    parser.add_argument("--sndbuf", type=int, default=0, help="SO_SNDBUF for TCP (0: kernel autotuning)")
    parser.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF for TCP (0: kernel autotuning)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    name = "tcp" if args.tcp else "memory" if args.memory else "websocket"
    for _ in range(args.repeat):
        rate = trio.run(run, args)
        print(f"{name}: {args.mib} MiB in {args.chunk}-byte writes: {rate:.0f} MB/s")


if __name__ == "__main__":
    main()
