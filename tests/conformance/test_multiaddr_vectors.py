"""Multiaddr text and binary forms, checked against fixed vectors."""

import json
from pathlib import Path

import pytest

from guts.multiaddr import InvalidMultiaddr, Multiaddr

VECTORS = json.loads((Path(__file__).parent / "vectors" / "multiaddrs.json").read_text())


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["text"])
def test_valid(case: dict[str, str]) -> None:
    raw = bytes.fromhex(case["hex"])
    assert Multiaddr.parse(case["text"]).to_bytes() == raw
    assert str(Multiaddr.from_bytes(raw)) == case["text"]


@pytest.mark.parametrize("case", VECTORS["canonical"], ids=lambda c: c["text"])
def test_canonical(case: dict[str, str]) -> None:
    m = Multiaddr.parse(case["text"])
    assert str(m) == case["canonical"]
    assert m.to_bytes().hex() == case["hex"]
    assert m == Multiaddr.parse(case["canonical"])


@pytest.mark.parametrize("text", VECTORS["invalid_text"])
def test_invalid_text(text: str) -> None:
    with pytest.raises(InvalidMultiaddr):
        Multiaddr.parse(text)


@pytest.mark.parametrize("case", VECTORS["invalid_hex"], ids=lambda c: c["why"])
def test_invalid_bytes(case: dict[str, str]) -> None:
    with pytest.raises(InvalidMultiaddr):
        Multiaddr.from_bytes(bytes.fromhex(case["hex"]))
