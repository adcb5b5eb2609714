"""Property tests: the yamux core under arbitrary and adversarial input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guts.errors import LocalProtocolError, RemoteProtocolError
from guts.mux.yamux import (
    HEADER_SIZE,
    INITIAL_WINDOW,
    DataReceived,
    Event,
    StreamEnded,
    StreamOpened,
    YamuxConfig,
    YamuxSession,
    encode_header,
)

SMALL = YamuxConfig(max_streams=8, max_control_backlog=4 * 1024)


def check_bounded(session: YamuxSession, delivered: dict[int, int]) -> None:
    """What a peer can make the session hold stays within fixed limits."""
    assert len(session._hbuf) < HEADER_SIZE
    # Control answers are capped; the GoAway after a violation adds one frame.
    assert session.pending_output <= session.config.max_control_backlog + HEADER_SIZE
    assert session.stream_count <= session.config.max_streams
    # Nothing was acknowledged, so no stream got more than its first window.
    for total in delivered.values():
        assert total <= session.config.initial_window


def feed(session: YamuxSession, chunks: list[bytes]) -> None:
    delivered: dict[int, int] = {}
    failed = False
    for chunk in chunks:
        try:
            events = session.receive_data(chunk)
        except RemoteProtocolError:
            failed = True
            events = []
        if failed:
            assert session.terminated is not None
            assert session.receive_data(chunk) == []
        for event in events:
            if isinstance(event, StreamOpened):
                delivered[event.stream_id] = 0  # a new incarnation of the id
            elif isinstance(event, DataReceived):
                delivered[event.stream_id] += len(event.data)
        check_bounded(session, delivered)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(is_initiator=st.booleans(), chunks=st.lists(st.binary(max_size=200), max_size=30))
def test_arbitrary_bytes_only_raise_remote_protocol_errors(
    is_initiator: bool, chunks: list[bytes]
) -> None:
    feed(YamuxSession(is_initiator, SMALL), chunks)


def _frame(ftype: int, flags: int, sid: int, length: int, payload_size: int) -> bytes:
    header = encode_header(ftype, flags, sid, length)
    return header + bytes(min(length, payload_size)) if ftype == 0 else header


frame_strategy = st.builds(
    _frame,
    ftype=st.integers(0, 3),
    flags=st.integers(0, 15),
    sid=st.integers(0, 12),
    length=st.one_of(st.integers(0, 64), st.integers(0, 2 * INITIAL_WINDOW)),
    payload_size=st.integers(0, 64),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    is_initiator=st.booleans(),
    frames=st.lists(frame_strategy, max_size=60),
    split=st.integers(1, 50),
)
def test_plausible_frames_only_raise_remote_protocol_errors(
    is_initiator: bool, frames: list[bytes], split: int
) -> None:
    raw = b"".join(frames)
    chunks = [raw[i : i + split] for i in range(0, len(raw), split)]
    feed(YamuxSession(is_initiator, SMALL), chunks)


@settings(max_examples=200, deadline=None)
@given(pings=st.integers(1, 5000))
def test_ping_flood_never_grows_past_the_backlog(pings: int) -> None:
    session = YamuxSession(False, SMALL)
    try:
        session.receive_data(encode_header(2, 1, 0, 7) * pings)
    except RemoteProtocolError:
        assert pings * HEADER_SIZE > SMALL.max_control_backlog
    else:
        assert pings * HEADER_SIZE <= SMALL.max_control_backlog
    assert session.pending_output <= SMALL.max_control_backlog + HEADER_SIZE


Action = tuple[str, int, int]

action_strategy = st.lists(
    st.tuples(
        st.sampled_from(["send", "read", "pump_some"]),
        st.integers(0, 2),  # stream index
        st.integers(1, 300_000),  # size
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=action_strategy, cut=st.integers(1, 70_000))
def test_random_traffic_arrives_intact_and_in_order(actions: list[Action], cut: int) -> None:
    """Random sends, reads and partial deliveries never lose or reorder data."""
    client = YamuxSession(True)
    server = YamuxSession(False)
    sids = [client.open_stream() for _ in range(3)]
    sent = {sid: bytearray() for sid in sids}
    received = {sid: bytearray() for sid in sids}
    unread = dict.fromkeys(sids, 0)
    counter = 0
    wire = bytearray()

    def deliver(limit: int | None) -> None:
        nonlocal wire
        wire += client.data_to_send()
        take = len(wire) if limit is None else min(limit, len(wire))
        chunk, wire = bytes(wire[:take]), wire[take:]
        for event in server.receive_data(chunk):
            if isinstance(event, DataReceived):
                received[event.stream_id] += event.data
                unread[event.stream_id] += len(event.data)
        for event in client.receive_data(server.data_to_send()):
            assert not isinstance(event, StreamEnded)

    for kind, index, size in actions:
        sid = sids[index]
        if kind == "send":
            payload = (counter.to_bytes(4, "big") * (size // 4 + 1))[:size]
            counter += 1
            accepted = client.send(sid, payload)
            assert 0 <= accepted <= size
            sent[sid] += payload[:accepted]
        elif kind == "read":
            n = min(size, unread[sid])
            server.acknowledge_received(sid, n, now=float(counter))
            unread[sid] -= n
        else:
            deliver(cut)
    deliver(None)
    for sid in sids:
        assert received[sid] == sent[sid]
        # The peer never got ahead of what we granted.
        assert unread[sid] <= server.receive_window(sid)


@given(st.integers(0, 2**32 - 1))
def test_go_away_code_round_trip(code: int) -> None:
    session = YamuxSession(True)
    session.go_away(code)
    events: list[Event] = YamuxSession(False).receive_data(session.data_to_send())
    assert [getattr(e, "code", None) for e in events] == [code]


def test_local_misuse_is_local_error() -> None:
    session = YamuxSession(True)
    try:
        session.send(99, b"x")
    except LocalProtocolError:
        pass
    else:
        raise AssertionError("expected LocalProtocolError")
