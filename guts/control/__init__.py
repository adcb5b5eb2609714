"""The node's local control API: HTTP + JSON over a Unix socket in
``GUTS_HOME`` (mode 0600), so that ``guts status``, ``guts dht ...`` and
``guts pubsub ...`` drive the running node of the same home.

This package exports the client and the server's parts, which load no
node: a command that only asks a running node imports no more than that,
and :mod:`guts.control.blocking` (a client without Trio, for commands and
``git-remote-guts``) not even those: the package loads them on first use.
The parts that hold a node are public submodules:
:mod:`guts.control.node` (:func:`~guts.control.node.open_controlled_node`,
a node with its control API), :mod:`guts.control.dht`,
:mod:`guts.control.pubsub` and :mod:`guts.control.repo` (their routes),
and :mod:`guts.control.keys` (how commands name DHT keys).

See the README for the endpoints and a ``curl`` example.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guts.control._api import ApiError, ControlApi
    from guts.control._client import ControlClient
    from guts.control._common import ControlError
    from guts.control._server import serve_control
    from guts.control._socket import ControlSocket, bind_control_socket, connect_control

__all__ = [
    "ApiError",
    "ControlApi",
    "ControlClient",
    "ControlError",
    "ControlSocket",
    "bind_control_socket",
    "connect_control",
    "serve_control",
]

# Loaded on first use, so that ``guts.control.blocking`` (a command's or
# the git helper's client) imports neither Trio nor the server.
_WHERE = {
    "ApiError": "_api",
    "ControlApi": "_api",
    "ControlClient": "_client",
    "ControlError": "_common",
    "ControlSocket": "_socket",
    "bind_control_socket": "_socket",
    "connect_control": "_socket",
    "serve_control": "_server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'guts.control' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"guts.control.{module}"), name)
    globals()[name] = value
    return value
