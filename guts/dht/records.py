"""Provider records and value records, sans-IO, with their validators.

Theory of operation
-------------------

*Providers* (libp2p/specs kad-dht, "Content routing"): a peer announces
with ADD_PROVIDER that it holds the content of a key (a multihash). We
keep each announcement for :attr:`RecordLimits.provider_ttl` (48 h, as
js and go do; the announcer republishes every 22 h) and drop expired
ones in :meth:`ProviderStore.expire`. Caps keep a flood from one peer or
of one key bounded: records per key (newest kept), keys provided by one
peer, and records in total.

*Values*: PUT_VALUE stores a record under a ``/namespace/...`` key after
the namespace's :class:`Validator` accepts it; a key whose namespace has
no validator is refused. When a record for the key exists, the
validator's ``select`` decides which one stays, so every node converges
on the same value whatever order the puts arrive in. Records expire
after :attr:`RecordLimits.record_ttl` (48 h, js's record validity),
counted from when we received them. A peer may hold at most
:attr:`RecordLimits.max_values_per_peer` of the records we keep.

Time comes in as ``now`` (seconds since the epoch: records outlive the
process, see :mod:`guts.dht._store`). Every store tracks what changed
since the last :meth:`take_changes`, for persistence.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from guts.crypto import PublicKey
from guts.errors import DecodeError, InvalidRecord
from guts.multiaddr import Multiaddr
from guts.peer import PeerId

__all__ = [
    "GutsValidator",
    "ProviderRecord",
    "ProviderStore",
    "PutResult",
    "PublicKeyValidator",
    "RateLimiter",
    "RecordLimits",
    "StoredValue",
    "Validator",
    "ValueStore",
    "default_validators",
    "namespace_of",
]

HOUR = 3600.0
#: Largest value accepted by default, in bytes.
MAX_VALUE = 16 * 1024


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """How long records live and how many we keep.

    Attributes:
        provider_ttl: life of a provider record (spec: 24 h; js, go: 48 h).
        republish_interval: how often we re-announce our own provider
            records and values (22 h, well inside the TTL).
        record_ttl: life of a stored value record.
        max_value: largest value accepted, in bytes.
        max_providers_per_key: provider records kept per key (newest kept).
        max_keys_per_provider: keys one peer may have us hold records for.
        max_provider_records: provider records in total.
        max_values: value records in total.
        max_values_per_peer: value records one peer may have put here.
    """

    provider_ttl: float = 48 * HOUR
    republish_interval: float = 22 * HOUR
    record_ttl: float = 48 * HOUR
    max_value: int = MAX_VALUE
    max_providers_per_key: int = 64
    max_keys_per_provider: int = 4096
    max_provider_records: int = 200_000
    max_values: int = 50_000
    max_values_per_peer: int = 1024


# -- validators ----------------------------------------------------------


class Validator(Protocol):
    """Checks and orders the values of one key namespace (spec "Entry validation")."""

    def validate(self, key: bytes, value: bytes) -> None:
        """Raise :class:`~guts.errors.InvalidRecord` unless ``value`` may be stored under ``key``."""

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """Index of the best of ``values`` (all valid); must be deterministic."""


def namespace_of(key: bytes) -> str:
    """The namespace of a ``/namespace/rest`` key.

    Raises:
        InvalidRecord: the key has no namespace or an empty rest.
    """
    parts = key.split(b"/", 2)
    if len(parts) != 3 or parts[0] != b"" or not parts[1] or not parts[2]:
        raise InvalidRecord(f"record key {key[:64]!r} is not /namespace/...")
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRecord("record key namespace is not ASCII") from None


class PublicKeyValidator:
    """``/pk/<peer id multihash>`` holds that peer's public key (protobuf).

    The spec states the check as ``SHA256(value) == peerID``, written when
    peer ids were always SHA-256 multihashes; js and go check that the key
    derives the peer id, which covers identity-hashed (Ed25519) ids too.
    All valid values of one key are the same key, so ``select`` takes the first.
    """

    def validate(self, key: bytes, value: bytes) -> None:
        if not key.startswith(b"/pk/"):
            raise InvalidRecord("public key record outside /pk/")
        try:
            peer = PeerId.from_bytes(key[4:])
            public_key = PublicKey.from_protobuf(value)
        except DecodeError as exc:
            raise InvalidRecord(f"invalid public key record: {exc}") from None
        if not peer.matches(public_key):
            raise InvalidRecord(f"public key does not match {peer}")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return 0


class GutsValidator:
    """``/guts/<name>``: Guts values, any bytes up to ``max_value``.

    ``select`` picks the greatest value as a byte string. Values carry no
    version of their own, so the order must come from the bytes, and
    "greatest" is a total order every node computes alike, whatever order
    the values arrived in: the network converges (the spec's entry
    correction re-puts the winner on peers that hold a loser). A writer
    that begins its values with a big-endian version or timestamp makes the
    newest value win.
    """

    def __init__(self, max_value: int = MAX_VALUE) -> None:
        self.max_value = max_value

    def validate(self, key: bytes, value: bytes) -> None:
        if not key.startswith(b"/guts/") or len(key) <= len(b"/guts/"):
            raise InvalidRecord("Guts record outside /guts/<name>")
        if len(value) > self.max_value:
            raise InvalidRecord(f"value of {len(value)} bytes (limit {self.max_value})")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        best = 0
        for i, value in enumerate(values):
            if value > values[best]:
                best = i
        return best


def default_validators(max_value: int = MAX_VALUE) -> dict[str, Validator]:
    return {"pk": PublicKeyValidator(), "guts": GutsValidator(max_value)}


# -- rate limiting ---------------------------------------------------------


class RateLimiter:
    """A token bucket per peer: ``rate`` writes a second, bursts of ``burst``.

    Bounded: at most ``max_peers`` buckets (the least recently used is
    forgotten, which only ever gives a peer a fresh, full bucket).
    """

    def __init__(self, rate: float, burst: float, max_peers: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_peers = max_peers
        self._buckets: OrderedDict[PeerId, tuple[float, float]] = OrderedDict()

    def allow(self, peer: PeerId, now: float) -> bool:
        tokens, stamp = self._buckets.pop(peer, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - stamp) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = (tokens, now)
        while len(self._buckets) > self.max_peers:
            self._buckets.popitem(last=False)
        return allowed


# -- providers -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    key: bytes
    provider: PeerId
    addrs: tuple[Multiaddr, ...]
    received: float  # when we stored it (epoch seconds)
    expires: float


class ProviderStore:
    """Who provides which key.

    Compact on purpose (a server may hold hundreds of thousands of
    records): a record is one float (when it was received) in a per-key
    dict, and each provider's addresses are kept once, not per record
    (they are the same for every key a peer provides).
    """

    def __init__(self, limits: RecordLimits | None = None) -> None:
        self.limits = limits or RecordLimits()
        self._by_key: dict[bytes, dict[PeerId, float]] = {}  # key -> provider -> received; oldest first
        self._per_provider: dict[PeerId, int] = {}
        self._addrs: dict[PeerId, tuple[Multiaddr, ...]] = {}
        self._count = 0
        self._changed: set[tuple[bytes, PeerId]] = set()

    def __len__(self) -> int:
        return self._count

    def keys(self) -> list[bytes]:
        return list(self._by_key)

    def _record(self, key: bytes, provider: PeerId, received: float) -> ProviderRecord:
        return ProviderRecord(key, provider, self._addrs.get(provider, ()), received, received + self.limits.provider_ttl)

    def add(self, key: bytes, provider: PeerId, addrs: Iterable[Multiaddr], now: float) -> bool:
        """Store or renew a provider record; returns False when a cap refuses it."""
        lim = self.limits
        records = self._by_key.get(key)
        if records is None or provider not in records:
            if self._per_provider.get(provider, 0) >= lim.max_keys_per_provider:
                return False
            if self._count >= lim.max_provider_records:
                return False
        self._put(key, provider, tuple(addrs), now)
        records = self._by_key[key]
        while len(records) > lim.max_providers_per_key:
            self._remove(key, next(iter(records)))
        return True

    def _put(self, key: bytes, provider: PeerId, addrs: tuple[Multiaddr, ...], received: float) -> None:
        records = self._by_key.get(key)
        if records is None:
            records = self._by_key[key] = {}
        if provider in records:
            del records[provider]
        else:
            self._per_provider[provider] = self._per_provider.get(provider, 0) + 1
            self._count += 1
        records[provider] = received
        if addrs or provider not in self._addrs:
            self._addrs[provider] = addrs
        self._changed.add((key, provider))

    def _remove(self, key: bytes, provider: PeerId) -> None:
        records = self._by_key.get(key)
        if records is None or provider not in records:
            return
        del records[provider]
        if not records:
            del self._by_key[key]
        left = self._per_provider[provider] - 1
        if left:
            self._per_provider[provider] = left
        else:
            del self._per_provider[provider]
            self._addrs.pop(provider, None)
        self._count -= 1
        self._changed.add((key, provider))

    def remove(self, key: bytes, provider: PeerId) -> bool:
        """Drop ``provider``'s record of ``key``; whether there was one."""
        records = self._by_key.get(key)
        if records is None or provider not in records:
            return False
        self._remove(key, provider)
        return True

    def restore(self, record: ProviderRecord) -> None:
        """Put back a record loaded from disk (not counted as a change)."""
        self._put(record.key, record.provider, record.addrs, record.received)
        self._changed.discard((record.key, record.provider))

    def providers(self, key: bytes, now: float, count: int | None = None) -> list[ProviderRecord]:
        """Live providers of ``key``, newest first."""
        records = self._by_key.get(key)
        if not records:
            return []
        oldest_alive = now - self.limits.provider_ttl
        out = []
        for provider in reversed(records):
            received = records[provider]
            if received > oldest_alive:
                out.append(self._record(key, provider, received))
                if count is not None and len(out) >= count:
                    break
        return out

    def get(self, key: bytes, provider: PeerId) -> ProviderRecord | None:
        records = self._by_key.get(key)
        if not records or provider not in records:
            return None
        return self._record(key, provider, records[provider])

    def expire(self, now: float) -> int:
        """Drop expired records; returns how many."""
        oldest_alive = now - self.limits.provider_ttl
        dead = [(k, p) for k, records in self._by_key.items() for p, received in records.items() if received <= oldest_alive]
        for key, provider in dead:
            self._remove(key, provider)
        return len(dead)

    def pending_changes(self) -> int:
        """Changes not yet taken by :meth:`take_changes`."""
        return len(self._changed)

    def take_changes(self, limit: int | None = None) -> tuple[list[ProviderRecord], list[tuple[bytes, PeerId]]]:
        """What changed since the last call: ``(upserted, deleted)``.

        At most ``limit`` changes (the rest wait for the next call), so a
        caller on an event loop can take a large backlog in slices.
        """
        upserts: list[ProviderRecord] = []
        deletes: list[tuple[bytes, PeerId]] = []
        for _ in range(len(self._changed) if limit is None else min(limit, len(self._changed))):
            key, provider = self._changed.pop()
            record = self.get(key, provider)
            if record is None:
                deletes.append((key, provider))
            else:
                upserts.append(record)
        return upserts, deletes


