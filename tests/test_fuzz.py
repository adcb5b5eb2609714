"""The fuzz targets (``fuzz/``): the committed corpus replays clean, and a
short coverage-guided run of every target finds no crash.

The corpus replay runs in-process, without atheris. The mutation run is
one ``python -m fuzz --all`` for about a second per target, two targets at
a time (about 35 s in all); a crash fails the test with the crashing
input's hex and the traceback. ``make fuzz`` runs the targets for longer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.__main__ import CORPUS, MAX_CORPUS_BYTES, MAX_CORPUS_FILES
from fuzz.targets import TARGETS, Target, run_one
from guts.errors import DecodeError

ROOT = Path(__file__).resolve().parent.parent

#: The decoders the hardening issue names, each with a target of its own.
REQUIRED = {
    "varint",
    "multistream_dialer",
    "multistream_listener",
    "noise_payload",
    "noise_handshake",
    "noise_frames",
    "yamux_header",
    "yamux_session",
    "identify",
    "kad_message",
    "gossip_rpc",
    "sync_request",
    "sync_response",
    "signed_refs",
    "refs_statement",
    "identity_document",
    "signed_revision",
    "pktline",
    "announcement",
    "multiaddr_bytes",
    "multiaddr_text",
    "peer_id_bytes",
    "peer_id_text",
    "cid_bytes",
    "cid_text",
}


def test_every_decoder_has_a_target() -> None:
    assert REQUIRED <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_committed_corpus_replays_clean(name: str) -> None:
    directory = CORPUS / name
    files = sorted(directory.iterdir())
    assert files, f"{directory} holds no inputs"
    assert len(files) <= MAX_CORPUS_FILES
    assert sum(f.stat().st_size for f in files) <= MAX_CORPUS_BYTES
    for path in files:
        data = path.read_bytes()
        try:
            run_one(TARGETS[name], data)
        except Exception as exc:
            raise AssertionError(f"{name} crashes on {path.name}: {data.hex()}") from exc


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_from_the_encoders_replay_clean(name: str) -> None:
    seeds = TARGETS[name].seeds()
    assert seeds
    for seed in seeds:
        run_one(TARGETS[name], seed)


def test_run_one_accepts_only_the_documented_errors() -> None:
    def refuses(data: bytes) -> None:
        if data == b"bad":
            raise DecodeError("bad input")
        if data == b"bug":
            raise IndexError("a bug")

    target = Target("example", refuses, (DecodeError,), lambda: [])
    run_one(target, b"bad")
    run_one(target, b"good")
    with pytest.raises(IndexError):
        run_one(target, b"bug")


def test_short_mutation_run_finds_no_crash(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    command = [
        sys.executable,
        "-m",
        "fuzz",
        "--all",
        "--seconds=1",
        "--jobs=2",
        f"--corpus={tmp_path / 'corpus'}",
        f"--artifacts={artifacts}",
        f"--logs={tmp_path / 'logs'}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110)
    report = [line for line in done.stdout.splitlines() if line.strip()]
    crashes = sorted(artifacts.glob("*")) if artifacts.exists() else []
    details = [f"{path.name}: {path.read_bytes().hex()}" for path in crashes]
    assert done.returncode == 0 and not crashes, "\n".join(report + details + [done.stderr[-4000:]])
    assert sum(" ok " in line for line in report) == len(TARGETS), "\n".join(report)


def test_a_crash_fails_the_run_and_keeps_its_input(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    command = [
        sys.executable,
        "-m",
        "fuzz",
        "--module=tests.fuzz_crashing",
        "--all",
        "--seconds=20",
        f"--corpus={tmp_path / 'corpus'}",
        f"--artifacts={artifacts}",
        f"--logs={tmp_path / 'logs'}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "buggy" in done.stdout and "CRASH" in done.stdout
    assert "IndexError: a bug in the decoder" in done.stdout
    crashes = list(artifacts.glob("crash-*"))
    assert len(crashes) == 1
    data = crashes[0].read_bytes()
    assert len(data) == 3 and data[0] != data[1]
    assert not (CORPUS / "buggy").exists()
