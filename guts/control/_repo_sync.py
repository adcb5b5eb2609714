"""``POST /v1/repo/sync``: fetch a repository from peers now, answered
whole or, with ``"progress": true``, as a stream of JSON lines.

The peers asked are the one named, else the connected peers, then the
seeds a DHT lookup finds (``{"event": "lookup", "seeds": n}`` when it
ran). The stream says which peer is being asked (``{"event": "peer"}``), where
its fetch is (``{"event": "progress"}``: the phase, response bytes so
far, at most every :data:`PROGRESS_INTERVAL` seconds), why a peer failed
(``{"event": "failed"}``), and ends with ``{"event": "done", ...}``
carrying the whole answer, or ``{"event": "error", "status", "kind",
"message"}`` when no peer completed it: the status line was sent before
the outcome was known, so the outcome is the last line.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from guts.control._api import ApiError
from guts.errors import GutsError
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.state import Repositories, RepoState
from guts.sync import SyncConfig, SyncProgress, fetch

__all__ = ["PROGRESS_INTERVAL", "event_lines", "sync_answer", "sync_events"]

#: Seconds between two progress lines of one fetch.
PROGRESS_INTERVAL = 0.25

Target = PeerId | Multiaddr
StateJson = Callable[[RepoState], dict[str, Any]]
#: Seeds of the repository beyond the peers already tried (a DHT lookup).
Seeds = Callable[[Collection[PeerId]], Awaitable[list[PeerId]]]


def _before(held: Repositories, rid: str) -> RepoState | None:
    return next((state for state in held.list() if str(state.rid) == rid), None)


def _failed(rid: str, failures: list[dict[str, str]]) -> ApiError:
    if not failures:
        return ApiError(
            409, "no_peers", f"no connected peer to ask for {rid}, and the DHT knows no seed of it: "
            "name one with --from MULTIADDR"
        )  # fmt: skip
    reasons = "; ".join(f"{failure['peer']}: {failure['error']}" for failure in failures)
    return ApiError(502, "sync_failed", f"no peer completed the sync of {rid}: {reasons}")


@dataclass(frozen=True, slots=True)
class _Lookup:
    """The DHT was asked for seeds: ``found`` of them to try."""

    found: int


async def _each(targets: Sequence[Target], seeds: Seeds | None) -> AsyncIterator[Target | _Lookup]:
    """``targets``, then (when given) the seeds the DHT finds beyond them."""
    tried: set[PeerId] = set()
    for target in targets:
        if isinstance(target, PeerId):
            tried.add(target)
        elif (named := target.peer_id) is not None:
            tried.add(PeerId.from_string(named))
        yield target
    if seeds is not None:
        found = await seeds(tried)
        yield _Lookup(len(found))
        for target in found:
            yield target


async def sync_answer(
    host: Host,
    held: Repositories,
    rid: str,
    targets: Sequence[Target],
    config: SyncConfig,
    state_json: StateJson,
    seeds: Seeds | None = None,
) -> dict[str, Any]:
    """Ask each target in turn until one completes, then the seeds
    ``seeds`` finds; the answer of the first that completed.

    Raises:
        ApiError: 502 ``sync_failed`` with every peer's reason; 409
            ``no_peers`` when there was nobody to ask.
    """
    before = _before(held, rid)
    failures: list[dict[str, str]] = []
    async for target in _each(targets, seeds):
        if isinstance(target, _Lookup):
            continue
        latest = _Latest()
        try:
            state = await fetch(host, held, target, rid, config, latest.set)
        except GutsError as exc:
            failures.append({"peer": str(target), "error": str(exc)})
            continue
        answer = {"peer": str(target), "changed": state != before, "received": _received(latest), "failures": failures}
        return {**answer, "repository": state_json(state)}
    raise _failed(rid, failures)


def _received(latest: _Latest) -> int:
    return latest.value.received if latest.value is not None else 0


class _Latest:
    """The newest progress of a running fetch, and a wake-up when it moves."""

    def __init__(self) -> None:
        self.value: SyncProgress | None = None
        self.finished = False
        self._moved = trio.Event()
        self._done = trio.Event()

    def set(self, value: SyncProgress) -> None:
        self.value = value
        self._moved.set()

    def finish(self) -> None:
        self.finished = True
        self._moved.set()
        self._done.set()

    async def moved(self) -> None:
        await self._moved.wait()
        self._moved = trio.Event()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the fetch finishes meanwhile."""
        with trio.move_on_after(seconds):
            await self._done.wait()


def _progress_json(target: Target, progress: SyncProgress) -> dict[str, Any]:
    return {
        "event": "progress",
        "peer": str(target),
        "phase": progress.phase,
        "received": progress.received,
        "namespaces": progress.namespaces,
    }


@trio.as_safe_channel
async def sync_events(
    host: Host,
    held: Repositories,
    rid: str,
    targets: Sequence[Target],
    config: SyncConfig,
    state_json: StateJson,
    seeds: Seeds | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """:func:`sync_answer` as a stream of events (module docstring)."""
    before = _before(held, rid)
    failures: list[dict[str, str]] = []
    async for target in _each(targets, seeds):
        if isinstance(target, _Lookup):
            yield {"event": "lookup", "seeds": target.found}
            continue
        yield {"event": "peer", "peer": str(target)}
        latest = _Latest()
        outcome: list[RepoState | GutsError] = []

        async def run(target: Target = target, latest: _Latest = latest, outcome: list[Any] = outcome) -> None:
            try:
                outcome.append(await fetch(host, held, target, rid, config, latest.set))
            except GutsError as exc:
                outcome.append(exc)
            finally:
                latest.finish()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            sent: SyncProgress | None = None
            while not latest.finished:
                await latest.moved()
                if latest.value is not None and latest.value != sent and not latest.finished:
                    sent = latest.value
                    yield _progress_json(target, sent)
                    await latest.pause(PROGRESS_INTERVAL)  # not past the fetch's end
        [result] = outcome
        if isinstance(result, GutsError):
            failure = {"peer": str(target), "error": str(result)}
            failures.append(failure)
            yield {"event": "failed", **failure}
            continue
        if latest.value is not None and latest.value != sent:
            yield _progress_json(target, latest.value)
        answer = {"peer": str(target), "changed": result != before, "received": _received(latest), "failures": failures}
        yield {"event": "done", **answer, "repository": state_json(result)}
        return
    error = _failed(rid, failures)
    yield {"event": "error", "status": error.status, "kind": error.kind, "message": str(error)}


async def event_lines(events: Any) -> AsyncIterator[dict[str, Any]]:
    """The events of ``sync_events(...)`` (a context manager of a channel)
    as the async iterator a :class:`~guts.control._http.JsonLines` takes."""
    async with events as channel:
        async for event in channel:
            yield event

