"""The peer routes: what ``guts peers list``, ``block`` and ``unblock`` ask
of the node.

``GET /v1/peers``
    the connected peers (id, direction, address, score, verdict), the
    active blocks (those set by hand first, then the newest; at most
    :data:`MAX_LISTED`, with ``blocks_total``), and the thresholds and
    counters of the node's :class:`~guts.reputation.PeerGuard`.
``POST /v1/peers/block`` ``{"peer"}`` or ``{"ip"}`` (an address or a
network in CIDR), ``"duration"?`` (seconds; none: until unblocked),
``"reason"?``
    blocks it, and disconnects the connected peers it covers; the answer
    names them, and the block it replaced if any.
``POST /v1/peers/unblock`` ``{"peer"}`` or ``{"ip"}``
    lifts the block (and forgets its offences); ``removed`` says whether
    there was one.

A block is answered as ``{"target", "kind": "peer" | "ip", "reason",
"since", "expires", "remaining_s", "offences", "manual"}``, times in
seconds since the epoch, ``expires`` and ``remaining_s`` ``null`` for a
block that lasts until lifted.
"""

from __future__ import annotations

import math
from typing import Any

from guts.control._api import ApiError, ControlApi
from guts.control._http import HttpRequest, HttpResponse
from guts.errors import InputError
from guts.host import Host
from guts.peer import PeerId
from guts.reputation import (
    Block,
    BlockListFull,
    BlockStoreError,
    BlockStoreFull,
    PeerGuard,
    Target,
    parse_target,
    target_text,
)

__all__ = ["add_peer_routes", "block_json"]

#: Blocks listed at most (a list of 100,000 would pass the answer's size
#: limit); ``blocks_total`` says how many there are.
MAX_LISTED = 1000
#: The longest block by duration, in seconds (ten years; longer is "until lifted").
MAX_DURATION = 10 * 365 * 86_400.0


def block_json(block: Block, now: float) -> dict[str, Any]:
    """A block as the routes answer it (module docstring)."""
    return {
        "target": target_text(block.target),
        "kind": "peer" if isinstance(block.target, PeerId) else "ip",
        "reason": block.reason,
        "since": round(block.since, 3),
        "expires": None if block.expires is None else round(block.expires, 3),
        "remaining_s": None if block.expires is None else max(0.0, round(block.expires - now, 1)),
        "offences": block.offences,
        "manual": block.manual,
    }


def _target(body: dict[str, Any]) -> Target:
    if ("peer" in body) == ("ip" in body):
        raise InputError("name either a peer ('peer') or an address or network ('ip')")
    key = "peer" if "peer" in body else "ip"
    text = body[key]
    if not isinstance(text, str) or not text or len(text) > 128:
        raise InputError(f"{key!r} is a peer id" if key == "peer" else "'ip' is an address or a network (CIDR)")
    target = parse_target(text)
    if key == "peer" and not isinstance(target, PeerId):
        raise InputError(f"{text!r} is not a peer id")
    if key == "ip" and isinstance(target, PeerId):
        raise InputError(f"{text!r} is not an address or a network (CIDR)")
    return target


def _duration(body: dict[str, Any]) -> float | None:
    value = body.get("duration")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError("'duration' is a positive number of seconds")
    if value > MAX_DURATION:
        raise InputError(f"'duration' is at most {MAX_DURATION:g} seconds; leave it out for a block until lifted")
    return float(value)


def _reason(body: dict[str, Any]) -> str:
    value = body.get("reason", "blocked by hand")
    if not isinstance(value, str) or len(value) > 200:
        raise InputError("'reason' is a text of at most 200 characters")
    return value or "blocked by hand"


def add_peer_routes(api: ControlApi, reputation: PeerGuard | None, host: Host) -> None:
    """Serve the peer routes (module docstring) of ``reputation`` on
    ``host``; without one (a node that keeps no scores) the list shows the
    connections and the block routes answer 409."""

    def need() -> PeerGuard:
        if reputation is None:
            raise ApiError(409, "unavailable", "this node keeps no scores or blocks")
        return reputation

    async def peers(request: HttpRequest) -> HttpResponse:
        guard = reputation
        now = guard.now if guard is not None else 0.0
        rows = []
        for conn in host.connections:
            row: dict[str, Any] = {
                "peer_id": str(conn.peer_id),
                "direction": conn.direction.value,
                "addr": str(conn.remote_addr),
            }
            if guard is not None:
                row["score"] = round(guard.reputation.score(conn.peer_id, now), 2)
                row["verdict"] = guard.reputation.verdict(conn.peer_id, now).value
            rows.append(row)
        body: dict[str, Any] = {"peers": rows}
        if guard is not None:
            config = guard.reputation.config
            blocks = guard.blocks()
            # By hand first, then the newest: what a person looks for.
            shown = [b for b in blocks if b.manual] + [b for b in reversed(blocks) if not b.manual]
            body["blocks"] = [block_json(b, now) for b in shown[:MAX_LISTED]]
            body["blocks_total"] = len(blocks)
            body["thresholds"] = {"throttle": config.throttle, "disconnect": config.disconnect, "block": config.block}
            body["status"] = guard.status()
        return HttpResponse(200, body)

    async def block(request: HttpRequest) -> HttpResponse:
        guard = need()
        body = request.json()
        target = _target(body)
        if target == host.peer_id:
            raise InputError("a node does not block itself")
        previous = guard.reputation.block_of(target)
        try:
            made, disconnected = await guard.block(target, duration=_duration(body), reason=_reason(body))
        except (BlockListFull, BlockStoreFull) as exc:
            raise ApiError(507, "block_list_full", str(exc)) from None
        except BlockStoreError as exc:
            raise ApiError(500, "block_store", str(exc)) from None
        now = guard.now
        active = previous is not None and previous.active(now)
        return HttpResponse(
            200,
            {
                "block": block_json(made, now),
                "previous": block_json(previous, now) if active and previous is not None else None,
                "disconnected": [str(p) for p in disconnected],
            },
        )

    async def unblock(request: HttpRequest) -> HttpResponse:
        guard = need()
        target = _target(request.json())
        try:
            lifted = await guard.unblock(target)
        except BlockStoreError as exc:
            raise ApiError(500, "block_store", str(exc)) from None
        now = guard.now
        was_active = lifted is not None and lifted.active(now)
        return HttpResponse(
            200,
            {
                "target": target_text(target),
                "removed": was_active,
                "block": block_json(lifted, now) if was_active and lifted is not None else None,
            },
        )

    api.route("GET", "/v1/peers", peers)
    api.route("POST", "/v1/peers/block", block)
    api.route("POST", "/v1/peers/unblock", unblock)
