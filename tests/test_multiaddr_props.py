"""Property tests: round trips of valid multiaddrs, and hostile bytes/text
raising nothing but InvalidMultiaddr."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guts.multiaddr import InvalidMultiaddr, Multiaddr


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@st.composite
def peer_ids(draw: st.DrawFn) -> str:
    import base58

    code = draw(st.sampled_from([0x00, 0x12, 0x13, 0xB220]))
    digest = draw(st.binary(min_size=0, max_size=64))
    return base58.b58encode(_uvarint(code) + _uvarint(len(digest)) + digest).decode()


names = st.text(
    st.characters(codec="utf-8", blacklist_characters="/"), min_size=1, max_size=60
).filter(lambda s: len(s.encode()) <= 255)
ports = st.integers(0, 65535).map(str)

component = st.one_of(
    st.tuples(st.just("ip4"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.just("ip6"), st.ip_addresses(v=6).map(str)),
    st.tuples(st.sampled_from(["tcp", "udp"]), ports),
    st.tuples(st.sampled_from(["dns", "dns4", "dns6", "dnsaddr", "sni", "ip6zone"]), names),
    st.tuples(st.just("p2p"), peer_ids()),
    st.tuples(st.just("memory"), st.integers(0, 2**64 - 1).map(str)),
    st.tuples(
        st.sampled_from(["ws", "wss", "p2p-circuit", "quic-v1", "webtransport", "tls", "noise", "http"]),
        st.none(),
    ),
)
multiaddrs = st.lists(component, min_size=1, max_size=8).map(Multiaddr)


@given(multiaddrs)
def test_text_and_binary_round_trip(m: Multiaddr) -> None:
    text = str(m)
    raw = m.to_bytes()
    assert Multiaddr.parse(text) == m
    assert str(Multiaddr.parse(text)) == text
    back = Multiaddr.from_bytes(raw)
    assert back == m and str(back) == text and back.to_bytes() == raw
    assert hash(back) == hash(m)


@given(multiaddrs, multiaddrs)
def test_encapsulate_then_decapsulate(a: Multiaddr, b: Multiaddr) -> None:
    joined = a.encapsulate(b)
    assert joined.to_bytes() == a.to_bytes() + b.to_bytes()
    assert Multiaddr.from_bytes(joined.to_bytes()) == joined
    first = b.protocols()[0]
    if first not in b.protocols()[1:]:
        assert joined.decapsulate(first) == a


@given(st.binary(max_size=300))
@example(b"")
@example(bytes.fromhex("a50326002408011220"))
def test_arbitrary_bytes_raise_only_invalid_multiaddr(data: bytes) -> None:
    try:
        m = Multiaddr.from_bytes(data)
    except InvalidMultiaddr:
        return
    # Whatever decodes is canonical: it re-encodes to the same bytes and
    # survives a trip through text.
    assert m.to_bytes() == data
    assert Multiaddr.parse(str(m)) == m


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(multiaddrs, st.data())
def test_mutated_bytes_raise_only_invalid_multiaddr(m: Multiaddr, data: st.DataObject) -> None:
    raw = bytearray(m.to_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decoded = Multiaddr.from_bytes(candidate)
        except InvalidMultiaddr:
            continue
        assert decoded.to_bytes() == candidate


@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_invalid_multiaddr(text: str) -> None:
    try:
        m = Multiaddr.parse(text)
    except InvalidMultiaddr:
        return
    assert Multiaddr.parse(str(m)) == m


@given(st.lists(st.sampled_from(["ip4", "1.2.3.4", "tcp", "80", "p2p", "ws", "dns", "", "memory", "7", "x"]), max_size=8))
def test_plausible_text_raises_only_invalid_multiaddr(words: list[str]) -> None:
    text = "/" + "/".join(words)
    try:
        m = Multiaddr.parse(text)
    except InvalidMultiaddr:
        return
    assert Multiaddr.from_bytes(m.to_bytes()) == m


# A differential check against the reference Python implementation when it
# happens to be installed (it is not a Guts dependency).
basic = st.one_of(
    st.tuples(st.just("ip4"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.just("ip6"), st.ip_addresses(v=6).map(str)),
    st.tuples(st.sampled_from(["tcp", "udp"]), ports),
    st.tuples(st.sampled_from(["dns", "dns4", "dns6"]), st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?", fullmatch=True)),
    st.tuples(st.just("memory"), st.integers(0, 2**64 - 1).map(str)),
    st.tuples(st.sampled_from(["ws", "wss"]), st.none()),
)


