"""Benchmark server on py-libp2p: TCP + Noise + yamux, ping, echo, sink.

Runs in the ``.bench/venv-libp2p`` interpreter, by path. Prints one JSON
line ``{"addr": "/ip4/127.0.0.1/tcp/N/p2p/Qm..."}`` once it listens, then
serves until its standard input closes (or it is terminated).
"""

from __future__ import annotations

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


def make_host() -> IHost:
    """A py-libp2p host restricted to Noise + yamux over TCP.

    ``new_host`` by default offers Noise, TLS, SECIO and plaintext and both
    yamux and mplex; we pin the stack the Guts figures use. Ping, identify
    and identify push are registered by default.
    """
    key_pair = libp2p.generate_new_ed25519_identity()
    noise_key = libp2p.create_new_x25519_key_pair()
    return libp2p.new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_key.private_key)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        # Each stream's multistream-select must finish within 10 s by default;
        # 1,000 streams opened at once on a loaded machine can miss that, and
        # the test measures the time, not whether a timeout fires.
        connection_config=ConnectionConfig(
            outbound_stream_protocol_negotiation_timeout=60,
            inbound_stream_protocol_negotiation_timeout=60,
        ),
    )


async def echo(stream: INetStream) -> None:
    try:
        while True:
            try:
                data = await stream.read(READ_SIZE)
            except StreamEOF:
                break
            if not data:
                break
            await stream.write(data)
        await stream.close()
    except (StreamReset, StreamClosed):
        await stream.reset()


async def sink(stream: INetStream) -> None:
    total = 0
    try:
        while True:
            try:
                data = await stream.read(READ_SIZE)
            except StreamEOF:
                break
            if not data:
                break
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


async def main() -> None:
    host = make_host()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with host.run(listen_addrs=listen):
        host.set_stream_handler(TProtocol(ECHO), echo)
        host.set_stream_handler(TProtocol(SINK), sink)
        addrs = [str(a) for a in host.get_addrs() if "/tcp/" in str(a)]
        emit(addr=addrs[0], peer_id=host.get_id().to_string(), pid=os.getpid())
        await wait_for_stdin_eof()
        log("stdin closed, stopping")
        with trio.move_on_after(5):
            await host.close()


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
