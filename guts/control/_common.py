"""What the control API's clients and server share, without Trio: the
error a client raises for an error answer, the limits of an answer, the
decoding of a JSON answer, and what a failed connection to the socket
means. :mod:`guts.control.blocking` is built on this alone, so a command
that only asks a node does not import Trio."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from guts.errors import ConfigError, GutsError, NodeNotRunning

__all__ = ["ControlError", "MAX_BODY", "MAX_HEAD", "check_answer", "check_socket_path", "connect_failure",
           "decode_object"]  # fmt: skip

#: Largest request or response body accepted: a gossip message of the
#: largest size (1 MiB) as hex in JSON, with room to spare.
MAX_BODY = 4 * 1024 * 1024
#: Largest request or response head (h11 raises above it).
MAX_HEAD = 16 * 1024
#: sockaddr_un holds 108 bytes, the terminating NUL included.
_MAX_PATH = 107


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


def check_answer(status: int, answer: dict[str, Any]) -> None:
    """Raise the :class:`ControlError` an answer other than 200 carries."""
    if status != 200:
        raise ControlError(status, str(answer.get("kind", "internal")), str(answer.get("error", f"HTTP {status}")))


def decode_object(data: bytes) -> dict[str, Any]:
    """One JSON object of an answer.

    Raises:
        ValueError: it is not JSON, or not an object.
    """
    try:
        value = json.loads(data)
    except ValueError:
        raise ValueError("the node answered with something that is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("the node answered with JSON that is not an object")
    return value


def check_socket_path(path: Path) -> None:
    """Raise :class:`ConfigError` for a path no Unix socket can have."""
    if len(os.fsencode(path)) > _MAX_PATH:
        raise ConfigError(
            f"control socket path {path} is longer than {_MAX_PATH} bytes, the limit of a Unix "
            "socket address: use a shorter GUTS_HOME"
        )


def connect_failure(path: Path, exc: OSError) -> GutsError:
    """What a failed connection to the control socket at ``path`` means."""
    if isinstance(exc, FileNotFoundError):
        return NodeNotRunning(f"no node is running with home {path.parent}")
    if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
        return NodeNotRunning(f"no node is running with home {path.parent} (stale {path})")
    if exc.errno == errno.EACCES:
        return ConfigError(f"cannot use {path}: permission denied (it belongs to another user)")
    return ConfigError(f"cannot connect to {path}: {exc.strerror or exc}")
