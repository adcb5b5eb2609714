"""Bad input from the network: each case closes the offending connection with
a log line naming the peer (or its address, before it is authenticated) and
the reason, while the node keeps serving a healthy peer."""

from __future__ import annotations

import logging
import struct

import pytest
import trio

from guts.crypto import KeyPair
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.mux.yamux import YamuxConfig
from guts.security.noise import noise_handshake
from guts.transport import MemoryNetwork, MemoryTransport
from guts.upgrade import upgrade_outbound
from guts.wire import encode_line, select_protocol

from .helpers import ECHO, full_addr, memory_hosts


async def healthy(a: Host, b: Host) -> None:
    """``a`` still reaches ``b`` over its existing connection."""
    stream = await a.new_stream(b.peer_id, [ECHO])
    await stream.send_all(b"still here")
    with trio.fail_after(5):
        assert await stream.receive_some() == b"still here"
    await stream.aclose()


def warned(caplog: pytest.LogCaptureFixture, *needles: str) -> str:
    for record in caplog.records:
        text = record.getMessage()
        if record.levelno >= logging.WARNING and all(n in text for n in needles):
            return text
    raise AssertionError(f"no warning containing {needles}: {[r.getMessage() for r in caplog.records]}")


async def wait_closed(raw: trio.abc.Stream) -> None:
    """Read until the node hangs up on us."""
    with trio.fail_after(5):
        try:
            while await raw.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork()


async def raw_dial(network: MemoryNetwork, host: Host) -> trio.abc.Stream:
    return await MemoryTransport(network).dial(host.listen_addrs[0])


async def test_garbage_before_multistream(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(2, network) as (a, b):
        await a.connect(full_addr(b))
        raw = await raw_dial(network, b)
        await raw.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: yes\r\n" * 10 + b"\r\n")
        await wait_closed(raw)
        warned(caplog, "closing inbound connection from /memory/", "Error")
        await healthy(a, b)


async def test_oversized_multistream_line(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(2, network) as (a, b):
        await a.connect(full_addr(b))
        raw = await raw_dial(network, b)
        await raw.send_all(encode_line("/multistream/1.0.0") + b"\xff\xff\x03" + b"x" * 100)
        await wait_closed(raw)
        warned(caplog, "closing inbound connection", "DecodeError", "exceeds")
        await healthy(a, b)


async def test_truncated_noise_frame(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(2, network) as (a, b):
        await a.connect(full_addr(b))
        raw = await raw_dial(network, b)
        negotiated = await select_protocol(raw, ["/noise"])
        await negotiated.send_all(struct.pack(">H", 32) + b"\x00" * 10)  # promises 32 bytes, sends 10
        await negotiated.send_eof()
        await wait_closed(raw)
        warned(caplog, "closing inbound connection")
        await healthy(a, b)


class _Liar(KeyPair):
    """Signs its Noise static key with garbage."""

    def sign(self, data: bytes) -> bytes:
        return bytes(64)


async def test_bad_noise_signature(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(2, network) as (a, b):
        await a.connect(full_addr(b))
        liar = _Liar.from_seed(bytes(range(32)))
        raw = await raw_dial(network, b)
        negotiated = await select_protocol(raw, ["/noise"])
        # Our side of the handshake completes (the liar's signature travels in
        # the last message); the node then hangs up.
        secure = await noise_handshake(negotiated, liar, initiator=True)
        await wait_closed(secure)
        warned(caplog, "closing inbound connection", "HandshakeError")
        await healthy(a, b)


async def test_peer_id_mismatch_logged(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(3, network) as (a, b, c):
        await a.connect(full_addr(b))
        with pytest.raises(Exception):
            await a.connect(b.listen_addrs[0].with_p2p(str(c.peer_id)))
        warned(caplog, "closing outbound connection", "PeerIdMismatch")
        await healthy(a, b)


async def test_yamux_window_violation(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(2, network) as (a, b):
        await a.connect(full_addr(b))
        attacker = KeyPair.generate()
        raw = await raw_dial(network, b)
        secure, _unused = await upgrade_outbound(raw, attacker, b.peer_id, YamuxConfig())
        # Open stream 1 (SYN as js sends it), then push one byte past the
        # 256 KiB initial window in a single DATA frame.
        size = 256 * 1024 + 1
        try:
            await secure.send_all(struct.pack(">BBHII", 0, 1, 1, 1, 0))
            await secure.send_all(struct.pack(">BBHII", 0, 0, 0, 1, size) + b"\x00" * size)
        except trio.BrokenResourceError:
            pass  # the node may hang up before it read everything
        await wait_closed(secure)
        warned(caplog, "closing connection to", str(attacker.peer_id), "window")
        await healthy(a, b)


async def test_oversized_identify_refused(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    """A peer answering identify with a message over the cap is refused; the
    connection stays usable for everything else."""
    from guts.identify import IDENTIFY
    from guts.wire import encode_uvarint

    caplog.set_level(logging.INFO)
    async with memory_hosts(2, network) as (a, b):

        async def huge_identify(stream) -> None:  # type: ignore[no-untyped-def]
            await stream.send_all(encode_uvarint(10 * 1024 * 1024) + b"\x00" * 1024)

        b.set_handler(IDENTIFY, huge_identify)
        conn = await a.connect(full_addr(b))
        with trio.fail_after(5):
            await conn.identified.wait()
        warned(caplog, "identify failed", str(b.peer_id), "exceeds")
        await healthy(a, b)


async def test_silent_stream_times_out(network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    """A stream that never proposes a protocol is reset after the negotiation
    timeout; the connection stays up."""
    from guts.host import HostConfig

    caplog.set_level(logging.INFO)
    async with memory_hosts(2, network, HostConfig(keep_alive=0, negotiation_timeout=0.2)) as (a, b):
        conn = await a.connect(full_addr(b))
        silent = await conn.muxer.open_stream()
        with trio.fail_after(5):
            with pytest.raises(trio.BrokenResourceError):
                await silent.receive_some()
        assert any("negotiation timed out" in r.getMessage() and str(a.peer_id) in r.getMessage()
                   for r in caplog.records)
        await healthy(a, b)
