"""The Noise XX handshake against pinned transcripts (cross-checked with
@libp2p/noise): same keys in, same bytes out, on both sides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guts.crypto import KeyPair
from guts.pb import noise_pb2
from guts.security.noise import NOISE_PROTOCOL_NAME, NoiseHandshake, NoiseIdentity, NoiseTransport
from guts.security.noise._handshake import encode_payload

VECTORS = json.loads((Path(__file__).parent / "vectors" / "noise_payload.json").read_text())
CASES = VECTORS["cases"]
YAMUX_EXTENSIONS = bytes.fromhex("220e120c") + b"/yamux/1.0.0"


def make(case: dict[str, Any], role: str) -> NoiseHandshake:
    side = case[role]
    return NoiseHandshake(
        KeyPair.from_seed(bytes.fromhex(side["identity_seed"])),
        initiator=role == "initiator",
        muxers=side["muxers"],
        static_private=bytes.fromhex(side["static_private"]),
        ephemeral_private=bytes.fromhex(side["ephemeral_private"]),
    )


def test_protocol_name() -> None:
    assert VECTORS["protocol_name"].encode() == NOISE_PROTOCOL_NAME
    assert len(NOISE_PROTOCOL_NAME) == 32


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["description"])
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_payload_bytes(case: dict[str, Any], role: str) -> None:
    side = case[role]
    pair = KeyPair.from_seed(bytes.fromhex(side["identity_seed"]))
    hs = make(case, role)
    payload = bytes.fromhex(side["payload"])
    assert encode_payload(pair, hs._s_pub, side["muxers"]) == payload
    # Field by field: identity key, signature, then the extensions exactly as
    # js-libp2p writes them.
    assert payload.startswith(b"\x0a\x24" + pair.public_key.to_protobuf() + b"\x12\x40")
    if side["muxers"] == ["/yamux/1.0.0"]:
        assert payload.endswith(YAMUX_EXTENSIONS)
    else:
        assert side["muxers"] == [] and payload.endswith(b"\x22\x00")
    decoded = noise_pb2.NoiseHandshakePayload.FromString(payload)
    assert list(decoded.extensions.stream_muxers) == side["muxers"]
    assert str(pair.peer_id) == side["peer_id"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["description"])
def test_transcript(case: dict[str, Any]) -> None:
    initiator, responder = make(case, "initiator"), make(case, "responder")
    m1 = initiator.data_to_send()
    assert m1.hex() == case["message_1"]
    responder.receive_data(m1)
    m2 = responder.data_to_send()
    assert m2.hex() == case["message_2"]
    initiator.receive_data(m2)
    m3 = initiator.data_to_send()
    assert m3.hex() == case["message_3"]
    responder.receive_data(m3)
    i, r = initiator.result(), responder.result()
    assert i.handshake_hash.hex() == r.handshake_hash.hex() == case["handshake_hash"]
    assert str(i.remote_peer) == case["responder"]["peer_id"]
    assert str(r.remote_peer) == case["initiator"]["peer_id"]
    assert list(i.remote_muxers) == case["responder"]["muxers"]
    assert list(r.remote_muxers) == case["initiator"]["muxers"]
    ends = {
        "initiator": (NoiseTransport(i.send_cipher, i.receive_cipher), NoiseTransport(r.send_cipher, r.receive_cipher)),
        "responder": (NoiseTransport(r.send_cipher, r.receive_cipher), NoiseTransport(i.send_cipher, i.receive_cipher)),
    }
    for message in case["transport"]:
        sender, receiver = ends[message["sender"]]
        plaintext = bytes.fromhex(message["plaintext"])
        assert sender.encrypt(plaintext).hex() == message["frame"]
        assert receiver.receive_data(bytes.fromhex(message["frame"])) == plaintext


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["description"])
def test_each_side_accepts_the_pinned_peer_messages(case: dict[str, Any]) -> None:
    # Drive each side alone with the other side's recorded bytes.
    responder = make(case, "responder")
    responder.receive_data(bytes.fromhex(case["message_1"]))
    assert responder.data_to_send().hex() == case["message_2"]
    responder.receive_data(bytes.fromhex(case["message_3"]))
    assert responder.complete
    initiator = make(case, "initiator")
    assert initiator.data_to_send().hex() == case["message_1"]
    initiator.receive_data(bytes.fromhex(case["message_2"]))
    assert initiator.data_to_send().hex() == case["message_3"]
    assert initiator.complete


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["description"])
def test_a_shared_noise_identity_gives_the_same_transcript(case: dict[str, Any]) -> None:
    # What a host does: one NoiseIdentity (static key and signature made
    # once), a fresh ephemeral key per handshake.
    def made(role: str) -> NoiseHandshake:
        side = case[role]
        identity = NoiseIdentity(
            KeyPair.from_seed(bytes.fromhex(side["identity_seed"])),
            static_private=bytes.fromhex(side["static_private"]),
        )
        return NoiseHandshake(
            identity,
            initiator=role == "initiator",
            muxers=side["muxers"],
            ephemeral_private=bytes.fromhex(side["ephemeral_private"]),
        )

    initiator, responder = made("initiator"), made("responder")
    assert initiator._payload.hex() == case["initiator"]["payload"]
    assert responder._payload.hex() == case["responder"]["payload"]
    m1 = initiator.data_to_send()
    responder.receive_data(m1)
    m2 = responder.data_to_send()
    initiator.receive_data(m2)
    m3 = initiator.data_to_send()
    responder.receive_data(m3)
    assert (m1.hex(), m2.hex(), m3.hex()) == (case["message_1"], case["message_2"], case["message_3"])
    assert responder.result().handshake_hash.hex() == case["handshake_hash"]
