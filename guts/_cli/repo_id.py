"""``guts repo id ...``: a repository's identity and its revisions, through
the running node's control API (:mod:`guts.control._identity`).

A delegate proposes a revision (``propose``: its node signs it), the other
delegates accept it from their nodes (``accept``, after ``guts repo sync``
brought the proposal), and the revision takes effect once the current
threshold of delegates signed it; ``show`` says where each stands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import quote

import typer

from guts._cli.common import HomeOption, call, run_control

app = typer.Typer(help="A repository's identity: show it, propose a revision, accept one.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RidArgument = Annotated[str, typer.Argument(help="The repository id (bafkrei...) or its guts:// URL.")]
_HINT = "start one with `guts start` (it keeps running), then run this again"
_SHORT = 12


def _rid(text: str) -> str:
    return text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text


def change_lines(changes: dict[str, Any]) -> list[str]:
    """What a revision changes, one line a field."""
    lines = []
    for field in ("name", "description", "default_branch", "threshold"):
        if field in changes:
            old, new = changes[field]["from"], changes[field]["to"]
            if field == "threshold":
                lines.append(f"threshold:      {old} -> {new}")
            else:
                lines.append(f"{field.replace('_', ' ') + ':':<15} {old!r} -> {new!r}")
    delegates = changes.get("delegates")
    if delegates is not None:
        lines += [f"delegate added:   {peer}" for peer in delegates.get("added", [])]
        lines += [f"delegate removed: {peer}" for peer in delegates.get("removed", [])]
        if "reordered" in delegates:
            lines.append(f"delegates reordered: {', '.join(delegates['reordered'])}")
    return lines


def _accept_hint(rid: str, pid: str) -> str:
    return f"next: ask another delegate to run `guts repo id accept {rid} {pid[:_SHORT]}` after `guts repo sync {rid}`"


def show_text(info: dict[str, Any]) -> list[str]:
    """``guts repo id show`` for people."""
    revision = info["revision"]
    count = info["revisions"]
    lines = [
        f"rid:            {info['rid']}",
        f"name:           {info['name']}",
    ]
    if info["description"]:
        lines.append(f"description:    {info['description']}")
    lines += [
        f"default branch: {info['default_branch']}",
        f"in effect:      revision {revision['number']} ({revision['id'][:_SHORT]}), "
        f"{count} revision{'s' if count != 1 else ''} in the chain",
        f"delegates:      {len(info['delegates'])}, threshold {info['threshold']}",
    ]
    lines += [f"  {peer}" for peer in info["delegates"]]
    proposals = info["proposals"]
    if not proposals:
        lines.append("pending:        none (`guts repo id propose` drafts a revision)")
        return lines
    lines.append(f"pending:        {len(proposals)}")
    for proposal in proposals:
        lines.append(
            f"  {proposal['id'][:_SHORT]}  revision {proposal['revision']}, "
            f"signed {proposal['signatures']} of {proposal['threshold']}"
        )
        lines += [f"    {line}" for line in change_lines(proposal["changes"])]
        lines += [f"    signed by {peer}" for peer in proposal["signers"]]
    if len(proposals) == 1:
        lines.append(_accept_hint(info["rid"], proposals[0]["id"]))
    else:
        rid = info["rid"]
        lines.append(f"next: ask another delegate to run `guts repo id accept {rid} <id>` after `guts repo sync {rid}`")
    return lines


def answer_text(answer: dict[str, Any], verb: str) -> list[str]:
    """What ``propose`` and ``accept`` print for people."""
    info = answer["identity"]
    rid, pid = info["rid"], answer["id"]
    if answer["status"] == "in_effect":
        lines = [f"identity revision {info['revisions']} of {info['name']!r} is in effect ({pid[:_SHORT]})"]
        if not answer["signed"]:
            lines[0] += ": nothing to sign"
        lines += [f"  {line}" for line in change_lines(answer["changes"])]
        lines.append(f"delegates:      {len(info['delegates'])}, threshold {info['threshold']}")
        lines.append(f"next: `guts repo sync {rid}` on the other delegates' nodes brings it there")
        return lines
    proposal = answer["proposal"]
    what = f"{verb} identity revision {proposal['revision']} of {info['name']!r}: {pid[:_SHORT]}"
    if not answer["signed"]:
        what = f"this node signed identity revision {proposal['revision']} ({pid[:_SHORT]}) already"
    lines = [what, f"  id: {pid}"]
    lines += [f"  {line}" for line in change_lines(answer["changes"])]
    lines.append(f"signatures:     {proposal['signatures']} of {proposal['threshold']}")
    lines += [f"  {peer}" for peer in proposal["signers"]]
    lines.append(_accept_hint(rid, pid))
    return lines


@app.command()
def show(rid: RidArgument, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """The identity in effect, its delegates, and the pending proposals."""
    info: dict[str, Any] = run_control(
        call, home, "GET", f"/v1/repo/identity?rid={quote(_rid(rid), safe='')}", as_json=as_json, hint=_HINT
    )
    if as_json:
        print(json.dumps(info, indent=2))
        return
    typer.echo("\n".join(show_text(info)))


@app.command()
def propose(
    rid: RidArgument,
    name: Annotated[Optional[str], typer.Option("--name", help="The new name.")] = None,
    description: Annotated[Optional[str], typer.Option("--description", help="The new description.")] = None,
    default_branch: Annotated[
        Optional[str], typer.Option("--default-branch", help="The new default branch.")
    ] = None,
    add_delegate: Annotated[
        list[str], typer.Option("--add-delegate", help="A peer id to make a delegate (repeatable).")
    ] = [],
    remove_delegate: Annotated[
        list[str], typer.Option("--remove-delegate", help="A delegate's peer id to remove (repeatable).")
    ] = [],
    threshold: Annotated[
        Optional[int], typer.Option("--threshold", min=1, help="Delegates who must sign (refs and revisions).")
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose the next identity revision, signed by this node (a delegate).

    It takes effect once the current threshold of delegates signed it."""
    body: dict[str, Any] = {"rid": _rid(rid)}
    for key, value in (("name", name), ("description", description), ("default_branch", default_branch)):
        if value is not None:
            body[key] = value
    if threshold is not None:
        body["threshold"] = threshold
    if add_delegate or remove_delegate:
        body["delegates"] = {"add": add_delegate, "remove": remove_delegate}
    answer = _post(home, "/v1/repo/identity/propose", body, as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    typer.echo("\n".join(answer_text(answer, "proposed")))


@app.command()
def accept(
    rid: RidArgument,
    proposal: Annotated[str, typer.Argument(help="The proposal's id, or its first characters (at least 4).")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign a pending proposal as this node (a delegate).

    Run `guts repo sync RID` first to bring it from the proposer's node."""
    answer = _post(home, "/v1/repo/identity/accept", {"rid": _rid(rid), "proposal": proposal}, as_json)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    typer.echo("\n".join(answer_text(answer, "accepted")))


def _post(home: Path | None, path: str, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    answer: dict[str, Any] = run_control(call, home, "POST", path, body, as_json=as_json, hint=_HINT)
    return answer
