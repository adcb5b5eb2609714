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


def test_the_cache_is_bounded_in_bytes_oldest_first() -> None:
    big = b"x" * 100_000
    cache: MessageCache[str] = MessageCache(history_length=5, history_gossip=3, max_bytes=1_000_000)
    ids = []
    for window in range(3):
        for n in range(3):
            msg_id = b"m%d%d" % (window, n)
            cache.put(msg_id, RawMessage(None, big, None, "t"))
            ids.append(msg_id)
        cache.shift()
    # each message costs its payload and its encoding: 4 fit, the 5 oldest went early
    assert cache.bytes <= 1_000_000
    assert [i for i in ids if i in cache] == ids[-4:]
    assert cache.evicted == 5
    assert cache.get_for_peer(ids[0], "p") is None  # an IWANT for one gone early is not answered
    assert sorted(cache.gossip_ids()["t"]) == sorted(ids[-4:])
    cache.remove(ids[-1])
    for _ in range(5):
        cache.shift()
    assert len(cache) == 0 and cache.bytes == 0


def test_one_message_over_the_bound_passes_through() -> None:
    cache: MessageCache[str] = MessageCache(max_bytes=1000)
    cache.put(b"a", RawMessage(None, b"y" * 5000, None, "t"))
    assert b"a" not in cache and cache.bytes == 0 and cache.evicted == 1
    with pytest.raises(ConfigError):
        MessageCache(max_bytes=0)
