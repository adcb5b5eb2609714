"""Varint and multistream-select bytes, checked against fixed vectors."""

import json
from pathlib import Path

import pytest

from guts.errors import DecodeError
from guts.wire import DialerNegotiation, NeedMoreData, decode_uvarint, encode_line, encode_uvarint

VECTORS = Path(__file__).parent / "vectors"
VARINT = json.loads((VECTORS / "varint.json").read_text())
MSS = json.loads((VECTORS / "multistream.json").read_text())


@pytest.mark.parametrize("case", VARINT["valid"], ids=lambda c: str(c["value"]))
def test_varint_valid(case: dict) -> None:
    raw = bytes.fromhex(case["hex"])
    assert encode_uvarint(case["value"]) == raw
    assert decode_uvarint(raw) == (case["value"], len(raw))


@pytest.mark.parametrize("case", VARINT["invalid"], ids=lambda c: c["hex"])
def test_varint_invalid(case: dict) -> None:
    with pytest.raises(DecodeError):
        decode_uvarint(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("hexdata", VARINT["truncated"])
def test_varint_truncated(hexdata: str) -> None:
    with pytest.raises(NeedMoreData):
        decode_uvarint(bytes.fromhex(hexdata))


@pytest.mark.parametrize("case", MSS["messages"], ids=lambda c: c["line"])
def test_multistream_line(case: dict) -> None:
    assert encode_line(case["line"]).hex() == case["hex"]


def test_dialer_sends_header_and_first_protocol_in_one_write() -> None:
    case = MSS["dialer_first_write"]
    core = DialerNegotiation(case["protocols"])
    assert core.data_to_send().hex() == case["hex"]
