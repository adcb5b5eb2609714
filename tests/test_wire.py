"""multistream-select cores pumped against each other, and the trio adapter."""

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.errors import DecodeError, NegotiationError, ProtocolError, RemoteProtocolError
from guts.wire import (
    DialerNegotiation,
    LengthPrefixedDecoder,
    ListenerNegotiation,
    accept_protocol,
    encode_length_prefixed,
    encode_line,
    select_protocol,
)
from guts.wire._multistream import MAX_ATTEMPTS


def pump(dialer: DialerNegotiation, listener: ListenerNegotiation) -> None:
    for _ in range(100):
        out = dialer.data_to_send()
        if out:
            listener.receive_data(out)
        back = listener.data_to_send()
        if back:
            dialer.receive_data(back)
        if dialer.done and listener.done:
            return
        if not out and not back:
            return


def test_first_choice_accepted() -> None:
    d, l = DialerNegotiation(["/a", "/b"]), ListenerNegotiation({"/a", "/b"})
    pump(d, l)
    assert d.protocol == l.protocol == "/a"


def test_falls_back_after_na() -> None:
    d, l = DialerNegotiation(["/x", "/y", "/b"]), ListenerNegotiation({"/a", "/b"})
    pump(d, l)
    assert d.protocol == l.protocol == "/b"


def test_none_supported() -> None:
    d, l = DialerNegotiation(["/x"]), ListenerNegotiation({"/a"})
    with pytest.raises(NegotiationError):
        pump(d, l)


def test_listener_answers_ls() -> None:
    l = ListenerNegotiation({"/a": 1}, listing=["/a"])
    l.receive_data(encode_line("/multistream/1.0.0") + encode_line("ls"))
    out = l.data_to_send()
    body = encode_length_prefixed(b"\x03/a\n" + b"\n")
    assert out == encode_line("/multistream/1.0.0") + body


def test_listener_refuses_garbage_header() -> None:
    l = ListenerNegotiation({"/a"})
    with pytest.raises(RemoteProtocolError):
        l.receive_data(encode_line("GET / HTTP/1.1"))


def test_listener_refuses_oversized_line() -> None:
    l = ListenerNegotiation({"/a"})
    with pytest.raises(DecodeError):
        l.receive_data(b"\xff\xff\x03")


def test_listener_bounds_attempts() -> None:
    l = ListenerNegotiation({"/a"})
    l.receive_data(encode_line("/multistream/1.0.0"))
    with pytest.raises(NegotiationError):
        for i in range(MAX_ATTEMPTS + 1):
            l.receive_data(encode_line(f"/nope/{i}"))


def test_unused_data_kept() -> None:
    d, l = DialerNegotiation(["/a"]), ListenerNegotiation({"/a"})
    l.receive_data(d.data_to_send() + b"early")
    assert l.done and l.unused_data() == b"early"
    d.receive_data(l.data_to_send() + b"reply")
    assert d.done and d.unused_data() == b"reply"


def test_length_prefixed_decoder_split_input() -> None:
    dec = LengthPrefixedDecoder(100)
    wire = encode_length_prefixed(b"x" * 50) + encode_length_prefixed(b"")
    for b in wire:
        dec.receive_data(bytes([b]))
    assert dec.next_message() == b"x" * 50
    assert dec.next_message() == b""
    assert dec.next_message() is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_listener_arbitrary_bytes(data: bytes) -> None:
    l = ListenerNegotiation({"/a"})
    try:
        l.receive_data(data)
    except ProtocolError:
        pass
    assert len(l.data_to_send()) < 64 * 1024


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_dialer_arbitrary_bytes(data: bytes) -> None:
    d = DialerNegotiation(["/a"])
    try:
        d.receive_data(data)
    except ProtocolError:
        pass


async def test_adapter_over_memory_streams() -> None:
    a, b = trio.testing.memory_stream_pair()
    result: dict[str, str] = {}

    async def listener() -> None:
        s = await accept_protocol(b, {"/echo"})
        result["l"] = s.protocol
        data = await s.receive_some()
        await s.send_all(data)

    async with trio.open_nursery() as n:
        n.start_soon(listener)
        s = await select_protocol(a, ["/nope", "/echo"])
        await s.send_all(b"hello")
        assert await s.receive_some() == b"hello"
    assert s.protocol == result["l"] == "/echo"


async def test_adapter_one_byte_at_a_time() -> None:
    a, b = trio.testing.lockstep_stream_pair()

    async def listener() -> None:
        s = await accept_protocol(b, {"/echo"})
        await s.send_all(b"pong")

    async with trio.open_nursery() as n:
        n.start_soon(listener)
        s = await select_protocol(a, ["/echo"])
        assert await s.receive_some(4) == b"pong"


async def test_adapter_peer_hangs_up() -> None:
    a, b = trio.testing.memory_stream_pair()
    await b.aclose()
    with pytest.raises((RemoteProtocolError, trio.BrokenResourceError)):
        await select_protocol(a, ["/echo"])
