"""Canonical refs from the delegates' statements: thresholds, ancestry,
divergence, deletion, and namespaces that never count."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from guts.crypto import KeyPair
from guts.peer import PeerId
from guts.repo.canonical import (
    Candidate,
    Canonical,
    DelegateStatus,
    Divergence,
    ancestry_questions,
    compute_canonical,
)
from guts.repo.identity import create_genesis
from guts.repo.revisions import VerifiedIdentity, verify_chain
from guts.repo.rid import Rid
from guts.repo.sigrefs import Statement, next_statement

KEYS = [KeyPair.from_seed(bytes([i]) * 32) for i in range(1, 6)]
OUTSIDER = KeyPair.from_seed(b"\x09" * 32)
MAIN = "refs/heads/main"

# A small history: O <- X <- Y, and O <- Z (Z forks from X and Y).
O, X, Y, Z = "0" * 39 + "1", "1" * 40, "2" * 40, "3" * 40
PARENTS = {X: O, Y: X, Z: O, O: None}


def descends(a: str, b: str) -> bool:
    """Whether ``b`` is a proper ancestor of ``a`` in the history above."""
    step = PARENTS[a]
    while step is not None:
        if step == b:
            return True
        step = PARENTS[step]
    return False


def identity(n: int, threshold: int) -> VerifiedIdentity:
    keys = KEYS[:n]
    genesis = create_genesis(keys[0], name="r", nonce=bytes(range(16)), delegates=[k.public_key for k in keys], threshold=threshold)
    return verify_chain(Rid.of_genesis(genesis.document.raw), [genesis])


def stmt(head: VerifiedIdentity, key: KeyPair, refs: Mapping[str, str]) -> Statement:
    return next_statement(None, rid=head.rid, signer=key.peer_id, identity=head.current, refs=refs.items())


def run(
    head: VerifiedIdentity, sets: Mapping[int, Mapping[str, str]], previous: Mapping[str, str] | None = None
) -> Canonical:
    statements = {KEYS[i].peer_id: stmt(head, KEYS[i], refs) for i, refs in sets.items()}
    return compute_canonical(head, statements, previous or {}, descends)


def test_one_delegate_is_canonical() -> None:
    head = identity(1, 1)
    result = run(head, {0: {MAIN: X, "refs/tags/v1": O}})
    assert result.ref_map() == {MAIN: X, "refs/tags/v1": O}
    assert result.refs == ((MAIN, X), ("refs/tags/v1", O))
    assert result.divergences == ()
    (status,) = result.delegates
    assert status.peer == KEYS[0].peer_id and status.seq == 1 and status.agrees
    assert status.identity == head.current.digest


def test_two_of_two_agree_and_lag() -> None:
    head = identity(2, 2)
    assert run(head, {0: {MAIN: X}, 1: {MAIN: X}}, {MAIN: O}).ref_map() == {MAIN: X}
    # One delegate moved on, the other did not yet: no move, and no divergence
    # (X descends from O: the other is only behind).
    lag = run(head, {0: {MAIN: X}, 1: {MAIN: O}}, {MAIN: O})
    assert lag.ref_map() == {MAIN: O} and lag.divergences == ()
    assert [s.agrees for s in lag.delegates] == [False, True]


def test_two_of_two_diverged() -> None:
    head = identity(2, 2)
    result = run(head, {0: {MAIN: Y}, 1: {MAIN: Z}}, {MAIN: X})
    assert result.ref_map() == {MAIN: X}
    (divergence,) = result.divergences
    assert divergence.ref == MAIN and divergence.kept == X
    assert {c.oid: c.signers for c in divergence.candidates} == {Y: (KEYS[0].peer_id,), Z: (KEYS[1].peer_id,)}
    # A new ref the delegates disagree on stays absent.
    fresh = run(head, {0: {"refs/heads/new": Y}, 1: {"refs/heads/new": Z}})
    assert fresh.refs == () and fresh.divergences[0].kept is None


def test_the_value_does_not_depend_on_what_a_node_saw_before() -> None:
    head = identity(2, 2)
    # One delegate moved on to Y, the other is at X: every node says X,
    # the one that saw X agreed and the one that joins now alike.
    for previous in ({MAIN: X}, {MAIN: O}, {}):
        result = run(head, {0: {MAIN: Y}, 1: {MAIN: X}}, previous)
        assert result.ref_map() == {MAIN: X} and result.divergences == ()
    three = identity(3, 2)
    # Y contains X contains O: two of three contain X.
    assert run(three, {0: {MAIN: Y}, 1: {MAIN: X}, 2: {MAIN: O}}).ref_map() == {MAIN: X}
    # A delegate that steps back moves the ref back to what the threshold contains.
    assert run(head, {0: {MAIN: Y}, 1: {MAIN: O}}, {MAIN: Y}).ref_map() == {MAIN: O}
    # Diverged, a ref no two contain keeps its previous value (a new node has none).
    assert run(head, {0: {MAIN: Y}, 1: {MAIN: Z}}, {MAIN: X}).ref_map() == {MAIN: X}
    assert run(head, {0: {MAIN: Y}, 1: {MAIN: Z}}).ref_map() == {}


def test_two_of_three_moves_without_the_third() -> None:
    head = identity(3, 2)
    result = run(head, {0: {MAIN: Y}, 1: {MAIN: Y}, 2: {MAIN: Z}}, {MAIN: X})
    assert result.ref_map() == {MAIN: Y} and result.divergences == ()
    # A rewind is fine when the threshold signs it.
    assert run(head, {0: {MAIN: O}, 1: {MAIN: O}}, {MAIN: Y}).ref_map() == {MAIN: O}


def test_several_oids_reach_the_threshold() -> None:
    head = identity(2, 1)
    # Both qualify; Y descends from X: Y wins.
    assert run(head, {0: {MAIN: X}, 1: {MAIN: Y}}, {MAIN: O}).ref_map() == {MAIN: Y}
    # Both qualify, neither descends from the other: diverged, kept.
    result = run(head, {0: {MAIN: Y}, 1: {MAIN: Z}}, {MAIN: O})
    assert result.ref_map() == {MAIN: O}
    assert result.divergences == (
        Divergence(MAIN, (Candidate(Y, (KEYS[0].peer_id,)), Candidate(Z, (KEYS[1].peer_id,))), O),
    )
    head4 = identity(4, 2)
    result = run(head4, {0: {MAIN: Y}, 1: {MAIN: Y}, 2: {MAIN: Z}, 3: {MAIN: Z}}, {MAIN: X})
    assert result.ref_map() == {MAIN: X} and len(result.divergences) == 1
    assert run(head4, {0: {MAIN: Y}, 1: {MAIN: Y}, 2: {MAIN: X}, 3: {MAIN: X}}).ref_map() == {MAIN: Y}


def test_deletion_needs_the_threshold() -> None:
    head = identity(3, 2)
    before = {MAIN: X, "refs/heads/old": O}
    # One delegate dropped "old": it stays.
    one = run(head, {0: {MAIN: X}, 1: {MAIN: X, "refs/heads/old": O}, 2: {MAIN: X, "refs/heads/old": O}}, before)
    assert one.ref_map() == before
    # Two dropped it: deleted, although the third still lists it.
    two = run(head, {0: {MAIN: X}, 1: {MAIN: X}, 2: {MAIN: X, "refs/heads/old": O}}, before)
    assert two.ref_map() == {MAIN: X}
    # A delegate with no statement at all is no vote for deletion.
    silent = run(head, {0: {MAIN: X}, 1: {MAIN: X, "refs/heads/old": O}}, before)
    assert silent.ref_map() == before
    # A canonical ref no statement mentions any more.
    assert run(head, {0: {}, 1: {}}, {"refs/tags/gone": O}).refs == ()
    # A ref listed by fewer than the threshold and never canonical stays out.
    assert run(head, {0: {"refs/heads/wip": Y}}).refs == ()


def test_non_delegates_never_count() -> None:
    head = identity(2, 1)
    statements = {
        KEYS[0].peer_id: stmt(head, KEYS[0], {MAIN: X}),
        OUTSIDER.peer_id: stmt(head, OUTSIDER, {MAIN: Z, "refs/heads/evil": Z}),
        KEYS[3].peer_id: stmt(head, KEYS[3], {MAIN: Z}),
    }
    result = compute_canonical(head, statements, {}, descends)
    assert result.ref_map() == {MAIN: X} and result.divergences == ()
    assert [s.peer for s in result.delegates] == [KEYS[0].peer_id, KEYS[1].peer_id]
    assert result.delegates[1] == DelegateStatus(KEYS[1].peer_id, None, None, None, False)


def test_a_statement_under_the_wrong_key_is_a_caller_bug() -> None:
    head = identity(2, 1)
    wrong = {KEYS[0].peer_id: stmt(head, KEYS[1], {MAIN: X})}
    with pytest.raises(ValueError):
        compute_canonical(head, wrong, {}, descends)
    other = identity(1, 1)
    elsewhere = {KEYS[0].peer_id: stmt(other, KEYS[0], {MAIN: X})}
    with pytest.raises(ValueError):
        compute_canonical(head, elsewhere, {}, descends)


def test_ancestry_is_asked_only_when_needed_and_announced() -> None:
    head = identity(3, 2)
    sets = {0: {MAIN: Y, "refs/tags/v1": O}, 1: {MAIN: Z, "refs/tags/v1": O}, 2: {MAIN: X, "refs/tags/v1": O}}
    statements: dict[PeerId, Statement] = {KEYS[i].peer_id: stmt(head, KEYS[i], refs) for i, refs in sets.items()}
    asked: list[tuple[str, str]] = []

    def recording(a: str, b: str) -> bool:
        asked.append((a, b))
        return descends(a, b)

    result = compute_canonical(head, statements, {MAIN: O}, recording)
    # Two of three contain X (one lists it, one lists Y, which descends from it).
    assert result.ref_map() == {MAIN: X, "refs/tags/v1": O}
    assert [d.ref for d in result.divergences] == [MAIN]  # Y, Z and X: not one line
    assert result.divergences[0].kept == X
    assert asked and set(asked) <= ancestry_questions(head, statements)
    answers = {q: descends(*q) for q in ancestry_questions(head, statements)}
    again = compute_canonical(head, statements, {MAIN: O}, lambda a, b: answers[(a, b)])
    assert again == result
    # Agreement asks nothing.
    asked.clear()
    compute_canonical(head, {KEYS[0].peer_id: stmt(head, KEYS[0], {MAIN: X})}, {}, recording)
    assert asked == []
