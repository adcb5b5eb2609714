"""The message cache windows and the seen cache."""

from __future__ import annotations

import pytest

from guts.errors import ConfigError
from guts.gossip._codec import RawMessage
from guts.gossip.mcache import MessageCache, SeenCache


def msg(topic: str, n: int) -> tuple[bytes, RawMessage]:
    return f"{topic}{n}".encode(), RawMessage(None, f"{n}".encode(), None, topic)


def test_put_get_and_windows() -> None:
    cache: MessageCache[str] = MessageCache(history_length=5, history_gossip=3)
    for window in range(6):
        for n in range(2):
            msg_id, m = msg("a", window * 10 + n)
            cache.put(msg_id, m)
        if window < 5:
            cache.shift()
    # windows 1..5 are held (the first one fell out); gossip covers the newest 3
    assert b"a0" not in cache and b"a10" in cache
    assert cache.gossip_ids()["a"] == [b"a50", b"a51", b"a40", b"a41", b"a30", b"a31"]
    assert len(cache) == 10
    assert cache.get(b"a10") is not None and cache.get(b"a0") is None


def test_gossip_ids_by_topic() -> None:
    cache: MessageCache[str] = MessageCache()
    for topic in "abc":
        msg_id, m = msg(topic, 1)
        cache.put(msg_id, m)
    assert cache.gossip_ids(["a", "c"]) == {"a": [b"a1"], "c": [b"c1"]}


def test_iwant_counts_per_peer() -> None:
    cache: MessageCache[str] = MessageCache()
    msg_id, m = msg("a", 1)
    cache.put(msg_id, m)
    assert [cache.get_for_peer(msg_id, "p")[1] for _ in range(3)] == [1, 2, 3]  # type: ignore[index]
    assert cache.get_for_peer(msg_id, "q") == (m, 1)
    assert cache.get_for_peer(b"nope", "p") is None


def test_put_twice_and_remove() -> None:
    cache: MessageCache[str] = MessageCache()
    msg_id, m = msg("a", 1)
    cache.put(msg_id, m)
    cache.put(msg_id, m)
    assert cache.gossip_ids() == {"a": [msg_id]}
    assert cache.remove(msg_id) is m
    assert cache.gossip_ids() == {}
    cache.shift()  # a removed id in a window is harmless


def test_bad_windows() -> None:
    with pytest.raises(ConfigError):
        MessageCache(history_length=2, history_gossip=3)


def test_seen_cache_expiry_and_bound() -> None:
    seen = SeenCache(ttl=10, max_size=3)
    assert seen.add(b"a", 0) and not seen.add(b"a", 1)
    seen.add(b"b", 5)
    seen.prune(10)
    assert b"a" not in seen and b"b" in seen
    for i in range(5):
        seen.add(bytes([i]), 6)
    assert len(seen) == 3
