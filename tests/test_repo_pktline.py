"""The pkt-line and side-band codec: git's own examples, every split of the
input, hostile bytes, and a real ``git upload-pack`` talking to it."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.errors import DecodeError, LocalProtocolError
from guts.repo.pktline import (
    DELIM,
    DELIM_PKT,
    FLUSH,
    FLUSH_PKT,
    MAX_PAYLOAD,
    MAX_PKT_LEN,
    MAX_SIDEBAND_DATA,
    RESPONSE_END,
    RESPONSE_END_PKT,
    Band,
    DataPacket,
    Packet,
    PktLineDecoder,
    SidebandPacket,
    demux_sideband,
    encode_data,
    encode_line,
    encode_packet,
    encode_packets,
    encode_sideband,
)


def decode_all(data: bytes, step: int | None = None) -> list[Packet]:
    """Every packet in ``data``, fed ``step`` bytes at a time (all at once if None)."""
    decoder = PktLineDecoder()
    out: list[Packet] = []
    step = step or max(len(data), 1)
    for i in range(0, len(data), step):
        decoder.receive_data(data[i : i + step])
        while (packet := decoder.next_packet()) is not None:
            out.append(packet)
    decoder.end_of_stream()
    return out


# gitprotocol-common(5), "Examples", plus the three special packets of
# gitprotocol-v2(5).
VECTORS: list[tuple[bytes, Packet]] = [
    (b"0006a\n", DataPacket(b"a\n")),
    (b"0005a", DataPacket(b"a")),
    (b"000bfoobar\n", DataPacket(b"foobar\n")),
    (b"0004", DataPacket(b"")),
    (b"0000", FLUSH),
    (b"0001", DELIM),
    (b"0002", RESPONSE_END),
    (b"000eversion 2\n", DataPacket(b"version 2\n")),
]


@pytest.mark.parametrize(("wire", "packet"), VECTORS)
def test_vectors_decode(wire: bytes, packet: Packet) -> None:
    assert decode_all(wire) == [packet]


@pytest.mark.parametrize(("wire", "packet"), [v for v in VECTORS if v[0] != b"0004"])
def test_vectors_encode(wire: bytes, packet: Packet) -> None:
    assert encode_packet(packet) == wire


def test_special_packet_constants() -> None:
    assert (FLUSH_PKT, DELIM_PKT, RESPONSE_END_PKT) == (b"0000", b"0001", b"0002")
    assert encode_packets([FLUSH, DELIM, RESPONSE_END]) == b"000000010002"


def test_encode_line_adds_lf() -> None:
    assert encode_line("command=ls-refs") == b"0014command=ls-refs\n"
    assert encode_line(b"want 0123") == b"000ewant 0123\n"
    assert encode_line("ä") == b"0007\xc3\xa4\n"


def test_line_strips_one_lf() -> None:
    assert DataPacket(b"a\n").line() == b"a"
    assert DataPacket(b"a").line() == b"a"
    assert DataPacket(b"a\n\n").line() == b"a\n"
    assert DataPacket(b"").line() == b""


def test_encode_limits() -> None:
    assert len(encode_data(b"x" * MAX_PAYLOAD)) == MAX_PKT_LEN
    assert encode_data(b"x" * MAX_PAYLOAD)[:4] == b"fff0"
    with pytest.raises(LocalProtocolError):
        encode_data(b"x" * (MAX_PAYLOAD + 1))
    with pytest.raises(LocalProtocolError):
        encode_data(b"")  # "0004": git says SHOULD NOT send
    with pytest.raises(LocalProtocolError):
        encode_line("x" * MAX_PAYLOAD)  # the LF makes it one too long


def test_encode_accepts_buffers() -> None:
    assert encode_data(bytearray(b"ab")) == b"0006ab"
    assert encode_data(memoryview(b"ab")) == b"0006ab"


def test_largest_packet_decodes() -> None:
    payload = os.urandom(MAX_PAYLOAD)
    assert decode_all(encode_data(payload)) == [DataPacket(payload)]


def test_uppercase_length_digits_accepted() -> None:
    # git reads upper-case digits too (hexval); it only writes lower case.
    assert decode_all(b"000Cagent=x\n") == [DataPacket(b"agent=x\n")]
    assert decode_all(b"000cagent=x\n") == [DataPacket(b"agent=x\n")]


@pytest.mark.parametrize(
    "wire",
    [
        b"0003",  # reserved, git: "bad line length 3"
        b"fff1" + b"x" * 65517,  # one over the documented maximum
        b"fff3",  # git's reader would still take this one; we do not
        b"ffff",
        b"000g",
        b"00 5a",
        b" 005a",
        b"+005a",
        b"0x05",
        b"-001",
        b"0_05",
        b"\x00\x00\x00\x00",
    ],
)
def test_bad_lengths_refused(wire: bytes) -> None:
    decoder = PktLineDecoder()
    decoder.receive_data(wire)
    with pytest.raises(DecodeError):
        decoder.next_packet()


def test_oversized_length_refused_before_its_payload_arrives() -> None:
    decoder = PktLineDecoder()
    decoder.receive_data(b"fff1")
    with pytest.raises(DecodeError, match="exceeds"):
        decoder.next_packet()


def test_truncated_stream() -> None:
    decoder = PktLineDecoder()
    decoder.receive_data(b"0009abc")
    assert decoder.next_packet() is None
    assert decoder.buffered == 7
    with pytest.raises(DecodeError, match="ended inside"):
        decoder.end_of_stream()
    decoder = PktLineDecoder()
    decoder.receive_data(b"00")
    assert decoder.next_packet() is None
    with pytest.raises(DecodeError):
        decoder.end_of_stream()


def test_unused_data() -> None:
    decoder = PktLineDecoder()
    decoder.receive_data(b"0008NAK\nPACK\x00\x00")
    assert decoder.next_packet() == DataPacket(b"NAK\n")
    assert decoder.unused_data() == b"PACK\x00\x00"
    assert decoder.buffered == 0
    assert decoder.next_packet() is None


# A v2 fetch response in small: acknowledgments, a delimiter, the packfile
# section on three bands, the flush that ends it.
RESPONSE: list[Packet] = [
    DataPacket(b"acknowledgments\n"),
    DataPacket(b"NAK\n"),
    DataPacket(b"ready\n"),
    DELIM,
    DataPacket(b"packfile\n"),
    DataPacket(b"\x02Enumerating objects: 3, done.\n"),
    DataPacket(b"\x01PACK\x00\x00\x00\x02"),
    DataPacket(b"\x01"),
    DataPacket(b"\x03something broke"),
    FLUSH,
    RESPONSE_END,
]


def test_every_split_point() -> None:
    wire = encode_packets(RESPONSE)
    for cut in range(len(wire) + 1):
        decoder = PktLineDecoder()
        got: list[Packet] = []
        for part in (wire[:cut], wire[cut:]):
            decoder.receive_data(part)
            while (packet := decoder.next_packet()) is not None:
                got.append(packet)
        decoder.end_of_stream()
        assert got == RESPONSE, cut


def test_one_byte_at_a_time() -> None:
    payload = os.urandom(3 * MAX_SIDEBAND_DATA + 17)
    wire = encode_packets(RESPONSE) + encode_sideband(Band.PACK, payload) + FLUSH_PKT
    packets = decode_all(wire, step=1)
    assert packets[: len(RESPONSE)] == RESPONSE
    assert packets[-1] == FLUSH
    data = b"".join(demux_sideband(p.payload).data for p in packets[len(RESPONSE) : -1] if isinstance(p, DataPacket))
    assert data == payload


def test_buffer_is_compacted() -> None:
    """After draining, only the partial packet stays, however much went through."""
    decoder = PktLineDecoder()
    packet = encode_data(b"x" * 1000)
    for _ in range(2000):
        decoder.receive_data(packet + packet[:500])
        while decoder.next_packet() is not None:
            pass
        decoder.receive_data(packet[500:])
        while decoder.next_packet() is not None:
            pass
        assert decoder.buffered == 0
    assert len(decoder._buf) <= len(packet)


# A packet list as hypothesis sees it: data of any size a sender may send,
# and the three special packets.
packets = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=300).map(DataPacket),
        # Near the limit; one repeated byte, as random 64 KiB would be slow to draw.
        st.builds(
            lambda n, b: DataPacket(bytes((b,)) * n),
            st.integers(MAX_PAYLOAD - 2, MAX_PAYLOAD),
            st.integers(0, 255),
        ),
        st.sampled_from([FLUSH, DELIM, RESPONSE_END]),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(packets, st.lists(st.integers(min_value=1, max_value=70000), min_size=1, max_size=8))
def test_round_trip_in_any_chunks(sent: list[Packet], steps: list[int]) -> None:
    wire = encode_packets(sent)
    decoder = PktLineDecoder()
    got: list[Packet] = []
    pos = 0
    i = 0
    while pos < len(wire):
        step = steps[i % len(steps)]
        decoder.receive_data(wire[pos : pos + step])
        pos += step
        i += 1
        while (packet := decoder.next_packet()) is not None:
            got.append(packet)
        assert decoder.buffered < MAX_PKT_LEN
    decoder.end_of_stream()
    assert got == sent


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=10))
def test_random_bytes_raise_only_decode_error(chunks: list[bytes]) -> None:
    decoder = PktLineDecoder()
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (packet := decoder.next_packet()) is not None:
                if isinstance(packet, DataPacket) and packet.payload:
                    try:
                        demux_sideband(packet.payload)
                    except DecodeError:
                        pass
            # Drained: what is left is one partial packet at most.
            assert decoder.buffered < MAX_PKT_LEN
        decoder.end_of_stream()
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=4))
def test_any_four_bytes_are_a_length_or_an_error(head: bytes) -> None:
    decoder = PktLineDecoder()
    decoder.receive_data(head)
    try:
        packet = decoder.next_packet()
    except DecodeError:
        text = head.decode("latin-1")
        assert not all(c in "0123456789abcdefABCDEF" for c in text) or int(text, 16) == 3 or int(text, 16) > MAX_PKT_LEN
        return
    length = int(head, 16)
    if length <= 4:
        assert packet == [FLUSH, DELIM, RESPONSE_END, None, DataPacket(b"")][length]
    else:
        assert packet is None  # a data packet, waiting for its payload


# Side-band.


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x01PACK", SidebandPacket(Band.PACK, b"PACK")),
        (b"\x02Counting objects: 1\r", SidebandPacket(Band.PROGRESS, b"Counting objects: 1\r")),
        (b"\x03upload-pack: not our ref", SidebandPacket(Band.ERROR, b"upload-pack: not our ref")),
        (b"\x01", SidebandPacket(Band.PACK, b"")),  # git's keep-alive
        (b"\x02", SidebandPacket(Band.PROGRESS, b"")),  # sideband-all keep-alive
    ],
)
def test_demux(payload: bytes, expected: SidebandPacket) -> None:
    assert demux_sideband(payload) == expected


@pytest.mark.parametrize("payload", [b"", b"\x00data", b"\x04data", b"\xffdata", b"Pdata", b"1data"])
def test_demux_bad_band(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        demux_sideband(payload)


def test_encode_sideband_splits() -> None:
    data = bytes(range(256)) * 600  # 153600 bytes: three packets
    wire = encode_sideband(Band.PACK, data)
    packets = decode_all(wire)
    sizes = [len(p.payload) for p in packets if isinstance(p, DataPacket)]
    assert sizes == [MAX_PAYLOAD, MAX_PAYLOAD, 153600 - 2 * MAX_SIDEBAND_DATA + 1]
    assert b"".join(demux_sideband(p.payload).data for p in packets if isinstance(p, DataPacket)) == data
    assert encode_sideband(Band.PROGRESS, b"") == b"0005\x02"
    assert encode_sideband(Band.ERROR, b"boom") == b"0009\x03boom"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Band)), st.binary(max_size=2 * MAX_SIDEBAND_DATA + 10))
def test_sideband_round_trip(band: Band, data: bytes) -> None:
    parts = [demux_sideband(p.payload) for p in decode_all(encode_sideband(band, data)) if isinstance(p, DataPacket)]
    assert all(p.band == band for p in parts)
    assert b"".join(p.data for p in parts) == data


def test_encode_sideband_refuses_unknown_band() -> None:
    with pytest.raises(ValueError):
        encode_sideband(4, b"x")  # type: ignore[arg-type]


# Against git itself: a protocol v2 fetch from a real upload-pack, with the
# request written by our encoder and the response read by our decoder.


def _git(cwd: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    full_env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@example.com",
        **(env or {}),
    }
    done = subprocess.run(["git", *args], cwd=cwd, input=input, env=full_env, capture_output=True, check=True, timeout=60)
    return done.stdout


def test_real_upload_pack_v2_fetch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _git(tmp_path, "init", "-q", str(repo))
    # Random content does not compress: the pack spans several packets.
    (repo / "blob").write_bytes(os.urandom(200_000))
    _git(repo, "add", "blob")
    _git(repo, "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD").decode().strip()

    v2 = {"GIT_PROTOCOL": "version=2"}
    advert = decode_all(_git(repo, "upload-pack", "--advertise-refs", "--stateless-rpc", ".", env=v2))
    assert advert[0] == DataPacket(b"version 2\n")
    assert advert[-1] == FLUSH
    assert any(isinstance(p, DataPacket) and p.line().startswith(b"fetch") for p in advert)

    request = encode_packets([DataPacket(b"command=fetch\n"), DELIM]) + b"".join(
        encode_line(line) for line in (f"want {head}", "ofs-delta", "done")
    ) + FLUSH_PKT
    response = _git(repo, "upload-pack", "--stateless-rpc", ".", input=request, env=v2)
    packets = decode_all(response, step=4096)
    assert packets[0] == DataPacket(b"packfile\n")
    assert packets[-1] == FLUSH
    pack = bytearray()
    for packet in packets[1:-1]:
        assert isinstance(packet, DataPacket)
        assert len(packet.payload) <= MAX_PAYLOAD
        part = demux_sideband(packet.payload)
        assert part.band != Band.ERROR
        if part.band == Band.PACK:
            pack += part.data
    assert sum(isinstance(p, DataPacket) and p.payload[:1] == b"\x01" for p in packets) >= 4
    # A pack ends with the SHA-1 of everything before it.
    assert pack[:4] == b"PACK"
    assert hashlib.sha1(pack[:-20]).digest() == pack[-20:]
    # And git agrees it is a pack of the three objects.
    _git(tmp_path, "init", "-q", "--bare", "clone.git")
    _git(tmp_path / "clone.git", "index-pack", "--stdin", "--strict", input=bytes(pack))
    assert _git(tmp_path / "clone.git", "cat-file", "-t", head) == b"commit\n"
