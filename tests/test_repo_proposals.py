"""Pending identity revisions: the merge rules of guts.repo.proposals
(pure), their layout refs, and Repositories.propose / accept /
merge_proposals against real git (stored, read back at open, adopted at
the threshold with the canonical refs the new threshold implies)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from guts.crypto import KeyPair
from guts.errors import DecodeError, InputError, InvalidIdentity
from guts.repo.identity import IdentityLimits, Signature, SignedRevision, create_genesis, sign_revision
from guts.repo.layout import PROPOSALS, RefKind, parse_ref, proposal_commit, proposal_ref
from guts.repo.proposals import (
    MAX_PROPOSALS,
    ProposalNotFound,
    changes,
    check_proposal,
    check_served,
    find_proposal,
    merge_proposals,
    proposal_id,
)
from guts.repo.revisions import VerifiedIdentity, propose_revision, verify_chain
from guts.repo.rid import Rid
from guts.repo.state import Repositories
from guts.sync import Refs, Refused, SyncConfig, SyncService, decode_response, encode_response, fetch

from .helpers import full_addr, memory_hosts

from .repo_helpers import History, build_history, git, refs_of

K1, K2, K3, OUTSIDER = (KeyPair.from_seed(bytes([n]) * 32) for n in (1, 2, 3, 9))


def head_of(threshold: int = 2, keys: tuple[KeyPair, ...] = (K1, K2, K3)) -> tuple[VerifiedIdentity, SignedRevision]:
    genesis = create_genesis(
        K1, name="app", nonce=bytes(16), delegates=[k.public_key for k in keys], threshold=threshold
    )
    rid = Rid.of_genesis(genesis.document.raw)
    return verify_chain(rid, [genesis]), genesis


def proposal(head: VerifiedIdentity, *signers: KeyPair, **fields: object) -> SignedRevision:
    revision = propose_revision(head, **fields)  # type: ignore[arg-type]
    for key in signers:
        revision = sign_revision(revision, key, head.rid)
    return revision


def signer_ids(revision: SignedRevision) -> list[str]:
    return [str(s.key.peer_id) for s in revision.signatures]


# -- the pure rules ------------------------------------------------------------------


def test_a_proposal_keeps_only_the_delegates_signatures_in_their_order() -> None:
    head, _ = head_of()
    revision = proposal(head, OUTSIDER, K3, K1, name="renamed")
    checked = check_proposal(head, revision)
    assert checked is not None and signer_ids(checked) == [str(K1.peer_id), str(K3.peer_id)]
    assert proposal_id(checked) == revision.document.digest.hex() and len(proposal_id(checked)) == 64


def test_a_bad_signature_or_no_delegate_refuses_the_proposal_whole() -> None:
    head, _ = head_of()
    good = proposal(head, K1, name="renamed")
    broken = SignedRevision(good.document, (*good.signatures, Signature(K2.public_key, bytes(64))))
    with pytest.raises(InvalidIdentity, match="bad signature by " + str(K2.peer_id)):
        check_proposal(head, broken)
    with pytest.raises(InvalidIdentity, match="signed by none of the delegates"):
        check_proposal(head, proposal(head, OUTSIDER, name="renamed"))
    with pytest.raises(InvalidIdentity, match="signed by none of the delegates"):
        check_proposal(head, proposal(head, name="unsigned"))
    # One refused proposal refuses the whole merge: nothing of it is taken.
    with pytest.raises(InvalidIdentity):
        merge_proposals(head, {}, [good, broken])


def test_a_stale_proposal_is_left_out() -> None:
    head, genesis = head_of(threshold=1)
    second = proposal(head, K1, name="second")
    after = verify_chain(head.rid, [genesis, second])
    stale = proposal(head, K1, name="third")
    assert check_proposal(after, stale) is None
    assert merge_proposals(after, {}, [stale]).pending == {}


def test_signatures_unite_and_the_threshold_adopts() -> None:
    head, _ = head_of(threshold=2)
    by_one = proposal(head, K1, name="renamed", threshold=1)
    first = merge_proposals(head, {}, [by_one])
    pid = proposal_id(by_one)
    assert first.adopted is None and list(first.pending) == [pid] and first.changed == {pid}
    # The same again changes nothing.
    again = merge_proposals(head, first.pending, [by_one])
    assert again.adopted is None and again.changed == frozenset() and again.pending == first.pending
    # K3's signature arrives separately: two of three, the threshold.
    by_three = proposal(head, K3, name="renamed", threshold=1)
    done = merge_proposals(head, first.pending, [by_three])
    assert done.adopted is not None and done.pending == {}
    assert signer_ids(done.adopted) == [str(K1.peer_id), str(K3.peer_id)]


def test_an_adopted_proposal_verifies_as_the_next_revision() -> None:
    head, genesis = head_of(threshold=2)
    merged = merge_proposals(head, {}, [proposal(head, K1, K2, description="agreed")])
    assert merged.adopted is not None
    after = verify_chain(head.rid, [genesis, merged.adopted])
    assert after.length == 2 and after.current.description == "agreed"


def test_of_two_ready_proposals_the_most_signed_then_the_smallest_id_wins() -> None:
    head, _ = head_of(threshold=1)
    a = proposal(head, K1, name="a")
    b = proposal(head, K1, K2, name="b")
    assert merge_proposals(head, {}, [a, b]).adopted == check_proposal(head, b)
    c = proposal(head, K1, name="c")
    winner = min((a, c), key=proposal_id)
    assert merge_proposals(head, {}, [c, a]).adopted == check_proposal(head, winner)


def test_pending_proposals_are_bounded_held_ones_first() -> None:
    head, _ = head_of(threshold=3)
    held = merge_proposals(head, {}, [proposal(head, K1, name=f"held-{n}") for n in range(MAX_PROPOSALS - 1)])
    assert len(held.pending) == MAX_PROPOSALS - 1
    newcomers = [proposal(head, K1, name="one-signer"), proposal(head, K1, K2, name="two-signers")]
    merged = merge_proposals(head, held.pending, newcomers)
    assert len(merged.pending) == MAX_PROPOSALS
    assert set(held.pending) <= set(merged.pending)
    assert proposal_id(newcomers[1]) in merged.pending  # the most signed first
    assert merged.left_out == (proposal_id(newcomers[0]),)
    # A newcomer that meets the threshold is adopted even at the bound.
    ready = proposal(head, K1, K2, K3, name="ready")
    assert merge_proposals(head, merged.pending, [ready]).adopted == ready


def test_find_proposal_by_prefix() -> None:
    head, _ = head_of(threshold=3)
    pending = merge_proposals(head, {}, [proposal(head, K1, name=f"p{n}") for n in range(3)]).pending
    for pid in pending:
        assert find_proposal(pending, pid[:12].upper()) == pid
    with pytest.raises(ProposalNotFound, match="at least 4 hex digits"):
        find_proposal(pending, "ab")
    with pytest.raises(ProposalNotFound, match="not a proposal id"):
        find_proposal(pending, "xyz!")
    with pytest.raises(ProposalNotFound, match="no pending proposal"):
        find_proposal(pending, "f" * 64)


def test_check_served_checks_the_peers_chain_too() -> None:
    head, genesis = head_of(threshold=2)
    good = proposal(head, K1, name="renamed")
    stale = proposal(head, K1, name="stale")
    second = proposal(head, K1, K2, name="second")
    assert check_served(head.rid, [genesis], [good], IdentityLimits()) == [good]
    assert check_served(head.rid, [genesis, second], [stale], IdentityLimits()) == []
    forged = replace(genesis, signatures=(Signature(K1.public_key, bytes(64)),))
    with pytest.raises(InvalidIdentity):
        check_served(head.rid, [forged], [good], IdentityLimits())


def test_changes_name_what_differs() -> None:
    head, _ = head_of(threshold=2)
    revision = propose_revision(
        head, name="new", threshold=1, delegates=[K1.public_key, K3.public_key, OUTSIDER.public_key]
    )
    assert changes(head.current, revision.document) == {
        "name": {"from": "app", "to": "new"},
        "threshold": {"from": 2, "to": 1},
        "delegates": {"added": [str(OUTSIDER.peer_id)], "removed": [str(K2.peer_id)]},
    }


def test_proposal_refs_in_the_layout() -> None:
    head, _ = head_of()
    revision = proposal(head, K1, name="renamed")
    pid = proposal_id(revision)
    assert proposal_ref(pid) == PROPOSALS + pid
    where = parse_ref(PROPOSALS + pid)
    assert where is not None and where.kind is RefKind.PROPOSAL and where.name == pid
    assert parse_ref(PROPOSALS + pid.upper()) is None and parse_ref(PROPOSALS + pid[:-1]) is None
    with pytest.raises(ValueError):
        proposal_ref("nope")
    commit = proposal_commit(revision, 2, "a" * 40)
    assert b"guts identity: proposed revision 2" in commit.commit.body
    assert f"parent {'a' * 40}".encode() in commit.commit.body
    with pytest.raises(ValueError):
        proposal_commit(revision, 1, "a" * 40)


# -- against real git ----------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> History:
    work_tree = tmp_path_factory.mktemp("source") / "project"
    git("init", "--quiet", "--initial-branch=main", str(work_tree))
    return build_history(work_tree / ".git", commits=30, topic_every=10)


async def test_propose_accept_persist_and_adopt(tmp_path: Path, source: History) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    state = await repos.init(source.path.parent, keypair=K1, delegates=[K2.peer_id, K3.peer_id], threshold=2)
    rid = str(state.rid)
    path = repos.storage.path(rid)
    # Threshold 2: only K1 signed, nothing is canonical yet.
    assert "refs/heads/main" not in state.canonical.ref_map()

    with pytest.raises(InputError, match="not a delegate"):
        await repos.propose(rid, OUTSIDER, name="x")
    with pytest.raises(InputError, match="changes nothing"):
        await repos.propose(rid, K1, name=state.document.name)
    with pytest.raises(InputError, match="threshold"):
        await repos.propose(rid, K1, threshold=4)

    pending, pid = await repos.propose(rid, K1, name="renamed", threshold=1)
    assert pending.identity.length == 1 and list(pending.proposals) == [pid]
    stored = pending.proposals[pid]
    assert refs_of(path)[proposal_ref(pid)] == stored.commit
    git("fsck", "--strict", "--no-dangling", "--no-progress", git_dir=path)

    # Read back at open, as it was.
    reopened = await Repositories.open(tmp_path / "storage")
    assert reopened.show(rid).proposals == pending.proposals
    with pytest.raises(ProposalNotFound):
        await reopened.accept(rid, K2, "0000")
    same, _ = await reopened.accept(rid, K1, pid[:8])  # K1 signed it already
    assert same == reopened.show(rid)

    # K3 accepts: two of three, revision 2 takes effect with threshold 1,
    # and main becomes canonical on K1's statement alone.
    adopted, got = await reopened.accept(rid, K3, pid[:10])
    assert got == pid and adopted.identity.length == 2 and adopted.document.name == "renamed"
    assert adopted.document.threshold == 1 and adopted.proposals == {}
    assert adopted.canonical.ref_map()["refs/heads/main"] == source.refs["refs/heads/main"]
    refs = refs_of(path)
    assert proposal_ref(pid) not in refs and refs["refs/heads/main"] == source.refs["refs/heads/main"]
    again = await Repositories.open(tmp_path / "storage")
    assert again.show(rid).identity.length == 2 and again.show(rid).proposals == {}
    # Accepting the revision in effect changes nothing.
    assert (await again.accept(rid, K2, pid))[0] == again.show(rid)


async def test_threshold_one_takes_effect_at_once_and_merge_refuses_forgeries(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    repos = await Repositories.open(tmp_path / "storage")
    state = await repos.init(source.path.parent, keypair=K1, delegates=[K2.peer_id], threshold=1)
    rid = str(state.rid)
    done, _ = await repos.propose(rid, K1, description="now", delegates=[K1.peer_id, K2.peer_id], threshold=2)
    assert done.identity.length == 2 and done.document.threshold == 2 and done.proposals == {}

    # From a peer: K2's valid proposal merges; a broken one changes nothing.
    theirs = proposal(done.identity, K2, name="theirs")
    merged = await repos.merge_proposals(rid, [theirs])
    assert list(merged.proposals) == [proposal_id(theirs)]
    before = refs_of(repos.storage.path(rid))
    forged = proposal(done.identity, OUTSIDER, name="outsider")
    broken = SignedRevision(theirs.document, (Signature(K1.public_key, bytes(64)),))
    for bad in (forged, broken):
        with pytest.raises(InvalidIdentity):
            await repos.merge_proposals(rid, [bad])
    assert refs_of(repos.storage.path(rid)) == before and repos.show(rid) == merged

    # A ref moved by hand to another commit is dropped at open, with a warning.
    path = repos.storage.path(rid)
    git("update-ref", proposal_ref(proposal_id(theirs)), merged.identity_commit, git_dir=path)
    with caplog.at_level(logging.WARNING):
        reopened = await Repositories.open(tmp_path / "storage")
    assert reopened.show(rid).proposals == {}
    assert proposal_ref(proposal_id(theirs)) not in refs_of(path)
    assert any("proposal" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


# -- by sync, over the memory transport ------------------------------------------------


class Serving(SyncService):
    """A's service, with the pending proposals replaced when ``proposals`` is set."""

    proposals: tuple[bytes, ...] | None = None

    async def _refs(self, rid: str) -> Refs | Refused:  # type: ignore[override]
        real = await super()._refs(rid)
        if self.proposals is None or not isinstance(real, Refs):
            return real
        return replace(real, proposals=self.proposals)


