"""``guts repo ...``: make, list, show, sync and clone the repositories of
the running node, through its control API.

``init`` is the one command that also touches the person's repository:
once the node has made the Guts repository, it adds a ``guts`` remote
(``guts://<RID>``) with the person's own git, in their environment.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import quote

import typer

from guts._cli import repo_id
from guts._cli.common import HomeOption, call, control_path, fail, home_dir, run_control

app = typer.Typer(
    help="Make, list, show, sync, clone and seed repositories on this node.", no_args_is_help=True
)
app.add_typer(repo_id.app, name="id")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
REMOTE = "guts"
_HINT = "start one with `guts start` (it keeps running), then run this again"


def _git(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The person's git, in their environment: the remote is theirs.
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=30, check=False)


def add_remote(where: Path, url: str) -> dict[str, Any]:
    """Add the ``guts`` remote to the repository at ``where``, unless it is
    there already; what happened, as ``{"name", "url", "status", ...}``
    with ``status`` one of ``added``, ``exists``, ``conflict``, ``failed``."""
    out: dict[str, Any] = {"name": REMOTE, "url": url}
    try:
        current = _git(where, "remote", "get-url", REMOTE)
        if current.returncode == 0:
            existing = current.stdout.strip()
            out["status"] = "exists" if existing == url else "conflict"
            out["existing_url"] = existing
            return out
        added = _git(where, "remote", "add", REMOTE, url)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {**out, "status": "failed", "error": str(exc)}
    if added.returncode != 0:
        return {**out, "status": "failed", "error": added.stderr.strip()}
    return {**out, "status": "added"}


def _remote_text(remote: dict[str, Any], where: Path) -> str:
    status, url = remote["status"], remote["url"]
    if status == "added":
        return f"added the remote '{REMOTE}' ({url}) to {where}"
    if status == "exists":
        return f"the remote '{REMOTE}' of {where} is {url} already"
    if status == "conflict":
        return (
            f"{where} has a remote '{REMOTE}' already, for {remote['existing_url']}: left as it is "
            f"(`git remote set-url {REMOTE} {url}` points it at this repository)"
        )
    return f"could not add the remote '{REMOTE}': {remote.get('error')} (`git remote add {REMOTE} {url}` does it)"


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="The git repository (a work tree or a bare repository).")] = Path("."),
    name: Annotated[Optional[str], typer.Option("--name", help="Name (default: the directory's).")] = None,
    description: Annotated[Optional[str], typer.Option("--description", help="One line or a paragraph.")] = None,
    default_branch: Annotated[
        Optional[str], typer.Option("--default-branch", help="Default: the current branch, else main.")
    ] = None,
    delegate: Annotated[
        list[str], typer.Option("--delegate", help="Another delegate's peer id, besides this node (repeatable).")
    ] = [],
    threshold: Annotated[
        int, typer.Option("--threshold", min=1, help="How many delegates must sign a canonical ref.")
    ] = 1,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the git repository at PATH a Guts repository of the running node
    and add a `guts` remote to it."""
    where = path.expanduser().absolute()
    body: dict[str, Any] = {"path": os.path.normpath(where), "delegates": delegate, "threshold": threshold}
    for key, value in (("name", name), ("description", description), ("default_branch", default_branch)):
        if value is not None:
            body[key] = value
    result: dict[str, Any] = run_control(call, home, "POST", "/v1/repo/init", body, as_json=as_json, hint=_HINT)
    remote = add_remote(where, result["url"])
    if as_json:
        print(json.dumps({**result, "remote": remote}, indent=2))
        return
    branches = sum(1 for ref in result["refs"] if ref.startswith("refs/heads/"))
    tags = len(result["refs"]) - branches
    typer.echo(f"made repository {result['name']!r}: {result['rid']}")
    typer.echo(f"  url:            {result['url']}")
    typer.echo(f"  default branch: {result['default_branch']}")
    typer.echo(f"  delegates:      {len(result['delegates'])} (threshold {result['threshold']})")
    typer.echo(f"  refs:           {_count(branches, 'branch', 'branches')}, {_count(tags, 'tag', 'tags')}")
    typer.echo(_remote_text(remote, where))
    steps = [
        (f"guts repo show {result['rid']}", "what the node holds"),
        (f"git push {REMOTE} {result['default_branch']}", "sign and publish new commits through this node"),
        (f"git clone {result['url']}", "through this node, or one connected to it"),
    ]
    width = max(len(command) for command, _ in steps)
    typer.echo("\nnext:")
    for command, why in steps:
        typer.echo(f"  {command:<{width}}  # {why}")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@app.command("list")
