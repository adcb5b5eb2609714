"""Throughput of yamux alone over a local socket pair.

Pushes ``--mib`` MiB through one stream of two YamuxConnections joined by
``trio.socket.socketpair()``, then runs ``--streams`` concurrent small
request/response exchanges on one connection, and prints both figures::

    .venv/bin/python bench/yamux_throughput.py --mib 256 --streams 1000
"""

from __future__ import annotations

import argparse
import time

import trio

from guts.mux.yamux import YamuxConfig, YamuxConnection, YamuxStream


async def _connected_pair(
    config: YamuxConfig, nursery: trio.Nursery
) -> tuple[YamuxConnection, YamuxConnection]:
    left, right = trio.socket.socketpair()
    dialer = YamuxConnection(trio.SocketStream(left), is_initiator=True, config=config)
    listener = YamuxConnection(trio.SocketStream(right), is_initiator=False, config=config)
    await nursery.start(dialer.run)
    await nursery.start(listener.run)
    return dialer, listener


async def bulk(mib: int, chunk: int, config: YamuxConfig) -> float:
    """Send ``mib`` MiB on one stream; return MB/s (10**6 bytes per second)."""
    total = mib * 1024 * 1024
    payload = bytes(chunk)
    async with trio.open_nursery() as nursery:
        dialer, listener = await _connected_pair(config, nursery)
        await dialer.ping()
        received = 0

        async def sink() -> None:
            nonlocal received
            stream = await listener.accept_stream()
            while True:
                data = await stream.receive_some()
                if not data:
                    break
                received += len(data)
            await stream.aclose()

        start = time.perf_counter()
        async with trio.open_nursery() as inner:
            inner.start_soon(sink)
            stream = await dialer.open_stream()
            sent = 0
            while sent < total:
                await stream.send_all(payload)
                sent += len(payload)
            await stream.send_eof()
        elapsed = time.perf_counter() - start
        assert received == sent, (received, sent)
        await dialer.aclose()
        await listener.aclose()
    return sent / elapsed / 1e6


async def many_streams(count: int, config: YamuxConfig) -> float:
    """``count`` concurrent request/response streams; return seconds."""
    async with trio.open_nursery() as nursery:
        dialer, listener = await _connected_pair(config, nursery)

        async def echo(stream: YamuxStream) -> None:
            request = b""
            while True:
                data = await stream.receive_some()
                if not data:
                    break
                request += data
            await stream.send_all(b"re:" + request)
            await stream.aclose()

        async def serve() -> None:
            async with trio.open_nursery() as handlers:
                for _ in range(count):
                    handlers.start_soon(echo, await listener.accept_stream())

        async def client(i: int) -> None:
            stream = await dialer.open_stream()
            await stream.send_all(b"request %d" % i)
            await stream.send_eof()
            answer = b""
            while True:
                data = await stream.receive_some()
                if not data:
                    break
                answer += data
            assert answer == b"re:request %d" % i
            await stream.aclose()

        start = time.perf_counter()
        async with trio.open_nursery() as inner:
            inner.start_soon(serve)
            for i in range(count):
                inner.start_soon(client, i)
        elapsed = time.perf_counter() - start
        await dialer.aclose()
        await listener.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB to push through one stream")
    parser.add_argument("--chunk", type=int, default=1024 * 1024, help="bytes per send_all")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent small streams")
    args = parser.parse_args()
    config = YamuxConfig()
    rate = trio.run(bulk, args.mib, args.chunk, config)
    print(f"one stream: {args.mib} MiB at {rate:.0f} MB/s")
    seconds = trio.run(many_streams, args.streams, config)
    print(f"{args.streams} concurrent request/response streams: {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
