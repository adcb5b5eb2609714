"""The network of the ``repo`` simulation: full Guts nodes (:func:`guts.node.open_node`)
in one process on the memory transport, and what is counted from outside them.

Every node is the node ``guts start`` runs, less the control API and the
TCP/WebSocket transports: host, identify, ping, the DHT (server mode:
memory addresses are not public, so ``auto`` would make clients of all),
gossipsub, the repositories in its own ``storage`` directory with real
git, the sync protocol, :class:`~guts.replicate.RepoProvider` and
:class:`~guts.replicate.Replicator`. Each listens on ``/memory/<port>``
with a port fixed in advance, so every pair's link delay is set before
anyone dials.

Counting, without touching the node's code:

- :class:`Served`: each node's storage has its ``upload_pack`` wrapped, so
  every upload-pack response the sync server streams is counted (bytes,
  and whether it carries a ``packfile`` section, i.e. a pack).
- :class:`LogTally`: the records of the loggers ``guts.replicate`` and
  ``guts.sync`` at INFO, for the fetches that failed and why, and where
  the successful ones fetched from.
"""

from __future__ import annotations

import logging
import random
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from guts.config import NodeConfig
from guts.crypto import KeyPair
from guts.errors import DecodeError
from guts.multiaddr import Multiaddr
from guts.node import Node, open_node
from guts.peer import PeerId
from guts.repo._git import git_env
from guts.repo.pktline import DataPacket, PktLineDecoder
from guts.repo.storage import Storage
from guts.transport import MemoryLink, MemoryNetwork, MemoryTransport

#: The first ``/memory`` port; node ``i`` listens on ``BASE_PORT + i``.
BASE_PORT = 1000

IDENT = "Sim Author <sim@example.com>"


# -- counting upload-pack responses --------------------------------------------


@dataclass
class Served:
    """Upload-pack responses one node served (since the last :meth:`clear`)."""

    responses: int = 0
    packs: int = 0
    bytes: int = 0
    #: Bytes of each response that carried a pack.
    pack_responses: list[int] = field(default_factory=list)

    def clear(self) -> None:
        self.responses = self.packs = self.bytes = 0
        self.pack_responses = []


