"""The protocols feed the node's peer scores: a peer that sends sync
requests that break the rules is throttled (its requests refused unread),
and disconnected when it keeps on."""

from __future__ import annotations

from pathlib import Path

import trio

from guts.config import NodeConfig
from guts.crypto import KeyPair
from guts.errors import GutsError
from guts.host import HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.node import open_node
from guts.reputation import Verdict
from guts.sync import SYNC_PROTOCOL
from guts.transport import MemoryNetwork, MemoryTransport
from guts.wire import encode_length_prefixed


async def test_bad_sync_requests_get_a_peer_throttled_then_disconnected(tmp_path: Path) -> None:
    network = MemoryNetwork()
    config = NodeConfig(home=tmp_path / "a", listen=(Multiaddr.parse("/memory/0"),), keep_alive=0, dht_mode="server")
    with trio.fail_after(30):
        async with open_node(config, transports=[MemoryTransport(network)]) as a, open_host(
            KeyPair.generate(), [MemoryTransport(network)], HostConfig(keep_alive=0)
        ) as b:
            assert a.reputation is not None and a.sync is not None
            Identify(b)
            await b.connect(a.addrs[0])
            verdicts = []
            for _ in range(60):
                try:
                    stream = await b.new_stream(a.host.peer_id, [SYNC_PROTOCOL])
                    await stream.send_all(encode_length_prefixed(b"\xff\xff not a request"))
                    while await stream.receive_some():
                        pass
                except (GutsError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # A closed the stream or the connection: the verdict says why
                verdicts.append(a.reputation.verdict(b.peer_id))
                if verdicts[-1] is not Verdict.OK and verdicts[-1] is not Verdict.THROTTLE:
                    break
            assert verdicts[0] is Verdict.OK and verdicts.index(Verdict.THROTTLE) <= 2, verdicts  # 10 a bad request
            while a.host.connection(b.peer_id) is not None:
                await trio.sleep(0.01)
            assert a.reputation.verdict(b.peer_id) in (Verdict.DISCONNECT, Verdict.BLOCK)
            assert a.reputation.status()["disconnected"] >= 1