def list_(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The repositories of the running node."""
    result: dict[str, Any] = run_control(call, home, "GET", "/v1/repo/list", as_json=as_json, hint=_HINT)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    repos = result["repositories"]
    if not repos:
        typer.echo("no repositories yet: `guts repo init PATH` makes one of a git repository")
        return
    width = max(len("NAME"), *(len(repo["name"]) for repo in repos))
    typer.echo(f"{'RID':<59}  {'NAME':<{width}}  {'REFS':>5}  DELEGATES")
    for repo in repos:
        typer.echo(
            f"{repo['rid']:<59}  {repo['name']:<{width}}  {repo['refs']:>5}  "
            f"{repo['delegates']} (threshold {repo['threshold']})"
        )


def show_text(info: dict[str, Any]) -> list[str]:
    """``guts repo show`` for people: identity, delegates, canonical refs,
    namespaces, divergences."""
    revisions = info["revisions"]
    lines = [
        f"rid:            {info['rid']}",
        f"url:            {info['url']}",
        f"name:           {info['name']}",
    ]
    if info["description"]:
        lines.append(f"description:    {info['description']}")
    lines += [
        f"default branch: {info['default_branch']}",
        f"identity:       {revisions} revision{'s' if revisions != 1 else ''}",
        f"delegates:      {len(info['delegates'])}, threshold {info['threshold']}",
    ]
    for delegate in info["delegates"]:
        if delegate["seq"] is None:
            where = "no statement yet"
        else:
            where = f"seq {delegate['seq']}, " + ("agrees" if delegate["agrees"] else "differs from the canonical refs")
        lines.append(f"  {delegate['peer_id']}  {where}")
    lines.append(f"canonical refs: {len(info['refs'])}")
    lines += [f"  {oid}  {name}" for name, oid in info["refs"].items()]
    lines.append(f"namespaces:     {len(info['namespaces'])}")
    for ns in info["namespaces"]:
        role = "delegate" if ns["delegate"] else "contributor"
        lines.append(f"  {ns['peer_id']}  {role}, seq {ns['seq']}, {ns['refs']} refs")
    for refused in info["refused"]:
        lines.append(f"  {refused['peer_id']}  refused: {refused['reason']}")
    if not info["divergences"]:
        lines.append("divergences:    none")
    else:
        lines.append(f"divergences:    {len(info['divergences'])} (these refs keep their value until delegates agree)")
        for divergence in info["divergences"]:
            lines.append(f"  {divergence['ref']}  kept at {divergence['kept'] or '(absent)'}")
            for candidate in divergence["candidates"]:
                lines.append(f"    {candidate['oid']}  signed by {', '.join(candidate['signers'])}")
    return lines


def _rid(text: str) -> str:
    return text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text


ProgressOption = Annotated[
    Optional[bool],
    typer.Option("--progress/--no-progress", help="Show progress on stderr (default: when stderr is a terminal)."),
]
FromOption = Annotated[
    Optional[str],
    typer.Option("--from", help="The peer to fetch from (a multiaddr ending in /p2p/<peer id>, or a peer id)."),
]


def _sync(
    home: Path | None, rid: str, source: str | None, progress: bool | None, as_json: bool
) -> tuple[dict[str, Any], bool]:
    """Run a sync through the node, with progress on stderr when asked (or
    when stderr is a terminal and the output is for people); the answer,
    and whether progress (each peer's failure included) was shown."""
    body: dict[str, Any] = {"rid": rid}
    if source is not None:
        body["peer"] = source
    terminal = sys.stderr.isatty()
    if progress is None:
        progress = terminal and not as_json
    answer: dict[str, Any]
    if not progress:
        answer = run_control(call, home, "POST", "/v1/repo/sync", body, as_json=as_json, hint=_HINT)
        return answer, False
    from guts._cli._sync_view import sync_with_progress

    show = functools.partial(sync_with_progress, terminal=terminal)
    answer = run_control(show, control_path(home), body, as_json=as_json, hint=_HINT)
    return answer, True


@app.command()
def sync(
    rid: Annotated[str, typer.Argument(help="The repository id (bafkrei...) or its guts:// URL.")],
    source: FromOption = None,
    progress: ProgressOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch a repository from a peer now: the one given, else the connected
    peers, then the DHT's seeds, three at once (the first whose signed state
    verifies serves). Only what verifies is applied."""
    result, shown = _sync(home, _rid(rid), source, progress, as_json)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if not shown:
        for failure in result["failures"]:
            typer.echo(f"{failure['peer']}: {failure['error']}", err=True)
    info = result["repository"]
    if result["changed"]:
        typer.echo(f"synced {info['name']!r} ({info['rid']}) from {result['peer']}")
    else:
        typer.echo(f"{info['name']!r} ({info['rid']}) is up to date with {result['peer']}")
    typer.echo("\n".join(show_text(info)))


@app.command()
def clone(
    rid: Annotated[str, typer.Argument(help="The repository id (bafkrei...) or its guts:// URL.")],
    directory: Annotated[
        Optional[Path], typer.Argument(help="Where to clone it (default: a directory named after the repository).")
    ] = None,
    source: FromOption = None,
    progress: ProgressOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Clone a repository with git through this node: fetched from peers
    first when the node does not hold it (as `guts repo sync`), then
    `git clone guts://RID DIR`."""
    rid = _rid(rid)
    held: dict[str, Any] = run_control(call, home, "GET", "/v1/repo/list", as_json=as_json, hint=_HINT)
    info = next((repo for repo in held["repositories"] if repo["rid"] == rid), None)
    if directory is not None:
        _check_destination(directory.expanduser(), as_json)
    synced = None
    if info is None or source is not None:
        synced, _ = _sync(home, rid, source, progress, as_json)
        info = synced["repository"]
        if not as_json:
            typer.echo(f"fetched {info['name']!r} from {synced['peer']}", err=True)
    where = (directory or Path(info["name"])).expanduser()
    _check_destination(where, as_json)
    quiet = as_json or progress is False or (progress is None and not sys.stderr.isatty())
    args = ["git", "clone", *(["--quiet"] if quiet else ["--progress"] if progress else []), f"guts://{rid}", str(where)]
    done = subprocess.run(args, env=_git_env(home), stdout=subprocess.DEVNULL if as_json else None, check=False)
    if done.returncode != 0:
        if as_json:
            print(json.dumps({"error": f"git clone exited with {done.returncode}", "kind": "git"}))
        else:
            typer.echo(f"error: git clone exited with {done.returncode}", err=True)
        raise typer.Exit(1)
    answer = {"rid": rid, "path": os.path.abspath(where), "synced": synced is not None}
    if as_json:
        print(json.dumps({**answer, "peer": synced["peer"] if synced else None}, indent=2))
    else:
        typer.echo(f"cloned {info['name']!r} into {where}: `git push` there publishes through this node")


def _check_destination(where: Path, as_json: bool) -> None:
    """Refuse, before any fetch, a destination git clone would refuse."""
    if where.exists() and (not where.is_dir() or any(where.iterdir())):
        message = f"destination path '{where}' already exists and is not an empty directory"
        if as_json:
            print(json.dumps({"error": message, "kind": "bad_request"}))
            raise typer.Exit(1)
        fail(message)


def _git_env(home: Path | None) -> dict[str, str]:
    """The person's environment for git, with this node's home and with
    git-remote-guts (installed beside this command) on ``PATH``."""
    env = dict(os.environ)
    env["GUTS_HOME"] = str(home_dir(home))
    scripts = str(Path(sys.argv[0]).resolve().parent) if sys.argv and sys.argv[0] else ""
    here = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (scripts, here, env.get("PATH", "")) if p)
    return env


@app.command()
def show(
    rid: Annotated[str, typer.Argument(help="The repository id (bafkrei...) or its guts:// URL.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """A repository's identity, delegates, canonical refs, namespaces and divergences."""
    rid = _rid(rid)
    info: dict[str, Any] = run_control(
        call, home, "GET", f"/v1/repo/show?rid={quote(rid, safe='')}", as_json=as_json, hint=_HINT
    )
    if as_json:
        print(json.dumps(info, indent=2))
        return
    typer.echo("\n".join(show_text(info)))
