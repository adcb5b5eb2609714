"""Benchmark client on py-libp2p: one metric, several runs, one JSON line each.

Usage: ``python _libp2p_client.py METRIC SERVER_MULTIADDR [key=value ...]``.
Runs in the ``.bench/venv-libp2p`` interpreter, by path. The server's
address says the transport: a ``/quic-v1`` address is dialed with
py-libp2p's QUIC transport, anything else over TCP + Noise + yamux.

When the measurement fails (an exception, or ``timeout`` seconds passed),
the client prints the traceback on stderr, then one JSON line
``{"error": "..."}`` (the exception's type and message, the innermost ones
for an exception group) after the runs it finished, and exits with
status 1.
"""

from __future__ import annotations

import os
import struct
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

import multiaddr
import trio

from libp2p.custom_types import TProtocol
from libp2p.io.utils import read_exactly
from libp2p.network.stream.exceptions import StreamEOF, StreamReset
from libp2p.transport.quic.exceptions import QUICStreamClosedError
from libp2p.peer.peerinfo import info_from_p2p_addr

if TYPE_CHECKING:  # mypy sees the bench package; the script runs by path, bench/ on sys.path
    from libp2p.abc import IHost, INetStream
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    from bench._libp2p_server import make_host
    from bench._wire import (
        CHUNK, COUNT_SIZE, ECHO, PING, PING_SIZE, READ_SIZE, SINK, emit, log, median, parse_params, percentile,
    )
else:
    from _libp2p_server import make_host
    from _wire import CHUNK, COUNT_SIZE, ECHO, PING, PING_SIZE, READ_SIZE, SINK, emit, log, median, parse_params, percentile


#: Set when the server is dialed over QUIC: see :func:`read_to_eof` and :func:`streams`.
_over_quic = False


async def read_to_eof(stream: INetStream) -> bytes:
    """Everything ``stream`` still sends, until its end.

    Over QUIC, py-libp2p 0.8.1 reports the end of a stream whose own
    sending side we closed first as a reset: ``QUICStreamClosedError`` (the
    stream is closed both ways), which ``NetStream.read`` turns into
    ``StreamReset``. That one, and only over QUIC, is taken for the end;
    the echo's answer is compared with what was sent, so bytes lost with it
    still fail the run.
    """
    out = bytearray()
    while True:
        try:
            data = await stream.read(READ_SIZE)
        except StreamEOF:
            break
        except StreamReset as exc:
            if _over_quic and isinstance(exc.__cause__, QUICStreamClosedError):
                break
            raise
        if not data:
            break
        out += data
    return bytes(out)


async def send_to_sink(host: IHost, peer: ID, size: int, block: int = CHUNK) -> float:
    """Seconds to push ``size`` bytes through a sink stream and get the count back."""
    chunk = os.urandom(block)
    stream = await host.new_stream(peer, [TProtocol(SINK)])
    start = time.perf_counter()
    left = size
    while left > 0:
        n = min(left, block)
        await stream.write(chunk if n == block else chunk[:n])
        left -= n
    await stream.close_write()
    answer = await read_exactly(stream, COUNT_SIZE)
    elapsed = time.perf_counter() - start
    await stream.close()
    (count,) = struct.unpack(">Q", answer)
    if count != size:
        raise RuntimeError(f"sink counted {count} bytes, sent {size}")
    return elapsed


async def throughput(host: IHost, info: PeerInfo, p: dict[str, Any]) -> None:
    await host.connect(info)
    # A warm-up that also sizes the runs: about p["seconds"] each, capped.
    probe = p["probe"]
    rate = probe / await send_to_sink(host, info.peer_id, probe)
    size = int(min(p["max_size"], max(probe, rate * p["seconds"])))
    size -= size % CHUNK
    log(f"warm-up {rate / 1e6:.1f} MB/s, {size} bytes a run")
    for run in range(p["runs"]):
        seconds = await send_to_sink(host, info.peer_id, size)
        emit(run=run, bytes=size, seconds=seconds, value=size / seconds / 1e6)


async def handshakes(host: IHost, info: PeerInfo, p: dict[str, Any]) -> None:
    for run in range(p["runs"] + 1):  # run 0 is a warm-up
        count = 0
        connect_s, close_s = [], []
        start = time.perf_counter()
        deadline = start + p["seconds"]
        while count < p["max_count"] and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await host.connect(info)
            t1 = time.perf_counter()
            await host.disconnect(info.peer_id)
            close_s.append(time.perf_counter() - t1)
            connect_s.append(t1 - t0)
            count += 1
        elapsed = time.perf_counter() - start
        if run:
            emit(
                run=run - 1, count=count, seconds=elapsed, value=count / elapsed,
                connect_ms=median(connect_s) * 1e3, close_ms=median(close_s) * 1e3,
            )