async def test_proposals_travel_by_sync_and_forged_ones_are_refused(
    tmp_path: Path, source: History, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_hosts(2) as (a, b):
        repos_a = await Repositories.open(tmp_path / "a")
        repos_b = await Repositories.open(tmp_path / "b")
        made = await repos_a.init(source.path.parent, keypair=a.keypair, delegates=[b.peer_id], threshold=2)
        rid = str(made.rid)
        service = Serving(a, repos_a)
        SyncService(b, repos_b)
        await b.connect(full_addr(a))
        await fetch(b, repos_b, a.peer_id, rid)

        pending, pid = await repos_a.propose(rid, a.keypair, name="renamed", threshold=1)
        got = await fetch(b, repos_b, a.peer_id, rid)
        assert list(got.proposals) == [pid] and got.identity.length == 1
        assert got.proposals[pid].revision.encode() == pending.proposals[pid].revision.encode()

        path_b = repos_b.storage.path(rid)
        before = refs_of(path_b)
        head = got.identity
        outsider = proposal(head, OUTSIDER, name="outsider")
        real = pending.proposals[pid].revision
        broken = SignedRevision(real.document, (Signature(a.keypair.public_key, bytes(64)),))
        for bad, reason in ((outsider, "signed by none of the delegates"), (broken, "bad signature")):
            service.proposals = (bad.encode(),)
            with caplog.at_level(logging.WARNING), pytest.raises(InvalidIdentity, match=reason):
                await fetch(b, repos_b, a.peer_id, rid)
            assert refs_of(path_b) == before and repos_b.show(rid) == got
            assert any(str(a.peer_id) in r.getMessage() and reason in r.getMessage() for r in caplog.records)

        # B accepts: two of two, revision 2 in effect on B; A gets it by sync.
        service.proposals = None
        adopted, _ = await repos_b.accept(rid, b.keypair, pid)
        assert adopted.identity.length == 2 and adopted.proposals == {}
        after = await fetch(a, repos_a, b.peer_id, rid)
        assert after.identity.length == 2 and after.document.name == "renamed" and after.proposals == {}
        assert proposal_ref(pid) not in refs_of(repos_a.storage.path(rid))
        assert after.canonical.ref_map()["refs/heads/main"] == source.refs["refs/heads/main"]


def test_refs_carry_a_bounded_number_of_proposals() -> None:
    config = SyncConfig(max_proposals=2)
    refs = Refs((b"genesis",), (), (), (b"p1", b"p2"))
    assert decode_response(encode_response(refs), config) == refs
    with pytest.raises(DecodeError, match="3 proposals"):
        decode_response(encode_response(replace(refs, proposals=(b"p1", b"p2", b"p3"))), config)
