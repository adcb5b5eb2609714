"""A synchronous network of gossipsub routers for the core tests.

Routers exchange real RPC frames (encoded, then decoded with the codec's
limits) through :meth:`RouterNet.pump`, which moves frames until nobody has
anything left to send. Time is explicit: :meth:`RouterNet.tick` advances the
shared clock by one heartbeat and runs every router's heartbeat. A
:class:`Puppet` is a peer driven by the test: it records what routers send
it and sends whatever RPC the test builds, well-formed or not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from guts.crypto import KeyPair
from guts.gossip._codec import RPC, decode_rpc, encode_rpc
from guts.gossip._config import MESHSUB_V12, GossipConfig
from guts.gossip.router import GossipRouter, MessageDelivered, RouterEvent
from guts.peer import PeerId


@dataclass
class Puppet:
    """A peer under the test's control."""

    keypair: KeyPair
    received: list[RPC] = field(default_factory=list)

    @property
    def peer_id(self) -> PeerId:
        return self.keypair.peer_id

    def messages(self) -> list:
        return [m for rpc in self.received for m in rpc.messages]

    def control(self, kind: str) -> list:
        return [e for rpc in self.received if rpc.control for e in getattr(rpc.control, kind)]

    def clear(self) -> None:
        self.received.clear()


class RouterNet:
    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.now = 1000.0
        self.routers: dict[PeerId, GossipRouter] = {}
        self.puppets: dict[PeerId, Puppet] = {}
        self.events: dict[PeerId, list[RouterEvent]] = {}
        self.frames = 0

    def router(self, config: GossipConfig | None = None, keypair: KeyPair | None = None) -> GossipRouter:
        keypair = keypair or KeyPair.from_seed(self.rng.randbytes(32))
        router = GossipRouter(
            keypair.peer_id, keypair, config, rng=random.Random(self.rng.random()), seqno=1 << 40
        )
        self.routers[router.local] = router
        self.events[router.local] = []
        return router

    def routers_n(self, n: int, config: GossipConfig | None = None) -> list[GossipRouter]:
        return [self.router(config) for _ in range(n)]

    def puppet(self) -> Puppet:
        puppet = Puppet(KeyPair.from_seed(self.rng.randbytes(32)))
        self.puppets[puppet.peer_id] = puppet
        return puppet

    def connect(self, a: PeerId, b: PeerId, protocol: str = MESHSUB_V12, *, a_dialed: bool = True) -> None:
        """Both directions; ``a`` dialled unless ``a_dialed`` is False."""
        if a in self.routers:
            self.routers[a].add_peer(b, protocol, outbound=a_dialed, now=self.now)
        if b in self.routers:
            self.routers[b].add_peer(a, protocol, outbound=not a_dialed, now=self.now)

    def disconnect(self, a: PeerId, b: PeerId) -> None:
        for x, y in ((a, b), (b, a)):
            if x in self.routers:
                self.routers[x].remove_peer(y, self.now)

    def send(self, src: PeerId, dst: PeerId, rpc: RPC | bytes) -> None:
        """Deliver an RPC (built by the test) from ``src`` to router ``dst``."""
        frame = rpc if isinstance(rpc, bytes) else encode_rpc(rpc)
        self.routers[dst].handle_frame(src, frame, self.now)

    def pump(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            moved = False
            for router in list(self.routers.values()):
                self.events[router.local].extend(router.take_events())
                for peer, frame in router.take_outgoing():
                    moved = True
                    self.frames += 1
                    if peer in self.routers:
                        self.routers[peer].handle_frame(router.local, frame, self.now)
                    elif peer in self.puppets:
                        self.puppets[peer].received.append(decode_rpc(frame))
            if not moved:
                for router in self.routers.values():
                    self.events[router.local].extend(router.take_events())
                return
        raise AssertionError("the network did not settle")

    def tick(self, n: int = 1, interval: float = 1.0) -> None:
        for _ in range(n):
            self.now += interval
            for router in self.routers.values():
                router.heartbeat(self.now)
            self.pump()

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def delivered(self, peer: PeerId) -> list[bytes]:
        """Payloads delivered to ``peer``'s application, in order."""
        return [e.message.data for e in self.events[peer] if isinstance(e, MessageDelivered)]

    def delivered_ids(self, peer: PeerId) -> list[bytes]:
        return [e.message.message_id for e in self.events[peer] if isinstance(e, MessageDelivered)]

    def full_mesh(self, routers: list[GossipRouter], protocol: str = MESHSUB_V12) -> None:
        for i, a in enumerate(routers):
            for b in routers[i + 1:]:
                self.connect(a.local, b.local, protocol)
