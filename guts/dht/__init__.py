"""The Kademlia DHT (libp2p/specs kad-dht): peer routing, provider records
and values, on the host like any other protocol.

Usage::

    dht = Dht(host, DhtConfig(mode=DhtMode.SERVER, bootstrap=(addr,)), DhtStore.in_home(home))
    await nursery.start(dht.run)
    result = await dht.find_closest_peers(key)
    info = await dht.find_peer(peer_id)
    await dht.provide(multihash)
    providers = await dht.find_providers(multihash)
    await dht.put_value(guts_key(dht.peer_id, b"name"), value)  # signed with the host's key
    value = await dht.get_value(guts_key(owner, b"name"))

Values under ``/guts/<owner peer id>/<name>`` are records their owner
signed, with a sequence number (:mod:`guts.dht.signed`); the stores are
bounded per peer and in total (:class:`RecordLimits`, :mod:`guts.dht.quota`).

``kad_key`` and ``bucket_index`` place keys in the key space, for callers
that show where a peer stands relative to a key.
"""

from guts.dht._addrs import AddrScope
from guts.dht._codec import ConnectionType, KadMessage, KadPeer, Limits, MessageType, Record, decode_message, encode_message
from guts.dht._config import DEFAULT_PROTOCOL, IPFS_PROTOCOL, DhtConfig, DhtMode
from guts.dht._client import RequestFailed
from guts.dht._driver import LookupResult
from guts.dht._key import KEY_BITS, bucket_index, kad_key
from guts.dht._store import DhtStore
from guts.dht.lookup import Lookup, LookupConfig, LookupStats, PeerState
from guts.dht.protocol import Dht, PublishResult
from guts.dht.records import (
    GutsValidator,
    ProviderRecord,
    ProviderStore,
    PublicKeyValidator,
    PutResult,
    RecordLimits,
    StoredValue,
    Validator,
    ValueStore,
)
from guts.dht.routing_table import AddOutcome, AddResult, RoutingTable

__all__ = [
    "AddOutcome",
    "AddResult",
    "AddrScope",
    "ConnectionType",
    "DEFAULT_PROTOCOL",
    "Dht",
    "DhtConfig",
    "DhtMode",
    "DhtStore",
    "GutsValidator",
    "IPFS_PROTOCOL",
    "KEY_BITS",
    "KadMessage",
    "KadPeer",
    "Limits",
    "Lookup",
    "LookupConfig",
    "LookupResult",
    "LookupStats",
    "MessageType",
    "PeerState",
    "ProviderRecord",
    "ProviderStore",
    "PublicKeyValidator",
    "PublishResult",
    "PutResult",
    "Record",
    "RecordLimits",
    "RequestFailed",
    "RoutingTable",
    "StoredValue",
    "Validator",
    "ValueStore",
    "bucket_index",
    "decode_message",
    "encode_message",
    "kad_key",
]
