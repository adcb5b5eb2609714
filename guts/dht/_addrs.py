"""Which peer addresses the DHT keeps and hands out.

js-libp2p's kad-dht strips private and loopback addresses from what it
stores and answers; that is right on the public network, where a peer's
``127.0.0.1`` means *our* machine, and wrong on a test network that is all
loopback. So Guts decides from its own addresses (:func:`auto_scope`):

* it has a public address: keep public addresses only;
* it has a private (LAN) address but no public one: keep public and
  private addresses;
* it has only loopback or in-memory addresses (a test network): keep all.

A node can also be told a scope outright (:class:`AddrScope`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import Enum

from guts.multiaddr import Multiaddr

__all__ = ["AddrScope", "addr_reach", "auto_scope", "filter_addrs"]


class AddrScope(Enum):
    """How far an address reaches, and so which addresses a node keeps."""

    PUBLIC = "public"  # the internet
    PRIVATE = "private"  # a LAN: RFC 1918, unique-local, link-local, CGNAT
    LOCAL = "local"  # this machine: loopback, /memory, localhost


_RANK = {AddrScope.PUBLIC: 0, AddrScope.PRIVATE: 1, AddrScope.LOCAL: 2}


def addr_reach(addr: Multiaddr) -> AddrScope:
    """The scope an address can be dialled from."""
    if not addr.components:
        return AddrScope.LOCAL
    proto, value = addr.components[0]
    if proto == "memory":
        return AddrScope.LOCAL
    if proto in ("ip4", "ip6") and value is not None:
        ip = ipaddress.ip_address(value)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback or ip.is_unspecified:
            return AddrScope.LOCAL
        if ip.is_global:
            return AddrScope.PUBLIC
        return AddrScope.PRIVATE
    if proto in ("dns", "dns4", "dns6", "dnsaddr") and value is not None:
        name = value.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return AddrScope.LOCAL
        if name.endswith((".local", ".lan", ".home.arpa", ".internal")):
            return AddrScope.PRIVATE
    return AddrScope.PUBLIC


def auto_scope(own_addrs: Iterable[Multiaddr]) -> AddrScope:
    """The scope to keep, from our own addresses: the farthest any reaches."""
    reaches = {addr_reach(a) for a in own_addrs}
    for scope in (AddrScope.PUBLIC, AddrScope.PRIVATE):
        if scope in reaches:
            return scope
    return AddrScope.LOCAL


def filter_addrs(addrs: Iterable[Multiaddr], scope: AddrScope) -> tuple[Multiaddr, ...]:
    """The addresses no narrower than ``scope`` (``LOCAL`` keeps everything)."""
    limit = _RANK[scope]
    return tuple(a for a in addrs if _RANK[addr_reach(a)] <= limit)
