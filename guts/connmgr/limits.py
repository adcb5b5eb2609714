"""What the connection manager allows, and the small pure parts it is built of.

Theory of operation
-------------------
Every inbound attempt is judged on its remote IP before a byte of the
handshake is read: the Noise handshake costs a Diffie-Hellman and a
signature check, the yamux session a task and buffers, so a refusal must
come before them to be cheap. Strangers are grouped twice: by address
(``max_per_ip``) and by the subnet a cheap range of addresses shares, a
/24 for IPv4 and a /64 for IPv6 (``max_per_subnet``), so that a hundred
addresses in one rented range count as one neighbourhood. Each group also
gets a token bucket on the rate of handshakes it may start (a burst, then
a steady refill), so that connect-and-drop loops cannot keep the node
busy with handshakes that never finish into a connection.

The defaults are sized for a Python node, which spends about a
millisecond of CPU on each handshake and a few hundred KiB on each
connection: go-libp2p's connection manager keeps 160 to 192 connections
and caps eight per IP; commonware-p2p allows one handshake per 5 s per IP
and 64 a second per subnet, 512 in flight; Radicle keeps 128 inbound and
16 outbound. Guts keeps between ``low_water`` (40) and ``high_water``
(60) connections, never more than the host's ``max_connections`` (80),
of which ``outbound_reserve`` (16) are kept for the node's own dials.

Loopback's first address (``127.0.0.1``, ``::1``) is exempt from the
per-IP and per-subnet caps and buckets (``exempt``), as go-libp2p exempts
loopback: the node's own commands and test networks dial from it. The
ceiling, the inbound budget and the handshakes in flight still count it.
The other loopback addresses (``127.0.0.2`` and up) are not exempt, so an
attack can be measured on one machine.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["ConnLimits", "Refusal", "TokenBucket", "RateLimiter", "subnet_of"]

K = TypeVar("K", bound=Hashable)


class Refusal(Enum):
    """Why an attempt was refused; the value names it in status and logs."""

    CLOSING = "closing"
    CEILING = "max_connections"
    INBOUND = "inbound_budget"
    HANDSHAKES = "handshakes_in_flight"
    IP = "per_ip"
    SUBNET = "per_subnet"
    IP_RATE = "ip_handshake_rate"
    SUBNET_RATE = "subnet_handshake_rate"

    def describe(self, limits: ConnLimits, max_connections: int) -> str:
        """A log line's reason, with the limit that was hit."""
        return {
            Refusal.CLOSING: "the host is shutting down",
            Refusal.CEILING: f"connection limit ({max_connections}) reached",
            Refusal.INBOUND: f"inbound budget ({limits.inbound_budget(max_connections)}) reached",
            Refusal.HANDSHAKES: f"{limits.max_handshakes} handshakes in flight",
            Refusal.IP: f"{limits.max_per_ip} connections from this address",
            Refusal.SUBNET: f"{limits.max_per_subnet} connections from this subnet",
            Refusal.IP_RATE: f"handshake rate from this address over {limits.ip_handshake_rate:g}/s",
            Refusal.SUBNET_RATE: f"handshake rate from this subnet over {limits.subnet_handshake_rate:g}/s",
        }[self]


