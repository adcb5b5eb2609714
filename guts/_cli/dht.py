"""``guts dht ...``: DHT queries through the running node, or through a
short-lived client-mode node when none runs and ``--bootstrap`` is given.

``--dht-protocol`` picks the short-lived node's kad-dht protocol; with a
node running it must name that node's protocol, or the command is refused
(a query the user meant for one network must not silently run on another).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from guts._cli.common import HomeOption, acall, fail, run_control

app = typer.Typer(
    help=(
        "Find peers, providers and values in the DHT. Each command asks the node running with this home; "
        "with none running, --bootstrap MULTIADDR runs the one query through a short-lived node, always a "
        "DHT client: it answers no queries and stays out of other nodes' routing tables, where it would "
        "only leave an entry for a peer that is gone a moment later."
    ),
    no_args_is_help=True,
)


def _check_protocol_id(value: str | None) -> str | None:
    # The rule guts.config applies to dht_protocol, checked here too so that a
    # typo is refused before a running node is asked.
    if value is not None and (not value.startswith("/") or len(value) > 256 or any(c.isspace() for c in value)):
        raise typer.BadParameter(f"a protocol id looks like /ipfs/kad/1.0.0, got {value!r}")
    return value


JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
BootstrapOption = Annotated[
    list[str],
    typer.Option(
        "--bootstrap",
        help=(
            "When no node runs with this home, join the DHT through this peer for the one query "
            "(repeatable), as a short-lived client-mode node."
        ),
    ),
]
DhtProtocolOption = Annotated[
    Optional[str],
    typer.Option(
        "--dht-protocol",
        callback=_check_protocol_id,
        help=(
            "The DHT to query: /ipfs/kad/1.0.0 for js and go (IPFS) networks. Sets the short-lived node's "
            "protocol (default: GUTS_DHT_PROTOCOL, the config file, else /guts/kad/1.0.0). With a node "
            "running it must be that node's protocol, or the command is refused."
        ),
    ),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Seconds the query may take.")]

_HINT = "start one with `guts start`, or pass --bootstrap MULTIADDR to query through a short-lived node"


async def _operate(
    home: Path | None, name: str, body: dict[str, Any], bootstrap: list[str], protocol: str | None, timeout: float
) -> dict[str, Any]:
    import trio

    from guts.errors import NodeNotRunning

    with trio.fail_after(timeout):
        try:
            if protocol is not None:
                await _check_running_protocol(home, protocol)
            return await acall(home, "POST", f"/v1/dht/{name}", body)
        except NodeNotRunning:
            if not bootstrap:
                raise
        return await _one_off(home, name, body, bootstrap, protocol)


async def _check_running_protocol(home: Path | None, protocol: str) -> None:
    """Refuse ``--dht-protocol`` when the running node speaks another protocol."""
    from guts.errors import InputError

    status = await acall(home, "GET", "/v1/status")
    running = (status.get("dht") or {}).get("protocol")
    if running is not None and running != protocol:
        raise InputError(
            f"the node running with this home queries the DHT on {running}, not {protocol}: "
            f"leave out --dht-protocol to query through it, restart it with `guts start --dht-protocol {protocol}`, "
            "or query through a short-lived node with another --home and --bootstrap MULTIADDR"
        )


async def _one_off(
    home: Path | None, name: str, body: dict[str, Any], bootstrap: list[str], protocol: str | None
) -> dict[str, Any]:
    """Run the operation on a node of our own: client mode, no listener, no
    control socket, nothing persisted; it lives for this one query.

    Client mode always: a server's only gain would be answering others, and
    it would leave an entry for a peer about to vanish in the routing table
    of every node it meets."""
    import trio

    from guts.config import load_config
    from guts.control.dht import OPERATIONS
    from guts.errors import DialError, GutsError
    from guts.node import open_node

    config = load_config(home, bootstrap=bootstrap, dht_protocol=protocol)
    peers = config.bootstrap
    # We dial the bootstrap peers ourselves, to say clearly when none answers.
    config = dataclasses.replace(config, listen=(), bootstrap=(), control=False, dht_mode="client")
    async with open_node(config, persist=False) as node:
        host = node.host
        errors: list[str] = []

        async def join(addr: Any) -> None:
            try:
                with trio.fail_after(config.connection_timeout):
                    conn = await host.connect(addr)
                with trio.move_on_after(config.connection_timeout):
                    await conn.identified.wait()
            except (GutsError, OSError, trio.TooSlowError) as exc:
                errors.append(str(exc) or f"{addr}: {type(exc).__name__}")

        async with trio.open_nursery() as nursery:
            for addr in peers:
                nursery.start_soon(join, addr)
        if not host.connections:
            raise DialError("could not reach any bootstrap peer: " + "; ".join(errors))
        if not node.dht.routing_table_size:
            raise DialError(
                f"no bootstrap peer serves the DHT on {node.dht.config.protocol}: is it a DHT server, "
                "and on that protocol? Pass --dht-protocol to match it (/ipfs/kad/1.0.0 for js and go nodes)"
            )
        if name in ("provide", "put"):
            print(
                "note: no node runs with this home, so the record is published by a short-lived node "
                "that has no listen address and exits now",
                file=sys.stderr,
            )
        return await OPERATIONS[name](node.dht, body)


def _run(
    home: Path | None,
    name: str,
    body: dict[str, Any],
    bootstrap: list[str],
    protocol: str | None,
    timeout: float,
    as_json: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = run_control(
        _operate, home, name, body, bootstrap, protocol, timeout, as_json=as_json, hint=_HINT
    )
    if as_json:
        print(json.dumps(result, indent=2))
    return result


def _figures(result: dict[str, Any]) -> str:
    failed = f", {result['failed']} failed" if result["failed"] else ""
    cut = ", cut short by the query timeout" if result["timed_out"] else ""
    return (
        f"{result['queried']} peers queried ({result['succeeded']} answered{failed}), "
        f"{result['rounds']} rounds, {result['seconds']:.3f} s{cut}"
    )


def _print_peers(peers: list[dict[str, Any]], *, bits: bool = False) -> None:
    width = max((len(p["peer_id"]) for p in peers), default=7)
    header = f"{'#':>3}  {'PEER ID':<{width}}  " + ("BITS  " if bits else "") + "ADDRESSES"
    typer.echo(header)
    for i, p in enumerate(peers, 1):
        addrs = p["addrs"] or ["(no address known)"]
        lead = f"{i:>3}  {p['peer_id']:<{width}}  " + (f"{p['common_prefix_bits']:>4}  " if bits else "")
        typer.echo(lead + addrs[0])
        for extra in addrs[1:]:
            typer.echo(" " * len(lead) + extra)


_KEY_RULES = (
    " A peer id's key is its multihash; a CID's (Qm..., bafy..., bafk..., or v1 in base58 z..., base36 k..., "
    "base16 f..., base64 m.../u...) is its multihash, as js and go nodes provide it; any other string's is the "
    "sha2-256 multihash of its text. Text that is plainly a mistyped CID is refused."
)


def _key_kind(text: str, as_json: bool) -> str:
    """How KEY is read (:func:`guts.control.keys.read_dht_key`), for the
    summary line. A KEY that cannot be read, such as a CID gone wrong, is
    refused here, before a node is asked or started."""
    from guts.control.keys import read_dht_key

    try:
        return read_dht_key(text).kind
    except ValueError as exc:
        if as_json:
            print(json.dumps({"error": str(exc), "kind": "bad_request"}), flush=True)
            raise typer.Exit(1)
        fail(str(exc))


@app.command("find-peers")
def find_peers(
    key: Annotated[str, typer.Argument(help="A peer id, a CID, or any string (a repository id, say)." + _KEY_RULES)],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    dht_protocol: DhtProtocolOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """The k closest peers to KEY, with their addresses and the lookup's figures.

    BITS is how many leading bits a peer shares with the key in the DHT's
    key space (more is closer).
    """
    kind = _key_kind(key, as_json)
    result = _run(home, "find-peers", {"key": key}, bootstrap, dht_protocol, timeout, as_json)
    if as_json:
        return
    peers = result["peers"]
    if peers:
        _print_peers(peers, bits=True)
    typer.echo(
        f"{len(peers)} closest peers to {key!r} ({kind}, key {result['key_hex'][:16]}...): {_figures(result)}"
    )


@app.command("find-peer")
def find_peer(
    peer_id: Annotated[str, typer.Argument(help="The peer to find.")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    dht_protocol: DhtProtocolOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """The addresses of PEER_ID."""
    result = _run(home, "find-peer", {"peer_id": peer_id}, bootstrap, dht_protocol, timeout, as_json)
    if not as_json:
        typer.echo(result["peer_id"])
        for addr in result["addrs"]:
            typer.echo(f"  {addr}")


@app.command()
def provide(
    key: Annotated[str, typer.Argument(help="What this node provides: a CID, or a repository id, say." + _KEY_RULES)],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    dht_protocol: DhtProtocolOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Announce that this node provides KEY (a provider record on the closest peers)."""
    kind = _key_kind(key, as_json)
    result = _run(home, "provide", {"key": key}, bootstrap, dht_protocol, timeout, as_json)
    if not as_json:
        typer.echo(
            f"provided {key!r} ({kind}, key {result['key_hex'][:16]}...) to {len(result['stored_at'])} peers"
        )


