"""``POST /v1/repo/sync``: fetch a repository from peers now, answered
whole or, with ``"progress": true``, as a stream of JSON lines.

The peers asked are the one named, else the connected peers, then the
seeds a DHT lookup finds (``{"event": "lookup", "seeds": n}`` when it
ran). Several are asked at once (:func:`~guts.sync.race.fetch_first`:
the first whose signed state verifies serves, failing over to the others
when it stalls or lies), the connected peers first and the seeds after.

The stream says which peer is asked (``{"event": "peer"}``, once per
request: a peer outrun in one round may be asked again in the next),
where the serving peer's fetch is (``{"event": "progress"}``: the phase,
response bytes so far, at most every :data:`PROGRESS_INTERVAL` seconds),
why a peer failed (``{"event": "failed"}``), which requests were
cancelled because another peer answered first (``{"event": "cancelled",
"peer", "winner"}``: not a failure), and ends with ``{"event": "done",
...}`` carrying the whole answer (the peer that served, ``asked``: every
peer asked, ``failures``), or ``{"event": "error", "status", "kind",
"message"}`` when no peer completed it: the status line was sent before
the outcome was known, so the outcome is the last line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any

import trio

from guts.control._api import ApiError
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.state import Repositories, RepoState
from guts.sync import (
    RACE_WIDTH,
    FetchProgressed,
    Fetched,
    NoPeerServed,
    PeerAsked,
    PeerFailed,
    PeerOutraced,
    RaceEvent,
    SyncConfig,
    SyncProgress,
    fetch_first,
)
from guts.sync.race import Select

__all__ = ["PROGRESS_INTERVAL", "event_lines", "sync_answer", "sync_events"]

#: Seconds between two progress lines of one fetch.
PROGRESS_INTERVAL = 0.25

Target = PeerId | Multiaddr
StateJson = Callable[[RepoState], dict[str, Any]]
#: Seeds of the repository beyond the peers already tried (a DHT lookup).
Seeds = Callable[[Collection[PeerId]], Awaitable[list[PeerId]]]
Emit = Callable[[dict[str, Any]], None]


def _before(held: Repositories, rid: str) -> RepoState | None:
    return next((state for state in held.list() if str(state.rid) == rid), None)


def _failed(rid: str, failures: Sequence[dict[str, str]]) -> ApiError:
    if not failures:
        return ApiError(
            409, "no_peers", f"no connected peer to ask for {rid}, and the DHT knows no seed of it: "
            "name one with --from MULTIADDR"
        )  # fmt: skip
    reasons = "; ".join(f"{failure['peer']}: {failure['error']}" for failure in failures)
    return ApiError(502, "sync_failed", f"no peer completed the sync of {rid}: {reasons}")


def _peer_id(target: Target) -> PeerId | None:
    if isinstance(target, PeerId):
        return target
    named = target.peer_id
    return None if named is None else PeerId.from_string(named)


def _progress_json(peer: Target, progress: SyncProgress) -> dict[str, Any]:
    return {
        "event": "progress",
        "peer": str(peer),
        "phase": progress.phase,
        "received": progress.received,
        "namespaces": progress.namespaces,
    }


class _Sync:
    """One sync: the races it runs and what they told, as JSON events."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.asked: list[Target] = []
        self.failures: list[dict[str, str]] = []
        self.latest: dict[Target, SyncProgress] = {}

    def heard(self, event: RaceEvent) -> None:
        if isinstance(event, PeerAsked):
            if event.peer not in self.asked:
                self.asked.append(event.peer)
            self.emit({"event": "peer", "peer": str(event.peer)})
        elif isinstance(event, PeerFailed):
            failure = {"peer": str(event.peer), "error": str(event.error)}
            self.failures.append(failure)
            self.emit({"event": "failed", **failure})
        elif isinstance(event, PeerOutraced):
            self.emit({"event": "cancelled", "peer": str(event.peer), "winner": str(event.winner)})
        else:
            self.latest[event.peer] = event.progress
            self.emit(_progress_json(event.peer, event.progress))

    async def run(
        self,
        host: Host,
        held: Repositories,
        rid: str,
        targets: Sequence[Target],
        config: SyncConfig,
        seeds: Seeds | None,
        width: int,
        select: Select | None = None,
    ) -> Fetched | None:
        """Race ``targets``, then (when they all failed) the seeds
        ``seeds`` finds beyond the peers asked; ``None`` when none served."""
        if targets:
            try:
                return await fetch_first(
                    host, held, targets, rid, config, width=width, progress=self.heard, select=select
                )
            except NoPeerServed:
                pass
        if seeds is None:
            return None
        tried = {peer for target in self.asked if (peer := _peer_id(target)) is not None}
        found = await seeds(tried)
        self.emit({"event": "lookup", "seeds": len(found)})
        if not found:
            return None
        try:
            return await fetch_first(host, held, found, rid, config, width=width, progress=self.heard, select=select)
        except NoPeerServed:
            return None

    def answer(self, fetched: Fetched, before: RepoState | None, state_json: StateJson) -> dict[str, Any]:
        latest = self.latest.get(fetched.peer)
        return {
            "peer": str(fetched.peer),
            "changed": fetched.state != before,
            "received": 0 if latest is None else latest.received,
            "asked": [str(peer) for peer in self.asked],
            "failures": self.failures,
            "repository": state_json(fetched.state),
        }


