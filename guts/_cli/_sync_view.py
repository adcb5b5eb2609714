"""A sync as people watch it: ``POST /v1/repo/sync`` with ``"progress":
true``, its events shown on stderr as they come.

On a terminal, a rich progress bar per peer asked (bytes received, rate,
the phase); elsewhere (``--progress`` into a pipe or a file), one plain
line per step, no line per chunk. Several peers are asked at once: each
shows how its request ended (failed, or cancelled because another
answered first), and the end names the peer that served and, when more
than one was asked, every peer asked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["sync_with_progress"]


def _short(peer: str) -> str:
    """A peer id or multiaddr, short enough for a progress line."""
    peer_id = peer.rsplit("/p2p/", 1)[-1]
    return peer_id if len(peer_id) <= 20 else f"{peer_id[:8]}…{peer_id[-6:]}"


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB"


def _asked(event: dict[str, Any]) -> str | None:
    """The line naming every peer a finished sync asked, when it asked
    more than the one that served."""
    asked = [_short(peer) for peer in event.get("asked", [])]
    if len(asked) < 2:
        return None
    return f"served by {_short(event['peer'])}; asked {len(asked)} peers: {', '.join(asked)}"


class _Lines:
    """One line per step, for a pipe or a file."""

    def __init__(self) -> None:
        self.phase: dict[str, str] = {}  # the last phase shown, by peer

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, event: dict[str, Any]) -> None:
        kind, peer = event["event"], _short(event.get("peer", ""))
        if kind == "peer":
            self.phase.pop(peer, None)
            print(f"asking {peer}", file=sys.stderr, flush=True)
        elif kind == "lookup":
            print(f"the DHT knows {event['seeds']} more seed(s) of it", file=sys.stderr, flush=True)
        elif kind == "progress" and event["phase"] != self.phase.get(peer):
            self.phase[peer] = event["phase"]
            text = {
                "refs": f"{event['namespaces']} signed namespaces from {peer}, verified",
                "objects": f"receiving objects from {peer}",
                "applying": f"received {_mib(event['received'])}; checking and applying",
            }.get(event["phase"], event["phase"])
            print(text, file=sys.stderr, flush=True)
        elif kind == "failed":
            print(f"{peer}: {event['error']}", file=sys.stderr, flush=True)
        elif kind == "cancelled":
            print(f"{peer}: cancelled, {_short(event['winner'])} answered first", file=sys.stderr, flush=True)
        elif kind == "done" and (line := _asked(event)) is not None:
            print(line, file=sys.stderr, flush=True)


class _Bar:
    """A rich progress bar on a terminal's stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.tasks: dict[str, Any] = {}  # a bar per peer asked

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, event: dict[str, Any]) -> None:
        kind, peer = event["event"], _short(event.get("peer", ""))
        task = self.tasks.get(peer)
        if kind == "peer":
            if task is None:
                self.tasks[peer] = self.progress.add_task(f"asking {peer}", total=None)
            else:
                self.progress.update(task, description=f"asking {peer} again")
        elif kind == "progress" and task is not None:
            phase = {"refs": "signed refs verified", "objects": "receiving", "applying": "checking, applying"}
            self.progress.update(
                task, completed=event["received"], description=f"{peer}: {phase.get(event['phase'], event['phase'])}"
            )
        elif kind == "lookup":
            self.progress.console.print(f"the DHT knows {event['seeds']} more seed(s) of it")
        elif kind == "failed" and task is not None:
            self.end(task, f"{peer}: failed")
            self.progress.console.print(f"{peer}: {event['error']}")
        elif kind == "cancelled" and task is not None:
            self.end(task, f"{peer}: cancelled, {_short(event['winner'])} answered first")
        elif kind == "done" and task is not None:
            self.end(task, f"{peer}: done")
            if (line := _asked(event)) is not None:
                self.progress.console.print(line)

    def end(self, task: Any, description: str) -> None:
        """``task``'s bar stops where it is (its spinner too)."""
        completed = next(t.completed for t in self.progress.tasks if t.id == task)
        self.progress.update(task, description=description, total=completed)


def sync_with_progress(socket: Path, body: dict[str, Any], *, terminal: bool) -> dict[str, Any]:
    """Run a sync through the node at ``socket``, showing its progress;
    the answer (as ``POST /v1/repo/sync`` without progress answers).

    Raises:
        ControlError: no peer completed it, or the node refused it.
    """
    from guts.control.blocking import BlockingControlClient, ControlError

    view = _Bar() if terminal else _Lines()
    with view:
        for event in BlockingControlClient(socket).stream("POST", "/v1/repo/sync", {**body, "progress": True}):
            view.show(event)
            if event["event"] == "done":
                return {key: value for key, value in event.items() if key != "event"}
            if event["event"] == "error":
                raise ControlError(int(event["status"]), str(event["kind"]), str(event["message"]))
    raise ValueError("the node ended the sync without saying how it ended")
