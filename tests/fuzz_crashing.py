"""A fuzz target with a bug, for tests/test_fuzz.py to check that the
runner reports a crash and keeps the input that caused it."""

from __future__ import annotations

from fuzz.targets import Target
from guts.errors import DecodeError


def _feed(data: bytes) -> None:
    if len(data) > 2 and data[0] == data[1]:
        raise DecodeError("documented refusal")
    if len(data) == 3:
        raise IndexError("a bug in the decoder")


TARGETS = {"buggy": Target("buggy", _feed, (DecodeError,), lambda: [b"ab"])}
