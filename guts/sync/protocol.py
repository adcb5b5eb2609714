"""The sync protocol's serving side, ``/guts/sync/1.0.0`` on the host.

One request per stream, as a length-prefixed ``Request``:

- ``GetRefs{rid}``: answered by ``Refs`` (the identity chain, genesis
  first, every verified namespace's latest statement, and the pending
  identity revisions, :mod:`guts.repo.proposals`) or
  ``Refused{NOT_FOUND}``; then the stream ends.
- ``GetObjects{rid, request}``: ``request`` is one protocol v2 stateless
  upload-pack request, checked by :func:`~guts.sync.upload_rules.check_upload_request`
  against the repository's verified statements and their sigrefs commits (``Refused{BAD_REQUEST}``
  when it breaks a rule). When it passes, ``Objects`` is sent, then
  ``git upload-pack --stateless-rpc`` runs with the request and its raw
  response is streamed as it comes, and the stream ends: the end of the
  stream is the end of the response.

Bounds: requests per peer (a token bucket of
:attr:`SyncConfig.request_burst` refilled at
:attr:`SyncConfig.requests_per_second`: past it a request is refused
``BUSY`` before it is read), the request's size
(:attr:`SyncConfig.max_request`), uploads at once per node and per peer
(``Refused{BUSY}`` past them), the idle
timeout on reading the request and on each write of the response (a peer
that stops reading is dropped and upload-pack killed), and the storage's
pack deadline on the whole upload. Bad input gets one log line naming the
peer and the reason, at most once a minute per peer.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

import trio

from guts.connmgr import RateLimiter
from guts.errors import DecodeError, GutsError
from guts.host import Host
from guts.peer import PeerId
from guts.repo.state import Repositories
from guts.repo.storage import RepositoryNotFound
from guts.sync._codec import (
    SYNC_PROTOCOL,
    GetObjects,
    GetRefs,
    Objects,
    Refs,
    Refused,
    RefusedReason,
    Response,
    SyncConfig,
    decode_request,
    encode_response,
)
from guts.sync.upload_rules import check_upload_request, filter_ls_refs
from guts.wire import MessageStream, NegotiatedStream

__all__ = ["BadInputLog", "SyncService", "UploadTooLarge"]

log = logging.getLogger("guts.sync")

_CHUNK = 64 * 1024


class BadInputLog:
    """One log line per peer per ``interval`` seconds for bad input; at
    most ``max_peers`` remembered (the oldest forgotten)."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_peers: int = 10_000) -> None:
        self._log = logger
        self.interval = interval
        self.max_peers = max_peers
        self._last: OrderedDict[PeerId, float] = OrderedDict()

    def __call__(self, peer: PeerId, what: str, reason: object, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        last = self._last.pop(peer, None)
        if last is not None and now - last < self.interval:
            self._last[peer] = last
            return
        self._last[peer] = now
        while len(self._last) > self.max_peers:
            self._last.popitem(last=False)
        self._log.warning("peer %s: %s: %s", peer, what, reason)


class UploadTooLarge(GutsError):
    """An upload grew past the largest pack this node would accept itself."""


class SyncService:
    """Serves ``/guts/sync/1.0.0`` on ``host`` from ``repos``."""

    def __init__(self, host: Host, repos: Repositories, config: SyncConfig | None = None) -> None:
        self.host = host
        self.repos = repos
        self.config = config or SyncConfig()
        self.bad_input = BadInputLog(log)
        self._uploads: Counter[PeerId] = Counter()
        self._requests: RateLimiter[PeerId] = RateLimiter(self.config.requests_per_second, self.config.request_burst, max_keys=10_000)
        #: Told of each peer's bad input (peer, reason, penalty weight: 1
        #: for a request refused unread, 10 for one that breaks the rules),
        #: and asked whether a peer is throttled (its requests refused
        #: ``BUSY``): the node's peer scores.
        self.report: Callable[[PeerId, str, float], object] | None = None
        self.throttled: Callable[[PeerId], bool] | None = None
        host.set_handler(SYNC_PROTOCOL, self._serve)

    def _bad(self, peer: PeerId, what: str, reason: object, weight: float) -> None:
        self.bad_input(peer, what, reason)
        if self.report is not None:
            self.report(peer, f"sync: {what}: {reason}", weight)

    async def _serve(self, stream: NegotiatedStream) -> None:
        peer: PeerId = stream.connection.peer_id
        cfg = self.config
        async with stream:
            messages = MessageStream(stream, cfg.max_request)
            throttled = self.throttled is not None and self.throttled(peer)
            if throttled or not self._requests.take(peer, trio.current_time()):
                why = "BUSY: throttled for misbehaving" if throttled else "BUSY: over its request rate"
                self._bad(peer, "sync request refused", why, 1.0)
                with trio.move_on_after(1):
                    try:
                        # Taken off the stream undecoded, so that closing it
                        # after the answer does not reset it under the peer.
                        await messages.receive()
                        await self._answer(messages, Refused(RefusedReason.BUSY, "too many requests; slow down"))
                    except (DecodeError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                        pass
                return
            try:
                with trio.fail_after(cfg.idle_timeout):
                    data = await messages.receive()
                if data is None:
                    return
                request = decode_request(data, cfg)
            except DecodeError as exc:
                self._bad(peer, "sync request refused", exc, 10.0)
                return
            except trio.TooSlowError:
                self.bad_input(peer, "sync request refused", "no request within the idle timeout")
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            try:
                if isinstance(request, GetRefs):
                    await self._answer(messages, await self._refs(request.rid))
                else:
                    await self._objects(peer, stream, messages, request)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
                log.info("peer %s: sync stream ended early: %s", peer, str(exc) or "stopped reading")
            except GutsError as exc:
                log.warning("peer %s: sync request failed: %s", peer, exc)

    async def _answer(self, messages: MessageStream, response: Response) -> None:
        with trio.fail_after(self.config.idle_timeout):
            await messages.send(encode_response(response))

    async def _refs(self, rid: str) -> Response:
        try:
            state = self.repos.show(rid)
            revisions = await self.repos.revisions(state.rid)
        except (RepositoryNotFound, ValueError):
            return Refused(RefusedReason.NOT_FOUND, f"no repository {rid[:80]} here")
        namespaces = [state.namespaces[peer] for peer in sorted(state.namespaces, key=str)]
        return Refs(
            tuple(revision.encode() for revision in revisions),
            tuple(ns.signed.encode() for ns in namespaces),
            tuple(ns.commit for ns in namespaces),
            tuple(state.proposals[pid].revision.encode() for pid in sorted(state.proposals)),
        )

    async def _objects(
        self, peer: PeerId, stream: NegotiatedStream, messages: MessageStream, request: GetObjects
    ) -> None:
        cfg = self.config
        try:
            state = self.repos.show(request.rid)
        except (RepositoryNotFound, ValueError):
            await self._answer(messages, Refused(RefusedReason.NOT_FOUND, f"no repository {request.rid[:80]} here"))
            return
        signed = {oid for ns in state.namespaces.values() for _, oid in ns.statement.refs}
        signed.update(ns.commit for ns in state.namespaces.values())
        try:
            checked = check_upload_request(request.request, signed, cfg.max_request)
        except DecodeError as exc:
            self._bad(peer, f"upload request for {state.rid} refused", exc, 10.0)
            await self._answer(messages, Refused(RefusedReason.BAD_REQUEST, str(exc)))
            return
        if sum(self._uploads.values()) >= cfg.max_uploads or self._uploads[peer] >= cfg.max_uploads_per_peer:
            self.bad_input(peer, f"upload of {state.rid} refused", "BUSY: too many uploads at once")
            await self._answer(messages, Refused(RefusedReason.BUSY, "too many uploads at once; try later"))
            return
        self._uploads[peer] += 1
        limit = self.repos.storage.config.max_pack_bytes
        try:
            idle = max(1, int(cfg.idle_timeout))
            async with self.repos.storage.upload_pack(str(state.rid), idle_timeout=idle, timeout=cfg.deadline) as git:
                await git.stdin.send_all(request.request)
                await git.close_stdin()
                await self._answer(messages, Objects())
                out = stream.unwrap()
                sent = 0
                if checked.command == "ls-refs":  # only what the verified state implies
                    listed = await git.read_stdout(self.repos.storage.config.max_refs_output)
                    with trio.fail_after(cfg.idle_timeout):
                        await out.send_all(filter_ls_refs(listed, state.refs()))
                while chunk := await git.stdout.receive_some(_CHUNK):
                    sent += len(chunk)
                    if sent > limit:
                        # No repository this node accepts is larger; the
                        # fetcher stops at its own limit too. Raising kills
                        # upload-pack rather than waiting for it to finish.
                        raise UploadTooLarge(f"upload of {state.rid} stopped past {limit} bytes")
                    with trio.fail_after(cfg.idle_timeout):
                        await out.send_all(chunk)
            with trio.fail_after(cfg.idle_timeout):
                await stream.send_eof()
        finally:
            self._uploads[peer] -= 1
            if not self._uploads[peer]:
                del self._uploads[peer]
