"""The node's seeding (guts.replicate.seeding): the person's choices
merged with the configuration's block lists, what is seeded, whose
namespaces a fetch keeps, the callbacks, the status, and the storage
measure."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from guts.crypto import KeyPair
from guts.repo.rid import Rid
from guts.repo.storage import RepositoryNotFound
from guts.replicate.policy import SeedingPolicy, SeedLimits, SeedPolicy, SeedScope
from guts.replicate.seeding import Seeding, storage_bytes
from guts.replicate.seeds import SeedStore

ME, OTHER, CONTRIBUTOR, PEST = (KeyPair.from_seed(bytes([i]) * 32).peer_id for i in range(1, 5))


def rid(n: int) -> Rid:
    return Rid.of_genesis(b"repository %d" % n)


@dataclass
class FakeStorage:
    root: Path


@dataclass
class FakeRepos:
    """What Seeding uses of Repositories: show, list, len, storage.root."""

    root: Path
    held: list[Rid] = field(default_factory=list)

    @property
    def storage(self) -> FakeStorage:
        return FakeStorage(self.root)

    def show(self, key: Rid | str) -> Any:
        found = next((r for r in self.held if str(r) == str(key)), None)
        if found is None:
            raise RepositoryNotFound(f"no {key}")
        return type("State", (), {"rid": found})()

    def list(self) -> list[Any]:
        return [self.show(r) for r in self.held]

    def __len__(self) -> int:
        return len(self.held)


def seeding(tmp_path: Path, *held: int, policy: SeedPolicy = SeedPolicy.SELECTED, **kwargs: Any) -> Seeding:
    repos = FakeRepos(tmp_path, [rid(n) for n in held])
    return Seeding(SeedingPolicy(policy, kwargs.pop("limits", None)), repos, me=ME, **kwargs)  # type: ignore[arg-type]


async def test_held_is_seeded_until_unseeded_and_seeding_takes_it_back(tmp_path: Path) -> None:
    node = seeding(tmp_path, 1)
    changes: list[tuple[Rid, bool]] = []
    node.on_change.append(lambda r, seeded: changes.append((r, seeded)))
    assert node.seeds(rid(1)) and not node.seeds(rid(2))
    assert node.seeded() == [rid(1)]
    assert await node.unseed(rid(1)) is True
    assert not node.seeds(rid(1)) and node.seeded() == []
    assert changes == [(rid(1), False)]
    assert await node.seed(rid(1), SeedScope.ALL) is None
    assert node.seeds(rid(1)) and node.scope(rid(1)) is SeedScope.ALL
    assert await node.seed(rid(1), SeedScope.DELEGATES) is SeedScope.ALL  # a change of scope: no callback
    assert changes == [(rid(1), False), (rid(1), True)]
    # Seeded and not held yet: seeded (its fetch is due), listed after the held ones.
    await node.seed(rid(2), SeedScope.DELEGATES)
    assert node.seeded() == [rid(1), rid(2)]


async def test_choices_survive_in_the_store(tmp_path: Path) -> None:
    with SeedStore.in_home(tmp_path / "home") as store:
        node = seeding(tmp_path, 1, store=store)
        await node.unseed(rid(1))
        await node.block_peer(PEST)
    with SeedStore.in_home(tmp_path / "home") as store:
        again = seeding(tmp_path, 1, store=store)
        assert not again.seeds(rid(1))
        assert again.choices_json()["unseeded"] == [str(rid(1))]
        assert again.choices_json()["blocked_peers"] == [{"peer": str(PEST), "from": "command"}]


async def test_a_configured_block_outlives_an_unblock(tmp_path: Path) -> None:
    node = seeding(tmp_path, 1, blocked_rids=[rid(1)], blocked_peers=[PEST])
    assert not node.seeds(rid(1))
    assert await node.unblock_rid(rid(1)) is False  # nothing a command blocked
    assert not node.seeds(rid(1))
    assert node.choices_json()["blocked_rids"] == [{"rid": str(rid(1)), "from": "config"}]
    assert await node.block_rid(rid(2)) is True and not node.seeds(rid(2))
    assert await node.unblock_rid(rid(2)) is True


async def test_whose_namespaces_a_fetch_keeps(tmp_path: Path) -> None:
    node = seeding(tmp_path, 1, 2)
    signers = [OTHER, CONTRIBUTOR, PEST]
    # Not a delegate, default scope: the delegates' namespaces only.
    assert set(node.select(rid(1))([OTHER], signers)) == {OTHER}
    # A delegate of it: every namespace, to review contributions.
    assert set(node.select(rid(1))([ME, OTHER], signers)) == {ME, OTHER, CONTRIBUTOR, PEST}
    await node.block_peer(PEST)
    assert set(node.select(rid(1))([ME, OTHER], signers)) == {ME, OTHER, CONTRIBUTOR}
    # Seeded with a scope of its own: that scope, delegate or not.
    await node.seed(rid(2), SeedScope.DELEGATES)
    assert set(node.select(rid(2))([ME, OTHER], signers)) == {ME, OTHER}
    await node.seed(rid(2), SeedScope.ALL)
    assert set(node.select(rid(2))([OTHER], signers)) == {OTHER, CONTRIBUTOR}
    assert node.replicates(rid(2), CONTRIBUTOR, [OTHER]) and not node.replicates(rid(2), PEST, [OTHER])


async def test_take_on_under_all_within_the_limits(tmp_path: Path) -> None:
    node = seeding(tmp_path, 1, policy=SeedPolicy.ALL, limits=SeedLimits(max_repositories=2))
    assert node.take_on(rid(2))  # 1 of 2 seeded
    node.repos.held.append(rid(2))  # type: ignore[attr-defined]
    refused = node.take_on(rid(3))
    assert not refused and "seed_max_repositories reached" in refused.detail
    status = node.status(fetches=0)
    assert status["limits_reached"] == ["max_repositories"]
    assert [r["rid"] for r in status["recent_refusals"]] == [str(rid(3))]
    assert status["refused"] == {"repository-limit": 1}
    # Selected refuses strangers, quietly (not listed).
    quiet = seeding(tmp_path, 1)
    assert not quiet.take_on(rid(5)) and quiet.status(fetches=0)["recent_refusals"] == []


def test_storage_is_measured_in_blocks_and_hard_links_once(tmp_path: Path) -> None:
    data = tmp_path / "storage" / "repo" / "objects"
    data.mkdir(parents=True)
    (data / "pack").write_bytes(b"x" * 100_000)
    one = storage_bytes(tmp_path / "storage")
    assert one >= 100_000
    os.link(data / "pack", data / "linked")
    assert storage_bytes(tmp_path / "storage") == one
    (data / "more").write_bytes(b"y" * 50_000)
    assert storage_bytes(tmp_path / "storage") > one
    assert storage_bytes(tmp_path / "missing") == 0
    assert storage_bytes(tmp_path / "storage", max_entries=1) <= one


@pytest.mark.parametrize("policy", list(SeedPolicy))
async def test_status_names_the_policy(tmp_path: Path, policy: SeedPolicy) -> None:
    status = seeding(tmp_path, 1, 2, policy=policy).status(fetches=3)
    assert (status["policy"], status["seeded"], status["fetches"]) == (policy.value, 2, 3)
    assert status["limits"] == {"max_repositories": 10_000, "max_storage_bytes": 128 * 1024**3, "max_fetches": 8}
