"""``guts peers list|block|unblock``: the connected peers, their scores, and
the block list of the running node, through its control API
(:mod:`guts.control._peers`).

Arguments are checked here first (a peer id, an address or a CIDR
network; a duration such as ``90s``, ``10m``, ``2h``, ``7d`` or ``1h30m``),
so a typo is refused before the node is asked. Imports no trio.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Optional

import typer

from guts._cli.common import HomeOption, call, run_control

__all__ = ["app", "parse_duration"]

app = typer.Typer(
    help=(
        "The connected peers, their scores, and whom this node blocks. A peer whose score falls is throttled, "
        "then disconnected, then blocked for a while (longer each time); blocks by hand last until lifted, or "
        "for --for."
    ),
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
TargetArgument = Annotated[
    str, typer.Argument(help="A peer id (12D3KooW...), an IP address, or a network in CIDR (203.0.113.0/24).")
]
_HINT = "start one with `guts start`, then run this again"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``10m``, ``2h``, ``7d``, ``1w`` or a sum of them
    (``1h30m``); a bare number is seconds.

    Raises:
        ValueError: none of these, or not positive.
    """
    text = text.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{text!r} is not a duration (say 90s, 10m, 2h, 7d or 1h30m)") from None
    if not 0 < seconds < float("inf"):
        raise ValueError("a duration is positive and finite")
    return seconds


def _body(what: str) -> dict[str, str]:
    import ipaddress

    from guts.errors import InputError
    from guts.peer import PeerId

    text = what.strip()
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    else:
        return {"ip": text}
    try:
        return {"peer": str(PeerId.from_string(text))}
    except InputError:
        raise typer.BadParameter(
            f"{text!r} is neither a peer id, an IP address nor a network (CIDR)", param_hint="TARGET"
        ) from None


def _ask(home: Any, method: str, path: str, body: dict[str, Any] | None, as_json: bool) -> dict[str, Any]:
    answer: dict[str, Any] = run_control(call, home, method, path, body, as_json=as_json, hint=_HINT)
    return answer


def _remaining(block: dict[str, Any]) -> str:
    left = block.get("remaining_s")
    if left is None:
        return "until unblocked"
    return "for " + _span(float(left))


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])


@app.command("list")
def list_(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The connected peers (direction, address, score, verdict) and the block list."""
    info = _ask(home, "GET", "/v1/peers", None, as_json)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    peers = info["peers"]
    if peers:
        table = Table(title=f"{len(peers)} connected peer{'s' if len(peers) != 1 else ''}", title_justify="left")
        for column in ("peer", "direction", "address", "score", "verdict"):
            table.add_column(column, justify="right" if column == "score" else "left", overflow="fold")
        for peer in peers:
            table.add_row(
                peer["peer_id"], peer["direction"], peer["addr"],
                f"{peer['score']:.1f}" if "score" in peer else "-", peer.get("verdict", "-"),
            )  # fmt: skip
        console.print(table)
    else:
        console.print("no connected peers")
    blocks = info.get("blocks", [])
    if not blocks:
        console.print("no blocks")
        return
    total = info.get("blocks_total", len(blocks))
    title = f"{total} block{'s' if total != 1 else ''}" + (f" ({len(blocks)} shown)" if total > len(blocks) else "")
    table = Table(title=title, title_justify="left")
    for column in ("target", "how long", "set", "offences", "reason"):
        table.add_column(column, overflow="fold")
    for block in blocks:
        table.add_row(
            block["target"], _remaining(block), "by hand" if block["manual"] else "by score",
            str(block["offences"]), block["reason"],
        )  # fmt: skip
    console.print(table)


@app.command()
def block(
    target: TargetArgument,
    for_: Annotated[
        Optional[str], typer.Option("--for", help="How long: 90s, 10m, 2h, 7d, 1h30m (default: until unblocked).")
    ] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why, kept with the block.")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Block a peer, an address or a network: connected peers it covers are
    disconnected, and none of them gets back in until it is lifted (or
    expires, with --for). Blocks survive restarts."""
    body: dict[str, Any] = _body(target)
    if for_ is not None:
        try:
            body["duration"] = parse_duration(for_)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--for") from None
    if reason is not None:
        if len(reason) > 200:
            raise typer.BadParameter("at most 200 characters", param_hint="--reason")
        body["reason"] = reason
    answer = _ask(home, "POST", "/v1/peers/block", body, as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    made = answer["block"]
    previous = answer["previous"]
    verb = "blocked" if previous is None else "block replaced:"
    typer.echo(f"{verb} {made['target']} {_remaining(made)}")
    for peer in answer["disconnected"]:
        typer.echo(f"disconnected {peer}")


@app.command()
def unblock(target: TargetArgument, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Lift the block on a peer, an address or a network (and forget its
    offences, so a new automatic block starts short again)."""
    answer = _ask(home, "POST", "/v1/peers/unblock", _body(target), as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    if answer["removed"]:
        typer.echo(f"unblocked {answer['target']}")
    else:
        typer.echo(f"{answer['target']} was not blocked")

