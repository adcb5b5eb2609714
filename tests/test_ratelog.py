"""guts.ratelog: one line per key and reason per interval, with counts."""

from __future__ import annotations

import logging

import pytest

from guts.ratelog import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger="test.ratelog")
    return logging.getLogger("test.ratelog")


def test_a_flood_writes_one_line_per_interval_then_the_count(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rl = RateLimitedLog(logger, interval=10.0, clock=clock)
    peer = "12D3KooWAbcdefghijklmnopqrstuvwxyz"
    written = 0
    for i in range(20_000):
        clock.now = i * 0.0001  # 20,000 lines in 2 s
        written += rl.info(peer, "reset", "peer %s: stream reset", peer)
    assert written == 1
    clock.now = 12.0
    assert rl.info(peer, "reset", "peer %s: stream reset", peer)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[1].endswith("(and 19,999 more like it from 12D3KooWAbcd... in the last 12 s)")
    # the interval starts again from the line just written
    clock.now = 13.0
    assert not rl.info(peer, "reset", "again")
    clock.now = 22.5
    assert rl.info(peer, "reset", "again")
    assert caplog.records[-1].getMessage() == "again (and 1 more like it from 12D3KooWAbcd... in the last 10 s)"


def test_keys_and_reasons_are_separate(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rl = RateLimitedLog(logger, interval=10.0, clock=clock)
    assert rl.warning("a", "x", "a x")
    assert rl.warning("a", "y", "a y")
    assert rl.warning("b", "x", "b x")
    assert not rl.warning("a", "x", "a x again")
    assert [r.getMessage() for r in caplog.records] == ["a x", "a y", "b x"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3


def test_memory_is_bounded_and_forgotten_counts_are_reported(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rl = RateLimitedLog(logger, interval=10.0, max_keys=100, clock=clock)
    for ip in range(100):
        rl.info(ip, "bad", "from %d", ip)
        rl.info(ip, "bad", "from %d", ip)  # held back
    assert len(rl) == 100
    for ip in range(100, 1_100):
        rl.info(ip, "bad", "from %d", ip)
        assert len(rl) <= 100
    # each of the next 100 keys forgot one old key (1 line held back each)
    # before its own line went out, and said so
    assert caplog.records[100].getMessage() == "from 100 (1 more lines held back from sources no longer tracked)"
    assert caplog.records[199].getMessage() == "from 199 (1 more lines held back from sources no longer tracked)"
    assert caplog.records[200].getMessage() == "from 200"
    assert rl.forgotten == 0
    assert len(caplog.records) == 100 + 1_000


def test_lines_below_the_level_cost_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.ratelog.quiet")
    rl = RateLimitedLog(logging.getLogger("test.ratelog.quiet"), clock=Clock())
    assert not rl.info("a", "x", "quiet")
    assert len(rl) == 0
    assert rl.warning("a", "x", "loud")


def test_bad_settings_are_refused(logger: logging.Logger) -> None:
    with pytest.raises(ValueError):
        RateLimitedLog(logger, interval=0)
    with pytest.raises(ValueError):
        RateLimitedLog(logger, max_keys=0)


def test_flush_tells_what_a_flood_that_stopped_held_back(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimitedLog(logger, interval=60.0)
    assert rl.next_end() is None
    assert rl.warning("127.0.0.2", "per_ip", "refusing %s", "127.0.0.2", now=0.0)
    assert not any(rl.warning("127.0.0.2", "per_ip", "refusing %s", "127.0.0.2", now=float(i)) for i in range(1, 20))
    assert rl.warning("127.0.0.3", "per_ip", "refusing %s", "127.0.0.3", now=1.0)
    assert rl.next_end() == 60.0
    assert rl.flush(59.0) == 0
    assert rl.flush(60.0) == 1  # .3 held nothing back: forgotten without a line
    assert len(rl) == 1 and rl.next_end() == 61.0
    assert rl.flush(61.0) == 0 and len(rl) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "refusing 127.0.0.2",
        "refusing 127.0.0.3",
        "... and 19 more like it (per_ip) from 127.0.0.2 in the last 60 s",
    ]
    assert caplog.records[-1].levelno == logging.WARNING  # the level of the line it sums up
    assert rl.lines == 3
    assert rl.warning("127.0.0.2", "per_ip", "refusing %s", "127.0.0.2", now=62.0)  # a new interval


def test_flush_without_a_clock_argument_uses_the_clock(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rl = RateLimitedLog(logger, interval=10.0, clock=clock)
    rl.info("a", "x", "a")
    rl.info("a", "x", "a")
    clock.now = 10.0
    assert rl.flush() == 1
    assert caplog.records[-1].getMessage() == "... and 1 more like it (x) from a in the last 10 s"
