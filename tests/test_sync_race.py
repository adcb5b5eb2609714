"""Fetching from several peers at once (guts.sync.race): the plan of who
is asked when, checked synchronously, then races between real hosts on
the memory transport with real git: the first answer that verifies
serves, a liar is refused with the reason, a slow peer is cancelled, a
server that stalls or whose state ``receive`` refuses fails over to the
next, a peer without the repository is out; and the sync route's events
on top of it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from guts.errors import InvalidRefs
from guts.host import Host
from guts.peer import PeerId
from guts.repo import _codec as repo_codec
from guts.repo.pktline import Band, encode_line, encode_sideband
from guts.repo.sigrefs import SignedStatement, sign_statement
from guts.repo.state import Repositories
from guts.sync import (
    FetchProgressed,
    NoPeerServed,
    Objects,
    PeerAsked,
    PeerFailed,
    PeerOutraced,
    RaceEvent,
    Refs,
    Refused,
    RefusedReason,
    SyncConfig,
    SyncRefused,
    SyncService,
    SyncStalled,
    encode_response,
    fetch,
    fetch_first,
)
from guts.sync._race_plan import CandidateState, RacePlan

from .helpers import full_addr, memory_hosts
from .repo_helpers import History, build_history, git, refs_of

# -- the plan ------------------------------------------------------------------------


def test_the_first_width_candidates_are_asked_and_a_failure_is_replaced() -> None:
    plan = RacePlan("abcde", width=3, limit=10)
    assert plan.to_ask() == ["a", "b", "c"]
    assert plan.to_ask() == []  # three in flight already
    plan.failed("b")
    assert plan.to_ask() == ["d"]
    assert plan.asking == ["a", "c", "d"]
    assert plan.asked == ["a", "b", "c", "d"]


def test_a_winner_sends_the_others_back_and_they_may_be_asked_again() -> None:
    plan = RacePlan("abcd", width=3, limit=10)
    plan.to_ask()
    assert plan.answered("b") == ["a", "c"]
    assert [plan.state(c) for c in "abcd"] == [
        CandidateState.IDLE, CandidateState.SERVING, CandidateState.IDLE, CandidateState.IDLE,
    ]  # fmt: skip
    assert plan.to_ask() == []  # nothing while one serves
    plan.failed("b")  # the server stalled
    assert plan.to_ask() == ["a", "c", "d"]  # the outrun first, by preference; b never again
    assert plan.asked == ["a", "b", "c", "d"]
    with pytest.raises(ValueError):
        plan.answered("b")


def test_the_limit_bounds_the_candidates_and_the_rounds() -> None:
    plan = RacePlan(["a", "b", "a", "c", "d"], width=2, limit=3)
    assert plan.candidates == ("a", "b", "c")  # repeats dropped, then the first three
    rounds = 0
    while chosen := plan.to_ask():
        rounds += 1
        plan.answered(chosen[0])
        plan.failed(chosen[0])  # every server fails
    assert rounds == 3 and plan.exhausted
    assert plan.asked == ["a", "b", "c"]
    with pytest.raises(ValueError):
        RacePlan("ab", width=0, limit=3)
    with pytest.raises(ValueError):
        plan.failed("d")


def test_an_empty_plan_is_exhausted_at_once() -> None:
    plan: RacePlan[str] = RacePlan([], width=3, limit=10)
    assert plan.exhausted and plan.to_ask() == []


# -- races between hosts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> History:
    work_tree = tmp_path_factory.mktemp("source") / "project"
    git("init", "--quiet", "--initial-branch=main", str(work_tree))
    return build_history(work_tree / ".git", commits=300, topic_every=60)


class Seed(SyncService):
    """A seed that can be slow, lie or stall: ``gate`` (when set) holds
    each ``GetRefs`` answer until it is set; ``refs`` is served instead of
    the real answer; with ``stall``, the first pack stops midway. Counts
    the ``GetRefs`` it is sent."""

    gate: trio.Event | None = None
    refs: Refs | None = None
    stall = False
    get_refs = 0

    async def _refs(self, rid: str) -> Refs | Refused:  # type: ignore[override]
        self.get_refs += 1
        if self.gate is not None:
            await self.gate.wait()
        real = await super()._refs(rid)
        return real if self.refs is None or not isinstance(real, Refs) else self.refs

    async def _objects(self, peer, stream, messages, request):  # type: ignore[no-untyped-def]
        if not self.stall or b"command=fetch" not in request.request:
            return await super()._objects(peer, stream, messages, request)
        await messages.send(encode_response(Objects()))
        await stream.send_all(encode_line(b"packfile") + encode_sideband(Band.PACK, b"PACK\0\0\0\2"))
        await trio.sleep_forever()


@dataclass
class Net:
    """``seeds[0]`` made the repository; the other seeds hold true copies;
    ``c`` holds nothing and is connected to every seed."""

    seeds: list[Host]
    services: list[Seed]
    c: Host
    repos_c: Repositories
    rid: str
    #: The true answer to ``GetRefs``.
    true: Refs

    def ids(self, *indexes: int) -> list[PeerId]:
        return [self.seeds[i].peer_id for i in indexes]


@asynccontextmanager
async def network(tmp_path: Path, source: History, seeds: int, *, empty: int = 0) -> AsyncIterator[Net]:
    """``seeds`` seeds of a repository and ``empty`` peers without it (after
    the seeds in ``Net.seeds``), all connected to ``c``."""
    async with memory_hosts(seeds + empty + 1) as hosts:
        *peers, c = hosts
        repos = [await Repositories.open(tmp_path / f"s{i}") for i in range(len(peers))]
        state = await repos[0].init(source.path.parent, keypair=peers[0].keypair)
        rid = str(state.rid)
        services = [Seed(host, held) for host, held in zip(peers, repos)]
        for i in range(1, seeds):
            await peers[i].connect(full_addr(peers[0]))
            await fetch(peers[i], repos[i], peers[0].peer_id, rid)
        for peer in peers:
            await c.connect(full_addr(peer))
        true = await SyncService._refs(services[0], rid)
        assert isinstance(true, Refs)
        for service in services:
            service.get_refs = 0
        yield Net(peers, services, c, await Repositories.open(tmp_path / "c"), rid, true)


def bad_signature(refs: Refs) -> Refs:
    signed = SignedStatement.decode(refs.statements[0])
    return replace(refs, statements=(repo_codec.encode_signed_refs(signed.statement.canonical, bytes(64)),))


def fsck(path: Path) -> None:
    git("fsck", "--strict", "--no-dangling", "--no-progress", git_dir=path)


async def test_the_first_valid_answer_serves_a_liar_is_refused_and_a_slow_peer_cancelled(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """Three seeds asked at once: S never answers ``GetRefs`` (slow), M
    answers at once with a statement whose signature it broke, H (the
    author, honest) answers once M's answer was judged. M is refused with
    the reason, H serves with the one ``GetRefs`` it was sent, S's request
    is cancelled (no failure), and C holds H's state."""
    with trio.fail_after(30):
        async with network(tmp_path, source, 3) as net:
            honest, slow, liar = net.services
            slow.gate, honest.gate = trio.Event(), trio.Event()  # slow's is never set
            liar.refs = bad_signature(net.true)
            events: list[RaceEvent] = []

            def heard(event: RaceEvent) -> None:
                events.append(event)
                if isinstance(event, PeerFailed):
                    honest.gate.set()  # type: ignore[union-attr]

            s, m, h = net.ids(1, 2, 0)
            started = time.perf_counter()
            with caplog.at_level(logging.INFO, logger="guts.sync"):
                got = await fetch_first(net.c, net.repos_c, [s, m, h], net.rid, progress=heard)
            assert time.perf_counter() - started < 10  # not S's pace
            assert got.peer == h and got.asked == (s, m, h)
            [failure] = got.failures
            assert failure.peer == m and isinstance(failure.error, InvalidRefs) and "bad signature" in str(failure.error)
            assert [e for e in events if not isinstance(e, FetchProgressed)] == [
                PeerAsked(s), PeerAsked(m), PeerAsked(h), failure, PeerOutraced(s, h),
            ]  # fmt: skip
            phases = [e.progress.phase for e in events if isinstance(e, FetchProgressed)]
            assert phases[0] == "refs" and phases[-1] == "applying"
            assert all(e.peer == h for e in events if isinstance(e, FetchProgressed))
            assert honest.get_refs == 1  # the objects came with the refs already received
            assert got.state.canonical.ref_map() == net.repos_c.show(net.rid).canonical.ref_map()
            assert refs_of(net.repos_c.storage.path(net.rid)) == refs_of(honest.repos.storage.path(net.rid))
            fsck(net.repos_c.storage.path(net.rid))
            warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert any(str(m) in line and "bad signature" in line for line in warned)
            assert not any(str(s) in line for line in warned)


