"""Running git: one subprocess per command, through Trio, bounded.

Every git the repository wing starts goes through here, so that the rules
hold in one place:

* **A clean environment.** git reads no system or global configuration
  (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``), none of the
  caller's ``GIT_*`` variables leaks in (a ``GIT_DIR`` or
  ``GIT_OBJECT_DIRECTORY`` set around the node would point git at another
  repository), messages are in the C locale (we match on some of them),
  and git never prompts. ``HOME`` is left alone.
* **A deadline.** Past it the process is killed and :class:`GitTimeout`
  raised. The deadline covers the whole life of the process, including
  the time the caller takes to feed or drain a streaming one.
* **Bounded output.** What :func:`run_git` captures of stdout is capped:
  past the cap the process is killed and :class:`GitOutputTooLarge`
  raised. Of stderr only a tail is kept, for the error message.
* **No orphans.** git starts in a session of its own, and on any exit
  that is not a clean one (an error, a deadline, a cancellation) the
  whole process group is killed (``upload-pack`` has a ``pack-objects``
  child, an alias a shell) and the child reaped, shielded from the
  cancellation that caused it.

:func:`run_git` is for commands with small inputs and outputs;
:func:`open_git` is the streaming form for packs: the caller writes stdin
and reads stdout as chunks, and a full pipe makes the writer wait
(backpressure), so nothing holds a whole pack in memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from guts.errors import GutsError

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_TIMEOUT",
    "GitError",
    "GitOutputTooLarge",
    "GitProcess",
    "GitResult",
    "GitTimeout",
    "git_env",
    "open_git",
    "run_git",
    "run_git_status",
    "single_error",
]

GIT = "git"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
#: Bytes of stderr kept for an error message (the end is where git says why).
STDERR_TAIL = 8 * 1024
#: Read size for pipes: what a Linux pipe holds.
CHUNK = 64 * 1024


class GitError(GutsError):
    """A git command failed.

    Attributes:
        command: the arguments given to git.
        returncode: its exit status (negative: killed by that signal), or
            ``None`` if it never exited on its own.
        stderr: the tail of what it wrote on stderr, decoded leniently.
    """

    def __init__(self, command: Sequence[str], returncode: int | None, stderr: str, reason: str = "") -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.stderr = stderr
        why = reason or f"exit status {returncode}"
        last = stderr.strip().splitlines()[-1:] if stderr.strip() else []
        super().__init__(f"git {_short(self.command)}: {why}" + (f": {last[0]}" if last else ""))


class GitTimeout(GitError):
    """The command outlived its deadline and was killed."""


class GitOutputTooLarge(GitError):
    """The command wrote more than the captured-output cap and was killed."""


@dataclass(frozen=True, slots=True)
class GitResult:
    """What a finished command left: exit status, stdout, stderr's tail."""

    returncode: int
    stdout: bytes
    stderr: str