class _Response:
    """One response as it streams: its bytes, and whether a ``packfile``
    section header went by (pkt-lines are read only up to it)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.pack = False
        self._decoder: PktLineDecoder | None = PktLineDecoder()
        self._header = True

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        decoder = self._decoder
        if decoder is None:
            return
        decoder.receive_data(data)
        try:
            while (packet := decoder.next_packet()) is not None:
                if not isinstance(packet, DataPacket):
                    self._header = True
                    continue
                if self._header and packet.payload.rstrip(b"\n") == b"packfile":
                    self.pack = True
                    self._decoder = None
                    return
                self._header = False
        except DecodeError:
            self._decoder = None


class _CountedStdout(trio.abc.ReceiveStream):
    def __init__(self, inner: trio.abc.ReceiveStream, response: _Response) -> None:
        self.inner = inner
        self.response = response

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = bytes(await self.inner.receive_some(max_bytes))
        self.response.feed(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CountedGit:
    """What the sync server uses of a :class:`~guts.repo._git.GitProcess`,
    its stdout counted."""

    def __init__(self, git: Any, response: _Response) -> None:
        self._git = git
        self.stdin = git.stdin
        self.stdout = _CountedStdout(git.stdout, response)
        self._response = response

    async def close_stdin(self) -> None:
        await self._git.close_stdin()

    async def read_stdout(self, max_output: int) -> bytes:
        data = bytes(await self._git.read_stdout(max_output))
        self._response.feed(data)
        return data


def count_uploads(storage: Storage, served: Served) -> None:
    """Wrap ``storage.upload_pack`` (the sync server's only way to git) so
    that every response it streams is added to ``served``."""
    original = storage.upload_pack

    @asynccontextmanager
    async def upload_pack(rid: str, *, idle_timeout: int = 60, timeout: float | None = None) -> AsyncIterator[Any]:
        response = _Response()
        try:
            async with original(rid, idle_timeout=idle_timeout, timeout=timeout) as git:
                yield _CountedGit(git, response)
        finally:
            served.responses += 1
            served.bytes += response.bytes
            if response.pack:
                served.packs += 1
                served.pack_responses.append(response.bytes)

    setattr(storage, "upload_pack", upload_pack)  # an instance attribute: this node only


# -- the log of fetches ----------------------------------------------------------

_PEER = re.compile(r"\b(12D3Koo|Qm)[1-9A-HJ-NP-Za-km-z]{20,}")
_RID = re.compile(r"\bb[a-z2-7]{50,}")
_PORT = re.compile(r"/memory/\d+")


def _plain(text: str) -> str:
    return _PORT.sub("/memory/<port>", _RID.sub("<rid>", _PEER.sub("<peer>", text)))


#: The node whose task logs: set in :func:`run_peer`, so every task of
#: the node (they all start under it) carries it.
NODE: ContextVar[int] = ContextVar("guts_sim_node", default=-1)


@dataclass(frozen=True, slots=True)
class LogLine:
    at: float
    node: int
    logger: str
    level: int
    template: str
    args: tuple[Any, ...]

    def text(self) -> str:
        try:
            return self.template % self.args
        except (TypeError, ValueError):
            return self.template


class LogTally(logging.Handler):
    """While installed (:meth:`installed`): keeps the records of
    ``guts.replicate`` and ``guts.sync`` at INFO, and counts the warnings
    of every other ``guts`` logger by logger (100 nodes' connection
    warnings would fill a terminal otherwise); :meth:`clear` starts over."""

    KEPT = ("guts.replicate", "guts.sync")

    def __init__(self, max_lines: int = 200_000) -> None:
        super().__init__(logging.INFO)
        self.lines: list[LogLine] = []
        self.warnings: Counter[str] = Counter()
        self.max_lines = max_lines

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(self.KEPT):
            self.warnings[record.name] += 1
            return
        if len(self.lines) >= self.max_lines:
            return
        try:
            at = trio.current_time()
        except RuntimeError:
            at = float("nan")
        args = record.args if isinstance(record.args, tuple) else ()
        self.lines.append(LogLine(at, NODE.get(), record.name, record.levelno, str(record.msg), args))

    def clear(self) -> None:
        self.lines = []
        self.warnings = Counter()

    @asynccontextmanager
    async def installed(self) -> AsyncIterator[LogTally]:
        root = logging.getLogger("guts")
        saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in self.KEPT]
        for logger, _ in saved:
            logger.setLevel(logging.INFO)
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)
            for logger, level in saved:
                logger.setLevel(level)


@dataclass
class FetchLog:
    """What the replicators said about their announced fetches."""

    #: Successful fetches, by the node they fetched from (its index).
    fetched_from: Counter[int] = field(default_factory=Counter)
    #: Failed attempts (one peer tried for one fetch), by reason.
    failed: Counter[str] = field(default_factory=Counter)
    #: Failed attempts, by the peer tried (its index, -1 if unknown).
    failed_at: Counter[int] = field(default_factory=Counter)
    #: Other lines of ``guts.replicate`` and warnings of ``guts.sync``, by text.
    other: Counter[str] = field(default_factory=Counter)
    #: Per node (its index): each attempt as (time, peer index, outcome),
    #: outcome "ok", "behind" or "failed (<error type>)".
    attempts: dict[int, list[tuple[float, int, str]]] = field(default_factory=dict)


# The replicator's lines about one fetch attempt (older wordings too).
_FETCHED = re.compile(r"fetched (the announced state )?from %s$")
_FAILED = re.compile(r"fetching (the announced state )?from %s failed: %s$")
_BEHIND = re.compile(r"%s did not have every announced statement yet$")


def read_log(lines: Sequence[LogLine], index_of: dict[PeerId, int], start: float = 0.0) -> FetchLog:
    """Sort the lines of one run: fetch attempts (their peers as node
    indices, their times from ``start``), and the rest by text."""
    out = FetchLog()
    for line in lines:
        template, args = line.template, line.args
        attempt = None
        if _FETCHED.search(template) and len(args) == 2:
            attempt = "ok"
            out.fetched_from[index_of.get(args[1], -1)] += 1
        elif _FAILED.search(template) and len(args) == 3:
            exc = args[2]
            attempt = f"failed ({type(exc).__name__})"
            out.failed[f"{type(exc).__name__}: {_plain(str(exc))[:120]}"] += 1
            out.failed_at[index_of.get(args[1], -1)] += 1
        elif _BEHIND.search(template) and len(args) == 2:
            attempt = "behind"
            out.failed["the peer answered without the announced statement (it had not fetched it yet)"] += 1
            out.failed_at[index_of.get(args[1], -1)] += 1
        elif line.logger == "guts.replicate" or line.level >= logging.WARNING:
            out.other[f"{line.logger}: {_plain(line.text())[:140]}"] += 1
        if attempt is not None:
            out.attempts.setdefault(line.node, []).append((line.at - start, index_of.get(args[1], -1), attempt))
    return out


# -- the nodes ---------------------------------------------------------------------


@dataclass
class Peer:
    index: int
    node: Node
    keypair: KeyPair
    scope: trio.CancelScope
    served: Served
    alive: bool = True
    #: Why the node stopped by itself (an exception out of it), if it
    #: did, and when (trio's clock).
    crashed: str | None = None
    crashed_at: float = 0.0

    @property
    def addr(self) -> Multiaddr:
        return self.node.addrs[0]


def listen_addr(index: int) -> Multiaddr:
    return Multiaddr.parse(f"/memory/{BASE_PORT + index}")


def set_links(network: MemoryNetwork, count: int, delay: tuple[float, float], rng: random.Random) -> None:
    """A one-way delay drawn once per pair of the ``count`` nodes' addresses."""
    for a in range(count):
        for b in range(a + 1, count):
            network.set_link(listen_addr(a), listen_addr(b), MemoryLink(delay=rng.uniform(*delay)))


async def run_peer(
    index: int,
    network: MemoryNetwork,
    home: Path,
    keypair: KeyPair,
    bootstrap: tuple[Multiaddr, ...],
    max_connections: int,
    *,
    task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One node until its scope is cancelled (as a killed process: its
    connections close, its fetches and uploads stop). A node that stops
    with an error is marked dead and ``crashed``, and the run goes on."""
    config = NodeConfig(
        home=home, listen=(listen_addr(index),), bootstrap=bootstrap, control=False, dht_mode="server",
        max_connections=max_connections,
    )  # fmt: skip
    peer: Peer | None = None
    NODE.set(index)
    with trio.CancelScope() as scope:
        try:
            async with open_node(config, keypair=keypair, transports=[MemoryTransport(network)]) as node:
                assert node.repos is not None
                served = Served()
                count_uploads(node.repos.storage, served)
                peer = Peer(index, node, keypair, scope, served)
                task_status.started(peer)
                await trio.sleep_forever()
        except Exception as exc:  # noqa: BLE001 - measured, not hidden: the report lists it
            if peer is None:
                raise
            peer.alive = False
            peer.crashed = _crash(exc)
            peer.crashed_at = trio.current_time()


def _crash(exc: BaseException) -> str:
    """The innermost first error of ``exc``, as ``Type: message``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    where = ""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    guts_frames = [f for f in frames if "/guts/" in f.co_filename]
    if guts_frames:
        top = guts_frames[0]
        where = f" (from {Path(top.co_filename).parent.name}/{Path(top.co_filename).name} {top.co_name})"
    return f"{type(exc).__name__}: {_plain(str(exc))[:120]}{where}"


# -- the repository's source ------------------------------------------------------


def _git(args: list[str], git_dir: Path, data: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args], input=data, capture_output=True, env=git_env({"GIT_DIR": str(git_dir)}), timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout.decode().strip()


def _commit_stream(number: int, parent: str | None) -> bytes:
    """A ``git fast-import`` stream of one commit on ``main`` (mark
    ``number + 1``) changing one file; ``parent`` is an oid or a mark."""
    when = 1_700_000_000 + 60 * number
    message = f"commit {number}\n".encode()
    content = f"line {number}\n".encode() * (1 + number % 7)
    parts = [
        f"commit refs/heads/main\nmark :{number + 1}\n".encode(),
        f"author {IDENT} {when} +0000\ncommitter {IDENT} {when} +0000\n".encode(),
        b"data %d\n%s\n" % (len(message), message),
    ]
    if parent is not None:
        parts.append(f"from {parent}\n".encode())
    parts.append(f"M 100644 inline src/file{number % 10}.txt\n".encode())
    parts.append(b"data %d\n%s\n" % (len(content), content))
    return b"".join(parts)


def make_source(path: Path, commits: int) -> str:
    """A bare repository with ``commits`` small commits on ``main``; its tip."""
    _git(["init", "--bare", "--quiet", "--initial-branch=main", str(path)], path)
    stream = b"".join(_commit_stream(n, None if n == 0 else f":{n}") for n in range(commits))
    _git(["fast-import", "--quiet", "--done"], path, stream + b"done\n")
    return _git(["rev-parse", "refs/heads/main"], path)


def add_commit(path: Path, number: int) -> str:
    """One more commit on ``main`` of the source; its oid. (Blocking: run
    it in a thread.)"""
    tip = _git(["rev-parse", "refs/heads/main"], path)
    _git(["fast-import", "--quiet", "--done"], path, _commit_stream(number, tip) + b"done\n")
    return _git(["rev-parse", "refs/heads/main"], path)