async def test_a_server_that_stalls_mid_pack_fails_over_to_the_next(tmp_path: Path, source: History) -> None:
    """X answers ``GetRefs`` first and wins, H's request is cancelled; X's
    pack stops midway: past the idle timeout X is out, H is asked again
    and serves; nothing of X's pack stays."""
    config = SyncConfig(idle_timeout=0.5)
    with trio.fail_after(30):
        async with network(tmp_path, source, 2) as net:
            honest, staller = net.services
            staller.stall = True
            honest.gate = trio.Event()
            events: list[RaceEvent] = []

            def heard(event: RaceEvent) -> None:
                events.append(event)
                if isinstance(event, PeerOutraced):
                    honest.gate.set()  # type: ignore[union-attr]

            x, h = net.ids(1, 0)
            got = await fetch_first(net.c, net.repos_c, [x, h], net.rid, config, progress=heard)
            assert got.peer == h and got.asked == (x, h)
            [failure] = got.failures
            assert failure.peer == x and isinstance(failure.error, SyncStalled)
            assert [e for e in events if not isinstance(e, FetchProgressed)] == [
                PeerAsked(x), PeerAsked(h), PeerOutraced(h, x), failure, PeerAsked(h),
            ]  # fmt: skip
            served = [e.peer for e in events if isinstance(e, FetchProgressed)]
            assert served[0] == x and served[-1] == h
            assert staller.get_refs == 1  # the objects came with the refs already received
            assert got.state.canonical.ref_map() == honest.repos.show(net.rid).canonical.ref_map()
            fsck(net.repos_c.storage.path(net.rid))


