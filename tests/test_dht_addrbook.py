"""The address book, synchronously: scope, what is kept, who is worth asking."""

from __future__ import annotations

from guts.dht._addrs import AddrScope
from guts.dht._codec import KadPeer
from guts.dht.addrbook import AddrBook
from guts.multiaddr import Multiaddr

from .dht_helpers import FakeHost, peer

LOOP = Multiaddr.parse("/ip4/127.0.0.1/tcp/1")
LAN = Multiaddr.parse("/ip4/192.168.1.2/tcp/1")
PUB = Multiaddr.parse("/ip4/8.8.8.8/tcp/1")
PUB2 = Multiaddr.parse("/ip4/1.1.1.1/tcp/2")
ME = peer(0)


def test_scope_follows_our_addresses() -> None:
    host = FakeHost()
    book = AddrBook(host)
    assert book.scope is AddrScope.LOCAL  # no address yet: a test network
    host.listen_addrs = [LOOP, LAN]  # announce addresses win when there are any
    assert book.scope is AddrScope.PRIVATE
    host.announce_addrs = [LOOP]
    assert book.scope is AddrScope.LOCAL
    host.announce_addrs = [LAN, PUB]
    assert book.scope is AddrScope.PUBLIC


def test_a_configured_scope_stands() -> None:
    host = FakeHost(announce_addrs=[PUB])
    assert AddrBook(host, AddrScope.LOCAL).scope is AddrScope.LOCAL


def test_kept_and_own_addresses_are_within_scope() -> None:
    host = FakeHost(announce_addrs=[LOOP, LAN, PUB])
    book = AddrBook(host)
    assert book.kept([LOOP, LAN, PUB]) == (PUB,)
    assert book.own() == (PUB,)
    assert AddrBook(host, AddrScope.PRIVATE).own() == (LAN, PUB)


def test_addresses_of_a_peer_extra_first_then_the_peerstore() -> None:
    host = FakeHost(announce_addrs=[LOOP])
    host.peerstore.add_addrs(peer(1), [PUB, LAN])
    book = AddrBook(host)
    assert book.of(peer(1)) == (PUB, LAN)
    assert book.of(peer(1), [PUB2, PUB]) == (PUB2, PUB, LAN)  # each once
    host.announce_addrs = [PUB]
    assert book.of(peer(1), [LOOP, PUB2]) == (PUB2, PUB)  # a public node hands out public addresses only
    assert book.of(peer(2)) == ()


def test_learn_remembers_addresses_in_scope_and_names_who_to_ask() -> None:
    host = FakeHost(announce_addrs=[PUB])
    host.peerstore.add_addrs(peer(3), [PUB2])  # known from before
    host.connected.add(peer(4))  # no address, but connected (a client)
    book = AddrBook(host)
    listed = [
        KadPeer(ME, (PUB,)),  # ourselves: never asked
        KadPeer(peer(1), (LOOP, PUB2)),  # one address in scope
        KadPeer(peer(2), (LOOP, LAN)),  # none in scope, unknown: unreachable
        KadPeer(peer(3), (LAN,)),
        KadPeer(peer(4), ()),
    ]
    assert book.learn(listed) == [peer(1), peer(3), peer(4)]
    assert host.peerstore.addrs(peer(1)) == (PUB2,)  # only what is in scope is remembered
    assert host.peerstore.addrs(peer(2)) == ()
    assert host.peerstore.addrs(peer(3)) == (PUB2,)
    assert ME not in host.peerstore
