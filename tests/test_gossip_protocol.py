"""Gossipsub over real hosts on the memory transport, under a mock clock."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from guts.gossip import (
    MESHSUB_V11,
    MESHSUB_V12,
    GossipConfig,
    GossipMessage,
    Gossipsub,
    ValidationResult,
    open_gossipsub,
)
from guts.gossip._codec import RPC, SubOpts, encode_rpc
from guts.gossip._signing import sign_message
from guts.errors import StreamReset
from guts.host import Host
from guts.wire import encode_length_prefixed, encode_uvarint

from .helpers import full_addr, memory_hosts

T = "topic"


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``predicate`` in virtual time (autojump clock)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


@asynccontextmanager
async def gossip_hosts(
    n: int, config: GossipConfig | None = None, links: list[tuple[int, int]] | None = None
) -> AsyncIterator[tuple[list[Host], list[Gossipsub]]]:
    async with memory_hosts(n) as hosts, AsyncExitStack() as stack:
        gossips = [
            await stack.enter_async_context(open_gossipsub(h, config, rng=random.Random(i)))
            for i, h in enumerate(hosts)
        ]
        for a, b in links if links is not None else [(i, i + 1) for i in range(n - 1)]:
            await hosts[a].connect(full_addr(hosts[b]))
        await wait_until(lambda: all(
            hosts[b].peer_id in gossips[a].peers and hosts[a].peer_id in gossips[b].peers
            for a, b in (links if links is not None else [(i, i + 1) for i in range(n - 1)])
        ))
        yield hosts, gossips


async def test_publish_reaches_a_subscriber(autojump_clock: trio.testing.MockClock) -> None:
    async with gossip_hosts(2) as (hosts, (a, b)):
        with b.subscribe(T) as sub:
            await wait_until(lambda: hosts[1].peer_id in a.subscribers(T))
            msg_id = await a.publish(T, b"hello")
            with trio.fail_after(5):
                got = await sub.receive()
        assert got.data == b"hello" and got.topic == T
        assert got.message_id == msg_id
        assert got.author == hosts[0].peer_id and got.propagation_source == hosts[0].peer_id
        assert a.router.protocol(hosts[1].peer_id) == MESHSUB_V12


async def test_a_line_of_ten_relays_every_message(autojump_clock: trio.testing.MockClock) -> None:
    async with gossip_hosts(10) as (hosts, gossips):
        subs = [g.subscribe(T) for g in gossips]
        await wait_until(lambda: all(len(g.mesh_peers(T)) == (1 if i in (0, 9) else 2) for i, g in enumerate(gossips)))
        ids = [await gossips[i].publish(T, b"from %d" % i) for i in (0, 5, 9)]
        for i, sub in enumerate(subs):
            want = {mid for j, mid in zip((0, 5, 9), ids) if j != i}
            got = set()
            with trio.fail_after(5):
                while got != want:
                    got.add((await sub.receive()).message_id)


async def test_meshes_settle_within_bounds(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(3)
    n = 24
    links = {(i, (i + 1) % n) for i in range(n)}
    while len(links) < n * 5:
        a, b = sorted(rng.sample(range(n), 2))
        links.add((a, b))
    async with gossip_hosts(n, links=sorted(links)) as (hosts, gossips):
        for g in gossips:
            g.subscribe(T)
        await trio.sleep(5)  # five heartbeats
        cfg = GossipConfig()
        for g in gossips:
            size = len(g.mesh_peers(T))
            assert min(cfg.d_low, len(g.peers)) <= size <= cfg.d_high


async def test_disconnect_removes_the_peer(autojump_clock: trio.testing.MockClock) -> None:
    async with gossip_hosts(2) as (hosts, (a, b)):
        a.subscribe(T)
        b.subscribe(T)
        await wait_until(lambda: a.mesh_peers(T) == [hosts[1].peer_id])
        await hosts[0].disconnect(hosts[1].peer_id)
        await wait_until(lambda: not a.peers and not b.peers)
        assert a.mesh_peers(T) == [] and a.subscribers(T) == []
        # and back: a new connection makes it a gossip peer again
        with b.subscribe(T) as sub:
            await hosts[1].connect(full_addr(hosts[0]))
            await wait_until(lambda: hosts[1].peer_id in a.mesh_peers(T) and hosts[0].peer_id in b.peers)
            await a.publish(T, b"again")
            with trio.fail_after(5):
                assert (await sub.receive()).data == b"again"


async def test_unsubscribe_is_announced(autojump_clock: trio.testing.MockClock) -> None:
    async with gossip_hosts(2) as (hosts, (a, b)):
        sub = b.subscribe(T)
        await wait_until(lambda: a.subscribers(T) == [hosts[1].peer_id])
        sub.close()
        await wait_until(lambda: a.subscribers(T) == [])
        assert b.topics == []


async def test_two_subscriptions_share_the_topic(autojump_clock: trio.testing.MockClock) -> None:
    async with gossip_hosts(2) as (hosts, (a, b)):
        one, two = b.subscribe(T), b.subscribe(T)
        await wait_until(lambda: a.subscribers(T) == [hosts[1].peer_id])
        await a.publish(T, b"x")
        with trio.fail_after(5):
            assert (await one.receive()).data == (await two.receive()).data == b"x"
        one.close()
        await trio.sleep(1)
        assert a.subscribers(T) == [hosts[1].peer_id]  # still subscribed through `two`
        two.close()
        await wait_until(lambda: a.subscribers(T) == [])


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_validators(autojump_clock: trio.testing.MockClock, asynchronous: bool) -> None:
    async with gossip_hosts(3) as (hosts, (a, b, c)):
        seen: list[bytes] = []

        def verdict(message: GossipMessage) -> ValidationResult:
            seen.append(message.data)
            return ValidationResult.ACCEPT if message.data.startswith(b"ok") else ValidationResult.REJECT

        async def slow(message: GossipMessage) -> ValidationResult:
            await trio.sleep(0.5)
            return verdict(message)

        b.set_validator(T, slow if asynchronous else verdict)
        sub_b, sub_c = b.subscribe(T), c.subscribe(T)
        await wait_until(lambda: len(a.mesh_peers(T) + c.mesh_peers(T)) == 0 or hosts[1].peer_id in a.subscribers(T))
        a.subscribe(T)
        await wait_until(lambda: hosts[1].peer_id in a.mesh_peers(T) and hosts[1].peer_id in c.mesh_peers(T))
        await a.publish(T, b"bad")
        await a.publish(T, b"ok then")
        with trio.fail_after(5):
            assert (await sub_b.receive()).data == b"ok then"
            assert (await sub_c.receive()).data == b"ok then"  # only the accepted one was forwarded
        assert sorted(seen) == [b"bad", b"ok then"]
        assert b.score(hosts[0].peer_id) < 0


async def test_a_host_without_gossip_is_left_alone(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_hosts(2) as (x, y):
        async with open_gossipsub(x) as gossip:
            await x.connect(full_addr(y))
            await trio.sleep(2)
            assert gossip.peers == []
            assert x.connection(y.peer_id) is not None


async def test_stopping_ends_subscriptions(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_hosts(1) as (x,):
        async with open_gossipsub(x) as gossip:
            sub = gossip.subscribe(T)
        assert [m async for m in sub] == []
        assert gossip.subscribe("late")._receive.statistics().open_send_channels == 0


async def test_protocol_version_negotiation(autojump_clock: trio.testing.MockClock) -> None:
    # y speaks only /meshsub/1.1.0 (a bare handler, no gossipsub): x settles on it
    async with memory_hosts(2) as (x, y):
        y.set_handler(MESHSUB_V11, lambda s: trio.sleep_forever())
        async with open_gossipsub(x) as gx:
            await x.connect(full_addr(y))
            await wait_until(lambda: y.peer_id in gx.peers)
            assert gx.router.protocol(y.peer_id) == MESHSUB_V11


# ---------------------------------------------------------------- bad input over streams


async def raw_gossip_stream(attacker: Host, victim: Host, protocol: str = MESHSUB_V12):  # type: ignore[no-untyped-def]
    """A meshsub stream from a host that runs no gossipsub: the test writes what it likes."""
    attacker.set_handler(protocol, lambda s: trio.sleep_forever())  # so the victim opens its stream too
    return await attacker.new_stream(full_addr(victim), [protocol])


async def test_malformed_rpc_closes_the_stream_and_others_carry_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_hosts(3) as (victim, honest, attacker):
        async with open_gossipsub(victim) as gv, open_gossipsub(honest) as gh:
            sub = gv.subscribe(T)
            gh.subscribe(T)
            await honest.connect(full_addr(victim))
            stream = await raw_gossip_stream(attacker, victim)
            await wait_until(lambda: attacker.peer_id in gv.peers)
            with caplog.at_level(logging.WARNING, logger="guts.host"):
                await stream.send_all(encode_length_prefixed(b"\x0a\x05\x08"))  # truncated SubOpts
                with trio.fail_after(5), pytest.raises(StreamReset):
                    await stream.receive_some()  # the victim reset the stream
            assert any(str(attacker.peer_id) in r.getMessage() and "malformed RPC" in r.getMessage()
                       for r in caplog.records)
            await wait_until(lambda: honest.peer_id in gv.mesh_peers(T))
            await gh.publish(T, b"still here")
            with trio.fail_after(5):
                assert (await sub.receive()).data == b"still here"


async def test_oversized_frame_is_refused_before_buffering(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_hosts(2) as (victim, attacker):
        async with open_gossipsub(victim) as gv:
            stream = await raw_gossip_stream(attacker, victim)
            await wait_until(lambda: attacker.peer_id in gv.peers)
            with caplog.at_level(logging.WARNING, logger="guts.host"):
                await stream.send_all(encode_uvarint(gv.config.max_rpc_size + 1) + b"x" * 100)
                await trio.sleep(1)
            assert any("exceeds the limit" in r.getMessage() and str(attacker.peer_id) in r.getMessage()
                       for r in caplog.records)


async def test_bad_signature_over_the_wire_lowers_the_score(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_hosts(2) as (victim, attacker):
        async with open_gossipsub(victim) as gv:
            sub = gv.subscribe(T)
            stream = await raw_gossip_stream(attacker, victim)
            await wait_until(lambda: attacker.peer_id in gv.peers)
            good = sign_message(attacker.keypair, T, b"real", 1)
            import dataclasses

            bad = dataclasses.replace(good, wire=b"", data=b"fake")
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, T),), messages=(bad,)))))
            await wait_until(lambda: gv.stats.messages_rejected == 1)
            assert gv.score(attacker.peer_id) < 0
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(messages=(good,)))))
            with trio.fail_after(5):
                assert (await sub.receive()).data == b"real"


async def test_a_peer_that_never_reads_is_cut_off_and_penalised(autojump_clock: trio.testing.MockClock) -> None:
    cfg = GossipConfig(max_queued_bytes=64 * 1024)
    async with memory_hosts(3) as (victim, sink, honest):
        async with open_gossipsub(victim, cfg) as gv, open_gossipsub(honest) as gh:
            # `sink` takes the victim's gossip stream and never reads from it
            sink.set_handler(MESHSUB_V12, lambda s: trio.sleep_forever())
            stream = await sink.new_stream(full_addr(victim), [MESHSUB_V12])
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, T),)))))
            await honest.connect(full_addr(victim))
            sub = gh.subscribe(T)
            await wait_until(lambda: sink.peer_id in gv.subscribers(T) and honest.peer_id in gv.subscribers(T))
            for i in range(100):
                await gv.publish(T, bytes(8 * 1024) + b"%d" % i)
            await trio.sleep(2)
            assert gv.dropped(sink.peer_id) > 0
            assert gv.score(sink.peer_id) < 0
            got = 0
            with trio.move_on_after(5):
                while got < 100:
                    await sub.receive()
                    got += 1
            assert got == 100  # the honest peer got everything
            # a write to it that does not finish within write_timeout: cut off
            await wait_until(lambda: sink.peer_id not in gv.peers, timeout=cfg.write_timeout + 5)
            assert honest.peer_id in gv.peers
            assert victim.connection(sink.peer_id) is not None  # only the gossip stream went


@pytest.mark.parametrize("trusted", [True, False])
async def test_peer_exchange_dials_offered_peers(
    autojump_clock: trio.testing.MockClock, trusted: bool
) -> None:
    from guts.gossip import ScoreParams
    from guts.gossip._codec import ControlMessage, Prune, PxPeer

    from guts.gossip._peer_record import seal_peer_record

    async with memory_hosts(6) as (a, pruner, known, unknown, recorded, forged):
        # PX is taken only from a peer scoring at least accept_px_threshold (10)
        score = 20.0 if trusted else 5.0
        cfg = GossipConfig(score_params=ScoreParams(app_specific_score=lambda p: score if p == pruner.peer_id else 0.0))
        async with open_gossipsub(a, cfg) as ga:
            ga.subscribe(T)
            a.peerstore.add_addrs(known.peer_id, known.listen_addrs)  # learnt elsewhere (the DHT, a config)
            stream = await raw_gossip_stream(pruner, a)
            await wait_until(lambda: pruner.peer_id in ga.peers)
            offered = (
                PxPeer(known.peer_id.to_bytes()),
                PxPeer(unknown.peer_id.to_bytes()),
                PxPeer(b"not a peer id"),
                # its own signed record: dialled at the addresses it signed
                PxPeer(recorded.peer_id.to_bytes(), seal_peer_record(recorded.keypair, 1, recorded.listen_addrs)),
                # a record signed by someone else: refused
                PxPeer(forged.peer_id.to_bytes(), seal_peer_record(pruner.keypair, 1, forged.listen_addrs)),
            )
            prune = RPC(control=ControlMessage(prune=(Prune(T, offered, 60),)))
            await stream.send_all(encode_length_prefixed(encode_rpc(prune)))
            if trusted:
                await wait_until(lambda: a.connection(known.peer_id) is not None
                                 and a.connection(recorded.peer_id) is not None)
            await trio.sleep(1)
            assert (a.connection(known.peer_id) is not None) == trusted
            assert (a.connection(recorded.peer_id) is not None) == trusted
            assert a.connection(unknown.peer_id) is None  # no address for it: not dialled
            assert a.connection(forged.peer_id) is None and not a.peerstore.addrs(forged.peer_id)
