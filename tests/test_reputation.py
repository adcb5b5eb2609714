"""Peer scoring and blocking: the sans-IO core, the block store, and the
guard on hosts (memory transport; TCP on loopback for the address gate,
which needs an IP)."""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.crypto import KeyPair
from guts.errors import DialError, InputError
from guts.host import HostConfig, open_host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.reputation import (
    BLOCKS_FILE,
    Block,
    BlockListFull,
    BlockStore,
    BlockStoreError,
    BlockStoreFull,
    PeerGuard,
    Reputation,
    ReputationConfig,
    Verdict,
    parse_target,
    target_text,
)
from guts.transport import MemoryNetwork, MemoryTransport, TcpTransport

from .helpers import full_addr

_KEYS = [KeyPair.generate().peer_id for _ in range(40)]


def peer(i: int) -> PeerId:
    return _KEYS[i]


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


# -- the core -----------------------------------------------------------------


def test_thresholds_throttle_then_disconnect_then_block() -> None:
    rep = Reputation()
    p = peer(0)
    seen = []
    for _ in range(10):  # all at one instant: no decay
        seen.append(rep.penalize(p, "bad frame", 10, now=1000.0).verdict)
    # -10 ok, -20 throttle (at the threshold), -50 disconnect, -100 block
    assert seen[:2] == [Verdict.OK, Verdict.THROTTLE]
    assert seen[4] is Verdict.DISCONNECT and seen[3] is Verdict.THROTTLE
    assert seen[8] is Verdict.DISCONNECT and seen[9] is Verdict.BLOCK
    assert rep.blocked_peer(p, 1000.0)
    assert rep.score(p, 1000.0) == 0.0  # a block starts the score afresh
    assert rep.verdict(p, 1000.0) is Verdict.BLOCK
    block = rep.block_of(p)
    assert block is not None and not block.manual and block.offences == 1
    assert block.expires == 1000.0 + 600.0 and block.reason == "bad frame"
    assert not rep.blocked_peer(p, 1600.0) and rep.verdict(p, 1600.0) is Verdict.OK


def test_scores_decay_with_the_half_life() -> None:
    rep = Reputation(ReputationConfig(half_life=100.0))
    p = peer(1)
    assert rep.penalize(p, "x", 60, now=0.0).verdict is Verdict.DISCONNECT
    assert rep.score(p, 100.0) == pytest.approx(-30.0)
    assert rep.verdict(p, 100.0) is Verdict.THROTTLE
    assert rep.score(p, 200.0) == pytest.approx(-15.0)
    assert rep.verdict(p, 200.0) is Verdict.OK
    assert rep.score(p, 10_000.0) == 0.0


def test_repeat_offences_block_longer_up_to_the_cap() -> None:
    rep = Reputation()
    p = peer(2)
    now = 0.0
    durations = []
    for _ in range(7):
        outcome = rep.penalize(p, "forged", 100, now)
        assert outcome.verdict is Verdict.BLOCK
        (block,) = outcome.blocked
        assert block.expires is not None
        durations.append(block.expires - block.since)
        now = block.expires  # the first moment it is free again
        assert not rep.blocked_peer(p, now)
    assert durations == [600.0, 2400.0, 9600.0, 38400.0, 86400.0, 86400.0, 86400.0]


def test_offences_are_forgotten_after_forget_after() -> None:
    config = ReputationConfig(forget_after=1000.0)
    rep = Reputation(config)
    p = peer(3)
    (first,) = rep.penalize(p, "x", 100, 0.0).blocked
    assert first.expires == 600.0
    assert rep.purge(1500.0) == []  # expired 900 s ago: still remembered
    assert rep.purge(1601.0) == [first]
    (again,) = rep.penalize(p, "x", 100, 1700.0).blocked
    assert again.offences == 1 and again.expires == 1700.0 + 600.0


