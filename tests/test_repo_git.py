"""guts.repo._git: git as a Trio subprocess, with a clean environment, a
deadline, bounded output, and no process left behind."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
import trio

from guts.repo._git import (
    STDERR_TAIL,
    GitError,
    GitOutputTooLarge,
    GitTimeout,
    git_env,
    open_git,
    run_git,
    run_git_status,
)


async def init_bare(path: Path) -> Path:
    await run_git(["init", "--bare", "--quiet", str(path)])
    return path


def _dead(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (killed, awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def _wait_dead(pid: int) -> bool:
    for _ in range(100):
        if _dead(pid):
            return True
        await trio.sleep(0.02)
    return False


def test_env_drops_callers_git_variables() -> None:
    env = git_env({"GIT_DIR": "/ours"}, base={"GIT_DIR": "/theirs", "GIT_CONFIG_PARAMETERS": "'x.y'='1'", "HOME": "/h"})
    assert env["GIT_DIR"] == "/ours"
    assert "GIT_CONFIG_PARAMETERS" not in env
    assert env["HOME"] == "/h"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == os.devnull
    assert env["LC_ALL"] == "C" and env["GIT_TERMINAL_PROMPT"] == "0"


async def test_run_git_ignores_callers_repository_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = await init_bare(tmp_path / "elsewhere.git")
    ours = await init_bare(tmp_path / "ours.git")
    monkeypatch.setenv("GIT_DIR", str(elsewhere))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "guts.leak")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "yes")
    out = await run_git(["rev-parse", "--absolute-git-dir"], git_dir=ours)
    assert Path(out.decode().strip()) == ours.resolve()
    result = await run_git_status(["config", "guts.leak"], git_dir=ours)
    assert result.returncode == 1 and result.stdout == b""
    assert await run_git(["config", "--list", "--show-scope"], cwd=tmp_path) == b""


async def test_error_carries_command_status_and_stderr(tmp_path: Path) -> None:
    repo = await init_bare(tmp_path / "r.git")
    with pytest.raises(GitError) as caught:
        await run_git(["rev-parse", "--verify", "refs/heads/nothing"], git_dir=repo)
    assert caught.value.command == ("rev-parse", "--verify", "refs/heads/nothing")
    assert caught.value.returncode == 128
    assert "Needed a single revision" in caught.value.stderr
    assert "Needed a single revision" in str(caught.value)


async def test_stderr_is_kept_as_a_bounded_tail(tmp_path: Path) -> None:
    noisy = "alias.noisy=!i=0; while [ $i -lt 3000 ]; do echo line $i >&2; i=$((i+1)); done; echo last >&2; exit 3"
    with pytest.raises(GitError) as caught:
        await run_git(["-c", noisy, "noisy"], cwd=tmp_path)
    assert caught.value.returncode == 3
    assert len(caught.value.stderr) <= STDERR_TAIL
    assert caught.value.stderr.rstrip().endswith("last")


async def test_stdin_bytes_and_stdout(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    out = await run_git(["hash-object", "--stdin"], cwd=tmp_path, stdin=data)
    assert out.decode().strip() == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


async def test_deadline_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # git runs the alias through a shell: a grandchild, killed with its group.
    hang = f"alias.hang=!echo $$ > {pidfile}; exec sleep 30"
    started = time.monotonic()
    with pytest.raises(GitTimeout) as caught:
        await run_git(["-c", hang, "hang"], cwd=tmp_path, timeout=0.5)
    assert time.monotonic() - started < 5
    assert caught.value.returncode is None
    assert await _wait_dead(int(pidfile.read_text()))


async def test_output_cap_kills(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    endless = f"alias.endless=!echo $$ > {pidfile}; exec yes"
    with pytest.raises(GitOutputTooLarge):
        await run_git(["-c", endless, "endless"], cwd=tmp_path, max_output=100_000, timeout=30)
    assert await _wait_dead(int(pidfile.read_text()))


async def test_cancellation_kills_and_reaps(tmp_path: Path) -> None:
    pids = []
    with trio.move_on_after(0.3) as scope:
        async with open_git(["hash-object", "--stdin"], cwd=tmp_path) as git:
            pids.append(git.pid)
            await trio.sleep_forever()  # git waits on stdin, we on nothing
    assert scope.cancelled_caught
    (pid,) = pids
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already: no zombie of ours
    assert _dead(pid)


async def test_streaming_in_and_out(tmp_path: Path) -> None:
    """A blob streamed in as chunks and read back as chunks."""
    repo = await init_bare(tmp_path / "r.git")
    chunk = os.urandom(1 << 16)
    count = 160  # 10 MiB
    digest = hashlib.sha1(b"blob %d\0" % (len(chunk) * count))
    async with open_git(["hash-object", "-w", "--stdin"], git_dir=repo) as git:
        for _ in range(count):
            await git.stdin.send_all(chunk)  # waits while the pipe is full
            digest.update(chunk)
        await git.close_stdin()
        oid = (await git.read_stdout(100)).decode().strip()
    assert oid == digest.hexdigest()
    received = 0
    async with open_git(["cat-file", "blob", oid], git_dir=repo, stdin=False) as git:
        while data := await git.stdout.receive_some(1 << 16):
            assert len(data) <= 1 << 16
            received += len(data)
    assert received == len(chunk) * count


async def test_streaming_failure_raises_at_exit(tmp_path: Path) -> None:
    repo = await init_bare(tmp_path / "r.git")
    with pytest.raises(GitError) as caught:
        async with open_git(["cat-file", "-t", "1" * 40], git_dir=repo, stdin=False) as git:
            await git.read_stdout(100)
    assert caught.value.returncode == 128
