"""The pubsub RPC codec: field numbers, round trips, limits, arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.errors import DecodeError
from guts.gossip._codec import (
    RPC,
    ControlMessage,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Prune,
    PxPeer,
    RawMessage,
    RpcLimits,
    SubOpts,
    decode_rpc,
    encode_rpc,
    encode_signable,
)
from guts.pb import pubsub_pb2


def full_rpc() -> RPC:
    return RPC(
        subscriptions=(SubOpts(True, "a"), SubOpts(False, "b")),
        messages=(
            RawMessage(b"\x00\x24" + b"k" * 36, b"data", b"\x00" * 7 + b"\x01", "a", b"s" * 64, b"key"),
            RawMessage(None, None, None, "b"),
            RawMessage(None, b"", None, "c"),
        ),
        control=ControlMessage(
            ihave=(IHave("a", (b"id1", b"id2")),),
            iwant=(IWant((b"id3",)),),
            graft=(Graft("a"),),
            prune=(Prune("b", (PxPeer(b"peer", b"record"), PxPeer(b"other")), 60), Prune("c")),
            idontwant=(IDontWant((b"id4",)),),
        ),
    )


def test_round_trip() -> None:
    rpc = full_rpc()
    assert decode_rpc(encode_rpc(rpc)) == rpc


def test_field_numbers_are_the_specs() -> None:
    # RPC.subscriptions = 1 {subscribe = 1, topicid = 2}
    assert encode_rpc(RPC(subscriptions=(SubOpts(True, "t"),))) == bytes.fromhex("0a05080112" + "0174")
    # RPC.publish = 2, Message {from 1, data 2, seqno 3, topicIDs 4, signature 5, key 6}
    msg = RawMessage(b"F", b"D", b"S", "T", b"G", b"K")
    assert encode_rpc(RPC(messages=(msg,))) == bytes.fromhex("1212" + "0a0146" "120144" "1a0153" "220154" "2a0147" "32014b")
    # RPC.control = 3 {ihave 1 {topicID 1, messageIDs 2}, iwant 2, graft 3, prune 4 {peers 2, backoff 3}, idontwant 5}
    control = ControlMessage(
        ihave=(IHave("t", (b"i",)),),
        iwant=(IWant((b"w",)),),
        graft=(Graft("g"),),
        prune=(Prune("p", (PxPeer(b"x", b"r"),), 7),),
        idontwant=(IDontWant((b"d",)),),
    )
    expected = (
        "0a06" "0a0174" "120169"  # ihave
        "1203" "0a0177"  # iwant
        "1a03" "0a0167"  # graft
        "220d" "0a0170" "1206" "0a0178" "120172" "1807"  # prune
        "2a03" "0a0164"  # idontwant
    )
    assert encode_rpc(RPC(control=control)) == bytes.fromhex("1a" + f"{len(expected) // 2:02x}" + expected)


def test_encoding_matches_the_generated_classes() -> None:
    data = encode_rpc(full_rpc())
    pb = pubsub_pb2.RPC.FromString(data)
    assert pb.SerializeToString() == data


def test_signable_is_the_message_without_signature_and_key() -> None:
    msg = RawMessage(b"F", b"", b"S", "T", b"G", b"K")
    pb = pubsub_pb2.Message.FromString(msg.encoded)
    pb.ClearField("signature")
    pb.ClearField("key")
    assert encode_signable(msg.from_peer, msg.data, msg.seqno, msg.topic) == pb.SerializeToString()
    # an empty data field that was sent is part of the signed bytes; an absent one is not
    assert b"\x12\x00" in encode_signable(b"F", b"", b"S", "T")
    assert b"\x12" not in encode_signable(None, None, None, "T")


def test_decoded_message_keeps_presence() -> None:
    got = decode_rpc(encode_rpc(full_rpc())).messages
    assert got[1].data is None and got[2].data == b""


@pytest.mark.parametrize("topics", [0, 2])
def test_message_needs_exactly_one_topic(topics: int) -> None:
    pb = pubsub_pb2.RPC()
    pb.publish.add().topicIDs.extend(["t"] * topics)
    with pytest.raises(DecodeError, match="topics"):
        decode_rpc(pb.SerializeToString())


def test_topic_must_be_utf8() -> None:
    # a SubOpts whose topicid is 0xff
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_rpc(bytes.fromhex("0a03" "1201ff"))


def test_entries_without_topic_are_dropped() -> None:
    pb = pubsub_pb2.RPC()
    pb.subscriptions.add().subscribe = True
    pb.control.graft.add()
    pb.control.ihave.add().messageIDs.append(b"x")
    rpc = decode_rpc(pb.SerializeToString())
    assert rpc.subscriptions == () and rpc.control == ControlMessage()


@pytest.mark.parametrize(
    ("rpc", "limits", "what"),
    [
        (RPC(subscriptions=(SubOpts(True, "t"),) * 3), RpcLimits(max_subscriptions=2), "subscriptions"),
        (RPC(messages=(RawMessage(None, None, None, "t"),) * 3), RpcLimits(max_messages=2), "messages"),
        (RPC(control=ControlMessage(graft=(Graft("t"),) * 3)), RpcLimits(max_control_entries=2), "graft"),
        (RPC(control=ControlMessage(ihave=(IHave("t", (b"x",) * 3),))), RpcLimits(max_ids_per_entry=2), "ihave"),
        (RPC(control=ControlMessage(iwant=(IWant((b"x",) * 3),))), RpcLimits(max_ids_per_entry=2), "iwant"),
        (RPC(control=ControlMessage(idontwant=(IDontWant((b"x",) * 3),))), RpcLimits(max_ids_per_entry=2), "idontwant"),
        (RPC(control=ControlMessage(prune=(Prune("t", (PxPeer(b"p"),) * 3),))), RpcLimits(max_px_peers=2), "peer exchange"),
    ],
)
def test_limits(rpc: RPC, limits: RpcLimits, what: str) -> None:
    data = encode_rpc(rpc)
    decode_rpc(data)  # fine with the defaults
    with pytest.raises(DecodeError, match=what):
        decode_rpc(data, limits)


def test_malformed_protobuf() -> None:
    with pytest.raises(DecodeError):
        decode_rpc(b"\x0a\x05\x08")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_an_rpc_or_a_decode_error(data: bytes) -> None:
    try:
        rpc = decode_rpc(data, RpcLimits(max_subscriptions=8, max_messages=8, max_control_entries=8, max_ids_per_entry=8))
    except DecodeError:
        return
    assert isinstance(rpc, RPC)
    decode_rpc(encode_rpc(rpc))  # what we decoded we can encode again


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_inside_a_valid_envelope(data: bytes) -> None:
    # the same bytes as a Message body and as a ControlMessage body
    for tag in (b"\x12", b"\x1a"):
        frame = tag + bytes([len(data)]) + data if len(data) < 128 else tag + bytes([0x80 | len(data) & 0x7F, len(data) >> 7]) + data
        try:
            decode_rpc(frame)
        except DecodeError:
            pass


_topics = st.text(min_size=1, max_size=8)
_ids = st.lists(st.binary(min_size=1, max_size=8), max_size=4).map(tuple)
_opt = st.none() | st.binary(max_size=16)
_messages = st.builds(RawMessage, _opt, _opt, _opt, _topics, _opt, _opt)
_control = st.builds(
    ControlMessage,
    st.lists(st.builds(IHave, _topics, _ids), max_size=3).map(tuple),
    st.lists(st.builds(IWant, _ids), max_size=3).map(tuple),
    st.lists(st.builds(Graft, _topics), max_size=3).map(tuple),
    st.lists(
        st.builds(
            Prune,
            _topics,
            st.lists(st.builds(PxPeer, st.binary(max_size=8), _opt), max_size=3).map(tuple),
            st.none() | st.integers(0, 1 << 40),
        ),
        max_size=3,
    ).map(tuple),
    st.lists(st.builds(IDontWant, _ids), max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        RPC,
        st.lists(st.builds(SubOpts, st.booleans(), _topics), max_size=4).map(tuple),
        st.lists(_messages, max_size=4).map(tuple),
        st.none() | _control,
    )
)
def test_any_rpc_round_trips(rpc: RPC) -> None:
    got = decode_rpc(encode_rpc(rpc))
    assert got.subscriptions == rpc.subscriptions
    assert got.messages == rpc.messages
    if rpc.control is None or not encode_rpc(RPC(control=rpc.control)):
        assert got.control in (None, ControlMessage())
    else:
        assert got.control == rpc.control