def test_a_blocked_peer_is_not_penalized_further() -> None:
    rep = Reputation()
    p = peer(4)
    rep.penalize(p, "x", 100, 0.0)
    outcome = rep.penalize(p, "y", 100, 1.0)
    assert outcome.verdict is Verdict.BLOCK and outcome.blocked == ()
    assert rep.block_of(p) is not None and rep.block_of(p).offences == 1  # type: ignore[union-attr]


def test_an_address_many_identities_misbehave_from_is_blocked() -> None:
    rep = Reputation()
    for i in range(2):
        outcome = rep.penalize(peer(10 + i), "spam", 100, 0.0, ip="203.0.113.9")
        assert [b.target for b in outcome.blocked] == [peer(10 + i)]
    assert not rep.blocked_ip("203.0.113.9", 0.0)
    outcome = rep.penalize(peer(12), "spam", 100, 0.0, ip="203.0.113.9")
    assert {target_text(b.target) for b in outcome.blocked} == {"203.0.113.9", str(peer(12))}
    assert rep.blocked_ip("203.0.113.9", 1.0)
    assert rep.blocked_ip("::ffff:203.0.113.9", 1.0)  # the same address, mapped
    assert not rep.blocked_ip("203.0.113.10", 1.0)
    assert not rep.blocked_ip("203.0.113.9", 601.0)


def test_loopback_is_never_blocked_by_score_unless_configured() -> None:
    for protect in (True, False):
        rep = Reputation(ReputationConfig(protect_loopback=protect))
        for i in range(5):
            rep.penalize(peer(i), "spam", 100, 0.0, ip="127.0.0.1")
        assert rep.blocked_ip("127.0.0.1", 1.0) is not protect


def test_manual_blocks_permanent_timed_and_networks() -> None:
    rep = Reputation()
    forever = rep.block(peer(0), 0.0)
    assert forever.manual and forever.expires is None
    assert rep.blocked_peer(peer(0), 1e12)
    timed = rep.block(net("10.0.0.0/8"), 0.0, duration=7200, reason="scanner")
    assert timed.expires == 7200.0 and timed.reason == "scanner"
    assert rep.blocked_ip("10.200.3.4", 7199.0)
    assert not rep.blocked_ip("10.200.3.4", 7200.0)
    assert not rep.blocked_ip("11.0.0.1", 0.0)
    rep.block(net("2001:db8::/32"), 0.0)
    assert rep.blocked_ip("2001:db8::17", 5.0) and not rep.blocked_ip("2001:db9::1", 5.0)
    rep.block(net("192.0.2.7"), 0.0)
    assert rep.blocked_ip("192.0.2.7", 1.0) and not rep.blocked_ip("192.0.2.8", 1.0)
    # host bits are cleared: 10.1.2.3/8 names 10.0.0.0/8
    assert rep.unblock(net("10.1.2.3/8")) == timed
    assert not rep.blocked_ip("10.200.3.4", 1.0)
    assert rep.unblock(peer(0)) == forever and not rep.blocked_peer(peer(0), 1.0)
    assert rep.unblock(peer(0)) is None
    with pytest.raises(ValueError):
        rep.block(peer(1), 0.0, duration=0)


def test_a_manual_block_counts_an_offence_and_unblock_forgets_them() -> None:
    rep = Reputation()
    p = peer(5)
    rep.penalize(p, "x", 100, 0.0)
    assert rep.block(p, 10.0).offences == 1  # replaces the active block
    rep.unblock(p)
    assert rep.block_of(p) is None
    (block,) = rep.penalize(p, "x", 100, 20.0).blocked
    assert block.offences == 1


