"""IWANT promises (gossipsub-v1.1.md, "Spam Protection Measures").

When a peer's IHAVE makes us send an IWANT, we track one id of the request,
chosen at random: the peer promised that message. If no peer delivers it
within the follow-up time the promise is broken, and the router charges the
advertiser a behavioural penalty (P7). A peer advertising ids it does not
have, or not answering IWANTs, is thus penalised, however many ids it lists.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["Promises"]

P = TypeVar("P", bound=Hashable)


class Promises(Generic[P]):
    """Outstanding IWANT promises: message id -> peer -> deadline."""

    def __init__(self, followup_time: float, rng: random.Random) -> None:
        self.followup_time = followup_time
        self._rng = rng
        self._by_id: dict[bytes, dict[P, float]] = {}

    def __len__(self) -> int:
        return sum(len(peers) for peers in self._by_id.values())

    def add(self, peer: P, message_ids: Sequence[bytes], now: float) -> None:
        """``peer`` is expected to deliver one of ``message_ids`` (we pick which)."""
        if not message_ids:
            return
        msg_id = message_ids[self._rng.randrange(len(message_ids))]
        peers = self._by_id.setdefault(msg_id, {})
        peers.setdefault(peer, now + self.followup_time)

    def delivered(self, msg_id: bytes) -> None:
        """The message arrived (from anyone): every promise of it is kept."""
        self._by_id.pop(msg_id, None)

    def broken(self, now: float) -> dict[P, int]:
        """Promises past their deadline, per peer; they are forgotten."""
        counts: dict[P, int] = {}
        for msg_id in list(self._by_id):
            peers = self._by_id[msg_id]
            for peer, deadline in list(peers.items()):
                if deadline <= now:
                    counts[peer] = counts.get(peer, 0) + 1
                    del peers[peer]
            if not peers:
                del self._by_id[msg_id]
        return counts
