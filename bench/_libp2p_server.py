"""Benchmark server on py-libp2p: TCP + Noise + yamux or QUIC, ping, echo, sink.

Usage: ``python _libp2p_server.py [--transport tcp|quic]`` (``tcp`` by
default). Runs in the ``.bench/venv-libp2p`` interpreter, by path. Prints
one JSON line ``{"addr": "/ip4/127.0.0.1/tcp/N/p2p/Qm..."}`` (or
``/ip4/127.0.0.1/udp/N/quic-v1/p2p/...`` with ``--transport quic``) once it
listens, then serves until its standard input closes (or it is terminated).

With QUIC, py-libp2p's ``QUICTransport`` (on aioquic) does the handshake
(TLS 1.3 inside QUIC, the libp2p certificate extension) and the streams
are QUIC's own: Noise and yamux are not used.
"""

from __future__ import annotations

import argparse
import os
import struct
from typing import TYPE_CHECKING

import multiaddr
import trio

import libp2p
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamReset
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

if TYPE_CHECKING:  # mypy sees the bench package; the script runs by path, bench/ on sys.path
    from libp2p.abc import IHost, INetStream

    from bench._wire import ECHO, READ_SIZE, SINK, emit, log
else:
    from _wire import ECHO, READ_SIZE, SINK, emit, log


#: The address each transport listens on (port chosen by the system).
LISTEN = {"tcp": "/ip4/127.0.0.1/tcp/0", "quic": "/ip4/127.0.0.1/udp/0/quic-v1"}
#: What the printed address must contain, per transport.
ADDR_MARK = {"tcp": "/tcp/", "quic": "/quic-v1"}


def make_host(transport: str = "tcp") -> IHost:
    """A py-libp2p host restricted to Noise + yamux over TCP, or with QUIC.

    ``new_host`` by default offers Noise, TLS, SECIO and plaintext and both
    yamux and mplex; we pin the stack the Guts figures use. Ping, identify
    and identify push are registered by default.

    ``transport="quic"`` adds py-libp2p's QUIC transport in its default
    configuration (``enable_quic``; ``/quic-v1`` addresses are dialed and
    listened on with it, ``/tcp`` ones still with TCP).
    """
    if transport not in LISTEN:
        raise ValueError(f"unknown transport {transport!r} (tcp or quic)")
    key_pair = libp2p.generate_new_ed25519_identity()
    noise_key = libp2p.create_new_x25519_key_pair()
    return libp2p.new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_key.private_key)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        enable_quic=transport == "quic",
        # Each stream's multistream-select must finish within 10 s by default;
        # 1,000 streams opened at once on a loaded machine can miss that, and
        # the test measures the time, not whether a timeout fires.
        connection_config=ConnectionConfig(
            outbound_stream_protocol_negotiation_timeout=60,
            inbound_stream_protocol_negotiation_timeout=60,
        ),
    )


#: Set for QUIC: see :func:`read_some`.
_read_again_at_eof = False


async def read_some(stream: INetStream) -> bytes:
    """The next bytes of ``stream``, ``b""`` at its end.

    Over QUIC, py-libp2p 0.8.1's ``QUICStream.read`` can report the end of
    the stream while the stream's last bytes sit in its buffer: it looks at
    the buffer, then (after yielding to the scheduler to take another lock)
    at whether the FIN came, and the last data and the FIN can be handled in
    between. A second read returns those bytes (it looks at the buffer
    first). Without it the sink lost the last packet's bytes in about a
    third of the 4 MiB transfers. Over TCP one read says it.
    """
    data: bytes
    try:
        data = await stream.read(READ_SIZE)
        return data
    except StreamEOF:
        if not _read_again_at_eof:
            return b""
    try:
        data = await stream.read(READ_SIZE)
    except StreamEOF:
        return b""
    log(f"read {len(data)} bytes after an end of stream")
    return data


async def echo(stream: INetStream) -> None:
    try:
        while data := await read_some(stream):
            await stream.write(data)
        await stream.close()
    except (StreamReset, StreamClosed):
        await stream.reset()


async def sink(stream: INetStream) -> None:
    total = 0
    try:
        while data := await read_some(stream):
            total += len(data)
        await stream.write(struct.pack(">Q", total))
        await stream.close()
    except (StreamReset, StreamClosed):
        await stream.reset()


async def wait_for_stdin_eof() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with stdin:
        while await stdin.receive_some(4096):
            pass


async def main(transport: str) -> None:
    global _read_again_at_eof
    _read_again_at_eof = transport == "quic"
    host = make_host(transport)
    listen = [multiaddr.Multiaddr(LISTEN[transport])]
    async with host.run(listen_addrs=listen):
        host.set_stream_handler(TProtocol(ECHO), echo)
        host.set_stream_handler(TProtocol(SINK), sink)
        addrs = [str(a) for a in host.get_addrs() if ADDR_MARK[transport] in str(a)]
        emit(addr=addrs[0], peer_id=host.get_id().to_string(), pid=os.getpid())
        await wait_for_stdin_eof()
        log("stdin closed, stopping")
        with trio.move_on_after(5):
            await host.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="py-libp2p benchmark server")
    parser.add_argument("--transport", choices=sorted(LISTEN), default="tcp")
    args = parser.parse_args()
    try:
        trio.run(main, args.transport)
    except KeyboardInterrupt:
        pass
