"""The node's side of the scores and blocks: :class:`PeerGuard`, a thin
Trio adapter over :class:`~guts.reputation.Reputation` and
:class:`~guts.reputation.BlockStore`.

Theory of operation
-------------------
The guard answers the two questions a host asks of a connection:

- before the handshake, :meth:`PeerGuard.allow_inbound` (by address): a
  blocked address costs the node an accept and a close, never a Noise
  handshake. :meth:`PeerGuard.gate` wraps the node's transports so that
  their ``serve`` asks it of every inbound connection (and their ``dial``
  refuses a blocked address), for a host that does not ask itself;
- after it, :meth:`PeerGuard.allow_peer` (by peer id). :meth:`PeerGuard.watch`
  makes the host's :class:`~guts.host.PeerConnected` event ask it, and
  closes a connection refused.

Protocols feed the scores with :meth:`PeerGuard.report` (a penalty) or
:meth:`PeerGuard.note_score` (a score of their own). When the verdict
becomes ``DISCONNECT`` or ``BLOCK`` the guard closes the peer's
connection at once (in a task of the host's nursery); an automatic block
is written to the store in the same way, through one writer (a lock, so
writes land in the order made) on a worker thread, since a commit waits
for an fsync.

Manual blocks (:meth:`PeerGuard.block`, :meth:`PeerGuard.unblock`) are
awaited: the row is written before the answer, and a connected peer the
block covers (by id, address or network) is disconnected.

Why the host is attached after construction (:meth:`PeerGuard.watch`)
rather than passed in: the guard gates the transports the host is built
with, so it exists first. Until ``watch`` it scores and answers, and
closes nothing.

Time is ``clock()``, ``time.time`` by default: blocks outlive restarts.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from guts.errors import DialError
from guts.host import Host, HostEvent, PeerConnected
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.reputation._core import Block, Reputation, ReputationConfig, Target, Verdict, target_text
from guts.reputation._store import BlockStore, BlockStoreError
from guts.transport import ConnectionHandler, RawConnection, Transport, UpgradedConnection

__all__ = ["PeerGuard", "ip_of"]

log = logging.getLogger("guts.reputation")

_T = TypeVar("_T")


def ip_of(addr: Multiaddr) -> str | None:
    """The IP address of a multiaddr (``/ip4/...`` or ``/ip6/...``), if it has one."""
    return addr.value_for("ip4") or addr.value_for("ip6")


class PeerGuard:
    """Scores, blocks and their enforcement on a host (module docstring).

    Args:
        reputation: the scores and the block list.
        store: where blocks are kept; ``None`` keeps them in memory only.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        reputation: Reputation | None = None,
        store: BlockStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reputation = reputation or Reputation()
        self.store = store
        self._clock = clock
        self._host: Host | None = None
        self._write_lock = trio.Lock()
        #: Inbound connections refused before the handshake.
        self.refused_inbound = 0
        #: Connections closed after the handshake because the peer is blocked.
        self.refused_peers = 0
        #: Connections closed for a score at or below ``disconnect``.
        self.disconnected = 0
        #: Automatic blocks that could not be written to the store.
        self.store_failures = 0

    @classmethod
    def in_home(cls, home: Path, config: ReputationConfig | None = None, *, clock: Callable[[], float] = time.time
                ) -> PeerGuard:  # fmt: skip
        """The guard of the node in ``home``, with the blocks of its
        ``blocks.sqlite`` (blocks expired more than ``forget_after`` ago
        are purged first). Synchronous: the node opens it at start.

        Raises:
            BlockStoreError: the file cannot be used.
        """
        config = config or ReputationConfig()
        store = BlockStore.in_home(home, max_rows=config.max_blocks)
        try:
            store.purge(clock() - config.forget_after)
            blocks = store.load()
        except BaseException:
            store.close()
            raise
        return cls(Reputation(config, blocks), store, clock=clock)

    def close(self) -> None:
        """Close the store; idempotent."""
        if self.store is not None:
            self.store.close()

    @property
    def now(self) -> float:
        return self._clock()

    # -- what the host asks ------------------------------------------------------

    def allow_inbound(self, ip: str | None) -> bool:
        """Whether a connection from ``ip`` may start a handshake."""
        return ip is None or not self.reputation.blocked_ip(ip, self._clock())

    def allow_addr(self, addr: Multiaddr) -> bool:
        """:meth:`allow_inbound` for the address of a multiaddr (one without
        an IP, ``/memory`` for one, is allowed)."""
        return self.allow_inbound(ip_of(addr))

    def allow_peer(self, peer: PeerId) -> bool:
        """Whether ``peer`` may keep a connection, once authenticated."""
        return not self.reputation.blocked_peer(peer, self._clock())

    def verdict(self, peer: PeerId) -> Verdict:
        return self.reputation.verdict(peer, self._clock())

    def throttled(self, peer: PeerId) -> bool:
        """Whether protocols should serve ``peer`` less (its verdict is
        ``THROTTLE`` or worse)."""
        return self.verdict(peer) is not Verdict.OK

    # -- what protocols tell ------------------------------------------------------

    def report(self, peer: PeerId, reason: str, weight: float, ip: str | None = None) -> Verdict:
        """``peer`` misbehaved: lower its score by ``weight`` (and its
        address's: ``ip``, else its connection's), and act on the verdict.

        Suggested weights: 1 for a request over its rate, 10 for a frame
        that does not decode or a protocol violation, 50 for a forged
        signature or a lie that cost the node work.
        """
        if ip is None and self._host is not None:
            conn = self._host.connection(peer)
            ip = None if conn is None else ip_of(conn.remote_addr)
        outcome = self.reputation.penalize(peer, reason, weight, self._clock(), ip=ip)
        self._enforce(peer, outcome.verdict, outcome.blocked)
        return outcome.verdict

    def note_score(self, peer: PeerId, source: str, value: float) -> Verdict:
        """``peer``'s score in ``source`` (a protocol's own score) is
        ``value``; its negative part counts (see :class:`Reputation`)."""
        verdict = self.reputation.note_score(peer, source, value, self._clock())
        if verdict is Verdict.BLOCK and not self.reputation.blocked_peer(peer, self._clock()):
            outcome = self.reputation.penalize(peer, f"{source} score {value:.1f}", 0.0, self._clock())
            self._enforce(peer, outcome.verdict, outcome.blocked)
        else:
            self._enforce(peer, verdict, ())
        return verdict

    def _enforce(self, peer: PeerId, verdict: Verdict, blocked: tuple[Block, ...]) -> None:
        closing: set[PeerId] = set()
        for block in blocked:
            log.warning(
                "blocked %s until %s: %s (offence %d)",
                target_text(block.target), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(block.expires or 0)),
                block.reason, block.offences,
            )  # fmt: skip
            if self._host is not None:
                self._host.start_soon(self._save_quietly, block)
            closing.update(self._covered(block.target))
        if verdict in (Verdict.DISCONNECT, Verdict.BLOCK):
            closing.update(self._covered(peer))
        host = self._host
        if host is not None:
            for other in closing:
                self.disconnected += 1
                host.start_soon(host.disconnect, other)

    # -- blocks by hand --------------------------------------------------------

    async def block(
        self, target: Target, *, duration: float | None = None, reason: str = "blocked by hand"
    ) -> tuple[Block, list[PeerId]]:
        """Block ``target`` (for ``duration`` seconds, or until unblocked),
        write it to the store, and disconnect the connected peers it covers.

        Returns:
            The block, and the peers disconnected.

        Raises:
            BlockListFull, BlockStoreFull: no room for one more block by hand.
            BlockStoreError: the store failed (the block holds until restart).
        """
        previous = self.reputation.block_of(target)
        block = self.reputation.block(target, self._clock(), duration=duration, reason=reason)
        try:
            await self._write(self._save, block)
        except BlockStoreError:
            if previous is None:
                self.reputation.unblock(target)
            else:
                self.reputation.restore(previous)
            raise
        covered = self._covered(block.target)
        if self._host is not None:
            async with trio.open_nursery() as nursery:
                for peer in covered:
                    nursery.start_soon(self._host.disconnect, peer)
        return block, covered

    async def unblock(self, target: Target) -> Block | None:
        """Lift the block on ``target`` (and forget its offences); the
        block lifted, if there was one."""
        block = self.reputation.unblock(target)
        await self._write(self._delete, target)
        return block

    def blocks(self) -> list[Block]:
        """The active blocks, oldest first."""
        return self.reputation.blocks(self._clock())

    def _covered(self, target: Target) -> list[PeerId]:
        """The connected peers ``target`` names: the peer, or those whose
        connection comes from within the network."""
        host = self._host
        if host is None:
            return []
        if isinstance(target, PeerId):
            return [target] if host.connection(target) is not None else []
        found = []
        for conn in host.connections:
            ip = ip_of(conn.remote_addr)
            if ip is None:
                continue
            address = ipaddress.ip_address(ip)
            if address.version == target.version and address in target:
                found.append(conn.peer_id)
        return found

    # -- the store ---------------------------------------------------------------

    def _save(self, block: Block) -> None:
        if self.store is not None:
            self.store.save(block)

    def _delete(self, target: Target) -> None:
        if self.store is not None:
            self.store.delete(target)

    async def _write(self, fn: Callable[[_T], None], arg: _T) -> None:
        if self.store is None:
            return
        async with self._write_lock:
            await trio.to_thread.run_sync(fn, arg)

    async def _save_quietly(self, block: Block) -> None:
        try:
            await self._write(self._save, block)
        except BlockStoreError as exc:
            self.store_failures += 1
            log.warning("could not keep the block of %s: %s", target_text(block.target), exc)

    # -- the host ------------------------------------------------------------------

    def watch(self, host: Host) -> None:
        """Enforce on ``host``: close a blocked peer's connection once it
        authenticates (or one from a blocked address), and the connection
        of a peer whose score calls for it from now on."""
        self._host = host
        host.add_event_handler(self._on_event)

    def _on_event(self, event: HostEvent) -> None:
        if not isinstance(event, PeerConnected) or self._host is None:
            return
        if self.allow_peer(event.peer_id) and self.allow_addr(event.addr):
            return
        self.refused_peers += 1
        log.debug("closing the connection of blocked peer %s (%s)", event.peer_id, event.addr)
        self._host.start_soon(self._host.disconnect, event.peer_id)

    def gate(self, transports: Sequence[Transport]) -> list[Transport]:
        """``transports``, each refusing blocked addresses before the
        handshake: inbound connections from them are closed unread, and
        dials to them fail with :class:`~guts.errors.DialError`."""
        return [_GatedTransport(t, self) for t in transports]

    def status(self) -> dict[str, Any]:
        """Counts for ``guts status``."""
        return {
            "blocks": len(self.blocks()),
            "peers_scored": self.reputation.peers_tracked,
            "refused_inbound": self.refused_inbound,
            "refused_peers": self.refused_peers,
            "disconnected": self.disconnected,
            "store_failures": self.store_failures,
        }


class _GatedTransport:
    """A transport whose connections to and from blocked addresses never start."""

    def __init__(self, inner: Transport, guard: PeerGuard) -> None:
        self.inner = inner
        self._guard = guard
        if hasattr(inner, "admit_inbound"):  # QUIC: its handshake runs inside serve, so ask before it
            inner.admit_inbound = guard.allow_inbound

    def can_dial(self, addr: Multiaddr) -> bool:
        return self.inner.can_dial(addr)

    def can_listen(self, addr: Multiaddr) -> bool:
        return self.inner.can_listen(addr)

    async def dial(self, addr: Multiaddr) -> RawConnection | UpgradedConnection:
        if not self._guard.allow_addr(addr):
            raise DialError(f"{addr}: the address is blocked on this node")
        return await self.inner.dial(addr)

    async def serve(
        self,
        addr: Multiaddr,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        guard = self._guard

        async def gated(raw: RawConnection | UpgradedConnection) -> None:
            if guard.allow_addr(raw.remote_addr):
                await handler(raw)
                return
            guard.refused_inbound += 1
            log.debug("refused a connection from blocked address %s", raw.remote_addr)

        await self.inner.serve(addr, gated, task_status=task_status)

