"""The yamux sans-IO core, pumped synchronously between two sessions."""

from __future__ import annotations

import pytest

from guts.errors import ConfigError, DecodeError, LocalProtocolError, RemoteProtocolError
from guts.mux.yamux import (
    HEADER_SIZE,
    INITIAL_WINDOW,
    DataReceived,
    Event,
    Flag,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
    YamuxConfig,
    YamuxSession,
    decode_header,
    encode_header,
)

KiB = 1024


class SessionPair:
    """Two sessions joined back to back (h11's ConnectionPair, for yamux)."""

    def __init__(
        self, client_config: YamuxConfig | None = None, server_config: YamuxConfig | None = None
    ) -> None:
        self.client = YamuxSession(True, client_config)
        self.server = YamuxSession(False, server_config)

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until quiet; return (client, server) events."""
        client_events: list[Event] = []
        server_events: list[Event] = []
        for _ in range(1000):
            to_server = self.client.data_to_send()
            if to_server:
                server_events += self.server.receive_data(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                client_events += self.client.receive_data(to_client)
            if not to_server and not to_client:
                return client_events, server_events
        raise AssertionError("sessions never went quiet")


def frames(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """Split raw session output into (type, flags, sid, length, payload)."""
    out = []
    pos = 0
    while pos < len(data):
        h = decode_header(data, pos)
        pos += HEADER_SIZE
        body = b""
        if h.frame_type == FrameType.DATA:
            body = data[pos : pos + h.length]
            pos += h.length
        out.append((int(h.frame_type), h.flags, h.stream_id, h.length, body))
    return out


def joined(events: list[Event], sid: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == sid)


def hdr(ftype: int, flags: int, sid: int, length: int) -> bytes:
    return encode_header(ftype, flags, sid, length)


# ---------------------------------------------------------------------------
# Opening, data, closing


def test_stream_ids_by_role() -> None:
    client, server = YamuxSession(True), YamuxSession(False)
    assert [client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [server.open_stream() for _ in range(2)] == [2, 4]


def test_open_sends_syn_window_update_with_zero_delta() -> None:
    client = YamuxSession(True)
    sid = client.open_stream()
    assert frames(client.data_to_send()) == [(FrameType.WINDOW_UPDATE, Flag.SYN, sid, 0, b"")]


def test_inbound_stream_is_acknowledged() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    server_in = pair.server.receive_data(pair.client.data_to_send())
    assert server_in == [StreamOpened(sid)]
    assert frames(pair.server.data_to_send()) == [(FrameType.WINDOW_UPDATE, Flag.ACK, sid, 0, b"")]


def test_data_round_trip_and_close() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    assert pair.client.send(sid, b"hello") == 5
    pair.client.close_stream(sid)
    _, server_events = pair.pump()
    assert server_events == [StreamOpened(sid), DataReceived(sid, b"hello"), StreamEnded(sid)]
    assert pair.server.send(sid, b"world") == 5
    pair.server.close_stream(sid)
    client_events, _ = pair.pump()
    assert client_events == [DataReceived(sid, b"world"), StreamEnded(sid)]
    assert not pair.client.has_stream(sid)
    assert not pair.server.has_stream(sid)
    assert pair.client.stream_count == pair.server.stream_count == 0


def test_data_with_fin_on_the_same_frame_reports_data_first() -> None:
    server = YamuxSession(False)
    raw = hdr(FrameType.DATA, Flag.SYN | Flag.FIN, 1, 3) + b"abc"
    assert server.receive_data(raw) == [StreamOpened(1), DataReceived(1, b"abc"), StreamEnded(1)]


def test_syn_on_data_frame_is_accepted() -> None:
    server = YamuxSession(False)
    events = server.receive_data(hdr(FrameType.DATA, Flag.SYN, 1, 5) + b"hello")
    assert events == [StreamOpened(1), DataReceived(1, b"hello")]


def test_byte_at_a_time_gives_the_same_data() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    payload = bytes(range(256)) * 40
    pair.client.send(sid, payload)
    pair.client.close_stream(sid)
    raw = pair.client.data_to_send()
    events: list[Event] = []
    for i in range(len(raw)):
        events += pair.server.receive_data(raw[i : i + 1])
    assert joined(events, sid) == payload
    assert events[0] == StreamOpened(sid)
    assert events[-1] == StreamEnded(sid)


def test_chunk_inside_a_payload_passes_through_uncopied() -> None:
    server = YamuxSession(False)
    server.receive_data(hdr(FrameType.DATA, Flag.SYN, 1, 100_000))
    chunk = bytes(50_000)
    [event] = server.receive_data(chunk)
    assert isinstance(event, DataReceived)
    assert event.data is chunk


def test_send_zero_bytes_queues_nothing() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.client.data_to_send()
    assert pair.client.send(sid, b"") == 0
    assert pair.client.data_to_send() == b""


def test_bytearray_is_copied_but_memoryview_is_not() -> None:
    client = YamuxSession(True)
    sid = client.open_stream()
    client.data_to_send()
    buf = bytearray(b"abc")
    client.send(sid, buf)
    buf[0] = ord("X")
    assert client.data_to_send().endswith(b"abc")


def test_large_send_is_split_into_frames() -> None:
    config = YamuxConfig(initial_window=1024 * KiB, max_frame_payload=100 * KiB)
    client = YamuxSession(True, config)
    sid = client.open_stream()
    client.data_to_send()
    # The peer assumes a 256 KiB window until told otherwise.
    assert client.send(sid, bytes(300 * KiB)) == INITIAL_WINDOW
    sizes = [f[3] for f in frames(client.data_to_send())]
    assert sizes == [100 * KiB, 100 * KiB, 56 * KiB]


# ---------------------------------------------------------------------------
# Flow control


def test_send_is_limited_by_the_window_and_resumes_after_update() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    assert pair.client.send(sid, bytes(300 * KiB)) == 256 * KiB
    assert pair.client.send(sid, b"more") == 0
    assert pair.client.send_window(sid) == 0
    _, server_events = pair.pump()
    assert len(joined(server_events, sid)) == 256 * KiB
    # Nothing consumed yet: no credit goes back.
    assert pair.server.data_to_send() == b""
    pair.server.acknowledge_received(sid, 100 * KiB)
    assert pair.server.data_to_send() == b""  # less than half the window
    pair.server.acknowledge_received(sid, 40 * KiB)
    client_events, _ = pair.pump()
    assert client_events == [WindowUpdated(sid, 140 * KiB)]
    assert pair.client.send_window(sid) == 140 * KiB


def test_peer_exceeding_the_window_is_a_protocol_error() -> None:
    server = YamuxSession(False)
    server.receive_data(hdr(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0))
    server.data_to_send()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(hdr(FrameType.DATA, 0, 1, INITIAL_WINDOW + 1))
    assert info.value.hint == GoAwayCode.PROTOCOL_ERROR
    assert frames(server.data_to_send()) == [(FrameType.GO_AWAY, 0, 0, 1, b"")]
    # The session is finished: input is ignored, local actions refused.
    assert server.receive_data(b"anything at all") == []
    with pytest.raises(LocalProtocolError):
        server.open_stream()
    with pytest.raises(LocalProtocolError):
        server.send(1, b"x")


def test_window_exceeded_across_frames() -> None:
    server = YamuxSession(False)
    server.receive_data(hdr(FrameType.DATA, Flag.SYN, 1, 200 * KiB) + bytes(200 * KiB))
    with pytest.raises(RemoteProtocolError):
        server.receive_data(hdr(FrameType.DATA, 0, 1, 57 * KiB))


def test_window_update_overflow_is_a_protocol_error() -> None:
    client = YamuxSession(True)
    sid = client.open_stream()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(hdr(FrameType.WINDOW_UPDATE, 0, sid, 0xFFFF_FFFF))


def test_acknowledging_more_than_received_is_refused() -> None:
    server = YamuxSession(False)
    server.receive_data(hdr(FrameType.DATA, Flag.SYN, 1, 3) + b"abc")
    with pytest.raises(LocalProtocolError):
        server.acknowledge_received(1, 4)
    server.acknowledge_received(1, 3)


def test_larger_initial_window_is_announced_with_syn_and_ack() -> None:
    big = YamuxConfig(initial_window=1024 * KiB)
    pair = SessionPair(big, big)
    sid = pair.client.open_stream()
    syn = frames(pair.client.data_to_send())
    assert syn == [(FrameType.WINDOW_UPDATE, Flag.SYN, sid, 768 * KiB, b"")]
    pair.server.receive_data(b"".join(hdr(*f[:4]) for f in syn))
    assert pair.server.send_window(sid) == 1024 * KiB
    ack = pair.server.data_to_send()
    assert frames(ack) == [(FrameType.WINDOW_UPDATE, Flag.ACK, sid, 768 * KiB, b"")]
    pair.client.receive_data(ack)
    assert pair.client.send_window(sid) == 1024 * KiB


def _fill_and_consume(pair: SessionPair, sid: int, now: float) -> int:
    """Send one window's worth, let the server consume it all at ``now``."""
    window = pair.client.send_window(sid)
    assert pair.client.send(sid, bytes(window)) == window
    _, server_events = pair.pump()
    got = len(joined(server_events, sid))
    pair.server.acknowledge_received(sid, got, now)
    pair.pump()
    return got


