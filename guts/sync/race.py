"""Fetch a repository from whichever of several peers answers first, and
fail over to the others when the one serving stalls or lies.

Theory of operation
-------------------
:func:`fetch_first` takes candidates in order of preference (the peers a
caller knows, the seeds a DHT lookup found) and asks the first ``width``
of them for the repository's signed state at once (``GetRefs`` on a
stream each). Each answer is checked as :func:`~guts.sync.fetch.fetch`
checks one, by the same code: every identity revision and statement
decoded strictly under the repository limits, signatures included, and
the chain verified against the RID. The first answer that passes wins:
the other requests are cancelled (those peers lost a race, they are not
at fault), and the objects come from the winner, with the refs it sent
(``fetch(refs=...)``: no second ``GetRefs``).

A candidate whose answer does not arrive, does not verify, or refuses
(``NOT_FOUND``: it does not hold the repository) is out, and the next
one is asked in its place, so ``width`` stay in flight. A winner that
then fails (it stalls past the idle timeout, its pack misses objects,
:meth:`~guts.repo.state.Repositories.receive` refuses its state: what
only the state held here can judge, such as an equivocating statement or
one on another repository's identity) is out too, and a new race starts among
the candidates left, the outrun ones first by preference. Nothing of a
failed fetch stays (``receive`` moves nothing before everything
verified). The pure part, who is asked when, is
:class:`~guts.sync._race_plan.RacePlan`.

Bounds: at most ``limit`` candidates in all, ``width`` requests at once,
and each request and fetch under the existing :class:`SyncConfig`
deadlines (the idle timeout on every read, the deadline on each whole
``GetRefs`` and each whole fetch). Each failure is one log line naming
the peer and the reason (at info for ``NOT_FOUND``, as ``fetch`` logs).

First valid answer, not newest: the race takes the first answer that
verifies, not the newest state among the candidates (finding that would
mean waiting for all of them, and the slowest sets the pace). Nothing
goes back: ``receive`` leaves out a statement older than the one held.
But a winner that is behind another candidate serves what it has (the
sync succeeds, perhaps changing nothing), and the newer statement
arrives with the next sync that reaches the candidate holding it, or
with its announcement when the node follows the repository.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import trio

from guts.errors import GutsError
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.revisions import verify_chain
from guts.repo.rid import Rid
from guts.repo.state import Repositories, RepoState
from guts.sync._codec import Refs, RefusedReason, SyncConfig, SyncError, SyncRefused, SyncStalled
from guts.sync._race_plan import RacePlan
from guts.sync.fetch import SyncProgress, _decode_refs, _get_refs, fetch

__all__ = [
    "MAX_CANDIDATES",
    "RACE_WIDTH",
    "FetchProgressed",
    "Fetched",
    "NoPeerServed",
    "PeerAsked",
    "PeerFailed",
    "PeerOutraced",
    "RaceEvent",
    "fetch_first",
]

log = logging.getLogger("guts.sync")

#: Candidates asked at once.
RACE_WIDTH = 3
#: Candidates considered in one race, in all.
MAX_CANDIDATES = 10

Target = PeerId | Multiaddr
Select = Callable[[Sequence[PeerId], Sequence[PeerId]], Collection[PeerId]]


@dataclass(frozen=True, slots=True)
class PeerAsked:
    """``GetRefs`` went to ``peer`` (again, when it lost an earlier round)."""

    peer: Target


@dataclass(frozen=True, slots=True)
class PeerFailed:
    """``peer`` is out: its answer, or its fetch as the server, failed."""

    peer: Target
    error: GutsError


@dataclass(frozen=True, slots=True)
class PeerOutraced:
    """``peer``'s request was cancelled: ``winner`` answered first."""

    peer: Target
    winner: Target


@dataclass(frozen=True, slots=True)
class FetchProgressed:
    """Where the fetch from the winner ``peer`` is."""

    peer: Target
    progress: SyncProgress


RaceEvent = PeerAsked | PeerFailed | PeerOutraced | FetchProgressed


@dataclass(frozen=True, slots=True)
class Fetched:
    """How a race ended well.

    Attributes:
        state: the repository's state afterwards.
        peer: the candidate that served it.
        asked: every candidate asked, in the order first asked.
        failures: the candidates that failed, in order, with why.
    """

    state: RepoState
    peer: Target
    asked: tuple[Target, ...]
    failures: tuple[PeerFailed, ...]


class NoPeerServed(SyncError):
    """No candidate completed the fetch (or there was none).

    Attributes:
        failures: each candidate that failed, with why.
    """

    def __init__(self, rid: str, failures: Sequence[PeerFailed]) -> None:
        reasons = "; ".join(f"{failure.peer}: {failure.error}" for failure in failures) or "no peer to ask"
        super().__init__(f"no peer completed the fetch of {rid}: {reasons}")
        self.failures = tuple(failures)


