"""multistream-select cores pumped against each other, and the trio adapter."""

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.errors import DecodeError, NegotiationError, ProtocolError, RemoteProtocolError
from guts.transport import memory_connection_pair
from guts.wire import (
    DialerNegotiation,
    LengthPrefixedDecoder,
    ListenerNegotiation,
    NegotiatedStream,
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


# -- lazy negotiation ---------------------------------------------------------


class Recording(trio.abc.Stream):
    """A stream that remembers each ``send_all`` as one write."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def test_lazy_dialer_and_holding_listener_share_writes() -> None:
    a, b = trio.testing.memory_stream_pair()
    dialer_side, listener_side = Recording(a), Recording(b)

    async def listener() -> None:
        s = await accept_protocol(listener_side, {"/echo"}, hold_answer=True)
        assert s.protocol == "/echo"
        assert listener_side.writes == []  # the answer waits for our first write
        assert s.unwrap() is s
        assert await s.receive_some() == b"hello"
        await s.send_all(b"HELLO")
        assert s.unwrap() is listener_side

    async with trio.open_nursery() as n:
        n.start_soon(listener)
        s = NegotiatedStream.lazy(dialer_side, "/echo")
        assert s.protocol == "/echo" and s.unwrap() is s
        await s.send_all(b"hello")
        assert await s.receive_some() == b"HELLO"
        assert s.unwrap() is dialer_side
    header, echo = encode_line("/multistream/1.0.0"), encode_line("/echo")
    assert dialer_side.writes == [header + echo + b"hello"]
    assert listener_side.writes == [header + echo + b"HELLO"]


async def test_lazy_dialer_against_a_plain_listener_byte_by_byte() -> None:
    a, b = trio.testing.lockstep_stream_pair()

    async def listener() -> None:
        s = await accept_protocol(b, {"/echo"}, hold_answer=True)
        data = b""
        while len(data) < 5:
            data += await s.receive_some(1)
        await s.send_all(data.upper())

    async with trio.open_nursery() as n:
        n.start_soon(listener)
        s = NegotiatedStream.lazy(a, "/echo")
        await s.send_all(b"hello")
        got = b""
        while len(got) < 5:
            got += await s.receive_some(1)
        assert got == b"HELLO"


async def test_lazy_dialer_receiving_first_sends_the_proposal() -> None:
    a, b = trio.testing.memory_stream_pair()

    async def listener() -> None:
        s = await accept_protocol(b, {"/greet"}, hold_answer=True)  # nothing behind: answers at once
        await s.send_all(b"welcome")

    async with trio.open_nursery() as n:
        n.start_soon(listener)
        s = NegotiatedStream.lazy(a, "/greet")
        assert await s.receive_some() == b"welcome"


async def test_lazy_dialer_send_waits_for_the_proposal_flush() -> None:
    # A send_all that starts while receive_some is writing the proposal must
    # not write at the same time (lockstep streams would raise Busy).
    a, b = trio.testing.lockstep_stream_pair()

    async def listener() -> None:
        s = await accept_protocol(b, {"/echo"})
        await s.send_all(await s.receive_some())

    s = NegotiatedStream.lazy(a, "/echo")
    got: list[bytes] = []

    async def receiver() -> None:
        got.append(bytes(await s.receive_some()))

    async with trio.open_nursery() as n:
        n.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()  # receiver is blocked in the flush
        n.start_soon(listener)
        await s.send_all(b"x")
    assert got == [b"x"]


async def test_try_send_waits_for_negotiation_bytes_to_go_first() -> None:
    # try_send must never let data overtake the multistream lines in front.
    a, b = memory_connection_pair(1024)
    s = NegotiatedStream.lazy(a, "/echo")
    assert s.try_send(b"early") == 0  # the proposal has not been written yet
    await s.send_all(b"hello")
    assert s.try_send(b" world") == 6  # now straight through to the connection
    header, echo = encode_line("/multistream/1.0.0"), encode_line("/echo")
    assert await b.receive_some() == header + echo + b"hello world"
    plain = NegotiatedStream(trio.testing.memory_stream_pair()[0], "/echo")
    assert plain.try_send(b"x") == 0  # the wrapped stream cannot write without waiting


async def test_receive_into_returns_leftover_bytes_first() -> None:
    a, b = memory_connection_pair(1024)
    s = NegotiatedStream(a, "/echo", b"left")
    buffer = bytearray(3)
    assert await s.receive_into(buffer) == 3 and buffer == b"lef"
    assert await s.receive_into(buffer) == 1 and buffer[:1] == b"t"
    await b.send_all(b"more")
    assert await s.receive_into(buffer) == 3 and buffer == b"mor"  # memory connections: no receive_into


async def test_lazy_dialer_learns_of_a_refusal_when_receiving() -> None:
    a, b = trio.testing.memory_stream_pair()
    s = NegotiatedStream.lazy(a, "/nope")

    async with trio.open_nursery() as n:
        n.start_soon(accept_protocol, b, {"/echo"})  # answers "na", waits for more
        with pytest.raises(NegotiationError):
            await s.receive_some()  # sends the proposal alone, reads "na"
        n.cancel_scope.cancel()


async def test_lazy_dialer_data_behind_a_refused_proposal() -> None:
    # The listener reads our data as multistream lines and hangs up.
    a, b = trio.testing.memory_stream_pair()
    s = NegotiatedStream.lazy(a, "/nope")

    async def listener() -> None:
        with pytest.raises(DecodeError):
            await accept_protocol(b, {"/echo"})
        await b.aclose()

    async with trio.open_nursery() as n:
        n.start_soon(listener)
        await s.send_all(b"\x00data")
        with pytest.raises(RemoteProtocolError):
            await s.receive_some()


async def test_lazy_dialer_peer_hangs_up() -> None:
    a, b = trio.testing.memory_stream_pair()
    await b.aclose()
    s = NegotiatedStream.lazy(a, "/echo")
    with pytest.raises((RemoteProtocolError, trio.BrokenResourceError)):
        await s.send_all(b"x")
        await s.receive_some()


async def test_held_answer_goes_out_with_send_eof() -> None:
    a, b = trio.testing.memory_stream_pair()
    lazy = NegotiatedStream.lazy(a, "/sink")
    await lazy.send_all(b"data")
    s = await accept_protocol(b, {"/sink"}, hold_answer=True)
    assert await s.receive_some() == b"data"
    await s.send_eof()
    assert await lazy.receive_some() == b""
    assert lazy.protocol == "/sink"
