"""The repositories' control routes: ``POST /v1/repo/init``,
``GET /v1/repo/list``, ``GET /v1/repo/show?rid=RID`` and
``POST /v1/repo/sync`` (fetch a repository from a peer now).

What a person sent that Guts refuses (a path that is no git repository, a
threshold above the delegates, a RID that is none) answers 400
``bad_request``; a repository this node does not hold, 404 ``not_found``;
a failure of the storage itself, 500 ``internal`` with git's reason. A
sync that no peer completed answers 502 ``sync_failed`` with each peer's
reason; one with no peer to ask, 409 ``no_peers``. A sync with
``"progress": true`` answers a stream of JSON lines instead
(:mod:`guts.control._repo_sync`): the peer asked, its progress, each
failure, and last the answer (``done``) or the error (``error``).

git's routes, for ``git-remote-guts`` (:mod:`guts._cli.remote`):

- ``GET /v1/repo/refs?rid=RID[&for_push=1]``: what the helper's ``list``
  shows. Without ``for_push``, the canonical refs; with it, this node's own
  namespace (its latest signed statement), because that is what a push
  changes; with ``all``, every ref the verified state implies (the
  canonical refs, each namespace's refs and signed refs chain, the
  identity chain: what ``ls-refs`` lists). Each with ``HEAD``'s branch,
  the object format, and ``tips``:
  every oid the node's signed refs name, which a pusher leaves out of its
  pack (a contributor's first push sends its new commits, not the history).
- ``GET /v1/repo/upload-pack?rid=RID``: the protocol v2 capability
  advertisement of what the node serves
  (:data:`~guts.sync.upload_rules.ADVERTISEMENT`), raw, as smart HTTP's
  ``info/refs`` gives it; 404 for a repository the node does not hold.
- ``POST /v1/repo/upload-pack?rid=RID``: one protocol v2 stateless request
  (at most :data:`MAX_UPLOAD_REQUEST` bytes), checked by
  :func:`~guts.sync.upload_rules.check_upload_request` against the
  verified state (a ``want`` must be an oid a verified statement or the
  canonical refs name), answered with ``git upload-pack``'s raw response,
  streamed; an ``ls-refs`` answer keeps only the refs the verified state
  implies (:func:`~guts.sync.upload_rules.filter_ls_refs`). A response cut midway ends the connection without HTTP's
  end, so the helper never gives git a short response as a whole one.
- ``GET /v1/repo/pack-files?rid=RID``: the storage repository's packs
  (absolute paths of each ``.pack`` and ``.idx``, and the pack's bytes)
  after its loose objects are packed (:func:`~guts.repo.packfiles.pack_files`):
  a clone on this machine hard-links or copies them instead of
  negotiating and indexing a pack (the control socket is the node
  owner's only, so the files are theirs to read).
- ``POST /v1/repo/push?rid=RID``: one JSON line (the updates, at most
  :data:`MAX_PUSH_HEADER` bytes), then a thin pack (at most the storage's
  pack limit), streamed into a quarantine. Each ref is judged with git's
  rules (:func:`~guts.repo.push_rules.judge_update`) against this node's
  namespace, what is accepted is checked connected, migrates, and is
  signed as the namespace's next statement
  (:meth:`~guts.repo.state.Repositories.publish`): the canonical refs
  follow when the delegates' statements agree (at once for a delegate of
  a threshold-1 repository). The answer names each ref's result.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection
from typing import Any

import trio

from guts.control._api import ApiError, ControlApi, require
from guts.control._http import BodyLimit, HttpRequest, HttpResponse, JsonLines, RawStream
from guts.control._identity import add_identity_routes
from guts.control._replicas import add_replicas_routes
from guts.control._repo_sync import event_lines, sync_answer, sync_events
from guts.crypto import KeyPair
from guts.dht import Dht
from guts.errors import DecodeError, GutsError, InputError
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.helper_commands import PushSpec
from guts.repo.packfiles import pack_files
from guts.repo.sigrefs import PUBLISHED_PREFIXES
from guts.repo.push_rules import PushResult, RefRejected, RefUnchanged, RefUpdated, judge_update
from guts.repo.rid import Rid
from guts.repo.state import Repositories, RepoState
from guts.replicate.providing import RepoProvider, find_seeds
from guts.replicate.replicator import Replicator
from guts.repo.storage import NotConnected, PackRejected, Quarantine, RepositoryExists, RepositoryNotFound
from guts.sync import ADVERTISEMENT, SyncConfig, check_upload_request, filter_ls_refs

__all__ = ["add_repo_routes", "state_json", "summary_json"]

#: Largest upload-pack request: git repeats every common ``have`` in each
#: round of a negotiation, so a long one grows (the helper's own bound).
MAX_UPLOAD_REQUEST = 32 * 1024 * 1024
#: Largest JSON line before a pushed pack (a ``--mirror`` push names
#: every ref).
MAX_PUSH_HEADER = 16 * 1024 * 1024
_CHUNK = 64 * 1024


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


def _targets(host: Host, text: str | None, *, dht: bool) -> list[PeerId | Multiaddr]:
    """The peers a sync asks first, in turn: the one given (a multiaddr
    ending in ``/p2p/<peer id>``, or a connected peer's id), else every
    connected peer (the DHT's seeds follow those, when there is a DHT)."""
    if text is not None:
        return [Multiaddr.parse(text) if text.startswith("/") else PeerId.from_string(text)]
    peers = sorted({connection.peer_id for connection in host.connections}, key=str)
    if not peers and not dht:
        raise ApiError(
            409, "no_peers", "not connected to any peer that could have it: name one with --from MULTIADDR"
        )
    return list(peers)


async def _seeds(host: Host, dht: Dht, rid: str, tried: Collection[PeerId]) -> list[PeerId]:
    return await find_seeds(host, dht, rid, exclude=tried)


async def _noting(events: AsyncIterator[dict[str, Any]], done: Callable[[], None]) -> AsyncIterator[dict[str, Any]]:
    """``events``, calling ``done`` once a sync's ``done`` event passed."""
    async for event in events:
        if event.get("event") == "done":
            done()
        yield event


def _rid(text: str) -> str:
    """A RID, given bare or as its ``guts://`` URL."""
    return str(Rid.parse(text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text))


def _signed_oids(state: RepoState) -> set[str]:
    """What a local git may fetch: every oid a verified statement lists,
    each namespace's sigrefs commit, and the canonical refs."""
    signed = {oid for ns in state.namespaces.values() for _, oid in ns.statement.refs}
    signed.update(ns.commit for ns in state.namespaces.values())
    signed.update(oid for _, oid in state.canonical.refs)
    return signed


async def _push_header(chunks: AsyncIterator[bytes]) -> tuple[dict[str, Any], bytes]:
    """The JSON line before a pushed pack, and the pack bytes read with it."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        end = data.find(b"\n")
        if end >= 0:
            header = json.loads(bytes(data[:end]))
            if not isinstance(header, dict):
                raise InputError("a push begins with a JSON object")
            return header, bytes(data[end + 1 :])
        if len(data) > MAX_PUSH_HEADER:
            raise InputError(f"a push header over {MAX_PUSH_HEADER} bytes")
    raise InputError("the push ended before its header")


async def _rest(first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in chunks:
        yield chunk


def _specs(header: dict[str, Any]) -> list[tuple[PushSpec, str | None, str | None]]:
    """The pushed updates: each as (spec, new oid or None, lease or None)."""
    updates = header.get("updates")
    if not isinstance(updates, list) or not updates:
        raise InputError("'updates' must be a non-empty list")
    out = []
    seen = set()
    for update in updates:
        if not isinstance(update, dict):
            raise InputError("each update is an object")
        dst, new, lease = update.get("dst"), update.get("new"), update.get("lease")
        if not isinstance(dst, str) or dst in seen:
            raise InputError("each update names its 'dst' ref, once")
        seen.add(dst)
        for value in (new, lease):
            if value is not None and (not isinstance(value, str) or len(value) != 40):
                raise InputError(f"{dst}: an oid is 40 hex digits")
        out.append((PushSpec(new, dst, bool(update.get("force"))), new, lease))
    return out


async def _relation(quarantine: Quarantine, current: str, new: str) -> tuple[bool, bool]:
    """(both peel to commits, ``current`` is an ancestor of ``new``), asked
    with the quarantined objects in view."""
    try:
        async with quarantine.git(["rev-list", "--max-count=1", current, "--not", new], timeout=600) as git:
            await git.close_stdin()
            out = await git.read_stdout(4096)
    except PackRejected:
        return False, False
    return True, not out.strip()


def _result_json(result: PushResult) -> dict[str, Any]:
    if isinstance(result, RefUpdated):
        return {"ref": result.ref, "status": "ok", "forced": result.forced}
    if isinstance(result, RefUnchanged):
        return {"ref": result.ref, "status": "up to date"}
    return {"ref": result.ref, "status": "error", "reason": str(result.reason)}


def add_repo_routes(
    api: ControlApi,
    repos: Repositories | None,
    keypair: KeyPair,
    host: Host | None = None,
    sync_config: SyncConfig | None = None,
    dht: Dht | None = None,
    providing: RepoProvider | None = None,
    replicator: Replicator | None = None,
) -> None:
    """Serve the repository routes of ``repos``; ``keypair`` (the node's)
    signs what ``init`` makes; ``host`` reaches the peers a sync fetches
    from (without it, ``sync`` is unavailable), under ``sync_config``'s
    limits (the node's); ``dht`` finds seeds when no peer is named and the
    connected ones fail; ``providing`` is woken when a repository arrives;
    ``replicator`` follows the repositories the node holds and announces
    what it signs."""

    def arrived(rid: str) -> None:
        if providing is not None:
            providing.wake()
        if replicator is not None:
            replicator.follow(rid)

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
        arrived(str(state.rid))
        if replicator is not None:
            await replicator.announce_new(state.rid)
            await replicator.announce(state.rid, keypair.peer_id)
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
        rid = _rid(require(body, "rid"))
        named = _optional(body, "peer", str)
        targets = _targets(host, named, dht=dht is not None)
        config = sync_config or SyncConfig()
        progress = body.get("progress", False)
        if not isinstance(progress, bool):
            raise InputError("'progress' must be true or false")
        seeds = None
        if named is None and dht is not None:
            seeds = functools.partial(_seeds, host, dht, rid)
        select = None if replicator is None else replicator.seeding.select(Rid.parse(rid))
        if progress:
            events = sync_events(host, held, rid, targets, config, state_json, seeds, select=select)
            return HttpResponse(200, JsonLines(_noting(event_lines(events), functools.partial(arrived, rid))))
        answer = await sync_answer(host, held, rid, targets, config, state_json, seeds, select=select)
        arrived(rid)
        return HttpResponse(200, answer)

    def held_state(request: HttpRequest) -> tuple[Repositories, RepoState]:
        held = _repos(repos)
        try:
            return held, held.show(_rid(require(request.query, "rid")))
        except GutsError as exc:
            raise _storage_error(exc) from None

    async def refs(request: HttpRequest) -> HttpResponse:
        _, state = held_state(request)
        me = keypair.peer_id
        if request.query.get("for_push") in ("1", "true"):
            ns = state.namespaces.get(me)
            shown = dict(ns.statement.refs) if ns is not None else {}
        elif request.query.get("all") in ("1", "true"):
            shown = state.refs()
        else:
            shown = dict(state.canonical.refs)
        head = f"refs/heads/{state.document.default_branch}"
        return HttpResponse(
            200,
            {
                "rid": str(state.rid),
                "refs": shown,
                "head": head if head in shown else None,
                "object_format": "sha1",
                "namespace": str(me),
                "delegate": me in state.document.delegate_ids,
                "tips": sorted({oid for _, oid in state.canonical.refs} | {
                    oid for ns in state.namespaces.values() for _, oid in ns.statement.refs
                }),
            },
        )

    async def packs(request: HttpRequest) -> HttpResponse:
        held, state = held_state(request)
        try:
            files = await pack_files(held.storage, str(state.rid))
        except GutsError as exc:
            raise _storage_error(exc) from None
        listed = [{"pack": str(f.pack), "index": str(f.index), "bytes": f.size} for f in files]
        return HttpResponse(200, {"rid": str(state.rid), "object_format": "sha1", "packs": listed})

    async def advertise(request: HttpRequest) -> HttpResponse:
        held_state(request)  # 404 for a repository this node does not hold

        async def one() -> AsyncIterator[bytes]:
            yield ADVERTISEMENT

        return HttpResponse(200, RawStream(one()))

    async def upload_pack(request: HttpRequest) -> HttpResponse:
        held, state = held_state(request)
        try:
            checked = check_upload_request(request.body, _signed_oids(state), MAX_UPLOAD_REQUEST)
        except DecodeError as exc:
            raise ApiError(400, "bad_request", f"upload request refused: {exc}") from None
        rid, body = str(state.rid), request.body
        listing = checked.command == "ls-refs"
        limit = held.storage.config.max_refs_output

        async def relay() -> AsyncIterator[bytes]:
            listed = bytearray()
            async with held.storage.upload_pack(rid) as git:
                await git.stdin.send_all(body)
                await git.close_stdin()
                while chunk := await git.stdout.receive_some(_CHUNK):
                    if not listing:
                        yield bytes(chunk)
                        continue
                    listed += chunk
                    if len(listed) > limit:
                        raise GutsError(f"an ls-refs answer over {limit} bytes")
            if listing:  # only what the verified state implies, never a ref moved on disk
                yield filter_ls_refs(bytes(listed), state.refs())

        return HttpResponse(200, RawStream(relay()))

    pushing: dict[str, trio.Lock] = {}

    async def push(request: HttpRequest) -> HttpResponse:
        held, state = held_state(request)
        assert request.chunks is not None
        header, first = await _push_header(request.chunks)
        specs = _specs(header)
        known = header.get("known") or []
        if not isinstance(known, list):
            raise InputError("'known' is a list of oids")
        rid = str(state.rid)
        async with pushing.setdefault(rid, trio.Lock()):
            try:
                results, refs = await _receive(held, rid, specs, set(known), header, _rest(first, request.chunks))
            except GutsError as exc:
                raise _storage_error(exc) from None
            state = held.show(rid)
            me = keypair.peer_id
            if refs is not None:
                try:
                    state = await held.publish(rid, keypair, refs)
                except GutsError as exc:
                    why = f"not published: {exc}"
                    results = [RefRejected(r.ref, why) if isinstance(r, RefUpdated) else r for r in results]
                else:
                    if replicator is not None:
                        await replicator.announce(rid, me)
        canonical = state.canonical.ref_map()
        return HttpResponse(
            200,
            {
                "results": [_result_json(result) for result in results],
                "namespace": str(me),
                "delegate": me in state.document.delegate_ids,
                "canonical": {spec.dst: canonical.get(spec.dst) for spec, _, _ in specs},
            },
        )

    async def _receive(
        held: Repositories,
        rid: str,
        specs: list[tuple[PushSpec, str | None, str | None]],
        known: set[str],
        header: dict[str, Any],
        pack: AsyncIterable[bytes],
    ) -> tuple[list[PushResult], dict[str, str] | None]:
        """Judge the updates with the pack in a quarantine; migrate what is
        accepted. The new ref set of the namespace, or ``None`` when
        nothing is to be published."""
        ns = held.show(rid).namespaces.get(keypair.peer_id)
        current = dict(ns.statement.refs) if ns is not None else {}
        async with held.storage.quarantine(rid) as quarantine:
            if header.get("pack"):
                await quarantine.ingest_pack(pack)
            results: list[PushResult] = []
            for spec, new, lease in specs:
                if not spec.dst.startswith(PUBLISHED_PREFIXES):
                    results.append(RefRejected(spec.dst, "guts publishes refs/heads/* and refs/tags/* only"))
                    continue
                old = current.get(spec.dst)
                commits, fast_forward = True, False
                if old is not None and new is not None and old != new:
                    commits, fast_forward = await _relation(quarantine, old, new)
                results.append(
                    judge_update(
                        spec, current=old, new=new, lease=lease, commits=commits, fast_forward=fast_forward,
                        known_locally=old is None or old in known,
                    )
                )  # fmt: skip
            accepted = [result for result in results if isinstance(result, RefUpdated)]
            if header.get("atomic") and len(accepted) != len(results):
                failed = "atomic push failed"
                results = [r if isinstance(r, RefRejected) else RefRejected(r.ref, failed) for r in results]
                accepted = []
            news = {spec.dst: new for spec, new, _ in specs}
            wanted = sorted({oid for r in accepted if (oid := news[r.ref]) is not None})
            try:
                await quarantine.check_connected(wanted)
            except NotConnected as exc:
                return [RefRejected(r.ref, f"missing objects: {exc}") if isinstance(r, RefUpdated) else r
                        for r in results], None  # fmt: skip
            if header.get("dry_run") or not accepted:
                return results, None
            await quarantine.migrate()
        refs = dict(current)
        for result in accepted:
            new = news[result.ref]
            if new is None:
                refs.pop(result.ref, None)
            else:
                refs[result.ref] = new
        return results, refs

    # An import or a sync takes as long as the history is large; git runs
    # under the storage's own per-command and per-pack deadlines, a sync
    # under its idle timeout and overall deadline; so do a push's pack and
    # an upload-pack's response.
    api.route("POST", "/v1/repo/init", init, timeout=math.inf)
    api.route("POST", "/v1/repo/sync", sync, timeout=math.inf)
    api.route("GET", "/v1/repo/refs", refs)
    api.route("GET", "/v1/repo/upload-pack", advertise)
    api.route("GET", "/v1/repo/pack-files", packs, timeout=math.inf)
    api.route("POST", "/v1/repo/upload-pack", upload_pack, body=BodyLimit(MAX_UPLOAD_REQUEST))
    max_pack = repos.storage.config.max_pack_bytes if repos is not None else 0
    api.route(
        "POST", "/v1/repo/push", push, timeout=math.inf, body=BodyLimit(max_pack + MAX_PUSH_HEADER, streamed=True)
    )
    api.route("GET", "/v1/repo/list", list_)
    api.route("GET", "/v1/repo/show", show)
    add_replicas_routes(api, repos, keypair, host, dht, replicator, sync_config)
    add_identity_routes(api, repos, keypair, changed=None if replicator is None else replicator.identity_changed)
