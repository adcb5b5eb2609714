"""yamux frame bytes and session answers, checked against fixed vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guts import errors
from guts.mux import yamux
from guts.mux.yamux import Event, FrameHeader, FrameType, YamuxSession, decode_header

VECTORS = json.loads((Path(__file__).parent / "vectors" / "yamux_frames.json").read_text())


@pytest.mark.parametrize("case", VECTORS["frames"], ids=lambda c: c["name"])
def test_frame_encode_decode(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["hex"])
    header = FrameHeader(FrameType(case["type"]), case["flags"], case["stream_id"], case["length"])
    assert header.encode() + bytes.fromhex(case["payload"]) == raw
    assert raw[0] == case["version"]
    assert decode_header(raw) == header


@pytest.mark.parametrize("case", VECTORS["invalid_headers"], ids=lambda c: c["name"])
def test_invalid_headers(case: dict[str, Any]) -> None:
    with pytest.raises(errors.DecodeError):
        decode_header(bytes.fromhex(case["hex"]))


def _event(spec: list[Any]) -> Event:
    name, *args = spec
    cls = getattr(yamux, name)
    if name == "DataReceived":
        return cls(args[0], bytes.fromhex(args[1]))  # type: ignore[no-any-return]
    return cls(*args)  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", VECTORS["exchanges"], ids=lambda c: c["name"])
def test_session_exchanges(case: dict[str, Any]) -> None:
    session = YamuxSession(case["is_initiator"])
    for _ in range(case["open_streams"]):
        session.open_stream()
    raw = bytes.fromhex(case["input"])
    if "error" in case:
        with pytest.raises(getattr(errors, case["error"])):
            session.receive_data(raw)
    else:
        assert session.receive_data(raw) == [_event(e) for e in case["events"]]
    assert session.data_to_send().hex() == case["output"]
