"""Turning listen addresses into addresses others can dial."""

from __future__ import annotations

import socket

from guts.multiaddr import Multiaddr

__all__ = ["expand_unspecified"]


def _local_ips(family: socket.AddressFamily) -> list[str]:
    ips = ["127.0.0.1" if family == socket.AF_INET else "::1"]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
    except OSError:
        return ips
    for info in infos:
        ip = str(info[4][0])
        if ip not in ips and not ip.startswith("fe80"):
            ips.append(ip)
    return ips


def expand_unspecified(addrs: list[Multiaddr]) -> list[Multiaddr]:
    """Replace ``0.0.0.0`` / ``::`` listen addresses with this machine's
    addresses, so that what we print and announce can be dialled."""
    out: list[Multiaddr] = []
    for addr in addrs:
        parts = str(addr).split("/")
        if len(parts) > 2 and parts[1] == "ip4" and parts[2] == "0.0.0.0":
            ips = _local_ips(socket.AF_INET)
        elif len(parts) > 2 and parts[1] == "ip6" and parts[2] == "::":
            ips = _local_ips(socket.AF_INET6)
        else:
            out.append(addr)
            continue
        for ip in ips:
            parts[2] = ip
            candidate = Multiaddr.parse("/".join(parts))
            if candidate not in out:
                out.append(candidate)
    return out
