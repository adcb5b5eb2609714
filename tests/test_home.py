"""GUTS_HOME is private: created 0700, its files 0600, and a home that
others can write is refused with a message that says what to do."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from guts.dht import DhtStore
from guts.errors import ConfigError
from guts.home import prepare_home


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what a shell usually gives
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_home_and_its_missing_parents_are_0700(tmp_path: Path) -> None:
    home = tmp_path / "a" / "b" / "home"
    assert prepare_home(home) == home
    assert mode(home) == 0o700
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700


def test_files_the_node_creates_afterwards_are_0600(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "home")
    store = DhtStore.in_home(home)  # sqlite creates dht.sqlite, -wal, -shm
    try:
        store._db.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        (home / "config.toml").write_text("")
        created = sorted(p.name for p in home.iterdir())
        assert "dht.sqlite" in created and "dht.sqlite-wal" in created
        assert {p.name: mode(p) for p in home.iterdir()} == {name: 0o600 for name in created}
    finally:
        store.close()


def test_without_the_umask_files_keep_the_process_default(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "home", private_umask=False)
    (home / "x").write_text("")
    assert mode(home / "x") == 0o644 and mode(home) == 0o700


@pytest.mark.parametrize("bits", [0o777, 0o770, 0o702, 0o720])
def test_a_home_others_can_write_is_refused(tmp_path: Path, bits: int) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, bits)
    with pytest.raises(ConfigError, match=rf"can be written by other users \(mode {bits:04o}\).*chmod 700 {home}"):
        prepare_home(home)
    assert mode(home) == bits  # left for its owner to look at


def test_a_home_others_can_read_is_narrowed_with_its_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="guts.home")
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "dht.sqlite").write_text("")
    os.chmod(home / "dht.sqlite", 0o644)
    (home / "storage").mkdir()
    prepare_home(home)
    assert mode(home) == 0o700 and mode(home / "dht.sqlite") == 0o600
    assert len([r for r in caplog.records if "narrowed" in r.getMessage()]) == 2


def test_a_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_home(tmp_path / "home")