def test_window_grows_when_refilled_within_four_rtts() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.pump()
    pair.server.record_rtt(0.010)
    sizes = []
    now = 0.0
    for _ in range(10):
        _fill_and_consume(pair, sid, now)
        sizes.append(pair.server.receive_window(sid))
        now += 0.001
    assert sizes[:2] == [256 * KiB, 512 * KiB]  # the first read starts the clock
    assert sizes[-1] == 16 * 1024 * KiB  # capped at max_window
    assert sizes == sorted(sizes)


def test_window_stays_when_the_reader_is_slow() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.pump()
    pair.server.record_rtt(0.010)
    now = 0.0
    for _ in range(5):
        _fill_and_consume(pair, sid, now)
        now += 1.0  # far more than four round trips per window
    assert pair.server.receive_window(sid) == INITIAL_WINDOW


def test_window_stays_without_rtt_or_time() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.pump()
    for _ in range(3):
        _fill_and_consume(pair, sid, 0.0)  # no RTT known
    pair.server.record_rtt(0.01)
    window = pair.client.send_window(sid)
    pair.client.send(sid, bytes(window))
    _, events = pair.pump()
    pair.server.acknowledge_received(sid, len(joined(events, sid)))  # no `now`
    assert pair.server.receive_window(sid) == INITIAL_WINDOW


