"""Peer scoring and blocking: one score per peer that every protocol
feeds, thresholds that throttle, disconnect and then block, and a block
list (by peer id, address or network) kept in ``GUTS_HOME/blocks.sqlite``.

- :class:`Reputation` (``_core``): the sans-IO scores and block list; every
  call takes ``now``.
- :class:`BlockStore` (``_store``): the block list on disk, bounded and
  versioned.
- :class:`PeerGuard` (``_guard``): the Trio adapter a node runs: it gates
  the transports before the handshake, watches the host after it, and
  closes the connections the verdicts call for.

This layer sits just above the host: protocols report to it, the node
composes it, the control API lists and changes its blocks.
"""

from guts.reputation._core import (
    Block,
    BlockListFull,
    Outcome,
    Reputation,
    ReputationConfig,
    Target,
    Verdict,
    parse_target,
    target_text,
)
from guts.reputation._guard import PeerGuard, ip_of
from guts.reputation._store import BLOCKS_FILE, BlockStore, BlockStoreError, BlockStoreFull

__all__ = [
    "BLOCKS_FILE",
    "Block",
    "BlockListFull",
    "BlockStore",
    "BlockStoreError",
    "BlockStoreFull",
    "Outcome",
    "PeerGuard",
    "Reputation",
    "ReputationConfig",
    "Target",
    "Verdict",
    "ip_of",
    "parse_target",
    "target_text",
]
