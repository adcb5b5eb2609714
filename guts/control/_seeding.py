"""The seeding routes: what ``guts repo seed``, ``unseed``, ``seeds``,
``block`` and ``unblock`` ask of the node.

``POST /v1/repo/seed`` ``{"rid", "scope"?: "delegates" | "all", "fetch"?: true}``
    seeds a repository (or changes its scope). One the node does not hold
    yet is fetched in the background (from the DHT's seeds, and from
    whoever announces it) unless ``fetch`` is false: ``guts repo seed``
    fetches in the foreground instead, through ``POST /v1/repo/sync``, and
    hands it to the background only when that failed.
``POST /v1/repo/unseed`` ``{"rid"}``
    stops seeding it: it is no longer followed, fetched or provided in the
    DHT; its storage stays (a local ``git`` still reads it) and it is not
    seeded again by being held or under policy ``all`` until seeded.
``POST /v1/repo/block`` / ``unblock`` ``{"rid"}`` or ``{"peer"}``
    a repository never seeded; a peer whose namespaces are never
    replicated. A block of the configuration is not lifted here.
``GET /v1/repo/seeds``
    the choices, the policy, its limits and what it refused.

Every answer says what changed, so a script can tell a no-op.
"""

from __future__ import annotations

from typing import Any

from guts.control._api import ApiError, ControlApi, require
from guts.control._http import HttpRequest, HttpResponse
from guts.errors import GutsError, InputError
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.replicate.policy import SeedScope
from guts.replicate.replicator import Replicator
from guts.replicate.seeding import Seeding
from guts.replicate.seeds import SeedStoreError, SeedStoreFull

__all__ = ["add_seeding_routes"]

_SCOPES = {scope.value: scope for scope in SeedScope}


def _rid(text: Any) -> Rid:
    if not isinstance(text, str):
        raise InputError("'rid' is a repository id")
    return Rid.parse(text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text)


def _scope(body: dict[str, Any]) -> SeedScope:
    value = body.get("scope", SeedScope.DELEGATES.value)
    if value not in _SCOPES:
        raise InputError(f"'scope' is one of {', '.join(_SCOPES)}, not {value!r}")
    return _SCOPES[value]


def _target(body: dict[str, Any]) -> Rid | PeerId:
    if ("rid" in body) == ("peer" in body):
        raise InputError("name either a repository ('rid') or a peer ('peer')")
    if "rid" in body:
        return _rid(body["rid"])
    peer = body["peer"]
    if not isinstance(peer, str):
        raise InputError("'peer' is a peer id")
    return PeerId.from_string(peer)


def add_seeding_routes(api: ControlApi, seeding: Seeding | None, replicator: Replicator | None) -> None:
    """Serve the seeding routes of ``seeding`` (module docstring);
    ``replicator`` fetches a repository seeded and not held."""

    def need() -> Seeding:
        if seeding is None:
            raise ApiError(409, "unavailable", "this node holds no repositories (it persists nothing)")
        return seeding

    def held(rid: Rid) -> bool:
        try:
            need().repos.show(rid)
        except (GutsError, ValueError):
            return False
        return True

    async def change(call: Any) -> Any:
        try:
            return await call
        except SeedStoreFull as exc:
            raise ApiError(507, "seed_store_full", str(exc)) from None
        except SeedStoreError as exc:
            raise ApiError(500, "seed_store", str(exc)) from None

    async def seed(request: HttpRequest) -> HttpResponse:
        chosen = need()
        body = request.json()
        rid = _rid(require(body, "rid"))
        scope = _scope(body)
        fetch = body.get("fetch", True)
        if not isinstance(fetch, bool):
            raise InputError("'fetch' must be true or false")
        if rid in chosen.policy.seeds.blocked_rids:
            raise ApiError(409, "blocked", f"{rid} is blocked: `guts repo unblock {rid}` first")
        previous = await change(chosen.seed(rid, scope))
        holds = held(rid)
        background = fetch and not holds and replicator is not None
        if background:
            assert replicator is not None
            replicator.take_on_later(rid)
        return HttpResponse(
            200,
            {
                "rid": str(rid),
                "scope": scope.value,
                "previous_scope": None if previous is None else previous.value,
                "held": holds,
                "fetching": background,
            },
        )

    async def unseed(request: HttpRequest) -> HttpResponse:
        chosen = need()
        rid = _rid(require(request.json(), "rid"))
        was = await change(chosen.unseed(rid))
        return HttpResponse(200, {"rid": str(rid), "was_seeded": was, "held": held(rid)})

    async def block(request: HttpRequest) -> HttpResponse:
        chosen = need()
        target = _target(request.json())
        if isinstance(target, Rid):
            added = await change(chosen.block_rid(target))
            return HttpResponse(200, {"rid": str(target), "added": added})
        added = await change(chosen.block_peer(target))
        return HttpResponse(200, {"peer": str(target), "added": added})

    async def unblock(request: HttpRequest) -> HttpResponse:
        chosen = need()
        target = _target(request.json())
        if isinstance(target, Rid):
            removed = await change(chosen.unblock_rid(target))
            configured = target in chosen.configured_rids
            return HttpResponse(200, {"rid": str(target), "removed": removed, "still_blocked_by_config": configured})
        removed = await change(chosen.unblock_peer(target))
        configured = target in chosen.configured_peers
        return HttpResponse(200, {"peer": str(target), "removed": removed, "still_blocked_by_config": configured})

    async def seeds(request: HttpRequest) -> HttpResponse:
        chosen = need()
        running = replicator.running if replicator is not None else 0
        following = replicator.following if replicator is not None else []
        return HttpResponse(
            200,
            {
                **chosen.choices_json(),
                "status": chosen.status(running),
                "seeding": [
                    {"rid": str(rid), "held": held(rid), "scope": chosen.scope(rid).value, "following": rid in following}
                    for rid in chosen.seeded()
                ],
            },
        )

    api.route("POST", "/v1/repo/seed", seed)
    api.route("POST", "/v1/repo/unseed", unseed)
    api.route("POST", "/v1/repo/block", block)
    api.route("POST", "/v1/repo/unblock", unblock)
    api.route("GET", "/v1/repo/seeds", seeds)
