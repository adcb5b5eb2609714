"""Run the control API on the node's control socket."""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from guts.control._api import ControlApi
from guts.control._http import serve_http
from guts.control._socket import ControlSocket

__all__ = ["serve_control", "MAX_CLIENTS"]

log = logging.getLogger("guts.control")

#: Control connections served at once; more wait in the listen backlog.
MAX_CLIENTS = 64


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
    limit = trio.CapacityLimiter(MAX_CLIENTS)

    async def serve_one(stream: trio.SocketStream) -> None:
        async with limit:
            await serve_http(stream, api, api.body_limit)

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
                nursery.start_soon(serve_one, stream)
    finally:
        with trio.CancelScope(shield=True):
            await control.aclose()
