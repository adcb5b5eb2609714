"""``guts repo seed|unseed|seeds|block|unblock``: what this node seeds,
through its control API (:mod:`guts.control._seeding`).

They are commands of ``guts repo`` (this module adds them to its app).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from guts._cli.common import HomeOption, call, run_control
from guts._cli.repo import _HINT, FromOption, JsonOption, ProgressOption, _rid, _sync, app

__all__ = ["block", "seed", "seeding_text", "seeds", "unblock", "unseed"]

RidArgument = Annotated[str, typer.Argument(help="The repository id (bafkrei...) or its guts:// URL.")]
ScopeOption = Annotated[
    str,
    typer.Option(
        "--scope",
        help="Whose namespaces to replicate: 'delegates' (what the canonical refs are made of) or 'all' "
        "(contributors' too).",
    ),
]


def _ask(home: Any, method: str, path: str, body: dict[str, Any] | None, as_json: bool) -> dict[str, Any]:
    answer: dict[str, Any] = run_control(call, home, method, path, body, as_json=as_json, hint=_HINT)
    return answer


def _fetch_now(home: Any, rid: str, source: str | None, progress: bool | None, as_json: bool) -> dict[str, Any] | None:
    """Fetch ``rid`` in the foreground; the sync's answer, or ``None``
    (the reason shown) when no peer served it."""
    if as_json or progress is False:
        from guts.control.blocking import ControlError
        from guts.errors import GutsError

        body: dict[str, Any] = {"rid": rid}
        if source is not None:
            body["peer"] = source
        try:
            return call(home, "POST", "/v1/repo/sync", body)
        except (ControlError, GutsError, OSError) as exc:
            if not as_json:
                typer.echo(f"error: {exc}", err=True)
            return None
    try:
        answer, _ = _sync(home, rid, source, progress, as_json)
    except typer.Exit:
        return None  # the reason is on stderr
    return answer


@app.command()
def seed(
    rid: RidArgument,
    scope: ScopeOption = "delegates",
    source: FromOption = None,
    progress: ProgressOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Seed a repository: keep it, follow its announcements, fetch what its
    delegates (or, with --scope all, everyone) sign, and serve it to peers.
    One the node does not hold is fetched now (as `guts repo sync`); if no
    peer has it, the node keeps looking in the background."""
    if scope not in ("delegates", "all"):
        raise typer.BadParameter("is 'delegates' or 'all'", param_hint="--scope")
    rid = _rid(rid)
    answer = _ask(home, "POST", "/v1/repo/seed", {"rid": rid, "scope": scope, "fetch": False}, as_json)
    synced = None
    if not answer["held"]:
        synced = _fetch_now(home, rid, source, progress, as_json)
        if synced is None:  # the node goes on looking
            answer = _ask(home, "POST", "/v1/repo/seed", {"rid": rid, "scope": scope, "fetch": True}, as_json)
    if as_json:
        print(json.dumps({**answer, "synced": synced}, indent=2))
        return
    before = answer["previous_scope"]
    if before is None:
        typer.echo(f"seeding {rid} (scope {scope})")
    elif before != scope:
        typer.echo(f"seeding {rid}: scope {before} -> {scope}")
    else:
        typer.echo(f"seeding {rid} already (scope {scope})")
    if synced is not None:
        info = synced["repository"]
        typer.echo(f"fetched {info['name']!r} from {synced['peer']}")
    elif not answer["held"]:
        typer.echo(
            "no peer served it yet: the node keeps looking (the DHT's seeds, and whoever announces it); "
            f"`guts repo sync {rid} --from MULTIADDR` names a peer"
        )


@app.command()
def unseed(rid: RidArgument, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Stop seeding a repository: no longer followed, fetched or provided in
    the DHT. Its storage stays, and a local git still reads it; `guts repo
    seed` takes it back."""
    rid = _rid(rid)
    answer = _ask(home, "POST", "/v1/repo/unseed", {"rid": rid}, as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    if answer["was_seeded"]:
        typer.echo(f"no longer seeding {rid}")
    else:
        typer.echo(f"{rid} was not seeded; it will not be, until `guts repo seed {rid}`")
    if answer["held"]:
        typer.echo("its storage stays on this node")


def _target(what: str) -> dict[str, str]:
    from guts.errors import InputError
    from guts.peer import PeerId
    from guts.repo.rid import Rid

    text = _rid(what)
    try:
        return {"rid": str(Rid.parse(text))}
    except InputError:
        pass
    try:
        return {"peer": str(PeerId.from_string(text))}
    except InputError:
        raise typer.BadParameter(f"{text!r} is neither a repository id nor a peer id", param_hint="WHAT") from None


@app.command()
def block(
    what: Annotated[str, typer.Argument(help="A repository id (never seeded) or a peer id (its namespaces never replicated).")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Block a repository or a peer on this node."""
    body = _target(what)
    answer = _ask(home, "POST", "/v1/repo/block", body, as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    name = next(iter(body.values()))
    typer.echo(f"blocked {name}" if answer["added"] else f"{name} was blocked already")


@app.command()
def unblock(
    what: Annotated[str, typer.Argument(help="A repository id or a peer id.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take a repository or a peer off this node's block list."""
    body = _target(what)
    answer = _ask(home, "POST", "/v1/repo/unblock", body, as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    name = next(iter(body.values()))
    typer.echo(f"unblocked {name}" if answer["removed"] else f"{name} was not blocked by a command")
    if answer["still_blocked_by_config"]:
        typer.echo("it stays blocked by the configuration (seed_block_* in config.toml or GUTS_SEED_BLOCK_*)")


@app.command()
def seeds(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """What this node seeds, its policy and limits, and what it refused."""
    info = _ask(home, "GET", "/v1/repo/seeds", None, as_json)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    status = info["status"]
    typer.echo(f"policy: {info['policy']} (default scope {info['default_scope']})")
    typer.echo("\n".join(seeding_text(status)))
    for repo in info["seeding"]:
        where = "held" if repo["held"] else "not fetched yet"
        typer.echo(f"  {repo['rid']}  scope {repo['scope']}, {where}")
    for entry in info["blocked_rids"]:
        typer.echo(f"blocked repository: {entry['rid']} ({entry['from']})")
    for entry in info["blocked_peers"]:
        typer.echo(f"blocked peer:       {entry['peer']} ({entry['from']})")
    for rid in info["unseeded"]:
        typer.echo(f"unseeded:           {rid}")


def seeding_text(status: dict[str, Any]) -> list[str]:
    """The seeding lines of ``guts status`` and ``guts repo seeds``."""
    limits = status["limits"]
    lines = [
        f"seeding:      {status['seeded']} of {limits['max_repositories']} repositories, "
        f"{_size(status['storage_bytes'])} of {_size(limits['max_storage_bytes'])}, "
        f"{status['fetches']} of {limits['max_fetches']} fetches (policy {status['policy']})"
    ]
    if status["limits_reached"]:
        lines.append(f"  limits reached: {', '.join(status['limits_reached'])}: new repositories are refused")
    for refusal in status["recent_refusals"][-5:]:
        lines.append(f"  refused {refusal['rid']}: {refusal['detail']} ({refusal['times']}x)")
    return lines


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
