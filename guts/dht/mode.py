"""Whether a node serves the DHT, from its own addresses.

A DHT server is worth something to others only if they can dial it: a
node behind a NAT that registers the protocol ends up in routing tables
where every lookup that reaches it waits for a dial that never connects.
So under :attr:`DhtMode.AUTO` a node serves only when it announces a
public address, and is a client otherwise (``--dht-mode server`` makes a
node on a LAN serve its LAN). The same addresses decide the scope of the
addresses the node keeps and hands out (:func:`guts.dht._addrs.auto_scope`).

Both are plain functions of the configuration and the addresses, decided
again whenever the addresses may have changed (after listening, at every
refresh): the Trio layer only applies the answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from guts.dht._addrs import AddrScope, addr_reach
from guts.dht._config import DhtMode
from guts.multiaddr import Multiaddr

__all__ = ["decide_mode"]


def decide_mode(configured: DhtMode, own_addrs: Iterable[Multiaddr]) -> DhtMode:
    """The mode in force: ``configured``, or for ``AUTO`` ``SERVER`` exactly
    when one of ``own_addrs`` is public.

    Args:
        configured: the mode asked for.
        own_addrs: the addresses we announce (or listen on, when we announce
            none).
    """
    if configured is not DhtMode.AUTO:
        return configured
    public = any(addr_reach(a) is AddrScope.PUBLIC for a in own_addrs)
    return DhtMode.SERVER if public else DhtMode.CLIENT

