"""Floods: a peer over its message rate is throttled, charged, graylisted and
cut off while honest gossip still flows; every message not delivered is
counted, and logged in a bounded number of lines."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from guts.gossip import GossipConfig, open_gossipsub
from guts.gossip._codec import RPC, SubOpts, encode_rpc
from guts.gossip._drops import DropLog, TokenBucket
from guts.gossip._signing import sign_message
from guts.peer import PeerId
from guts.wire import encode_length_prefixed

from .helpers import full_addr, memory_hosts
from .test_gossip_protocol import T, raw_gossip_stream, wait_until

BURST = 5000


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket.full(rate=10.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True
    assert bucket.take(100.0) and sum(bucket.take(100.0) for _ in range(10)) == 4  # capped at the burst


def test_drop_log_writes_one_line_a_minute_per_peer_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("guts.test.drops")
    with caplog.at_level(logging.INFO, logger="guts.test.drops"):
        drops = DropLog(logger, interval=60.0)
        for i in range(3952):
            drops.note("peerA", "rate_limited", i * 0.01)
        drops.note("peerB", "rate_limited", 1.0)
        drops.note("peerA", "rejected: bad signature", 1.0)
        drops.flush(59.0)
        assert drops.lines == 3
        drops.flush(60.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 == drops.lines
    assert lines[0] == "peer peerA: message dropped: rate_limited"
    assert lines[-1] == "... and 3,951 more like it (rate_limited) from peerA in the last 60 s"
    with caplog.at_level(logging.INFO, logger="guts.test.drops"):
        drops.note("peerA", "rate_limited", 61.0)  # a new window opens with a line of its own
    assert drops.lines == 5


def test_drop_log_keeps_a_bounded_number_of_windows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guts.test.drops")
    drops = DropLog(logging.getLogger("guts.test.drops"), interval=60.0, max_keys=10)
    for i in range(1000):
        drops.note(f"peer{i}", "rate_limited", 0.0)
        drops.note(f"peer{i}", "rate_limited", 0.0)
    assert len(drops) == 10
    assert drops.lines == 1000
    # what a forgotten peer held back is told by the next line written
    assert caplog.records[-1].getMessage().endswith("(1 more lines held back from sources no longer tracked)")


async def test_a_burst_from_one_peer_is_throttled_counted_and_cut_off_while_honest_gossip_flows(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guts.gossip")
    cfg = GossipConfig()
    async with memory_hosts(3) as (victim, honest, attacker):
        async with open_gossipsub(victim, cfg) as gv, open_gossipsub(honest, cfg) as gh:
            sub = gv.subscribe(T)
            gh.subscribe(T)
            await honest.connect(full_addr(victim))
            stream = await raw_gossip_stream(attacker, victim)
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, T),)))))
            await wait_until(lambda: attacker.peer_id in gv.subscribers(T) and honest.peer_id in gv.mesh_peers(T))
            received: dict[PeerId | None, int] = {}
            honest_data: list[bytes] = []
            # every frame is ready before the flood starts: one message per RPC,
            # so that RPCs dropped unread count messages too
            frames = [encode_length_prefixed(encode_rpc(RPC(messages=(sign_message(attacker.keypair, T, b"flood %d" % i, i + 1),))))
                      for i in range(BURST)]

            async def read() -> None:
                async for message in sub:
                    received[message.author] = received.get(message.author, 0) + 1
                    if message.author == honest.peer_id:
                        honest_data.append(message.data)

            async def flood() -> None:
                for i in range(0, BURST, 100):
                    await stream.send_all(b"".join(frames[i:i + 100]))

            async def publish_honestly() -> None:
                for i in range(20):
                    await gh.publish(T, b"honest %d" % i)
                    await trio.sleep(0.5)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                nursery.start_soon(publish_honestly)
                with trio.fail_after(60):
                    await flood()
                await wait_until(lambda: len(honest_data) == 20)
                # graylisted for graylist_disconnect_after: its gossip streams are closed
                await wait_until(lambda: attacker.peer_id not in gv.peers, timeout=cfg.graylist_disconnect_after + 10)
                nursery.cancel_scope.cancel()

            assert honest_data == [b"honest %d" % i for i in range(20)]  # all of it, in order
            assert honest.peer_id in gv.peers and gv.graylist_closed == 1
            assert victim.connection(attacker.peer_id) is not None  # only gossip was closed
            drops = gv.drop_counts()
            delivered = received.get(attacker.peer_id, 0)
            # throttled: at most the burst (and what the rate refilled) got through
            assert 0 < delivered <= cfg.peer_message_burst + 10
            assert drops["rate_limited"] > 0 and drops["graylisted_rpcs"] > 0
            # every message not delivered is counted
            counted = drops["rate_limited"] + drops["graylisted_rpcs"] + drops.get("subscription_full", 0)
            assert delivered + counted == BURST, drops
            assert gv.stats.messages_rate_limited == drops["rate_limited"]
            # not rewarded for its first deliveries: its score is below the graylist threshold
            assert gv.score(attacker.peer_id) < cfg.score_thresholds.graylist_threshold
            # a bounded number of log lines about it
            about = [r for r in caplog.records if str(attacker.peer_id) in r.getMessage()]
            assert 2 <= len(about) <= 6, [r.getMessage() for r in about]


async def test_a_peer_within_its_rate_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    cfg = GossipConfig(peer_message_rate=100.0, peer_message_burst=50)
    async with memory_hosts(2) as (victim, sender):
        async with open_gossipsub(victim, cfg) as gv:
            sub = gv.subscribe(T)
            stream = await raw_gossip_stream(sender, victim)
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, T),)))))
            await wait_until(lambda: sender.peer_id in gv.subscribers(T))
            for i in range(300):  # 300 messages at 50 a second: half the rate
                msg = sign_message(sender.keypair, T, b"m %d" % i, i + 1)
                await stream.send_all(encode_length_prefixed(encode_rpc(RPC(messages=(msg,)))))
                await trio.sleep(0.02)
            got = 0
            with trio.move_on_after(5):
                while got < 300:
                    await sub.receive()
                    got += 1
            assert got == 300 and gv.drop_counts() == {}
            assert gv.score(sender.peer_id) > 0


async def test_subscription_overflow_is_counted(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_hosts(2) as (victim, sender):
        async with open_gossipsub(victim) as gv:
            sub = gv.subscribe(T, buffer=10)
            stream = await raw_gossip_stream(sender, victim)
            rpc = RPC(subscriptions=(SubOpts(True, T),),
                      messages=tuple(sign_message(sender.keypair, T, b"m %d" % i, i + 1) for i in range(25)))
            await stream.send_all(encode_length_prefixed(encode_rpc(rpc)))
            await wait_until(lambda: gv.stats.messages_delivered == 25)
            assert sub.dropped == 15 and gv.drop_counts() == {"subscription_full": 15}


async def test_a_hundred_one_mib_messages_from_one_peer_do_not_all_pass(autojump_clock: trio.testing.MockClock) -> None:
    """A peer may send ``peer_byte_burst`` (8 MiB) of payload at once and
    ``peer_byte_rate`` (2 MiB) a second after: of 100 messages of 1 MiB
    sent at once, 8 pass; the others are dropped before their signatures
    are checked, and counted."""
    cfg = GossipConfig()
    size = cfg.max_message_size - 1024
    async with memory_hosts(2) as (victim, sender):
        async with open_gossipsub(victim, cfg) as gv:
            sub = gv.subscribe(T)
            stream = await raw_gossip_stream(sender, victim)
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, T),)))))
            await wait_until(lambda: sender.peer_id in gv.subscribers(T))
            payload = b"x" * size
            frame = b""
            for i in range(100):
                msg = sign_message(sender.keypair, T, payload[:-8] + b"%08d" % i, i + 1)
                frame = encode_length_prefixed(encode_rpc(RPC(messages=(msg,))))
                await stream.send_all(frame)
            got = 0
            with trio.move_on_after(2):
                async for _ in sub:
                    got += 1
            drops = gv.drop_counts()
            assert got == cfg.peer_byte_burst // size, (got, drops)
            assert got + drops["byte_rate"] + drops.get("graylisted_rpcs", 0) == 100, drops
            assert len(frame) > size


def test_a_big_message_is_one_bytes_object_in_every_peer_frame_and_the_cache() -> None:
    """Forwarding 1 MiB to the mesh costs no copy per peer: the frames to each
    peer and the message cache hold the very bytes the message came in."""
    from guts.gossip._codec import decode_rpc

    from .gossip_net import RouterNet

    net = RouterNet()
    a, b, *others = net.routers_n(6)
    net.full_mesh([a, b, *others])
    for r in [a, b, *others]:
        r.subscribe(T, net.now)
    net.pump()
    net.tick(2)
    a.publish(T, b"z" * (1 << 20), net.now)
    published = [frame for peer, frame in a.take_outgoing() if peer == b.local and len(frame) > 1 << 20]
    assert len(published) == 1
    b.handle_frame(a.local, published[0], net.now)
    big = [frame for _, frame in b.take_outgoing() if len(frame) > 1 << 20]
    assert len(big) >= 3  # to b's mesh, a (the source) left out
    assert all(frame is big[0] for frame in big)
    (cached,) = [m for m in (b._state.mcache.get(i) for i in list(b._state.mcache._entries)) if m is not None]
    assert cached.wire is big[0]
    assert decode_rpc(big[0], GossipConfig().rpc_limits).messages[0].data == b"z" * (1 << 20)


async def test_a_subscription_is_bounded_in_bytes_too() -> None:
    from guts.gossip._events import GossipMessage
    from guts.gossip._codec import RawMessage
    from guts.gossip._subscription import Subscription

    def message(size: int) -> GossipMessage:
        raw = RawMessage(None, b"q" * size, None, T)
        return GossipMessage(T, raw.data or b"", b"id", None, None, None, None, None, raw)

    sub = Subscription(T, 100, lambda s: None, max_bytes=3 << 20)
    assert sub._deliver(message(5 << 20))  # one message always fits, whatever its size
    assert not sub._deliver(message(1 << 20))
    assert (await sub.receive()).data == b"q" * (5 << 20)
    assert [sub._deliver(message(1 << 20)) for _ in range(4)] == [True, True, True, False]
    assert sub.dropped == 2
    await sub.receive()
    assert sub._deliver(message(1 << 20))


async def test_a_peer_that_never_read_leaves_nothing_queued_behind(autojump_clock: trio.testing.MockClock) -> None:
    """A peer that subscribes, never reads and goes: the big messages queued for
    it are let go with it (before, the heartbeat's loop variable kept its link,
    and up to 8 MiB queued, until another peer came)."""
    import gc
    import weakref

    async with memory_hosts(2) as (victim, attacker):
        async with open_gossipsub(victim) as gv:
            gv.subscribe(T)
            stream = await raw_gossip_stream(attacker, victim)
            await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, T),)))))
            await wait_until(lambda: attacker.peer_id in gv.subscribers(T))
            writer = gv._links[attacker.peer_id].writer
            for i in range(12):
                await gv.publish(T, b"%02d" % i + b"w" * ((1 << 20) - 2))
            await wait_until(lambda: writer._queued > 4 << 20)
            await trio.sleep(2)  # heartbeats with the link
            ref = weakref.ref(writer)
            del writer
            await attacker.disconnect(victim.peer_id)
            await wait_until(lambda: attacker.peer_id not in gv.peers)
            await trio.sleep(3)  # heartbeats with no link left
            gc.collect()
            assert ref() is None
