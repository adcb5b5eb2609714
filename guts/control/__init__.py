"""The node's local control API: HTTP + JSON over a Unix socket in
``GUTS_HOME`` (mode 0600), so that ``guts status``, ``guts dht ...`` and
``guts pubsub ...`` drive the running node of the same home.

See the README for the endpoints and a ``curl`` example.
"""

from guts.control._api import ApiError, ControlApi
from guts.control._client import ControlClient, ControlError
from guts.control._dht import OPERATIONS as DHT_OPERATIONS
from guts.control._node import open_controlled_node
from guts.control._pubsub import message_json
from guts.control._server import serve_control
from guts.control._socket import ControlSocket, bind_control_socket, connect_control

__all__ = [
    "ApiError",
    "ControlApi",
    "ControlClient",
    "ControlError",
    "ControlSocket",
    "DHT_OPERATIONS",
    "bind_control_socket",
    "connect_control",
    "message_json",
    "open_controlled_node",
    "serve_control",
]
