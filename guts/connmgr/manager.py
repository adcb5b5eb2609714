"""The connection manager: who may connect, and whom to drop.

Theory of operation
-------------------
Sans-IO: no trio, no sockets; every call that depends on time takes
``now``, and the host (:mod:`guts.host`) does what the answers say.

A connection holds a *slot* from the moment it is admitted, before its
handshake, until the host releases it, whatever happened in between. An
inbound attempt is admitted by :meth:`ConnManager.admit_inbound`, which
checks, cheapest first: the ceiling (``max_connections``, both
directions, handshakes included, so that concurrent attempts cannot race
past it), the inbound budget (the ceiling less the outbound reserve, so
strangers never take the slots the node dials out with), the handshakes
in flight, then the caps and handshake buckets of the remote's IP and
subnet (:mod:`guts.connmgr.limits`). Only an admitted attempt spends a
token: an address refused for its own excess does not drain its
subnet's bucket for the neighbours. Outbound dials
(:meth:`ConnManager.admit_outbound`) are held to the ceiling only.

A slot then moves through three states::

    HANDSHAKING --established()--> UNIDENTIFIED --identified()--> IDENTIFIED

An UNIDENTIFIED connection on a host that runs identify has
``identify_grace`` seconds to become IDENTIFIED; :meth:`expired` names
those that did not (a peer that finished Noise and never answered yamux,
or answered it and never identify). The handshake itself is bounded by the
host's connection timeout.

While the inbound budget is spent, the grace is ``pressure_grace``
(2 s) instead: strangers that handshake and never identify cannot keep
the inbound slots filled for long, while an honest peer identifies within
a second.

When more than ``high_water`` connections have settled (identified, or
open longer than the grace: a newcomer is given its chance to identify,
and one that does not is closed by the grace anyway), :meth:`trim` names
the settled ones to close to get back to ``low_water``. Newcomers still
in their grace do not count: else a stream of strangers, each closed at
its grace, would push the total over the mark and get the node's settled
peers trimmed for them. Least valuable first:
connections that never identified and never carried a useful stream (any
protocol but identify and ping), then those with one of the two, then the
rest; within a tier, the one whose last useful stream is oldest (or, never
useful, which opened first). Protected peers come last: a peer is
protected while a tag protects it, set by :meth:`protect` (counted:
calls pair with :meth:`unprotect`) or named by a source registered with
:meth:`protect_with` (asked only when a trim or the status needs it, so
the gossip mesh and the DHT routing table cost nothing to follow).
Protected connections are trimmed only when they alone are more than
``high_water``, down to ``high_water``.

Everything kept is bounded: one record per slot (at most the ceiling),
token buckets for at most ``max_tracked`` addresses and subnets, tags for
peers with at least one (callers unprotect what they protect).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from guts.connmgr.limits import ConnLimits, RateLimiter, Refusal, subnet_of
from guts.peer import PeerId

__all__ = ["ConnManager", "ConnState", "SlotInfo"]


class ConnState(Enum):
    HANDSHAKING = "handshaking"
    UNIDENTIFIED = "unidentified"
    IDENTIFIED = "identified"


@dataclass(slots=True)
class SlotInfo:
    """What the manager knows of one connection."""

    slot: int
    inbound: bool
    ip: str | None  # None: not an IP transport, or exempt
    subnet: str | None
    opened: float
    state: ConnState = ConnState.HANDSHAKING
    peer: PeerId | None = None
    grace_until: float | None = None
    useful_at: float | None = None
    #: Named by :meth:`ConnManager.trim` or :meth:`ConnManager.expired`;
    #: the host is closing it.
    doomed: bool = False


class ConnManager:
    """Admission, states and trimming of a host's connections.

    Args:
        limits: the caps, rates and water marks.
        max_connections: the hard ceiling, both directions together.
    """

    def __init__(self, limits: ConnLimits | None = None, max_connections: int = 80) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.limits = limits = limits or ConnLimits()
        self.max_connections = max_connections
        self.low_water, self.high_water = limits.marks(max_connections)
        self.inbound_budget = limits.inbound_budget(max_connections)
        self.closing = False
        #: Refusals since start, by reason.
        self.refusals: Counter[Refusal] = Counter()
        self._slots: dict[int, SlotInfo] = {}
        self._next = 0
        self._inbound = 0
        self._handshaking_in = 0
        self._per_ip: Counter[str] = Counter()
        self._per_subnet: Counter[str] = Counter()
        self._ip_rate: RateLimiter[str] = RateLimiter(limits.ip_handshake_rate, limits.ip_handshake_burst, limits.max_tracked)
        self._subnet_rate: RateLimiter[str] = RateLimiter(
            limits.subnet_handshake_rate, limits.subnet_handshake_burst, limits.max_tracked
        )
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in limits.exempt]
        self._tags: dict[PeerId, Counter[str]] = {}
        self._sources: dict[str, Callable[[], Iterable[PeerId]]] = {}

    # -- admission ---------------------------------------------------------------

    def __len__(self) -> int:
        """Slots held (handshakes included)."""
        return len(self._slots)

    def _group(self, ip: str | None) -> tuple[str | None, str | None]:
        if ip is None:
            return None, None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None, None
        if any(address in network for network in self._exempt):
            return None, None
        return str(address), subnet_of(str(address), self.limits.subnet_v4, self.limits.subnet_v6)

    def _refuse(self, reason: Refusal) -> Refusal:
        self.refusals[reason] += 1
        return reason

    def admit_inbound(self, ip: str | None, now: float) -> int | Refusal:
        """Admit an inbound attempt from ``ip`` (``None``: no IP, as on the
        memory transport) before its handshake: a slot number, or why not."""
        if self.closing:
            return self._refuse(Refusal.CLOSING)
        if len(self._slots) >= self.max_connections:
            return self._refuse(Refusal.CEILING)
        if self._inbound >= self.inbound_budget:
            return self._refuse(Refusal.INBOUND)
        if self._handshaking_in >= self.limits.max_handshakes:
            return self._refuse(Refusal.HANDSHAKES)
        address, subnet = self._group(ip)
        if address is not None and subnet is not None:
            limits = self.limits
            if self._per_ip[address] >= limits.max_per_ip:
                return self._refuse(Refusal.IP)
            if self._per_subnet[subnet] >= limits.max_per_subnet:
                return self._refuse(Refusal.SUBNET)
            if not self._ip_rate.can_take(address, now):
                return self._refuse(Refusal.IP_RATE)
            if not self._subnet_rate.take(subnet, now):
                return self._refuse(Refusal.SUBNET_RATE)
            self._ip_rate.take(address, now)
            self._per_ip[address] += 1
            self._per_subnet[subnet] += 1
        self._inbound += 1
        self._handshaking_in += 1
        return self._add(SlotInfo(self._next, True, address, subnet, now))

    def admit_outbound(self, now: float) -> int | Refusal:
        """Admit a dial of ours: a slot number, or why not."""
        if self.closing:
            return self._refuse(Refusal.CLOSING)
        if len(self._slots) >= self.max_connections:
            return self._refuse(Refusal.CEILING)
        return self._add(SlotInfo(self._next, False, None, None, now))

    def _add(self, info: SlotInfo) -> int:
        self._slots[info.slot] = info
        self._next += 1
        return info.slot

    # -- lifecycle ---------------------------------------------------------------

    def established(self, slot: int, peer: PeerId, now: float, *, identify: bool = True) -> None:
        """The handshake of ``slot`` finished: it is ``peer``. With
        ``identify``, the peer has ``identify_grace`` seconds to identify."""
        info = self._slots[slot]
        if info.state is not ConnState.HANDSHAKING:
            return
        if info.inbound:
            self._handshaking_in -= 1
        info.state = ConnState.UNIDENTIFIED
        info.peer = peer
        info.opened = now
        info.grace_until = now + self.limits.identify_grace if identify else None

    def identified(self, peer: PeerId, now: float) -> None:
        """``peer`` identified itself (on whichever of its connections)."""
        for info in self._slots.values():
            if info.peer == peer and info.state is ConnState.UNIDENTIFIED:
                info.state = ConnState.IDENTIFIED
                info.grace_until = None

    def used(self, slot: int, protocol: str, now: float) -> None:
        """A stream on ``slot`` agreed on ``protocol`` (either side opened it)."""
        info = self._slots.get(slot)
        if info is not None and protocol not in self.limits.housekeeping:
            info.useful_at = now

    def release(self, slot: int) -> None:
        """``slot`` is gone (refused during its handshake, failed, or closed);
        idempotent."""
        info = self._slots.pop(slot, None)
        if info is None or not info.inbound:
            return
        self._inbound -= 1
        if info.state is ConnState.HANDSHAKING:
            self._handshaking_in -= 1
        if info.ip is not None and info.subnet is not None:
            _decrement(self._per_ip, info.ip)
            _decrement(self._per_subnet, info.subnet)

    def info(self, slot: int) -> SlotInfo | None:
        return self._slots.get(slot)

    # -- protection --------------------------------------------------------------

    def protect(self, peer: PeerId, tag: str) -> None:
        """Protect ``peer`` from trimming under ``tag`` until a matching
        :meth:`unprotect` (calls are counted, so two overlapping syncs with
        one peer keep it protected until both end)."""
        self._tags.setdefault(peer, Counter())[tag] += 1

    def unprotect(self, peer: PeerId, tag: str) -> bool:
        """Undo one :meth:`protect`; whether ``peer`` is still protected
        (by any tag)."""
        tags = self._tags.get(peer)
        if tags is not None and tag in tags:
            _decrement(tags, tag)
            if not tags:
                del self._tags[peer]
        return peer in self._tags

    def protect_with(self, tag: str, source: Callable[[], Iterable[PeerId]]) -> None:
        """Protect under ``tag`` whichever peers ``source()`` names when a
        trim asks (a gossip mesh, a routing table). Replaces an earlier
        source of the same tag."""
        self._sources[tag] = source

    def tags(self, peer: PeerId) -> set[str]:
        """The tags protecting ``peer`` now."""
        found = set(self._tags.get(peer, ()))
        for tag, source in self._sources.items():
            if peer in set(source()):
                found.add(tag)
        return found

    def _protected(self) -> set[PeerId]:
        peers = set(self._tags)
        for source in self._sources.values():
            peers.update(source())
        return peers

    # -- decisions ---------------------------------------------------------------

    def _grace_end(self, info: SlotInfo) -> float | None:
        if info.grace_until is None:
            return None
        if info.inbound and self._inbound >= self.inbound_budget:
            return min(info.grace_until, info.opened + self.limits.pressure_grace)
        return info.grace_until

    def expired(self, now: float) -> list[int]:
        """Slots whose identify grace ran out; each is named once."""
        due = []
        for info in self._slots.values():
            end = self._grace_end(info)
            if end is not None and end <= now and not info.doomed:
                info.doomed = True
                due.append(info.slot)
        return due

    def next_deadline(self) -> float | None:
        """When :meth:`expired` will next have something to say (``None``:
        no connection is waiting to identify)."""
        live = [i for i in self._slots.values() if i.state is not ConnState.HANDSHAKING and not i.doomed]
        due = [end for i in live if (end := self._grace_end(i)) is not None]
        if len(live) > self.high_water:  # a trim waits for newcomers to settle
            due += [i.opened + self.limits.identify_grace for i in live if i.state is ConnState.UNIDENTIFIED]
        return min(due) if due else None

    def trim(self, now: float) -> list[int]:
        """Settled slots to close so that at most ``low_water`` stay, when
        more than ``high_water`` have settled (least valuable first; each
        named once)."""
        open_ = [s for s in self._slots.values() if s.state is not ConnState.HANDSHAKING and not s.doomed]
        grace = self.limits.identify_grace
        settled = [s for s in open_ if s.state is ConnState.IDENTIFIED or now - s.opened >= grace]
        if len(settled) <= self.high_water:
            return []
        excess = len(settled) - self.low_water
        protected = self._protected()
        ranked = sorted(settled, key=_value)
        victims = [s for s in ranked if s.peer not in protected][:excess]
        guarded = [s for s in ranked if s.peer in protected]
        if len(guarded) > self.high_water:
            victims += guarded[: min(excess - len(victims), len(guarded) - self.high_water)]
        for info in victims:
            info.doomed = True
        return [info.slot for info in victims]

    # -- status ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts by direction and state, refusals by reason, and the limits
        (what ``GET /v1/status`` shows as ``connmgr``)."""
        protected = self._protected()
        counts = {d: {s.value: 0 for s in ConnState} | {"protected": 0} for d in ("inbound", "outbound")}
        for info in self._slots.values():
            row = counts["inbound" if info.inbound else "outbound"]
            row[info.state.value] += 1
            if info.peer is not None and info.peer in protected:
                row["protected"] += 1
        return {
            **counts,
            "total": len(self._slots),
            "refused": {r.value: self.refusals[r] for r in Refusal if self.refusals[r]},
            "limits": {
                "low_water": self.low_water,
                "high_water": self.high_water,
                "max_connections": self.max_connections,
                "inbound_budget": self.inbound_budget,
                "max_handshakes": self.limits.max_handshakes,
                "max_per_ip": self.limits.max_per_ip,
                "max_per_subnet": self.limits.max_per_subnet,
            },
        }


def _value(info: SlotInfo) -> tuple[int, float]:
    tier = (info.state is ConnState.IDENTIFIED) + (info.useful_at is not None)
    return tier, info.useful_at if info.useful_at is not None else info.opened


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
