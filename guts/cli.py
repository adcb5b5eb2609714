"""The ``guts`` command: argument parsing, then one ``trio.run``."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from contextlib import aclosing
from typing import Annotated, Any, Optional

import typer

from guts import __version__
from guts._cli import dht as dht_commands
from guts._cli import peers as peers_commands
from guts._cli import pubsub as pubsub_commands
from guts._cli import repo as repo_commands
from guts._cli import seed as seed_commands  # adds its commands to `guts repo`
from guts._cli.common import HomeOption, call, run_control
from guts._cli.common import fail as _fail
from guts._cli.common import setup_logging as _setup_logging

app = typer.Typer(
    help="Guts: peer-to-peer code collaboration over libp2p.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(dht_commands.app, name="dht")
app.add_typer(peers_commands.app, name="peers")
app.add_typer(pubsub_commands.app, name="pubsub")
app.add_typer(repo_commands.app, name="repo")


@app.command()
def version() -> None:
    """Print the Guts version."""
    typer.echo(__version__)


@app.command("id")
def id_(home: HomeOption = None) -> None:
    """Print this node's peer id (creating the identity on first use)."""
    from guts.home import KEY_FILE, default_home
    from guts.crypto import load_or_create_keypair
    from guts.errors import GutsError

    try:
        keypair = load_or_create_keypair((home or default_home()).expanduser() / KEY_FILE)
    except (GutsError, OSError) as exc:
        _fail(str(exc))
    typer.echo(str(keypair.peer_id))


