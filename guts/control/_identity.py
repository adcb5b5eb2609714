"""The identity control routes: a repository's identity and its pending
revisions (:mod:`guts.repo.proposals`).

- ``GET /v1/repo/identity?rid=RID``: the revision in effect (its id and
  number), the chain's length, the delegates and threshold, and each
  pending proposal: its id, what it changes, who signed it, and how many
  signatures of the threshold it has.
- ``POST /v1/repo/identity/propose``: ``{"rid", "name"?, "description"?,
  "default_branch"?, "delegates"?, "threshold"?}``, ``delegates`` either
  the whole new list of peer ids or ``{"add": [...], "remove": [...]}``.
  The node signs the proposal with its key (it must be a delegate); one
  that meets the threshold at once (threshold 1) takes effect at once.
- ``POST /v1/repo/identity/accept``: ``{"rid", "proposal"}``, the
  proposal's id or a unique prefix: the node adds its signature.

Both answer ``{"id", "status", "changes", "signed", "proposal",
"identity"}``: ``status`` is ``pending`` or ``in_effect``, ``signed``
whether this call added a signature, ``proposal`` the pending proposal
(``null`` once in effect), ``identity`` what ``GET`` answers afterwards.
A person's mistake (no such field value, not a delegate, nothing changes)
answers 400 ``bad_request``; a repository or proposal this node does not
hold, 404 ``not_found``. After a call that changed anything, ``changed``
(when given) is called with the RID, so the network can be told.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guts.control._api import ApiError, ControlApi, require
from guts.control._http import HttpRequest, HttpResponse
from guts.crypto import KeyPair
from guts.errors import GutsError, InputError, InvalidIdentity
from guts.peer import PeerId
from guts.repo.proposals import ProposalNotFound, changes
from guts.repo.rid import Rid
from guts.repo.state import Repositories, RepoState
from guts.repo.storage import RepositoryNotFound

__all__ = ["add_identity_routes", "identity_json"]

_FIELDS = ("name", "description", "default_branch")


def identity_json(state: RepoState) -> dict[str, Any]:
    """What ``GET /v1/repo/identity`` answers about ``state``."""
    document = state.document
    pending = []
    for pid in sorted(state.proposals):
        revision = state.proposals[pid].revision
        pending.append(
            {
                "id": pid,
                "revision": state.identity.length + 1,
                "changes": changes(document, revision.document),
                "signers": [str(signature.key.peer_id) for signature in revision.signatures],
                "signatures": len(revision.signatures),
                "threshold": document.threshold,
            }
        )
    return {
        "rid": str(state.rid),
        "revision": {"id": document.digest.hex(), "number": state.identity.length},
        "revisions": state.identity.length,
        "name": document.name,
        "description": document.description,
        "default_branch": document.default_branch,
        "delegates": [str(peer) for peer in document.delegate_ids],
        "threshold": document.threshold,
        "proposals": pending,
    }


def _error(exc: GutsError) -> ApiError:
    if isinstance(exc, (RepositoryNotFound, ProposalNotFound)):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, (InputError, InvalidIdentity)):
        return ApiError(400, "bad_request", str(exc))
    return ApiError(500, "internal", f"repository storage: {exc}")


def _rid(text: str) -> str:
    return str(Rid.parse(text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text))


def _peers(value: Any, what: str) -> list[PeerId]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{what} must be a list of peer ids")
    return [PeerId.from_string(item) for item in value]


def _delegates(state: RepoState, value: Any) -> list[PeerId] | None:
    """The new delegates ``value`` asks for: a whole list, or ``{"add",
    "remove"}`` applied to the current ones."""
    if value is None:
        return None
    if isinstance(value, list):
        return _peers(value, "'delegates'")
    if not isinstance(value, dict) or set(value) - {"add", "remove"}:
        raise InputError("'delegates' is a list of peer ids or {\"add\": [...], \"remove\": [...]}")
    current = list(state.document.delegate_ids)
    for peer in _peers(value.get("remove", []), "'delegates.remove'"):
        if peer not in current:
            raise InputError(f"{peer} is not a delegate of {state.rid}")
        current.remove(peer)
    for peer in _peers(value.get("add", []), "'delegates.add'"):
        if peer in current:
            raise InputError(f"{peer} is a delegate of {state.rid} already")
        current.append(peer)
    return current


def _answer(before: RepoState, after: RepoState, pid: str) -> dict[str, Any]:
    in_effect = after.document.digest.hex() == pid
    pending = after.proposals.get(pid)
    if in_effect:
        changed = changes(before.document, after.document) if after.identity.length > before.identity.length else {}
    else:
        changed = {} if pending is None else changes(after.document, pending.revision.document)
    info = identity_json(after)
    return {
        "id": pid,
        "status": "in_effect" if in_effect else "pending",
        "changes": changed,
        "signed": after != before,
        "proposal": next((p for p in info["proposals"] if p["id"] == pid), None),
        "identity": info,
    }


def add_identity_routes(
    api: ControlApi,
    repos: Repositories | None,
    keypair: KeyPair,
    changed: Callable[[str], None] | None = None,
) -> None:
    """Serve the identity routes of ``repos``; ``keypair`` (the node's)
    signs what ``propose`` and ``accept`` sign; ``changed`` is called with
    the RID after either changed anything."""

    def held() -> Repositories:
        if repos is None:
            raise ApiError(409, "unavailable", "this node holds no repositories (it persists nothing)")
        return repos

    def state_of(rid: str) -> RepoState:
        try:
            return held().show(_rid(rid))
        except GutsError as exc:
            raise _error(exc) from None

    def done(before: RepoState, after: RepoState, pid: str) -> HttpResponse:
        if after != before and changed is not None:
            changed(str(after.rid))
        return HttpResponse(200, _answer(before, after, pid))

    async def show(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, identity_json(state_of(require(request.query, "rid"))))

    async def propose(request: HttpRequest) -> HttpResponse:
        body = request.json()
        before = state_of(require(body, "rid"))
        fields: dict[str, Any] = {}
        for name in _FIELDS:
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"{name!r} must be text")
            fields[name] = value
        threshold = body.get("threshold")
        if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool)):
            raise InputError("'threshold' must be a number")
        try:
            after, pid = await held().propose(
                before.rid,
                keypair,
                delegates=_delegates(before, body.get("delegates")),
                threshold=threshold,
                **fields,
            )
        except GutsError as exc:
            raise _error(exc) from None
        return done(before, after, pid)

    async def accept(request: HttpRequest) -> HttpResponse:
        body = request.json()
        before = state_of(require(body, "rid"))
        try:
            after, pid = await held().accept(before.rid, keypair, require(body, "proposal"))
        except GutsError as exc:
            raise _error(exc) from None
        return done(before, after, pid)

    api.route("GET", "/v1/repo/identity", show)
    api.route("POST", "/v1/repo/identity/propose", propose)
    api.route("POST", "/v1/repo/identity/accept", accept)
