"""HTTP/1.1 over a trio stream, both ends, on h11.

h11 is the protocol engine (the sans-IO HTTP/1.1 library of python-hyper,
which wsproto already depends on); this module is the thin trio driver
around it, for the node's control API: a server loop that reads one
bounded request at a time and hands it to the application, and a client
that sends one request and reads a JSON or JSON-lines answer.

Everything is bounded: request heads (h11's ``max_incomplete_event_size``),
bodies (:data:`MAX_BODY`), the nesting of a JSON body
(:data:`MAX_JSON_DEPTH`: ``json`` recurses, and 100,000 brackets made it
fail with a ``RecursionError``), the time a client may take to send its
request (:data:`REQUEST_TIMEOUT`), and the time a connection may stay
without starting one (:data:`IDLE_TIMEOUT`). While waiting for a request
the connection is *idle*: the server (:mod:`guts.control._server`) may
then drop it to make room for another client.

Raw streams, for git's packs. A route may take a larger body than
:data:`MAX_BODY` (its :class:`BodyLimit`), whole or as a stream of chunks
it reads itself (:attr:`HttpRequest.chunks`): a pushed pack goes through
the node to ``git index-pack`` a chunk at a time, and only an idle limit
(:data:`STREAM_IDLE_TIMEOUT` between chunks) bounds its time. A route may
answer :class:`RawStream`, bytes sent chunked as
``application/octet-stream`` as they come (``git upload-pack``'s
response). A raw answer that fails midway ends the connection without the
chunked terminator, so the client sees a cut body, never a short one that
looks whole.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

from guts.control._common import MAX_BODY, MAX_HEAD, decode_object
from guts.errors import GutsError, InputError

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "BodyLimit",
    "JsonLines",
    "MAX_BODY",
    "RawStream",
    "serve_http",
    "http_raw_request",
    "http_request",
]

log = logging.getLogger("guts.control")

#: Seconds a client has to deliver a whole request once it started one.
REQUEST_TIMEOUT = 10.0
#: Seconds a connection is kept while it sends no request (before its
#: first one, or between two): local clients send theirs at once.
IDLE_TIMEOUT = 5.0
#: Deepest nesting of arrays and objects accepted in a JSON body.
MAX_JSON_DEPTH = 64
#: Seconds a streamed body (either way) may go without a byte.
STREAM_IDLE_TIMEOUT = 120.0
_READ = 64 * 1024
#: The content type of raw bodies.
OCTETS = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """How a route takes its request body.

    Attributes:
        max_bytes: the largest body accepted (413 above it).
        streamed: hand the body to the route as :attr:`HttpRequest.chunks`
            rather than read it whole first.
    """

    max_bytes: int = MAX_BODY
    streamed: bool = False


DEFAULT_LIMIT = BodyLimit()


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as the application sees it."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    #: The body as it arrives, for a route whose :class:`BodyLimit` streams
    #: it (``body`` is then empty); bounded by that limit.
    chunks: AsyncIterator[bytes] | None = None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty).

        Raises:
            ValueError: the body is not a JSON object, or it is nested
                deeper than :data:`MAX_JSON_DEPTH`.
        """
        if not self.body:
            return {}
        if _nested_deeper(self.body, MAX_JSON_DEPTH):
            raise InputError(f"the request body is JSON nested deeper than {MAX_JSON_DEPTH} levels")
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise InputError("the request body must be a JSON object")
        return value