def test_external_scores_count_only_when_negative() -> None:
    rep = Reputation()
    p = peer(6)
    rep.penalize(p, "x", 30, 0.0)
    assert rep.note_score(p, "gossip", 80.0, 0.0) is Verdict.THROTTLE  # rewards do not wash it out
    assert rep.note_score(p, "gossip", -30.0, 0.0) is Verdict.DISCONNECT
    assert rep.score(p, 0.0) == pytest.approx(-60.0)
    assert rep.note_score(p, "gossip", 0.0, 0.0) is Verdict.THROTTLE
    assert rep.note_score(peer(7), "gossip", 5.0, 0.0) is Verdict.OK
    assert rep.peers_tracked == 1  # a good score alone keeps no entry


def test_scores_are_bounded_and_blocked_peers_kept_first() -> None:
    rep = Reputation(ReputationConfig(max_peers=3, max_ips=2))
    rep.penalize(peer(0), "x", 100, 0.0)  # blocked
    for i in range(1, 20):
        rep.penalize(peer(i), "x", 10, 0.0, ip=f"198.51.100.{i}")
    assert rep.peers_tracked == 3
    assert rep.blocked_peer(peer(0), 1.0)
    assert rep.score(peer(19), 0.0) == -10.0 and rep.score(peer(1), 0.0) == 0.0  # least recent dropped
    assert len(rep._ips) == 2


def test_the_block_list_is_bounded_manual_blocks_last() -> None:
    rep = Reputation(ReputationConfig(max_blocks=3))
    rep.penalize(peer(0), "x", 100, 0.0)
    rep.block(peer(1), 0.0)
    rep.block(peer(2), 0.0)
    rep.block(peer(3), 0.0)  # pushes out the automatic block
    assert rep.block_of(peer(0)) is None
    with pytest.raises(BlockListFull):
        rep.block(peer(4), 0.0)
    assert rep.block(peer(3), 1.0, duration=5).expires == 6.0  # a replacement needs no room
    outcome = rep.penalize(peer(5), "x", 100, 0.0)
    assert outcome.blocked == () and outcome.verdict is Verdict.BLOCK  # no room: disconnected, not listed
    assert [target_text(b.target) for b in rep.blocks(0.0)] == [str(peer(1)), str(peer(2)), str(peer(3))]


def test_parse_target() -> None:
    assert parse_target(str(peer(0))) == peer(0)
    assert parse_target(" 192.0.2.1 ") == net("192.0.2.1/32")
    assert parse_target("192.0.2.1/24") == net("192.0.2.0/24")
    assert parse_target("2001:db8::1") == net("2001:db8::1/128")
    assert target_text(parse_target("192.0.2.1")) == "192.0.2.1"
    assert target_text(parse_target("192.0.2.0/24")) == "192.0.2.0/24"
    for bad in ("", "nope", "300.1.1.1", "12D3KooW0OIl"):
        with pytest.raises(InputError):
            parse_target(bad)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, 60, allow_nan=False), st.floats(0, 50, allow_nan=False)),
        max_size=60,
    )
)
def test_score_is_never_positive_and_the_verdict_follows_the_score(
    events: list[tuple[int, float, float]],
) -> None:
    config = ReputationConfig(half_life=30.0)
    rep = Reputation(config)
    now = 0.0
    for who, weight, gap in events:
        now += gap
        outcome = rep.penalize(peer(who), "x", weight, now)
        assert outcome.score <= 0
        if outcome.verdict is not Verdict.BLOCK:
            assert outcome.score > config.block
            assert (outcome.score <= config.disconnect) == (outcome.verdict is Verdict.DISCONNECT)
        else:
            assert rep.blocked_peer(peer(who), now) or outcome.blocked == ()
        for i in range(6):
            assert rep.score(peer(i), now) <= 0


_ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_nets = st.tuples(_ipv4, st.integers(8, 32)).map(lambda t: ipaddress.ip_network((t[0], t[1]), strict=False))


@settings(max_examples=200)
@given(st.lists(st.tuples(_nets, st.sampled_from([None, 10.0, 100.0])), max_size=20), st.lists(_ipv4, max_size=20),
       st.floats(0, 200))  # fmt: skip
