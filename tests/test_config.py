import os
from contextlib import AsyncExitStack
import re
from pathlib import Path

import pytest

from guts.config import DEFAULT_LISTEN, SEED_POLICIES, NodeConfig, load_config
from guts.crypto import KeyPair
from guts.errors import ConfigError
from guts.node import open_node, repositories_config, sync_config
from guts.repo.identity import IdentityLimits
from guts.repo.sigrefs import RefsLimits
from guts.repo.state import RepositoriesConfig
from guts.repo.storage import PackRejected, StorageConfig
from guts.replicate.policy import SeedLimits, SeedPolicy
from guts.sync import SyncConfig, fetch
from guts.transport import MemoryNetwork, MemoryTransport

from .repo_helpers import _Stream, init_bare


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert [str(a) for a in cfg.listen] == list(DEFAULT_LISTEN)
    assert cfg.bootstrap == ()
    assert cfg.max_connections == 80
    assert (cfg.conn_low_water, cfg.conn_high_water, cfg.conn_max_per_ip) == (40, 60, 8)
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


def test_connection_settings_in_each_layer(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("conn_low_water = 10\nconn_high_water = 20\nconn_identify_grace = 5\n")
    cfg = load_config(tmp_path, env={"GUTS_CONN_MAX_PER_IP": "3", "GUTS_CONN_HANDSHAKE_RATE": "0.5"})
    assert (cfg.conn_low_water, cfg.conn_high_water, cfg.conn_identify_grace) == (10, 20, 5.0)
    assert (cfg.conn_max_per_ip, cfg.conn_handshake_rate) == (3, 0.5)
    cfg = load_config(tmp_path, env={}, conn_max_handshakes=7, conn_max_per_subnet=9)
    assert (cfg.conn_max_handshakes, cfg.conn_max_per_subnet) == (7, 9)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GUTS_CONN_LOW_WATER": "70"}, "GUTS_CONN_LOW_WATER: conn_low_water (70) is above conn_high_water (60)"),
        ({"GUTS_CONN_HIGH_WATER": "30"}, "GUTS_CONN_HIGH_WATER: conn_low_water (40) is above"),
        ({"GUTS_CONN_MAX_PER_IP": "0"}, "GUTS_CONN_MAX_PER_IP: 0 is outside 1 to 100000"),
        ({"GUTS_CONN_IDENTIFY_GRACE": "0.5"}, "GUTS_CONN_IDENTIFY_GRACE: 0.5 is outside 1 to 600"),
        ({"GUTS_CONN_HANDSHAKE_RATE": "fast"}, "GUTS_CONN_HANDSHAKE_RATE: expected a number"),
    ],
)
def test_bad_connection_settings(tmp_path: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(tmp_path, env=env)


def test_node_takes_the_connection_settings(tmp_path: Path) -> None:
    from guts.node import _conn_limits

    limits = _conn_limits(load_config(tmp_path, env={"GUTS_CONN_HANDSHAKE_RATE": "2", "GUTS_CONN_LOW_WATER": "5"}))
    assert (limits.low_water, limits.ip_handshake_rate, limits.subnet_handshake_rate) == (5, 2.0, 16.0)


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


# -- repository and sync limits ------------------------------------------------------

#: Each limit as the file writes it and what that parses to, as the
#: environment writes it and what that parses to, and a flag's value.
LIMITS: dict[str, tuple[str, object, str, object, object]] = {
    "repo_max_pack_bytes": ('"500MiB"', 500 * 1024**2, "2GiB", 2 * 1024**3, 3 * 1024**2),
    "repo_max_refs": ("20000", 20_000, "50", 50, 3),
    "repo_max_identity_bytes": ("32768", 32 * 1024, "4096", 4096, 2048),
    "repo_max_namespaces": ("64", 64, "8", 8, 3),
    "sync_idle_timeout": ("30.5", 30.5, "10", 10.0, 5.0),
    "sync_deadline": ("3600", 3600.0, "7200.5", 7200.5, 60.0),
    "sync_max_uploads": ("8", 8, "32", 32, 3),
    "sync_max_uploads_per_peer": ("2", 2, "1", 1, 3),
    "seed_max_repositories": ("500", 500, "20", 20, 3),
    "seed_max_storage_bytes": ('"1TiB"', 1024**4, "64GiB", 64 * 1024**3, 2 * 1024**2),
    "seed_max_fetches": ("2", 2, "16", 16, 1),
}


def test_limit_defaults_are_the_protocols_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert cfg.repo_max_pack_bytes == 16 * 1024**3  # far above Radicle's 500 MiB; a Linux clone is 5.65 GiB
    assert repositories_config(cfg) == RepositoriesConfig()
    assert sync_config(cfg) == SyncConfig()


@pytest.mark.parametrize("key", sorted(LIMITS))
def test_each_limit_from_file_env_and_flag(tmp_path: Path, key: str) -> None:
    in_file, from_file, in_env, from_env, flag = LIMITS[key]
    (tmp_path / "config.toml").write_text(f"{key} = {in_file}\n")
    assert getattr(load_config(tmp_path, env={}), key) == from_file
    # The environment beats the file, a flag beats both.
    env = {f"GUTS_{key.upper()}": in_env}
    assert getattr(load_config(tmp_path, env=env), key) == from_env
    assert getattr(load_config(tmp_path, env=env, **{key: flag}), key) == flag
    # An empty variable is no setting, as for the others.
    assert getattr(load_config(tmp_path, env={f"GUTS_{key.upper()}": ""}), key) == from_file


def test_limits_from_the_environment_reach_the_configs(tmp_path: Path) -> None:
    env = {f"GUTS_{key.upper()}": text for key, (_, _, text, _, _) in LIMITS.items()}
    cfg = load_config(tmp_path, env=env)
    repos = repositories_config(cfg)
    assert repos.storage.max_pack_bytes == 2 * 1024**3
    assert (repos.refs.max_refs, repos.identity.max_document) == (50, 4096)
    assert repos.storage.pack_timeout == StorageConfig().pack_timeout  # what is not a setting keeps its default
    assert repos.identity.max_delegates == IdentityLimits().max_delegates
    sync = sync_config(cfg)
    assert (sync.max_namespaces, sync.idle_timeout, sync.deadline) == (8, 10.0, 7200.5)
    assert (sync.max_uploads, sync.max_uploads_per_peer) == (32, 1)
    assert (sync.max_request, sync.max_refs_message) == (SyncConfig().max_request, SyncConfig().max_refs_message)


def test_a_statements_bytes_grow_with_its_refs(tmp_path: Path) -> None:
    default = RefsLimits()
    few = repositories_config(load_config(tmp_path, env={}, repo_max_refs=10)).refs
    assert few == RefsLimits(max_refs=10, max_bytes=default.max_bytes)  # never below the default total
    many = repositories_config(load_config(tmp_path, env={}, repo_max_refs=250_000)).refs
    assert many.max_bytes == 250_000 * (default.max_bytes // default.max_refs)
    assert many.max_bytes < SyncConfig().max_refs_message  # one statement still fits in one sync answer


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1024**2),
        ("1MiB", 1024**2),
        ("16GiB", 16 * 1024**3),
        ("16 gib", 16 * 1024**3),
        ("1.5GiB", 3 * 512 * 1024**2),
        ("1024KiB", 1024**2),
        ("1TiB", 1024**4),
        ("2097152B", 2 * 1024**2),
    ],
)
def test_pack_sizes_with_units(tmp_path: Path, text: str, size: int) -> None:
    assert load_config(tmp_path, env={"GUTS_REPO_MAX_PACK_BYTES": text}).repo_max_pack_bytes == size
    (tmp_path / "config.toml").write_text(f'repo_max_pack_bytes = "{text}"\n')
    assert load_config(tmp_path, env={}).repo_max_pack_bytes == size


