"""The connection manager in a host, over real loopback sockets: strangers
from one address cannot lock honest peers out, concurrent strangers stay
within the caps, a peer that finishes Noise and then says nothing is
closed at the identify grace, and refusals log a bounded number of lines.

Strangers dial from ``127.0.0.2`` and ``127.0.0.3`` (loopback's first
address, ``127.0.0.1``, is exempt from the per-address caps, as the
node's own commands dial from it) and run the host's own upgrade code,
then idle. Every wait is bounded in time, every loop in count.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest
import trio

from guts.connmgr import ConnLimits
from guts.crypto import KeyPair
from guts.errors import GutsError
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.mux.yamux import YamuxConfig
from guts.ping import Ping, ping
from guts.transport import MemoryNetwork, MemoryTransport, TcpConnection, TcpTransport
from guts.upgrade import upgrade_outbound

from .helpers import full_addr, memory_hosts


async def _dial_from(source: str, host: str, port: int) -> TcpConnection:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.bind((source, 0))
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return TcpConnection(trio.SocketStream(sock))


class _FromAddress(TcpTransport):
    """TCP dialling out from a chosen loopback address."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    async def dial(self, addr: Multiaddr) -> TcpConnection:
        return await _dial_from(self.source, str(addr.value_for("ip4")), int(str(addr.value_for("tcp"))))


@asynccontextmanager
async def _target(config: HostConfig | None = None) -> AsyncIterator[tuple[Host, Multiaddr, int]]:
    async with open_host(KeyPair.generate(), [TcpTransport()], config or HostConfig(keep_alive=0)) as host:
        Identify(host)
        Ping(host)
        (addr,) = await host.listen(Multiaddr.parse("/ip4/127.0.0.1/tcp/0"))
        yield host, addr.with_p2p(str(host.peer_id)), int(str(addr.value_for("tcp")))


class _Strangers:
    """Throwaway keys that finish Noise and yamux, then hold on and idle."""

    def __init__(self) -> None:
        self.held: list[TcpConnection] = []
        self.refused = 0

    async def one(self, source: str, port: int) -> None:
        try:
            raw = await _dial_from(source, "127.0.0.1", port)
        except OSError:
            self.refused += 1
            return
        try:
            with trio.fail_after(5):
                await upgrade_outbound(raw, KeyPair.generate(), None, YamuxConfig())
        except (GutsError, OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self.refused += 1
            await trio.aclose_forcefully(raw)
            return
        self.held.append(raw)

    async def aclose(self) -> None:
        for raw in self.held:
            await trio.aclose_forcefully(raw)


def _from(host: Host, source: str) -> int:
    return sum(c.remote_addr.value_for("ip4") == source for c in host.connections)


async def test_honest_peer_gets_in_past_400_idle_strangers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guts.host")
    strangers = _Strangers()
    async with _target() as (host, addr, port):
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for source in ("127.0.0.2", "127.0.0.3"):
                    for _ in range(200):
                        nursery.start_soon(strangers.one, source, port)
        try:
            # Concurrent strangers did not get past the per-address caps.
            limits = host.connmgr.limits
            assert _from(host, "127.0.0.2") <= limits.max_per_ip and _from(host, "127.0.0.3") <= limits.max_per_ip
            assert len(strangers.held) <= 2 * limits.max_per_ip and strangers.refused >= 400 - 2 * limits.max_per_ip
            refused = host.connmgr.status()["refused"]
            assert sum(refused.values()) >= 400 - 2 * limits.max_per_ip
            # The honest peer from a third address connects and pings within 1 s.
            async with open_host(KeyPair.generate(), [_FromAddress("127.0.0.4")], HostConfig(keep_alive=0)) as honest:
                Identify(honest)
                Ping(honest)
                started = trio.current_time()
                with trio.fail_after(1):
                    await honest.connect(addr)
                    async with aclosing(ping(honest, host.peer_id, count=1)) as pings:
                        rtts = [rtt async for rtt in pings]
                assert len(rtts) == 1 and trio.current_time() - started < 1
        finally:
            await strangers.aclose()
    # Hundreds of refusals, a handful of lines: one per address and reason.
    lines = [r for r in caplog.records if "refusing inbound connection" in r.getMessage()]
    assert 2 <= len(lines) <= 2 * 8, [r.getMessage() for r in lines]


async def test_concurrent_strangers_stay_within_the_inbound_budget() -> None:
    config = HostConfig(max_connections=20, keep_alive=0, connmgr=ConnLimits(max_per_ip=8, max_handshakes=6))
    strangers = _Strangers()
    peak = [0, 0]

    async def watch(host: Host, done: trio.Event) -> None:
        for _ in range(100_000):
            peak[0] = max(peak[0], len(host.connmgr))
            peak[1] = max(peak[1], host.connmgr.status()["inbound"]["handshaking"])
            if done.is_set():
                return
            await trio.sleep(0)

    async with _target(config) as (host, _addr, port):
        done = trio.Event()
        try:
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watch, host, done)
                    async with trio.open_nursery() as attackers:
                        for i in range(4):
                            for _ in range(50):
                                attackers.start_soon(strangers.one, f"127.0.1.{i + 2}", port)
                    done.set()
            assert 0 < len(strangers.held) <= host.connmgr.inbound_budget == 15
            assert peak[0] <= 20 and peak[1] <= 6
            assert len(host.connections) <= 15
        finally:
            await strangers.aclose()


