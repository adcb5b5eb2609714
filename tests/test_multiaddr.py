"""Multiaddr: parsing, encoding, canonical form and the manipulation API."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from guts.errors import DecodeError, GutsError, InputError, RemoteProtocolError
from guts.multiaddr import MAX_BINARY_SIZE, Component, InvalidMultiaddr, InvalidMultiaddrBytes, InvalidMultiaddrText, Multiaddr

ED25519_ID = "12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A"  # identity multihash of key 00..1f
ED25519_CID = "bafzaajaiaejcaaabaibqibiga4eascqlbqgq4dyqcejbgfavcylrqgi2dmob2hq7"
RSA_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
RSA_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"  # peer-ids spec example


def test_parse_and_encode_ip4_tcp() -> None:
    m = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")
    assert m.to_bytes().hex() == "047f000001060fa1"
    assert bytes(m) == m.to_bytes()
    assert str(m) == "/ip4/127.0.0.1/tcp/4001"
    assert m.components == (Component("ip4", "127.0.0.1"), Component("tcp", "4001"))
    assert m.protocols() == ("ip4", "tcp")
    assert Multiaddr.from_bytes(bytes.fromhex("047f000001060fa1")) == m


def test_repr() -> None:
    assert repr(Multiaddr.parse("/memory/3")) == "Multiaddr('/memory/3')"


def test_equality_and_hash_follow_bytes() -> None:
    a = Multiaddr.parse("/ip6/0:0:0:0:0:0:0:1/tcp/0080")
    b = Multiaddr.parse("/ip6/::1/tcp/80")
    assert a == b
    assert hash(a) == hash(b)
    assert str(a) == "/ip6/::1/tcp/80"
    assert len({a, b, Multiaddr.parse("/ip6/::2/tcp/80")}) == 2
    assert a != "/ip6/::1/tcp/80"


def test_components_constructor() -> None:
    m = Multiaddr([("ip4", "10.0.0.1"), ("tcp", "1"), ("ws", None)])
    assert m == Multiaddr.parse("/ip4/10.0.0.1/tcp/1/ws")
    with pytest.raises(TypeError):
        Multiaddr("/ip4/1.2.3.4")  # type: ignore[arg-type]
    with pytest.raises(InvalidMultiaddr):
        Multiaddr([("ws", "x")])
    with pytest.raises(InvalidMultiaddr):
        Multiaddr([("tcp", None)])


def test_frozen() -> None:
    m = Multiaddr.parse("/memory/1")
    with pytest.raises(AttributeError):
        m.components = ()  # type: ignore[misc]


def test_pickle_round_trip() -> None:
    m = Multiaddr.parse(f"/dns4/example.com/tcp/443/ws/p2p/{ED25519_ID}")
    assert pickle.loads(pickle.dumps(m)) == m


def test_ipfs_alias_and_cid_are_normalised() -> None:
    assert str(Multiaddr.parse(f"/ipfs/{RSA_ID}")) == f"/p2p/{RSA_ID}"
    assert Multiaddr.parse(f"/p2p/{RSA_CID}").peer_id == RSA_ID
    assert Multiaddr.parse(f"/p2p/{ED25519_CID}").peer_id == ED25519_ID
    assert Multiaddr.parse(f"/p2p/{ED25519_CID}") == Multiaddr.parse(f"/ipfs/{ED25519_ID}")


def test_ipv4_mapped_ipv6_prints_dotted() -> None:
    assert str(Multiaddr.parse("/ip6/::ffff:102:304")) == "/ip6/::ffff:1.2.3.4"


def test_trailing_slash_tolerated() -> None:
    assert Multiaddr.parse("/ip4/1.2.3.4/tcp/5/") == Multiaddr.parse("/ip4/1.2.3.4/tcp/5")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "start with '/'"),
        ("/", "empty"),
        ("ip4/1.2.3.4", "start with '/'"),
        ("/ip4", "needs a value"),
        ("/ip4/1.2.3", "IPv4"),
        ("/ip4/01.2.3.4", "IPv4"),
        ("/ip4/::1", "IPv4"),
        ("/ip6/1.2.3.4", "IPv6"),
        ("/ip6/fe80::1%eth0", "zone"),
        ("/tcp/65536", "out of range"),
        ("/tcp/-1", "port"),
        ("/tcp/+1", "port"),
        ("/tcp/ 1", "port"),
        ("/tcp/\u0661", "port"),
        ("/udp/0x10", "port"),
        ("/memory/18446744073709551616", "out of range"),
        ("/foo/1", "/foo/"),
        ("/ip4/1.2.3.4//tcp/1", "empty protocol"),
        ("/ws/1", "/1/"),
        ("/dns/", "needs a value"),
        ("/p2p/notbase58!", "peer id"),
        ("/p2p/Qm", "peer id"),
        ("/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5", "peer id"),
        ("/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "libp2p-key"),
        ("/p2p/uAXIAJAgBEiA", "peer id"),
    ],
)
def test_invalid_text(text: str, needle: str) -> None:
    with pytest.raises(InvalidMultiaddr) as info:
        Multiaddr.parse(text)
    assert needle in str(info.value)


def test_invalid_multiaddr_is_a_decode_error_and_a_value_error() -> None:
    with pytest.raises(DecodeError):
        Multiaddr.from_bytes(b"\xff")
    with pytest.raises(ValueError):
        Multiaddr.parse("/nope")
    assert issubclass(InvalidMultiaddr, GutsError)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        Multiaddr.parse(b"/ip4/1.2.3.4")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hexdata", "needle"),
    [
        ("", "empty"),
        ("04", "truncated"),
        ("047f0000", "truncated"),
        ("06", "truncated"),
        ("80", "truncated varint"),
        ("8000", "non-minimal"),
        ("ffffffffffffffffff01", "longer than 9"),
        ("ff0f", "unknown protocol code"),
        ("3500", "empty name"),
        ("3503616263ff0f", "unknown protocol"),  # junk after /dns/abc
        ("3505616263", "truncated"),
        ("35022f61", "'/'"),
        ("3502ff61", "UTF-8"),
        ("a50300", "truncated"),
        ("a5030100", "truncated"),
        ("a50303122001", "does not match"),
        ("3580021234", "longer than 255"),
        ("89060000", "truncated"),  # /memory needs 8 bytes
    ],
)
def test_invalid_bytes(hexdata: str, needle: str) -> None:
    with pytest.raises(InvalidMultiaddr) as info:
        Multiaddr.from_bytes(bytes.fromhex(hexdata))
    assert needle in str(info.value)


def test_from_bytes_total_size_cap() -> None:
    one = Multiaddr.parse("/ip4/1.2.3.4").to_bytes()
    ok = one * (MAX_BINARY_SIZE // len(one))
    assert len(Multiaddr.from_bytes(ok).components) == MAX_BINARY_SIZE // len(one)
    with pytest.raises(InvalidMultiaddr, match="longer than"):
        Multiaddr.from_bytes(ok + one)


def test_from_bytes_accepts_buffers() -> None:
    raw = Multiaddr.parse("/memory/7").to_bytes()
    assert Multiaddr.from_bytes(bytearray(raw)) == Multiaddr.from_bytes(memoryview(raw))


def test_value_for() -> None:
    m = Multiaddr.parse(f"/ip4/1.2.3.4/tcp/1/ws/p2p/{ED25519_ID}")
    assert m.value_for("ip4") == "1.2.3.4"
    assert m.value_for("tcp") == "1"
    assert m.value_for("ws") is None
    assert m.value_for("udp") is None
    assert m.value_for("ipfs") == ED25519_ID
    with pytest.raises(InvalidMultiaddr):
        m.value_for("bogus")


def test_encapsulate_decapsulate() -> None:
    base = Multiaddr.parse("/ip4/1.2.3.4/tcp/1")
    ws = base.encapsulate("/ws")
    assert str(ws) == "/ip4/1.2.3.4/tcp/1/ws"
    assert base.encapsulate(Multiaddr.parse("/ws")) == ws
    assert ws.decapsulate("ws") == base
    assert ws.decapsulate("tcp") == Multiaddr.parse("/ip4/1.2.3.4")
    assert ws.decapsulate("udp") is ws
    empty = ws.decapsulate("ip4")
    assert str(empty) == "" and empty.to_bytes() == b"" and empty.protocols() == ()
    assert empty.encapsulate(ws) == ws
    assert Multiaddr.from_bytes(ws.to_bytes()) == ws


def test_decapsulate_drops_from_last_occurrence() -> None:
    relayed = Multiaddr.parse(f"/ip4/1.2.3.4/tcp/1/p2p/{RSA_ID}/p2p-circuit/p2p/{ED25519_ID}")
    assert str(relayed.decapsulate("p2p")) == f"/ip4/1.2.3.4/tcp/1/p2p/{RSA_ID}/p2p-circuit"
    assert str(relayed.decapsulate("p2p-circuit")) == f"/ip4/1.2.3.4/tcp/1/p2p/{RSA_ID}"


def test_peer_id_helpers() -> None:
    bare = Multiaddr.parse("/ip4/1.2.3.4/tcp/1")
    full = bare.with_p2p(ED25519_ID)
    assert str(full) == f"/ip4/1.2.3.4/tcp/1/p2p/{ED25519_ID}"
    assert full.peer_id == ED25519_ID
    assert bare.peer_id is None
    assert full.without_p2p() == bare
    assert bare.without_p2p() is bare
    assert full.with_p2p(ED25519_ID) is full
    assert bare.with_p2p(ED25519_CID) == full  # CID accepted, normalised
    with pytest.raises(InvalidMultiaddr, match="already names"):
        full.with_p2p(RSA_ID)
    with pytest.raises(InvalidMultiaddr):
        bare.with_p2p("not-a-peer-id")
    # Only a *trailing* /p2p is "the" peer id.
    assert Multiaddr.parse(f"/p2p/{RSA_ID}/p2p-circuit").peer_id is None


def test_extra_valueless_protocols_round_trip() -> None:
    text = "/ip4/1.2.3.4/udp/4001/quic-v1/webtransport"
    m = Multiaddr.parse(text)
    assert str(Multiaddr.from_bytes(m.to_bytes())) == text


def test_import_does_not_pull_heavy_dependencies() -> None:
    code = (
        "import sys, guts.multiaddr, guts.transport; "
        "bad = [m for m in ('multiaddr', 'trio_websocket', 'wsproto', 'pydantic', 'netaddr') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_typo_is_input_not_a_peer_misbehaving() -> None:
    with pytest.raises(InvalidMultiaddrText) as typed:
        Multiaddr.parse("/ip4/1.2.3.999/tcp/1")
    assert isinstance(typed.value, InputError) and not isinstance(typed.value, RemoteProtocolError)
    with pytest.raises(InvalidMultiaddrText):
        Multiaddr.parse("/ip4/1.2.3.4").with_p2p("not-a-peer")
    with pytest.raises(InvalidMultiaddrBytes) as sent:
        Multiaddr.from_bytes(b"\xff")
    assert isinstance(sent.value, DecodeError) and not isinstance(sent.value, InputError)