def test_no_window_update_after_remote_fin() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.client.send(sid, bytes(200 * KiB))
    pair.client.close_stream(sid)
    pair.pump()
    pair.server.acknowledge_received(sid, 200 * KiB)
    assert pair.server.data_to_send() == b""


# ---------------------------------------------------------------------------
# Reset, refusal, limits


def test_reset_reaches_the_peer_and_forgets_the_stream() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.pump()
    pair.client.reset_stream(sid)
    assert not pair.client.has_stream(sid)
    _, server_events = pair.pump()
    assert server_events == [StreamReset(sid)]
    assert not pair.server.has_stream(sid)
    with pytest.raises(LocalProtocolError):
        pair.client.send(sid, b"x")
    pair.client.reset_stream(sid)  # resetting again is harmless
    assert pair.client.data_to_send() == b""


def test_rst_after_fin_is_still_reported() -> None:
    server = YamuxSession(False)
    server.receive_data(hdr(FrameType.DATA, Flag.SYN | Flag.FIN, 1, 1) + b"x")
    assert server.receive_data(hdr(FrameType.WINDOW_UPDATE, Flag.RST, 1, 0)) == [StreamReset(1)]


def test_streams_past_the_limit_are_refused_with_rst() -> None:
    pair = SessionPair(server_config=YamuxConfig(max_streams=2))
    sids = [pair.client.open_stream() for _ in range(3)]
    client_events, server_events = pair.pump()
    assert server_events == [StreamOpened(sids[0]), StreamOpened(sids[1])]
    assert client_events == [StreamReset(sids[2])]
    assert pair.server.stream_count == 2
    assert pair.client.stream_count == 2


def test_open_past_the_limit_raises() -> None:
    client = YamuxSession(True, YamuxConfig(max_streams=1))
    client.open_stream()
    with pytest.raises(LocalProtocolError):
        client.open_stream()


def test_data_for_unknown_streams_is_dropped() -> None:
    server = YamuxSession(False)
    raw = hdr(FrameType.DATA, Flag.FIN, 7, 4) + b"gone" + hdr(FrameType.WINDOW_UPDATE, 0, 9, 100)
    assert server.receive_data(raw) == []
    assert server.data_to_send() == b""


def test_data_of_a_refused_stream_is_skipped() -> None:
    server = YamuxSession(False, YamuxConfig(max_streams=1))
    raw = (
        hdr(FrameType.DATA, Flag.SYN, 1, 2) + b"ok"
        + hdr(FrameType.DATA, Flag.SYN, 3, 4) + b"nope"
        + hdr(FrameType.DATA, 0, 1, 1) + b"!"
    )
    events = server.receive_data(raw)
    assert events == [StreamOpened(1), DataReceived(1, b"ok"), DataReceived(1, b"!")]
    assert (FrameType.WINDOW_UPDATE, Flag.RST, 3, 0, b"") in frames(server.data_to_send())


def test_close_twice_and_send_after_close_are_refused() -> None:
    client = YamuxSession(True)
    sid = client.open_stream()
    client.close_stream(sid)
    with pytest.raises(LocalProtocolError):
        client.close_stream(sid)
    with pytest.raises(LocalProtocolError):
        client.send(sid, b"x")
    assert client.send_window(sid) == 0


# ---------------------------------------------------------------------------
# Ping and GoAway


def test_ping_is_answered_automatically() -> None:
    pair = SessionPair()
    opaque = pair.client.ping()
    client_events, server_events = pair.pump()
    assert server_events == []
    assert client_events == [PingAcknowledged(opaque)]
    assert pair.client.ping() == opaque + 1