# -- values -------------------------------------------------------------------


class PutResult(Enum):
    STORED = "stored"
    #: The value we hold wins (its validator's ``select``); nothing changed.
    KEPT = "kept"
    #: A cap (records in total, or per peer) refused it.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class StoredValue:
    key: bytes
    value: bytes
    received: float  # epoch seconds
    expires: float
    #: Who put it (``None``: we did, and we republish it).
    publisher: PeerId | None


class ValueStore:
    """Validated value records by key."""

    def __init__(self, validators: Mapping[str, Validator] | None = None, limits: RecordLimits | None = None) -> None:
        self.limits = limits or RecordLimits()
        self.validators: dict[str, Validator] = dict(
            validators if validators is not None else default_validators(self.limits.max_value)
        )
        self._values: dict[bytes, StoredValue] = {}
        self._per_peer: dict[PeerId, int] = {}
        self._changed: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._values)

    def validator_for(self, key: bytes) -> Validator:
        """Raises :class:`InvalidRecord` for a key outside every known namespace."""
        ns = namespace_of(key)
        validator = self.validators.get(ns)
        if validator is None:
            raise InvalidRecord(f"no validator for namespace /{ns}/")
        return validator

    def validate(self, key: bytes, value: bytes) -> Validator:
        """Check a record; returns its validator.

        Raises:
            InvalidRecord: unknown namespace, oversized or invalid value.
        """
        if len(value) > self.limits.max_value:
            raise InvalidRecord(f"value of {len(value)} bytes (limit {self.limits.max_value})")
        validator = self.validator_for(key)
        validator.validate(key, value)
        return validator

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        if len(values) == 1:
            return 0
        index = self.validator_for(key).select(key, values)
        if not 0 <= index < len(values):
            raise InvalidRecord(f"selector for {key[:64]!r} chose index {index} of {len(values)}")
        return index

    def put(self, key: bytes, value: bytes, now: float, publisher: PeerId | None) -> PutResult:
        """Validate and store a value.

        Raises:
            InvalidRecord: the value does not validate.
        """
        self.validate(key, value)
        current = self.get(key, now)
        if current is not None and current.value != value:
            if self.select(key, [current.value, value]) == 0:
                return PutResult.KEPT
        if current is None or current.publisher != publisher:
            if publisher is not None and self._per_peer.get(publisher, 0) >= self.limits.max_values_per_peer:
                return PutResult.REFUSED
            if current is None and len(self._values) >= self.limits.max_values:
                return PutResult.REFUSED
        if publisher is None and current is not None and current.publisher is None and current.value == value:
            # Our own value again (republish): keep the first time received.
            now = current.received
        self._set(StoredValue(key, value, now, now + self.limits.record_ttl, publisher))
        return PutResult.STORED

    def _set(self, stored: StoredValue) -> None:
        self._drop(stored.key)
        self._values[stored.key] = stored
        if stored.publisher is not None:
            self._per_peer[stored.publisher] = self._per_peer.get(stored.publisher, 0) + 1
        self._changed.add(stored.key)

    def _drop(self, key: bytes) -> None:
        old = self._values.pop(key, None)
        if old is None:
            return
        if old.publisher is not None:
            left = self._per_peer[old.publisher] - 1
            if left:
                self._per_peer[old.publisher] = left
            else:
                del self._per_peer[old.publisher]
        self._changed.add(key)

    def restore(self, stored: StoredValue) -> None:
        """Put back a record loaded from disk (not counted as a change)."""
        self._set(stored)
        self._changed.discard(stored.key)

    def get(self, key: bytes, now: float) -> StoredValue | None:
        stored = self._values.get(key)
        if stored is None or (stored.publisher is not None and stored.expires <= now):
            return None
        return stored

    def own(self) -> list[StoredValue]:
        """Values we put ourselves (republished by the DHT)."""
        return [v for v in self._values.values() if v.publisher is None]

    def expire(self, now: float) -> int:
        """Drop expired records put by others; returns how many."""
        dead = [k for k, v in self._values.items() if v.publisher is not None and v.expires <= now]
        for key in dead:
            self._drop(key)
        return len(dead)

    def pending_changes(self) -> int:
        """Changes not yet taken by :meth:`take_changes`."""
        return len(self._changed)

    def take_changes(self, limit: int | None = None) -> tuple[list[StoredValue], list[bytes]]:
        """What changed since the last call: ``(upserted, deleted)``; at most
        ``limit`` changes (see :meth:`ProviderStore.take_changes`)."""
        upserts: list[StoredValue] = []
        deletes: list[bytes] = []
        for _ in range(len(self._changed) if limit is None else min(limit, len(self._changed))):
            key = self._changed.pop()
            stored = self._values.get(key)
            if stored is None:
                deletes.append(key)
            else:
                upserts.append(stored)
        return upserts, deletes
