"""Bad input from the network: each case is bounded or refused with a log
line naming the peer and the reason, and the node keeps serving."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from guts.dht import Dht, DhtConfig, DhtMode, KadMessage, KadPeer, MessageType, Record, decode_message, encode_message
from guts.dht.records import RecordLimits
from guts.dht.signed import guts_key
from guts.errors import StreamReset
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.pb import dht_pb2
from guts.wire import MessageStream, encode_uvarint

from .dht_helpers import hashed_peer
from .dht_signed_helpers import signed
from .helpers import memory_hosts

PROTO = "/guts/kad/1.0.0"
CFG = DhtConfig(mode=DhtMode.SERVER, request_timeout=2.0)


async def raw_request(host: Host, target: Host, payload: bytes, *, read: bool = True) -> bytes | None:
    stream = await host.new_stream(target.peer_id, [PROTO])
    async with stream:
        await stream.send_all(encode_uvarint(len(payload)) + payload)
        if not read:
            return None
        try:
            return await MessageStream(stream, 1 << 20).receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, StreamReset):
            return None


async def good_find_node(host: Host, target: Host) -> KadMessage:
    data = await raw_request(host, target, encode_message(KadMessage(MessageType.FIND_NODE, key=b"x")))
    assert data is not None
    return decode_message(data)


async def connect(a: Host, b: Host) -> None:
    conn = await a.connect(b.listen_addrs[0].with_p2p(str(b.peer_id)))
    await conn.identified.wait()


async def test_malformed_protobuf_is_logged_and_the_node_keeps_serving(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_hosts(2) as (victim, attacker):
        Dht(victim, CFG)
        await connect(attacker, victim)
        caplog.set_level(logging.INFO)
        assert await raw_request(attacker, victim, b"\xff\xff\xff\xff\x0f garbage") is None
        assert any(
            str(attacker.peer_id) in r.getMessage() and "malformed DHT message" in r.getMessage() for r in caplog.records
        )
        # an oversized length prefix is refused before anything is buffered
        stream = await attacker.new_stream(victim.peer_id, [PROTO])
        await stream.send_all(encode_uvarint(10 * 1024 * 1024))
        with pytest.raises(StreamReset):
            await stream.receive_some()
        assert any("exceeds the limit" in r.getMessage() for r in caplog.records)
        # unknown message type
        pb = dht_pb2.Message()
        pb.type = 42  # type: ignore[assignment]
        assert await raw_request(attacker, victim, pb.SerializeToString()) is None
        assert any("unknown DHT message type 42" in r.getMessage() for r in caplog.records)
        # still serving, on the same connection
        assert (await good_find_node(attacker, victim)).type is MessageType.FIND_NODE


async def test_record_over_the_size_cap(autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    async with memory_hosts(2) as (victim, attacker):
        dht = Dht(victim, CFG)
        await connect(attacker, victim)
        caplog.set_level(logging.INFO)
        rec = Record(b"/guts/big", bytes(20_000))
        assert await raw_request(attacker, victim, encode_message(KadMessage(MessageType.PUT_VALUE, key=rec.key, record=rec))) is None
        assert any("record value of 20000 bytes" in r.getMessage() and str(attacker.peer_id) in r.getMessage() for r in caplog.records)
        # under the codec's cap but over the validator's
        small = DhtConfig(mode=DhtMode.SERVER, records=RecordLimits(max_value=100))
        dht2 = Dht(attacker, small)
        rec = Record(guts_key(attacker.peer_id, b"big"), bytes(200))
        with pytest.raises(Exception, match="limit 100"):
            await dht2.put_value(rec.key, rec.value)
        assert len(dht.values) == 0


async def test_add_provider_and_put_value_floods_are_bounded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = DhtConfig(mode=DhtMode.SERVER, write_rate=1.0, write_burst=10.0)
    async with memory_hosts(3) as (victim, attacker, bystander):
        dht = Dht(victim, cfg)
        await connect(attacker, victim)
        await connect(bystander, victim)
        caplog.set_level(logging.INFO)
        addr = attacker.listen_addrs[0]
        for i in range(200):
            msg = KadMessage(
                MessageType.ADD_PROVIDER,
                key=b"\x12\x20" + i.to_bytes(32, "big"),
                provider_peers=(KadPeer(attacker.peer_id, (addr,)),),
            )
            await raw_request(attacker, victim, encode_message(msg), read=False)
        for i in range(200):
            rec = Record(*signed(b"flood%d" % i, b"v"))
            await raw_request(attacker, victim, encode_message(KadMessage(MessageType.PUT_VALUE, key=rec.key, record=rec)))
        await trio.sleep(1)
        assert len(dht.providers) + len(dht.values) <= 10 + 2  # the burst, plus a token or two refilled
        refusals = [r for r in caplog.records if "rate limit" in r.getMessage()]
        assert refusals and all(str(attacker.peer_id) in r.getMessage() for r in refusals)
        # warnings are themselves rate-limited: one per 10 s per peer
        assert sum(r.levelno == logging.WARNING for r in refusals) <= 2
        # providing for another peer is refused outright
        msg = KadMessage(MessageType.ADD_PROVIDER, key=b"\x12\x20" + bytes(32), provider_peers=(KadPeer(bystander.peer_id, (addr,)),))
        await raw_request(bystander, victim, encode_message(KadMessage(MessageType.PING)))
        await raw_request(attacker, victim, encode_message(msg), read=False)
        await trio.sleep(1)
        assert dht.providers.get(b"\x12\x20" + bytes(32), bystander.peer_id) is None
        # the bystander is served normally
        rec = Record(*signed(b"fine", b"v"))
        assert await raw_request(bystander, victim, encode_message(KadMessage(MessageType.PUT_VALUE, key=rec.key, record=rec)))
        assert dht.values.get(rec.key, 0) is not None


class EvilServer:
    """A peer that serves the DHT protocol with crafted answers."""

    def __init__(self, host: Host, answer) -> None:  # type: ignore[no-untyped-def]
        self.host = host
        self.answer = answer
        self.requests = 0
        host.set_handler(PROTO, self._serve)

    async def _serve(self, stream) -> None:  # type: ignore[no-untyped-def]
        messages = MessageStream(stream, 1 << 20)
        data = await messages.receive()
        if data is None:
            return
        self.requests += 1
        reply = await self.answer(decode_message(data))
        if reply is not None:
            await stream.send_all(encode_uvarint(len(reply)) + reply)


async def test_lookup_survives_lying_slow_and_flooding_peers(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_hosts(8) as hosts:
        me, honest, far, slow, flooder, liar, junk, bad_addrs = hosts
        dht = Dht(me, CFG)
        Dht(honest, CFG)
        Dht(far, CFG)

        async def silent(msg: KadMessage) -> bytes | None:
            await trio.sleep_forever()
            return None

        async def thousands(msg: KadMessage) -> bytes:
            pb = dht_pb2.Message()
            pb.type = 4  # type: ignore[assignment]
            for i in range(1500):
                entry = pb.closerPeers.add()
                entry.id = hashed_peer(i).to_bytes()
            return pb.SerializeToString()

        async def itself(msg: KadMessage) -> bytes:
            own = KadPeer(liar.peer_id, tuple(liar.listen_addrs))
            return encode_message(KadMessage(MessageType.FIND_NODE, closer_peers=(own,) * 5))

        dead = tuple(KadPeer(hashed_peer(10_000 + i), (Multiaddr.parse(f"/memory/{900_000 + i}"),)) for i in range(20))

        async def unreachable(msg: KadMessage) -> bytes:
            return encode_message(KadMessage(MessageType.FIND_NODE, closer_peers=dead))

        async def garbage_addrs(msg: KadMessage) -> bytes:
            pb = dht_pb2.Message()
            pb.type = 4  # type: ignore[assignment]
            entry = pb.closerPeers.add()
            entry.id = far.peer_id.to_bytes()
            entry.addrs.extend([b"\xde\xad\xbe\xef", b"\x04\x7f", far.listen_addrs[0].to_bytes()])
            return pb.SerializeToString()

        evil = [EvilServer(h, f) for h, f in ((slow, silent), (flooder, thousands), (liar, itself), (junk, unreachable), (bad_addrs, garbage_addrs))]
        await connect(honest, far)
        for h in (honest, slow, flooder, liar, junk, bad_addrs):
            await connect(me, h)
        assert len(dht.table) == 6
        caplog.set_level(logging.DEBUG)
        start = trio.current_time()
        result = await dht.find_closest_peers(b"some key")
        elapsed = trio.current_time() - start
        assert not result.timed_out
        assert elapsed <= CFG.request_timeout + 1  # the silent peer costs one request timeout at most
        got = {p.peer_id for p in result.peers}
        assert {honest.peer_id, far.peer_id, liar.peer_id} <= got
        assert slow.peer_id not in got and flooder.peer_id not in got
        assert not got & {p.peer_id for p in dead}
        assert all(e.requests == 1 for e in evil)  # each asked once, not again and again
        messages = [r.getMessage() for r in caplog.records]
        assert any(str(flooder.peer_id) in m and "1500 closer peers" in m for m in messages)
        assert any(str(bad_addrs.peer_id) in m and "2 addresses" in m for m in messages)
        # far was learnt from the garbage list's one good address or from honest
        assert far.listen_addrs[0] in me.peerstore.addrs(far.peer_id)


async def test_several_requests_on_one_stream_bounded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = DhtConfig(mode=DhtMode.SERVER, max_requests_per_stream=3)
    async with memory_hosts(2) as (server, client):
        Dht(server, cfg)
        await connect(client, server)
        caplog.set_level(logging.INFO)
        stream = await client.new_stream(server.peer_id, [PROTO])
        messages = MessageStream(stream, 1 << 20)
        answers = []
        for i in range(3):
            await messages.send(encode_message(KadMessage(MessageType.FIND_NODE, key=b"k%d" % i)))
            answers.append(decode_message(await messages.receive()))
        assert [a.type for a in answers] == [MessageType.FIND_NODE] * 3
        await messages.send(encode_message(KadMessage(MessageType.PING)))
        assert await messages.receive() is None  # the fourth is not served: the stream ends
        assert any("more than 3 requests on one stream" in r.getMessage() for r in caplog.records)
        # an idle stream is closed after stream_idle_timeout
        stream = await client.new_stream(server.peer_id, [PROTO])
        start = trio.current_time()
        assert await MessageStream(stream, 1 << 20).receive() is None
        assert trio.current_time() - start == pytest.approx(cfg.stream_idle_timeout, abs=0.5)
