"""One score per peer, fed by every protocol, and the block list it leads to.

Theory of operation
-------------------
A peer starts at score 0. Each misbehaviour a protocol notices (a frame
that does not decode, a forged signature, a request over its rate) is a
:meth:`Reputation.penalize` with a ``weight``: the score drops by it. A
score returns towards 0 on its own, halving every
:attr:`ReputationConfig.half_life` seconds, so a peer that slipped once is
forgiven and one that keeps misbehaving is not. A protocol with a score
of its own (gossipsub's) hands it over with :meth:`Reputation.note_score`:
only its negative part counts, so rewards earned there never wash out
misbehaviour noticed here.

The score decides the :class:`Verdict`, by the thresholds of
:class:`ReputationConfig` (defaults in brackets)::

    score > throttle (-20)           OK          served as usual
    throttle >= score > disconnect   THROTTLE    protocols serve it less (their call)
    disconnect (-50) >= score        DISCONNECT  the connection is closed; it may come back
    block (-100) >= score            BLOCK       blocked: refused after the handshake

A peer reaching the block threshold is blocked for a duration that grows
with its offences: ``block_base`` (10 min), then ``block_factor`` (×4)
times the last, up to ``block_max`` (24 h): 10 min, 40 min, 2 h 40, 10 h
40, 24 h. Its score starts again from 0 when blocked. An expired block is
remembered for ``forget_after`` (7 days) so that the next offence counts
as a repeat; then it is forgotten.

Addresses are scored too: a penalty given with the peer's ``ip`` counts
against the address as well, and an address reaching ``ip_block`` (-300,
three peers' worth of block-level misbehaviour, since a stranger makes
identities for free) is blocked the same way, so that new keys from the
same machine are refused before their handshake. Loopback addresses are
never blocked automatically (``protect_loopback``): on one machine they
are every local node.

Blocks set by hand (:meth:`Reputation.block`) name a peer id, an address
or a network (CIDR), last ``duration`` seconds or for ever, and are only
lifted by hand or by their expiry.

Bounds: at most ``max_peers`` peer scores and ``max_ips`` address scores
are kept, the least recently touched dropped first (a dropped score is a
forgiven one). Blocks live apart from scores, so a blocked peer is never
dropped to make room for a stranger's score; at most ``max_blocks`` are
kept, and when full the automatic block set first goes first. Manual
blocks are never evicted: one more is refused with :class:`BlockListFull`.

Checks are cheap: :meth:`Reputation.blocked_peer` is one dict lookup;
:meth:`Reputation.blocked_ip` one lookup per distinct prefix length on the
list (one for single addresses, at most 33 for IPv4 and 129 for IPv6),
whatever the list's size.

No trio here: every call takes ``now``, seconds on a clock that survives a
restart (the adapter passes ``time.time()``), since blocks are persisted
with their expiry.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TypeAlias, TypeVar

from guts.errors import GutsError, InputError
from guts.peer import PeerId

__all__ = [
    "Block",
    "BlockListFull",
    "Network",
    "Outcome",
    "Reputation",
    "ReputationConfig",
    "Target",
    "Verdict",
    "parse_target",
    "target_text",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: What a block names: a peer, or a network (a single address is a /32 or /128).
Target: TypeAlias = PeerId | Network

_K = TypeVar("_K")

#: Longest reason kept with a block, in characters.
MAX_REASON = 200


class Verdict(Enum):
    """What a peer's score calls for (module docstring)."""

    OK = "ok"
    THROTTLE = "throttle"
    DISCONNECT = "disconnect"
    BLOCK = "block"


class BlockListFull(GutsError):
    """The block list holds ``max_blocks`` entries set by hand; nothing
    was added."""


