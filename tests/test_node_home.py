"""A node's home is private: created 0700 with its files 0600, and a home
others can write is refused before anything is read from it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from guts.config import NodeConfig
from guts.errors import ConfigError
from guts.multiaddr import Multiaddr
from guts.node import open_node
from guts.transport import MemoryNetwork, MemoryTransport


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_a_node_home_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = NodeConfig(home=home, listen=(Multiaddr.parse("/memory/0"),), keep_alive=0)
    async with open_node(config, transports=[MemoryTransport(MemoryNetwork())]):
        pass
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    files = {p.name: stat.S_IMODE(os.lstat(p).st_mode) for p in home.iterdir() if p.is_file()}
    assert "dht.sqlite" in files and "seeds.sqlite" in files and "identity.key" in files
    assert set(files.values()) == {0o600}, files


async def test_a_home_others_can_write_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o777)
    config = NodeConfig(home=home, listen=(Multiaddr.parse("/memory/0"),), keep_alive=0)
    with pytest.raises(ConfigError, match="chmod 700"):
        async with open_node(config, transports=[MemoryTransport(MemoryNetwork())]):
            pass
