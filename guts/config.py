"""Node configuration: defaults < ``GUTS_HOME/config.toml`` < ``GUTS_*``
environment variables < command-line flags.

The config file is TOML::

    listen = ["/ip4/0.0.0.0/tcp/9000", "/ip4/0.0.0.0/tcp/9001/ws"]
    bootstrap = ["/ip4/192.0.2.1/tcp/9000/p2p/12D3KooW..."]
    max_connections = 50
    connection_timeout = 10.0
    keep_alive = 30.0
    dht_mode = "auto"                 # client | server | auto
    dht_protocol = "/guts/kad/1.0.0"
    topics = ["guts/announce"]

Environment variables: ``GUTS_HOME``, ``GUTS_LISTEN`` and ``GUTS_BOOTSTRAP``
(comma-separated multiaddrs), ``GUTS_MAX_CONNECTIONS``,
``GUTS_CONNECTION_TIMEOUT``, ``GUTS_KEEP_ALIVE``, ``GUTS_DHT_MODE``,
``GUTS_DHT_PROTOCOL``, ``GUTS_TOPICS`` (comma-separated).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guts.errors import ConfigError, DecodeError
from guts.multiaddr import Multiaddr

__all__ = [
    "NodeConfig",
    "load_config",
    "default_home",
    "DEFAULT_LISTEN",
    "CONFIG_FILE",
    "KEY_FILE",
    "CONTROL_SOCKET",
    "DEFAULT_DHT_PROTOCOL",
    "DHT_MODES",
]

DEFAULT_LISTEN = ("/ip4/0.0.0.0/tcp/9000", "/ip4/0.0.0.0/tcp/9001/ws")
CONFIG_FILE = "config.toml"
KEY_FILE = "identity.key"
CONTROL_SOCKET = "control.sock"
DHT_MODES = ("auto", "client", "server")
DEFAULT_DHT_PROTOCOL = "/guts/kad/1.0.0"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node needs to start.

    Attributes:
        home: the node's directory (identity key, config, later its data).
        listen: addresses to listen on.
        bootstrap: peers to dial at start.
        max_connections: connections open at once.
        connection_timeout: seconds for one dial and upgrade.
        keep_alive: seconds between keep-alive pings (0 disables).
        control: serve the control API on ``home/control.sock``.
        dht_mode: ``server`` answers DHT queries and joins others' routing
            tables; ``client`` only asks; ``auto`` is a server when the node
            has a publicly routable listen address, a client otherwise.
        dht_protocol: the kad-dht protocol id; ``/guts/kad/1.0.0`` keeps a
            Guts network apart from IPFS's ``/ipfs/kad/1.0.0``.
        topics: gossip topics to subscribe to at start.
    """

    home: Path
    listen: tuple[Multiaddr, ...] = tuple(Multiaddr.parse(a) for a in DEFAULT_LISTEN)
    bootstrap: tuple[Multiaddr, ...] = ()
    max_connections: int = 50
    connection_timeout: float = 10.0
    keep_alive: float = 30.0
    control: bool = True
    dht_mode: str = "auto"
    dht_protocol: str = DEFAULT_DHT_PROTOCOL
    topics: tuple[str, ...] = ()

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE

    @property
    def control_socket(self) -> Path:
        return self.home / CONTROL_SOCKET


def default_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("GUTS_HOME") or Path.home() / ".guts").expanduser()


def _addrs(values: Any, where: str) -> tuple[Multiaddr, ...]:
    if isinstance(values, str):
        values = [v for v in (s.strip() for s in values.split(",")) if v]
    if not isinstance(values, list | tuple):
        raise ConfigError(f"{where}: expected a list of multiaddrs")
    out = []
    for v in values:
        try:
            out.append(Multiaddr.parse(str(v)))
        except (ValueError, DecodeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(out)


def _number(value: Any, where: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{where}: must not be negative")
    return number


def _choice(value: Any, where: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _protocol_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 256 or any(c.isspace() for c in value):
        raise ConfigError(f"{where}: a protocol id looks like /name/1.0.0, got {value!r}")
    return value


def _topics(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in (t.strip() for t in value.split(",")) if v]
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) and t for t in value):
        raise ConfigError(f"{where}: expected a list of topic names")
    return tuple(dict.fromkeys(value))


_FIELDS: dict[str, Any] = {
    "listen": lambda v, w: _addrs(v, w),
    "bootstrap": lambda v, w: _addrs(v, w),
    "max_connections": lambda v, w: _number(v, w, int),
    "connection_timeout": lambda v, w: _number(v, w, float),
    "keep_alive": lambda v, w: _number(v, w, float),
    "dht_mode": lambda v, w: _choice(v, w, DHT_MODES),
    "dht_protocol": _protocol_id,
    "topics": _topics,
}


def load_config(
    home: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    listen: Sequence[str] = (),
    bootstrap: Sequence[str] = (),
    topics: Sequence[str] = (),
    **overrides: Any,
) -> NodeConfig:
    """Build the configuration from its four layers.

    Args:
        home: ``--home``; else ``GUTS_HOME``; else ``~/.guts``.
        env: the environment (``os.environ`` by default).
        listen: ``--listen`` flags; replace every other layer's list.
        bootstrap: ``--bootstrap`` flags; likewise.
        topics: ``--topic`` flags; likewise.
        overrides: other flags (``max_connections=...``); ``None`` values are ignored.

    Raises:
        ConfigError: a value does not parse; the message names where it came from.
    """
    env = os.environ if env is None else env
    home = (home or default_home(env)).expanduser()
    values: dict[str, Any] = {}
    path = home / CONFIG_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = _FIELDS[key](value, f"{path}: {key}")
    for key, parse in _FIELDS.items():
        name = f"GUTS_{key.upper()}"
        if env.get(name):
            values[key] = parse(env[name], name)
    if listen:
        values["listen"] = _addrs(list(listen), "--listen")
    if bootstrap:
        values["bootstrap"] = _addrs(list(bootstrap), "--bootstrap")
    if topics:
        values["topics"] = _topics(list(topics), "--topic")
    for key, value in overrides.items():
        if value is not None:
            values[key] = _FIELDS[key](value, f"--{key.replace('_', '-')}")
    return replace(NodeConfig(home=home), **values)