#: A JSON string (skipped whole: brackets inside do not nest) or a bracket.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _nested_deeper(data: bytes, limit: int) -> bool:
    """Whether JSON ``data`` nests arrays and objects deeper than ``limit``
    (checked before parsing; malformed input is left to the parser)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


@dataclass(frozen=True, slots=True)
class JsonLines:
    """A streamed answer: each item the iterator yields is sent as one JSON
    line (``application/x-ndjson``, chunked) until it ends or the client
    goes away."""

    items: AsyncIterator[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RawStream:
    """A streamed answer of raw bytes (``application/octet-stream``,
    chunked): each chunk the iterator yields is sent as it comes. If the
    iterator raises, the connection ends without the chunked terminator."""

    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: dict[str, Any] | JsonLines | RawStream = field(default_factory=dict)


App = Callable[[HttpRequest], Awaitable[HttpResponse]]
#: The body limit of each ``(method, path)``.
Limits = Callable[[str, str], BodyLimit]


def _headers(content_type: str, length: int | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", content_type), ("Server", "guts")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


async def serve_http(
    stream: trio.abc.Stream,
    app: App,
    limits: Limits | None = None,
    *,
    idle: Callable[[bool], None] | None = None,
) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until the client is done.

    A malformed or oversized request gets a 400 or 413 answer and the
    connection is closed; the application's own errors are its business
    (it returns a response for each). Never raises for what the client does.
    ``limits`` says how each route takes its body (default: whole, up to
    :data:`MAX_BODY`). A connection that starts no request within
    :data:`IDLE_TIMEOUT` seconds is closed. ``idle`` is told ``True``
    when the connection starts waiting for a request, ``False`` once a
    request head arrived.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        while True:
            if idle is not None:
                idle(True)
            request = await _read_request(stream, conn, limits, idle)
            if request is None:
                return
            response = await app(request)
            await _send_response(stream, conn, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return  # closing, or the route left part of a streamed body unread
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


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection, limits: Limits | None, idle: Callable[[bool], None] | None
) -> HttpRequest | None:
    """The next request, or ``None`` once the client closed or stayed idle
    for :data:`IDLE_TIMEOUT`: its body read whole, or left to the route as
    chunks if its limit says so."""
    event = None
    with trio.move_on_after(IDLE_TIMEOUT):
        event = await _next_event(stream, conn)
    if event is None or isinstance(event, h11.ConnectionClosed):
        return None
    if idle is not None:
        idle(False)
    if not isinstance(event, h11.Request):
        raise _BadRequest(f"unexpected {type(event).__name__}")
    target = urlsplit(event.target.decode("ascii", "replace"))
    method = event.method.decode("ascii", "replace")
    limit = limits(method, target.path) if limits is not None else DEFAULT_LIMIT
    query = dict(parse_qsl(target.query))
    if limit.streamed:
        return HttpRequest(method, target.path, query, b"", _body_chunks(stream, conn, limit.max_bytes))
    with trio.move_on_after(REQUEST_TIMEOUT) as scope:
        body = bytearray()
        while True:
            part = await _next_event(stream, conn)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > limit.max_bytes:
                    raise _BadRequest(f"request body over {limit.max_bytes} bytes", 413)
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise _BadRequest(f"unexpected {type(part).__name__} in a request body")
    if scope.cancelled_caught:
        raise _BadRequest("request not completed in time", 408)
    return HttpRequest(method=method, path=target.path, query=query, body=bytes(body))


async def _body_chunks(stream: trio.abc.Stream, conn: h11.Connection, max_bytes: int) -> AsyncIterator[bytes]:
    """A streamed request body, chunk by chunk.

    Raises:
        InputError: over ``max_bytes``, no byte for
            :data:`STREAM_IDLE_TIMEOUT` seconds, or broken framing (the
            route answers its error; the connection then closes).
    """
    received = 0
    while True:
        try:
            with trio.fail_after(STREAM_IDLE_TIMEOUT):
                part = await _next_event(stream, conn)
        except trio.TooSlowError:
            raise InputError(f"no request body for {STREAM_IDLE_TIMEOUT:g} s") from None
        except _BadRequest as exc:
            raise InputError(f"request body: {exc}") from None
        if isinstance(part, h11.EndOfMessage):
            return
        if not isinstance(part, h11.Data):
            raise InputError(f"unexpected {type(part).__name__} in a request body")
        received += len(part.data)
        if received > max_bytes:
            raise InputError(f"request body over {max_bytes} bytes")
        yield bytes(part.data)


async def _send_response(stream: trio.abc.Stream, conn: h11.Connection, response: HttpResponse) -> None:
    if isinstance(response.body, JsonLines):
        await _send_lines(stream, conn, response.status, response.body.items)
        return
    if isinstance(response.body, RawStream):
        await _send_raw(stream, conn, response.status, response.body.chunks)
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
        gone = False
        # A client that resets its socket must end the answer, not raise
        # inside the nursery (an exception group nobody above expects).
        async with trio.open_nursery() as nursery:

            async def watch_client() -> None:
                try:
                    await stream.receive_some(_READ)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_client)
            try:
                async for item in items:
                    await stream.send_all(conn.send(h11.Data(data=json.dumps(item).encode() + b"\n")))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                gone = True
            nursery.cancel_scope.cancel()
        if gone:
            raise trio.BrokenResourceError("the client went away")
        await stream.send_all(conn.send(h11.EndOfMessage()))
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True):
                await aclose()


async def _send_raw(stream: trio.abc.Stream, conn: h11.Connection, status: int, chunks: AsyncIterator[bytes]) -> None:
    """Stream raw ``chunks``; if they fail, close without the terminator."""
    try:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=_headers(OCTETS, None))))
        try:
            async for chunk in chunks:
                if chunk:
                    with trio.fail_after(STREAM_IDLE_TIMEOUT):
                        await stream.send_all(conn.send(h11.Data(data=chunk)))
        except (GutsError, trio.TooSlowError) as exc:
            log.warning("control API: a raw answer failed midway: %s", str(exc) or type(exc).__name__)
            raise trio.ClosedResourceError("raw answer cut") from None
        await stream.send_all(conn.send(h11.EndOfMessage()))
    finally:
        aclose = getattr(chunks, "aclose", None)
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
    content_type = "application/json" if body is not None else None
    response = await _exchange(stream, conn, method, path, payload, content_type)
    answer_type = dict(response.headers).get(b"content-type", b"").decode()
    return response.status_code, _client_body(stream, conn, streamed="ndjson" in answer_type)


async def http_raw_request(
    stream: trio.abc.Stream,
    method: str,
    path: str,
    body: bytes | AsyncIterable[bytes],
) -> tuple[int, str, AsyncIterator[bytes]]:
    """Send one request with a raw body (whole, or chunked as ``body``
    yields it) on ``stream``; return the status, the answer's content type
    and its bytes as they arrive (the iterator closes ``stream`` at its end).

    If the server answers before it read the whole body (a refusal), the
    rest is not sent and the answer is returned all the same.

    Raises:
        ValueError: the answer is not HTTP, or it was cut before its end.
        trio.BrokenResourceError: the server went away.
    """
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    response = await _exchange(stream, conn, method, path, body, OCTETS)
    answer_type = dict(response.headers).get(b"content-type", b"").decode()
    return response.status_code, answer_type, _client_chunks(stream, conn)


async def _exchange(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    method: str,
    path: str,
    body: bytes | AsyncIterable[bytes],
    content_type: str | None,
) -> h11.Response:
    headers = [("Host", "guts"), ("Connection", "close")]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if isinstance(body, bytes):
        headers.append(("Content-Length", str(len(body))))
        await stream.send_all(
            conn.send(h11.Request(method=method, target=path, headers=headers))
            + conn.send(h11.Data(data=body))
            + conn.send(h11.EndOfMessage())
        )
    else:
        headers.append(("Transfer-Encoding", "chunked"))
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=headers)))
        try:
            async for chunk in body:
                if chunk:
                    await stream.send_all(conn.send(h11.Data(data=chunk)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        except trio.BrokenResourceError:
            pass  # the server answered early and stopped reading: its answer says why
        finally:
            aclose = getattr(body, "aclose", None)  # a generator's cleanup (a pack-objects) runs now
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
    response = await _client_event(stream, conn)
    if not isinstance(response, h11.Response):
        raise ValueError(f"unexpected answer from the node: {response!r}")
    return response


async def _client_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ValueError(f"bad HTTP from the node: {exc}") from None
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(bytes(await stream.receive_some(_READ)))


async def _client_chunks(stream: trio.abc.Stream, conn: h11.Connection) -> AsyncIterator[bytes]:
    try:
        while True:
            event = await _client_event(stream, conn)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ValueError("the node's answer was cut before its end")
    finally:
        await trio.aclose_forcefully(stream)


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
                            yield decode_object(line)
                if len(buffer) > MAX_BODY:
                    raise ValueError(f"answer from the node over {MAX_BODY} bytes")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if buffer.strip():
            yield decode_object(bytes(buffer))
    finally:
        await trio.aclose_forcefully(stream)
