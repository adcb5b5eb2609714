"""Configuration of the DHT."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from guts.dht._addrs import AddrScope
from guts.dht._codec import Limits
from guts.dht.records import RecordLimits, Validator
from guts.multiaddr import Multiaddr

__all__ = ["DEFAULT_PROTOCOL", "IPFS_PROTOCOL", "DhtConfig", "DhtMode"]

#: A Guts network keeps its own DHT, apart from IPFS's.
DEFAULT_PROTOCOL = "/guts/kad/1.0.0"
#: The public IPFS DHT's protocol, for conformance runs.
IPFS_PROTOCOL = "/ipfs/kad/1.0.0"


class DhtMode(Enum):
    """Whether a node serves the DHT.

    * ``SERVER``: answers requests and advertises the protocol (in
      identify), so others add it to their routing tables.
    * ``CLIENT``: only asks; it does not register the protocol, so it is
      never added to others' tables (for nodes others cannot dial).
    * ``AUTO``: ``SERVER`` when the node announces a public address,
      ``CLIENT`` otherwise; decided again at every refresh.
    """

    CLIENT = "client"
    SERVER = "server"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class DhtConfig:
    """Settings of one DHT node.

    Attributes:
        protocol: the protocol id (``/guts/kad/1.0.0``; ``/ipfs/kad/1.0.0``
            to join js/go kad-dht networks).
        mode: client, server or auto (see :class:`DhtMode`).
        k: bucket size and replication (spec: 20).
        alpha: requests in flight per lookup (js and newer spec revisions: 10).
        request_timeout: seconds for one request, dial included.
        peer_timeout: the longest a lookup waits for one peer before its
            slot and the termination rule move on (an answer that still comes
            within ``request_timeout`` counts); a lookup waits less once
            others answered fast (see :mod:`guts.dht.lookup`).
        query_timeout: seconds for a whole lookup.
        bootstrap: peers to join through (multiaddrs ending in ``/p2p/<id>``).
        refresh_interval: seconds between self-lookups and refreshes of
            stale buckets (spec: 5 minutes).
        cleanup_interval: seconds between expiry sweeps and republish checks.
        flush_interval: seconds between writes of changes to the store.
        addr_scope: addresses kept and handed out; ``None`` decides from our
            own addresses (see :mod:`guts.dht._addrs`).
        records: record lifetimes and the stores' bounds, per peer and in
            total, in records and bytes (see :class:`RecordLimits`: about
            32 MiB of values and 16 MiB of provider records at most).
        codec: message bounds.
        validators: value validators by namespace; ``None`` for ``/pk/`` and
            ``/guts/`` (records signed by the owner their key names, see
            :mod:`guts.dht.signed`).
        write_rate, write_burst: PUT_VALUE + ADD_PROVIDER per peer per
            second, and the burst allowed.
        get_quorum: values to collect before ``get_value`` stops early
            (the local copy counts as one).
        max_requests_per_stream: requests served on one inbound stream.
        max_streams_per_peer: inbound DHT streams served at once per peer.
        stream_idle_timeout: seconds an inbound stream may sit between requests.
        lookup_max_peers: candidates a lookup remembers.
        max_dialed_connections: connections the DHT opened itself and keeps;
            past it, the least recently used one with no stream open (of any
            protocol) is closed, so lookups do not fill the host's connection
            limit. ``None`` keeps them all.
    """

    protocol: str = DEFAULT_PROTOCOL
    mode: DhtMode = DhtMode.AUTO
    k: int = 20
    alpha: int = 10
    request_timeout: float = 10.0
    peer_timeout: float = 3.0
    query_timeout: float = 60.0
    bootstrap: tuple[Multiaddr, ...] = ()
    refresh_interval: float = 300.0
    cleanup_interval: float = 3600.0
    flush_interval: float = 5.0
    addr_scope: AddrScope | None = None
    records: RecordLimits = field(default_factory=RecordLimits)
    codec: Limits = field(default_factory=Limits)
    validators: Mapping[str, Validator] | None = None
    write_rate: float = 20.0
    write_burst: float = 200.0
    get_quorum: int = 3
    max_requests_per_stream: int = 256
    max_streams_per_peer: int = 16
    stream_idle_timeout: float = 10.0
    lookup_max_peers: int = 400
    max_dialed_connections: int | None = 32
