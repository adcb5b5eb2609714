"""Drive a real js-libp2p peer (``interop/peer.mjs``) from trio tests.

The js peer is a node subprocess speaking JSON lines: it prints one
``{"event": "ready", ...}`` line, then answers each command written to its
stdin with one ``{"id": ..., "ok": ...}`` line, and reports what happens to it
(``peer:connect``, ``peer:identify``, ``echo:served``, ...) as
``{"event": ...}`` lines. :class:`JsPeer` owns the process and a reader task,
matches replies to calls and queues events; the command protocol itself is
described in ``interop/README.md``.

Usage::

    async with JsPeer.start() as js:
        await js.call("dial", addr=other.addr("tcp"))
        await js.next_event("peer:identify", peer_id=other.peer_id)
        rtts = (await js.call("ping", peer=other.peer_id, count=3))["rtts_ms"]
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

__all__ = [
    "DEFAULT_LISTEN",
    "ECHO_PROTOCOL",
    "INTEROP_DIR",
    "PEER_SCRIPT",
    "QUIC_LISTEN",
    "JsCommandError",
    "JsPeer",
    "JsPeerError",
    "ensure_node_modules",
    "missing_node_modules",
    "node_available",
    "node_executable",
    "node_version",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEROP_DIR = REPO_ROOT / "interop"
PEER_SCRIPT = INTEROP_DIR / "peer.mjs"
ECHO_PROTOCOL = "/guts/echo/1.0.0"
DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws")
QUIC_LISTEN = "/ip4/127.0.0.1/udp/0/quic-v1"
MIN_NODE = (20,)
# extra time the driver waits beyond a command's own (js side) deadline, so
# that js's reply -- which says *what* timed out -- arrives before ours fires
_REPLY_GRACE = 5.0


class JsPeerError(Exception):
    """The js peer failed to start, died, timed out or could not be driven."""


class JsCommandError(JsPeerError):
    """The js peer answered a command with ``ok: false``.

    Attributes:
        cmd: the command name.
        error: js's error text (``"Name: message"``).
        reply: the whole reply line, decoded.
    """

    def __init__(self, message: str, cmd: str, error: str, reply: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.cmd = cmd
        self.error = error
        self.reply = dict(reply)


# ---------------------------------------------------------------- environment


def node_executable() -> str | None:
    """Path of the node binary (``$GUTS_NODE`` or ``node`` on PATH), or None."""
    return shutil.which(os.environ.get("GUTS_NODE", "node"))


@functools.cache
def node_version() -> tuple[int, ...] | None:
    """Version of :func:`node_executable` as a tuple, or None if unusable."""
    node = node_executable()
    if node is None:
        return None
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        return tuple(int(part) for part in out.lstrip("v").split("."))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def node_available() -> bool:
    """True if a node new enough for js-libp2p 3 (>= 20) is installed."""
    version = node_version()
    return version is not None and version >= MIN_NODE


def missing_node_modules() -> list[str]:
    """Pinned dependencies of interop/package.json not installed as pinned.

    Returns ``name@wanted (found: x)`` strings; empty when ``npm ci`` has run.
    """
    manifest = json.loads((INTEROP_DIR / "package.json").read_text())
    problems = []
    for name, wanted in sorted(manifest.get("dependencies", {}).items()):
        installed = INTEROP_DIR / "node_modules" / name / "package.json"
        try:
            found = json.loads(installed.read_text()).get("version")
        except (OSError, ValueError):
            found = None
        if found != wanted:
            problems.append(f"{name}@{wanted} (found: {found or 'nothing'})")
    return problems


def ensure_node_modules() -> None:
    """Raise :class:`JsPeerError` unless interop/node_modules matches the pins."""
    problems = missing_node_modules()
    if problems:
        raise JsPeerError(
            f"{INTEROP_DIR / 'node_modules'} is missing or stale: "
            + ", ".join(problems)
            + " -- run `npm ci --prefix interop` (`make test` does this)"
        )


def _node_flags() -> list[str]:
    # node 20 has the WebSocket global (needed to dial /ws) only behind a flag
    version = node_version()
    if version is not None and version < (22,):
        return ["--experimental-websocket"]
    return []


# ---------------------------------------------------------------- the peer


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None


class JsPeer:
    """A running js-libp2p peer. Create it with :meth:`JsPeer.start`.

    Attributes:
        peer_id: the js peer's id (base58 ``12D3KooW...``).
        addrs: its listen addresses, each ending in ``/p2p/<peer_id>``.
        protocols: the protocols it handles, from the ready line.
        events: every event line received so far, in order (ready included).
        stray_lines: stdout lines that were not JSON (should stay empty).
        stderr_path: where node's stderr goes.
    """

    def __init__(self, process: trio.Process, stderr_path: Path, argv: Sequence[str]) -> None:
        self._process = process
        self.stderr_path = stderr_path
        self.argv = list(argv)
        self.peer_id = ""
        self.addrs: list[str] = []
        self.protocols: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.stray_lines: list[str] = []
        self._queue: list[dict[str, Any]] = []  # events not yet taken by next_event
        self._event_arrived = trio.Event()
        self._ready = trio.Event()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._send_lock = trio.Lock()
        self._exited = False

    # -------------------------------------------------------------- lifecycle

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        listen: Sequence[str] | None = None,
        seed: bytes | str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> AsyncIterator[JsPeer]:
        """Launch ``interop/peer.mjs`` and yield once it printed its ready line.

        Args:
            listen: multiaddrs to listen on; default one TCP and one WebSocket
                address on 127.0.0.1 with OS-chosen ports.
            seed: 32-byte Ed25519 seed (bytes or 64 hex digits) for a
                deterministic peer id; random identity when None.
            args: extra command-line arguments for peer.mjs.
            env: extra environment variables (``DEBUG=libp2p:*`` logs to stderr).
            ready_timeout: seconds to wait for the ready line.
            stop_timeout: seconds to wait for a clean exit before killing.

        On exit the peer is sent ``stop`` and waited for, then killed if it
        lingers past ``stop_timeout``.
        """
        node = node_executable()
        if node is None:
            raise JsPeerError("node not found on PATH (set $GUTS_NODE to override)")
        ensure_node_modules()
        argv = [node, *_node_flags(), str(PEER_SCRIPT)]
        for addr in listen if listen is not None else DEFAULT_LISTEN:
            argv += ["--listen", addr]
        if seed is not None:
            seed_hex = seed.hex() if isinstance(seed, bytes) else seed
            if len(seed_hex) != 64:
                raise ValueError("seed must be 32 bytes (64 hex digits)")
            argv += ["--seed", seed_hex]
        argv += list(args)

        fd, name = tempfile.mkstemp(prefix="jspeer-", suffix=".stderr.log")
        stderr_path = Path(name)
        clean = body_ok = False
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=fd,
                cwd=str(INTEROP_DIR),
                env={**os.environ, **(env or {})},
            )
        finally:
            os.close(fd)
        peer = cls(process, stderr_path, argv)
        try:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(peer._read_stdout)
                    try:
                        await peer._wait_ready(ready_timeout)
                        yield peer
                        body_ok = True
                    finally:
                        await peer._shutdown(stop_timeout)
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # the nursery is an implementation detail: let the caller see
                # its own exception (an assertion, a JsPeerError) unwrapped
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
            clean = body_ok and peer.returncode == 0
        finally:
            if process.returncode is None:
                with trio.CancelScope(shield=True):
                    process.kill()
                    await process.wait()
            if clean and not os.environ.get("GUTS_JSPEER_KEEP_LOGS"):
                stderr_path.unlink(missing_ok=True)

    async def _wait_ready(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            while not self._ready.is_set() and not self._exited:
                await self._wait_for_line()
        if not self._ready.is_set():
            why = "exited" if self._exited else f"printed no ready line within {timeout} s"
            raise JsPeerError(
                f"js peer {why} (returncode {self._process.returncode})"
                f"\n  argv: {' '.join(self.argv)}{self._stderr_block()}"
            )

    async def _shutdown(self, timeout: float) -> None:
        with trio.CancelScope(shield=True):
            if not self._exited and self._process.returncode is None:
                try:
                    await self._send({"id": next(self._ids), "cmd": "stop"})
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            with trio.move_on_after(timeout):
                await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
            if self._process.stdin is not None:
                await self._process.stdin.aclose()

    @property
    def returncode(self) -> int | None:
        """node's exit status, or None while it runs."""
        return self._process.returncode

    # -------------------------------------------------------------- I/O

    async def _send(self, obj: Mapping[str, Any]) -> None:
        assert self._process.stdin is not None
        data = (json.dumps(obj) + "\n").encode()
        async with self._send_lock:
            await self._process.stdin.send_all(data)

    async def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        buf = bytearray()
        try:
            async for chunk in self._process.stdout:
                buf += chunk
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    self._dispatch(bytes(buf[start:end]))
                    start = end + 1
                del buf[:start]
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            if buf.strip():
                self._dispatch(bytes(buf))
            self._exited = True
            for pending in self._pending.values():
                pending.done.set()
            self._wake()

    def _dispatch(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            return
        try:
            msg = json.loads(line)
        except ValueError:
            self.stray_lines.append(line)
            return
        if not isinstance(msg, dict):
            self.stray_lines.append(line)
        elif "event" in msg:
            self.events.append(msg)
            if msg["event"] == "ready" and not self._ready.is_set():
                self.peer_id = msg["peer_id"]
                self.addrs = list(msg["addrs"])
                self.protocols = list(msg["protocols"])
                self._ready.set()
            else:
                self._queue.append(msg)
            self._wake()
        elif "id" in msg and msg["id"] in self._pending:
            pending = self._pending[msg["id"]]
            pending.reply = msg
            pending.done.set()
        else:
            self.stray_lines.append(line)

    def _wake(self) -> None:
        self._event_arrived.set()
        self._event_arrived = trio.Event()

    async def _wait_for_line(self) -> None:
        await self._event_arrived.wait()

    # -------------------------------------------------------------- API

    def addr(self, transport: str = "tcp") -> str:
        """The first listen address for ``"tcp"`` (plain), ``"ws"`` or ``"quic"``."""
        for a in self.addrs:
            is_ws = "/ws/" in a or a.endswith("/ws")
            is_quic = "/quic-v1/" in a or a.endswith("/quic-v1")
            kind = "ws" if is_ws else "quic" if is_quic else "tcp"
            if kind == transport:
                return a
        raise JsPeerError(f"js peer has no {transport} address among {self.addrs}")

    async def call(self, cmd: str, /, *, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Run one command and return its reply (``id`` and ``ok`` removed).

        ``timeout`` (seconds) is also passed to js as ``timeout_ms`` unless
        given explicitly, so js abandons the work and says what was pending.

        Raises:
            JsCommandError: js answered ``ok: false``.
            JsPeerError: no answer in time, or the process died.
        """
        if self._exited:
            raise JsPeerError(f"js peer has exited; cannot run {cmd!r}{self._stderr_block()}")
        request_id = next(self._ids)
        args.setdefault("timeout_ms", int(timeout * 1000))
        pending = self._pending[request_id] = _Pending()
        try:
            await self._send({"id": request_id, "cmd": cmd, **args})
            with trio.move_on_after(timeout + _REPLY_GRACE):
                await pending.done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise JsPeerError(f"js peer stdin closed while sending {cmd!r}: {exc}{self._stderr_block()}") from exc
        finally:
            del self._pending[request_id]
        reply = pending.reply
        if reply is None:
            if self._exited:
                why = f"exited (returncode {self._process.returncode}) before answering"
            else:
                why = f"did not answer within {timeout + _REPLY_GRACE} s"
            raise JsPeerError(f"js peer {why} {cmd!r} {args}{self._stderr_block()}")
        if not reply.get("ok"):
            error = str(reply.get("error"))
            raise JsCommandError(
                f"js {cmd!r} {args} failed: {error}{self._stderr_block()}", cmd, error, reply
            )
        return {k: v for k, v in reply.items() if k not in ("id", "ok")}

    async def next_event(self, name: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Take the oldest not-yet-taken event called ``name`` whose fields
        equal ``match`` (e.g. ``peer_id=...``), waiting up to ``timeout`` s.

        Events stay queued until taken, so an event that arrived before the
        call is found too. :attr:`events` keeps the full history.
        """
        with trio.move_on_after(timeout):
            while True:
                for i, ev in enumerate(self._queue):
                    if ev["event"] == name and all(ev.get(k) == v for k, v in match.items()):
                        return self._queue.pop(i)
                if self._exited:
                    break
                await self._wait_for_line()
        state = f"exited (returncode {self._process.returncode})" if self._exited else "running"
        raise JsPeerError(
            f"no {name!r} event matching {match} within {timeout} s (js peer {state});"
            f" queued events: {[e['event'] for e in self._queue]}{self._stderr_block()}"
        )

    def drop_events(self) -> None:
        """Forget queued events (the history in :attr:`events` is kept)."""
        self._queue.clear()

    def stderr_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines node wrote to stderr."""
        try:
            with self.stderr_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _stderr_block(self) -> str:
        tail = self.stderr_tail()
        if not tail:
            return f"\n  (js stderr empty: {self.stderr_path})"
        indented = "\n".join("    " + line for line in tail.splitlines())
        return f"\n  js stderr tail ({self.stderr_path}):\n{indented}"

    def __repr__(self) -> str:
        return f"<JsPeer {self.peer_id or '?'} pid={self._process.pid} rc={self.returncode}>"
