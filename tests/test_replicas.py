"""How far a push got: the probe's reading of a ``Refs`` answer, the
waiting logic (pure, then driven with fake peers on a mock clock), and
the helper's push option and lines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import trio
import trio.testing

from guts._cli.remote import replicas_text
from guts.config import load_config
from guts.crypto import KeyPair
from guts.errors import ConfigError, DialError, InputError
from guts.peer import PeerId
from guts.repo.identity import create_genesis
from guts.repo.remote_helper import MAX_REPLICAS, replicas_option
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, sign_statement
from guts.replicate.replicas import MAX_PEERS, ReplicasConfig, ReplicaWatch, wait_for_replicas
from guts.sync import Refs, SyncRefused, RefusedReason
from guts.sync.probe import held_seq

K1, K2 = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
GENESIS = create_genesis(K1, name="guts", nonce=bytes(range(16)), delegates=[K1.public_key, K2.public_key]).document
RID = Rid.of_genesis(GENESIS.raw)
OTHER_RID = Rid.of_genesis(create_genesis(K2, name="other", nonce=bytes(range(16))).document.raw)
PEERS = [KeyPair.from_seed(bytes([n]) * 32).peer_id for n in range(10, 80)]


# -- the probe's reading of a Refs answer --------------------------------------------


def chain(key: KeyPair, length: int, rid: Rid = RID) -> list[SignedStatement]:
    out: list[SignedStatement] = []
    previous: Statement | None = None
    for n in range(length):
        refs = {"refs/heads/main": f"{n + 1:040x}"}
        previous = next_statement(previous, rid=rid, signer=key.peer_id, identity=GENESIS, refs=refs.items())
        out.append(sign_statement(key, previous))
    return out


def refs_of(*statements: bytes) -> Refs:
    return Refs(identity=(), statements=statements, sigrefs=tuple("0" * 40 for _ in statements))


def test_held_seq_reads_the_one_namespace_asked_about() -> None:
    mine, theirs = chain(K1, 3), chain(K2, 5)
    answer = refs_of(theirs[-1].encode(), mine[1].encode())
    assert held_seq(answer, RID, K1.peer_id) == 2
    assert held_seq(answer, RID, K2.peer_id) == 5
    assert held_seq(refs_of(theirs[0].encode()), RID, K1.peer_id) is None
    assert held_seq(refs_of(), RID, K1.peer_id) is None


def test_held_seq_counts_no_statement_it_would_not_take() -> None:
    good = chain(K1, 2)[-1]
    # Signed by someone else than the signer it names.
    forged = SignedStatement.__new__(SignedStatement)
    object.__setattr__(forged, "statement", good.statement)
    object.__setattr__(forged, "signature", K2.sign(good.statement.canonical))
    assert held_seq(refs_of(forged.encode()), RID, K1.peer_id) is None
    # One byte of the signature changed.
    data = bytearray(good.encode())
    data[-1] ^= 1
    assert held_seq(refs_of(bytes(data)), RID, K1.peer_id) is None
    # The signer's statement, but about another repository.
    elsewhere = chain(K1, 4, rid=OTHER_RID)[-1]
    assert held_seq(refs_of(elsewhere.encode()), RID, K1.peer_id) is None
    # Garbage that mentions the signer is skipped, the real one still read.
    junk = f"\nsigner {K1.peer_id}\n".encode()
    assert held_seq(refs_of(junk, good.encode()), RID, K1.peer_id) == 2


# -- the pure bookkeeping -------------------------------------------------------------


def test_the_watch_asks_known_peers_once_each_and_again_when_behind() -> None:
    config = ReplicasConfig(interval=0.2, max_backoff=1.0)
    watch = ReplicaWatch(seq=3, want=2, config=config)
    assert watch.add([PEERS[0], PEERS[1], PEERS[0]], now=0.0) == 2
    assert watch.short is False and watch.known == 2
    assert watch.due(0.0) == [PEERS[0], PEERS[1]]
    assert watch.due(0.0) == []  # in flight: not asked twice at once
    assert watch.next_at() is None
    watch.answered(PEERS[0], 3, now=0.1)
    watch.answered(PEERS[1], 2, now=0.1)  # behind: asked again an interval later
    assert not watch.done
    assert watch.next_at() == pytest.approx(0.3)
    assert watch.due(0.29) == []
    assert watch.due(0.31) == [PEERS[1]]
    watch.answered(PEERS[1], 7, now=0.4)  # a later statement counts
    assert watch.done
    report = watch.report(0.4)
    assert report.have == (PEERS[0], PEERS[1]) and report.reached and report.want == 2
    assert set(report.asked) == {PEERS[0], PEERS[1]}


def test_a_failing_peer_is_asked_again_after_a_doubling_backoff() -> None:
    watch = ReplicaWatch(seq=1, want=1, config=ReplicasConfig(interval=0.1, max_backoff=0.4))
    watch.add([PEERS[0]], now=0.0)
    now, gaps = 0.0, []
    for _ in range(5):
        assert watch.due(now) == [PEERS[0]]
        watch.failed(PEERS[0], now)
        upcoming = watch.next_at()
        assert upcoming is not None
        gaps.append(round(upcoming - now, 6))
        now = upcoming
    assert gaps == [0.1, 0.2, 0.4, 0.4, 0.4]
    watch.due(now)
    watch.answered(PEERS[0], None, now)  # an answer resets the backoff
    assert watch.next_at() == pytest.approx(now + 0.1)


def test_the_watch_knows_at_most_max_peers_and_ignores_stray_answers() -> None:
    watch = ReplicaWatch(seq=1, want=40, config=ReplicasConfig(max_peers=5))
    assert watch.add(PEERS[:20], now=0.0) == 5
    assert watch.known == 5 and watch.short
    assert watch.add(PEERS[20:], now=0.0) == 0
    watch.answered(PEERS[30], 9, now=0.0)  # never asked: ignored
    watch.failed(PEERS[31], now=0.0)
    assert watch.known == 5 and not watch.report(0).have
    assert ReplicaWatch(seq=1, want=0).done


# -- the waiting, driven with fakes ---------------------------------------------------


class FakeNetwork:
    """Peers that get the statement at given times (``None``: never), or
    fail to answer at all; every probe is counted."""

    def __init__(self, arrivals: dict[PeerId, float | None], *, failing: Iterable[PeerId] = (),
                 hanging: Iterable[PeerId] = ()) -> None:  # fmt: skip
        self.arrivals = arrivals
        self.failing = set(failing)
        self.hanging = set(hanging)
        self.probes: dict[PeerId, int] = {}
        self.started = trio.current_time()

    async def probe(self, peer: PeerId) -> int | None:
        self.probes[peer] = self.probes.get(peer, 0) + 1
        await trio.sleep(0.01)  # a round trip
        if peer in self.hanging:
            await trio.sleep_forever()
        if peer in self.failing:
            raise DialError(f"{peer} is unreachable")
        at = self.arrivals.get(peer)
        if at is None and peer not in self.arrivals:
            raise SyncRefused("refused (NOT_FOUND)", RefusedReason.NOT_FOUND)
        return 4 if at is not None and trio.current_time() - self.started >= at else 3


async def test_every_follower_known_now_is_waited_for(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({PEERS[0]: 0.3, PEERS[1]: 0.5})
    report = await wait_for_replicas(4, want=None, timeout=2.0, followers=lambda: [PEERS[0], PEERS[1]],
                                     probe=net.probe)  # fmt: skip
    assert report.want == 2 and report.reached
    assert report.have == (PEERS[0], PEERS[1])
    assert 0.5 <= report.elapsed < 0.75
    assert max(net.probes.values()) <= 5  # asked about every 0.15 s, not in a tight loop


async def test_no_follower_means_nothing_to_wait_for(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({})
    report = await wait_for_replicas(4, want=None, timeout=2.0, followers=lambda: [], probe=net.probe)
    assert report.want == 0 and report.have == () and report.asked == ()
    assert report.elapsed == 0 and net.probes == {}


async def test_the_deadline_ends_a_wait_that_is_not_met(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({PEERS[0]: None, PEERS[1]: 0.2}, failing=[PEERS[2]], hanging=[PEERS[3]])
    followers = [PEERS[0], PEERS[1], PEERS[2], PEERS[3]]
    config = ReplicasConfig(probe_timeout=0.5)
    report = await wait_for_replicas(4, want=None, timeout=2.0, followers=lambda: followers, probe=net.probe,
                                     config=config)  # fmt: skip
    assert report.elapsed == pytest.approx(2.0)
    assert report.have == (PEERS[1],) and not report.reached
    assert set(report.asked) == set(followers)
    assert 8 <= net.probes[PEERS[0]] <= 14  # every 0.15 s or so for 2 s
    assert net.probes[PEERS[2]] <= 5  # a failing peer backs off
    assert net.probes[PEERS[3]] <= 4  # a hanging one is given up on after probe_timeout


async def test_seeds_from_the_dht_fill_in_for_missing_followers(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({PEERS[0]: 0.1, PEERS[5]: 0.4, PEERS[6]: None})
    lookups = []

    async def seeds() -> list[PeerId]:
        lookups.append(trio.current_time())
        await trio.sleep(0.3)
        return [PEERS[0], PEERS[5], PEERS[6]]

    report = await wait_for_replicas(4, want=2, timeout=5.0, followers=lambda: [PEERS[0]], probe=net.probe,
                                     seeds=seeds)  # fmt: skip
    assert report.reached and set(report.have) == {PEERS[0], PEERS[5]}
    assert len(lookups) == 1
    assert report.elapsed < 1.0  # done when two had it, not at the deadline


async def test_no_lookup_when_the_followers_suffice(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({PEERS[0]: 0.0})

    async def seeds() -> list[PeerId]:
        raise AssertionError("the DHT was asked although a follower suffices")

    report = await wait_for_replicas(4, want=1, timeout=5.0, followers=lambda: [PEERS[0]], probe=net.probe,
                                     seeds=seeds)  # fmt: skip
    assert report.reached and report.elapsed < 0.1


async def test_followers_that_join_during_a_wait_for_n_are_asked(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({PEERS[0]: 0.0, PEERS[1]: 0.0})
    started = trio.current_time()

    def followers() -> list[PeerId]:
        return [PEERS[0], PEERS[1]] if trio.current_time() - started >= 1.0 else [PEERS[0]]

    report = await wait_for_replicas(4, want=2, timeout=5.0, followers=followers, probe=net.probe)
    assert report.reached and 1.0 <= report.elapsed < 1.3


async def test_a_wait_asks_at_most_max_peers(autojump_clock: trio.testing.MockClock) -> None:
    net = FakeNetwork({peer: None for peer in PEERS})
    report = await wait_for_replicas(4, want=None, timeout=1.0, followers=lambda: PEERS, probe=net.probe)
    assert report.want == MAX_PEERS and len(report.asked) == MAX_PEERS == len(net.probes)


# -- git push -o replicas=N, and what the push says -----------------------------------


def test_the_replicas_push_option() -> None:
    assert replicas_option("replicas=1") == 1
    assert replicas_option(f"replicas={MAX_REPLICAS}") == MAX_REPLICAS
    assert MAX_REPLICAS == MAX_PEERS  # the node asks no more peers than one may want
    for bad in ("replicas=0", f"replicas={MAX_REPLICAS + 1}", "replicas=99999", "replicas=" + "9" * 5000):
        with pytest.raises(InputError, match="1 to 32 seeds"):
            replicas_option(bad)
    for unknown in ("ci.skip", "replicas", "replicas=", "replicas=two", "replicas=2 ", " replicas=2",
                    "replicas=-1", "Replicas=2", "x" * 500):  # fmt: skip
        with pytest.raises(InputError, match="means nothing to guts, which takes -o replicas=N") as info:
            replicas_option(unknown)
        assert len(str(info.value)) < 200


def test_what_a_push_says() -> None:
    assert replicas_text(1, 1, 0.43, requested=None) == "1 seed has the new state (0.4 s)"
    assert replicas_text(3, 3, 1.0, requested=None) == "3 seeds have the new state (1.0 s)"
    assert replicas_text(1, 3, 2.0, requested=None) == (
        "1 of 3 connected seeds have the new state after 2.0 s; the others fetch it as they can"
    )
    none_yet = replicas_text(0, 1, 2.0, requested=None)
    assert none_yet == (
        "no seed has the new state yet after 2.0 s; it stays signed on this node and goes out as seeds connect"
    )
    assert replicas_text(0, 0, 0.0, requested=None) == (
        "no seed has the new state yet (none is connected); it stays signed on this node and goes out as seeds connect"
    )
    assert replicas_text(2, 2, 0.6, requested=2) == "2 seeds have the new state, as -o replicas=2 asked (0.6 s)"
    short = replicas_text(1, 2, 30.0, requested=2)
    assert short is not None and short.startswith("only 1 of the 2 seeds -o replicas=2 asked for had the new state after 30.0 s")
    assert replicas_text(0, 2, 3.0, requested=2, quiet=True) is not None  # a shortfall is said even to -q
    assert replicas_text(2, 2, 0.6, requested=2, quiet=True) is None
    assert replicas_text(1, 1, 0.4, requested=None, quiet=True) is None


# -- the settings ---------------------------------------------------------------------


def test_the_push_settings(tmp_path: Path) -> None:
    config = load_config(tmp_path, env={})
    assert (config.push_wait, config.push_replicas_timeout) == (2.0, 30.0)
    assert load_config(tmp_path, env={"GUTS_PUSH_WAIT": "0"}).push_wait == 0
    assert load_config(tmp_path, env={"GUTS_PUSH_REPLICAS_TIMEOUT": "1.5"}).push_replicas_timeout == 1.5
    with pytest.raises(ConfigError, match="GUTS_PUSH_WAIT: 601 is outside 0 to 600"):
        load_config(tmp_path, env={"GUTS_PUSH_WAIT": "601"})
    with pytest.raises(ConfigError, match="GUTS_PUSH_WAIT: expected a number"):
        load_config(tmp_path, env={"GUTS_PUSH_WAIT": "soon"})
    (tmp_path / "config.toml").write_text("push_wait = 0.5\npush_replicas_timeout = 0.05\n")
    with pytest.raises(ConfigError, match=r"config.toml: push_replicas_timeout: 0.05 is outside 0.1 to 3600"):
        load_config(tmp_path, env={})
    (tmp_path / "config.toml").write_text("push_wait = 0.5\npush_replicas_timeout = 90\n")
    config = load_config(tmp_path, env={})
    assert (config.push_wait, config.push_replicas_timeout) == (0.5, 90.0)
