"""HTTP/1.1 over a trio stream, both ends, on h11.

h11 is the protocol engine (the sans-IO HTTP/1.1 library of python-hyper,
which wsproto already depends on); this module is the thin trio driver
around it, for the node's control API: a server loop that reads one
bounded request at a time and hands it to the application, and a client
that sends one request and reads a JSON or JSON-lines answer.

Everything is bounded: request heads (h11's ``max_incomplete_event_size``),
bodies (:data:`MAX_BODY`), and the time a client may take to send its
request (:data:`REQUEST_TIMEOUT`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

from guts.errors import GutsError, InputError

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "JsonLines",
    "MAX_BODY",
    "serve_http",
    "http_request",
]

log = logging.getLogger("guts.control")

#: Largest request or response body accepted: a gossip message of the
#: largest size (1 MiB) as hex in JSON, with room to spare.
MAX_BODY = 4 * 1024 * 1024
#: Largest request or response head (h11 raises above it).
MAX_HEAD = 16 * 1024
#: Seconds a client has to deliver a whole request once it started one.
REQUEST_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection is kept.
IDLE_TIMEOUT = 60.0
_READ = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as the application sees it."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty).

        Raises:
            ValueError: the body is not a JSON object.
        """
        if not self.body:
            return {}
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise InputError("the request body must be a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class JsonLines:
    """A streamed answer: each item the iterator yields is sent as one JSON
    line (``application/x-ndjson``, chunked) until it ends or the client
    goes away."""

    items: AsyncIterator[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: dict[str, Any] | JsonLines = field(default_factory=dict)


App = Callable[[HttpRequest], Awaitable[HttpResponse]]


def _headers(content_type: str, length: int | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", content_type), ("Server", "guts")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


async def serve_http(stream: trio.abc.Stream, app: App) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until the client is done.

    A malformed or oversized request gets a 400 or 413 answer and the
    connection is closed; the application's own errors are its business
    (it returns a response for each). Never raises for what the client does.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        while True:
            request = None
            with trio.move_on_after(IDLE_TIMEOUT):
                request = await _read_request(stream, conn)
            if request is None:
                return
            response = await app(request)
            await _send_response(stream, conn, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except _BadRequest as exc:
        log.info("control API: bad request: %s", exc)
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = json.dumps({"error": str(exc), "kind": "bad_request"}).encode()
            try:
                await stream.send_all(
                    conn.send(h11.Response(status_code=exc.status, headers=_headers("application/json", len(body))))
                    + conn.send(h11.Data(data=body))
                    + conn.send(h11.EndOfMessage())
                )
            except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


class _BadRequest(GutsError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def _next_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _BadRequest(str(exc), getattr(exc, "error_status_hint", 400)) from None
        if event is not h11.NEED_DATA:
            return event
        data = await stream.receive_some(_READ)
        try:
            conn.receive_data(bytes(data))
        except h11.RemoteProtocolError as exc:
            raise _BadRequest(str(exc)) from None


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> HttpRequest | None:
    """The next whole request, or ``None`` once the client closed."""
    event = await _next_event(stream, conn)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise _BadRequest(f"unexpected {type(event).__name__}")
    with trio.move_on_after(REQUEST_TIMEOUT) as scope:
        body = bytearray()
        while True:
            part = await _next_event(stream, conn)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY:
                    raise _BadRequest(f"request body over {MAX_BODY} bytes", 413)
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise _BadRequest(f"unexpected {type(part).__name__} in a request body")
    if scope.cancelled_caught:
        raise _BadRequest("request not completed in time", 408)
    target = urlsplit(event.target.decode("ascii", "replace"))
    return HttpRequest(
        method=event.method.decode("ascii", "replace"),
        path=target.path,
        query=dict(parse_qsl(target.query)),
        body=bytes(body),
    )


async def _send_response(stream: trio.abc.Stream, conn: h11.Connection, response: HttpResponse) -> None:
    if isinstance(response.body, JsonLines):
        await _send_lines(stream, conn, response.status, response.body.items)
        return
    body = json.dumps(response.body).encode()
    await stream.send_all(
        conn.send(h11.Response(status_code=response.status, headers=_headers("application/json", len(body))))
        + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage())
    )


async def _send_lines(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, items: AsyncIterator[dict[str, Any]]
) -> None:
    """Stream ``items`` as JSON lines until they end or the client hangs up.

    The client has sent its whole request, so anything it does on the
    socket now (normally: closing it) ends the answer at once, even while
    no item comes for a long time.
    """
    try:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=_headers("application/x-ndjson", None))))
        async with trio.open_nursery() as nursery:

            async def watch_client() -> None:
                await stream.receive_some(_READ)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_client)
            async for item in items:
                await stream.send_all(conn.send(h11.Data(data=json.dumps(item).encode() + b"\n")))
            nursery.cancel_scope.cancel()
        await stream.send_all(conn.send(h11.EndOfMessage()))
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True):
                await aclose()


async def http_request(
    stream: trio.abc.Stream,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> tuple[int, AsyncIterator[dict[str, Any]]]:
    """Send one request on ``stream``; return the status and the answer's
    JSON objects (one for a JSON answer, one per line for JSON lines).

    The iterator reads the answer as it arrives, so a streamed answer can
    be consumed until the caller stops; it closes ``stream`` at its end.

    Raises:
        ValueError: the answer is not HTTP or not JSON.
        trio.BrokenResourceError: the server went away.
    """
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    payload = json.dumps(body).encode() if body is not None else b""
    headers = [("Host", "guts"), ("Content-Length", str(len(payload))), ("Connection", "close")]
    if body is not None:
        headers.append(("Content-Type", "application/json"))
    await stream.send_all(
        conn.send(h11.Request(method=method, target=path, headers=headers))
        + conn.send(h11.Data(data=payload))
        + conn.send(h11.EndOfMessage())
    )
    response = await _client_event(stream, conn)
    if not isinstance(response, h11.Response):
        raise ValueError(f"unexpected answer from the node: {response!r}")
    content_type = dict(response.headers).get(b"content-type", b"").decode()
    return response.status_code, _client_body(stream, conn, streamed="ndjson" in content_type)


async def _client_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ValueError(f"bad HTTP from the node: {exc}") from None
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(bytes(await stream.receive_some(_READ)))


async def _client_body(stream: trio.abc.Stream, conn: h11.Connection, *, streamed: bool) -> AsyncIterator[dict[str, Any]]:
    buffer = bytearray()
    try:
        while True:
            event = await _client_event(stream, conn)
            if isinstance(event, h11.Data):
                buffer += event.data
                if streamed:
                    while b"\n" in buffer:
                        line, _, rest = bytes(buffer).partition(b"\n")
                        buffer[:] = rest
                        if line.strip():
                            yield _decode(line)
                if len(buffer) > MAX_BODY:
                    raise ValueError(f"answer from the node over {MAX_BODY} bytes")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if buffer.strip():
            yield _decode(bytes(buffer))
    finally:
        await trio.aclose_forcefully(stream)


def _decode(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise ValueError("the node answered with something that is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("the node answered with JSON that is not an object")
    return value
