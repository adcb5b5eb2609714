"""``guts pubsub ...``: publish, subscribe and look at a topic's peers,
through the running node's control API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from guts._cli.common import HomeOption, call, control_path, run_control

app = typer.Typer(help="Publish and subscribe on gossip topics.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TopicArgument = Annotated[str, typer.Argument(help="The topic, e.g. guts/announce.")]


@app.command()
def publish(
    topic: TopicArgument,
    data: Annotated[str, typer.Argument(help="The message (text).")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish DATA on TOPIC."""
    result = run_control(call, home, "POST", "/v1/pubsub/publish", {"topic": topic, "data": data}, as_json=as_json)
    if as_json:
        print(json.dumps(result))
        return
    typer.echo(
        f"published {result['message_id'][:16]}... on {topic} "
        f"({result['subscribers']} subscribed peers known, {result['mesh']} in the mesh)"
    )


def _subscribe(home: Path | None, topic: str, as_json: bool) -> None:
    from guts.control.blocking import BlockingControlClient

    for event in BlockingControlClient(control_path(home)).stream("GET", f"/v1/pubsub/subscribe?topic={quote(topic)}"):
        if as_json:
            print(json.dumps(event), flush=True)
        elif event.get("event") == "subscribed":
            typer.echo(f"subscribed to {event['topic']}; Ctrl-C to stop", err=True)
        else:
            shown = event["data"] if event["data"] is not None else f"0x{event['data_hex']}"
            print(f"{event['from']}: {shown}", flush=True)


@app.command()
def subscribe(topic: TopicArgument, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Print TOPIC's messages as they arrive, until interrupted.

    With --json the first line is {"event": "subscribed", ...} and each
    message is a JSON line {"event": "message", "topic", "from", "seqno",
    "data", ...}.
    """
    try:
        run_control(_subscribe, home, topic, as_json, as_json=as_json)
    except KeyboardInterrupt:
        pass


@app.command()
def peers(topic: TopicArgument, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """TOPIC's known subscribers, which of them are in our mesh, and their scores."""
    result: dict[str, Any] = run_control(call, home, "GET", f"/v1/pubsub/peers?topic={quote(topic)}", as_json=as_json)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    typer.echo(f"{topic}: {'subscribed' if result['subscribed'] else 'not subscribed'}, "
               f"{len(result['mesh'])} in the mesh, {len(result['peers'])} known subscribers")
    for p in result["peers"]:
        typer.echo(f"  {p['peer_id']}  {'mesh' if p['in_mesh'] else '    '}  score {p['score']:g}")
