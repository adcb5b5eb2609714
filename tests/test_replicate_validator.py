"""The announcement validator: on its own, and on three gossip nodes over
the memory transport (A - B - C), where a forgery from A stops at B and
costs A its score there."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from guts.crypto import KeyPair
from guts.gossip import GossipMessage, RawMessage, ValidationResult
from guts.peer import PeerId
from guts.repo.identity import create_genesis
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, sign_statement
from guts.replicate.announce import (
    REPOSITORIES_TOPIC,
    Verified,
    VerifiedRefs,
    VerifiedRepository,
    announce_refs,
    announce_repository,
    encode_announcement,
    refs_topic,
)
from guts.replicate.validator import AnnouncementValidator, announcement_validator

from .test_gossip_protocol import gossip_hosts, wait_until

ALICE = KeyPair.from_seed(bytes(range(32)))
GENESIS = create_genesis(ALICE, name="demo", nonce=bytes(16))
RID = Rid.of_genesis(GENESIS.document.raw)
TOPIC = refs_topic(RID)
SIGREFS = "5" * 40
SENDER = KeyPair.from_seed(bytes([9]) * 32).peer_id


def statement(previous: Statement | None = None, oid: str = "a" * 40) -> SignedStatement:
    refs = [("refs/heads/main", oid)]
    made = next_statement(previous, rid=RID, signer=ALICE.peer_id, identity=GENESIS.document, refs=refs)
    return sign_statement(ALICE, made)


S1 = statement()
S2 = statement(S1.statement, "b" * 40)
EQUIVOCATION = statement(S1.statement, "c" * 40)


def forged(signed: SignedStatement) -> bytes:
    data = bytearray(encode_announcement(announce_refs(signed, SIGREFS)))
    data[-45] ^= 1  # a bit of the statement's signature
    return bytes(data)


def message(data: bytes, topic: str = TOPIC, source: PeerId | None = SENDER) -> GossipMessage:
    return GossipMessage(
        topic=topic, data=data, message_id=b"id", author=source, seqno=None, signature=None, key=None,
        propagation_source=source, raw=RawMessage(None, data, None, topic),
    )


class Node:
    """What the validator asks the node: the statements it holds."""

    def __init__(self) -> None:
        self.statements: dict[tuple[Rid, PeerId], Statement] = {}
        self.accepted: list[tuple[Verified, PeerId | None]] = []

    def held(self, rid: Rid, signer: PeerId) -> Statement | None:
        return self.statements.get((rid, signer))

    def on_accept(self, verified: Verified, message: GossipMessage) -> None:
        self.accepted.append((verified, message.propagation_source))


def test_verdicts() -> None:
    node = Node()
    node.statements[(RID, ALICE.peer_id)] = S1.statement
    validator = AnnouncementValidator(node.held, on_accept=node.on_accept, known=lambda verified: False)
    assert validator(message(encode_announcement(announce_refs(S2, SIGREFS)))) is ValidationResult.ACCEPT
    ((verified, source),) = node.accepted
    assert isinstance(verified, VerifiedRefs) and verified.statement == S2.statement and source == SENDER
    assert validator(message(encode_announcement(announce_refs(S1, SIGREFS)))) is ValidationResult.IGNORE
    node.statements[(RID, ALICE.peer_id)] = S2.statement
    assert validator(message(encode_announcement(announce_refs(S2, SIGREFS)))) is ValidationResult.IGNORE
    assert validator(message(encode_announcement(announce_refs(EQUIVOCATION, SIGREFS)))) is ValidationResult.REJECT
    assert validator(message(forged(S2))) is ValidationResult.REJECT
    assert validator(message(b"\x00" * 2_000_000)) is ValidationResult.REJECT  # oversized
    misdirected = message(encode_announcement(announce_refs(S2, SIGREFS)), topic=REPOSITORIES_TOPIC)
    assert validator(misdirected) is ValidationResult.REJECT
    repository = encode_announcement(announce_repository([GENESIS]))
    assert validator(message(repository, topic=REPOSITORIES_TOPIC)) is ValidationResult.ACCEPT
    assert isinstance(node.accepted[-1][0], VerifiedRepository)
    assert len(node.accepted) == 2
    known = announcement_validator(node.held, known=lambda verified: verified.rid == RID)
    assert known(message(repository, topic=REPOSITORIES_TOPIC)) is ValidationResult.IGNORE


def test_one_log_line_per_peer_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    validator = AnnouncementValidator(Node().held)
    other = KeyPair.from_seed(bytes([10]) * 32).peer_id
    with caplog.at_level(logging.WARNING, logger="guts.replicate"):
        for _ in range(5):
            validator(message(forged(S1)))
            validator(message(b"\xff"))
            validator(message(forged(S1), source=other))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert sum("(forged)" in line and "bad signature" in line for line in lines) == 2
    assert sum("(malformed)" in line for line in lines) == 1
    assert all(str(SENDER) in line for line in lines if "malformed" in line)


def test_an_announcement_the_node_awaits_already_goes_no_further() -> None:
    awaited: set[int] = set()

    def on_accept(verified: Verified, message: GossipMessage) -> bool:
        assert isinstance(verified, VerifiedRefs)
        news = verified.statement.seq not in awaited
        awaited.add(verified.statement.seq)
        return news

    validator = AnnouncementValidator(Node().held, on_accept=on_accept)
    data = encode_announcement(announce_refs(S1, SIGREFS))
    assert validator(message(data)) is ValidationResult.ACCEPT  # news: forwarded
    assert validator(message(data)) is ValidationResult.IGNORE  # another holder of it: noted, not forwarded


def test_a_failing_callback_does_not_change_the_verdict(caplog: pytest.LogCaptureFixture) -> None:
    def broken(verified: Verified, message: GossipMessage) -> None:
        raise RuntimeError("boom")

    validator = AnnouncementValidator(Node().held, on_accept=broken)
    with caplog.at_level(logging.ERROR, logger="guts.replicate"):
        assert validator(message(encode_announcement(announce_refs(S1, SIGREFS)))) is ValidationResult.ACCEPT
    assert "failed" in caplog.text


async def test_announcements_over_three_gossip_nodes(autojump_clock: trio.testing.MockClock) -> None:
    async with gossip_hosts(3) as (hosts, (a, b, c)):
        nodes = [Node(), Node()]
        b.set_validator(TOPIC, AnnouncementValidator(nodes[0].held, on_accept=nodes[0].on_accept))
        c.set_validator(TOPIC, AnnouncementValidator(nodes[1].held, on_accept=nodes[1].on_accept))
        sub_b, sub_c = b.subscribe(TOPIC), c.subscribe(TOPIC)
        a.subscribe(TOPIC)
        await wait_until(lambda: hosts[1].peer_id in a.mesh_peers(TOPIC) and hosts[1].peer_id in c.mesh_peers(TOPIC))
        score_before = b.score(hosts[0].peer_id)

        await a.publish(TOPIC, forged(S1))
        await a.publish(TOPIC, encode_announcement(announce_refs(S1, SIGREFS)))
        with trio.fail_after(5):
            assert (await sub_b.receive()).data == encode_announcement(announce_refs(S1, SIGREFS))
            got = await sub_c.receive()  # the forgery was not forwarded: the valid one comes first
        assert got.data == encode_announcement(announce_refs(S1, SIGREFS))
        assert got.propagation_source == hosts[1].peer_id and got.author == hosts[0].peer_id
        assert [(v.statement, src) for v, src in nodes[1].accepted if isinstance(v, VerifiedRefs)] == [
            (S1.statement, hosts[1].peer_id)
        ]
        assert b.score(hosts[0].peer_id) < score_before
        assert b.score(hosts[0].peer_id) < 0

        await trio.sleep(2)
        with trio.move_on_after(1):  # nothing else reached C
            extra = await sub_c.receive()
            pytest.fail(f"C received another message: {extra.data[:40]!r}")
