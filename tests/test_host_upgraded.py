"""The host's seam: a transport that hands over connections it secured and
multiplexed itself (as QUIC does) is run like any other. Here the
transport does Noise and yamux on its own, over the memory transport."""

from __future__ import annotations

from contextlib import AsyncExitStack, aclosing

import pytest
import trio

from guts.crypto import KeyPair
from guts.errors import DialError, HandshakeError
from guts.host import HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.mux.yamux import YamuxConfig
from guts.peer import PeerId
from guts.ping import Ping, ping
from guts.security import SecureChannel
from guts.mux import MuxedConnection
from guts.transport import ConnectionHandler, MemoryNetwork, MemoryTransport, RawConnection, UpgradedConnection
from guts.upgrade import upgrade_inbound, upgrade_outbound

from .helpers import ECHO, echo_handler


class _Upgraded(UpgradedConnection):
    def __init__(self, raw: RawConnection, secure: SecureChannel, muxer: MuxedConnection) -> None:
        self.local_addr, self.remote_addr = raw.local_addr, raw.remote_addr
        self.secure, self.muxer = secure, muxer


class SelfUpgrading:
    """A transport that authenticates and multiplexes its own connections."""

    def __init__(self, keypair: KeyPair, network: MemoryNetwork, *, check_peer: bool = True) -> None:
        self.keypair = keypair
        self.check_peer = check_peer
        self.inner = MemoryTransport(network)
        self.dialled = 0
        self.served = 0

    def can_dial(self, addr: Multiaddr) -> bool:
        return self.inner.can_dial(addr)

    def can_listen(self, addr: Multiaddr) -> bool:
        return self.inner.can_listen(addr)

    async def dial(self, addr: Multiaddr) -> RawConnection | UpgradedConnection:
        raw = await self.inner.dial(addr)
        assert isinstance(raw, RawConnection)
        expected = PeerId.from_string(addr.peer_id) if addr.peer_id and self.check_peer else None
        secure, muxer = await upgrade_outbound(raw, self.keypair, expected, YamuxConfig(keepalive_interval=None))
        self.dialled += 1
        return _Upgraded(raw, secure, muxer)

    async def serve(
        self, addr: Multiaddr, handler: ConnectionHandler, *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:  # fmt: skip
        async def upgrade(raw: RawConnection | UpgradedConnection) -> None:
            assert isinstance(raw, RawConnection)
            secure, muxer = await upgrade_inbound(raw, self.keypair, YamuxConfig(keepalive_interval=None))
            self.served += 1
            await handler(_Upgraded(raw, secure, muxer))

        await self.inner.serve(addr, upgrade, task_status=task_status)


@pytest.mark.parametrize("check_peer", [True, False], ids=["transport checks the peer", "host checks the peer"])
async def test_a_host_runs_connections_its_transport_upgraded(check_peer: bool) -> None:
    network = MemoryNetwork()
    keys = [KeyPair.generate() for _ in range(3)]
    transports = [SelfUpgrading(k, network, check_peer=check_peer) for k in keys]
    async with AsyncExitStack() as stack:
        hosts = []
        for key, transport in zip(keys, transports):
            host = await stack.enter_async_context(open_host(key, [transport], HostConfig(keep_alive=0)))
            Identify(host)
            Ping(host)
            host.set_handler(ECHO, echo_handler)
            await host.listen(Multiaddr.parse("/memory/0"))
            hosts.append(host)
        a, b, c = hosts
        with trio.fail_after(10):
            conn = await a.connect(b.listen_addrs[0].with_p2p(str(b.peer_id)))
            assert conn.peer_id == b.peer_id and transports[0].dialled == 1 and transports[1].served == 1
            async with aclosing(ping(a, b.peer_id, count=2)) as pings:
                assert len([rtt async for rtt in pings if rtt >= 0]) == 2
            stream = await a.new_stream(b.peer_id, [ECHO])
            await stream.send_all(b"x" * 100_000)
            await stream.send_eof()
            got = b""
            while len(got) < 100_000:
                got += await stream.receive_some()
            assert got == b"x" * 100_000
            assert await conn.ping() >= 0  # the muxer's own ping
            # identify ran over it, both ways
            await conn.identified.wait()
            assert b.peer_id in a.peerstore.peers() and a.peer_id in b.peerstore.peers()
            # dialling an address as another peer's is refused
            with pytest.raises((DialError, HandshakeError)):
                await c.connect(b.listen_addrs[0].with_p2p(str(a.peer_id)))
            assert c.connection(b.peer_id) is None and c.connection(a.peer_id) is None
            await conn.aclose()
            await trio.sleep(0.1)
            assert a.connection(b.peer_id) is None


async def test_streams_of_one_protocol_served_at_once_are_capped() -> None:
    """A peer cannot take every stream of a connection with one protocol's
    handlers: past the cap a new stream is reset once negotiated, and the
    other protocols are still served."""
    from .helpers import memory_hosts

    held = trio.Event()

    async def hold(stream: object) -> None:
        await held.wait()

    async with memory_hosts(2, config=HostConfig(keep_alive=0, max_streams_per_protocol=4)) as (a, b):
        b.set_handler("/hold/1.0.0", hold)  # type: ignore[arg-type]
        with trio.fail_after(10):
            broken = 0
            for _ in range(6):
                try:  # a stream past the cap is reset as soon as it is negotiated
                    stream = await a.new_stream(b.listen_addrs[0].with_p2p(str(b.peer_id)), ["/hold/1.0.0"])
                    with trio.move_on_after(0.2):
                        await stream.receive_some()
                except trio.BrokenResourceError:
                    broken += 1
            conn = b.connection(a.peer_id)
            assert conn is not None
            assert broken == 2 and conn.serving == {"/hold/1.0.0": 4}
            echo = await a.new_stream(b.peer_id, [ECHO])  # another protocol is served
            await echo.send_all(b"hi")
            await echo.send_eof()
            assert await echo.receive_some() == b"hi"
            held.set()
            while conn.serving:
                await trio.sleep(0.01)


@pytest.mark.parametrize(
    ("dialer", "listener", "chosen"),
    [
        (("/noise", "/tls/1.0.0"), ("/noise", "/tls/1.0.0"), "noise"),
        (("/tls/1.0.0", "/noise"), ("/noise", "/tls/1.0.0"), "tls"),
        (("/tls/1.0.0",), ("/tls/1.0.0",), "tls"),
    ],
)
async def test_hosts_agree_on_noise_or_tls(dialer: tuple[str, ...], listener: tuple[str, ...], chosen: str) -> None:
    from guts.security.noise import NoiseStream
    from guts.security.tls import TlsStream

    from .helpers import memory_hosts

    network = MemoryNetwork()
    async with memory_hosts(1, network, HostConfig(keep_alive=0, security=listener)) as (b,):
        async with memory_hosts(1, network, HostConfig(keep_alive=0, security=dialer)) as (a,):
            with trio.fail_after(10):
                conn = await a.connect(b.listen_addrs[0].with_p2p(str(b.peer_id)))
                assert isinstance(conn.secure, TlsStream if chosen == "tls" else NoiseStream)
                stream = await a.new_stream(b.peer_id, [ECHO])
                await stream.send_all(b"over " + chosen.encode())
                await stream.send_eof()
                assert await stream.receive_some() == b"over " + chosen.encode()
                await conn.identified.wait()
                assert a.peerstore.public_key(b.peer_id) == b.keypair.public_key


async def test_a_tls_only_dialer_and_a_noise_only_listener_fail_cleanly() -> None:
    from .helpers import memory_hosts

    network = MemoryNetwork()
    async with memory_hosts(1, network, HostConfig(keep_alive=0, security=("/noise",))) as (b,):
        async with memory_hosts(1, network, HostConfig(keep_alive=0, security=("/tls/1.0.0",))) as (a,):
            with trio.fail_after(10), pytest.raises(DialError):
                await a.connect(b.listen_addrs[0].with_p2p(str(b.peer_id)))
            assert a.connections == [] and b.connections == []


async def test_dials_try_quic_first_then_the_rest_in_order() -> None:
    """With both, a QUIC address is dialled first (as go-libp2p prefers it);
    addresses no transport dials go last."""
    from .helpers import memory_hosts

    async with memory_hosts(1) as (a,):
        memory = Multiaddr.parse("/memory/7")
        tcp = Multiaddr.parse("/ip4/127.0.0.1/tcp/9")
        quic = Multiaddr.parse("/ip4/127.0.0.1/udp/9/quic-v1")

        class Quic:  # dials QUIC addresses only
            def can_dial(self, addr: Multiaddr) -> bool:
                return any(c.protocol == "quic-v1" for c in addr.components)

        a._transports.append(Quic())  # type: ignore[arg-type]
        assert a._dial_order([tcp, memory, quic]) == [quic, memory, tcp]
        a._transports.pop()
        assert a._dial_order([tcp, quic, memory]) == [memory, tcp, quic]
