"""The mode decision, synchronously: server only with a public address under AUTO."""

from __future__ import annotations

import pytest

from guts.dht._config import DhtMode
from guts.dht.mode import decide_mode
from guts.multiaddr import Multiaddr

LOOP = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")
LAN = Multiaddr.parse("/ip4/192.168.1.2/tcp/4001")
CGNAT = Multiaddr.parse("/ip4/100.64.0.1/tcp/4001")
PUB = Multiaddr.parse("/ip4/8.8.8.8/tcp/4001")
PUB6 = Multiaddr.parse("/ip6/2001:4860:4860::8888/tcp/4001/ws")
MEM = Multiaddr.parse("/memory/3")
DNS = Multiaddr.parse("/dns4/node.example.org/tcp/4001")
LOCALHOST = Multiaddr.parse("/dns4/localhost/tcp/4001")


@pytest.mark.parametrize(
    ("addrs", "expected"),
    [
        ((), DhtMode.CLIENT),  # not listening yet
        ((LOOP, MEM), DhtMode.CLIENT),
        ((LOOP, LAN), DhtMode.CLIENT),  # a LAN is not reachable from the internet
        ((CGNAT,), DhtMode.CLIENT),
        ((LOCALHOST,), DhtMode.CLIENT),
        ((LOOP, LAN, PUB), DhtMode.SERVER),  # one public address is enough
        ((PUB6,), DhtMode.SERVER),
        ((DNS,), DhtMode.SERVER),  # a public name
    ],
)
def test_auto_serves_only_with_a_public_address(addrs: tuple[Multiaddr, ...], expected: DhtMode) -> None:
    assert decide_mode(DhtMode.AUTO, addrs) is expected


@pytest.mark.parametrize("mode", [DhtMode.CLIENT, DhtMode.SERVER])
def test_a_configured_mode_stands_whatever_the_addresses(mode: DhtMode) -> None:
    assert decide_mode(mode, ()) is mode
    assert decide_mode(mode, (PUB,)) is mode
    assert decide_mode(mode, (LOOP,)) is mode


def test_auto_follows_the_addresses_as_they_change() -> None:
    addrs = [LOOP]
    assert decide_mode(DhtMode.AUTO, addrs) is DhtMode.CLIENT
    addrs.append(PUB)  # an address announced later (after listening, a port mapping)
    assert decide_mode(DhtMode.AUTO, addrs) is DhtMode.SERVER
    assert decide_mode(DhtMode.AUTO, iter([PUB])) is DhtMode.SERVER  # any iterable, read once
