"""Run the control API on the node's control socket.

Theory of operation
-------------------
Every local client of the socket is served in its own task, at most
:data:`MAX_CLIENTS` at once. A client waiting to send its next request is
*idle* (:func:`~guts.control._http.serve_http` says when); one idle for
:data:`~guts.control._http.IDLE_TIMEOUT` seconds is dropped anyway. When
the table is full, the client that has been idle longest is dropped at
once to make room for the new one, so that ``guts status`` gets through
however many clients sit on the socket doing nothing (70 of them used to
make it time out for a minute). Only when every client is busy with a
request is a new one refused, with a 503.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import trio

from guts.control._api import ControlApi
from guts.control._http import serve_http
from guts.control._socket import ControlSocket
from guts.ratelog import RateLimitedLog

__all__ = ["serve_control", "MAX_CLIENTS"]

log = logging.getLogger("guts.control")

#: Control connections served at once.
MAX_CLIENTS = 64
#: Seconds the refusal of a client (every slot busy) may take to write.
_REFUSAL_TIMEOUT = 1.0


class _Client:
    """One connection's slot: how to drop it, and since when it is idle."""

    __slots__ = ("scope", "idle_since")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.idle_since: float | None = None

    def idle(self, idle: bool) -> None:
        self.idle_since = trio.current_time() if idle else None


class _Clients:
    """The clients being served, bounded; makes room by dropping the
    longest idle one."""

    def __init__(self, max_clients: int) -> None:
        self.max_clients = max_clients
        self._clients: set[_Client] = set()
        #: Clients dropped to make room, over the server's life.
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._clients)

    def admit(self) -> _Client | None:
        """A slot for a new client, dropping the longest idle one when
        full; ``None`` when every client is busy."""
        if len(self._clients) >= self.max_clients:
            idle = [c for c in self._clients if c.idle_since is not None]
            if not idle:
                return None
            oldest = min(idle, key=lambda c: c.idle_since or 0.0)
            oldest.scope.cancel()
            self._clients.discard(oldest)
            self.evicted += 1
        client = _Client()
        self._clients.add(client)
        return client

    def remove(self, client: _Client) -> None:
        self._clients.discard(client)


async def _refuse(stream: trio.SocketStream) -> None:
    body = json.dumps({"error": f"the node serves {MAX_CLIENTS} control clients, all busy: retry", "kind": "busy"})
    head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with trio.move_on_after(_REFUSAL_TIMEOUT):
        try:
            await stream.send_all((head + body).encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


async def serve_control(
    api: ControlApi,
    control: ControlSocket,
    *,
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``api`` on a bound control socket until cancelled.

    Reports started (with the socket's path); closes the socket and
    removes its file on the way out, even if never started.
    """
    clients = _Clients(MAX_CLIENTS)
    bounded_log = RateLimitedLog(log, interval=60.0, max_keys=16)

    async def serve_one(stream: trio.SocketStream, client: _Client) -> None:
        try:
            with client.scope:
                await serve_http(stream, api, api.body_limit, idle=client.idle)
        finally:
            clients.remove(client)
            await trio.aclose_forcefully(stream)

    try:
        async with trio.open_nursery() as nursery:
            task_status.started(control.path)
            log.info("control API on %s", control.path)
            while True:
                try:
                    stream = await control.listener.accept()
                except OSError as exc:  # out of file descriptors, say: back off
                    log.warning("control API: accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                evicted = clients.evicted
                client = clients.admit()
                if client is None:
                    bounded_log.warning("control", "busy", "control API: %d clients busy, one more refused", MAX_CLIENTS)
                    nursery.start_soon(_refuse, stream)
                    continue
                if clients.evicted > evicted:
                    bounded_log.info(
                        "control", "evicted", "control API: %d clients at once, the longest idle one dropped", MAX_CLIENTS
                    )
                nursery.start_soon(serve_one, stream, client)
    finally:
        with trio.CancelScope(shield=True):
            await control.aclose()
