"""identify codec, push, and the decoder under arbitrary bytes."""

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.errors import ProtocolError
from guts.identify import IdentifyInfo, decode_identify, encode_identify
from guts.identify._codec import MAX_PROTOCOLS
from guts.multiaddr import Multiaddr
from guts.pb import identify_pb2

from .helpers import echo_handler, full_addr, memory_hosts


def test_round_trip() -> None:
    info = IdentifyInfo(
        protocol_version="ipfs/0.1.0",
        agent_version="guts/0.1.0",
        public_key=b"\x08\x01\x12\x20" + bytes(32),
        listen_addrs=(Multiaddr.parse("/ip4/127.0.0.1/tcp/9000"), Multiaddr.parse("/ip4/127.0.0.1/tcp/9001/ws")),
        observed_addr=Multiaddr.parse("/ip4/10.0.0.1/tcp/5000"),
        protocols=("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"),
    )
    assert decode_identify(encode_identify(info)) == info


def test_spec_field_numbers() -> None:
    # protocolVersion = 5, agentVersion = 6, publicKey = 1, listenAddrs = 2,
    # observedAddr = 4, protocols = 3 (libp2p/specs identify).
    raw = encode_identify(IdentifyInfo(protocol_version="p", agent_version="a", protocols=("/x",)))
    assert raw == b"\x1a\x02/x" + b"\x2a\x01p" + b"\x32\x01a"


def test_unknown_addresses_are_skipped() -> None:
    msg = identify_pb2.Identify()
    msg.listenAddrs.extend([b"\xff\xff\xff", Multiaddr.parse("/ip4/1.2.3.4/tcp/1").to_bytes()])
    info = decode_identify(msg.SerializeToString())
    assert info.listen_addrs == (Multiaddr.parse("/ip4/1.2.3.4/tcp/1"),)


def test_too_many_protocols_refused() -> None:
    msg = identify_pb2.Identify()
    msg.protocols.extend(f"/p/{i}" for i in range(MAX_PROTOCOLS + 1))
    try:
        decode_identify(msg.SerializeToString())
    except ProtocolError:
        return
    raise AssertionError("accepted too many protocols")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_a_protocol_error_or_a_message(data: bytes) -> None:
    try:
        decode_identify(data)
    except ProtocolError:
        pass


async def test_push_updates_the_remote_peerstore() -> None:
    async with memory_hosts(2) as (a, b):
        conn = await a.connect(full_addr(b))
        with trio.fail_after(5):
            await conn.identified.wait()
        assert "/late/1.0.0" not in a.peerstore.protocols(b.peer_id)
        b.set_handler("/late/1.0.0", echo_handler)
        with trio.fail_after(5):
            while "/late/1.0.0" not in a.peerstore.protocols(b.peer_id):
                await trio.sleep(0.01)
        b.remove_handler("/late/1.0.0")
        with trio.fail_after(5):
            while "/late/1.0.0" in a.peerstore.protocols(b.peer_id):
                await trio.sleep(0.01)
