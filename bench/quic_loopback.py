"""QUIC transport on loopback, Python to Python, two processes.

Measures handshakes per second (sequential dial + close), ping round
trips (a QUIC PING, and 32 bytes echoed on a stream), and one-way bulk
throughput on one stream. The listener runs in a child process (this
script with ``--serve``), so each side has its own interpreter.

    .venv/bin/python -m bench.quic_loopback [--handshakes 200] [--pings 500] [--mib 256]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from guts.crypto import KeyPair
from guts.multiaddr import Multiaddr
from guts.transport.quic import QuicTransport

_CHUNK = 64 * 1024


async def _stream(stream: Any) -> None:
    kind = await stream.receive_some(1)
    if kind == b"e":  # echo
        while data := await stream.receive_some():
            await stream.send_all(data)
    elif kind == b"s":  # sink, then the count
        total = 0
        while data := await stream.receive_some():
            total += len(data)
        await stream.send_all(str(total).encode())
    await stream.send_eof()


async def _serve() -> None:
    async def handler(conn: Any) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.muxer.run)
            while True:
                try:
                    stream = await conn.muxer.accept_stream()
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
                    nursery.cancel_scope.cancel()
                    return
                nursery.start_soon(_stream, stream)

    transport = QuicTransport(KeyPair.generate())
    async with trio.open_nursery() as nursery:
        [addr] = await nursery.start(transport.serve, Multiaddr.parse("/ip4/127.0.0.1/udp/0/quic-v1"), handler)
        print(addr, flush=True)


async def _measure(addr: Multiaddr, handshakes: int, pings: int, mib: int) -> None:
    transport = QuicTransport(KeyPair.generate())
    start = time.perf_counter()
    for _ in range(handshakes):
        conn = await transport.dial(addr)
        await conn.aclose()
    elapsed = time.perf_counter() - start
    print(f"handshakes: {handshakes / elapsed:.0f}/s ({elapsed / handshakes * 1e3:.2f} ms each, sequential)")

    conn = await transport.dial(addr)
    async with trio.open_nursery() as nursery:
        await nursery.start(conn.muxer.run)
        rtts = [await conn.muxer.ping() for _ in range(pings)]
        print(f"QUIC PING: median {statistics.median(rtts) * 1e6:.0f} us, p90 {sorted(rtts)[pings * 9 // 10] * 1e6:.0f} us")
        stream = await conn.muxer.open_stream()
        await stream.send_all(b"e")
        rtts = []
        for _ in range(pings):
            t = time.perf_counter()
            await stream.send_all(b"x" * 32)
            got = 0
            while got < 32:
                got += len(await stream.receive_some())
            rtts.append(time.perf_counter() - t)
        print(f"stream echo 32 B: median {statistics.median(rtts) * 1e6:.0f} us")
        await stream.send_eof()

        stream = await conn.muxer.open_stream()
        await stream.send_all(b"s")
        block = b"\0" * _CHUNK
        total = mib << 20
        t = time.perf_counter()
        for _ in range(total // _CHUNK):
            await stream.send_all(block)
        await stream.send_eof()
        answer = b""
        while data := await stream.receive_some():
            answer += data
        elapsed = time.perf_counter() - t
        assert int(answer) == total, answer
        print(f"one stream: {total / elapsed / 1e6:.0f} MB/s ({mib} MiB in {elapsed:.2f} s)")
        await conn.aclose()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="run the listener (internal)")
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve)
        return
    server = subprocess.Popen([sys.executable, "-m", "bench.quic_loopback", "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        addr = Multiaddr.parse(server.stdout.readline().strip())
        trio.run(_measure, addr, args.handshakes, args.pings, args.mib)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
