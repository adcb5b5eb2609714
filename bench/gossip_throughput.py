"""gossipsub throughput through one node and its CPU cost per message.

Two parts::

    .venv/bin/python bench/gossip_throughput.py [--messages 20000] [--size 120] [--quick]

1. The router alone (sans-IO, one process, no I/O): CPU per message to
   publish one (sign, id, encode for 6 mesh peers), to relay one (decode
   the frame, check the fields, verify the signature, cache, deliver,
   encode for 6 mesh peers) and to drop a duplicate (decode, id, seen).
2. A full node over TCP on loopback: the node under test runs in its own
   process (``bench/_gossip_node.py``); a publisher and a subscriber (Guts
   nodes in this process) connect to it only, so every message goes
   publisher -> node -> subscriber. "relay": the publisher publishes in
   batches of 500 and waits for the subscriber to have them all; "publish":
   the node publishes, the subscriber receives. Measured: messages per second
   end to end, and the node's own CPU time (user + system, from its
   ``getrusage``) per message. This process runs two nodes on the machine's
   other core, so the end-to-end rate may be its limit rather than the
   node's: the node's CPU per message is the figure that says what it can do.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import trio  # noqa: E402

from guts.crypto import KeyPair  # noqa: E402
from guts.gossip import MESHSUB_V12, GossipConfig, GossipRouter, open_gossipsub  # noqa: E402
from guts.gossip._codec import RPC, SubOpts, decode_rpc, encode_rpc  # noqa: E402
from guts.gossip._signing import sign_message  # noqa: E402
from guts.host import HostConfig, open_host  # noqa: E402
from guts.identify import Identify  # noqa: E402
from guts.multiaddr import Multiaddr  # noqa: E402
from guts.transport import TcpTransport  # noqa: E402

TOPIC = "bench"
BATCH = 500


# ---------------------------------------------------------------- 1. the router alone


def _router_with_mesh(peers: int = 7) -> tuple[GossipRouter, list[KeyPair]]:
    me = KeyPair.generate()
    # no per-peer allowances: a burst of 20,000 from one peer would be
    # dropped over its rate, and this measures what a message costs
    config = GossipConfig(peer_message_rate=0, peer_byte_rate=0)
    router = GossipRouter(me.peer_id, me, config, rng=random.Random(1), seqno=1)
    others = [KeyPair.generate() for _ in range(peers)]
    router.subscribe(TOPIC, 0.0)
    for k in others:
        router.add_peer(k.peer_id, MESHSUB_V12, outbound=True, now=0.0)
        router.handle_rpc(k.peer_id, RPC(subscriptions=(SubOpts(True, TOPIC),)), 0.0)
    router.heartbeat(1.0)
    router.take_outgoing()
    return router, others


def router_costs(n: int, size: int) -> dict[str, float]:
    payload = os.urandom(size)
    router, _ = _router_with_mesh(6)
    start = time.process_time()
    for i in range(n):
        router.publish(TOPIC, payload, 2.0)
        router.take_outgoing()
    publish = (time.process_time() - start) / n

    router, others = _router_with_mesh(7)
    source = others[0]
    author = KeyPair.generate()
    frames = [encode_rpc(RPC(messages=(sign_message(author, TOPIC, payload, i + 1),))) for i in range(n)]
    start = time.process_time()
    for frame in frames:
        router.handle_rpc(source.peer_id, decode_rpc(frame), 2.0)
        router.take_outgoing()
        router.take_events()
    relay = (time.process_time() - start) / n
    dup_source = others[1]
    start = time.process_time()
    for frame in frames:
        router.handle_rpc(dup_source.peer_id, decode_rpc(frame), 2.0)
        router.take_outgoing()
    duplicate = (time.process_time() - start) / n
    return {"publish": publish, "relay": relay, "duplicate": duplicate}


# ---------------------------------------------------------------- 2. a full node over TCP


class Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "_gossip_node.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(BENCH.parent),
        )
        self.addr = self._read()["addr"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark node exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def call(self, **cmd: object) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return await trio.to_thread.run_sync(self._read)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def full_node(n: int, size: int) -> dict[str, dict[str, float]]:
    child = Child()
    try:
        results = {}
        async with open_host(KeyPair.generate(), [TcpTransport()], HostConfig(keep_alive=0)) as pub_host, \
                open_host(KeyPair.generate(), [TcpTransport()], HostConfig(keep_alive=0)) as sub_host:
            Identify(pub_host)
            Identify(sub_host)
            # capacity, not policy: without the per-peer message rate (500/s by default)
            unlimited = GossipConfig(peer_message_rate=0)
            async with open_gossipsub(pub_host, unlimited) as pub, open_gossipsub(sub_host, unlimited) as sub:
                sub_stream = sub.subscribe(TOPIC, buffer=n + 10)
                pub.subscribe(TOPIC, buffer=1)
                node = Multiaddr.parse(child.addr)
                await pub_host.connect(node)
                await sub_host.connect(node)
                with trio.fail_after(20):
                    while len((await child.call(cmd="mesh"))["mesh"]) < 2 or not pub.mesh_peers(TOPIC):
                        await trio.sleep(0.2)

                async def receive(count: int) -> None:
                    for _ in range(count):
                        await sub_stream.receive()

                # relay: publisher -> node -> subscriber
                payload = os.urandom(size)
                await pub.publish(TOPIC, payload)
                await receive(1)
                cpu0, t0 = (await child.call(cmd="cpu"))["cpu"], time.perf_counter()
                sent = 0
                while sent < n:
                    batch = min(BATCH, n - sent)
                    for i in range(batch):
                        await pub.publish(TOPIC, (sent + i).to_bytes(8, "big") + payload[8:])
                    await receive(batch)
                    sent += batch
                elapsed = time.perf_counter() - t0
                cpu = (await child.call(cmd="cpu"))["cpu"] - cpu0
                results["relay"] = {"rate": n / elapsed, "cpu": cpu / n}

                # publish: the node -> subscriber (and the publisher, also subscribed)
                cpu0, t0 = (await child.call(cmd="cpu"))["cpu"], time.perf_counter()
                sent = 0
                while sent < n:
                    batch = min(BATCH, n - sent)
                    await child.call(cmd="publish", n=batch, size=size)
                    await receive(batch)
                    sent += batch
                elapsed = time.perf_counter() - t0
                cpu = (await child.call(cmd="cpu"))["cpu"] - cpu0
                results["publish"] = {"rate": n / elapsed, "cpu": cpu / n}
                stats = (await child.call(cmd="stats"))["stats"]
                results["node"] = {"rejected": stats["messages_rejected"], "delivered": stats["messages_delivered"]}
        return results
    finally:
        child.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=120, help="payload bytes")
    parser.add_argument("--quick", action="store_true", help="2,000 messages")
    args = parser.parse_args()
    n = 2000 if args.quick else args.messages
    costs = router_costs(n, args.size)
    full = trio.run(full_node, n, args.size)
    print(f"{n:,} messages of {args.size} bytes, StrictSign, default GossipConfig but for the per-peer allowances, load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| | router alone (CPU per message) | full node over TCP: messages/s end to end | full node: its CPU per message |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| publish | {costs['publish'] * 1e6:.0f} µs | {full['publish']['rate']:,.0f} /s | "
          f"{full['publish']['cpu'] * 1e6:.0f} µs |")
    print(f"| relay | {costs['relay'] * 1e6:.0f} µs | {full['relay']['rate']:,.0f} /s | "
          f"{full['relay']['cpu'] * 1e6:.0f} µs |")
    print(f"| duplicate dropped | {costs['duplicate'] * 1e6:.0f} µs | — | — |")
    if full["node"]["rejected"]:
        print(f"\nthe node rejected {full['node']['rejected']} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
