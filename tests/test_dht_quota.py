"""The per-owner accounting behind the stores' eviction (guts.dht.quota),
against a plain model: counts, bytes, age order and the heaviest owner."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guts.dht.quota import Quota

OWNERS = st.sampled_from(["me", "a", "b", "c", "d"])
ITEMS = st.integers(0, 20)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), OWNERS, ITEMS, st.integers(0, 100)),
        st.tuples(st.just("remove"), OWNERS, ITEMS, st.just(0)),
        st.tuples(st.just("extra"), OWNERS, st.just(0), st.integers(0, 50)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_quota_matches_a_plain_model(ops: list[tuple[str, str, int, int]]) -> None:
    quota: Quota[str, int] = Quota("me")
    items: dict[str, dict[int, int]] = {}  # owner -> item -> size, oldest first
    extra: dict[str, int] = {}
    for op, owner, item, size in ops:
        if op == "add":
            quota.add(owner, item, size)
            held = items.setdefault(owner, {})
            held.pop(item, None)
            held[item] = size
        elif op == "remove":
            got = quota.remove(owner, item)
            held = items.get(owner, {})
            assert got == held.pop(item, None)
            if owner in items and not held:
                del items[owner]
                extra.pop(owner, None)
        else:
            quota.set_extra(owner, size)
            if owner in items:
                extra[owner] = size
        weight = {o: sum(held.values()) + extra.get(o, 0) for o, held in items.items()}
        assert quota.count == sum(len(held) for held in items.values())
        assert quota.bytes == sum(weight.values())
        for o in ("me", "a", "b", "c", "d"):
            assert quota.count_of(o) == len(items.get(o, {}))
            assert quota.bytes_of(o) == weight.get(o, 0)
            assert quota.oldest(o) == next(iter(items.get(o, {})), None)
        others = {o: w for o, w in weight.items() if o != "me"}
        heaviest = quota.heaviest()
        if others:
            assert heaviest is not None and weight[heaviest] == max(others.values())
        else:
            assert heaviest is None  # never the protected owner
    assert len(quota._heap) <= 2 * quota.owners() + 64 + 1  # stale entries do not pile up