@dataclass(frozen=True, slots=True)
class ReputationConfig:
    """Thresholds, decay and bounds (module docstring)."""

    throttle: float = -20.0
    disconnect: float = -50.0
    block: float = -100.0
    ip_block: float = -300.0
    half_life: float = 600.0
    block_base: float = 600.0
    block_factor: float = 4.0
    block_max: float = 86_400.0
    forget_after: float = 7 * 86_400.0
    protect_loopback: bool = True
    max_peers: int = 10_000
    max_ips: int = 10_000
    max_blocks: int = 100_000

    def __post_init__(self) -> None:
        if not 0 > self.throttle > self.disconnect >= self.block:
            raise ValueError("thresholds must be 0 > throttle > disconnect >= block")
        if self.ip_block >= 0:
            raise ValueError("ip_block must be negative")
        if self.half_life <= 0 or self.block_base <= 0 or self.block_factor < 1 or self.block_max < self.block_base:
            raise ValueError("half_life, block_base > 0; block_factor >= 1; block_max >= block_base")
        if min(self.max_peers, self.max_ips, self.max_blocks) < 1:
            raise ValueError("max_peers, max_ips and max_blocks must be at least 1")

    def block_duration(self, offences: int) -> float:
        """Seconds an automatic block lasts for the ``offences``-th offence (from 1)."""
        duration = self.block_base
        for _ in range(1, offences):
            duration *= self.block_factor
            if duration >= self.block_max:
                return self.block_max
        return min(duration, self.block_max)


