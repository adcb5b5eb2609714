"""The DHT's control routes: ``POST /v1/dht/<operation>`` with a JSON body.

Each operation is a function of the DHT and the request body that returns
the JSON answer; the command line calls the same functions directly when it
runs a short-lived node of its own (``--bootstrap`` with no node running).
Keys are named as :mod:`guts.control.keys` says; a record key under
``/guts/`` names its owner (``/guts/<peer id>/<name>``), and a bare name
is the node's own (see :func:`_owned_key`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from guts.control._api import ControlApi, require
from guts.control._http import HttpRequest, HttpResponse
from guts.control.keys import dht_key, record_key
from guts.dht import Dht, LookupResult
from guts.errors import GutsError, InputError
from guts.dht import bucket_index, kad_key
from guts.dht.signed import NAMESPACE, guts_key, open_record
from guts.peer import PeerId
from guts.peerstore import PeerInfo

__all__ = ["OPERATIONS", "add_dht_routes"]

Operation = Callable[[Dht, dict[str, Any]], Awaitable[dict[str, Any]]]

#: Most providers one request may ask for.
MAX_COUNT = 1000


def _peer(info: PeerInfo, key: bytes | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"peer_id": str(info.peer_id), "addrs": [str(a) for a in info.addrs]}
    if key is not None:
        # Leading bits the peer shares with the key in the key space.
        index = bucket_index(kad_key(key), kad_key(info.peer_id.to_bytes()))
        out["common_prefix_bits"] = 256 if index is None else 255 - index
    return out


def _figures(result: LookupResult) -> dict[str, Any]:
    return {
        "queried": result.queried,
        "succeeded": result.succeeded,
        "failed": result.failed,
        "rounds": result.rounds,
        "seconds": round(result.seconds, 4),
        "timed_out": result.timed_out,
    }


async def find_peers(dht: Dht, body: dict[str, Any]) -> dict[str, Any]:
    text = require(body, "key")
    key = dht_key(text)
    result = await dht.find_closest_peers(key)
    return {
        "key": text,
        "key_hex": key.hex(),
        "peers": [_peer(p, key) for p in result.peers],
        **_figures(result),
    }


async def find_peer(dht: Dht, body: dict[str, Any]) -> dict[str, Any]:
    peer = PeerId.from_string(require(body, "peer_id"))
    return _peer(await dht.find_peer(peer))


async def provide(dht: Dht, body: dict[str, Any]) -> dict[str, Any]:
    text = require(body, "key")
    key = dht_key(text)
    result = await dht.provide(key)
    return {"key": text, "key_hex": key.hex(), "stored_at": [str(p) for p in result.stored_at], **_figures(result.lookup)}


async def find_providers(dht: Dht, body: dict[str, Any]) -> dict[str, Any]:
    text = require(body, "key")
    count = body.get("count", dht.config.k)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise InputError(f"'count' must be a whole number from 1 to {MAX_COUNT}")
    key = dht_key(text)
    providers = await dht.find_providers(key, count)
    return {"key": text, "key_hex": key.hex(), "providers": [_peer(p) for p in providers]}


def _owned_key(dht: Dht, text: str) -> bytes:
    """The record key ``text`` names: under ``/guts/``, ``OWNER/NAME`` (an
    owner's peer id, then a name) or a bare ``NAME`` (ours); another
    namespace as given (``/pk/...``).

    Raises:
        InputError: the key is empty, too long or malformed.
    """
    key = record_key(text)
    if not key.startswith(NAMESPACE):
        return key
    rest = key[len(NAMESPACE) :]
    owner_text, slash, name = rest.partition(b"/")
    if slash and name:
        try:
            return guts_key(PeerId.from_string(owner_text.decode("ascii")), name)
        except (UnicodeDecodeError, ValueError, GutsError):
            pass
    return guts_key(dht.peer_id, rest)


async def put(dht: Dht, body: dict[str, Any]) -> dict[str, Any]:
    """Sign (under ``/guts/``) and publish a value. The answer says where it
    was stored: ``stored`` counts the peers that took it, and
    ``stored_locally`` whether our own store did (a value our store refused
    is not republished); the command line fails when either is none."""
    key = _owned_key(dht, require(body, "key"))
    if "value_hex" in body:
        value = bytes.fromhex(require(body, "value_hex"))
    else:
        value = require(body, "value").encode()
    result = await dht.put_value(key, value)
    return {
        "key": key.decode(),
        "seq": result.seq,
        "stored": len(result.stored_at),
        "stored_locally": result.stored_locally,
        "stored_at": [str(p) for p in result.stored_at],
        **_figures(result.lookup),
    }


async def get(dht: Dht, body: dict[str, Any]) -> dict[str, Any]:
    key = _owned_key(dht, require(body, "key"))
    record = await dht.get_record(key)
    out: dict[str, Any] = {"key": key.decode()}
    value = record
    if key.startswith(NAMESPACE):
        signed = open_record(key, record, len(record))
        value = signed.value
        out.update(owner=str(signed.owner), seq=signed.seq)
    try:
        text: str | None = value.decode()
    except UnicodeDecodeError:
        text = None
    return {**out, "value": text, "value_hex": value.hex()}


OPERATIONS: dict[str, Operation] = {
    "find-peers": find_peers,
    "find-peer": find_peer,
    "provide": provide,
    "find-providers": find_providers,
    "put": put,
    "get": get,
}


def add_dht_routes(api: ControlApi, dht: Dht) -> None:
    """Serve every operation at ``POST /v1/dht/<name>``."""
    for name, operation in OPERATIONS.items():

        async def handler(request: HttpRequest, operation: Operation = operation) -> HttpResponse:
            return HttpResponse(200, await operation(dht, request.json()))

        api.route("POST", f"/v1/dht/{name}", handler)