def _short(command: Sequence[str], limit: int = 120) -> str:
    text = " ".join(command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def single_error() -> Iterator[None]:
    """Let a nursery's lone exception out as itself, not in a group (as
    :func:`guts.host.open_host` does), so callers catch typed errors."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def git_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment git runs in: ``base`` (default: ours) without any
    ``GIT_*`` variable, plus the fixed settings, plus ``extra``.

    ``extra`` is where a caller says which repository and object
    directories to use (``GIT_DIR``, the quarantine's variables).
    """
    source = os.environ if base is None else base
    env = {key: value for key, value in source.items() if not key.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        # Replacement refs would let a repository show another history than
        # its objects hold; storage checks the objects themselves.
        GIT_NO_REPLACE_OBJECTS="1",
        GIT_ATTR_NOSYSTEM="1",
        LC_ALL="C",
        LANGUAGE="C",
    )
    if extra:
        env.update(extra)
    return env


class GitProcess:
    """A running git, as :func:`open_git` yields it.

    ``stdin`` and ``stdout`` are Trio streams: ``send_all`` waits while the
    pipe is full, so a fast producer is held to git's pace.
    """

    def __init__(self, command: Sequence[str], process: trio.Process) -> None:
        self.command = tuple(command)
        self._process = process
        self._stderr = bytearray()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def stdin(self) -> trio.abc.SendStream:
        if self._process.stdin is None:
            raise RuntimeError("this git was started without a stdin pipe")
        return self._process.stdin

    @property
    def stdout(self) -> trio.abc.ReceiveStream:
        assert self._process.stdout is not None
        return self._process.stdout

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stderr(self) -> str:
        """The tail of stderr so far (the last :data:`STDERR_TAIL` bytes)."""
        return self._stderr.decode("utf-8", "replace")

    async def close_stdin(self) -> None:
        """Send EOF to git (idempotent)."""
        if self._process.stdin is not None:
            await self._process.stdin.aclose()

    async def read_stdout(self, max_output: int) -> bytes:
        """Everything git writes on stdout until EOF, at most ``max_output``
        bytes; past that, :class:`GitOutputTooLarge` (the context then kills
        the process)."""
        out = bytearray()
        while chunk := await self.stdout.receive_some(CHUNK):
            out += chunk
            if len(out) > max_output:
                raise GitOutputTooLarge(self.command, None, self.stderr, f"output over {max_output} bytes")
        return bytes(out)

    async def _drain_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := await stream.receive_some(CHUNK):
            self._stderr += chunk
            if len(self._stderr) > STDERR_TAIL:
                del self._stderr[: len(self._stderr) - STDERR_TAIL]

    def _kill(self) -> None:
        """SIGKILL the process group, if the leader is not reaped yet (while
        it is not, its pid cannot name another group)."""
        if self._process.poll() is not None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self._process.kill()


@asynccontextmanager
async def open_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> AsyncIterator[GitProcess]:
    """Start ``git <args>`` and yield it as a :class:`GitProcess`.

    When the block ends normally, stdin is closed and the process waited
    for (it must have been drained: a git blocked on a full stdout pipe
    waits for the deadline); with ``check``, a non-zero exit raises
    :class:`GitError`. When the block raises or is cancelled, the process
    group is killed and reaped before the exception goes on.

    Args:
        args: git's arguments (``["index-pack", "--stdin"]``).
        git_dir: the repository (``GIT_DIR``; also the working directory
            unless ``cwd`` is given).
        env: extra environment variables (see :func:`git_env`).
        stdin: give git a stdin pipe (otherwise ``/dev/null``).
        timeout: seconds from start to exit, the block included.
        check: raise :class:`GitError` on a non-zero exit status.
    """
    extra = dict(env or {})
    if git_dir is not None:
        extra["GIT_DIR"] = str(git_dir)
    command = list(args)
    process = await trio.lowlevel.open_process(
        [GIT, *command],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=git_env(extra),
        cwd=None if (cwd or git_dir) is None else str(cwd or git_dir),
        start_new_session=True,
    )
    git = GitProcess(command, process)
    clean = False
    try:
        with trio.move_on_after(timeout) as deadline, single_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(git._drain_stderr)
                yield git
                await git.close_stdin()
                await process.wait()
            clean = True
    finally:
        if not clean:
            git._kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()
    if deadline.cancelled_caught:
        raise GitTimeout(command, None, git.stderr, f"killed after its {timeout:g} s deadline")
    if check and process.returncode != 0:
        raise GitError(command, process.returncode, git.stderr)


async def _feed(git: GitProcess, data: bytes) -> None:
    try:
        await git.stdin.send_all(data)
        await git.close_stdin()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # git stopped reading: its exit status says why


async def run_git_status(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> GitResult:
    """Run ``git <args>`` to its end and return its status and output, for
    commands whose exit status is an answer (``merge-base --is-ancestor``).

    Raises :class:`GitTimeout` and :class:`GitOutputTooLarge`, never
    :class:`GitError` for a non-zero status.
    """
    async with open_git(
        args, git_dir=git_dir, cwd=cwd, env=env, stdin=stdin is not None, timeout=timeout, check=False
    ) as git:
        with single_error():
            async with trio.open_nursery() as nursery:
                if stdin is not None:
                    nursery.start_soon(_feed, git, stdin)
                out = await git.read_stdout(max_output)
    assert git.returncode is not None
    return GitResult(git.returncode, out, git.stderr)


async def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> bytes:
    """Run ``git <args>`` and return its stdout; :class:`GitError` if it
    exits non-zero (see :func:`open_git` for the arguments)."""
    result = await run_git_status(
        args, git_dir=git_dir, cwd=cwd, env=env, stdin=stdin, timeout=timeout, max_output=max_output
    )
    if result.returncode != 0:
        raise GitError(args, result.returncode, result.stderr)
    return result.stdout