async def test_a_winner_whose_statement_receive_refuses_fails_over(tmp_path: Path, source: History) -> None:
    """F's answer decodes and its chain verifies, so it wins; but its
    statement stands on an identity that is not this repository's, which
    only ``receive`` judges: F is out with the reason, and H serves."""
    with trio.fail_after(30):
        async with network(tmp_path, source, 2) as net:
            honest, forger = net.services
            true = net.true
            signed = SignedStatement.decode(true.statements[0])
            foreign = sign_statement(net.seeds[0].keypair, replace(signed.statement, identity=bytes(range(32))))
            forger.refs = replace(true, statements=(foreign.encode(),))
            honest.gate = trio.Event()
            events: list[RaceEvent] = []

            def heard(event: RaceEvent) -> None:
                events.append(event)
                if isinstance(event, PeerOutraced):
                    honest.gate.set()  # type: ignore[union-attr]

            f, h = net.ids(1, 0)
            got = await fetch_first(net.c, net.repos_c, [f, h], net.rid, progress=heard)
            assert got.peer == h
            [failure] = got.failures
            assert failure.peer == f and "no revision of this repository" in str(failure.error)
            assert got.state.canonical.ref_map() == honest.repos.show(net.rid).canonical.ref_map()


async def test_peers_without_the_repository_are_out_and_the_limit_holds(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    """Two peers without the repository: each answers NOT_FOUND and is out
    (logged at info), and the race ends with both reasons; with a limit of
    1 the second is never asked; with no candidate, no one is."""
    with trio.fail_after(30):
        async with network(tmp_path, source, 1, empty=2) as net:
            e1, e2 = net.ids(1, 2)
            with caplog.at_level(logging.INFO, logger="guts.sync"), pytest.raises(NoPeerServed) as info:
                await fetch_first(net.c, net.repos_c, [e1, e2], net.rid)
            assert {f.peer for f in info.value.failures} == {e1, e2}
            for failure in info.value.failures:
                assert isinstance(failure.error, SyncRefused) and failure.error.reason is RefusedReason.NOT_FOUND
            assert "NOT_FOUND" in str(info.value)
            lines = [r for r in caplog.records if r.name == "guts.sync" and str(e1) in r.getMessage()]
            assert lines and all(r.levelno == logging.INFO for r in lines)
            assert len(net.repos_c) == 0 and await net.repos_c.storage.list() == []

            events: list[RaceEvent] = []
            with pytest.raises(NoPeerServed) as info:
                await fetch_first(net.c, net.repos_c, [e1, e2], net.rid, limit=1, progress=events.append)
            assert events == [PeerAsked(e1), info.value.failures[0]]
            with pytest.raises(NoPeerServed, match="no peer to ask"):
                await fetch_first(net.c, net.repos_c, [], net.rid)

            h = net.ids(0)[0]
            got = await fetch_first(net.c, net.repos_c, [e1, e2, h], net.rid, width=1)
            assert got.peer == h and got.asked == (e1, e2, h) and len(got.failures) == 2


# -- the sync route ------------------------------------------------------------------------


async def collect(events: Any, on: Any = None) -> list[dict[str, Any]]:
    seen = []
    async with events as channel:
        async for event in channel:
            seen.append(event)
            if on is not None:
                on(event)
    return seen


async def test_the_sync_route_races_and_names_the_peers_it_asked(tmp_path: Path, source: History) -> None:
    """``POST /v1/repo/sync``'s events over a race: a ``peer`` line per
    request, ``failed`` for the liar only, ``cancelled`` for the slow
    peer, progress from the server alone, and ``done`` naming the server
    and every peer asked."""
    from guts.control._repo_sync import sync_answer, sync_events
    from guts.control.repo import state_json

    with trio.fail_after(30):
        async with network(tmp_path, source, 3) as net:
            honest, slow, liar = net.services
            slow.gate, honest.gate = trio.Event(), trio.Event()
            liar.refs = bad_signature(net.true)
            s, m, h = (str(p) for p in net.ids(1, 2, 0))

            def on(event: dict[str, Any]) -> None:
                if event["event"] == "failed":
                    honest.gate.set()  # type: ignore[union-attr]

            targets = net.ids(1, 2, 0)
            seen = await collect(sync_events(net.c, net.repos_c, net.rid, targets, SyncConfig(), state_json), on)
            steps = [e for e in seen if e["event"] != "progress"]
            kinds = [(e["event"], e.get("peer")) for e in steps]
            assert kinds == [("peer", s), ("peer", m), ("peer", h), ("failed", m), ("cancelled", s), ("done", h)]
            assert "bad signature" in steps[3]["error"] and steps[4]["winner"] == h
            assert {e["peer"] for e in seen if e["event"] == "progress"} == {h}
            done = seen[-1]
            assert done["asked"] == [s, m, h] and done["changed"] is True and done["received"] > 0
            assert done["failures"] == [{"peer": m, "error": steps[3]["error"]}]
            assert done["repository"]["refs"] == dict(net.repos_c.show(net.rid).canonical.refs)

            # Up to date now: the answer without progress, from the first to answer.
            slow.gate.set()  # type: ignore[union-attr]
            answer = await sync_answer(net.c, net.repos_c, net.rid, [net.ids(0)[0]], SyncConfig(), state_json)
            assert answer["peer"] == h and answer["changed"] is False and answer["asked"] == [h]


async def test_the_sync_route_asks_the_dht_seeds_once_the_connected_peers_fail(
    tmp_path: Path, source: History
) -> None:
    """Connected to two peers without the repository: both fail, the seeds
    lookup (told the peers asked) finds the seed, which serves."""
    from guts.control._repo_sync import sync_events
    from guts.control.repo import state_json

    with trio.fail_after(30):
        async with network(tmp_path, source, 1, empty=2) as net:
            h, e1, e2 = net.ids(0, 1, 2)
            told: list[set[PeerId]] = []

            async def seeds(tried: Any) -> list[PeerId]:
                told.append(set(tried))
                return [h]

            seen = await collect(sync_events(net.c, net.repos_c, net.rid, [e1, e2], SyncConfig(), state_json, seeds))
            steps = [e for e in seen if e["event"] != "progress"]
            assert [e["event"] for e in steps] == ["peer", "peer", "failed", "failed", "lookup", "peer", "done"]
            assert told == [{e1, e2}] and steps[4]["seeds"] == 1
            assert seen[-1]["peer"] == str(h) and seen[-1]["asked"] == [str(e1), str(e2), str(h)]
            assert all("NOT_FOUND" in f["error"] for f in seen[-1]["failures"])

            async def none(tried: Any) -> list[PeerId]:
                return []

            other = await Repositories.open(tmp_path / "other")
            seen = await collect(sync_events(net.c, other, net.rid, [e1], SyncConfig(), state_json, none))
            assert [e["event"] for e in seen] == ["peer", "failed", "lookup", "error"]
            assert seen[-1]["kind"] == "sync_failed" and str(e1) in seen[-1]["message"]


# -- what people see ---------------------------------------------------------------


def raced_events() -> list[dict[str, Any]]:
    """A sync's events over a race: S outrun, M failed, H served."""
    s, m, h = (f"/memory/{n}/p2p/12D3KooW{n * 44}" for n in "smh")
    return [
        {"event": "peer", "peer": s},
        {"event": "peer", "peer": m},
        {"event": "peer", "peer": h},
        {"event": "failed", "peer": m, "error": "namespace x: bad signature"},
        {"event": "cancelled", "peer": s, "winner": h},
        {"event": "progress", "peer": h, "phase": "refs", "received": 0, "namespaces": 1},
        {"event": "progress", "peer": h, "phase": "objects", "received": 1 << 20, "namespaces": 1},
        {"event": "progress", "peer": h, "phase": "applying", "received": 2 << 20, "namespaces": 1},
        {
            "event": "done", "peer": h, "changed": True, "received": 2 << 20, "asked": [s, m, h],
            "failures": [{"peer": m, "error": "namespace x: bad signature"}], "repository": {"name": "source"},
        },
    ]  # fmt: skip


def test_guts_repo_sync_names_each_request_and_who_served(capsys: pytest.CaptureFixture[str]) -> None:
    from guts._cli._sync_view import _Lines

    view = _Lines()
    for event in raced_events():
        view.show(event)
    s, m, h = ("12D3KooW" + n * 44 for n in "smh")
    short = {p: f"{p[:8]}…{p[-6:]}" for p in (s, m, h)}
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"asking {short[s]}",
        f"asking {short[m]}",
        f"asking {short[h]}",
        f"{short[m]}: namespace x: bad signature",
        f"{short[s]}: cancelled, {short[h]} answered first",
        f"1 signed namespaces from {short[h]}, verified",
        f"receiving objects from {short[h]}",
        "received 2.00 MiB; checking and applying",
        f"served by {short[h]}; asked 3 peers: {short[s]}, {short[m]}, {short[h]}",
    ]


