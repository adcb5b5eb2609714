"""What the ``guts`` commands share: options, error output, the control client."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

HomeOption = Annotated[
    Optional[Path], typer.Option("--home", help="Node directory (default: $GUTS_HOME or ~/.guts).")
]


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def home_dir(home: Path | None) -> Path:
    from guts.home import default_home

    return (home or default_home()).expanduser()


def control_path(home: Path | None) -> Path:
    from guts.home import CONTROL_SOCKET

    return home_dir(home) / CONTROL_SOCKET


def call(home: Path | None, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to the running node of ``home``, one JSON answer
    (blocking: a command that only asks a node does not import Trio)."""
    from guts.control.blocking import BlockingControlClient

    return BlockingControlClient(control_path(home)).call(method, path, body)


async def acall(home: Path | None, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`call` inside ``trio.run`` (under a Trio deadline)."""
    from guts.control import ControlClient

    return await ControlClient(control_path(home)).call(method, path, body)


def run_control(fn: Any, *args: Any, as_json: bool = False, hint: str = "start one with `guts start`") -> Any:
    """``fn(*args)`` (``trio.run(fn, *args)`` when ``fn`` is async) with
    the control API's errors turned into one clear line (JSON under
    ``--json``) and exit status 1.

    ``hint`` follows the message when no node is running."""
    import inspect

    from guts.control.blocking import ControlError
    from guts.errors import GutsError, InvalidRecord, NodeNotRunning, PeerNotFound, RecordNotFound

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        if inspect.iscoroutinefunction(fn):
            import trio

            return trio.run(fn, *args)
        return fn(*args)
    except NodeNotRunning as exc:
        message = f"{exc}: {hint}"
        kind = "not_running"
    except ControlError as exc:
        message, kind = str(exc), exc.kind
    except (PeerNotFound, RecordNotFound) as exc:
        message, kind = str(exc), "not_found"
    except (InvalidRecord, ValueError) as exc:
        message, kind = str(exc), "bad_request"
    except (GutsError, OSError) as exc:
        message, kind = str(exc), "error"
    except Exception as exc:
        loop = sys.modules.get("trio")
        if loop is None or not isinstance(exc, loop.TooSlowError):
            raise
        message, kind = "timed out", "timeout"
    if as_json:
        print(json.dumps({"error": message, "kind": kind}), flush=True)
        raise typer.Exit(1)
    fail(message)
