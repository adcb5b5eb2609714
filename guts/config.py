"""Node configuration: defaults < ``GUTS_HOME/config.toml`` < ``GUTS_*``
environment variables < command-line flags.

The config file is TOML::

    listen = ["/ip4/0.0.0.0/tcp/9000", "/ip4/0.0.0.0/tcp/9001/ws", "/ip4/0.0.0.0/udp/9002/quic-v1"]
    bootstrap = ["/ip4/192.0.2.1/tcp/9000/p2p/12D3KooW..."]
    max_connections = 80
    connection_timeout = 10.0
    keep_alive = 30.0
    security = ["noise", "tls"]       # offered; a dial proposes the first

    # Connections (the connection manager, guts.connmgr):
    conn_low_water = 40               # a trim brings the count back down to this
    conn_high_water = 60              # past this many connections, trim
    conn_max_per_ip = 8               # inbound connections from one IP
    conn_max_per_subnet = 32          # from one /24 (IPv4) or /64 (IPv6)
    conn_handshake_rate = 1.0         # handshakes a second from one IP (after a burst of 8)
    conn_max_handshakes = 64          # inbound handshakes in flight
    conn_identify_grace = 10.0        # seconds a new connection has to identify
    dht_mode = "auto"                 # client | server | auto
    dht_protocol = "/guts/kad/1.0.0"
    topics = ["guts/announce"]

    # Repositories and sync (each a bound on what peers may send or ask):
    repo_max_pack_bytes = "16GiB"     # or a number of bytes
    repo_max_refs = 10000             # refs in one signed statement
    repo_max_identity_bytes = 16384   # bytes of one identity document
    repo_max_namespaces = 1024        # statements in one sync answer
    sync_idle_timeout = 60.0          # seconds without progress
    sync_deadline = 21600.0           # seconds for one whole fetch
    sync_max_uploads = 16             # upload-packs served at once
    sync_max_uploads_per_peer = 4     # of those, for one peer

    # Seeding (which repositories this node keeps and serves to others):
    seed_policy = "selected"          # selected | all
    seed_max_repositories = 10000     # repositories seeded
    seed_max_storage_bytes = "128GiB" # or a number of bytes
    seed_max_fetches = 8              # fetches at once
    seed_block_rids = []              # repositories never seeded
    seed_block_peers = []             # peers whose namespaces are never replicated

    # git push through guts:// (what git-remote-guts reports after a push):
    push_wait = 2.0                   # seconds to wait for seeds to have it (0: no report)
    push_replicas_timeout = 30.0      # seconds `git push -o replicas=N` waits at most

Environment variables: ``GUTS_HOME``, ``GUTS_LISTEN`` and ``GUTS_BOOTSTRAP``
(comma-separated multiaddrs), ``GUTS_MAX_CONNECTIONS``,
``GUTS_CONNECTION_TIMEOUT``, ``GUTS_KEEP_ALIVE``, ``GUTS_SECURITY``
(comma-separated: ``noise``, ``tls``), ``GUTS_DHT_MODE``,
``GUTS_DHT_PROTOCOL``, ``GUTS_TOPICS`` (comma-separated), and each
repository and sync limit as ``GUTS_`` and its name in capitals
(``GUTS_REPO_MAX_PACK_BYTES=500MiB``, ``GUTS_SYNC_DEADLINE=3600``), and
likewise ``GUTS_SEED_POLICY``, each seeding limit
(``GUTS_SEED_MAX_STORAGE_BYTES=1TiB``) and the block lists
(``GUTS_SEED_BLOCK_RIDS``, ``GUTS_SEED_BLOCK_PEERS``, comma-separated),
and ``GUTS_PUSH_WAIT``, ``GUTS_PUSH_REPLICAS_TIMEOUT``, and each
connection setting likewise (``GUTS_CONN_HIGH_WATER=100``).

``max_connections`` is the hard ceiling (handshakes included, both
directions); the ``conn_*`` settings are the connection manager's
(:class:`guts.connmgr.ConnLimits`, which explains the defaults): the
node keeps between ``conn_low_water`` and ``conn_high_water`` connections
(both clamped to ``max_connections``; a low mark above the high one is a
:class:`ConfigError`), dropping the least useful first and never its
bootstrap peers, gossip mesh, DHT routing table or the peers it syncs
with; each inbound attempt is judged on its IP before its handshake.

``push_wait`` and ``push_replicas_timeout`` are read by ``git-remote-guts``
(the same home, file and environment), not by the node: after a push
that moved a ref, the helper asks the node which seeds hold the new
signed state, waiting up to ``push_wait`` seconds for every connected
follower (0: it asks nothing and says nothing), or up to
``push_replicas_timeout`` for N seeds when the push says
``-o replicas=N``.

``seed_policy`` is ``selected`` (the default: the node seeds the
repositories created, cloned or seeded on it) or ``all`` (a public seed
node: it also seeds every repository it hears announced, within the
``seed_max_*`` limits, past which it takes on no new repository and keeps
updating those it has). :mod:`guts.replicate.policy` explains the rules.
The person's own choices (``guts repo seed``, ``unseed``, ``block``) are
kept in ``GUTS_HOME/seeds.sqlite`` (:mod:`guts.replicate.seeds`); the
``seed_block_*`` settings add to its block lists, and what they block a
command cannot unblock.

The limits are checked here, each against a range
(:data:`LIMIT_RANGES`): a value outside it is a :class:`ConfigError`
naming the file, variable or flag it came from, and so is an idle timeout
longer than the deadline. :func:`guts.node.repositories_config` and
:func:`guts.node.sync_config` turn them into the repository and sync
configs (built there, not here: this module stays light for the
commands that only ask a node); :func:`guts.node.seeding_policy` turns
the seeding settings into a :class:`guts.replicate.policy.SeedingPolicy`
the same way. A size (``repo_max_pack_bytes``,
``seed_max_storage_bytes``) is a whole number of bytes or a number with a
binary unit: ``B``, ``KiB``, ``MiB``, ``GiB``, ``TiB`` (``"1.5GiB"``; any
case, a space allowed); decimal units (``GB``) are refused, being
ambiguous.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guts.errors import ConfigError, DecodeError, InputError
from guts.home import CONFIG_FILE, CONTROL_SOCKET, KEY_FILE, default_home
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.rid import Rid

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
    "SECURITY_PROTOCOLS",
    "LIMIT_RANGES",
]

DEFAULT_LISTEN = ("/ip4/0.0.0.0/tcp/9000", "/ip4/0.0.0.0/tcp/9001/ws", "/ip4/0.0.0.0/udp/9002/quic-v1")
DHT_MODES = ("auto", "client", "server")
#: The values of ``seed_policy`` (:class:`guts.replicate.policy.SeedPolicy`).
SEED_POLICIES = ("selected", "all")
#: Security protocols by name (``guts.upgrade.SECURITY`` maps them to protocol ids).
SECURITY_PROTOCOLS = ("noise", "tls")
DEFAULT_DHT_PROTOCOL = "/guts/kad/1.0.0"

_KIB, _MIB, _GIB, _TIB, _PIB = 1024, 1024**2, 1024**3, 1024**4, 1024**5

#: The range each limit must fall in, both ends included. The lower ends
#: are what the protocols need to work at all: a pack holds at least a
#: repository's own layout commits (a few KiB) and a push's framing; a
#: statement lists at least one ref, a sync answer carries at least one
#: namespace; an identity document of one delegate, a short name and
#: description fits in 1 KiB; git's upload-pack counts its idle timeout in
#: whole seconds. The upper ends catch a slip of the keyboard (``16e12``)
#: and keep one statement within one sync answer (64 MiB, about 210 bytes
#: a ref). A seed node seeds at least one repository in at least a
#: MiB and runs at least one fetch; at most a million repositories (a
#: provider record each, republished every 22 hours), a PiB, and 1024
#: fetches (each a git process).
LIMIT_RANGES: dict[str, tuple[float, float]] = {
    "repo_max_pack_bytes": (_MIB, _TIB),
    "repo_max_refs": (1, 250_000),
    "repo_max_identity_bytes": (_KIB, _MIB),
    "repo_max_namespaces": (1, 100_000),
    "sync_idle_timeout": (1.0, 86_400.0),
    "sync_deadline": (1.0, 7 * 86_400.0),
    "sync_max_uploads": (1, 1024),
    "sync_max_uploads_per_peer": (1, 1024),
    "seed_max_repositories": (1, 1_000_000),
    "seed_max_storage_bytes": (_MIB, _PIB),
    "seed_max_fetches": (1, 1024),
    # A push's report waits at most ten minutes (0: no report); a push that
    # asks for N seeds waits at least a tenth of a second and at most the
    # control route's longest wait, an hour.
    "push_wait": (0.0, 600.0),
    "push_replicas_timeout": (0.1, 3600.0),
    # Connections: at least one of each; at most what a process's file
    # descriptors could hold. A handshake rate of one in 100 s at least
    # (0.01/s); a grace of a second at least (identify takes a round trip
    # or two), ten minutes at most.
    "conn_low_water": (1, 100_000),
    "conn_high_water": (1, 100_000),
    "conn_max_per_ip": (1, 100_000),
    "conn_max_per_subnet": (1, 100_000),
    "conn_handshake_rate": (0.01, 10_000.0),
    "conn_max_handshakes": (1, 100_000),
    "conn_identify_grace": (1.0, 600.0),
}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node needs to start.

    Attributes:
        home: the node's directory (identity key, config, later its data).
        listen: addresses to listen on.
        bootstrap: peers to dial at start.
        max_connections: connections open or handshaking at once, both
            directions: the hard ceiling (80).
        security: security protocols offered on TCP and WebSocket
            (``noise``, ``tls``); a dial proposes the first, an inbound
            connection may choose any.
        conn_low_water: connections a trim brings the count back to (40).
        conn_high_water: connections past which the least useful are
            closed (60). Both marks are clamped to ``max_connections``.
        conn_max_per_ip: inbound connections from one IP (8), refused
            before their handshake past it.
        conn_max_per_subnet: inbound connections from one /24 or /64 (32).
        conn_handshake_rate: inbound handshakes one IP may start a
            second, after a burst of 8 (1.0; a subnet gets 8 times as
            much, after a burst of 32).
        conn_max_handshakes: inbound handshakes in flight at once (64).
        conn_identify_grace: seconds a connection has, after its
            handshake, to identify itself before it is closed (10).
        connection_timeout: seconds for one dial and upgrade.
        keep_alive: seconds between keep-alive pings (0 disables).
        control: serve the control API on ``home/control.sock``.
        dht_mode: ``server`` answers DHT queries and joins others' routing
            tables; ``client`` only asks; ``auto`` is a server when the node
            has a publicly routable listen address, a client otherwise.
        dht_protocol: the kad-dht protocol id; ``/guts/kad/1.0.0`` keeps a
            Guts network apart from IPFS's ``/ipfs/kad/1.0.0``.
        topics: gossip topics to subscribe to at start.
        repo_max_pack_bytes: the largest pack received (a fetch's response
            bytes, a push's pack, an import) or served (an upload stops
            past it). 16 GiB: a Linux clone is 5.65 GiB; Radicle's limit
            is 500 MiB.
        repo_max_refs: refs in one signed statement, ours or a peer's (the
            statement's bytes are allowed about 210 a ref, at least 2 MiB).
        repo_max_identity_bytes: bytes of one identity document.
        repo_max_namespaces: namespaces (statements) in one sync answer.
        sync_idle_timeout: seconds a transfer may make no progress (a
            stalled peer, a pack that stopped flowing) before it is abandoned.
        sync_deadline: seconds one whole fetch may take, pack included; an
            upload-pack served is killed past it too.
        sync_max_uploads: upload-packs this node runs at once for peers
            (``BUSY`` past it).
        sync_max_uploads_per_peer: of those, for one peer (in effect at
            most ``sync_max_uploads``).
        seed_policy: ``selected``: seed the repositories created, cloned
            or seeded here; ``all``: also every repository announced,
            within the limits below (a public seed node).
        seed_max_repositories: repositories seeded; past it, ``all``
            takes on no new repository (what is seeded stays).
        seed_max_storage_bytes: bytes of repository storage; likewise.
            128 GiB: eight of the largest packs, or thousands of ordinary
            repositories.
        seed_max_fetches: fetches of seeded repositories running at once;
            more wait their turn.
        seed_block_rids: repositories never seeded (RIDs, as written).
        seed_block_peers: peers whose namespaces are never replicated.
        push_wait: seconds ``git push`` (its helper) waits, after a push
            that moved a ref, for the connected followers to hold the new
            state, then says how many do; 0 turns the report off.
        push_replicas_timeout: seconds ``git push -o replicas=N`` waits
            at most for N seeds to hold it.
    """

    home: Path
    listen: tuple[Multiaddr, ...] = tuple(Multiaddr.parse(a) for a in DEFAULT_LISTEN)
    bootstrap: tuple[Multiaddr, ...] = ()
    max_connections: int = 80
    connection_timeout: float = 10.0
    keep_alive: float = 30.0
    security: tuple[str, ...] = ("noise", "tls")
    control: bool = True
    dht_mode: str = "auto"
    dht_protocol: str = DEFAULT_DHT_PROTOCOL
    topics: tuple[str, ...] = ()
    repo_max_pack_bytes: int = 16 * _GIB
    repo_max_refs: int = 10_000
    repo_max_identity_bytes: int = 16 * _KIB
    repo_max_namespaces: int = 1024
    sync_idle_timeout: float = 60.0
    sync_deadline: float = 6 * 3600.0
    sync_max_uploads: int = 16
    sync_max_uploads_per_peer: int = 4
    seed_policy: str = "selected"
    seed_max_repositories: int = 10_000
    seed_max_storage_bytes: int = 128 * _GIB
    seed_max_fetches: int = 8
    seed_block_rids: tuple[str, ...] = ()
    seed_block_peers: tuple[str, ...] = ()
    push_wait: float = 2.0
    push_replicas_timeout: float = 30.0
    conn_low_water: int = 40
    conn_high_water: int = 60
    conn_max_per_ip: int = 8
    conn_max_per_subnet: int = 32
    conn_handshake_rate: float = 1.0
    conn_max_handshakes: int = 64
    conn_identify_grace: float = 10.0

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE

    @property
    def control_socket(self) -> Path:
        return self.home / CONTROL_SOCKET


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


