"""Event output of ``guts start`` never blocks the node: the bounded,
non-blocking writer (:mod:`guts._cli.events`) and a real node whose stdout
nobody reads."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import trio

from guts._cli.events import EventOutput, OutputConfig
from guts.control import ControlClient

from .test_cli import GUTS, _start, run
from .test_cli_pubsub import _wait_mesh


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    return read_fd, write_fd


async def test_lines_reach_the_fd_in_order() -> None:
    read_fd, write_fd = _pipe()
    try:
        output = EventOutput(write_fd)
        async with trio.open_nursery() as nursery:
            await nursery.start(output.run)
            for i in range(100):
                assert output.emit(f"line {i}")
            output.close()
        assert output.emit("late") is False
        os.set_blocking(read_fd, False)
        data = os.read(read_fd, 1 << 20).decode()
        assert data.splitlines() == [f"line {i}" for i in range(100)]
        assert output.written == 100 and output.dropped == 1
    finally:
        os.close(read_fd)
        os.close(write_fd)


async def test_a_pipe_nobody_reads_never_blocks_the_trio_thread(caplog: pytest.LogCaptureFixture) -> None:
    """64 KiB of pipe, then the queue, then drops: counted, one warning per
    interval, and the event loop keeps running throughout."""
    caplog.set_level(logging.WARNING, "guts.cli")
    read_fd, write_fd = _pipe()
    try:
        output = EventOutput(write_fd, OutputConfig(capacity=64, report_interval=60.0, drain_timeout=0.5))
        line = "x" * 1000
        async with trio.open_nursery() as nursery:
            await nursery.start(output.run)
            started = time.monotonic()
            ticks = 0
            for _ in range(2000):
                output.emit(line)
                await trio.sleep(0)  # the writer runs, and blocks in its thread
                ticks += 1
            assert ticks == 2000 and time.monotonic() - started < 10
            closed_at = time.monotonic()
            output.close()
        assert time.monotonic() - closed_at < 5  # the drain gave up after drain_timeout
        # kept: about 64 KiB in the pipe, one batch in the writer's hands and
        # a full queue (64 lines each at most); the rest was dropped
        assert output.dropped >= 2000 - 70 - 64 - 64
        warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
        assert str(output.dropped) in warnings[-1].getMessage()
    finally:
        os.close(read_fd)
        os.close(write_fd)


async def test_the_queue_is_bounded_in_bytes_too() -> None:
    """Lines of 1 MiB (a subscription's biggest messages) into a pipe nobody
    reads: at most ``max_bytes`` wait in the queue, whatever the count."""
    read_fd, write_fd = _pipe()
    try:
        output = EventOutput(write_fd, OutputConfig(capacity=4096, max_bytes=4 << 20, drain_timeout=0.2))
        line = "y" * (1 << 20)
        async with trio.open_nursery() as nursery:
            await nursery.start(output.run)
            kept = 0
            for _ in range(64):
                kept += output.emit(line)
                await trio.sleep(0)
                assert output._queued_bytes <= 4 << 20
            output.close()
        # in the pipe and the writer's hands: one batch; in the queue: 4 MiB at most
        assert kept <= 4 + 2 and output.dropped == 64 - kept
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_start_whose_stdout_nobody_reads_answers_ping_and_status(tmp_path: Path) -> None:
    """300 remote 1 KB messages on the node's --topic, stdout never read:
    the node still answers ping and status, and stops on SIGINT."""
    env = {**os.environ, "GUTS_HOME": str(tmp_path / "a")}
    a = subprocess.Popen(
        [*GUTS, "start", "--json", "--listen", "/ip4/127.0.0.1/tcp/0", "--topic", "news"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    b = None
    try:
        assert a.stdout is not None
        ready_a = json.loads(a.stdout.readline())
        b = _start(tmp_path / "b", "--topic", "news", "--bootstrap", ready_a["addrs"][0])
        assert b.stdout is not None
        json.loads(b.stdout.readline())
        _wait_mesh(tmp_path / "a", "news", 1)
        _wait_mesh(tmp_path / "b", "news", 1)

        async def flood() -> None:
            client = ControlClient(tmp_path / "b" / "control.sock")
            with trio.fail_after(60):
                for i in range(300):
                    await client.call("POST", "/v1/pubsub/publish", {"topic": "news", "data": f"{i:04d}" + "m" * 1020})

        trio.run(flood)
        time.sleep(1.0)  # a's stdout is full by now (300 lines of 1 KB > 64 KiB of pipe)
        ping = subprocess.run([*GUTS, "ping", ready_a["addrs"][0], "--count", "2", "--timeout", "5"],
                              capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, ping.stderr
        assert "2 pings" in ping.stdout
        status = run("status", "--json", home=tmp_path / "a", timeout=30)
        assert status.returncode == 0, status.stderr
        answer = json.loads(status.stdout)
        assert answer["peer_id"] == ready_a["peer_id"]
        # 300 lines fit the queue of 4,096: none dropped, and status says so
        assert answer["output"]["lines_dropped"] == 0 and answer["output"]["lines_written"] >= 1
        # what did fit is real output: messages from b, in order
        seen = []
        for _ in range(30):
            event = json.loads(a.stdout.readline())
            if event["event"] == "message":
                seen.append(int(event["data"][:4]))
        assert seen and seen == sorted(seen)
    finally:
        for node in (a, b):
            if node is not None:
                node.send_signal(signal.SIGINT)
        for node in (a, b):
            if node is not None:
                assert node.wait(timeout=20) == 0
