"""The sync protocol, ``/guts/sync/1.0.0``: repositories between connected
nodes.

A node asks a peer for a repository's signed state (``GetRefs`` /
``Refs``), verifies it against what it holds, and fetches the objects the
accepted statements list through git's own protocol v2 pack negotiation
(``GetObjects``: one stateless upload-pack request per stream, the raw
response back). Only oids a verified statement lists are asked for and
served; nothing moves before it verifies.

- :mod:`guts.sync._codec`: the messages (``proto/sync.proto``), limits
  (:class:`SyncConfig`) and errors; pure.
- :mod:`guts.sync.upload_rules`: what a peer may ask of upload-pack; pure.
- :mod:`guts.sync.protocol`: the serving side (:class:`SyncService`).
- :mod:`guts.sync.fetch`: the fetching side (:func:`fetch`).
- :mod:`guts.sync.race`: the fetching side over several peers at once
  (:func:`fetch_first`: the first answer that verifies serves, failing
  over to the others).
"""

from guts.sync._codec import (
    SYNC_PROTOCOL,
    GetObjects,
    GetRefs,
    Objects,
    Refs,
    Refused,
    RefusedReason,
    SyncConfig,
    SyncError,
    SyncRefused,
    SyncStalled,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from guts.sync.fetch import SyncProgress, fetch
from guts.sync.protocol import SyncService
from guts.sync.race import (
    MAX_CANDIDATES,
    RACE_WIDTH,
    FetchProgressed,
    Fetched,
    NoPeerServed,
    PeerAsked,
    PeerFailed,
    PeerOutraced,
    RaceEvent,
    fetch_first,
)
from guts.sync.upload_rules import ADVERTISEMENT, UploadRequest, check_upload_request, filter_ls_refs

__all__ = [
    "ADVERTISEMENT",
    "MAX_CANDIDATES",
    "RACE_WIDTH",
    "SYNC_PROTOCOL",
    "FetchProgressed",
    "Fetched",
    "GetObjects",
    "GetRefs",
    "NoPeerServed",
    "Objects",
    "PeerAsked",
    "PeerFailed",
    "PeerOutraced",
    "RaceEvent",
    "Refs",
    "Refused",
    "RefusedReason",
    "SyncConfig",
    "SyncError",
    "SyncProgress",
    "SyncRefused",
    "SyncStalled",
    "SyncService",
    "UploadRequest",
    "check_upload_request",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "fetch",
    "fetch_first",
    "filter_ls_refs",
]