def test_a_clone_names_the_peer_that_served_and_every_peer_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from guts._cli.remote import _SyncLines

    view = _SyncLines(progress=True, verbosity=1)
    for event in raced_events():
        view.show(event)
    s, m, h = ("12D3KooW" + n * 44 for n in "smh")
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "asking" in line] == [f"guts: asking {p}" for p in (s, m, h)]
    assert err.count("guts: fetching from") == 1 and f"guts: fetching from {h}\n" in err
    assert f"guts: {m}: namespace x: bad signature" in err
    assert f"guts: {s}: cancelled, {h} answered first" in err
    assert f"guts: fetched 'source' from {h} (asked {s}, {m}, {h})" in err
    quiet = _SyncLines(progress=False, verbosity=0)
    for event in raced_events():
        quiet.show(event)
    assert capsys.readouterr().err == ""


def test_the_terminal_view_keeps_a_bar_per_peer_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from guts._cli._sync_view import _Bar

    with _Bar() as view:
        for event in raced_events():
            view.show(event)
        bars = [(task.description, task.completed, task.finished) for task in view.progress.tasks]
    ssss, mmmm, hhhh = ("12D3KooW…" + n * 6 for n in "smh")
    assert bars == [
        (f"{ssss}: cancelled, {hhhh} answered first", 0, True),
        (f"{mmmm}: failed", 0, True),
        (f"{hhhh}: done", 2 << 20, True),
    ]
    err = capsys.readouterr().err
    assert f"{mmmm}: namespace x: bad signature" in err and f"served by {hhhh}; asked 3 peers" in err