@app.command()
def start(
    home: HomeOption = None,
    listen: Annotated[list[str], typer.Option("--listen", help="Multiaddr to listen on (repeatable).")] = [],
    bootstrap: Annotated[list[str], typer.Option("--bootstrap", help="Peer to dial at start (repeatable).")] = [],
    dht_mode: Annotated[
        Optional[str],
        typer.Option("--dht-mode", help="client | server | auto (server when a listen address is public)."),
    ] = None,
    dht_protocol: Annotated[
        Optional[str], typer.Option("--dht-protocol", help="DHT protocol id (default /guts/kad/1.0.0).")
    ] = None,
    topic: Annotated[
        list[str], typer.Option("--topic", help="Gossip topic to subscribe to; its messages are printed (repeatable).")
    ] = [],
    seed_policy: Annotated[
        Optional[str],
        typer.Option(
            "--seed-policy",
            help="selected: seed what was created, cloned or seeded here (default); all: also every repository "
            "announced on the network, within the seed_max_* limits (a public seed node).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print events as JSON lines on stdout.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run a node until SIGINT or SIGTERM."""
    import trio

    from guts.config import load_config
    from guts.errors import GutsError

    _setup_logging(verbose)
    try:
        config = load_config(
            home, listen=listen, bootstrap=bootstrap, topics=topic, dht_mode=dht_mode, dht_protocol=dht_protocol,
            seed_policy=seed_policy,
        )
    except GutsError as exc:
        _fail(str(exc))
    from guts._cli import heap

    heap.fix_mmap_threshold()
    try:
        trio.run(_run_node, config, as_json)
    except (GutsError, OSError) as exc:
        _fail(str(exc))


async def _run_node(config: Any, as_json: bool) -> None:
    import trio

    from guts._cli import heap
    from guts._cli.events import EventOutput

    output = EventOutput(sys.stdout.fileno())
    trimming = trio.CancelScope()

    async def trim() -> None:
        with trimming:
            await heap.trim_periodically()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(output.run)
            nursery.start_soon(trim)
            try:
                await _serve(config, as_json, output)
            finally:
                trimming.cancel()
                output.close()
    except BaseExceptionGroup as group:  # the node's own error, not wrapped
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _serve(config: Any, as_json: bool, output: Any) -> None:
    """Run the node; every line it prints goes through ``output``
    (:class:`guts._cli.events.EventOutput`), which never blocks."""
    import trio

    from guts.control.node import open_controlled_node
    from guts.host import HostEvent, PeerConnected, PeerDisconnected, PeerIdentified

    def emit(event: dict[str, Any], text: str) -> None:
        output.emit(json.dumps(event) if as_json else text)

    # events of connections made while the node started (bootstrap dials)
    # came before our handler: they are told from the host's state, once
    told: set[tuple[type, Any]] = set()

    def on_event(event: HostEvent) -> None:
        key = (type(event), event.peer_id)
        if key in told:
            told.discard(key)
            return
        if isinstance(event, PeerConnected):
            emit({"event": "peer_connected", "peer_id": str(event.peer_id),
                  "addr": str(event.addr), "direction": event.direction.value},
                 f"connected: {event.peer_id} ({event.direction.value}, {event.addr})")
        elif isinstance(event, PeerDisconnected):
            told.discard((PeerConnected, event.peer_id))
            told.discard((PeerIdentified, event.peer_id))
            emit({"event": "peer_disconnected", "peer_id": str(event.peer_id)}, f"disconnected: {event.peer_id}")
        elif isinstance(event, PeerIdentified):
            emit({"event": "peer_identified", "peer_id": str(event.peer_id),
                  "agent_version": event.agent_version, "protocols": list(event.protocols)},
                 f"identified: {event.peer_id} {event.agent_version or ''}")

    def tell_existing(host: Any) -> None:
        for conn in host.connections:
            on_event(PeerConnected(conn.peer_id, conn.remote_addr, conn.direction))
            told.add((PeerConnected, conn.peer_id))
            agent = host.peerstore.info(conn.peer_id).agent_version
            if agent is not None:
                on_event(PeerIdentified(conn.peer_id, tuple(host.peerstore.protocols(conn.peer_id)), agent, ()))
                told.add((PeerIdentified, conn.peer_id))

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_controlled_node(config) as node:
            node.status_sections["output"] = lambda: {"lines_written": output.written, "lines_dropped": output.dropped}
            node.host.add_event_handler(on_event)
            addrs = [str(a) for a in node.addrs]
            dht = node.dht
            if as_json:
                emit({"event": "ready", "peer_id": str(node.host.peer_id), "addrs": addrs,
                      "dht_mode": dht.mode.value, "topics": list(node.subscriptions)}, "")
            else:
                output.emit(f"peer id: {node.host.peer_id}")
                for a in addrs:
                    output.emit(f"listening on {a}")
                why = ""
                if dht.config.mode.value == "auto":
                    why = " (auto: a server only with a public address; --dht-mode server on a LAN)"
                output.emit(f"dht: {dht.mode.value} mode on {dht.config.protocol}{why}")
                for topic in node.subscriptions:
                    output.emit(f"subscribed to {topic}")
            tell_existing(node.host)  # no checkpoint since the handler was added: nothing is told twice
            async with trio.open_nursery() as nursery:
                for sub in node.subscriptions.values():
                    nursery.start_soon(_print_messages, sub, emit)
                async for signum in signals:
                    logging.getLogger("guts.node").info(
                        "received %s, shutting down", signal.Signals(signum).name
                    )
                    break
                nursery.cancel_scope.cancel()
    if as_json:
        emit({"event": "stopped"}, "")


async def _print_messages(sub: Any, emit: Callable[[dict[str, Any], str], None]) -> None:
    from guts.control.pubsub import message_json

    async for message in sub:
        event = message_json(message)
        shown = event["data"] if event["data"] is not None else f"0x{event['data_hex']}"
        emit(event, f"message on {event['topic']} from {event['from']}: {shown}")


@app.command()
def status(
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show the running node's peer id, addresses, connections and services."""
    info = run_control(call, home, "GET", "/v1/status", as_json=as_json)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    typer.echo(f"peer id:      {info['peer_id']}")
    typer.echo(f"uptime:       {info['uptime_s']:.0f} s")
    for i, addr in enumerate(info["addrs"]):
        typer.echo(f"{'addresses:' if i == 0 else '':<13} {addr}")
    conns = info["connections"]
    typer.echo(f"connections:  {len(conns)}")
    for c in conns:
        agent = f", {c['agent_version']}" if c.get("agent_version") else ""
        typer.echo(f"  {c['peer_id']} {c['direction']} {c['addr']} ({c['streams']} streams{agent})")
    cm = info.get("connmgr")
    if cm:
        for direction in ("inbound", "outbound"):
            n = cm[direction]
            typer.echo(f"  {direction + ':':<10} {n['identified']} identified, {n['unidentified']} unidentified, "
                       f"{n['handshaking']} handshaking; {n['protected']} protected")  # fmt: skip
        limits = cm["limits"]
        typer.echo(f"  limits:    keeps {limits['low_water']} to {limits['high_water']}, at most "
                   f"{limits['max_connections']} ({limits['inbound_budget']} inbound), {limits['max_per_ip']} per IP")  # fmt: skip
        if cm["refused"]:
            typer.echo("  refused:   " + ", ".join(f"{why} {n:,}" for why, n in sorted(cm["refused"].items())))
    dht = info.get("dht")
    if dht:
        typer.echo(
            f"dht:          {dht['mode']} on {dht['protocol']}, routing table {dht['routing_table_size']} peers"
        )
    pubsub = info.get("pubsub")
    if pubsub:
        topics = ", ".join(f"{t} (mesh {pubsub['mesh'][t]})" for t in pubsub["topics"]) or "none"
        typer.echo(f"pubsub:       {pubsub['peers']} peers; topics {topics}")
        dropped = pubsub.get("dropped")
        if dropped:
            typer.echo("  not delivered: " + ", ".join(f"{why} {n:,}" for why, n in sorted(dropped.items())))
    out = info.get("output")
    if out and out["lines_dropped"]:
        typer.echo(f"output:       {out['lines_dropped']:,} event lines dropped (stdout not read fast enough), "
                   f"{out['lines_written']:,} written")  # fmt: skip
    rep = info.get("reputation")
    if rep:
        typer.echo(f"peers:        {rep['blocks']} blocked (`guts peers list`), {rep['peers_scored']} scored; refused "
                   f"{rep['refused_inbound']} connections and {rep['refused_peers']} peers, "
                   f"disconnected {rep['disconnected']}")  # fmt: skip
    if "repos" in info:
        typer.echo(f"repositories: {info['repos']} (`guts repo list`)")
    if "seeding" in info:
        typer.echo("\n".join(seed_commands.seeding_text(info["seeding"])))


@app.command()
def ping(
    addr: Annotated[str, typer.Argument(help="Multiaddr of the peer, e.g. /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW...")],
    count: Annotated[int, typer.Option("--count", "-c", min=1, help="How many pings.")] = 4,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the connection and each answer.")] = 10.0,
) -> None:
    """Ping a peer and print each round trip."""
    import trio

    from guts.errors import GutsError
    from guts.multiaddr import Multiaddr

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        target = Multiaddr.parse(addr)
    except ValueError as exc:
        _fail(str(exc))
    try:
        rtts = trio.run(_ping, target, count, timeout)
    except trio.TooSlowError:
        _fail("timed out")
    except (GutsError, OSError, trio.BrokenResourceError) as exc:
        _fail(str(exc))
    if rtts:
        ms = [r * 1000 for r in rtts]
        import statistics

        typer.echo(f"{len(ms)} pings: min {min(ms):.3f} ms, median {statistics.median(ms):.3f} ms, max {max(ms):.3f} ms")


async def _ping(target: Any, count: int, timeout: float) -> list[float]:
    import trio

    from guts.crypto import KeyPair
    from guts.host import HostConfig, open_host
    from guts.identify import Identify
    from guts.ping import Ping
    from guts.ping import ping as do_ping
    from guts.transport import TcpTransport, WebSocketTransport
    from guts.transport.quic import QuicTransport

    rtts: list[float] = []
    keypair = KeyPair.generate()
    async with open_host(keypair, [TcpTransport(), WebSocketTransport(), QuicTransport(keypair)],
                         HostConfig(connection_timeout=timeout, keep_alive=0)) as host:
        Identify(host)
        Ping(host)
        with trio.fail_after(timeout):
            conn = await host.connect(target)
        typer.echo(f"PING {conn.peer_id} via {target}")
        async with aclosing(do_ping(host, conn.peer_id, count)) as pings:
            while True:
                with trio.fail_after(timeout):
                    try:
                        rtt = await pings.__anext__()
                    except StopAsyncIteration:
                        break
                rtts.append(rtt)
                typer.echo(f"pong from {conn.peer_id}: time={rtt * 1000:.3f} ms")
    return rtts


def main() -> None:
    app()


if __name__ == "__main__":
    main()
