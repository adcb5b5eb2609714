"""A Guts gossipsub node for ``bench/gossip_throughput.py``, in its own process.

Listens on 127.0.0.1 over TCP (Noise, yamux, identify, ping, gossipsub with
the default configuration), subscribes to the benchmark topic, prints
``{"addr": ...}`` and then answers one JSON command per stdin line:

- ``{"cmd": "cpu"}`` -> ``{"cpu": seconds}``: user + system CPU of this process;
- ``{"cmd": "publish", "n": N, "size": S}`` -> ``{"published": N}`` once N
  messages of S bytes are published;
- ``{"cmd": "mesh"}`` -> ``{"mesh": [peer ids]}``;
- ``{"cmd": "stats"}`` -> the router's counters.

It stops when stdin closes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys

import trio

from guts.crypto import KeyPair
from guts.gossip import GossipConfig, open_gossipsub
from guts.host import HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping
from guts.transport import TcpTransport

TOPIC = "bench"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    async with open_host(KeyPair.generate(), [TcpTransport()], HostConfig(keep_alive=0)) as host:
        Identify(host)
        Ping(host)
        [addr] = await host.listen(Multiaddr.parse("/ip4/127.0.0.1/tcp/0"))
        # capacity, not policy: without the per-peer message rate (500/s by default)
        async with open_gossipsub(host, GossipConfig(peer_message_rate=0)) as gossip:
            gossip.subscribe(TOPIC, buffer=1)  # a relay: it need not keep what it delivers
            print(json.dumps({"addr": str(addr.with_p2p(str(host.peer_id)))}), flush=True)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buf = b""
            async with stdin:
                while chunk := await stdin.receive_some(65536):
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        cmd = json.loads(line)
                        reply: dict[str, object]
                        if cmd["cmd"] == "cpu":
                            reply = {"cpu": cpu()}
                        elif cmd["cmd"] == "publish":
                            payload = os.urandom(cmd["size"])
                            for i in range(cmd["n"]):
                                await gossip.publish(TOPIC, i.to_bytes(8, "big") + payload[8:])
                            reply = {"published": cmd["n"]}
                        elif cmd["cmd"] == "mesh":
                            reply = {"mesh": [str(p) for p in gossip.mesh_peers(TOPIC)]}
                        else:
                            stats = dataclasses.asdict(gossip.stats)
                            reply = {"stats": stats}
                        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
