"""Noise throughput and handshake rate over real sockets.

    python bench/noise_throughput.py [--mib 256] [--handshakes 500] [--chunk-kib 1024]

1. Pushes ``--mib`` MiB through two NoiseStreams joined by a trio
   socketpair, sender and receiver in one trio run: one core pays for
   encryption, decryption and the socket, so this is a lower bound. The raw
   socketpair rate is printed for comparison.
2. The same over TCP loopback with the sender in a child process, as two
   real peers would run (each core pays for one side only).
3. Times ``--handshakes`` sequential Noise XX handshakes, each over a fresh
   socketpair, both sides in-process (one "handshake" is both peers' work).
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

from guts.crypto import KeyPair
from guts.security.noise import noise_handshake


async def _secure_pair(a_key: KeyPair, b_key: KeyPair) -> tuple[trio.abc.Stream, trio.abc.Stream]:
    sa, sb = trio.socket.socketpair()
    raw_a, raw_b = trio.SocketStream(sa), trio.SocketStream(sb)
    out: dict[str, trio.abc.Stream] = {}

    async def side(name: str, raw: trio.abc.Stream, key: KeyPair, initiator: bool) -> None:
        out[name] = await noise_handshake(raw, key, initiator=initiator)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "a", raw_a, a_key, True)
        nursery.start_soon(side, "b", raw_b, b_key, False)
    return out["a"], out["b"]


async def _pump(sender: trio.abc.Stream, receiver: trio.abc.Stream, total: int, chunk: int) -> float:
    block = bytes(chunk)
    received = 0

    async def receive() -> None:
        nonlocal received
        while received < total:
            data = await receiver.receive_some()
            if not data:
                raise RuntimeError("unexpected EOF")
            received += len(data)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        sent = 0
        while sent < total:
            await sender.send_all(block)
            sent += chunk
    return time.perf_counter() - start


async def _two_processes(total: int, chunk: int, receiver_key: KeyPair) -> float:
    """Receive ``total`` bytes from a child process over TCP; return seconds
    from the first byte to the end of the stream."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    cmd = [sys.executable, __file__, "--sender-port", str(port), "--mib", str(total >> 20), "--chunk-kib", str(chunk >> 10)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.run_process, cmd)
        raw = await listeners[0].accept()
        stream = await noise_handshake(raw, receiver_key, initiator=False)
        first = await stream.receive_some()
        start = time.perf_counter()
        received = len(first)
        while data := await stream.receive_some():
            received += len(data)
        elapsed = time.perf_counter() - start
        await stream.aclose()
        await listeners[0].aclose()
    if received != total:
        raise RuntimeError(f"received {received} of {total} bytes")
    return elapsed * total / (total - len(first))


async def _sender(port: int, total: int, chunk: int) -> None:
    raw = await trio.open_tcp_stream("127.0.0.1", port)
    stream = await noise_handshake(raw, KeyPair.generate(), initiator=True)
    block = bytes(chunk)
    for _ in range(total // chunk):
        await stream.send_all(block)
    await stream.aclose()


async def main(mib: int, handshakes: int, chunk: int) -> None:
    total = mib * 1024 * 1024
    a_key, b_key = KeyPair.generate(), KeyPair.generate()

    sa, sb = trio.socket.socketpair()
    raw_a, raw_b = trio.SocketStream(sa), trio.SocketStream(sb)
    elapsed = await _pump(raw_a, raw_b, total, chunk)
    print(f"raw socketpair : {total / elapsed / 1e6:8.1f} MB/s")
    await raw_a.aclose()
    await raw_b.aclose()

    a, b = await _secure_pair(a_key, b_key)
    elapsed = await _pump(a, b, total, chunk)
    print(f"noise stream   : {total / elapsed / 1e6:8.1f} MB/s  ({mib} MiB in {elapsed:.2f} s, {chunk // 1024} KiB writes)")
    await a.aclose()
    await b.aclose()

    elapsed = await _two_processes(total, chunk, b_key)
    print(f"two processes  : {total / elapsed / 1e6:8.1f} MB/s  (TCP loopback, sender in a child process)")

    start = time.perf_counter()
    for _ in range(handshakes):
        a, b = await _secure_pair(a_key, b_key)
        await a.aclose()
        await b.aclose()
    elapsed = time.perf_counter() - start
    print(f"handshakes     : {handshakes / elapsed:8.1f} /s    ({handshakes} sequential, both sides in-process)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    parser.add_argument("--sender-port", type=int, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.sender_port:
        trio.run(_sender, args.sender_port, args.mib * 1024 * 1024, args.chunk_kib * 1024)
    else:
        trio.run(main, args.mib, args.handshakes, args.chunk_kib * 1024)
