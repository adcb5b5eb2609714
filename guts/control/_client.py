"""The client side: what the ``guts`` commands use to drive a running node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from guts.control._http import http_request
from guts.control._socket import connect_control
from guts.errors import GutsError

__all__ = ["ControlClient", "ControlError"]


class ControlError(GutsError):
    """The node answered a control request with an error.

    Attributes:
        status: the HTTP status.
        kind: ``bad_request``, ``not_found``, ``unavailable``, ``timeout``,
            ``network`` or ``internal``.
    """

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class ControlClient:
    """Talks to the node whose control socket is at ``path``.

    Each call opens its own connection, so calls may run concurrently.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request, one JSON answer.

        Raises:
            NodeNotRunning: nothing listens on the socket.
            ControlError: the node answered with an error.
        """
        stream = await connect_control(self.path)
        status, items = await http_request(stream, method, path, body)
        async with aclosing(items):  # type: ignore[type-var]
            answer = {}
            async for item in items:
                answer = item
        _check(status, answer)
        return answer

    async def stream(self, method: str, path: str, body: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """One request, a stream of JSON objects until the node ends it."""
        stream = await connect_control(self.path)
        status, items = await http_request(stream, method, path, body)
        async with aclosing(items):  # type: ignore[type-var]
            if status != 200:
                answer = {}
                async for item in items:
                    answer = item
                _check(status, answer)
            async for item in items:
                yield item


def _check(status: int, answer: dict[str, Any]) -> None:
    if status != 200:
        raise ControlError(status, str(answer.get("kind", "internal")), str(answer.get("error", f"HTTP {status}")))
