"""The connection upgrade: lazy /noise negotiation, Noise XX, the inlined muxer."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from guts.crypto import KeyPair
from guts.mux.yamux import YamuxConfig
from guts.security.noise import NoiseIdentity, NoiseStream, noise_handshake
from guts.upgrade import MUXERS, upgrade_inbound, upgrade_outbound
from guts.wire import encode_line, select_protocol

ALICE = KeyPair.from_seed(bytes(31) + b"\x01")
BOB = KeyPair.from_seed(bytes(31) + b"\x02")
MS_NOISE = encode_line("/multistream/1.0.0") + encode_line("/noise")


class Recording(trio.abc.Stream):
    """A stream that remembers each ``send_all`` as one write."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


class CountingKeyPair(KeyPair):
    """Counts signatures (a fresh Noise static key needs one)."""

    signatures = 0

    def sign(self, data: bytes) -> bytes:
        type(self).signatures += 1
        return super().sign(data)


async def upgrade_pair(
    dialer: trio.abc.Stream,
    listener: trio.abc.Stream,
    *,
    dialer_noise: NoiseIdentity | None = None,
    listener_noise: NoiseIdentity | None = None,
    dialer_key: KeyPair = ALICE,
    listener_key: KeyPair = BOB,
) -> tuple[NoiseStream, NoiseStream]:
    results: dict[str, NoiseStream] = {}

    async def inbound() -> None:
        results["in"], _ = await upgrade_inbound(listener, listener_key, YamuxConfig(), noise=listener_noise)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbound)
            results["out"], _ = await upgrade_outbound(
                dialer, dialer_key, listener_key.peer_id, YamuxConfig(), noise=dialer_noise
            )
    return results["out"], results["in"]


async def test_one_round_trip_plus_message_3() -> None:
    a, b = trio.testing.memory_stream_pair()
    dialer, listener = Recording(a), Recording(b)
    out, in_ = await upgrade_pair(dialer, listener)
    assert out.remote_peer == BOB.peer_id and in_.remote_peer == ALICE.peer_id
    assert out.remote_muxers == in_.remote_muxers == MUXERS
    # Dialer: proposal + Noise message 1 in one write, then message 3.
    assert len(dialer.writes) == 2
    assert dialer.writes[0].startswith(MS_NOISE) and len(dialer.writes[0]) == len(MS_NOISE) + 2 + 32
    # Listener: its answer rides with Noise message 2.
    assert len(listener.writes) == 1 and listener.writes[0].startswith(MS_NOISE)
    await out.send_all(b"ping")
    assert await in_.receive_some() == b"ping"
    await in_.send_all(b"pong")
    assert await out.receive_some() == b"pong"


async def test_one_byte_at_a_time_in_lockstep() -> None:
    a, b = trio.testing.lockstep_stream_pair()
    out, in_ = await upgrade_pair(a, b)
    assert out.remote_peer == BOB.peer_id and in_.remote_peer == ALICE.peer_id


async def test_inbound_accepts_a_dialer_that_waits_for_the_answer() -> None:
    # js-libp2p (and our own select_protocol) negotiate before sending Noise.
    a, b = trio.testing.memory_stream_pair()
    listener = Recording(b)
    results: dict[str, NoiseStream] = {}

    async def inbound() -> None:
        results["in"], _ = await upgrade_inbound(listener, BOB, YamuxConfig())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbound)
            negotiated = await select_protocol(a, ["/noise"])
            out = await noise_handshake(negotiated.unwrap(), ALICE, initiator=True, expected_peer=BOB.peer_id)
    assert results["in"].remote_peer == ALICE.peer_id and out.remote_peer == BOB.peer_id
    assert listener.writes[0] == MS_NOISE  # answered at once, not held


async def test_noise_identity_is_signed_once_and_reused() -> None:
    dialer_key = CountingKeyPair.from_seed(bytes(31) + b"\x07")
    noise = NoiseIdentity(dialer_key)
    assert CountingKeyPair.signatures == 1
    listener_noise = NoiseIdentity(BOB)
    for _ in range(3):
        a, b = trio.testing.memory_stream_pair()
        out, in_ = await upgrade_pair(a, b, dialer_noise=noise, listener_noise=listener_noise, dialer_key=dialer_key)
        assert in_.remote_peer == dialer_key.peer_id and out.local_peer == dialer_key.peer_id
    assert CountingKeyPair.signatures == 1
    # Without it, every handshake makes and signs a static key of its own.
    a, b = trio.testing.memory_stream_pair()
    await upgrade_pair(a, b, dialer_key=dialer_key)
    assert CountingKeyPair.signatures == 2


async def test_noise_identity_of_another_key_is_refused() -> None:
    a, b = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="another key pair"):
        await upgrade_outbound(a, ALICE, None, YamuxConfig(), noise=NoiseIdentity(BOB))
    with pytest.raises(ValueError, match="another key pair"):
        await upgrade_inbound(b, ALICE, YamuxConfig(), noise=NoiseIdentity(BOB))