def test_blocked_ip_agrees_with_a_scan_of_the_list(
    blocks: list[tuple[ipaddress.IPv4Network, float | None]], probes: list[ipaddress.IPv4Address], now: float
) -> None:
    rep = Reputation()
    for network, duration in blocks:
        rep.block(network, 0.0, duration=duration)
    for gone, _ in blocks[::3]:
        rep.unblock(gone)
    active = rep.blocks(now)
    for ip in probes + [n.network_address for n, _ in blocks]:
        expected = any(
            isinstance(b.target, ipaddress.IPv4Network) and ip in b.target and b.active(now) for b in active
        )
        assert rep.blocked_ip(ip, now) is expected
        assert rep.blocked_ip(str(ip), now) is expected


# -- the store ---------------------------------------------------------------------


def test_store_keeps_blocks_across_reopening_and_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    blocks = [
        Block(peer(0), "forged", 10.0, 610.0, offences=2),
        Block(net("10.0.0.0/8"), "scanner", 11.0, None, manual=True),
        Block(net("2001:db8::1/128"), "by hand", 12.0, 99.5, manual=True),
    ]
    with BlockStore.in_home(home) as store:
        for block in blocks:
            store.save(block)
        store.save(Block(peer(1), "x", 13.0, 20.0))
        assert store.delete(peer(1)) and not store.delete(peer(1))
        assert len(store) == 3
    path = home / BLOCKS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    with BlockStore.in_home(home) as store:
        assert store.load() == blocks
        assert store.purge(100.0) == 1  # the IPv6 block expired at 99.5
        assert store.load() == blocks[:2]


