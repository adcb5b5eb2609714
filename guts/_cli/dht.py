"""``guts dht ...``: DHT queries through the running node, or through a
short-lived client-mode node when none runs and ``--bootstrap`` is given."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from guts._cli.common import HomeOption, call, run_control

app = typer.Typer(help="Find peers, providers and values in the DHT.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
BootstrapOption = Annotated[
    list[str],
    typer.Option(
        "--bootstrap",
        help="When no node runs with this home, join the DHT through this peer for the one query (repeatable).",
    ),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Seconds the query may take.")]

_HINT = "start one with `guts start`, or pass --bootstrap MULTIADDR to query through a short-lived node"


async def _operate(home: Path | None, name: str, body: dict[str, Any], bootstrap: list[str], timeout: float) -> dict[str, Any]:
    import trio

    from guts.errors import NodeNotRunning

    with trio.fail_after(timeout):
        try:
            return await call(home, "POST", f"/v1/dht/{name}", body)
        except NodeNotRunning:
            if not bootstrap:
                raise
        return await _one_off(home, name, body, bootstrap)


async def _one_off(home: Path | None, name: str, body: dict[str, Any], bootstrap: list[str]) -> dict[str, Any]:
    """Run the operation on a node of our own: client mode, no listener, no
    control socket, nothing persisted; it lives for this one query."""
    import trio

    from guts.config import load_config
    from guts.control._dht import OPERATIONS
    from guts.errors import DialError, GutsError
    from guts.node import open_node

    config = load_config(home, bootstrap=bootstrap)
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
                f"no bootstrap peer serves the DHT ({node.dht.config.protocol}); "
                "is it a Guts node in server mode, with the same --dht-protocol?"
            )
        if name in ("provide", "put"):
            print(
                "note: no node runs with this home, so the record is published by a short-lived node "
                "that has no listen address and exits now",
                file=sys.stderr,
            )
        return await OPERATIONS[name](node.dht, body)


def _run(home: Path | None, name: str, body: dict[str, Any], bootstrap: list[str], timeout: float, as_json: bool) -> dict[str, Any]:
    result: dict[str, Any] = run_control(_operate, home, name, body, bootstrap, timeout, as_json=as_json, hint=_HINT)
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


@app.command("find-peers")
def find_peers(
    key: Annotated[str, typer.Argument(help="A peer id, or any string (a repository id, say).")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """The k closest peers to KEY, with their addresses and the lookup's figures.

    BITS is how many leading bits a peer shares with the key in the DHT's
    key space (more is closer).
    """
    result = _run(home, "find-peers", {"key": key}, bootstrap, timeout, as_json)
    if as_json:
        return
    peers = result["peers"]
    if peers:
        _print_peers(peers, bits=True)
    typer.echo(f"{len(peers)} closest peers to {key!r} (key {result['key_hex'][:16]}...): {_figures(result)}")


@app.command("find-peer")
def find_peer(
    peer_id: Annotated[str, typer.Argument(help="The peer to find.")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """The addresses of PEER_ID."""
    result = _run(home, "find-peer", {"peer_id": peer_id}, bootstrap, timeout, as_json)
    if not as_json:
        typer.echo(result["peer_id"])
        for addr in result["addrs"]:
            typer.echo(f"  {addr}")


@app.command()
def provide(
    key: Annotated[str, typer.Argument(help="What this node provides: a repository id, say.")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Announce that this node provides KEY (a provider record on the closest peers)."""
    result = _run(home, "provide", {"key": key}, bootstrap, timeout, as_json)
    if not as_json:
        typer.echo(f"provided {key!r} (key {result['key_hex'][:16]}...) to {len(result['stored_at'])} peers")


@app.command("find-providers")
def find_providers(
    key: Annotated[str, typer.Argument(help="A repository id, say.")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000, help="Stop after this many.")] = 20,
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """The peers that provide KEY."""
    result = _run(home, "find-providers", {"key": key, "count": count}, bootstrap, timeout, as_json)
    if as_json:
        return
    if result["providers"]:
        _print_peers(result["providers"])
    typer.echo(f"{len(result['providers'])} providers of {key!r}")


@app.command()
def put(
    key: Annotated[str, typer.Argument(help="The record's name (/guts/KEY), or /namespace/name.")],
    value: Annotated[str, typer.Argument(help="The value (text).")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Store VALUE under KEY on the closest peers."""
    result = _run(home, "put", {"key": key, "value": value}, bootstrap, timeout, as_json)
    if not as_json:
        typer.echo(f"stored {result['key']} at {len(result['stored_at'])} peers")


@app.command()
def get(
    key: Annotated[str, typer.Argument(help="The record's name (/guts/KEY), or /namespace/name.")],
    home: HomeOption = None,
    bootstrap: BootstrapOption = [],
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Print the value stored under KEY (the best one found)."""
    result = _run(home, "get", {"key": key}, bootstrap, timeout, as_json)
    if not as_json:
        sys.stdout.buffer.write(bytes.fromhex(result["value_hex"]) + b"\n")
        sys.stdout.buffer.flush()