@dataclass(frozen=True, slots=True)
class ConnLimits:
    """The connection manager's settings (the host's ``max_connections``
    is the ceiling above them all).

    Attributes:
        low_water: connections a trim brings the count back down to.
        high_water: connections past which a trim starts. Both are
            clamped to the ceiling (``low_water`` to ``high_water``).
        outbound_reserve: slots of the ceiling inbound connections may
            never take, kept for the node's own dials (at most a quarter
            of the ceiling, so that a tiny ceiling still admits anyone).
        max_handshakes: inbound handshakes in flight at once.
        max_per_ip: inbound connections (handshaking or open) from one IP.
        max_per_subnet: likewise from one /24 (IPv4) or /64 (IPv6).
        ip_handshake_rate: handshakes one IP may start per second, after
            a burst of ``ip_handshake_burst``.
        subnet_handshake_rate: likewise per subnet, after
            ``subnet_handshake_burst``.
        identify_grace: seconds a connection has, after its handshake, to
            identify itself (on a host that runs identify); then it is closed.
        pressure_grace: the same while the inbound budget is spent: an
            honest peer identifies within a second, so strangers that
            never do cannot hold the slots newcomers need for long.
        housekeeping: protocols whose streams are not "useful": identify
            and ping keep a connection alive but earn it no value.
        exempt: networks free of the per-IP and per-subnet caps and buckets.
        subnet_v4: prefix length of an IPv4 subnet.
        subnet_v6: prefix length of an IPv6 subnet.
        max_tracked: addresses and subnets whose buckets are remembered;
            past it the least recently seen is forgotten (its bucket
            starts full again), so memory stays bounded under a spray of
            addresses.
    """

    low_water: int = 40
    high_water: int = 60
    outbound_reserve: int = 16
    max_handshakes: int = 64
    max_per_ip: int = 8
    max_per_subnet: int = 32
    ip_handshake_rate: float = 1.0
    ip_handshake_burst: int = 8
    subnet_handshake_rate: float = 8.0
    subnet_handshake_burst: int = 32
    identify_grace: float = 10.0
    pressure_grace: float = 2.0
    housekeeping: frozenset[str] = frozenset({"/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0"})
    exempt: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    subnet_v4: int = 24
    subnet_v6: int = 64
    max_tracked: int = 4096

    def __post_init__(self) -> None:
        for name in ("low_water", "high_water", "max_handshakes", "max_per_ip", "max_per_subnet", "max_tracked"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.outbound_reserve < 0 or self.identify_grace <= 0 or self.pressure_grace <= 0:
            raise ValueError("outbound_reserve must not be negative, identify_grace and pressure_grace positive")
        if self.ip_handshake_rate <= 0 or self.subnet_handshake_rate <= 0:
            raise ValueError("handshake rates must be positive")
        if self.ip_handshake_burst < 1 or self.subnet_handshake_burst < 1:
            raise ValueError("handshake bursts must be at least 1")
        if self.low_water > self.high_water:
            raise ValueError(f"low_water ({self.low_water}) is above high_water ({self.high_water})")
        for network in self.exempt:
            ipaddress.ip_network(network, strict=False)

    def inbound_budget(self, max_connections: int) -> int:
        """Inbound connections allowed at once under ``max_connections``."""
        return max_connections - min(self.outbound_reserve, max_connections // 4)

    def marks(self, max_connections: int) -> tuple[int, int]:
        """``(low, high)`` clamped to the ceiling."""
        high = min(self.high_water, max_connections)
        return min(self.low_water, high), high


def subnet_of(ip: str, v4: int = 24, v6: int = 64) -> str:
    """The subnet ``ip`` belongs to, as text (``"192.0.2.0/24"``).

    Raises:
        ValueError: ``ip`` is not an IP address.
    """
    address = ipaddress.ip_address(ip)
    prefix = v4 if address.version == 4 else v6
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second; a take costs one
    unless it says otherwise (gossip's byte allowance takes a message's size)."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def can_take(self, now: float, cost: float = 1.0) -> bool:
        self.refill(now)
        return self.tokens >= cost

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are as many; whether there were."""
        if not self.can_take(now, cost):
            return False
        self.tokens -= cost
        return True


class RateLimiter(Generic[K]):
    """One :class:`TokenBucket` per key (an address, a subnet, a peer), at
    most ``max_keys`` remembered (the least recently used forgotten first:
    a forgotten key starts full, which costs at most one burst per key
    forgotten)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: K, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def can_take(self, key: K, now: float) -> bool:
        return self._bucket(key, now).can_take(now)

    def take(self, key: K, now: float) -> bool:
        """Spend one of ``key``'s tokens if it has one; whether it had."""
        return self._bucket(key, now).take(now)
