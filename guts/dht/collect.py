"""What the answers of a lookup add up to: a peer's addresses, providers
found, the best value and who must be corrected, and whether a PUT_VALUE
took.

Theory of operation
-------------------

A FIND_NODE, GET_PROVIDERS or GET_VALUE lookup asks peer after peer; each
answer goes to a collector's ``on_response(sender, answer)``, which
returns True once the collector has what it wants, and the lookup stops
there (the signature is the one :func:`guts.dht._driver.run_lookup` calls).

*A peer* (:class:`PeerCollector`): an answer from the peer itself ends
the search (we hold a connection to it then, and the addresses it
announced); otherwise any answer that lists it with addresses does.

*Providers* (:class:`ProviderCollector`): our own records come first,
then providers as answers name them, each peer once, up to ``count``.

*Values* (:class:`ValueCollector`, libp2p/specs kad-dht "Getting
values"): the local copy counts as one value; every record an answer
carries is checked (the key asked for, the namespace's validator) and a
bad one is skipped, never fatal: one lying peer must not hide the value
the others hold. The lookup stops once ``quorum`` values are in. The
namespace's ``select`` picks the best; the peers that answered with
anything else hold an outdated record and are sent the best one
(*entry correction*), so the network converges on it.

*Puts* (:func:`put_echoed`): a PUT_VALUE is answered with the record
stored. An answer that does not carry the value we put is a refusal in
disguise (or a peer that mangled it): that peer does not count as
holding the record.

No time, no I/O: addresses go through the :class:`~guts.dht.addrbook.AddrBook`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from guts.dht._codec import KadMessage, KadPeer, MessageType, Record
from guts.dht._key import show_key
from guts.dht.addrbook import AddrBook
from guts.dht.records import ProviderRecord, ValueStore
from guts.errors import InvalidRecord, PeerNotFound, RecordNotFound
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.peerstore import PeerInfo

__all__ = ["PeerCollector", "ProviderCollector", "ValueCollector", "ValueFound", "put_echoed"]

log = logging.getLogger("guts.dht")


class PeerCollector:
    """Addresses of one peer, from the answers of a lookup for its id.

    Args:
        peer: the peer sought.
        addrs: the address book (what we know of ``peer``, and the scope).
    """

    def __init__(self, peer: PeerId, addrs: AddrBook) -> None:
        self.peer = peer
        self._book = addrs
        self._found: list[Multiaddr] = []

    def on_response(self, sender: PeerId, response: KadMessage) -> bool:
        """Take what one answer says of the peer; True once it is found."""
        if sender == self.peer:
            self._found.extend(self._book.of(self.peer))
            return True
        for p in response.closer_peers:
            if p.peer_id == self.peer and p.addrs:
                self._found.extend(self._book.kept(p.addrs))
        return bool(self._found)

    def result(self) -> PeerInfo:
        """The peer's addresses, each once.

        Raises:
            PeerNotFound: no answer gave an address for it.
        """
        if not self._found:
            raise PeerNotFound(f"no peer in the DHT knows an address for {self.peer}")
        return PeerInfo(self.peer, tuple(dict.fromkeys(self._found)))


class ProviderCollector:
    """Providers of one key, in the order found, each once, up to ``count``.

    Args:
        count: how many providers are wanted.
        addrs: the address book: addresses of the providers named in
            answers are remembered there, and handed out from it.
    """

    def __init__(self, count: int, addrs: AddrBook) -> None:
        self.count = count
        self._book = addrs
        self._found: dict[PeerId, tuple[Multiaddr, ...]] = {}

    @property
    def done(self) -> bool:
        """Whether ``count`` providers are in: the lookup need not run, or may stop."""
        return len(self._found) >= self.count

    def add_local(self, records: Iterable[ProviderRecord], local: PeerId) -> None:
        """Take the providers of our own store first (``local`` is us)."""
        for rec in records:
            if rec.provider not in self._found and not self.done:
                addrs = self._book.own() if rec.provider == local else self._book.of(rec.provider, rec.addrs)
                self._found[rec.provider] = addrs

    def on_response(self, sender: PeerId, response: KadMessage) -> bool:
        """Take the new providers of one answer; True once ``count`` are in."""
        for p in response.provider_peers:
            if p.peer_id not in self._found and not self.done:
                self._book.learn([p])
                self._found[p.peer_id] = self._book.of(p.peer_id, p.addrs)
        return self.done

    def providers(self) -> list[PeerInfo]:
        """The providers found, ours first."""
        return [PeerInfo(p, addrs) for p, addrs in self._found.items()]


@dataclass(frozen=True, slots=True)
class ValueFound:
    """The outcome of a GET_VALUE.

    Attributes:
        key: the key asked for.
        value: the best value found.
        outdated: peers that answered with another value; they get the
            best one (entry correction).
    """

    key: bytes
    value: bytes
    outdated: tuple[PeerId, ...]

    def correction(self) -> KadMessage:
        """The PUT_VALUE that brings an outdated peer up to date."""
        return KadMessage(MessageType.PUT_VALUE, key=self.key, record=Record(self.key, self.value))


class ValueCollector:
    """Values of one key, checked, until ``quorum`` are in.

    Args:
        key: the key asked for.
        values: the store whose validators check and order values.
        quorum: values wanted before the lookup may stop (the local copy counts).
        local: the value we hold ourselves, if any.

    Raises:
        InvalidRecord: the key's namespace has no validator (nothing could be accepted).
    """

    def __init__(self, key: bytes, values: ValueStore, quorum: int, local: bytes | None = None) -> None:
        values.validator_for(key)
        self.key = key
        self.quorum = quorum
        self._store = values
        self._values: list[bytes] = [] if local is None else [local]
        self._holders: list[tuple[PeerId, bytes]] = []

    @property
    def done(self) -> bool:
        """Whether the quorum is in: the lookup need not run, or may stop."""
        return len(self._values) >= self.quorum

    def on_response(self, sender: PeerId, response: KadMessage) -> bool:
        """Take the record of one answer if it is valid; True once the quorum is in."""
        rec = response.record
        if rec is None:
            return False
        if rec.key != self.key:
            log.warning("peer %s: GET_VALUE answered with a record for another key", sender)
            return False
        try:
            self._store.validate(self.key, rec.value)
        except InvalidRecord as exc:
            log.warning("peer %s: invalid record for %s: %s", sender, show_key(self.key), exc)
            return False
        self._values.append(rec.value)
        self._holders.append((sender, rec.value))
        return self.done

    def result(self) -> ValueFound:
        """The best value, and who holds another.

        Raises:
            RecordNotFound: no valid value came in (nor was there one here).
            InvalidRecord: the validator's ``select`` misbehaved.
        """
        if not self._values:
            raise RecordNotFound(f"no value found for {show_key(self.key)}")
        best = self._values[self._store.select(self.key, self._values)]
        outdated = tuple(p for p, v in self._holders if v != best)
        return ValueFound(self.key, best, outdated)


def put_echoed(request: KadMessage, response: KadMessage | None) -> bool:
    """Whether ``response`` shows that ``request`` took.

    Only a PUT_VALUE (a request with a record) has something to check: its
    answer must carry the value put. Other requests took if they were
    answered at all (or, like ADD_PROVIDER, need no answer).
    """
    if request.record is None:
        return True
    echoed = response.record if response is not None else None
    return echoed is not None and echoed.value == request.record.value
