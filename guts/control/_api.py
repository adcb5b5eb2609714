"""The control API's routes: what ``guts status``, ``guts dht ...`` and
``guts pubsub ...`` ask a running node.

Requests and answers are JSON; ``GET /v1/pubsub/subscribe`` streams JSON
lines. Errors come back as ``{"error": text, "kind": kind}`` with a
matching status: 400 ``bad_request``, 404 ``not_found``, 409
``unavailable`` (the node runs without that service), 504 ``timeout``,
502 ``network`` (the peers failed us), 500 ``internal``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from guts.control._http import DEFAULT_LIMIT, BodyLimit, HttpRequest, HttpResponse
from guts.errors import GutsError, InvalidRecord, LocalProtocolError, PeerNotFound, RecordNotFound

if TYPE_CHECKING:  # only for types: a client loads no node
    from guts.node import Node

__all__ = ["ControlApi", "ApiError"]

log = logging.getLogger("guts.control")

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class ApiError(GutsError):
    """An answer other than 200, raised by a route (and answered, never
    propagated: :meth:`ControlApi.__call__` turns it into the response)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


class ControlApi:
    """Routes requests to a running :class:`~guts.node.Node`.

    Args:
        node: the node to drive.
        timeout: seconds any one operation may take.
    """

    def __init__(self, node: Node, timeout: float = 60.0) -> None:
        self.node = node
        self.timeout = timeout
        self.started = time.monotonic()
        self._routes: dict[tuple[str, str], tuple[Handler, float | None]] = {
            ("GET", "/v1/status"): (self._status, None),
        }
        self._limits: dict[tuple[str, str], BodyLimit] = {}

    def route(
        self, method: str, path: str, handler: Handler, *, timeout: float | None = None, body: BodyLimit | None = None
    ) -> None:
        """Serve ``method path`` with ``handler`` (services add theirs).

        Args:
            timeout: seconds the route may take, when not the API's
                ``timeout``: ``math.inf`` for an operation that keeps its
                own deadlines (a repository's import runs git under
                per-command and per-pack deadlines, for as long as a large
                history takes).
            body: how the route takes its request body, when not whole and
                up to :data:`~guts.control._http.MAX_BODY` (git's packs).
        """
        self._routes[(method, path)] = (handler, timeout)
        if body is not None:
            self._limits[(method, path)] = body

    def body_limit(self, method: str, path: str) -> BodyLimit:
        """How ``method path`` takes its body (what :func:`serve_http` asks)."""
        return self._limits.get((method, path), DEFAULT_LIMIT)

    @property
    def routes(self) -> list[tuple[str, str]]:
        return sorted(self._routes)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        found = self._routes.get((request.method, request.path))
        if found is None:
            if any(path == request.path for _, path in self._routes):
                return _error(405, "bad_request", f"{request.method} is not allowed on {request.path}")
            return _error(404, "bad_request", f"no such endpoint: {request.path}")
        handler, timeout = found
        if timeout is None:
            timeout = self.timeout
        try:
            with trio.fail_after(timeout):
                return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.kind, str(exc))
        except trio.TooSlowError:
            return _error(504, "timeout", f"no answer within {timeout:g} s")
        except (PeerNotFound, RecordNotFound) as exc:
            return _error(404, "not_found", str(exc))
        except (ValueError, KeyError, TypeError, InvalidRecord, LocalProtocolError) as exc:
            return _error(400, "bad_request", str(exc))
        except GutsError as exc:
            return _error(502, "network", f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("control API: %s %s failed", request.method, request.path)
            return _error(500, "internal", "internal error (see the node's log)")

    # -- routes --------------------------------------------------------------

    async def _status(self, request: HttpRequest) -> HttpResponse:
        node = self.node
        host = node.host
        now = time.monotonic()
        connections = [
            {
                "peer_id": str(c.peer_id),
                "addr": str(c.remote_addr),
                "direction": c.direction.value,
                "streams": c.muxer.stream_count,
                "age_s": round(now - c.opened_at, 1),
                "agent_version": host.peerstore.info(c.peer_id).agent_version,
            }
            for c in host.connections
        ]
        body: dict[str, Any] = {
            "peer_id": str(host.peer_id),
            "addrs": [str(a) for a in node.addrs],
            "uptime_s": round(now - self.started, 1),
            "connections": connections,
        }
        body.update(node.status())
        return HttpResponse(200, body)


def _error(status: int, kind: str, message: str) -> HttpResponse:
    return HttpResponse(status, {"error": message, "kind": kind})


def require(body: dict[str, Any], name: str, kind: type = str) -> Any:
    """``body[name]``, which must be a ``kind``."""
    value = body.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise _bad(f"{name!r} ({kind.__name__}) is required")
    return value
