"""guts._cli.heap: glibc's mmap threshold and heap trimming for `guts start`."""

from __future__ import annotations

import ctypes.util
import os

import pytest
import trio
import trio.testing

from guts._cli import heap

GLIBC = ctypes.util.find_library("c") is not None and os.uname().sysname == "Linux"


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_trim_gives_freed_heap_pages_back() -> None:
    """Chunks freed below a live one stay resident until trimmed."""
    assert heap.fix_mmap_threshold()
    # 64 KiB blocks come from the heap (below the 128 KiB threshold); keep
    # every 16th alive so that free() cannot shrink the heap from its top
    blocks = [bytearray(60_000) for _ in range(1600)]
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])  # touch every page
    keep = blocks[::16]
    del blocks
    before = _rss_kib()
    assert heap.trim_heap()
    after = _rss_kib()
    assert before - after > 40_000, (before, after)  # about 88 MiB were freed
    del keep


async def test_trim_periodically_runs_until_cancelled(autojump_clock: trio.testing.MockClock,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(heap, "trim_heap", lambda: calls.append(trio.current_time()) or True)
    with trio.move_on_after(35):
        await heap.trim_periodically(10.0)
    assert calls == [0.0, 10.0, 20.0, 30.0]