async def ping(host: IHost, info: PeerInfo, p: dict[str, Any]) -> None:
    await host.connect(info)
    # The ping protocol exactly as PingService does it, timed with
    # perf_counter (PingService reports whole milliseconds).
    for run in range(p["runs"]):
        stream = await host.new_stream(info.peer_id, [TProtocol(PING)])
        rtts = []
        for i in range(p["warmup"] + p["count"]):
            payload = os.urandom(PING_SIZE)
            start = time.perf_counter()
            await stream.write(payload)
            answer = await read_exactly(stream, PING_SIZE)
            rtt = time.perf_counter() - start
            if answer != payload:
                raise RuntimeError("ping answer differs")
            if i >= p["warmup"]:
                rtts.append(rtt)
        await stream.close()
        emit(run=run, value=median(rtts) * 1e3, p99=percentile(rtts, 99) * 1e3, count=len(rtts))
        await trio.sleep(0.05)  # let the server retire the stream (it serves 2 per peer)


async def echo_once(host: IHost, peer: ID, payload: bytes) -> None:
    stream = await host.new_stream(peer, [TProtocol(ECHO)])
    await stream.write(payload)
    await stream.close_write()
    answer = await read_to_eof(stream)
    await stream.close()
    if answer != payload:
        raise RuntimeError(f"echo answered {len(answer)} bytes, sent {len(payload)}")


async def streams(host: IHost, info: PeerInfo, p: dict[str, Any]) -> None:
    """1,000 echo streams at once on one connection, per run.

    Over QUIC each batch (the warm-up, then each run) gets a fresh
    connection, made before the clock starts: py-libp2p 0.8.1's
    ``QUICStream.close`` returns early on a stream already closed both ways
    (ours, once we sent our end and the peer its), so the stream never
    leaves the connection's count of outbound streams, and a connection
    refuses its 1,001st stream (``QUICStreamLimitError``). Over TCP one
    connection serves them all.
    """
    await host.connect(info)
    payload = os.urandom(p["size"])

    async def many(n: int) -> float:
        if _over_quic:
            await host.disconnect(info.peer_id)
            await host.connect(info)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(echo_once, host, info.peer_id, payload)
        return time.perf_counter() - start

    await many(p["warmup"])
    for run in range(p["runs"]):
        emit(run=run, value=await many(p["count"]), streams=p["count"])


METRICS = {"throughput": throughput, "handshakes": handshakes, "ping": ping, "streams": streams}


def transport_of(addr: str) -> str:
    """``quic`` for a ``/quic-v1`` multiaddr, else ``tcp``."""
    return "quic" if "/quic-v1" in addr else "tcp"


def describe(exc: BaseException) -> str:
    """One line for an exception: ``Type: message``, the leaves of a group
    (trio nurseries raise groups), at most a few of them."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[str] = []
        for sub in exc.exceptions:
            leaf = describe(sub)
            if leaf not in leaves:
                leaves.append(leaf)
        more = f" (+{len(leaves) - 3} more)" if len(leaves) > 3 else ""
        return "; ".join(leaves[:3]) + more
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    # py-libp2p wraps the transport's error (SwarmException from
    # QUICStreamLimitError, StreamReset from QUICStreamClosedError): say both.
    if exc.__cause__ is not None:
        line += f" (from {describe(exc.__cause__)})"
    return line


def fail(exc: BaseException) -> None:
    """The traceback on stderr, the error line on stdout."""
    traceback.print_exception(exc)
    emit(error=describe(exc))


async def main(metric: str, addr: str, params: dict[str, Any]) -> int:
    global _over_quic
    _over_quic = transport_of(addr) == "quic"
    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    host = make_host(transport_of(addr))
    status = 0
    async with host.run(listen_addrs=[]):
        try:
            with trio.fail_after(params["timeout"]):
                await METRICS[metric](host, info, params)
        except trio.TooSlowError:
            status = 1
            fail(TimeoutError(f"not done after {params['timeout']:.0f} s"))
        except Exception as exc:  # noqa: BLE001 - any failure becomes the error line
            status = 1
            fail(exc)
        # The error line is out before closing, which may itself get stuck.
        with trio.move_on_after(5):
            await host.close()
    return status


if __name__ == "__main__":
    metric, addr, *rest = sys.argv[1:]
    try:
        sys.exit(trio.run(main, metric, addr, parse_params(rest)))
    except Exception as exc:  # noqa: BLE001 - a failure outside the measurement (start-up, closing)
        fail(exc)
        sys.exit(1)
