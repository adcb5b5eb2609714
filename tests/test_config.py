from pathlib import Path

import pytest

from guts.config import DEFAULT_LISTEN, load_config
from guts.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert [str(a) for a in cfg.listen] == list(DEFAULT_LISTEN)
    assert cfg.bootstrap == ()
    assert cfg.max_connections == 50
    assert cfg.connection_timeout == 10.0
    assert cfg.keep_alive == 30.0
    assert cfg.home == tmp_path


def test_layers_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'listen = ["/ip4/127.0.0.1/tcp/1"]\nmax_connections = 7\nkeep_alive = 5\n'
    )
    cfg = load_config(tmp_path, env={})
    assert [str(a) for a in cfg.listen] == ["/ip4/127.0.0.1/tcp/1"]
    assert cfg.max_connections == 7 and cfg.keep_alive == 5.0
    env = {"GUTS_MAX_CONNECTIONS": "9", "GUTS_LISTEN": "/ip4/127.0.0.1/tcp/2,/ip4/127.0.0.1/tcp/3/ws"}
    cfg = load_config(tmp_path, env=env)
    assert cfg.max_connections == 9
    assert [str(a) for a in cfg.listen] == ["/ip4/127.0.0.1/tcp/2", "/ip4/127.0.0.1/tcp/3/ws"]
    cfg = load_config(tmp_path, env=env, listen=["/ip4/127.0.0.1/tcp/4"], max_connections=3)
    assert [str(a) for a in cfg.listen] == ["/ip4/127.0.0.1/tcp/4"]
    assert cfg.max_connections == 3


def test_home_from_env(tmp_path: Path) -> None:
    assert load_config(env={"GUTS_HOME": str(tmp_path)}).home == tmp_path


@pytest.mark.parametrize(
    "text", ['listen = ["/ip4/999.1.1.1/tcp/1"]', "nonsense = 1", "max_connections = 'x'", "max_connections = -1", "[[["]
)
def test_bad_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    assert "config.toml" in str(info.value)


def test_bad_env(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GUTS_BOOTSTRAP"):
        load_config(tmp_path, env={"GUTS_BOOTSTRAP": "/nope"})


def test_dht_and_topic_settings(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert (cfg.dht_mode, cfg.dht_protocol, cfg.topics) == ("auto", "/guts/kad/1.0.0", ())
    (tmp_path / "config.toml").write_text('dht_mode = "client"\ntopics = ["a", "b"]\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.dht_mode == "client" and cfg.topics == ("a", "b")
    env = {"GUTS_DHT_MODE": "server", "GUTS_DHT_PROTOCOL": "/ipfs/kad/1.0.0", "GUTS_TOPICS": "c, d"}
    cfg = load_config(tmp_path, env=env)
    assert (cfg.dht_mode, cfg.dht_protocol, cfg.topics) == ("server", "/ipfs/kad/1.0.0", ("c", "d"))
    cfg = load_config(tmp_path, env=env, topics=["e", "e"], dht_mode="auto")
    assert cfg.topics == ("e",) and cfg.dht_mode == "auto"


@pytest.mark.parametrize(
    ("text", "where"),
    [('dht_mode = "sometimes"', "dht_mode"), ('dht_protocol = "kad"', "dht_protocol"), ("topics = [1]", "topics")],
)
def test_bad_dht_and_topic_settings(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "config.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=where):
        load_config(tmp_path, env={})
