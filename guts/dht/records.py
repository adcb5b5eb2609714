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
counted from when we received them. Values under ``/guts/`` are signed
by the owner their key names, and the highest sequence number wins
(:mod:`guts.dht.signed`), so no peer can replace another's value.

*Bounds*: both stores are bounded per peer and in total, in records and
in bytes (:class:`RecordLimits`). Full, a store makes room by evicting
the oldest record of the peer over its share, or of the peer holding the
most (:mod:`guts.dht.quota`); never one of this node's own records. So
a flood from many fresh identities churns among their own records, and
the node's own puts and the few records of honest peers stay.

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
from guts.dht.quota import Quota
from guts.dht.signed import open_record, select_signed

__all__ = [
    "GutsValidator",
    "ProviderRecord",
    "ProviderStore",
    "PutResult",
    "PublicKeyValidator",
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
    """How long records live and how much of them we keep.

    Every store is bounded per peer and in total, in records and in bytes,
    so that neither one peer nor many fresh identities can make the node
    hold more than these (at the defaults: about 32 MiB of values and
    16 MiB of provider records, in memory and in ``dht.sqlite``). Past a
    peer's share, its own oldest record makes room; past the total, the
    oldest record of the peer holding the most bytes does (see
    :mod:`guts.dht.quota`). The node's own records are never evicted for
    others'; they are bounded by the per-peer caps (a put past them is
    refused with an error) and, for provider records, not at all (the
    node provides what it chose to serve).

    Attributes:
        provider_ttl: life of a provider record (spec: 24 h; js, go: 48 h).
        republish_interval: how often we re-announce our own provider
            records and values (22 h, well inside the TTL).
        record_ttl: life of a stored value record.
        max_value: largest value accepted, in bytes.
        max_providers_per_key: provider records kept per key (newest kept).
        max_keys_per_provider: keys one peer may have us hold records for.
        max_provider_records: provider records in total.
        max_provider_bytes_per_peer: bytes of one peer's provider records
            (keys, plus :data:`PROVIDER_OVERHEAD` each, plus its addresses).
        max_provider_bytes: bytes of provider records in total.
        max_values: value records in total.
        max_values_per_peer: value records one peer may have put here
            (and values of our own).
        max_value_bytes_per_peer: bytes (key and value) of the records one
            peer put here (and of our own).
        max_value_bytes: bytes of value records in total.
    """

    provider_ttl: float = 48 * HOUR
    republish_interval: float = 22 * HOUR
    record_ttl: float = 48 * HOUR
    max_value: int = MAX_VALUE
    max_providers_per_key: int = 64
    max_keys_per_provider: int = 1024
    max_provider_records: int = 100_000
    max_provider_bytes_per_peer: int = 256 * 1024
    max_provider_bytes: int = 16 * 1024 * 1024
    max_values: int = 10_000
    max_values_per_peer: int = 256
    max_value_bytes_per_peer: int = 1024 * 1024
    max_value_bytes: int = 32 * 1024 * 1024


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
    """``/guts/<owner peer id>/<name>``: values only their owner can write.

    A value is a record signed by the key the DHT key names, with a
    sequence number (:mod:`guts.dht.signed`); ``select`` picks the highest
    sequence number, and between two of one sequence number the greater
    record bytes, so every node converges on the owner's latest record
    whatever order the puts arrive in, and no one else can outbid it.
    """

    def __init__(self, max_value: int = MAX_VALUE) -> None:
        self.max_value = max_value

    def validate(self, key: bytes, value: bytes) -> None:
        open_record(key, value, self.max_value)

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return select_signed(values)


def default_validators(max_value: int = MAX_VALUE) -> dict[str, Validator]:
    return {"pk": PublicKeyValidator(), "guts": GutsValidator(max_value)}


# -- providers -------------------------------------------------------------

#: Bytes a provider record counts for besides its key (what a record costs
#: in memory and on disk, roughly).
PROVIDER_OVERHEAD = 64
#: Addresses kept per provider.
MAX_PROVIDER_ADDRS = 8


def _addrs_size(addrs: tuple[Multiaddr, ...]) -> int:
    return sum(len(a.to_bytes()) for a in addrs)



@dataclass(frozen=True, slots=True)
class ProviderRecord:
    key: bytes
    provider: PeerId
    addrs: tuple[Multiaddr, ...]
    received: float  # when we stored it (epoch seconds)
    expires: float


class ProviderStore:
    """Who provides which key.

    Compact on purpose (a server may hold a hundred thousand records): a
    record is one float (when it was received) in a per-key dict, and
    each provider's addresses are kept once, not per record (they are the
    same for every key a peer provides), at most :data:`MAX_PROVIDER_ADDRS`.

    Bounds (:class:`RecordLimits`): records per key, keys and bytes per
    provider, records and bytes in total. A provider past its share loses
    its oldest record; past the total, the provider holding the most bytes
    does (:class:`~guts.dht.quota.Quota`). Records of ``local`` (this node)
    are never evicted, and are not counted against the per-provider caps.

    Args:
        limits: the bounds.
        local: this node's peer id.
    """

    def __init__(self, limits: RecordLimits | None = None, local: PeerId | None = None) -> None:
        self.limits = limits or RecordLimits()
        self.local = local
        self._by_key: dict[bytes, dict[PeerId, float]] = {}  # key -> provider -> received; oldest first
        self._quota: Quota[PeerId, bytes] = Quota(local)
        self._addrs: dict[PeerId, tuple[Multiaddr, ...]] = {}
        self._changed: set[tuple[bytes, PeerId]] = set()

    def __len__(self) -> int:
        return self._quota.count

    @property
    def size(self) -> int:
        """Bytes the records count for (see :class:`RecordLimits`)."""
        return self._quota.bytes

    def count_of(self, provider: PeerId) -> int:
        return self._quota.count_of(provider)

    def keys(self) -> list[bytes]:
        return list(self._by_key)

    def _record(self, key: bytes, provider: PeerId, received: float) -> ProviderRecord:
        return ProviderRecord(key, provider, self._addrs.get(provider, ()), received, received + self.limits.provider_ttl)

    def add(self, key: bytes, provider: PeerId, addrs: Iterable[Multiaddr], now: float) -> bool:
        """Store or renew a provider record, evicting others' to make room;
        returns False when the record alone is past a cap."""
        self._put(key, provider, tuple(addrs), now)
        return self.get(key, provider) is not None

    def _put(self, key: bytes, provider: PeerId, addrs: tuple[Multiaddr, ...], received: float) -> None:
        lim = self.limits
        quota = self._quota
        addrs = addrs[:MAX_PROVIDER_ADDRS] if addrs or provider not in self._addrs else self._addrs[provider]
        size = len(key) + PROVIDER_OVERHEAD
        if provider != self.local:
            if size + _addrs_size(addrs) > lim.max_provider_bytes_per_peer:
                return
            self._remove(key, provider)  # a renewal is added again, as the newest
            self._set_addrs(provider, addrs)
            while quota.count_of(provider) >= lim.max_keys_per_provider or (
                quota.bytes_of(provider) + size > lim.max_provider_bytes_per_peer
            ):
                self._evict(provider)
            while quota.count >= lim.max_provider_records or quota.bytes + size > lim.max_provider_bytes:
                victim = quota.heaviest()
                if victim is None:
                    return
                self._evict(victim)
        records = self._by_key.get(key)
        if records is None:
            records = self._by_key[key] = {}
        records.pop(provider, None)
        records[provider] = received
        quota.add(provider, key, size)
        self._set_addrs(provider, addrs)
        self._changed.add((key, provider))
        while len(records) > lim.max_providers_per_key:
            oldest = next((p for p in records if p != self.local), None)
            if oldest is None:
                break
            self._remove(key, oldest)

    def _set_addrs(self, provider: PeerId, addrs: tuple[Multiaddr, ...]) -> None:
        if provider in self._quota:
            self._addrs[provider] = addrs
            self._quota.set_extra(provider, _addrs_size(addrs))

    def _evict(self, provider: PeerId) -> None:
        key = self._quota.oldest(provider)
        if key is not None:
            self._remove(key, provider)

    def _remove(self, key: bytes, provider: PeerId) -> None:
        records = self._by_key.get(key)
        if records is None or provider not in records:
            return
        del records[provider]
        if not records:
            del self._by_key[key]
        self._quota.remove(provider, key)
        if provider not in self._quota:
            self._addrs.pop(provider, None)
        self._changed.add((key, provider))

    def remove(self, key: bytes, provider: PeerId) -> bool:
        """Drop ``provider``'s record of ``key``; whether there was one."""
        records = self._by_key.get(key)
        if records is None or provider not in records:
            return False
        self._remove(key, provider)
        return True

    def restore(self, record: ProviderRecord) -> None:
        """Put back a record loaded from disk (not counted as a change;
        what the caps evict to make room for it is)."""
        self._put(record.key, record.provider, record.addrs, record.received)
        if self.get(record.key, record.provider) is not None:
            self._changed.discard((record.key, record.provider))
        else:
            self._changed.add((record.key, record.provider))  # refused: delete the row

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
    """Validated value records by key.

    Bounds (:class:`RecordLimits`): records and bytes (key and value) per
    peer and in total. A peer past its share loses its oldest record; past
    the total, the peer holding the most bytes does
    (:class:`~guts.dht.quota.Quota`). Our own records (publisher ``None``)
    are never evicted for others'; a put of our own past the per-peer caps
    is refused.
    """

    def __init__(self, validators: Mapping[str, Validator] | None = None, limits: RecordLimits | None = None) -> None:
        self.limits = limits or RecordLimits()
        self.validators: dict[str, Validator] = dict(
            validators if validators is not None else default_validators(self.limits.max_value)
        )
        self._values: dict[bytes, StoredValue] = {}
        self._quota: Quota[PeerId | None, bytes] = Quota(None)
        self._changed: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._values)

    @property
    def size(self) -> int:
        """Bytes of the records held (keys and values)."""
        return self._quota.bytes

    def count_of(self, publisher: PeerId | None) -> int:
        """Records put by ``publisher`` (``None``: ours)."""
        return self._quota.count_of(publisher)

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
        """Validate and store a value (``publisher`` ``None``: our own).

        Raises:
            InvalidRecord: the value does not validate.
        """
        self.validate(key, value)
        current = self.get(key, now)
        if current is not None:
            if current.value != value and self.select(key, [current.value, value]) == 0:
                return PutResult.KEPT
            if current.value == value and current.publisher is None:
                # Ours already: another peer's copy (or our republish) changes nothing.
                return PutResult.KEPT if publisher is not None else PutResult.STORED
        return PutResult.STORED if self._admit(StoredValue(key, value, now, now + self.limits.record_ttl, publisher)) else PutResult.REFUSED

    def _admit(self, stored: StoredValue) -> bool:
        """Store ``stored`` within the caps, evicting others' records to make
        room; False (and nothing changed) when it alone is past a cap."""
        lim = self.limits
        quota = self._quota
        key, owner = stored.key, stored.publisher
        size = len(key) + len(stored.value)
        current = self._values.get(key)
        held = 0 if current is None or current.publisher != owner else len(key) + len(current.value)
        if size > lim.max_value_bytes_per_peer:
            return False
        if owner is None and (
            quota.count_of(None) - (1 if held else 0) >= lim.max_values_per_peer
            or quota.bytes_of(None) - held + size > lim.max_value_bytes_per_peer
        ):
            return False
        self._drop(key)
        if owner is not None:
            while quota.count_of(owner) >= lim.max_values_per_peer or quota.bytes_of(owner) + size > lim.max_value_bytes_per_peer:
                self._evict(owner)
        while len(self._values) >= lim.max_values or quota.bytes + size > lim.max_value_bytes:
            victim = quota.heaviest()
            if victim is None:
                break  # only our own records are left: they are bounded on their own
            self._evict(victim)
        self._values[key] = stored
        quota.add(owner, key, size)
        self._changed.add(key)
        return True

    def _evict(self, owner: PeerId | None) -> None:
        key = self._quota.oldest(owner)
        if key is not None:
            self._drop(key)

    def _set(self, stored: StoredValue) -> None:
        self._drop(stored.key)
        self._values[stored.key] = stored
        self._quota.add(stored.publisher, stored.key, len(stored.key) + len(stored.value))
        self._changed.add(stored.key)

    def _drop(self, key: bytes) -> None:
        old = self._values.pop(key, None)
        if old is None:
            return
        self._quota.remove(old.publisher, key)
        self._changed.add(key)

    def restore(self, stored: StoredValue) -> None:
        """Put back a record loaded from disk, within the caps (not counted
        as a change; what the caps evict to make room for it is)."""
        if self._admit(stored):
            self._changed.discard(stored.key)
        else:
            self._changed.add(stored.key)  # refused: delete the row

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