async def fetch_first(
    host: Host,
    repos: Repositories,
    candidates: Sequence[Target],
    rid: Rid | str,
    config: SyncConfig | None = None,
    *,
    width: int = RACE_WIDTH,
    limit: int = MAX_CANDIDATES,
    progress: Callable[[RaceEvent], None] | None = None,
    select: Select | None = None,
) -> Fetched:
    """Fetch ``rid`` from the first of ``candidates`` (in order of
    preference) to answer with a state that verifies, failing over to the
    others (module docstring). ``progress``, when given, is told of each
    request, failure, cancelled request and step of the winner's fetch (it
    must not block); ``select`` is passed to :func:`~guts.sync.fetch.fetch`.

    Raises:
        NoPeerServed: every candidate failed, or there was none; it
            carries each one's reason.
        ValueError: ``width`` or ``limit`` below 1, or ``rid`` no RID.
    """
    cfg = config or SyncConfig()
    key = str(rid) if isinstance(rid, Rid) else str(Rid.parse(rid))
    report = progress or (lambda _: None)
    plan: RacePlan[Target] = RacePlan(candidates, width=width, limit=limit)
    failures: list[PeerFailed] = []

    def failed(peer: Target, error: GutsError) -> None:
        plan.failed(peer)
        failure = PeerFailed(peer, error)
        failures.append(failure)
        report(failure)

    while (won := await _race(host, repos, key, cfg, plan, failed, report)) is not None:
        peer, refs = won
        try:
            state = await fetch(
                host, repos, peer, key, cfg, lambda step: report(FetchProgressed(peer, step)), select=select, refs=refs
            )
        except GutsError as exc:  # a broken connection included
            failed(peer, exc)  # (fetch logged it)
            continue
        return Fetched(state, peer, tuple(plan.asked), tuple(failures))
    raise NoPeerServed(key, failures)


async def _race(
    host: Host,
    repos: Repositories,
    rid: str,
    cfg: SyncConfig,
    plan: RacePlan[Target],
    failed: Callable[[Target, GutsError], None],
    report: Callable[[RaceEvent], None],
) -> tuple[Target, Refs] | None:
    """One round: ask candidates until one's answer verifies (it is the
    winner, the others are cancelled); ``None`` when every one failed."""
    send, receive = trio.open_memory_channel[tuple[Target, Refs | GutsError]](math.inf)
    winner: tuple[Target, Refs] | None = None
    async with trio.open_nursery() as nursery:

        def ask() -> None:
            for peer in plan.to_ask():
                report(PeerAsked(peer))
                nursery.start_soon(_ask, host, repos, rid, cfg, peer, send)

        ask()
        while winner is None and plan.asking:
            peer, outcome = await receive.receive()
            if isinstance(outcome, GutsError):
                failed(peer, outcome)
                ask()
                continue
            # Answers that came in meanwhile: a failure is one still.
            while True:
                try:
                    other, result = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                if isinstance(result, GutsError):
                    failed(other, result)
            for loser in plan.answered(peer):
                report(PeerOutraced(loser, peer))
            winner = (peer, outcome)
            nursery.cancel_scope.cancel()
    return winner


async def _ask(
    host: Host,
    repos: Repositories,
    rid: str,
    cfg: SyncConfig,
    peer: Target,
    send: trio.MemorySendChannel[tuple[Target, Refs | GutsError]],
) -> None:
    """``GetRefs`` to ``peer``, its answer checked as fetch checks one;
    the answer or the failure goes to ``send``."""
    outcome: Refs | GutsError
    try:
        with trio.fail_after(cfg.deadline):
            refs = await _get_refs(host, peer, rid, cfg)
        revisions, _ = _decode_refs(repos, refs)
        verify_chain(Rid.parse(rid), revisions, repos.config.identity)
        outcome = refs
    except trio.TooSlowError:
        outcome = _logged(peer, rid, SyncStalled(f"no answer within the deadline of {cfg.deadline:g} s"))
    except GutsError as exc:
        outcome = _logged(peer, rid, exc)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        outcome = _logged(peer, rid, SyncError("the stream to the peer broke"))
    send.send_nowait((peer, outcome))


def _logged(peer: Target, rid: str, error: GutsError) -> GutsError:
    """``error``, logged as fetch logs a failure (a peer that does not hold
    the repository did nothing wrong: info, not a warning)."""
    absent = isinstance(error, SyncRefused) and error.reason is RefusedReason.NOT_FOUND
    log.log(logging.INFO if absent else logging.WARNING, "peer %s: fetch of %s failed: %s", peer, rid, error)
    return error
