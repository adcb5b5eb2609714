"""The repositories' control routes: ``POST /v1/repo/init``,
``GET /v1/repo/list``, ``GET /v1/repo/show?rid=RID`` and
``POST /v1/repo/sync`` (fetch a repository from a peer now).

What a person sent that Guts refuses (a path that is no git repository, a
threshold above the delegates, a RID that is none) answers 400
``bad_request``; a repository this node does not hold, 404 ``not_found``;
a failure of the storage itself, 500 ``internal`` with git's reason. A
sync that no peer completed answers 502 ``sync_failed`` with each peer's
reason; one with no peer to ask, 409 ``no_peers``.
"""

from __future__ import annotations

import math
from typing import Any

from guts.control._api import ApiError, ControlApi, require
from guts.control._http import HttpRequest, HttpResponse
from guts.crypto import KeyPair
from guts.errors import GutsError, InputError
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.state import Repositories, RepoState
from guts.repo.storage import PackRejected, RepositoryExists, RepositoryNotFound
from guts.sync import fetch

__all__ = ["add_repo_routes", "state_json", "summary_json"]


def summary_json(state: RepoState) -> dict[str, Any]:
    """One line of ``GET /v1/repo/list``."""
    document = state.document
    return {
        "rid": str(state.rid),
        "url": state.rid.git_url,
        "name": document.name,
        "default_branch": document.default_branch,
        "delegates": len(document.delegates),
        "threshold": document.threshold,
        "refs": len(state.canonical.refs),
        "namespaces": len(state.namespaces),
    }


def state_json(state: RepoState) -> dict[str, Any]:
    """What ``GET /v1/repo/show`` answers about a repository."""
    document = state.document
    delegates = set(document.delegate_ids)
    return {
        "rid": str(state.rid),
        "url": state.rid.git_url,
        "name": document.name,
        "description": document.description,
        "default_branch": document.default_branch,
        "threshold": document.threshold,
        "revisions": state.identity.length,
        "delegates": [
            {"peer_id": str(status.peer), "seq": status.seq, "agrees": status.agrees}
            for status in state.canonical.delegates
        ],
        "refs": dict(state.canonical.refs),
        "namespaces": [
            {
                "peer_id": str(peer),
                "delegate": peer in delegates,
                "seq": ns.statement.seq,
                "refs": len(ns.statement.refs),
                "statement_id": ns.statement.id.hex(),
            }
            for peer, ns in sorted(state.namespaces.items(), key=lambda item: str(item[0]))
        ],
        "divergences": [
            {
                "ref": divergence.ref,
                "kept": divergence.kept,
                "candidates": [
                    {"oid": candidate.oid, "signers": [str(peer) for peer in candidate.signers]}
                    for candidate in divergence.candidates
                ],
            }
            for divergence in state.canonical.divergences
        ],
        "refused": [
            {"peer_id": str(peer), "reason": why}
            for peer, (_, why) in sorted(state.refused.items(), key=lambda item: str(item[0]))
        ],
    }


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise InputError(f"{name!r} must be a {kind.__name__}")
    return value


def _repos(repos: Repositories | None) -> Repositories:
    if repos is None:
        raise ApiError(409, "unavailable", "this node holds no repositories (it persists nothing)")
    return repos


def _storage_error(exc: GutsError) -> ApiError:
    if isinstance(exc, RepositoryNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, (RepositoryExists, PackRejected, InputError)):
        return ApiError(400, "bad_request", str(exc))
    return ApiError(500, "internal", f"repository storage: {exc}")


def _targets(host: Host, text: str | None) -> list[PeerId | Multiaddr]:
    """The peers a sync asks, in turn: the one given (a multiaddr ending in
    ``/p2p/<peer id>``, or a connected peer's id), else every connected peer."""
    if text is not None:
        return [Multiaddr.parse(text) if text.startswith("/") else PeerId.from_string(text)]
    peers = sorted({connection.peer_id for connection in host.connections}, key=str)
    if not peers:
        raise ApiError(409, "no_peers", "not connected to any peer: name one (guts repo sync RID --from MULTIADDR)")
    return list(peers)


def add_repo_routes(
    api: ControlApi, repos: Repositories | None, keypair: KeyPair, host: Host | None = None
) -> None:
    """Serve the repository routes of ``repos``; ``keypair`` (the node's)
    signs what ``init`` makes; ``host`` reaches the peers a sync fetches
    from (without it, ``sync`` is unavailable)."""

    async def init(request: HttpRequest) -> HttpResponse:
        held = _repos(repos)
        body = request.json()
        delegates = _optional(body, "delegates", list) or []
        if not all(isinstance(peer, str) for peer in delegates):
            raise InputError("'delegates' must be a list of peer ids")
        threshold = _optional(body, "threshold", int)
        try:
            state = await held.init(
                require(body, "path"),
                keypair=keypair,
                name=_optional(body, "name", str),
                description=_optional(body, "description", str) or "",
                default_branch=_optional(body, "default_branch", str),
                delegates=delegates,
                threshold=1 if threshold is None else threshold,
            )
        except GutsError as exc:
            raise _storage_error(exc) from None
        return HttpResponse(200, state_json(state))

    async def list_(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, {"repositories": [summary_json(state) for state in _repos(repos).list()]})

    async def show(request: HttpRequest) -> HttpResponse:
        held = _repos(repos)
        try:
            state = held.show(require(request.query, "rid"))
        except GutsError as exc:
            raise _storage_error(exc) from None
        return HttpResponse(200, state_json(state))

    async def sync(request: HttpRequest) -> HttpResponse:
        held = _repos(repos)
        if host is None:
            raise ApiError(409, "unavailable", "this node has no host to sync through")
        body = request.json()
        text = require(body, "rid")
        rid = str(Rid.parse(text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text))
        targets = _targets(host, _optional(body, "peer", str))
        before = next((state for state in held.list() if str(state.rid) == rid), None)
        failures = []
        for target in targets:
            try:
                state = await fetch(host, held, target, rid)
            except GutsError as exc:
                failures.append({"peer": str(target), "error": str(exc)})
                continue
            answer = {"peer": str(target), "changed": state != before, "failures": failures}
            return HttpResponse(200, {**answer, "repository": state_json(state)})
        reasons = "; ".join(f"{failure['peer']}: {failure['error']}" for failure in failures)
        raise ApiError(502, "sync_failed", f"no peer completed the sync of {rid}: {reasons}")

    # An import or a sync takes as long as the history is large; git runs
    # under the storage's own per-command and per-pack deadlines, a sync
    # under its idle timeout and overall deadline.
    api.route("POST", "/v1/repo/init", init, timeout=math.inf)
    api.route("POST", "/v1/repo/sync", sync, timeout=math.inf)
    api.route("GET", "/v1/repo/list", list_)
    api.route("GET", "/v1/repo/show", show)