async def sync_answer(
    host: Host,
    held: Repositories,
    rid: str,
    targets: Sequence[Target],
    config: SyncConfig,
    state_json: StateJson,
    seeds: Seeds | None = None,
    *,
    width: int = RACE_WIDTH,
    select: Select | None = None,
) -> dict[str, Any]:
    """Ask ``targets``, ``width`` at once, until one completes, then the
    seeds ``seeds`` finds; the answer of the one that completed.

    Raises:
        ApiError: 502 ``sync_failed`` with every peer's reason; 409
            ``no_peers`` when there was nobody to ask.
    """
    before = _before(held, rid)
    sync = _Sync(lambda _: None)
    fetched = await sync.run(host, held, rid, targets, config, seeds, width, select)
    if fetched is None:
        raise _failed(rid, sync.failures)
    return sync.answer(fetched, before, state_json)


class _Feed:
    """The events of a running sync, in order, a peer's progress lines
    coalesced while they wait; a wake-up when one comes."""

    def __init__(self) -> None:
        self.events: deque[dict[str, Any]] = deque()
        self.finished = False
        self._moved = trio.Event()
        self._done = trio.Event()

    def emit(self, event: dict[str, Any]) -> None:
        last = self.events[-1] if self.events else None
        if last is not None and last["event"] == event["event"] == "progress" and last["peer"] == event["peer"]:
            self.events[-1] = event
        else:
            self.events.append(event)
        self._moved.set()

    def finish(self) -> None:
        self.finished = True
        self._moved.set()
        self._done.set()

    async def moved(self) -> None:
        await self._moved.wait()
        self._moved = trio.Event()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the sync finishes meanwhile."""
        with trio.move_on_after(seconds):
            await self._done.wait()


@trio.as_safe_channel
async def sync_events(
    host: Host,
    held: Repositories,
    rid: str,
    targets: Sequence[Target],
    config: SyncConfig,
    state_json: StateJson,
    seeds: Seeds | None = None,
    *,
    width: int = RACE_WIDTH,
    select: Select | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """:func:`sync_answer` as a stream of events (module docstring)."""
    before = _before(held, rid)
    feed = _Feed()
    sync = _Sync(feed.emit)
    outcome: list[Fetched | None] = []

    async def run() -> None:
        try:
            outcome.append(await sync.run(host, held, rid, targets, config, seeds, width, select))
        finally:
            feed.finish()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        while True:
            while feed.events:
                event = feed.events.popleft()
                yield event
                if event["event"] == "progress" and not feed.finished:
                    await feed.pause(PROGRESS_INTERVAL)  # not past the sync's end
            if feed.finished:
                break
            await feed.moved()
    [fetched] = outcome
    if fetched is None:
        error = _failed(rid, sync.failures)
        yield {"event": "error", "status": error.status, "kind": error.kind, "message": str(error)}
        return
    yield {"event": "done", **sync.answer(fetched, before, state_json)}


async def event_lines(events: Any) -> AsyncIterator[dict[str, Any]]:
    """The events of ``sync_events(...)`` (a context manager of a channel)
    as the async iterator a :class:`~guts.control._http.JsonLines` takes."""
    async with events as channel:
        async for event in channel:
            yield event

