"""libp2p Noise: the sans-IO handshake and transport, and the trio adapter."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import trio
import trio.testing
from trio.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    lockstep_stream_pair,
    memory_stream_pair,
    memory_stream_pump,
)

from guts.crypto import KeyPair
from guts.errors import (
    DecodeError,
    HandshakeError,
    LocalProtocolError,
    PeerIdMismatch,
    ProtocolError,
)
from guts.pb import crypto_pb2, noise_pb2
from guts.peer import PeerId
from guts.security.noise import (
    MAX_PLAINTEXT,
    PROTOCOL_ID,
    CipherState,
    NoiseHandshake,
    NoiseIdentity,
    NoiseStream,
    NoiseTransport,
    noise_handshake,
)
from guts.security.noise._handshake import SIGNATURE_PREFIX, encode_payload
from guts.transport import TcpConnection, memory_connection_pair
from guts.wire import NegotiatedStream, accept_protocol

ALICE = KeyPair.from_seed(bytes(31) + b"\x01")
BOB = KeyPair.from_seed(bytes(31) + b"\x02")
CAROL = KeyPair.from_seed(bytes(31) + b"\x03")


def test_protocol_id() -> None:
    assert PROTOCOL_ID == "/noise"


def test_public_surface() -> None:
    import guts.security.noise as noise

    assert sorted(noise.__all__) == [
        "CipherState",
        "MAX_PLAINTEXT",
        "NOISE_PROTOCOL_NAME",
        "NoiseHandshake",
        "NoiseIdentity",
        "NoiseResult",
        "NoiseStream",
        "NoiseTransport",
        "PROTOCOL_ID",
        "noise_handshake",
    ]
    for name in noise.__all__:
        assert hasattr(noise, name)


# -- sans-IO helpers ----------------------------------------------------------


def pair(**kwargs: object) -> tuple[NoiseHandshake, NoiseHandshake]:
    initiator_kwargs = {k[2:]: v for k, v in kwargs.items() if k.startswith("i_")}
    responder_kwargs = {k[2:]: v for k, v in kwargs.items() if k.startswith("r_")}
    return (
        NoiseHandshake(ALICE, initiator=True, **initiator_kwargs),  # type: ignore[arg-type]
        NoiseHandshake(BOB, initiator=False, **responder_kwargs),  # type: ignore[arg-type]
    )


def run(initiator: NoiseHandshake, responder: NoiseHandshake) -> None:
    """Pump bytes between two cores until neither has anything to say."""
    while True:
        a = initiator.data_to_send()
        if a:
            responder.receive_data(a)
        b = responder.data_to_send()
        if b:
            initiator.receive_data(b)
        if not a and not b:
            return


def transports(initiator: NoiseHandshake, responder: NoiseHandshake) -> tuple[NoiseTransport, NoiseTransport]:
    i, r = initiator.result(), responder.result()
    return NoiseTransport(i.send_cipher, i.receive_cipher), NoiseTransport(r.send_cipher, r.receive_cipher)


def frames(wire: bytes | bytearray) -> list[int]:
    """Lengths of the frames in ``wire``."""
    lengths = []
    pos = 0
    while pos < len(wire):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        lengths.append(n)
        pos += 2 + n
    assert pos == len(wire)
    return lengths


# -- handshake ----------------------------------------------------------------


def test_handshake_between_cores() -> None:
    initiator, responder = pair(i_expected_peer=BOB.peer_id)
    assert not initiator.complete and not responder.complete
    run(initiator, responder)
    assert initiator.complete and responder.complete
    i, r = initiator.result(), responder.result()
    assert i.remote_peer == BOB.peer_id and r.remote_peer == ALICE.peer_id
    assert i.remote_public_key == BOB.public_key and r.remote_public_key == ALICE.public_key
    assert i.remote_muxers == r.remote_muxers == ("/yamux/1.0.0",)
    assert i.handshake_hash == r.handshake_hash
    assert initiator.unused_data() == responder.unused_data() == b""
    ti, tr = transports(initiator, responder)
    assert tr.receive_data(ti.encrypt(b"ping")) == b"ping"
    assert ti.receive_data(tr.encrypt(b"pong")) == b"pong"


def test_message_sizes() -> None:
    initiator, responder = pair()
    m1 = initiator.data_to_send()
    assert frames(m1) == [32]  # e, and no payload
    responder.receive_data(m1)
    m2 = responder.data_to_send()
    payload = len(encode_payload(BOB, bytes(32), ["/yamux/1.0.0"]))
    assert frames(m2) == [32 + 48 + payload + 16]
    initiator.receive_data(m2)
    assert frames(initiator.data_to_send()) == [48 + payload + 16]


def test_muxer_lists() -> None:
    initiator, responder = pair(i_muxers=(), r_muxers=["/yamux/1.0.0", "/mplex/6.7.0"])
    run(initiator, responder)
    assert initiator.result().remote_muxers == ("/yamux/1.0.0", "/mplex/6.7.0")
    assert responder.result().remote_muxers == ()


def test_payload_encoding_matches_js() -> None:
    static = bytes(range(32))
    payload = noise_pb2.NoiseHandshakePayload.FromString(encode_payload(ALICE, static, ["/yamux/1.0.0"]))
    assert payload.identity_key == ALICE.public_key.to_protobuf()
    assert ALICE.public_key.verify(SIGNATURE_PREFIX + static, payload.identity_sig)
    data = encode_payload(ALICE, static, ["/yamux/1.0.0"])
    assert data.endswith(b"\x22\x0e\x12\x0c/yamux/1.0.0")
    assert encode_payload(ALICE, static, []).endswith(b"\x22\x00")


def test_muxers_must_be_a_sequence_of_ids() -> None:
    with pytest.raises(TypeError):
        NoiseHandshake(ALICE, initiator=True, muxers="/yamux/1.0.0")


def test_oversized_payload_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError):
        NoiseHandshake(ALICE, initiator=True, muxers=["/m" * 20000, "/n" * 20000])


def test_noise_identity_is_shared_by_handshakes() -> None:
    identity = NoiseIdentity(ALICE)
    first = NoiseHandshake(identity, initiator=True)
    second = NoiseHandshake(identity, initiator=True)
    assert first._s_pub == second._s_pub == identity.static_public
    assert first._payload is second._payload  # encoded and signed once
    assert first.data_to_send() != second.data_to_send()  # fresh ephemeral keys
    payload = noise_pb2.NoiseHandshakePayload.FromString(identity.payload(["/yamux/1.0.0"]))
    assert ALICE.public_key.verify(SIGNATURE_PREFIX + identity.static_public, payload.identity_sig)
    assert identity.payload([]).endswith(b"\x22\x00")
    assert str(ALICE.peer_id) in repr(identity)
    for hs in (NoiseHandshake(identity, initiator=True), NoiseHandshake(identity, initiator=True, muxers=())):
        responder = NoiseHandshake(BOB, initiator=False)
        run(hs, responder)
        assert responder.result().remote_peer == ALICE.peer_id


def test_noise_identity_and_static_private_do_not_mix() -> None:
    with pytest.raises(TypeError):
        NoiseHandshake(NoiseIdentity(ALICE), initiator=True, static_private=bytes(32))
    with pytest.raises(ValueError):
        NoiseIdentity(ALICE, static_private=bytes(31))
    with pytest.raises(ValueError):
        NoiseHandshake(ALICE, initiator=True, ephemeral_private=bytes(33))


def test_noise_identity_refuses_an_oversized_payload() -> None:
    with pytest.raises(LocalProtocolError):
        NoiseIdentity(ALICE).payload(["/m" * 20000, "/n" * 20000])


def test_byte_by_byte() -> None:
    initiator, responder = pair()
    for _ in range(3):
        for data, peer in ((initiator.data_to_send(), responder), (responder.data_to_send(), initiator)):
            for i in range(len(data)):
                peer.receive_data(data[i : i + 1])
                assert peer.buffered <= len(data)
    assert initiator.complete and responder.complete


def test_unused_data_after_message_3() -> None:
    # The initiator may send its first transport frames in the same write
    # as message 3: the responder must hand them over, not drop them.
    initiator, responder = pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    i = initiator.result()
    early = NoiseTransport(i.send_cipher, i.receive_cipher)
    wire = initiator.data_to_send() + early.encrypt(b"first") + early.encrypt(b"second")[:5]
    responder.receive_data(wire)
    assert responder.complete
    r = responder.result()
    tr = NoiseTransport(r.send_cipher, r.receive_cipher)
    assert tr.receive_data(responder.unused_data()) == b"first"
    assert tr.buffered == 5
    responder.receive_data(b"after")  # more bytes after completion are kept too
    assert responder.unused_data().endswith(b"after")


def test_result_before_completion() -> None:
    initiator, _ = pair()
    with pytest.raises(LocalProtocolError):
        initiator.result()


def test_peer_id_mismatch() -> None:
    initiator, responder = pair(i_expected_peer=CAROL.peer_id)
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(PeerIdMismatch, match=str(BOB.peer_id)) as info:
        initiator.receive_data(responder.data_to_send())
    assert isinstance(info.value, HandshakeError)
    assert not initiator.complete
    assert initiator.data_to_send() == b""  # message 3 never goes out
    with pytest.raises(LocalProtocolError):
        initiator.receive_data(b"more")


def test_expected_peer_on_the_responder_side() -> None:
    initiator, responder = pair(r_expected_peer=CAROL.peer_id)
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    with pytest.raises(PeerIdMismatch):
        responder.receive_data(initiator.data_to_send())


def _forged(hs: NoiseHandshake, payload: bytes) -> NoiseHandshake:
    hs._payload = payload  # what a misbehaving peer would send
    return hs


@pytest.mark.parametrize("side", ["responder", "initiator"])
def test_bad_signature(side: str) -> None:
    initiator, responder = pair()
    forged = encode_payload(ALICE if side == "initiator" else BOB, os.urandom(32), ["/yamux/1.0.0"])
    _forged(initiator if side == "initiator" else responder, forged)
    with pytest.raises(HandshakeError, match="signature"):
        run(initiator, responder)


def test_identity_of_someone_else() -> None:
    # Carol's key with Bob's signature: the signature check catches it.
    initiator, responder = pair()
    payload = noise_pb2.NoiseHandshakePayload.FromString(responder._payload)
    payload.identity_key = CAROL.public_key.to_protobuf()
    _forged(responder, payload.SerializeToString())
    with pytest.raises(HandshakeError):
        run(initiator, responder)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xff\xff\xff", DecodeError),
        (b"", HandshakeError),  # no identity at all
        (noise_pb2.NoiseHandshakePayload(identity_sig=bytes(64)).SerializeToString(), HandshakeError),
        (
            noise_pb2.NoiseHandshakePayload(
                identity_key=crypto_pb2.PublicKey(Type="RSA", Data=bytes(270)).SerializeToString(),
                identity_sig=bytes(64),
            ).SerializeToString(),
            HandshakeError,
        ),
        (
            noise_pb2.NoiseHandshakePayload(identity_key=b"\x08\x01", identity_sig=bytes(64)).SerializeToString(),
            HandshakeError,
        ),
    ],
)
def test_bad_payloads(payload: bytes, error: type[Exception]) -> None:
    initiator, responder = pair()
    _forged(responder, payload)
    with pytest.raises(error):
        run(initiator, responder)


@pytest.mark.parametrize("index", [2, 33, 40, 100, -1])
def test_tampered_message_2(index: int) -> None:
    initiator, responder = pair()
    responder.receive_data(initiator.data_to_send())
    m2 = bytearray(responder.data_to_send())
    m2[index] ^= 0x01
    with pytest.raises(HandshakeError):
        initiator.receive_data(bytes(m2))


@pytest.mark.parametrize("index", [2, 60, -1])
def test_tampered_message_3(index: int) -> None:
    initiator, responder = pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    m3 = bytearray(initiator.data_to_send())
    m3[index] ^= 0x80
    with pytest.raises(HandshakeError):
        responder.receive_data(bytes(m3))


@pytest.mark.parametrize("point", [bytes(32), b"\x01" + bytes(31), b"\xec" + b"\xff" * 30 + b"\x7f"])
def test_low_order_ephemeral_key_is_refused(point: bytes) -> None:
    _, responder = pair()
    with pytest.raises(HandshakeError, match="low-order"):
        responder.receive_data(b"\x00\x20" + point)


def test_short_messages() -> None:
    _, responder = pair()
    with pytest.raises(DecodeError):
        responder.receive_data(b"\x00\x10" + bytes(16))
    initiator, _ = pair()
    with pytest.raises(DecodeError):
        initiator.receive_data(b"\x00\x5f" + bytes(95))
    initiator, responder = pair()
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(DecodeError):
        responder.receive_data(b"\x00\x3f" + bytes(63))


def test_payload_in_message_1_is_ignored() -> None:
    initiator, responder = pair()
    m1 = initiator.data_to_send()
    # Same ephemeral key plus a payload the spec says must not be there.
    pair_i = NoiseHandshake(ALICE, initiator=True, ephemeral_private=bytes([7]) * 32)
    m1 = pair_i.data_to_send()
    responder.receive_data(len(m1[2:] + b"extra").to_bytes(2, "big") + m1[2:] + b"extra")
    assert responder.data_to_send()  # message 2 went out


def test_handshake_is_deterministic_with_injected_keys() -> None:
    def transcript() -> bytes:
        initiator, responder = pair(
            i_static_private=bytes([1]) * 32,
            i_ephemeral_private=bytes([2]) * 32,
            r_static_private=bytes([3]) * 32,
            r_ephemeral_private=bytes([4]) * 32,
        )
        m1 = initiator.data_to_send()
        responder.receive_data(m1)
        m2 = responder.data_to_send()
        initiator.receive_data(m2)
        return m1 + m2 + initiator.data_to_send()

    assert transcript() == transcript()


# -- transport ----------------------------------------------------------------


@pytest.fixture
def channel() -> tuple[NoiseTransport, NoiseTransport]:
    initiator, responder = pair()
    run(initiator, responder)
    return transports(initiator, responder)


def test_frame_boundaries(channel: tuple[NoiseTransport, NoiseTransport]) -> None:
    send, receive = channel
    assert send.encrypt(b"") == b""
    assert frames(send.encrypt(bytes(MAX_PLAINTEXT))) == [65535]
    assert frames(send.encrypt(bytes(MAX_PLAINTEXT + 1))) == [65535, 17]
    assert frames(send.encrypt(bytes(3 * MAX_PLAINTEXT))) == [65535] * 3
    data = os.urandom(1_000_000)
    wire = send.encrypt(data)
    assert max(frames(wire)) == 65535
    assert receive.receive_data(b"".join(send.encrypt(b"") for _ in range(3))) == b""


def test_encrypt_in_place_and_join_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # cryptography < 45 lacks encrypt_into; both paths must give the same bytes.
    from guts.security.noise import _transport

    data = os.urandom(3 * MAX_PLAINTEXT + 1000)
    key = os.urandom(32)
    in_place = NoiseTransport(CipherState(key), CipherState(key)).encrypt(data)
    monkeypatch.setattr(_transport, "_HAVE_INTO", False)
    joined = NoiseTransport(CipherState(key), CipherState(key)).encrypt(data)
    assert bytes(in_place) == joined
    assert NoiseTransport(CipherState(key), CipherState(key)).receive_data(joined) == data


def test_transport_round_trip_in_odd_chunks(channel: tuple[NoiseTransport, NoiseTransport]) -> None:
    send, receive = channel
    data = os.urandom(300_000)
    wire = send.encrypt(data) + send.encrypt(b"tail")
    out = []
    for size in (1, 1, 1, 65536, 3, 70000, 200000, 1 << 20):
        out.append(receive.receive_data(wire[:size]))
        wire = wire[size:]
        assert receive.buffered <= 65536
    assert b"".join(out) == data + b"tail"
    assert receive.buffered == 0


def test_transport_accepts_bytearray_and_memoryview(channel: tuple[NoiseTransport, NoiseTransport]) -> None:
    send, receive = channel
    wire = bytearray(send.encrypt(memoryview(b"abc" * 30000)))
    assert receive.receive_data(wire) == b"abc" * 30000
    wire.extend(b"x")  # no buffer export was left behind


def test_tampered_ciphertext(channel: tuple[NoiseTransport, NoiseTransport]) -> None:
    send, receive = channel
    wire = bytearray(send.encrypt(b"attack at dawn"))
    wire[5] ^= 1
    with pytest.raises(DecodeError, match="authentication"):
        receive.receive_data(bytes(wire))


def test_reordered_frames(channel: tuple[NoiseTransport, NoiseTransport]) -> None:
    send, receive = channel
    first, second = send.encrypt(b"one"), send.encrypt(b"two")
    with pytest.raises(DecodeError):
        receive.receive_data(second + first)


def test_frame_shorter_than_tag(channel: tuple[NoiseTransport, NoiseTransport]) -> None:
    _, receive = channel
    with pytest.raises(DecodeError, match="shorter than its tag"):
        receive.receive_data(b"\x00\x05hello")


def test_nonce_exhaustion() -> None:
    key = bytes(32)
    cs = CipherState(key, nonce=2**64 - 2)
    ct = cs.encrypt_with_ad(None, b"last")
    with pytest.raises(LocalProtocolError, match="exhausted"):
        cs.encrypt_with_ad(None, b"one too many")
    assert CipherState(key, nonce=2**64 - 2).decrypt_with_ad(None, ct) == b"last"
    with pytest.raises(DecodeError, match="exhausted"):
        CipherState(key, nonce=2**64 - 1).decrypt_with_ad(None, ct)
    # A multi-frame write that would run out fails before using any nonce.
    sender = CipherState(key, nonce=2**64 - 3)
    transport = NoiseTransport(sender, CipherState(key))
    with pytest.raises(LocalProtocolError):
        transport.encrypt(bytes(3 * MAX_PLAINTEXT))
    assert sender.nonce == 2**64 - 3
    assert frames(transport.encrypt(bytes(2 * MAX_PLAINTEXT))) == [65535, 65535]


def test_cipher_state_repr_hides_the_key() -> None:
    assert "00" * 8 not in repr(CipherState(bytes(32)))


def test_transport_needs_keys() -> None:
    with pytest.raises(ValueError):
        NoiseTransport(CipherState(), CipherState(bytes(32)))


# -- trio adapter -------------------------------------------------------------

StreamPair = tuple[trio.abc.Stream, trio.abc.Stream]


def trickle_stream_pair() -> StreamPair:
    """Two streams joined so that every receive_some gets at most one byte."""

    def one_way() -> tuple[MemorySendStream, MemoryReceiveStream]:
        send, receive = MemorySendStream(), MemoryReceiveStream()

        async def pump() -> None:
            memory_stream_pump(send, receive, max_bytes=1)

        send.send_all_hook = pump
        receive.receive_some_hook = pump
        send.close_hook = lambda: memory_stream_pump(send, receive)
        return send, receive

    s1, r1 = one_way()
    s2, r2 = one_way()
    return trio.StapledStream(s1, r2), trio.StapledStream(s2, r1)


async def secure(
    make_pair: Callable[[], StreamPair] = memory_stream_pair, expected_peer: PeerId | None = None
) -> tuple[NoiseStream, NoiseStream]:
    a, b = make_pair()
    results: dict[str, NoiseStream] = {}

    async def side(name: str, stream: trio.abc.Stream, keypair: KeyPair, initiator: bool) -> None:
        expected = expected_peer if initiator else None
        results[name] = await noise_handshake(stream, keypair, initiator=initiator, expected_peer=expected)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "a", a, ALICE, True)
            nursery.start_soon(side, "b", b, BOB, False)
    return results["a"], results["b"]


async def exchange(a: NoiseStream, b: NoiseStream, data: bytes) -> bytes:
    received = bytearray()

    async def reader() -> None:
        while len(received) < len(data):
            chunk = await b.receive_some()
            assert chunk
            received.extend(chunk)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await a.send_all(data)
    return bytes(received)


@pytest.mark.parametrize("make_pair", [memory_stream_pair, lockstep_stream_pair, trickle_stream_pair])
async def test_stream_handshake_and_data(make_pair: Callable[[], StreamPair]) -> None:
    a, b = await secure(make_pair)
    assert a.remote_peer == BOB.peer_id and b.remote_peer == ALICE.peer_id
    assert a.local_peer == ALICE.peer_id and b.local_peer == BOB.peer_id
    assert a.remote_public_key == BOB.public_key
    assert a.remote_muxers == b.remote_muxers == ("/yamux/1.0.0",)
    assert a.handshake_hash == b.handshake_hash
    assert isinstance(a.transport_stream, trio.abc.Stream)
    size = 5000 if make_pair is trickle_stream_pair else 300_000
    data = os.urandom(size)
    assert await exchange(a, b, data) == data
    assert await exchange(b, a, data[:1000]) == data[:1000]


async def test_stream_handshake_with_noise_identities() -> None:
    a, b = memory_stream_pair()
    alice, bob = NoiseIdentity(ALICE), NoiseIdentity(BOB)
    results: dict[str, NoiseStream] = {}

    async def responder() -> None:
        results["b"] = await noise_handshake(b, bob, initiator=False)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(responder)
            results["a"] = await noise_handshake(a, alice, initiator=True, expected_peer=BOB.peer_id)
    assert results["a"].local_peer == ALICE.peer_id and results["b"].remote_peer == ALICE.peer_id
    assert await exchange(results["a"], results["b"], b"hi") == b"hi"


async def test_stream_large_transfer() -> None:
    a, b = await secure()
    data = os.urandom(5 * 1024 * 1024 + 7)
    assert await exchange(a, b, data) == data


async def test_stream_expected_peer() -> None:
    a, b = await secure(expected_peer=BOB.peer_id)
    assert a.remote_peer == BOB.peer_id


async def test_stream_peer_id_mismatch_leaves_the_transport_to_the_caller() -> None:
    raw_a, raw_b = memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def responder() -> None:
                with pytest.raises(HandshakeError, match="closed"):
                    await noise_handshake(raw_b, BOB, initiator=False)

            nursery.start_soon(responder)
            with pytest.raises(PeerIdMismatch):
                await noise_handshake(raw_a, ALICE, initiator=True, expected_peer=CAROL.peer_id)
            await raw_a.send_all(b"")  # still open: closing it is our job
            await raw_a.aclose()


async def test_stream_broken_transport_during_handshake() -> None:
    raw_a, raw_b = memory_stream_pair()
    await raw_b.aclose()
    with pytest.raises(HandshakeError, match="broke") as info:
        await noise_handshake(raw_a, ALICE, initiator=True)
    assert isinstance(info.value.__cause__, trio.BrokenResourceError)


async def test_stream_garbage_during_handshake() -> None:
    raw_a, raw_b = memory_stream_pair()
    await raw_b.send_all(b"\x00\x05hello")
    with pytest.raises(DecodeError):
        await noise_handshake(raw_a, ALICE, initiator=True)


async def test_stream_early_data_from_initiator() -> None:
    # The dialer writes message 3 and transport data in one go; the
    # listener's NoiseStream must deliver that data.
    raw_a, raw_b = memory_stream_pair()
    initiator = NoiseHandshake(ALICE, initiator=True)

    async def dialer() -> None:
        await raw_a.send_all(initiator.data_to_send())
        while not initiator.complete:
            initiator.receive_data(await raw_a.receive_some())
        i = initiator.result()
        early = NoiseTransport(i.send_cipher, i.receive_cipher)
        await raw_a.send_all(initiator.data_to_send() + early.encrypt(b"hello early"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dialer)
            listener = await noise_handshake(raw_b, BOB, initiator=False)
    assert listener.remote_peer == ALICE.peer_id
    assert await listener.receive_some() == b"hello early"


async def test_stream_receive_max_bytes() -> None:
    a, b = await secure()
    await a.send_all(b"abcdefgh")
    assert await b.receive_some(3) == b"abc"
    assert await b.receive_some(3) == b"def"
    assert await b.receive_some() == b"gh"
    with pytest.raises(ValueError):
        await b.receive_some(0)


async def test_stream_small_reads_of_a_large_write() -> None:
    a, b = await secure()
    data = os.urandom(200_000)
    await a.send_all(data)
    out = bytearray()
    while len(out) < len(data):
        chunk = await b.receive_some(7919)
        assert 0 < len(chunk) <= 7919
        out += chunk
    assert out == data


async def test_stream_clean_eof() -> None:
    a, b = await secure()
    await a.send_all(b"bye")
    await a.aclose()
    assert await b.receive_some() == b"bye"
    assert await b.receive_some() == b""
    assert await b.receive_some() == b""


async def test_stream_truncated_frame_at_eof() -> None:
    a, b = await secure()
    wire = a._codec.encrypt(b"this frame will be cut")
    await a.transport_stream.send_all(wire[:-3])
    await a.transport_stream.aclose()
    with pytest.raises(DecodeError, match="middle of a Noise frame"):
        await b.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await b.receive_some()


async def test_stream_tampered_frame() -> None:
    a, b = await secure()
    wire = bytearray(a._codec.encrypt(b"payload"))
    wire[-1] ^= 1
    await a.transport_stream.send_all(bytes(wire))
    with pytest.raises(DecodeError):
        await b.receive_some()
    with pytest.raises(trio.BrokenResourceError) as info:
        await b.receive_some()
    assert isinstance(info.value.__cause__, DecodeError)


async def test_stream_concurrent_use_is_refused() -> None:
    a, b = await secure(lockstep_stream_pair)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(b.receive_some)  # nothing to receive: it waits
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await b.receive_some()
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"x")  # lockstep: nobody reads, it waits
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await a.send_all(b"y")
        with pytest.raises(trio.BusyResourceError):
            await a.wait_send_all_might_not_block()
        nursery.cancel_scope.cancel()


async def test_stream_cancelled_send_breaks_the_send_side() -> None:
    a, b = await secure(lockstep_stream_pair)
    with trio.move_on_after(0.05):
        await a.send_all(b"nobody reads this")
    with pytest.raises(trio.BrokenResourceError):
        await a.send_all(b"more")


async def test_stream_close() -> None:
    a, b = await secure()
    await a.aclose()
    await a.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await a.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await b.send_all(b"x")


async def test_stream_empty_send_is_a_checkpoint() -> None:
    a, _ = await secure()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await a.send_all(b"")


async def test_stream_generic_contract() -> None:
    async def maker() -> tuple[NoiseStream, NoiseStream]:
        return await secure()

    async def clogged() -> tuple[NoiseStream, NoiseStream]:
        return await secure(lockstep_stream_pair)

    await trio.testing.check_two_way_stream(maker, clogged)


# -- writes that never wait ----------------------------------------------------


async def test_try_send_all_writes_whole_frames_without_waiting() -> None:
    a, b = await secure(lambda: memory_connection_pair(1024))
    with trio.testing.assert_no_checkpoints():
        assert a.try_send_all(b"ping") is True
        assert a.try_send_all(b"") is True
    assert await b.receive_some() == b"ping"


async def test_try_send_all_keeps_what_the_transport_cannot_take() -> None:
    # A 100-byte pipe cannot take a 300-byte message (plus framing) at once.
    a, b = await secure(lambda: memory_connection_pair(100))
    first, second = os.urandom(300), os.urandom(70)
    with trio.testing.assert_no_checkpoints():
        assert a.try_send_all(first) is False
        with pytest.raises(trio.BusyResourceError, match="flush"):
            a.try_send_all(b"not now")  # one message held at most; this one is not consumed
    received = bytearray()

    async def reader() -> None:
        while len(received) < 370:
            received.extend(await b.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await a.send_all(second)  # the leftover goes out first, then this
    assert received == first + second
    assert a.try_send_all(b"x" * 500) is False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.flush)
        assert await receive_exactly_noise(b, 500) == b"x" * 500
    await a.flush()  # nothing left: just a checkpoint
    assert await exchange(a, b, b"still in step") == b"still in step"


async def receive_exactly_noise(stream: NoiseStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += await stream.receive_some()
    return data


async def test_try_send_all_without_try_send_below_queues_for_flush() -> None:
    a, b = await secure()  # trio's memory streams have no try_send
    assert a.try_send_all(b"later") is False
    with trio.move_on_after(0.01) as scope:
        await b.receive_some()
    assert scope.cancelled_caught  # nothing went out yet
    await a.flush()
    assert await b.receive_some() == b"later"


async def test_cancelled_flush_breaks_the_send_side() -> None:
    a, _ = await secure(lockstep_stream_pair)
    assert a.try_send_all(b"nobody reads this") is False
    with trio.move_on_after(0.05):
        await a.flush()
    with pytest.raises(trio.BrokenResourceError):
        a.try_send_all(b"more")
    with pytest.raises(trio.BrokenResourceError):
        await a.send_all(b"more")


async def test_try_send_all_errors() -> None:
    a, b = await secure(lambda: memory_connection_pair(1024))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, os.urandom(5000))  # blocks: nobody reads
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            a.try_send_all(b"interleaved")
        nursery.cancel_scope.cancel()
    c, d = await secure(lambda: memory_connection_pair(1024))
    await d.aclose()
    with pytest.raises(trio.BrokenResourceError):
        c.try_send_all(b"to nobody")
    await c.aclose()
    with pytest.raises(trio.ClosedResourceError):
        c.try_send_all(b"after close")


async def test_transport_messages_skip_the_negotiation_wrapper() -> None:
    # Once the handshake is over, a lazy dialer's NegotiatedStream has
    # nothing left to do: Noise runs over the connection itself.
    raw_a, raw_b = memory_connection_pair(64 * 1024)
    results: dict[str, NoiseStream] = {}

    async def listener() -> None:
        negotiated = await accept_protocol(raw_b, [PROTOCOL_ID], hold_answer=True)
        results["b"] = await noise_handshake(negotiated, BOB, initiator=False)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener)
            lazy = NegotiatedStream.lazy(raw_a, PROTOCOL_ID)
            results["a"] = await noise_handshake(lazy, ALICE, initiator=True)
    assert results["a"].transport_stream is raw_a
    assert results["b"].transport_stream is raw_b
    assert results["a"].try_send_all(b"direct") is True
    assert await results["b"].receive_some() == b"direct"


async def _secure_tcp() -> tuple[NoiseStream, NoiseStream]:
    """Noise over a real loopback TCP connection (reads go into a reused buffer)."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        client = TcpConnection(await trio.open_tcp_stream("127.0.0.1", port))
        server = TcpConnection(await listener.accept())
    results: dict[str, NoiseStream] = {}

    async def side(name: str, stream: trio.abc.Stream, keypair: KeyPair, initiator: bool) -> None:
        results[name] = await noise_handshake(stream, keypair, initiator=initiator)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "a", client, ALICE, True)
            nursery.start_soon(side, "b", server, BOB, False)
    return results["a"], results["b"]


async def test_stream_over_tcp() -> None:
    a, b = await _secure_tcp()
    data = os.urandom(3 * 1024 * 1024 + 11)  # frames split across reads of the buffer
    assert await exchange(a, b, data) == data
    assert await exchange(b, a, data[:70_000]) == data[:70_000]
    assert a.try_send_all(b"abcdefgh") is True
    assert await b.receive_some(3) == b"abc"
    assert await b.receive_some() == b"defgh"
    wire = a._codec.encrypt(b"this frame will be cut")
    await a.transport_stream.send_all(wire[:-3])
    await a.transport_stream.aclose()
    with pytest.raises(DecodeError, match="middle of a Noise frame"):
        await b.receive_some()
    await b.aclose()


def test_errors_are_protocol_errors() -> None:
    # The hypothesis suite relies on this hierarchy.
    for error in (HandshakeError, PeerIdMismatch, DecodeError):
        assert issubclass(error, ProtocolError)
