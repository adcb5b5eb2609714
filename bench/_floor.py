"""Floors: what two processes on this machine get with no libp2p at all.

A 32-byte TCP round trip on loopback with blocking sockets, then with trio
(one ``send_all`` and one ``receive_some`` a side). No stack built on trio
can ping faster than the second. Prints one JSON line.

Usage: ``python _floor.py [count]`` (in an interpreter that has trio).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:  # mypy sees the bench package; the script runs by path, bench/ on sys.path
    from bench._wire import emit, median, percentile
else:
    from _wire import emit, median, percentile

SIZE = 32


def _serve_blocking(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(SIZE):
        conn.sendall(data)


async def _serve_trio(listener: socket.socket) -> None:
    sock = trio.socket.from_stdlib_socket(listener)
    conn, _ = await sock.accept()
    stream = trio.SocketStream(conn)
    while data := await stream.receive_some(SIZE):
        await stream.send_all(data)


def _blocking_rtts(port: int, count: int) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * SIZE
    rtts = []
    with sock:
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(payload)
            got = 0
            while got < SIZE:
                got += len(sock.recv(SIZE))
            rtts.append(time.perf_counter() - start)
    return rtts


async def _trio_rtts(port: int, count: int) -> list[float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    payload = b"x" * SIZE
    rtts = []
    async with stream:
        for _ in range(count):
            start = time.perf_counter()
            await stream.send_all(payload)
            got = 0
            while got < SIZE:
                got += len(await stream.receive_some(SIZE))
            rtts.append(time.perf_counter() - start)
    return rtts


def _measure(
    serve: Callable[[socket.socket], None], rtts_of: Callable[[int, int], list[float]], count: int
) -> list[float]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the server process
        try:
            serve(listener)
        finally:
            os._exit(0)
    listener.close()
    try:
        return rtts_of(port, count)[count // 10:]  # first tenth is warm-up
    finally:
        os.waitpid(pid, 0)


def main(count: int) -> None:
    blocking = _measure(_serve_blocking, _blocking_rtts, count)
    with_trio = _measure(lambda lst: trio.run(_serve_trio, lst), lambda p, n: trio.run(_trio_rtts, p, n), count)
    emit(
        socket_rtt_ms=median(blocking) * 1e3, socket_rtt_p99_ms=percentile(blocking, 99) * 1e3,
        trio_rtt_ms=median(with_trio) * 1e3, trio_rtt_p99_ms=percentile(with_trio, 99) * 1e3,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