def test_a_pack_size_as_a_toml_integer(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("repo_max_pack_bytes = 8_589_934_592\n")
    assert load_config(tmp_path, env={}).repo_max_pack_bytes == 8 * 1024**3


BAD_LIMITS = [
    ("repo_max_pack_bytes", '"16GB"', "16GB", "KiB, MiB, GiB"),  # decimal units are ambiguous
    ("repo_max_pack_bytes", '"lots"', "lots", "a size like"),
    ("repo_max_pack_bytes", '"1.0000001MiB"', "1.0000001MiB", "not a whole number of bytes"),
    ("repo_max_pack_bytes", "1000", "1000", "outside 1048576 to 1099511627776"),  # under the smallest pack
    ("repo_max_pack_bytes", '"2TiB"', "2TiB", "outside"),
    ("repo_max_pack_bytes", "-5", "-5", "negative|a size like"),
    ("repo_max_pack_bytes", "true", "true", "a size like"),
    ("repo_max_refs", "0", "0", "outside 1 to 250000"),
    ("repo_max_refs", "1000000", "1000000", "outside"),
    ("repo_max_refs", "1.5", "1.5", "whole number"),
    ("repo_max_identity_bytes", "100", "100", "outside 1024 to 1048576"),  # a document needs more
    ("repo_max_namespaces", "0", "0", "outside 1 to"),
    ("repo_max_namespaces", '"many"', "many", "whole number"),
    ("sync_idle_timeout", "0", "0", "outside 1 to 86400"),  # git counts its timeout in whole seconds
    ("sync_idle_timeout", "0.5", "0.5", "outside"),
    ("sync_idle_timeout", '"soon"', "soon", "a number"),
    ("sync_deadline", "0", "0", "outside 1 to 604800"),
    ("sync_deadline", "1e9", "inf", "outside"),
    ("sync_max_uploads", "0", "0", "outside 1 to 1024"),
    ("sync_max_uploads", "true", "yes", "whole number"),
    ("sync_max_uploads_per_peer", "0", "0", "outside 1 to 1024"),
    ("sync_max_uploads_per_peer", "-1", "-1", "negative|whole number"),
    ("seed_max_repositories", "0", "0", "outside 1 to 1000000"),
    ("seed_max_repositories", "2000000", "2000000", "outside"),
    ("seed_max_repositories", "1.5", "1.5", "whole number"),
    ("seed_max_storage_bytes", '"100GB"', "100GB", "KiB, MiB, GiB"),
    ("seed_max_storage_bytes", '"big"', "big", "a size like"),
    ("seed_max_storage_bytes", "1000", "1000", "outside 1048576 to 1125899906842624"),  # under a MiB
    ("seed_max_storage_bytes", '"2048TiB"', "2048TiB", "outside"),
    ("seed_max_storage_bytes", '"0.5B"', "0.5B", "not a whole number of bytes"),
    ("seed_max_fetches", "0", "0", "outside 1 to 1024"),
    ("seed_max_fetches", "5000", "5000", "outside"),
    ("seed_max_fetches", "true", "yes", "whole number"),
]


@pytest.mark.parametrize(("key", "toml", "env", "why"), BAD_LIMITS)
def test_bad_limits_name_their_source(tmp_path: Path, key: str, toml: str, env: str, why: str) -> None:
    (tmp_path / "config.toml").write_text(f"{key} = {toml}\n")
    with pytest.raises(ConfigError, match=why) as info:
        load_config(tmp_path, env={})
    assert str(info.value).startswith(f"{tmp_path / 'config.toml'}: {key}: ")
    (tmp_path / "config.toml").unlink()
    name = f"GUTS_{key.upper()}"
    with pytest.raises(ConfigError, match=why) as info:
        load_config(tmp_path, env={name: env})
    assert str(info.value).startswith(f"{name}: ")


def test_a_bad_limit_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^--sync-max-uploads: 0 is outside"):
        load_config(tmp_path, env={}, sync_max_uploads=0)


def test_a_deadline_shorter_than_the_idle_timeout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("sync_idle_timeout = 120\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"GUTS_SYNC_DEADLINE": "90"})
    message = str(info.value)
    assert message.startswith("GUTS_SYNC_DEADLINE: sync_deadline (90 s) is shorter than sync_idle_timeout (120 s")
    assert f"from {tmp_path / 'config.toml'}: sync_idle_timeout" in message
    with pytest.raises(ConfigError, match="^--sync-deadline: .*from the default"):
        load_config(tmp_path / "elsewhere", env={}, sync_deadline=30)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "elsewhere", env={"GUTS_SYNC_IDLE_TIMEOUT": "30000"})
    assert str(info.value) == (
        "GUTS_SYNC_IDLE_TIMEOUT: sync_idle_timeout (30000 s) is longer than sync_deadline (21600 s, the default)"
    )
    # Equal is fine; so is more uploads per peer than in all (the node's cap binds first).
    cfg = load_config(tmp_path, env={"GUTS_SYNC_DEADLINE": "120", "GUTS_SYNC_MAX_UPLOADS": "2"})
    assert (cfg.sync_deadline, cfg.sync_max_uploads, cfg.sync_max_uploads_per_peer) == (120.0, 2, 4)


# -- seeding ---------------------------------------------------------------------------


def test_seeding_defaults_are_the_policys_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert cfg.seed_policy == SeedPolicy.SELECTED.value == "selected"
    limits = SeedLimits(cfg.seed_max_repositories, cfg.seed_max_storage_bytes, cfg.seed_max_fetches)
    assert limits == SeedLimits()
    assert SEED_POLICIES == tuple(p.value for p in SeedPolicy)


def test_seed_policy_from_file_env_and_flag(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('seed_policy = "all"\n')
    assert load_config(tmp_path, env={}).seed_policy == "all"
    assert load_config(tmp_path, env={"GUTS_SEED_POLICY": "selected"}).seed_policy == "selected"
    assert load_config(tmp_path, env={"GUTS_SEED_POLICY": "selected"}, seed_policy="all").seed_policy == "all"
    assert load_config(tmp_path, env={"GUTS_SEED_POLICY": ""}).seed_policy == "all"  # empty: no setting


@pytest.mark.parametrize("value", ["some", "ALL", "delegates", ""])
def test_a_bad_seed_policy_names_its_source(tmp_path: Path, value: str) -> None:
    (tmp_path / "config.toml").write_text(f'seed_policy = "{value}"\n')
    with pytest.raises(ConfigError, match="expected one of selected, all") as info:
        load_config(tmp_path, env={})
    assert str(info.value).startswith(f"{tmp_path / 'config.toml'}: seed_policy: ")
    (tmp_path / "config.toml").write_text("seed_policy = 1\n")
    with pytest.raises(ConfigError, match="seed_policy: expected one of"):
        load_config(tmp_path, env={})
    (tmp_path / "config.toml").unlink()
    if value:
        with pytest.raises(ConfigError, match="^GUTS_SEED_POLICY: expected one of selected, all"):
            load_config(tmp_path, env={"GUTS_SEED_POLICY": value})
    with pytest.raises(ConfigError, match="^--seed-policy: expected one of"):
        load_config(tmp_path, env={}, seed_policy=value or "none")


def test_a_storage_limit_with_units(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={"GUTS_SEED_MAX_STORAGE_BYTES": "1.5 TiB"})
    assert cfg.seed_max_storage_bytes == 3 * 512 * 1024**3
    (tmp_path / "config.toml").write_text("seed_max_storage_bytes = 1_099_511_627_776\n")
    assert load_config(tmp_path, env={}).seed_max_storage_bytes == 1024**4
    assert load_config(tmp_path, env={}, seed_max_storage_bytes="1024TiB").seed_max_storage_bytes == 1024**5


# -- a node under small limits ---------------------------------------------------------


def big_repository(path: Path) -> Path:
    """A bare repository of one commit holding 2 MiB of random bytes: a
    pack git cannot compress below 2 MiB."""
    init_bare(path)
    stream = _Stream()
    stream.commit("refs/heads/main", "big", {"big.bin": os.urandom(2 * 1024**2)})
    stream.run(path)
    return path


def memory_node_config(home: Path, env: dict[str, str]) -> NodeConfig:
    return load_config(home, env=env, listen=["/memory/0"], keep_alive=0)


async def test_a_node_enforces_its_configured_pack_limit(tmp_path: Path) -> None:
    source = big_repository(tmp_path / "big.git")
    net = MemoryNetwork()
    configs = {
        "a": memory_node_config(tmp_path / "a", {}),
        "small": memory_node_config(
            tmp_path / "small", {"GUTS_REPO_MAX_PACK_BYTES": "1MiB", "GUTS_SYNC_MAX_UPLOADS": "3"}
        ),
        "large": memory_node_config(tmp_path / "large", {"GUTS_REPO_MAX_PACK_BYTES": "4 MiB"}),
    }
    async with AsyncExitStack() as stack:
        nodes = {
            name: await stack.enter_async_context(
                open_node(cfg, keypair=KeyPair.generate(), transports=[MemoryTransport(net)])
            )
            for name, cfg in configs.items()
        }
        for name, node in nodes.items():
            assert node.repos is not None and node.sync is not None
            assert node.repos.config == repositories_config(configs[name])
            assert node.repos.storage.config.max_pack_bytes == configs[name].repo_max_pack_bytes
            assert node.sync.config == sync_config(configs[name])
        assert nodes["small"].sync is not None and nodes["small"].sync.config.max_uploads == 3
        a = nodes["a"]
        assert a.repos is not None
        rid = str((await a.repos.init(source, keypair=a.host.keypair)).rid)
        for name in ("small", "large"):
            await nodes[name].host.connect(a.addrs[0])
        small = nodes["small"]
        assert small.repos is not None and small.sync is not None
        with pytest.raises(PackRejected, match="over the pack limit"):
            await fetch(small.host, small.repos, a.host.peer_id, rid, small.sync.config)
        assert await small.repos.storage.list() == []
        large = nodes["large"]
        assert large.repos is not None and large.sync is not None
        state = await fetch(large.host, large.repos, a.host.peer_id, rid, large.sync.config)
        assert str(state.rid) == rid


def test_security_protocols(tmp_path: Path) -> None:
    assert load_config(tmp_path, env={}).security == ("noise", "tls")
    assert load_config(tmp_path, env={"GUTS_SECURITY": "tls, noise"}).security == ("tls", "noise")
    (tmp_path / "config.toml").write_text('security = ["tls"]\n')
    assert load_config(tmp_path, env={}).security == ("tls",)
    for bad in ("ssl", ""):
        (tmp_path / "config.toml").write_text(f'security = ["{bad}"]\n')
        with pytest.raises(ConfigError, match="config.toml: security"):
            load_config(tmp_path, env={})
    (tmp_path / "config.toml").write_text("security = []\n")
    with pytest.raises(ConfigError, match="security"):
        load_config(tmp_path, env={})
