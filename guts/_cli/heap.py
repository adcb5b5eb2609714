"""How `guts start` keeps glibc from holding memory the node has freed.

Theory of operation
-------------------
CPython takes blocks over 512 bytes from the C allocator. With glibc, two
things keep freed memory in a node's RSS after an attack has ended:

- glibc raises its mmap threshold each time an mmapped block is freed,
  after which 1 MiB buffers (gossip messages, pack chunks) come from the
  heap, and their pages stay. :func:`fix_mmap_threshold` fixes it at
  128 KiB, which also stops the raising: such blocks are mmapped and
  unmapped when freed.
- Smaller blocks (64 KiB Noise frames, yamux chunks) come from the heap
  either way, and ``free`` gives pages back only from its top: freed
  chunks below a live one stay resident. After the soak's attack the heap
  held 66 MB of which 11 MB were in use. :func:`trim_heap` (glibc's
  ``malloc_trim``) hands every free page back; it takes well under a
  millisecond on such a heap, so :func:`trim_periodically` runs it on the
  Trio thread every 10 s.

Off glibc both are no-ops. These are process-wide settings, so they
belong to the program (`guts start`), not to the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any

import trio

__all__ = ["fix_mmap_threshold", "trim_heap", "trim_periodically"]

_M_MMAP_THRESHOLD = -3


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def fix_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Have glibc serve every block of ``threshold`` bytes or more from its
    own mmap; False where there is no ``mallopt``."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))


def trim_heap() -> bool:
    """Give the free pages of the heap back to the system; False where
    there is no ``malloc_trim``."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


async def trim_periodically(interval: float = 10.0) -> None:
    """:func:`trim_heap` every ``interval`` seconds, until cancelled."""
    if not trim_heap():
        return
    while True:
        await trio.sleep(interval)
        trim_heap()