def test_go_away_stops_new_streams_both_ways() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.pump()
    pair.client.go_away(GoAwayCode.NORMAL)
    pair.client.go_away(GoAwayCode.INTERNAL_ERROR)  # only the first is sent
    _, server_events = pair.pump()
    assert server_events == [GoAwayReceived(0)]
    assert pair.server.remote_goaway == 0
    with pytest.raises(LocalProtocolError):
        pair.server.open_stream()
    with pytest.raises(LocalProtocolError):
        pair.client.open_stream()
    # Existing streams carry on.
    pair.server.send(sid, b"still here")
    client_events, _ = pair.pump()
    assert joined(client_events, sid) == b"still here"


def test_syn_after_our_go_away_is_refused() -> None:
    server = YamuxSession(False)
    server.go_away(GoAwayCode.NORMAL)
    server.data_to_send()
    assert server.receive_data(hdr(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)) == []
    assert frames(server.data_to_send()) == [(FrameType.WINDOW_UPDATE, Flag.RST, 1, 0, b"")]


@pytest.mark.parametrize("code", [0, 1, 2, 77])
def test_go_away_codes_are_reported(code: int) -> None:
    client = YamuxSession(True)
    assert client.receive_data(hdr(FrameType.GO_AWAY, 0, 0, code)) == [GoAwayReceived(code)]


# ---------------------------------------------------------------------------
# Protocol violations


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(bytes([1, 0, 0, 0]) + bytes(8), id="version-1"),
        pytest.param(bytes([0, 4, 0, 0]) + bytes(8), id="type-4"),
    ],
)
def test_malformed_headers_are_decode_errors(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        YamuxSession(False).receive_data(raw)
    assert info.value.hint == GoAwayCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(hdr(FrameType.DATA, 0, 0, 0), id="data-on-stream-0"),
        pytest.param(hdr(FrameType.WINDOW_UPDATE, Flag.SYN, 0, 0), id="syn-on-stream-0"),
        pytest.param(hdr(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0), id="our-parity"),
        pytest.param(hdr(FrameType.PING, 0, 0, 1), id="ping-without-flags"),
        pytest.param(hdr(FrameType.PING, Flag.SYN, 1, 1), id="ping-on-stream"),
        pytest.param(hdr(FrameType.GO_AWAY, 0, 3, 0), id="goaway-on-stream"),
        pytest.param(
            hdr(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0) * 2, id="duplicate-syn"
        ),
        pytest.param(
            hdr(FrameType.DATA, Flag.SYN | Flag.FIN, 1, 0) + hdr(FrameType.DATA, 0, 1, 1) + b"x",
            id="data-after-fin",
        ),
    ],
)
def test_protocol_violations(raw: bytes) -> None:
    server = YamuxSession(False)
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(raw)
    assert info.value.hint == GoAwayCode.PROTOCOL_ERROR
    assert server.terminated is info.value
    assert frames(server.data_to_send())[-1] == (FrameType.GO_AWAY, 0, 0, 1, b"")


def test_ping_flood_without_reading_is_bounded() -> None:
    config = YamuxConfig(max_control_backlog=12 * 100)
    server = YamuxSession(False, config)
    flood = hdr(FrameType.PING, Flag.SYN, 0, 1) * 100
    server.receive_data(flood)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(hdr(FrameType.PING, Flag.SYN, 0, 1))
    assert server.pending_output <= config.max_control_backlog + 2 * HEADER_SIZE


def test_pings_are_fine_when_output_is_drained() -> None:
    config = YamuxConfig(max_control_backlog=12 * 100)
    server = YamuxSession(False, config)
    for _ in range(10):
        server.receive_data(hdr(FrameType.PING, Flag.SYN, 0, 1) * 100)
        assert len(server.data_to_send()) == 1200


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        YamuxConfig(initial_window=1000)
    with pytest.raises(ConfigError):
        YamuxConfig(max_window=100 * KiB)
    with pytest.raises(ConfigError):
        YamuxConfig(max_streams=0)


def test_public_surface() -> None:
    import guts.mux.yamux as yamux

    assert yamux.PROTOCOL_ID == "/yamux/1.0.0"
    assert set(yamux.__all__) == {
        "HEADER_SIZE", "INITIAL_WINDOW", "PROTOCOL_ID", "DataReceived", "Event", "Flag",
        "FrameHeader", "FrameType", "GoAwayCode", "GoAwayReceived", "PingAcknowledged",
        "StreamEnded", "StreamOpened", "StreamReset", "WindowUpdated", "YamuxConfig",
        "YamuxConnection", "YamuxSession", "YamuxStream", "YamuxStreamReset",
        "decode_header", "encode_header",
    }
    for name in yamux.__all__:
        assert hasattr(yamux, name)
