"""Inbound stream limits and the refusal log throttle, synchronously."""

from __future__ import annotations

from guts.dht.inbound import InboundStreams

from .dht_helpers import peer


def test_streams_per_peer_are_capped_and_freed() -> None:
    streams = InboundStreams(2)
    assert streams.open(peer(1)) and streams.open(peer(1))
    assert not streams.open(peer(1))  # a third at once: refused, not counted
    assert streams.serving(peer(1)) == 2
    assert streams.open(peer(2))  # another peer has its own allowance
    streams.close(peer(1))
    assert streams.open(peer(1))
    for _ in range(2):
        streams.close(peer(1))
    streams.close(peer(2))
    assert streams.serving(peer(1)) == streams.serving(peer(2)) == 0
    assert not streams._open  # nothing left behind for peers gone


def test_refusals_warn_once_per_interval_per_peer() -> None:
    streams = InboundStreams(1, log_interval=10.0)
    assert streams.loud(peer(1), 100.0)
    assert not streams.loud(peer(1), 101.0)
    assert not streams.loud(peer(1), 109.9)  # measured from the last warning, not the last refusal
    assert streams.loud(peer(2), 105.0)
    assert streams.loud(peer(1), 110.0)
    assert not streams.loud(peer(1), 115.0)


def test_the_refusal_log_is_bounded() -> None:
    streams = InboundStreams(1, log_interval=10.0, remember=3)
    for i in range(10):
        assert streams.loud(peer(i), 0.0)
    assert len(streams._warned) == 3
    assert not streams.loud(peer(9), 1.0)  # recent ones are remembered
    assert streams.loud(peer(0), 1.0)  # the least recently refused were forgotten: one more warning