def test_store_narrows_a_file_open_to_others(tmp_path: Path) -> None:
    path = tmp_path / BLOCKS_FILE
    path.touch()
    os.chmod(path, 0o644)
    BlockStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_store_refuses_a_newer_schema_and_a_non_database(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite"
    BlockStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(BlockStoreError, match="newer"):
        BlockStore(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    os.chmod(junk, 0o600)
    with pytest.raises(BlockStoreError, match="junk.sqlite"):
        BlockStore(junk)


def test_store_skips_rows_that_do_not_decode(tmp_path: Path) -> None:
    path = tmp_path / BLOCKS_FILE
    with BlockStore(path) as store:
        store.save(Block(peer(0), "fine", 1.0, None, manual=True))
    db = sqlite3.connect(path)
    db.execute("INSERT INTO blocks VALUES ('net', X'ff00', 'r', 1, NULL, 1, 1)")
    db.execute("INSERT INTO blocks VALUES ('peer', X'00', 'r', 1, NULL, 1, 1)")
    db.execute("INSERT INTO blocks VALUES ('what', X'00', 'r', 1, NULL, 1, 1)")
    db.execute("INSERT INTO blocks VALUES ('net', CAST('10.0.0.0/8' AS BLOB), 'r', 1, NULL, 0, 1)")
    db.commit()
    db.close()
    with BlockStore(path) as store:
        assert [b.reason for b in store.load()] == ["fine"]


def test_store_is_bounded_evicting_automatic_blocks_first(tmp_path: Path) -> None:
    with BlockStore(tmp_path / BLOCKS_FILE, max_rows=3) as store:
        store.save(Block(peer(0), "auto", 0.0, 500.0))
        store.save(Block(peer(1), "auto", 0.0, 100.0))
        store.save(Block(peer(2), "hand", 0.0, None, manual=True))
        store.save(Block(peer(3), "hand", 0.0, None, manual=True))  # evicts peer(1), expiring soonest
        assert [b.target for b in store.load()] == [peer(0), peer(2), peer(3)]
        store.save(Block(peer(0), "auto again", 0.0, 900.0))  # a replacement needs no room
        store.save(Block(peer(4), "hand", 0.0, None, manual=True))
        with pytest.raises(BlockStoreFull):
            store.save(Block(peer(5), "hand", 0.0, None, manual=True))
        assert len(store) == 3


def test_guard_in_home_loads_and_purges(tmp_path: Path) -> None:
    now = 1_000_000.0
    with BlockStore.in_home(tmp_path) as store:
        store.save(Block(peer(0), "old", 0.0, now - 8 * 86_400))  # expired beyond forget_after
        store.save(Block(peer(1), "remembered", 0.0, now - 3600))
        store.save(Block(peer(2), "active", 0.0, now + 3600))
        store.save(Block(net("192.0.2.0/24"), "hand", 0.0, None, manual=True))
    guard = PeerGuard.in_home(tmp_path, clock=lambda: now)
    try:
        assert [target_text(b.target) for b in guard.blocks()] == [str(peer(2)), "192.0.2.0/24"]
        assert not guard.allow_peer(peer(2)) and guard.allow_peer(peer(1)) and guard.allow_peer(peer(0))
        assert not guard.allow_inbound("192.0.2.200") and guard.allow_inbound("192.0.3.1")
        assert guard.reputation.block_of(peer(1)) is not None  # its offence counts if it comes back
        assert guard.reputation.block_of(peer(0)) is None
    finally:
        guard.close()
    with BlockStore.in_home(tmp_path) as store:
        assert len(store) == 3


# -- the guard on hosts ---------------------------------------------------------------


async def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_a_blocked_peer_is_disconnected_and_refused_on_reconnect(tmp_path: Path) -> None:
    network = MemoryNetwork()
    guard = PeerGuard.in_home(tmp_path)
    config = HostConfig(keep_alive=0)
    try:
        async with open_host(KeyPair.generate(), guard.gate([MemoryTransport(network)]), config) as a, \
                open_host(KeyPair.generate(), [MemoryTransport(network)], config) as b:  # fmt: skip
            guard.watch(a)
            await a.listen(Multiaddr.parse("/memory/0"))
            await b.listen(Multiaddr.parse("/memory/0"))
            await b.connect(full_addr(a))
            await _until(lambda: a.connection(b.peer_id) is not None)
            block, disconnected = await guard.block(b.peer_id, reason="test")
            assert disconnected == [b.peer_id] and block.manual
            await _until(lambda: a.connection(b.peer_id) is None and b.connection(a.peer_id) is None)
            # back again: it authenticates, and is closed at once
            try:
                await b.connect(full_addr(a))
            except DialError:
                pass
            await _until(lambda: guard.refused_peers == 1)
            await _until(lambda: a.connection(b.peer_id) is None and b.connection(a.peer_id) is None)
            # a dial out to it fails the same way
            try:
                await a.connect(full_addr(b))
            except DialError:
                pass
            await _until(lambda: guard.refused_peers == 2 and a.connection(b.peer_id) is None)
            # lifted: it gets in and stays
            assert await guard.unblock(b.peer_id) == block
            await b.connect(full_addr(a))
            await trio.sleep(0.2)
            assert a.connection(b.peer_id) is not None and guard.refused_peers == 2
    finally:
        guard.close()
    with BlockStore.in_home(tmp_path) as store:
        assert store.load() == []


async def test_reports_disconnect_then_block_and_the_block_is_kept(tmp_path: Path) -> None:
    network = MemoryNetwork()
    guard = PeerGuard.in_home(tmp_path)
    config = HostConfig(keep_alive=0)
    try:
        async with open_host(KeyPair.generate(), [MemoryTransport(network)], config) as a, \
                open_host(KeyPair.generate(), [MemoryTransport(network)], config) as b:  # fmt: skip
            guard.watch(a)
            await a.listen(Multiaddr.parse("/memory/0"))
            await b.connect(full_addr(a))
            await _until(lambda: a.connection(b.peer_id) is not None)
            assert guard.report(b.peer_id, "bad frame", 10) is Verdict.OK
            assert guard.report(b.peer_id, "bad frame", 15) is Verdict.THROTTLE
            assert guard.throttled(b.peer_id) and a.connection(b.peer_id) is not None
            assert guard.report(b.peer_id, "bad frame", 30) is Verdict.DISCONNECT
            await _until(lambda: a.connection(b.peer_id) is None)
            assert guard.disconnected == 1 and guard.allow_peer(b.peer_id)
            await b.connect(full_addr(a))  # may come back
            await _until(lambda: a.connection(b.peer_id) is not None)
            assert guard.report(b.peer_id, "forged signature", 50) is Verdict.BLOCK
            await _until(lambda: a.connection(b.peer_id) is None)
            assert not guard.allow_peer(b.peer_id)
            await _until(lambda: len(guard.store or []) == 1)
    finally:
        guard.close()
    again = PeerGuard.in_home(tmp_path)
    try:
        (block,) = again.blocks()
        assert block.target != peer(0) and not block.manual and block.reason == "forged signature"
        assert not again.allow_peer(block.target)  # type: ignore[arg-type]
    finally:
        again.close()


async def test_a_blocked_address_is_refused_before_the_handshake(tmp_path: Path) -> None:
    guard = PeerGuard()
    config = HostConfig(keep_alive=0, connection_timeout=5)
    async with open_host(KeyPair.generate(), guard.gate([TcpTransport()]), config) as a, \
            open_host(KeyPair.generate(), [TcpTransport()], config) as b:  # fmt: skip
        guard.watch(a)
        (addr,) = await a.listen(Multiaddr.parse("/ip4/127.0.0.1/tcp/0"))
        target = addr.with_p2p(str(a.peer_id))
        await b.connect(target)
        await _until(lambda: a.connection(b.peer_id) is not None)
        block, disconnected = await guard.block(parse_target("127.0.0.0/8"), duration=3600)
        assert disconnected == [b.peer_id]
        await _until(lambda: b.connection(a.peer_id) is None)
        with pytest.raises(DialError):
            await b.connect(target)
        assert guard.refused_inbound == 1
        assert guard.refused_peers == 0  # refused before it could authenticate
        assert a.connection(b.peer_id) is None
        with pytest.raises(DialError, match="blocked"):
            await a.connect(Multiaddr.parse("/ip4/127.0.0.1/tcp/1"))
        assert await guard.unblock(block.target) == block
        await b.connect(target)
        assert b.connection(a.peer_id) is not None


# -- the control routes, in process ------------------------------------------------------


async def _call(api, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    import json

    from guts.control._http import HttpRequest

    response = await api(HttpRequest(method, path, {}, b"" if body is None else json.dumps(body).encode()))
    return response.status, response.body


async def test_peer_routes(tmp_path: Path) -> None:
    from guts.control import ControlApi
    from guts.control._peers import add_peer_routes

    network = MemoryNetwork()
    guard = PeerGuard.in_home(tmp_path)
    config = HostConfig(keep_alive=0)
    try:
        async with open_host(KeyPair.generate(), guard.gate([MemoryTransport(network)]), config) as a, \
                open_host(KeyPair.generate(), [MemoryTransport(network)], config) as b:  # fmt: skip
            guard.watch(a)
            api = ControlApi(None)  # type: ignore[arg-type]  # the routes need no node
            add_peer_routes(api, guard, a)
            await a.listen(Multiaddr.parse("/memory/0"))
            await b.connect(full_addr(a))
            await _until(lambda: a.connection(b.peer_id) is not None)
            guard.report(b.peer_id, "slow", 25)
            status, listed = await _call(api, "GET", "/v1/peers")
            assert status == 200
            (row,) = listed["peers"]
            assert row["peer_id"] == str(b.peer_id) and row["direction"] == "inbound"
            assert row["score"] == -25.0 and row["verdict"] == "throttle"
            assert listed["blocks"] == [] and listed["blocks_total"] == 0
            assert listed["thresholds"] == {"throttle": -20.0, "disconnect": -50.0, "block": -100.0}

            for bad in (
                {}, {"peer": str(b.peer_id), "ip": "10.0.0.1"}, {"peer": "10.0.0.1"}, {"ip": str(b.peer_id)},
                {"ip": "10.0.0.1", "duration": -1}, {"ip": "10.0.0.1", "duration": "2h"},
                {"ip": "10.0.0.1", "duration": True}, {"ip": "10.0.0.1", "duration": 1e12},
                {"ip": "10.0.0.1", "reason": "x" * 201}, {"ip": 5}, {"peer": str(a.peer_id)},
            ):
                status, answer = await _call(api, "POST", "/v1/peers/block", bad)
                assert status == 400 and answer["kind"] == "bad_request", bad
            assert guard.blocks() == []

            status, answer = await _call(api, "POST", "/v1/peers/block", {"ip": "192.0.2.0/24", "duration": 60})
            assert status == 200 and answer["disconnected"] == [] and answer["block"]["remaining_s"] == 60.0
            status, answer = await _call(api, "POST", "/v1/peers/block", {"peer": str(b.peer_id), "reason": "r"})
            assert status == 200 and answer["disconnected"] == [str(b.peer_id)] and answer["previous"] is None
            await _until(lambda: a.connection(b.peer_id) is None)
            status, listed = await _call(api, "GET", "/v1/peers")
            assert [x["target"] for x in listed["blocks"]] == ["192.0.2.0/24", str(b.peer_id)]
            assert listed["peers"] == [] and listed["blocks_total"] == 2

            status, answer = await _call(api, "POST", "/v1/peers/unblock", {"ip": "192.0.2.9/24"})
            assert status == 200 and answer == {**answer, "target": "192.0.2.0/24", "removed": True}
            status, answer = await _call(api, "POST", "/v1/peers/unblock", {"ip": "192.0.2.0/24"})
            assert status == 200 and answer["removed"] is False and answer["block"] is None

            bare = ControlApi(None)  # type: ignore[arg-type]
            add_peer_routes(bare, None, a)
            status, listed = await _call(bare, "GET", "/v1/peers")
            assert status == 200 and "blocks" not in listed
            status, answer = await _call(bare, "POST", "/v1/peers/block", {"ip": "10.0.0.1"})
            assert status == 409 and answer["kind"] == "unavailable"
    finally:
        guard.close()
    with BlockStore.in_home(tmp_path) as store:
        assert [target_text(b.target) for b in store.load()] == [str(b.peer_id)]


async def test_the_block_listing_is_bounded_hand_blocks_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from guts.control import ControlApi
    from guts.control import _peers

    monkeypatch.setattr(_peers, "MAX_LISTED", 3)
    guard = PeerGuard()
    for i in range(4):
        guard.reputation.penalize(peer(i), f"auto {i}", 100, guard.now)
    await guard.block(peer(10), reason="hand")
    async with open_host(KeyPair.generate(), [MemoryTransport(MemoryNetwork())]) as host:
        api = ControlApi(None)  # type: ignore[arg-type]
        _peers.add_peer_routes(api, guard, host)
        status, listed = await _call(api, "GET", "/v1/peers")
    assert status == 200 and listed["blocks_total"] == 5
    assert [x["reason"] for x in listed["blocks"]] == ["hand", "auto 3", "auto 2"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1h30m", 5400.0), ("7d", 604_800.0),
     ("1w", 604_800.0), ("0.5h", 1800.0), (" 2H ", 7200.0)],
)  # fmt: skip
def test_durations_of_guts_peers_block(text: str, seconds: float) -> None:
    from guts._cli.peers import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "2h 30m", "-5", "0", "0s", "nan", "inf", "1h-1m", "m30"])
def test_bad_durations_of_guts_peers_block(text: str) -> None:
    from guts._cli.peers import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)
