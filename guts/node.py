"""A full Guts node composed from a :class:`~guts.config.NodeConfig`: the
host with TCP, WebSocket and QUIC transports, identify, ping, the Kademlia DHT
(which dials the bootstrap peers), gossipsub with the configured topics
subscribed, and the repositories stored under ``GUTS_HOME/storage``
(:class:`~guts.repo.state.Repositories`, opened and repaired at start)
served to peers by the sync protocol (:mod:`guts.sync`), both under the
limits the config sets (:func:`repositories_config`, :func:`sync_config`).

The local control API sits one layer above and drives a node from outside:
:func:`guts.control.open_controlled_node` runs a node with it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from guts.config import NodeConfig
from guts.connmgr import ConnLimits
from guts.crypto import KeyPair, load_or_create_keypair
from guts.dht import Dht, DhtConfig, DhtMode, DhtStore
from guts.home import prepare_home
from guts.gossip import Gossipsub, Subscription
from guts._netaddrs import expand_unspecified
from guts.host import Host, HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import Ping
from guts.repo.identity import IdentityLimits
from guts.repo.sigrefs import RefsLimits
from guts.repo.state import Repositories, RepositoriesConfig
from guts.repo.storage import StorageConfig
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.replicate.policy import SeedingPolicy, SeedLimits, SeedPolicy
from guts.replicate.providing import RepoProvider
from guts.replicate.replicator import Replicator
from guts.replicate.seeding import Seeding
from guts.replicate.seeds import SeedStore
from guts.reputation import PeerGuard
from guts.sync import SYNC_PROTOCOL, SyncConfig, SyncService
from guts.transport import TcpTransport, Transport, WebSocketTransport
from guts.transport.quic import QuicTransport
from guts.upgrade import SECURITY

__all__ = ["Node", "open_node", "expand_unspecified", "repositories_config", "seeding_policy", "sync_config"]

log = logging.getLogger("guts.node")

# A statement's bytes are allowed what the defaults allow a ref (about 210:
# an oid and a name of a usual length), never less than the default total.
_REFS = RefsLimits()
_BYTES_PER_REF = _REFS.max_bytes // _REFS.max_refs


def repositories_config(config: NodeConfig) -> RepositoriesConfig:
    """The repository limits ``config`` sets; every other bound (name and
    description sizes, delegates, revisions, git's deadlines) keeps its
    default."""
    refs = RefsLimits(
        max_refs=config.repo_max_refs,
        max_bytes=max(_REFS.max_bytes, config.repo_max_refs * _BYTES_PER_REF),
    )
    return RepositoriesConfig(
        identity=replace(IdentityLimits(), max_document=config.repo_max_identity_bytes),
        refs=refs,
        storage=replace(StorageConfig(), max_pack_bytes=config.repo_max_pack_bytes),
        max_namespaces=config.repo_max_namespaces,
    )


def sync_config(config: NodeConfig) -> SyncConfig:
    """The sync limits ``config`` sets; the message sizes keep their defaults."""
    return replace(
        SyncConfig(),
        max_namespaces=config.repo_max_namespaces,
        idle_timeout=config.sync_idle_timeout,
        deadline=config.sync_deadline,
        max_uploads=config.sync_max_uploads,
        max_uploads_per_peer=config.sync_max_uploads_per_peer,
    )


def _conn_limits(config: NodeConfig) -> ConnLimits:
    """The connection manager's settings from ``config`` (a subnet's
    handshakes: 8 times an address's, as its default is)."""
    return replace(
        ConnLimits(),
        low_water=config.conn_low_water,
        high_water=config.conn_high_water,
        max_per_ip=config.conn_max_per_ip,
        max_per_subnet=config.conn_max_per_subnet,
        ip_handshake_rate=config.conn_handshake_rate,
        subnet_handshake_rate=8 * config.conn_handshake_rate,
        max_handshakes=config.conn_max_handshakes,
        identify_grace=config.conn_identify_grace,
    )


def _protect(node: Node) -> None:
    """Keep the connections the node cannot do without out of trims: its
    bootstrap peers, its gossip meshes and its DHT routing table (asked
    only when a trim runs); repositories being synced protect their peers
    themselves (``protect_streams``, :func:`guts.sync.fetch`)."""
    connmgr = node.host.connmgr
    for addr in node.config.bootstrap:
        if addr.peer_id:
            connmgr.protect(PeerId.from_string(addr.peer_id), "bootstrap")
    pubsub = node.pubsub
    connmgr.protect_with("gossip-mesh", lambda: {p for t in pubsub.topics for p in pubsub.mesh_peers(t)})
    connmgr.protect_with("dht-routing-table", lambda: node.dht.table.peers())


def seeding_policy(config: NodeConfig) -> SeedingPolicy:
    """The seeding policy and limits ``config`` sets (its block lists are
    :class:`~guts.replicate.seeding.Seeding`'s)."""
    limits = SeedLimits(
        max_repositories=config.seed_max_repositories,
        max_storage_bytes=config.seed_max_storage_bytes,
        max_fetches=config.seed_max_fetches,
    )
    return SeedingPolicy(SeedPolicy(config.seed_policy), limits)


@dataclass(frozen=True, slots=True)
class Node:
    """A running node: its host and the protocols it serves."""

    config: NodeConfig
    host: Host
    identify: Identify
    ping: Ping
    dht: Dht
    pubsub: Gossipsub
    #: The repositories in ``config.home / "storage"``; ``None`` on a node
    #: that persists nothing (a short-lived one answering one command).
    repos: Repositories | None = None
    #: Serves ``/guts/sync/1.0.0`` from ``repos``; ``None`` when there are
    #: none. ``sync.config`` is the :class:`SyncConfig` in force, for
    #: serving and for the fetches this node makes (pass it to
    #: :func:`guts.sync.fetch`).
    sync: SyncService | None = None
    #: Keeps the RIDs of ``repos`` provided in the DHT; ``None`` when there
    #: are no repositories. Wake it (``providing.wake()``) after a
    #: repository is made or fetched.
    providing: RepoProvider | None = None
    #: Announces this node's new signed refs and fetches what peers
    #: announce, for the repositories it holds; ``None`` without them.
    replicator: Replicator | None = None
    #: What the node seeds: the policy, the person's choices (kept in
    #: ``config.home / "seeds.sqlite"``) and the limits; ``None`` without
    #: repositories.
    seeding: Seeding | None = None
    #: Peer scores and the block list (``config.home / "blocks.sqlite"``),
    #: enforced before the handshake (by address) and after it (by peer id).
    reputation: PeerGuard | None = None
    #: The subscriptions to ``config.topics``, by topic.
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: More sections of :meth:`status`, by name, from what runs the node
    #: (``guts start`` adds its output's counts).
    status_sections: dict[str, Callable[[], Any]] = field(default_factory=dict)

    @property
    def addrs(self) -> list[Multiaddr]:
        """Dialable listen addresses, each ending in ``/p2p/<our id>``."""
        me = str(self.host.peer_id)
        return [a.with_p2p(me) for a in self.host.announce_addrs]

    def status(self) -> dict[str, Any]:
        """What ``guts status`` shows about the services, beyond the host."""
        dht = self.dht
        return {
            "protocols": self.host.protocols,
            "dht": {
                "mode": dht.mode.value,
                "configured_mode": dht.config.mode.value,
                "protocol": dht.config.protocol,
                "routing_table_size": dht.routing_table_size,
                "provider_records": len(dht.providers),
                "values": len(dht.values),
            },
            "pubsub": {
                "topics": self.pubsub.topics,
                "peers": len(self.pubsub.peers),
                "mesh": {t: len(self.pubsub.mesh_peers(t)) for t in self.pubsub.topics},
                "dropped": self.pubsub.drop_counts(),
            },
            "connmgr": self.host.connmgr.status(),
            "repos": 0 if self.repos is None else len(self.repos),
            **({} if self.reputation is None else {"reputation": self.reputation.status()}),
            **({} if self.seeding is None else {
                "seeding": self.seeding.status(self.replicator.running if self.replicator is not None else 0)
            }),
            **{name: section() for name, section in self.status_sections.items()},
        }  # fmt: skip


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    keypair: KeyPair | None = None,
    transports: list[Transport] | None = None,
    persist: bool = True,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the block.

    Args:
        config: what to listen on, whom to bootstrap from, limits.
        keypair: identity; loaded from (or created in) ``config.home`` if omitted.
        transports: defaults to TCP, WebSocket and QUIC.
        persist: keep the DHT's records and known peers in
            ``config.home/dht.sqlite`` across restarts, and hold the
            repositories of ``config.home/storage`` (off for a short-lived
            node that answers one command: it leaves both alone).

    ``config.control`` is not read here: the control API is the caller's
    (:func:`guts.control.open_controlled_node`).

    Raises:
        ConfigError: the home is unusable.
    """
    store = None
    seeds = None
    guard = None
    try:
        prepare_home(config.home)  # 0700, refused if others can write it; files 0600 from here on
        if keypair is None:
            keypair = load_or_create_keypair(config.key_file)
        host_config = HostConfig(
            max_connections=config.max_connections,
            connection_timeout=config.connection_timeout,
            keep_alive=config.keep_alive,
            connmgr=_conn_limits(config),
            security=tuple(SECURITY[name] for name in config.security),
            protect_streams=(SYNC_PROTOCOL,),
        )
        if transports is None:
            transports = [TcpTransport(), WebSocketTransport(), QuicTransport(keypair)]
        guard = PeerGuard.in_home(config.home) if persist else PeerGuard()
        transports = guard.gate(transports)
        store = DhtStore.in_home(config.home) if persist else None
        # Before the host: repositories are verified and repaired before any peer can ask for one.
        repos = await Repositories.open(config.home / "storage", repositories_config(config)) if persist else None
        seeds = SeedStore.in_home(config.home) if persist else None
        seeding = None if repos is None else Seeding(
            seeding_policy(config), repos, seeds,
            blocked_rids=[Rid.parse(rid) for rid in config.seed_block_rids],
            blocked_peers=[PeerId.from_string(peer) for peer in config.seed_block_peers],
            me=keypair.peer_id,
        )  # fmt: skip
        dht_config = DhtConfig(protocol=config.dht_protocol, mode=DhtMode(config.dht_mode), bootstrap=config.bootstrap)
        async with open_host(keypair, transports, host_config) as host:
            guard.watch(host)
            dht = Dht(host, dht_config, store)
            pubsub = Gossipsub(host)
            providing = None if seeding is None else RepoProvider(dht, seeding.repos, seeds=seeding.seeds)
            node = Node(
                config=config,
                host=host,
                identify=Identify(host),
                ping=Ping(host),
                dht=dht,
                pubsub=pubsub,
                repos=repos,
                sync=None if repos is None else SyncService(host, repos, sync_config(config)),
                providing=providing,
                replicator=None if seeding is None else Replicator(
                    host, pubsub, dht, seeding.repos, sync_config(config), providing=providing,
                    seeding=seeding, max_fetches=config.seed_max_fetches,
                ),
                seeding=seeding,
                reputation=guard,
            )  # fmt: skip
            _protect(node)
            _feed_reputation(node, guard)
            await host.start(node.pubsub.run)
            await host.start(_note_gossip_scores, pubsub, guard)
            for topic in config.topics:
                node.subscriptions[topic] = node.pubsub.subscribe(topic)
            if config.listen:
                await host.listen(*config.listen)
            node.dht.update_mode()  # AUTO decides from the addresses just bound
            await host.start(node.dht.run)
            if node.seeding is not None:
                await host.start(node.seeding.run)
            if node.providing is not None:
                await host.start(node.providing.run)
            if node.replicator is not None:
                await host.start(node.replicator.run)
            yield node
    finally:
        if store is not None:
            store.close()
        if seeds is not None:
            seeds.close()
        if guard is not None:
            guard.close()


def _feed_reputation(node: Node, guard: PeerGuard) -> None:
    """The protocols' reports of bad input lower the peers' scores."""
    node.dht.report = guard.report
    if node.sync is not None:
        node.sync.report = guard.report
        node.sync.throttled = guard.throttled


async def _note_gossip_scores(
    pubsub: Gossipsub, guard: PeerGuard, interval: float = 5.0, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Every ``interval`` seconds, gossip's score of each peer gossip has
    graylisted (its messages ignored already) counts in the peer's score:
    a peer gossip found sending invalid messages or flooding is
    disconnected, then blocked, as it keeps on."""
    task_status.started()
    threshold = pubsub.config.score_thresholds.graylist_threshold
    while True:
        await trio.sleep(interval)
        for peer in pubsub.peers:
            score = pubsub.score(peer)
            if score < threshold:
                guard.note_score(peer, "gossip", score)
