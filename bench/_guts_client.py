"""Benchmark client on Guts: one metric, several runs, one JSON line each.

Usage: ``python _guts_client.py METRIC SERVER_MULTIADDR [key=value ...]``.
Runs in the project's ``.venv`` interpreter, by path. Mirrors
``_libp2p_client.py`` step for step.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import trio

from guts.crypto import KeyPair
from guts.host import Connection, Host, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import ping as guts_ping
from guts.transport import TcpTransport
from guts.transport.quic import QuicTransport

if TYPE_CHECKING:  # mypy sees the bench package; the script runs by path, bench/ on sys.path
    from bench._guts_server import CONFIG
    from bench._wire import CHUNK, COUNT_SIZE, ECHO, SINK, emit, log, median, parse_params, percentile
else:
    from _guts_server import CONFIG
    from _wire import CHUNK, COUNT_SIZE, ECHO, SINK, emit, log, median, parse_params, percentile


async def receive_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        if not data:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some():
        out += data
    return bytes(out)


async def send_to_sink(conn: Connection, size: int, block: int = CHUNK) -> float:
    """Seconds to push ``size`` bytes through a sink stream and get the count back."""
    chunk = os.urandom(block)
    stream = await conn.new_stream([SINK])
    start = time.perf_counter()
    left = size
    while left > 0:
        n = min(left, block)
        await stream.send_all(chunk if n == block else chunk[:n])
        left -= n
    await stream.send_eof()
    answer = await receive_exactly(stream, COUNT_SIZE)
    elapsed = time.perf_counter() - start
    await stream.aclose()
    (count,) = struct.unpack(">Q", answer)
    if count != size:
        raise RuntimeError(f"sink counted {count} bytes, sent {size}")
    return elapsed


async def throughput(host: Host, addr: Multiaddr, p: dict[str, Any]) -> None:
    conn = await host.connect(addr)
    probe = p["probe"]
    rate = probe / await send_to_sink(conn, probe)
    size = int(min(p["max_size"], max(probe, rate * p["seconds"])))
    size -= size % CHUNK
    log(f"warm-up {rate / 1e6:.1f} MB/s, {size} bytes a run")
    for run in range(p["runs"]):
        seconds = await send_to_sink(conn, size)
        emit(run=run, bytes=size, seconds=seconds, value=size / seconds / 1e6)


async def handshakes(host: Host, addr: Multiaddr, p: dict[str, Any]) -> None:
    for run in range(p["runs"] + 1):  # run 0 is a warm-up
        count = 0
        connect_s, close_s = [], []
        start = time.perf_counter()
        deadline = start + p["seconds"]
        while count < p["max_count"] and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            conn = await host.connect(addr)
            t1 = time.perf_counter()
            await conn.aclose()
            close_s.append(time.perf_counter() - t1)
            connect_s.append(t1 - t0)
            count += 1
        elapsed = time.perf_counter() - start
        if run:
            emit(
                run=run - 1, count=count, seconds=elapsed, value=count / elapsed,
                connect_ms=median(connect_s) * 1e3, close_ms=median(close_s) * 1e3,
            )


async def ping(host: Host, addr: Multiaddr, p: dict[str, Any]) -> None:
    conn = await host.connect(addr)
    for run in range(p["runs"]):
        rtts = []
        async with aclosing(guts_ping(host, conn.peer_id, p["warmup"] + p["count"])) as pings:
            async for rtt in pings:
                rtts.append(rtt)
        rtts = rtts[p["warmup"]:]
        emit(run=run, value=median(rtts) * 1e3, p99=percentile(rtts, 99) * 1e3, count=len(rtts))
        await trio.sleep(0.05)  # same pause as the py-libp2p client


async def echo_once(conn: Connection, payload: bytes) -> None:
    stream = await conn.new_stream([ECHO])
    await stream.send_all(payload)
    await stream.send_eof()
    answer = await read_to_eof(stream)
    await stream.aclose()
    if answer != payload:
        raise RuntimeError(f"echo answered {len(answer)} bytes, sent {len(payload)}")


async def streams(host: Host, addr: Multiaddr, p: dict[str, Any]) -> None:
    conn = await host.connect(addr)
    payload = os.urandom(p["size"])

    async def many(n: int) -> float:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(echo_once, conn, payload)
        return time.perf_counter() - start

    await many(p["warmup"])
    for run in range(p["runs"]):
        emit(run=run, value=await many(p["count"]), streams=p["count"])


METRICS = {"throughput": throughput, "handshakes": handshakes, "ping": ping, "streams": streams}


async def main(metric: str, addr: str, params: dict[str, Any]) -> None:
    keypair = KeyPair.generate()
    # the transport follows the address: /quic-v1 dials over QUIC
    async with open_host(keypair, [TcpTransport(), QuicTransport(keypair)], CONFIG) as host:
        Identify(host)  # a node identifies its peers, as py-libp2p's host does
        with trio.fail_after(params["timeout"]):
            await METRICS[metric](host, Multiaddr.parse(addr), params)
        await host.aclose()


if __name__ == "__main__":
    metric, addr, *rest = sys.argv[1:]
    trio.run(main, metric, addr, parse_params(rest))