@dataclass(frozen=True, slots=True)
class Block:
    """One entry of the block list.

    Attributes:
        target: the peer or network blocked.
        reason: why (the last offence's reason, or what was given by hand).
        since: when it was set.
        expires: when it ends; ``None`` for a block that lasts until lifted.
        offences: how many times the target was blocked (repeats lengthen
            automatic blocks).
        manual: set by hand (``guts peers block``), not by the score.
    """

    target: Target
    reason: str
    since: float
    expires: float | None
    offences: int = 1
    manual: bool = False

    def active(self, now: float) -> bool:
        return self.expires is None or now < self.expires


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a penalty led to.

    Attributes:
        verdict: the peer's verdict after it.
        score: the peer's score after it (0 if it was just blocked).
        blocked: the blocks this penalty set (the peer's, its address's).
    """

    verdict: Verdict
    score: float
    blocked: tuple[Block, ...] = ()


@dataclass(slots=True)
class _Score:
    value: float = 0.0
    at: float = 0.0
    external: dict[str, float] = field(default_factory=dict)

    def decayed(self, now: float, half_life: float) -> float:
        if now > self.at and self.value:
            self.value *= 0.5 ** ((now - self.at) / half_life)
            if self.value > -1e-3:
                self.value = 0.0
        self.at = max(self.at, now)
        return self.value


def parse_target(text: str) -> Target:
    """A peer id, an address or a network (CIDR) from its text.

    Raises:
        InputError: it is none of them.
    """
    text = text.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass  # no peer id reads as an address
    try:
        return PeerId.from_string(text)
    except InputError:
        raise InputError(f"{text!r} is neither a peer id, an IP address nor a network (CIDR)") from None


def target_text(target: Target) -> str:
    """The text of a target; a single address without its ``/32`` or ``/128``."""
    if isinstance(target, PeerId):
        return str(target)
    if target.prefixlen == target.max_prefixlen:
        return str(target.network_address)
    return str(target)


def _single(ip: Address) -> Network:
    return ipaddress.ip_network(ip)


class Reputation:
    """The scores and the block list (module docstring).

    Args:
        config: thresholds, decay and bounds.
        blocks: blocks to start with (as loaded from the store).
    """

    def __init__(self, config: ReputationConfig | None = None, blocks: list[Block] | tuple[Block, ...] = ()) -> None:
        self.config = config or ReputationConfig()
        self._peers: OrderedDict[PeerId, _Score] = OrderedDict()
        self._ips: OrderedDict[Address, _Score] = OrderedDict()
        # Every block, in the order set (oldest first: what eviction takes).
        self._blocks: OrderedDict[Target, Block] = OrderedDict()
        # (version, prefix length) -> how many network blocks have it.
        self._prefixes: Counter[tuple[int, int]] = Counter()
        # (version, prefix length, the network's bits) -> its block: an
        # address is looked up with one shift per prefix length in use.
        self._nets: dict[tuple[int, int, int], Block] = {}
        for block in blocks:
            self.restore(block)

    # -- scores -------------------------------------------------------------

    def penalize(
        self, peer: PeerId, reason: str, weight: float, now: float, ip: str | Address | None = None
    ) -> Outcome:
        """Lower ``peer``'s score (and ``ip``'s) by ``weight`` for ``reason``.

        Returns:
            The verdict now, and any block this set.
        """
        if weight < 0:
            raise ValueError("a penalty's weight is positive")
        cfg = self.config
        entry = self._touch(self._peers, peer, cfg.max_peers)
        entry.value = entry.decayed(now, cfg.half_life) - weight
        blocked: list[Block] = []
        address = _address(ip)
        if address is not None:
            ip_entry = self._touch(self._ips, address, cfg.max_ips)
            ip_entry.value = ip_entry.decayed(now, cfg.half_life) - weight
            if ip_entry.value <= cfg.ip_block and not (cfg.protect_loopback and address.is_loopback):
                ip_block = self._auto_block(_single(address), reason, now)
                del self._ips[address]
                if ip_block is not None:
                    blocked.append(ip_block)
        if self.blocked_peer(peer, now):
            return Outcome(Verdict.BLOCK, 0.0, tuple(blocked))
        total = self._total(entry, now)
        if total <= cfg.block:
            peer_block = self._auto_block(peer, reason, now)
            if peer_block is not None:
                del self._peers[peer]
                return Outcome(Verdict.BLOCK, 0.0, (peer_block, *blocked))
        return Outcome(self._verdict(total), total, tuple(blocked))

    def note_score(self, peer: PeerId, source: str, value: float, now: float) -> Verdict:
        """Take ``value`` as ``peer``'s score in ``source`` (gossipsub's,
        for one): its negative part counts towards the verdict, until the
        next note from the same source replaces it."""
        entry = self._peers.get(peer)
        if entry is None and value >= 0:
            return self.verdict(peer, now)
        entry = self._touch(self._peers, peer, self.config.max_peers)
        if len(entry.external) >= 8 and source not in entry.external:
            raise ValueError("at most 8 score sources per peer")
        entry.external[source] = min(0.0, value)
        return self.verdict(peer, now)

    def score(self, peer: PeerId, now: float) -> float:
        """``peer``'s score now (0 for one never penalized or forgiven)."""
        entry = self._peers.get(peer)
        return 0.0 if entry is None else self._total(entry, now)

    def verdict(self, peer: PeerId, now: float) -> Verdict:
        if self.blocked_peer(peer, now):
            return Verdict.BLOCK
        return self._verdict(self.score(peer, now))

    def forgive(self, peer: PeerId) -> None:
        """Drop ``peer``'s score (its blocks stay)."""
        self._peers.pop(peer, None)

    @property
    def peers_tracked(self) -> int:
        return len(self._peers)

    def _total(self, entry: _Score, now: float) -> float:
        return entry.decayed(now, self.config.half_life) + sum(entry.external.values())

    def _verdict(self, score: float) -> Verdict:
        cfg = self.config
        if score <= cfg.block:
            return Verdict.BLOCK
        if score <= cfg.disconnect:
            return Verdict.DISCONNECT
        if score <= cfg.throttle:
            return Verdict.THROTTLE
        return Verdict.OK

    @staticmethod
    def _touch(table: OrderedDict[_K, _Score], key: _K, limit: int) -> _Score:
        entry = table.get(key)
        if entry is None:
            entry = table[key] = _Score()
            while len(table) > limit:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return entry

    # -- blocks -------------------------------------------------------------

    def blocked_peer(self, peer: PeerId, now: float) -> bool:
        block = self._blocks.get(peer)
        return block is not None and block.active(now)

    def blocked_ip(self, ip: str | Address, now: float) -> bool:
        """Whether ``ip`` is blocked, alone or within a blocked network."""
        return self.ip_block(ip, now) is not None

    def ip_block(self, ip: str | Address, now: float) -> Block | None:
        """The active block that covers ``ip``, if any."""
        address = _address(ip)
        if address is None or not self._prefixes:
            return None
        bits = int(address)
        width = address.max_prefixlen
        for version, length in self._prefixes:
            if version != address.version:
                continue
            block = self._nets.get((version, length, bits >> (width - length)))
            if block is not None and block.active(now):
                return block
        return None

    def block_of(self, target: Target) -> Block | None:
        """The entry for ``target`` (active or remembered), if any."""
        return self._blocks.get(_normal(target))

    def block(
        self, target: Target, now: float, *, duration: float | None = None, reason: str = "blocked by hand"
    ) -> Block:
        """Block ``target`` by hand for ``duration`` seconds, or until
        :meth:`unblock` when ``None``; replaces any block it had.

        Raises:
            BlockListFull: the list holds ``max_blocks`` manual blocks.
            ValueError: ``duration`` is not positive.
        """
        if duration is not None and not duration > 0:
            raise ValueError("a block's duration is positive")
        target = _normal(target)
        old = self._blocks.get(target)
        block = Block(
            target, _reason(reason), now, None if duration is None else now + duration,
            offences=1 if old is None else old.offences + (0 if old.active(now) else 1), manual=True,
        )  # fmt: skip
        if old is None and not self._room(now, manual=True):
            raise BlockListFull(f"the block list holds {self.config.max_blocks} blocks set by hand")
        self._put(block)
        if isinstance(target, PeerId):
            self._peers.pop(target, None)
        return block

    def unblock(self, target: Target) -> Block | None:
        """Lift the block on ``target`` and forget its offences; the block
        it had (active or remembered), if any."""
        target = _normal(target)
        block = self._blocks.pop(target, None)
        if block is not None and not isinstance(target, PeerId):
            self._drop_prefix(target)
            del self._nets[_net_key(target)]
        if isinstance(target, PeerId):
            self._peers.pop(target, None)
        else:
            self._ips.pop(target.network_address, None)
        return block

    def restore(self, block: Block) -> None:
        """Put ``block`` back as it is (a block loaded from the store, or
        one a failed write must not have replaced)."""
        self._put(block)

    def blocks(self, now: float, *, remembered: bool = False) -> list[Block]:
        """The active blocks (and the expired ones remembered, with
        ``remembered``), in the order set."""
        return [b for b in self._blocks.values() if remembered or b.active(now)]

    def purge(self, now: float) -> list[Block]:
        """Forget blocks expired more than ``forget_after`` ago; those forgotten."""
        horizon = now - self.config.forget_after
        gone = [b for b in self._blocks.values() if b.expires is not None and b.expires < horizon]
        for block in gone:
            self.unblock(block.target)
        return gone

    def _auto_block(self, target: Target, reason: str, now: float) -> Block | None:
        old = self._blocks.get(target)
        if old is not None and old.active(now):
            return None
        offences = 1 if old is None else old.offences + 1
        expires = now + self.config.block_duration(offences)
        if old is None and not self._room(now, manual=False):
            return None
        block = Block(target, _reason(reason), now, expires, offences=offences, manual=False)
        self._put(block)
        return block

    def _room(self, now: float, *, manual: bool) -> bool:
        """Make room for one more block if needed: forgotten ones first,
        then the oldest automatic one (only for a manual block or an
        automatic one when an automatic one can go). Whether there is room."""
        if len(self._blocks) < self.config.max_blocks:
            return True
        if self.purge(now):
            return True
        for block in self._blocks.values():
            if not block.manual:
                self.unblock(block.target)
                return True
        return False

    def _put(self, block: Block) -> None:
        target = _normal(block.target)
        block = replace(block, target=target, reason=_reason(block.reason))
        if target in self._blocks:
            del self._blocks[target]
        elif not isinstance(target, PeerId):
            self._prefixes[(target.version, target.prefixlen)] += 1
        if not isinstance(target, PeerId):
            self._nets[_net_key(target)] = block
        self._blocks[target] = block

    def _drop_prefix(self, net: Network) -> None:
        key = (net.version, net.prefixlen)
        self._prefixes[key] -= 1
        if self._prefixes[key] <= 0:
            del self._prefixes[key]


def _normal(target: Target) -> Target:
    """``target`` as a key: a network with its host bits cleared."""
    if isinstance(target, PeerId):
        return target
    return ipaddress.ip_network(target, strict=False)


def _net_key(net: Network) -> tuple[int, int, int]:
    return net.version, net.prefixlen, int(net.network_address) >> (net.max_prefixlen - net.prefixlen)


def _address(ip: str | Address | None) -> Address | None:
    if ip is None:
        return None
    if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address: Address = ip
    else:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _reason(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:MAX_REASON] if text else "unspecified"