async def test_strangers_never_take_the_slots_for_dialling_out() -> None:
    config = HostConfig(max_connections=8, keep_alive=0)  # a quarter (2) kept for dials: 6 inbound
    strangers = _Strangers()
    async with _target(config) as (host, _addr, port), _target() as (first, first_addr, _), \
            _target() as (second, second_addr, _):
        try:
            for _ in range(10):
                await strangers.one("127.0.1.2", port)
            assert len(strangers.held) == 6 and strangers.refused == 4
            assert host.connmgr.status()["refused"] == {"inbound_budget": 4}
            with trio.fail_after(5):
                for other in (first_addr, second_addr):
                    await host.connect(other)
            assert host.connmgr.status()["outbound"]["unidentified"] + host.connmgr.status()["outbound"]["identified"] == 2
        finally:
            await strangers.aclose()


async def test_noise_only_stall_is_closed_at_the_identify_grace() -> None:
    grace = 2.0
    config = HostConfig(keep_alive=0, connmgr=ConnLimits(identify_grace=grace))
    async with _target(config) as (host, addr, port):
        raw = await _dial_from("127.0.0.5", "127.0.0.1", port)
        try:
            with trio.fail_after(5):
                secure, _muxer = await upgrade_outbound(raw, KeyPair.generate(), host.peer_id, YamuxConfig())
            started = trio.current_time()
            # An honest peer connected at the same time stays.
            async with open_host(KeyPair.generate(), [TcpTransport()], HostConfig(keep_alive=0)) as honest:
                Identify(honest)
                await honest.connect(addr)
                # The stranger never runs yamux: it reads until the host hangs up.
                with trio.fail_after(grace + 2):
                    for _ in range(10_000):
                        try:
                            if not await secure.receive_some():
                                break
                        except (trio.BrokenResourceError, trio.ClosedResourceError, GutsError):
                            break
                elapsed = trio.current_time() - started
                assert grace - 0.5 <= elapsed <= grace + 1.5
                assert host.connection(honest.peer_id) is not None
                assert _from(host, "127.0.0.5") == 0
        finally:
            await trio.aclose_forcefully(raw)


async def test_trim_keeps_the_protected_and_the_useful() -> None:
    from .helpers import ECHO

    net = MemoryNetwork()
    config = HostConfig(keep_alive=0, connmgr=ConnLimits(low_water=3, high_water=4))
    async with memory_hosts(1, net, config) as (server,), memory_hosts(8, net) as clients:
        guarded, useful, others, newcomer = clients[0], clients[1], clients[2:7], clients[7]
        server.connmgr.protect(guarded.peer_id, "bootstrap")
        server.connmgr.high_water = 100  # no trim while the scene is set
        with trio.fail_after(5):
            for client in (guarded, useful, *others):
                conn = await client.connect(full_addr(server))
                await conn.identified.wait()
            stream = await useful.new_stream(server.peer_id, [ECHO])  # useful: identify and ping are not
            await stream.aclose()
            while server.connmgr.status()["inbound"]["identified"] < 7:
                await trio.sleep(0.01)
        server.connmgr.high_water = 4
        # Seven settled connections are past high water: four of the five
        # unprotected, never useful peers go (down to low water, 3). The
        # newcomer, within its grace, neither counts nor goes.
        with trio.fail_after(5):
            await newcomer.connect(full_addr(server))
            while len(server.connections) > 4:
                await trio.sleep(0.01)
        kept = {c.peer_id for c in server.connections}
        assert {guarded.peer_id, useful.peer_id, newcomer.peer_id} <= kept
        assert len(kept & {c.peer_id for c in others}) == 1
        assert server.connmgr.status()["inbound"]["protected"] == 1


async def test_node_protects_its_bootstrap_and_reports_connections(tmp_path_factory: pytest.TempPathFactory) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from guts.config import NodeConfig
    from guts.control import ControlClient
    from guts.control.node import open_controlled_node
    from guts.node import open_node

    net = MemoryNetwork()
    root = Path(tempfile.mkdtemp(prefix="guts-", dir="/tmp"))  # a Unix socket path holds at most 107 bytes
    try:
        listen = (Multiaddr.parse("/memory/0"),)
        seed_config = NodeConfig(home=root / "seed", listen=listen, keep_alive=0, control=False, dht_mode="server")
        async with open_node(seed_config, keypair=KeyPair.generate(), transports=[MemoryTransport(net)],
                             persist=False) as seed:
            config = NodeConfig(home=root / "n", listen=listen, keep_alive=0, bootstrap=tuple(seed.addrs),
                                conn_max_per_ip=3, dht_mode="server")
            async with open_controlled_node(config, keypair=KeyPair.generate(),
                                            transports=[MemoryTransport(net)]) as node:
                assert node.host.connmgr.tags(seed.host.peer_id) >= {"bootstrap"}
                assert node.host.connmgr.limits.max_per_ip == 3
                with trio.fail_after(10):
                    while node.host.connmgr.status()["outbound"]["identified"] < 1:
                        await trio.sleep(0.05)
                status = await ControlClient(config.control_socket).call("GET", "/v1/status")
                counts = status["connmgr"]
                assert counts["outbound"] == {"handshaking": 0, "unidentified": 0, "identified": 1, "protected": 1}
                assert counts["inbound"]["identified"] == 0 and counts["refused"] == {}
                assert counts["limits"]["high_water"] == 60 and counts["limits"]["max_per_ip"] == 3
                # the seed's DHT routing table holds the node: protected there too
                with trio.fail_after(10):
                    while "dht-routing-table" not in seed.host.connmgr.tags(node.host.peer_id):
                        await trio.sleep(0.05)
    finally:
        shutil.rmtree(root, ignore_errors=True)