@app.command("find-providers")
def find_providers(
    key: Annotated[str, typer.Argument(help="A CID, or a repository id, say." + _KEY_RULES)],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000, help="Stop after this many.")] = 20,
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    dht_protocol: DhtProtocolOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """The peers that provide KEY."""
    kind = _key_kind(key, as_json)
    result = _run(home, "find-providers", {"key": key, "count": count}, bootstrap, dht_protocol, timeout, as_json)
    if as_json:
        return
    if result["providers"]:
        _print_peers(result["providers"])
    typer.echo(f"{len(result['providers'])} providers of {key!r} ({kind}, key {result['key_hex'][:16]}...)")


_RECORD_KEY = (
    "The record's name: NAME (this node's /guts/<its peer id>/NAME), OWNER/NAME (another peer's), "
    "or /namespace/name (/guts/OWNER/NAME, /pk/...)."
)


@app.command()
def put(
    key: Annotated[str, typer.Argument(help=_RECORD_KEY + " Under /guts/, only this node's own names.")],
    value: Annotated[str, typer.Argument(help="The value (text).")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    dht_protocol: DhtProtocolOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Store VALUE under KEY on the closest peers, signed with this node's key.

    A value under /guts/ belongs to the node that signed it: a later put
    of the same name replaces it everywhere (a higher sequence number),
    and no other node can. Exits with status 1 when no peer took the
    value, or when this node's own store refused it (then it is not
    republished).
    """
    result = _run(home, "put", {"key": key, "value": value}, bootstrap, dht_protocol, timeout, as_json)
    stored, local = result["stored"], result["stored_locally"]
    seq = f" (seq {result['seq']})" if result.get("seq") is not None else ""
    if not as_json:
        typer.echo(f"stored {result['key']}{seq} at {stored} peers" + ("" if local else ", not in this node's own store"))
    if not stored:
        message = f"{result['key']} was stored at no peer: " + (
            "none of the closest peers took it" if result["queried"] else "no peer to store it at was found"
        )
        fail(message)
    if not local:
        fail(
            f"this node's own store refused {result['key']} (it holds as many values of its own as it may), "
            "so it will not be republished"
        )


@app.command()
def get(
    key: Annotated[str, typer.Argument(help=_RECORD_KEY)],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    dht_protocol: DhtProtocolOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Print the value stored under KEY (the best one found: under /guts/,
    the latest its owner signed)."""
    result = _run(home, "get", {"key": key}, bootstrap, dht_protocol, timeout, as_json)
    if not as_json:
        sys.stdout.buffer.write(bytes.fromhex(result["value_hex"]) + b"\n")
        sys.stdout.buffer.flush()
