"""The client side: what the ``guts`` commands use to drive a running node."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from guts.control._common import MAX_BODY, ControlError, check_answer, decode_object
from guts.control._http import http_raw_request, http_request
from guts.control._socket import connect_control

__all__ = ["ControlClient", "ControlError"]  # ControlError: from _common, re-exported


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
        check_answer(status, answer)
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
                check_answer(status, answer)
            async for item in items:
                yield item


    async def raw(self, method: str, path: str, body: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """One request with a raw body (whole, or streamed as ``body``
        yields it); the answer's raw bytes as they arrive.

        Raises:
            NodeNotRunning: nothing listens on the socket.
            ControlError: the node answered with an error (before any byte).
            ValueError: the answer was cut before its end.
        """
        stream = await connect_control(self.path)
        status, _, chunks = await http_raw_request(stream, method, path, body)
        async with aclosing(chunks):  # type: ignore[type-var]
            if status != 200:
                check_answer(status, await _json_answer(chunks))
            async for chunk in chunks:
                yield chunk

    async def send(self, method: str, path: str, body: bytes | AsyncIterable[bytes]) -> dict[str, Any]:
        """One request with a raw body, one JSON answer.

        Raises:
            NodeNotRunning: nothing listens on the socket.
            ControlError: the node answered with an error.
        """
        stream = await connect_control(self.path)
        status, _, chunks = await http_raw_request(stream, method, path, body)
        async with aclosing(chunks):  # type: ignore[type-var]
            answer = await _json_answer(chunks)
        check_answer(status, answer)
        return answer


async def _json_answer(chunks: AsyncIterator[bytes]) -> dict[str, Any]:
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > MAX_BODY:
            raise ValueError(f"answer from the node over {MAX_BODY} bytes")
    return decode_object(bytes(data)) if data.strip() else {}
