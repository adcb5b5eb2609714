"""The periodic sweep of the record stores: what expires, and which of our
own records to publish again.

Theory of operation
-------------------

Records on other peers die :attr:`~guts.dht.records.RecordLimits.provider_ttl`
or :attr:`~guts.dht.records.RecordLimits.record_ttl` after they arrived
(48 h), so whoever publishes a record must publish it again well before
that: every :attr:`~guts.dht.records.RecordLimits.republish_interval`
(22 h, as js and go do). Each sweep (:func:`sweep`):

1. drops the expired records of others (ours never expire here: we are
   their source);
2. picks our provider records received an interval ago or more (a
   :meth:`~guts.dht.Dht.provide` renews the record, and so its clock);
3. picks our values put an interval ago or more, and restarts their
   interval *now*, before the put goes out. A put of our own value keeps
   the time it was first received (:meth:`~guts.dht.records.ValueStore.put`),
   so without the restart a value would be due again at every sweep,
   even while its republish is still on its way.

Time comes in as ``now`` (wall-clock seconds, as in the stores); the Trio
layer sends what the sweep picked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from guts.dht.records import ProviderStore, StoredValue, ValueStore
from guts.peer import PeerId

__all__ = ["Sweep", "sweep"]


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one sweep did and what it asks to be published.

    Attributes:
        dropped: expired records removed (provider records and values).
        provider_keys: keys we provide whose records are due: announce them again.
        values: our values that are due (their interval already restarted):
            put them again.
    """

    dropped: int
    provider_keys: tuple[bytes, ...]
    values: tuple[StoredValue, ...]


def sweep(providers: ProviderStore, values: ValueStore, local: PeerId, now: float, interval: float) -> Sweep:
    """Expire what is dead, then pick our records due for republishing.

    Args:
        providers: the provider records; ours are those of ``local``.
        values: the value records; ours are those with no publisher.
        local: our peer id.
        now: wall-clock seconds.
        interval: the republish interval, in seconds.
    """
    dropped = providers.expire(now) + values.expire(now)
    provider_keys = tuple(
        key
        for key in providers.keys()
        if (rec := providers.get(key, local)) is not None and now - rec.received >= interval
    )
    due = tuple(v for v in values.own() if now - v.received >= interval)
    for value in due:
        values.restore(dataclasses.replace(value, received=now))
    return Sweep(dropped, provider_keys, due)