def _security(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in (t.strip() for t in value.split(",")) if v]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where}: expected a list of security protocols (noise, tls), the first proposed")
    for name in value:
        if name not in SECURITY_PROTOCOLS:
            raise ConfigError(f"{where}: unknown security protocol {name!r}; expected noise or tls")
    return tuple(dict.fromkeys(value))


def _topics(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in (t.strip() for t in value.split(",")) if v]
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) and t for t in value):
        raise ConfigError(f"{where}: expected a list of topic names")
    return tuple(dict.fromkeys(value))


def _ids(value: Any, where: str, parse: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in (t.strip() for t in value.split(",")) if v]
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise ConfigError(f"{where}: expected a list of {what}s")
    out = []
    for text in value:
        try:
            out.append(str(parse(text)))
        except (ValueError, DecodeError, InputError) as exc:
            raise ConfigError(f"{where}: {text!r} is not a {what}: {exc}") from None
    return tuple(dict.fromkeys(out))


_UNITS = {"": 1, "b": 1, "kib": _KIB, "mib": _MIB, "gib": _GIB, "tib": _TIB}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE | re.ASCII)


def _size(value: Any, where: str) -> int:
    """A byte count: an int, or text like ``"16GiB"`` or ``"1.5 MiB"``.

    Raises:
        ConfigError: anything else (a decimal unit like ``GB``, a fraction
            of a byte, a negative number, a bool); the message begins with
            ``where``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where}: must not be negative")
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(f"{where}: expected bytes, or a size like '16GiB' (B, KiB, MiB, GiB, TiB), got {value!r}")
    # Exact arithmetic: "1.1GiB" is no whole number of bytes.
    whole, _, fraction = str(match.group(1)).partition(".")
    numerator = int(whole + fraction) * _UNITS[unit]
    denominator: int = 10 ** len(fraction)
    if numerator % denominator:
        raise ConfigError(f"{where}: {value!r} is not a whole number of bytes")
    return numerator // denominator


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if isinstance(value, str) and not (value.strip().isascii() and value.strip().isdigit()):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return int(_number(value, where, int))


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}")
    return float(_number(value, where, float))


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _limit(key: str, parse: Any) -> Any:
    low, high = LIMIT_RANGES[key]

    def check(value: Any, where: str) -> Any:
        number = parse(value, where)
        if not low <= number <= high:
            raise ConfigError(f"{where}: {_shown(number)} is outside {_shown(low)} to {_shown(high)}")
        return number

    return check


_FIELDS: dict[str, Any] = {
    "listen": lambda v, w: _addrs(v, w),
    "bootstrap": lambda v, w: _addrs(v, w),
    "max_connections": lambda v, w: _number(v, w, int),
    "connection_timeout": lambda v, w: _number(v, w, float),
    "keep_alive": lambda v, w: _number(v, w, float),
    "security": _security,
    "dht_mode": lambda v, w: _choice(v, w, DHT_MODES),
    "dht_protocol": _protocol_id,
    "topics": _topics,
    "repo_max_pack_bytes": _limit("repo_max_pack_bytes", _size),
    "repo_max_refs": _limit("repo_max_refs", _whole),
    "repo_max_identity_bytes": _limit("repo_max_identity_bytes", _whole),
    "repo_max_namespaces": _limit("repo_max_namespaces", _whole),
    "sync_idle_timeout": _limit("sync_idle_timeout", _seconds),
    "sync_deadline": _limit("sync_deadline", _seconds),
    "sync_max_uploads": _limit("sync_max_uploads", _whole),
    "sync_max_uploads_per_peer": _limit("sync_max_uploads_per_peer", _whole),
    "seed_policy": lambda v, w: _choice(v, w, SEED_POLICIES),
    "seed_max_repositories": _limit("seed_max_repositories", _whole),
    "seed_max_storage_bytes": _limit("seed_max_storage_bytes", _size),
    "seed_max_fetches": _limit("seed_max_fetches", _whole),
    "seed_block_rids": lambda v, w: _ids(v, w, Rid.parse, "repository id"),
    "seed_block_peers": lambda v, w: _ids(v, w, PeerId.from_string, "peer id"),
    "push_wait": _limit("push_wait", _seconds),
    "push_replicas_timeout": _limit("push_replicas_timeout", _seconds),
    "conn_low_water": _limit("conn_low_water", _whole),
    "conn_high_water": _limit("conn_high_water", _whole),
    "conn_max_per_ip": _limit("conn_max_per_ip", _whole),
    "conn_max_per_subnet": _limit("conn_max_per_subnet", _whole),
    "conn_handshake_rate": _limit("conn_handshake_rate", _seconds),
    "conn_max_handshakes": _limit("conn_max_handshakes", _whole),
    "conn_identify_grace": _limit("conn_identify_grace", _seconds),
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
        ConfigError: a value does not parse or is out of its range, or the
            sync idle timeout is longer than the sync deadline, or the
            connections' low water mark is above the high one; the message
            names where the value came from.
    """
    env = os.environ if env is None else env
    home = (home or default_home(env)).expanduser()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # where each value came from, for errors between settings
    path = home / CONFIG_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            sources[key] = f"{path}: {key}"
            values[key] = _FIELDS[key](value, sources[key])
    for key, parse in _FIELDS.items():
        name = f"GUTS_{key.upper()}"
        if env.get(name):
            sources[key] = name
            values[key] = parse(env[name], name)
    if listen:
        values["listen"] = _addrs(list(listen), "--listen")
    if bootstrap:
        values["bootstrap"] = _addrs(list(bootstrap), "--bootstrap")
    if topics:
        values["topics"] = _topics(list(topics), "--topic")
    for key, value in overrides.items():
        if value is not None:
            sources[key] = f"--{key.replace('_', '-')}"
            values[key] = _FIELDS[key](value, sources[key])
    config = replace(NodeConfig(home=home), **values)
    low, high = config.conn_low_water, config.conn_high_water
    if low > high:
        where = sources.get("conn_low_water") or sources["conn_high_water"]
        raise ConfigError(f"{where}: conn_low_water ({low}) is above conn_high_water ({high})")
    idle, deadline = config.sync_idle_timeout, config.sync_deadline
    if idle > deadline:  # the idle timeout would never fire; one of the two is a mistake
        if "sync_deadline" in sources:
            raise ConfigError(
                f"{sources['sync_deadline']}: sync_deadline ({_shown(deadline)} s) is shorter than "
                f"sync_idle_timeout ({_shown(idle)} s, from {sources.get('sync_idle_timeout', 'the default')})"
            )
        raise ConfigError(
            f"{sources['sync_idle_timeout']}: sync_idle_timeout ({_shown(idle)} s) is longer than "
            f"sync_deadline ({_shown(deadline)} s, the default)"
        )
    return config
