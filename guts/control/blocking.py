"""A blocking client of the control API, for short-lived processes.

A ``guts`` command that only asks the running node, and ``git-remote-guts``,
make a few requests one after the other; they do not need an event loop,
and Trio alone takes about 50 ms to import. :class:`BlockingControlClient`
speaks the same HTTP (h11 over the Unix socket, one connection per
request, ``Connection: close``) with plain blocking sockets, and raises
the same errors as :class:`~guts.control.ControlClient`. This module
imports neither Trio nor the rest of :mod:`guts.control` (the package
loads its parts lazily).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h11

from guts.control._common import MAX_BODY, MAX_HEAD, ControlError, check_answer, check_socket_path, connect_failure
from guts.control._common import decode_object

__all__ = ["BlockingControlClient", "ControlError"]

_READ = 64 * 1024
_OCTETS = "application/octet-stream"


class _Exchange:
    """One request and its answer on a new connection to the node."""

    def __init__(self, path: Path) -> None:
        check_socket_path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(os.fspath(path))
        except OSError as exc:
            self.sock.close()
            raise connect_failure(path, exc) from None
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str, body: bytes | Iterable[bytes], content_type: str | None) -> h11.Response:
        headers = [("Host", "guts"), ("Connection", "close")]
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        conn, sock = self.conn, self.sock
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
            head = conn.send(h11.Request(method=method, target=path, headers=headers))
            sock.sendall(head + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        else:
            headers.append(("Transfer-Encoding", "chunked"))
            sock.sendall(conn.send(h11.Request(method=method, target=path, headers=headers)))
            try:
                for chunk in body:
                    if chunk:
                        sock.sendall(conn.send(h11.Data(data=chunk)))
                sock.sendall(conn.send(h11.EndOfMessage()))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the node answered early and stopped reading: its answer says why
            finally:
                close = getattr(body, "close", None)  # a generator's cleanup (a pack-objects) runs now
                if close is not None:
                    close()
        response = self.event()
        if not isinstance(response, h11.Response):
            raise ValueError(f"unexpected answer from the node: {response!r}")
        return response

    def event(self) -> Any:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ValueError(f"the node's answer was bad or cut: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.sock.recv(_READ)
            except ConnectionResetError:
                data = b""
            self.conn.receive_data(data)

    def chunks(self) -> Iterator[bytes]:
        """The answer's body as it arrives; :class:`ValueError` if it is cut."""
        while True:
            event = self.event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ValueError("the node's answer was cut before its end")

    def whole(self) -> bytes:
        data = bytearray()
        for chunk in self.chunks():
            data += chunk
            if len(data) > MAX_BODY:
                raise ValueError(f"answer from the node over {MAX_BODY} bytes")
        return bytes(data)


def _object(data: bytes) -> dict[str, Any]:
    return decode_object(data) if data.strip() else {}


class BlockingControlClient:
    """Talks to the node whose control socket is at ``path``, blocking.

    Every method raises :class:`~guts.errors.NodeNotRunning` when nothing
    listens on the socket, :class:`ControlError` when the node answers
    with an error, and :class:`ValueError` when the answer is not what the
    API promises (cut, not JSON).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request, one JSON answer."""
        exchange = _Exchange(self.path)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            response = exchange.request(method, path, payload, "application/json" if body is not None else None)
            answer = _object(exchange.whole())
        finally:
            exchange.close()
        check_answer(response.status_code, answer)
        return answer

    def stream(self, method: str, path: str, body: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """One request, its answer's JSON lines as they arrive, until the
        node ends the answer (or the caller stops iterating)."""
        exchange = _Exchange(self.path)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            response = exchange.request(method, path, payload, "application/json" if body is not None else None)
            if response.status_code != 200:
                check_answer(response.status_code, _object(exchange.whole()))
            buffer = bytearray()
            for chunk in exchange.chunks():
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if line.strip():
                        yield decode_object(line)
                if len(buffer) > MAX_BODY:
                    raise ValueError(f"a line from the node over {MAX_BODY} bytes")
            if buffer.strip():
                yield decode_object(bytes(buffer))
        finally:
            exchange.close()

    def raw(self, method: str, path: str, body: bytes | Iterable[bytes]) -> Iterator[bytes]:
        """One request with a raw body (whole, or chunked as ``body``
        yields it); the answer's raw bytes as they arrive."""
        exchange = _Exchange(self.path)
        try:
            response = exchange.request(method, path, body, _OCTETS)
            if response.status_code != 200:
                check_answer(response.status_code, _object(exchange.whole()))
            yield from exchange.chunks()
        finally:
            exchange.close()

    def send(self, method: str, path: str, body: bytes | Iterable[bytes]) -> dict[str, Any]:
        """One request with a raw body, one JSON answer."""
        exchange = _Exchange(self.path)
        try:
            response = exchange.request(method, path, body, _OCTETS)
            answer = _object(exchange.whole())
        finally:
            exchange.close()
        check_answer(response.status_code, answer)
        return answer
