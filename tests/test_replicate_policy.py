"""The seeding policy: every decision and its reason, the limits (refuse
new work, keep old), namespaces by scope and block list, and the status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guts.repo.rid import Rid
from guts.replicate.policy import (
    NamespaceChoice,
    SeedingPolicy,
    SeedLimits,
    SeedPolicy,
    SeedReason,
    Seeds,
    SeedScope,
)

from .dht_helpers import hashed_peer as peer

GIB = 1024**3


def rid(n: int) -> Rid:
    return Rid.of_genesis(b"repository %d" % n)


def decide(policy: SeedingPolicy, n: int, *, held: bool = False, storage: int = 0, count: int = 0) -> SeedReason:
    decision = policy.should_seed(rid(n), held=held, storage_bytes=storage, seeded_count=count)
    assert bool(decision) is decision.seed
    assert decision.seed is (decision.reason in (SeedReason.SEEDED, SeedReason.HELD, SeedReason.POLICY_ALL))
    assert decision.rid == rid(n) and decision.detail
    return decision.reason


def test_limit_defaults() -> None:
    limits = SeedLimits()
    assert (limits.max_repositories, limits.max_storage_bytes, limits.max_fetches) == (10_000, 128 * GIB, 8)


@pytest.mark.parametrize("field", ["max_repositories", "max_storage_bytes", "max_fetches"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_limits_are_whole_and_positive(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SeedLimits(**{field: value})  # type: ignore[arg-type]


def test_selected_seeds_only_what_the_person_chose() -> None:
    policy = SeedingPolicy(seeds=Seeds({rid(1): SeedScope.ALL}))
    assert policy.policy is SeedPolicy.SELECTED  # the default
    assert decide(policy, 1) is SeedReason.SEEDED
    assert decide(policy, 2, held=True) is SeedReason.HELD
    assert decide(policy, 3) is SeedReason.NOT_SELECTED


def test_all_seeds_every_repository_announced() -> None:
    policy = SeedingPolicy(SeedPolicy.ALL, seeds=Seeds({rid(1): SeedScope.DELEGATES}))
    assert decide(policy, 1) is SeedReason.SEEDED
    assert decide(policy, 2, held=True) is SeedReason.HELD
    assert decide(policy, 3) is SeedReason.POLICY_ALL


@pytest.mark.parametrize("policy", list(SeedPolicy))
def test_a_blocked_repository_is_never_seeded(policy: SeedPolicy) -> None:
    seeds = Seeds({rid(1): SeedScope.ALL}, blocked_rids=frozenset({rid(1), rid(2)}))
    choice = SeedingPolicy(policy, seeds=seeds)
    assert decide(choice, 1) is SeedReason.BLOCKED  # seeded explicitly and blocked: blocked wins
    assert decide(choice, 2, held=True) is SeedReason.BLOCKED
    decision = choice.should_seed(rid(2), held=False, storage_bytes=0, seeded_count=0)
    assert not decision and decision.detail == "the repository is blocked"


@pytest.mark.parametrize("policy", list(SeedPolicy))
def test_an_unseeded_repository_is_not_seeded_again_until_seeded(policy: SeedPolicy) -> None:
    choice = SeedingPolicy(policy, seeds=Seeds(unseeded=frozenset({rid(1)})))
    assert decide(choice, 1, held=True) is SeedReason.UNSEEDED  # holding it does not seed it again
    assert decide(choice, 1) is SeedReason.UNSEEDED  # nor does policy all
    assert not choice.is_seeded(rid(1), held=True)
    choice.update(Seeds({rid(1): SeedScope.ALL}, unseeded=frozenset({rid(1)})))
    assert decide(choice, 1) is SeedReason.SEEDED and choice.is_seeded(rid(1), held=False)
    assert choice.status(seeded=0, storage_bytes=0, fetches=0).recent == ()  # an unseed is no notable refusal


def test_is_seeded_asks_without_counting() -> None:
    choice = SeedingPolicy(seeds=Seeds(blocked_rids=frozenset({rid(2)})))
    assert choice.is_seeded(rid(1), held=True) and not choice.is_seeded(rid(1), held=False)
    assert not choice.is_seeded(rid(2), held=True)
    assert dict(choice.status(seeded=0, storage_bytes=0, fetches=0).refused) == {}


def test_the_repository_limit_refuses_new_and_keeps_old() -> None:
    policy = SeedingPolicy(SeedPolicy.ALL, SeedLimits(max_repositories=3), Seeds({rid(1): SeedScope.ALL}))
    assert decide(policy, 9, count=2) is SeedReason.POLICY_ALL  # the third
    assert decide(policy, 9, count=3) is SeedReason.REPOSITORY_LIMIT  # a fourth
    decision = policy.should_seed(rid(9), held=False, storage_bytes=0, seeded_count=5)
    assert decision.detail == "seed_max_repositories reached (5 of 3 seeded)"
    # What it seeds already goes on: held, or chosen by the person.
    assert decide(policy, 8, held=True, count=5) is SeedReason.HELD
    assert decide(policy, 1, count=5) is SeedReason.SEEDED


def test_the_storage_limit_refuses_new_and_keeps_old() -> None:
    policy = SeedingPolicy(SeedPolicy.ALL, SeedLimits(max_storage_bytes=GIB), Seeds({rid(1): SeedScope.ALL}))
    assert decide(policy, 9, storage=GIB - 1) is SeedReason.POLICY_ALL
    assert decide(policy, 9, storage=GIB) is SeedReason.STORAGE_LIMIT
    decision = policy.should_seed(rid(9), held=False, storage_bytes=2 * GIB, seeded_count=0)
    assert decision.detail == f"seed_max_storage_bytes reached ({2 * GIB} of {GIB} bytes used)"
    assert decide(policy, 8, held=True, storage=2 * GIB) is SeedReason.HELD
    assert decide(policy, 1, storage=2 * GIB) is SeedReason.SEEDED


def test_the_repository_limit_is_named_before_the_storage_limit() -> None:
    policy = SeedingPolicy(SeedPolicy.ALL, SeedLimits(max_repositories=1, max_storage_bytes=1))
    assert decide(policy, 1, storage=5, count=5) is SeedReason.REPOSITORY_LIMIT


def test_limits_do_not_matter_under_selected() -> None:
    policy = SeedingPolicy(SeedPolicy.SELECTED, SeedLimits(max_repositories=1, max_storage_bytes=1))
    assert decide(policy, 1, storage=5, count=5) is SeedReason.NOT_SELECTED
    assert decide(policy, 1, held=True, storage=5, count=5) is SeedReason.HELD


def test_the_scope_of_a_decision() -> None:
    seeds = Seeds({rid(1): SeedScope.ALL, rid(2): SeedScope.DELEGATES})
    policy = SeedingPolicy(SeedPolicy.ALL, seeds=seeds)
    scopes = [policy.should_seed(rid(n), held=False, storage_bytes=0, seeded_count=0).scope for n in (1, 2, 3)]
    assert scopes == [SeedScope.ALL, SeedScope.DELEGATES, SeedScope.DELEGATES]
    wide = SeedingPolicy(SeedPolicy.ALL, seeds=seeds, default_scope=SeedScope.ALL)
    assert wide.scope_of(rid(2)) is SeedScope.DELEGATES and wide.scope_of(rid(3)) is SeedScope.ALL


def test_namespaces_under_scope_delegates() -> None:
    d1, d2, c1, c2 = peer(1), peer(2), peer(3), peer(4)
    policy = SeedingPolicy(seeds=Seeds({rid(1): SeedScope.DELEGATES}, blocked_peers=frozenset({c2})))
    choice = policy.namespaces_to_replicate(rid(1), [d1, d2], [d1, c1, c2])
    assert choice == NamespaceChoice(
        scope=SeedScope.DELEGATES,
        replicate=frozenset({d1, d2}),  # a delegate not announced yet is still wanted
        blocked=frozenset({c2}),
        blocked_delegates=frozenset(),
        out_of_scope=frozenset({c1}),
    )


def test_namespaces_under_scope_all() -> None:
    d1, c1, c2 = peer(1), peer(3), peer(4)
    policy = SeedingPolicy(seeds=Seeds({rid(1): SeedScope.ALL}, blocked_peers=frozenset({c2})))
    choice = policy.namespaces_to_replicate(rid(1), [d1], [c1, c2, d1])
    assert choice.scope is SeedScope.ALL
    assert choice.replicate == {d1, c1}
    assert choice.blocked == {c2} and choice.out_of_scope == frozenset()


def test_a_blocked_delegate_is_not_replicated_and_is_named() -> None:
    d1, d2, c1 = peer(1), peer(2), peer(3)
    for scope in SeedScope:
        policy = SeedingPolicy(seeds=Seeds({rid(1): scope}, blocked_peers=frozenset({d2})))
        choice = policy.namespaces_to_replicate(rid(1), (d1, d2), (c1,))
        assert d2 not in choice.replicate
        assert choice.blocked == choice.blocked_delegates == {d2}
        assert (c1 in choice.replicate) is (scope is SeedScope.ALL)


def test_namespaces_of_a_repository_not_seeded_explicitly_use_the_default_scope() -> None:
    d1, c1 = peer(1), peer(3)
    assert SeedingPolicy().namespaces_to_replicate(rid(5), [d1], [c1]).replicate == {d1}
    wide = SeedingPolicy(default_scope=SeedScope.ALL)
    assert wide.namespaces_to_replicate(rid(5), [d1], [c1]).replicate == {d1, c1}


def test_fetches_at_once() -> None:
    policy = SeedingPolicy(limits=SeedLimits(max_fetches=2))
    assert policy.may_start_fetch(0) and policy.may_start_fetch(1)
    refused = policy.may_start_fetch(2)
    assert not refused and (refused.running, refused.limit) == (2, 2)
    assert refused.detail == "seed_max_fetches reached (2 of 2 running); the fetch waits"
    assert policy.may_start_fetch(1).detail == "1 of 2 fetches running"
    assert not policy.may_start_fetch(7)
    assert policy.status(seeded=0, storage_bytes=0, fetches=2).deferred_fetches == 2


def test_status_counts_limits_and_choices() -> None:
    seeds = Seeds({rid(1): SeedScope.ALL}, frozenset({rid(2), rid(3)}), frozenset({peer(1)}))
    policy = SeedingPolicy(SeedPolicy.ALL, SeedLimits(max_repositories=10, max_storage_bytes=GIB, max_fetches=4), seeds)
    status = policy.status(seeded=4, storage_bytes=100, fetches=1)
    assert (status.policy, status.seeded, status.storage_bytes, status.fetches) == (SeedPolicy.ALL, 4, 100, 1)
    assert (status.selected, status.blocked_rids, status.blocked_peers) == (1, 2, 1)
    assert status.limits_reached == () and status.refused == {} and status.recent == ()
    full = policy.status(seeded=10, storage_bytes=GIB, fetches=4)
    assert full.limits_reached == ("max_repositories", "max_storage_bytes", "max_fetches")


def test_status_remembers_refusals_bounded() -> None:
    policy = SeedingPolicy(
        SeedPolicy.ALL, SeedLimits(max_repositories=1), Seeds(blocked_rids=frozenset({rid(0)})), recent_limit=3
    )
    policy.should_seed(rid(0), held=False, storage_bytes=0, seeded_count=0, now=5.0)
    for n in range(1, 6):
        policy.should_seed(rid(n), held=False, storage_bytes=0, seeded_count=1, now=10.0 + n)
    # A burst for one repository takes one slot, moved to the end.
    policy.should_seed(rid(3), held=False, storage_bytes=0, seeded_count=2, now=20.0)
    policy.should_seed(rid(3), held=False, storage_bytes=0, seeded_count=2, now=21.0)
    status = policy.status(seeded=1, storage_bytes=0, fetches=0)
    assert [r.rid for r in status.recent] == [rid(4), rid(5), rid(3)]
    last = status.recent[-1]
    assert (last.reason, last.times, last.at) == (SeedReason.REPOSITORY_LIMIT, 3, 21.0)
    assert last.detail == "seed_max_repositories reached (2 of 1 seeded)"
    assert status.refused == {SeedReason.BLOCKED: 1, SeedReason.REPOSITORY_LIMIT: 7}


def test_not_selected_is_counted_but_not_listed() -> None:
    policy = SeedingPolicy()
    for n in range(100):
        policy.should_seed(rid(n), held=False, storage_bytes=0, seeded_count=0)
    status = policy.status(seeded=0, storage_bytes=0, fetches=0)
    assert status.refused == {SeedReason.NOT_SELECTED: 100} and status.recent == ()


def test_accepting_records_nothing() -> None:
    policy = SeedingPolicy(SeedPolicy.ALL)
    for n in range(10):
        assert policy.should_seed(rid(n), held=n % 2 == 0, storage_bytes=0, seeded_count=0)
    status = policy.status(seeded=0, storage_bytes=0, fetches=0)
    assert status.refused == {} and status.recent == ()


def test_update_replaces_the_choices_and_keeps_the_history() -> None:
    policy = SeedingPolicy(SeedPolicy.ALL, seeds=Seeds(blocked_rids=frozenset({rid(1)})))
    assert decide(policy, 1) is SeedReason.BLOCKED
    policy.update(Seeds({rid(1): SeedScope.ALL}))
    assert decide(policy, 1) is SeedReason.SEEDED
    assert policy.status(seeded=1, storage_bytes=0, fetches=0).refused == {SeedReason.BLOCKED: 1}


def test_seeds_are_a_private_copy() -> None:
    scopes = {rid(1): SeedScope.ALL}
    seeds = Seeds(scopes)
    scopes[rid(2)] = SeedScope.ALL
    assert list(seeds.scopes) == [rid(1)]
    with pytest.raises(TypeError):
        seeds.scopes[rid(3)] = SeedScope.ALL  # type: ignore[index]


def test_no_memory_of_refusals_when_asked_for_none() -> None:
    policy = SeedingPolicy(seeds=Seeds(blocked_rids=frozenset({rid(1)})), recent_limit=0)
    policy.should_seed(rid(1), held=False, storage_bytes=0, seeded_count=0)
    assert policy.status(seeded=0, storage_bytes=0, fetches=0).recent == ()
    with pytest.raises(ValueError):
        SeedingPolicy(recent_limit=-1)


@given(
    policy=st.sampled_from(SeedPolicy),
    seeded=st.sets(st.integers(0, 7)),
    blocked=st.sets(st.integers(0, 7)),
    n=st.integers(0, 7),
    held=st.booleans(),
    storage=st.integers(0, 3 * GIB),
    count=st.integers(0, 20),
)
def test_the_rules_hold_for_any_inputs(
    policy: SeedPolicy, seeded: set[int], blocked: set[int], n: int, held: bool, storage: int, count: int
) -> None:
    seeds = Seeds({rid(i): SeedScope.ALL for i in seeded}, frozenset(rid(i) for i in blocked))
    choice = SeedingPolicy(policy, SeedLimits(max_repositories=10, max_storage_bytes=GIB), seeds)
    decision = choice.should_seed(rid(n), held=held, storage_bytes=storage, seeded_count=count)
    if n in blocked:
        assert decision.reason is SeedReason.BLOCKED  # never, whatever else holds
    elif n in seeded or held:
        assert decision.seed  # old work is never refused by a limit
    elif policy is SeedPolicy.SELECTED:
        assert decision.reason is SeedReason.NOT_SELECTED
    else:
        assert decision.seed is (count < 10 and storage < GIB)
    status = choice.status(seeded=count, storage_bytes=storage, fetches=0)
    assert sum(status.refused.values()) == (0 if decision.seed else 1)
    assert len(status.recent) == (1 if decision.reason in (
        SeedReason.BLOCKED, SeedReason.REPOSITORY_LIMIT, SeedReason.STORAGE_LIMIT
    ) else 0)
