"""The iterative Kademlia lookup, sans-IO.

Theory of operation
-------------------

A :class:`Lookup` holds every peer it has heard of, ordered by XOR
distance to the target, each in one :class:`PeerState`. The driver (the
Trio layer, or a simulator) calls :meth:`Lookup.next` to learn whom to
ask, sends them the request, and reports each answer with
:meth:`Lookup.on_success` (with the closer peers the answer listed) or
:meth:`Lookup.on_failure`. Time comes in as ``now``; nothing here blocks.

* At most ``alpha`` requests are in flight (spec: alpha; js and newer
  revisions of the spec use 10), and only to the ``k`` closest peers
  still in the running (not failed, not silent): a peer farther out
  cannot make the result unless a nearer one drops out, so asking it
  would only cost messages.
* A request unanswered for too long turns the peer *unresponsive*: it
  stops taking a slot and stops holding up termination, so a slow or
  silent peer cannot stall the lookup. If its answer arrives later it
  still counts. "Too long" adapts to the network, as js-libp2p's
  adaptive timeouts do: ``timeout_factor`` times the slowest answer this
  lookup has had so far (``peer_timeout`` before the first), never less
  than ``min_peer_timeout`` nor more than ``peer_timeout``.
  A dead peer near the target then costs a fraction of a second, not the
  full timeout.
* The lookup *terminates* when the ``k`` closest peers it knows of, apart
  from those that failed, have all answered (the Kademlia paper's rule,
  as the spec states it), or when nobody is left to ask.
* When ``alpha`` answers in a row bring nobody closer than the closest
  peer known so far, the lookup is *stalled* and may then ask all of the
  ``k`` closest not yet asked at once, as rust-libp2p's
  ``ClosestPeersIter`` does.
* The candidate set is bounded (``max_peers``): beyond it, the farthest
  peers not yet asked are forgotten, so a peer answering with thousands
  of made-up ids costs memory for at most ``max_peers`` of them.

Figures for benchmarks and status: requests sent, answers, failures, and
*rounds*: the longest chain of answers that led to a peer we asked (a
seed is round 1, a peer first heard of from a round-``r`` answer is round
``r + 1``), which is what a lockstep implementation would count.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from guts.dht._key import kad_key
from guts.peer import PeerId

__all__ = ["Lookup", "LookupConfig", "LookupStats", "PeerState"]


class PeerState(Enum):
    NOT_CONTACTED = "not-contacted"
    WAITING = "waiting"
    UNRESPONSIVE = "unresponsive"  # timed out; a late answer still counts
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LookupConfig:
    """Parameters of one lookup.

    Attributes:
        k: how many closest peers must answer before the lookup ends.
        alpha: requests in flight at once.
        peer_timeout: the longest an unanswered peer holds a slot (seconds).
        min_peer_timeout: the shortest it does, however fast others answer.
        timeout_factor: an unanswered peer is given this many times the
            slowest answer seen so far.
        max_peers: most peers the lookup remembers.
    """

    k: int = 20
    alpha: int = 10
    peer_timeout: float = 10.0
    min_peer_timeout: float = 0.5
    timeout_factor: float = 4.0
    max_peers: int = 400


@dataclass(frozen=True, slots=True)
class LookupStats:
    queried: int
    succeeded: int
    failed: int
    rounds: int


class _Peer:
    __slots__ = ("peer_id", "distance", "state", "sent", "round")

    def __init__(self, peer_id: PeerId, distance: int, round_: int) -> None:
        self.peer_id = peer_id
        self.distance = distance
        self.state = PeerState.NOT_CONTACTED
        self.sent = 0.0
        self.round = round_


class Lookup:
    """One iterative lookup for the point ``target``.

    Args:
        target: the point looked up (:func:`~guts.dht._key.kad_key` of the key).
        seeds: peers to start from (usually the k closest of the routing table).
        config: k, alpha, timeouts, bounds.
        exclude: peers never to ask (ourselves).
    """

    def __init__(
        self,
        target: int,
        seeds: Iterable[PeerId],
        config: LookupConfig | None = None,
        exclude: Iterable[PeerId] = (),
    ) -> None:
        self.target = target
        self.config = config or LookupConfig()
        self._slowest: float | None = None  # slowest answer so far, seconds
        self._peers: dict[PeerId, _Peer] = {}
        self._order: list[tuple[int, bytes]] = []  # (distance, id bytes), sorted
        self._by_bytes: dict[bytes, _Peer] = {}
        self._excluded = set(exclude)
        self._waiting = 0
        self._no_progress = 0
        self._stalled = False
        self._finished = False
        self._queried = 0
        self._succeeded = 0
        self._failed = 0
        self._rounds = 0
        for peer in seeds:
            self._insert(peer, 1)

    # -- bookkeeping -------------------------------------------------------

    def _insert(self, peer: PeerId, round_: int) -> bool:
        if peer in self._peers or peer in self._excluded:
            return False
        raw = peer.to_bytes()
        dist = kad_key(raw) ^ self.target
        item = (dist, raw)
        pos = bisect.bisect_left(self._order, item)
        if len(self._order) >= self.config.max_peers:
            # Full: forget the farthest peer not yet asked, if the newcomer is nearer.
            for i in range(len(self._order) - 1, -1, -1):
                victim = self._by_bytes[self._order[i][1]]
                if victim.state is PeerState.NOT_CONTACTED:
                    break
            else:
                return False
            if i < pos:
                return False
            del self._order[i]
            del self._by_bytes[victim.peer_id.to_bytes()]
            del self._peers[victim.peer_id]
        self._order.insert(pos, item)
        entry = _Peer(peer, dist, round_)
        self._peers[peer] = entry
        self._by_bytes[raw] = entry
        return True

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (unresponsive ones included)."""
        return sum(1 for p in self._peers.values() if p.state in (PeerState.WAITING, PeerState.UNRESPONSIVE))

    def state(self, peer: PeerId) -> PeerState | None:
        entry = self._peers.get(peer)
        return entry.state if entry else None

    def stats(self) -> LookupStats:
        return LookupStats(self._queried, self._succeeded, self._failed, self._rounds)

    def finish(self) -> None:
        """End the lookup early (the caller found what it wanted)."""
        self._finished = True

    @property
    def peer_timeout(self) -> float:
        """How long an unanswered peer holds a slot now (see the module notes)."""
        cfg = self.config
        if self._slowest is None:
            return cfg.peer_timeout
        return min(cfg.peer_timeout, max(cfg.min_peer_timeout, cfg.timeout_factor * self._slowest))

    # -- the state machine -------------------------------------------------

    def next(self, now: float) -> list[PeerId]:
        """Peers to send a request to now; marks them as waiting.

        Also times out waiting peers and decides termination: check
        :attr:`finished` after calling it.
        """
        if self._finished:
            return []
        cfg = self.config
        parallelism = cfg.k if self._stalled else cfg.alpha
        out: list[PeerId] = []
        # Successes are counted from the nearest peer outwards while every
        # nearer peer has answered, failed or gone silent; a nearer request
        # in flight or a nearer peer not yet asked stops the count.
        counting = True
        succeeded = 0
        # Only the k closest peers still in the running (not failed, not
        # silent) are worth asking: nobody farther can be in the result
        # unless one of them drops out.
        rank = 0
        timeout = self.peer_timeout
        for _, raw in self._order:
            peer = self._by_bytes[raw]
            state = peer.state
            if state is PeerState.WAITING:
                if now >= peer.sent + timeout:  # the same sum as next_deadline()
                    peer.state = PeerState.UNRESPONSIVE
                    self._waiting -= 1
                    continue
                counting = False
                rank += 1
            elif state is PeerState.SUCCEEDED:
                rank += 1
                if counting:
                    succeeded += 1
                    if succeeded >= cfg.k:
                        self._finished = True
                        return out
            elif state is PeerState.NOT_CONTACTED:
                if rank >= cfg.k:
                    continue  # too far; keep scanning only for timeouts
                rank += 1
                counting = False
                if self._waiting < parallelism:
                    peer.state = PeerState.WAITING
                    peer.sent = now
                    self._waiting += 1
                    self._queried += 1
                    if peer.round > self._rounds:
                        self._rounds = peer.round
                    out.append(peer.peer_id)
                # At capacity we keep scanning only to time out waiting peers.
        if not out and self._waiting == 0:
            # Nobody left to ask and nothing in flight.
            self._finished = True
        return out

    def next_deadline(self) -> float | None:
        """When the next waiting request times out, if any is waiting."""
        timeout = self.peer_timeout
        deadlines = [p.sent + timeout for p in self._peers.values() if p.state is PeerState.WAITING]
        return min(deadlines) if deadlines else None

    def on_success(self, peer: PeerId, closer: Iterable[PeerId], now: float) -> None:
        """``peer`` answered, listing ``closer`` peers."""
        entry = self._peers.get(peer)
        if entry is None or entry.state not in (PeerState.WAITING, PeerState.UNRESPONSIVE):
            return
        if entry.state is PeerState.WAITING:
            self._waiting -= 1
        took = now - entry.sent
        if self._slowest is None or took > self._slowest:
            self._slowest = took
        entry.state = PeerState.SUCCEEDED
        self._succeeded += 1
        if self._finished:
            return
        best_before = self._order[0][0] if self._order else None
        for other in closer:
            self._insert(other, entry.round + 1)
        if best_before is not None and self._order[0][0] < best_before:
            self._no_progress = 0
            self._stalled = False
        else:
            self._no_progress += 1
            if self._no_progress >= self.config.alpha:
                self._stalled = True

    def on_failure(self, peer: PeerId, now: float) -> None:
        """The request to ``peer`` failed (error, refused, timed out in the driver)."""
        entry = self._peers.get(peer)
        if entry is None or entry.state not in (PeerState.WAITING, PeerState.UNRESPONSIVE):
            return
        if entry.state is PeerState.WAITING:
            self._waiting -= 1
        entry.state = PeerState.FAILED
        self._failed += 1

    def closest(self, count: int | None = None) -> list[PeerId]:
        """The closest peers that answered, nearest first (the result)."""
        count = self.config.k if count is None else count
        out = []
        for _, raw in self._order:
            peer = self._by_bytes[raw]
            if peer.state is PeerState.SUCCEEDED:
                out.append(peer.peer_id)
                if len(out) >= count:
                    break
        return out
