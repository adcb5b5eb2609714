"""The fuzz targets: one per decoder of bytes (or text) that a peer or a
person can send.

Theory of operation
-------------------
A :class:`Target` names a decoder, the function that feeds it one input
(``bytes -> None``), the errors its docstring promises for bad input, and
seed inputs made by the project's own encoders. :func:`run_one` feeds one
input and swallows exactly those errors: anything else (an ``IndexError``,
a ``UnicodeDecodeError``, a ``RecursionError``, an ``AssertionError``, or
an error of the wrong type) escapes, and the fuzzer records it as a crash.

Streaming decoders (multistream, Noise, yamux, pkt-lines) get their input
in chunks whose size the input's first byte chooses, so the mutations also
explore how messages split across reads. Text parsers (multiaddrs, peer
ids, CIDs, repository ids) get the input decoded as UTF-8 with
replacement, which is what a person can type or paste.

This module imports the decoders at import time; :mod:`fuzz.__main__`
imports it under ``atheris.instrument_imports`` so that every ``guts``
module is instrumented for coverage. The targets themselves are plain
Python and also run without atheris (``tests/test_fuzz.py`` replays the
committed corpus in-process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fuzz.tls_targets import (
    TLS_ERRORS,
    feed_tls_certificate,
    feed_tls_client_hello,
    feed_tls_server_hello,
    tls_certificate_seeds,
    tls_client_hello_seeds,
    tls_server_hello_seeds,
)
from guts.crypto import KeyPair, PublicKey
from guts.errors import (
    ConfigError,
    DecodeError,
    HandshakeError,
    InvalidIdentity,
    InvalidRecord,
    InvalidRefs,
    InvalidRid,
    NegotiationError,
    RemoteProtocolError,
)
from guts.cid import Cid, InvalidCid
from guts.dht._codec import (
    ConnectionType,
    KadMessage,
    KadPeer,
    MessageType,
    Record,
    decode_message,
    decode_record,
    encode_message,
    encode_record,
)
from guts.config import load_config
from guts.control._http import HttpRequest
from guts.dht.records import default_validators, namespace_of
from guts.dht.signed import guts_key, open_record, sign_record
from guts.gossip._codec import (
    RPC,
    ControlMessage,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Prune,
    PxPeer,
    SubOpts,
    decode_rpc,
    encode_rpc,
)
from guts.gossip._peer_record import open_peer_record, seal_peer_record
from guts.gossip._signing import AuthorCache, SignaturePolicy, check_author, sign_message
from guts.identify._codec import IdentifyInfo, decode_identify, encode_identify
from guts.multiaddr import InvalidMultiaddr, Multiaddr
from guts.mux.yamux._frames import Flag, FrameType, decode_header, encode_header
from guts.mux.yamux._events import DataReceived
from guts.mux.yamux._session import YamuxSession
from guts.peer import InvalidPeerId, PeerId
from guts.repo.identity import Identity, SignedRevision, create_genesis
from guts.repo.pktline import (
    DataPacket,
    DelimPacket,
    FlushPacket,
    Packet,
    PktLineDecoder,
    ResponseTracker,
    demux_sideband,
    encode_line,
    encode_packets,
    encode_sideband,
    Band,
)
from guts.repo.refname import decode_refname
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement, Statement, next_statement, sign_statement
from guts.replicate.announce import (
    announce_refs,
    announce_repository,
    check_announcement,
    decode_announcement,
    topic_of,
    encode_announcement,
    InvalidAnnouncement,
)
from guts.security.noise._handshake import NoiseHandshake, NoiseIdentity, decode_payload
from guts.security.noise._transport import CipherState, NoiseTransport
from guts.sync._codec import (
    GetObjects,
    GetRefs,
    Objects,
    Refs,
    Refused,
    RefusedReason,
    SyncConfig,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from guts.sync.upload_rules import check_upload_request
from guts.wire._multistream import DialerNegotiation, ListenerNegotiation, encode_line as ms_line
from guts.wire._varint import decode_uvarint, encode_uvarint

__all__ = ["TARGETS", "Target", "run_one"]

_Errors = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class Target:
    """One decoder under fuzzing.

    Attributes:
        name: the target's name (and its corpus directory's).
        feed: gives one input to the decoder; returns normally on success.
        accepts: the errors the decoder documents for bad input.
        seeds: valid encodings from the project's encoders, to start from.
    """

    name: str
    feed: Callable[[bytes], None]
    accepts: _Errors
    seeds: Callable[[], list[bytes]]


def run_one(target: Target, data: bytes) -> None:
    """Feed ``data`` to ``target``; a documented error is a pass, any other
    exception propagates (a crash)."""
    try:
        target.feed(data)
    except target.accepts:
        pass


# -- fixed keys and values, so that seeds are reproducible ----------------------

ALICE = KeyPair.from_seed(bytes(range(32)))
BOB = KeyPair.from_seed(bytes(range(1, 33)))
GENESIS = create_genesis(ALICE, name="demo", description="a repository", nonce=bytes(16))
RID = Rid.of_genesis(GENESIS.document.raw)
OID = "a" * 40
FIRST = sign_statement(
    ALICE,
    next_statement(None, rid=RID, signer=ALICE.peer_id, identity=GENESIS.document, refs=[("refs/heads/main", OID)]),
)
SECOND = sign_statement(
    ALICE,
    next_statement(
        FIRST.statement,
        rid=RID,
        signer=ALICE.peer_id,
        identity=GENESIS.document,
        refs=[("refs/heads/main", "b" * 40), ("refs/tags/v1", "c" * 40)],
    ),
)
ADDRS = (
    Multiaddr.parse("/ip4/127.0.0.1/tcp/4001"),
    Multiaddr.parse("/ip6/::1/udp/4001/quic-v1"),
    Multiaddr.parse(f"/dns4/example.com/tcp/443/wss/p2p/{ALICE.peer_id}"),
)
SYNC = SyncConfig()


def _chunks(data: bytes) -> Iterator[bytes]:
    """The input after its first byte, cut into pieces the first byte sizes
    (0 means whole)."""
    if not data:
        return
    size = data[0] % 32
    body = data[1:]
    if size == 0:
        yield body
        return
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _split(data: bytes) -> bytes:
    """Seed helper: prefix a whole input with the byte that feeds it in 7-byte chunks."""
    return bytes((7,)) + data


# -- layer 1: varints and multistream-select -------------------------------------


def _feed_varint(data: bytes) -> None:
    pos = 0
    while pos < len(data):
        value, new = decode_uvarint(data, pos)
        assert new > pos and encode_uvarint(value) == data[pos:new], "varint is not minimal"
        pos = new


def _negotiate(core: DialerNegotiation | ListenerNegotiation, chunks: Iterable[bytes]) -> tuple[object, ...]:
    """Feed ``chunks`` until the negotiation ends: what was agreed, what
    was answered, what followed, or the error's type."""
    sent = bytearray(core.data_to_send())
    try:
        for chunk in chunks:
            core.receive_data(chunk)
            sent += core.data_to_send()
            if core.done:
                return (core.protocol, bytes(sent), core.unused_data())
    except (RemoteProtocolError, NegotiationError) as exc:
        return (type(exc), bytes(sent))
    return (None, bytes(sent))


def _feed_multistream(make: Callable[[], DialerNegotiation | ListenerNegotiation], data: bytes) -> None:
    """The outcome must not depend on how the bytes were split (the
    remainder after the agreement aside: a split read stops earlier)."""
    split = _negotiate(make(), _chunks(data))
    whole = _negotiate(make(), [data[1:]])
    if len(whole) == 3 and len(split) == 3:
        assert split[:2] == whole[:2], "multistream agrees differently when split"
        assert whole[2].startswith(split[2]), "multistream garbles the bytes behind the agreement when split"  # type: ignore[attr-defined]
    elif len(split) == 2 and len(whole) == 2 and split[0] is not None and whole[0] is not None:
        # both refused; answers queued in the failing read are dropped, so compare the error only
        assert split[0] is whole[0], f"multistream fails differently when split: {split[0]} vs {whole[0]}"
    else:
        assert split == whole, f"multistream ends differently when split: {split[:1]} vs {whole[:1]}"
    if isinstance(split[0], type) and issubclass(split[0], Exception):
        raise split[0]("refused")


def _feed_multistream_dialer(data: bytes) -> None:
    _feed_multistream(lambda: DialerNegotiation(["/noise", "/yamux/1.0.0"]), data)


def _feed_multistream_listener(data: bytes) -> None:
    _feed_multistream(lambda: ListenerNegotiation({"/noise": None, "/yamux/1.0.0": None}), data)


def _multistream_seeds() -> list[bytes]:
    header = ms_line("/multistream/1.0.0")
    return [
        _split(header + ms_line("na") + ms_line("/yamux/1.0.0") + b"hello"),
        bytes((0,)) + header + ms_line("/noise"),
        _split(header + ms_line("ls") + ms_line("/mplex/6.7.0") + ms_line("/yamux/1.0.0")),
    ]


# -- layer 2: Noise and yamux ---------------------------------------------------

_NOISE_ALICE = NoiseIdentity(ALICE, static_private=bytes(range(100, 132)))
_NOISE_BOB = NoiseIdentity(BOB, static_private=bytes(range(150, 182)))
_NOISE_ERRORS: _Errors = (DecodeError, HandshakeError)


def _feed_noise_payload(data: bytes) -> None:
    decode_payload(data, _NOISE_ALICE.static_public)


def _feed_noise_handshake(data: bytes) -> None:
    """The responder reads message 1 and 3 from the input; the initiator,
    in a second handshake, reads message 2 from it."""
    for initiator in (False, True):
        core = NoiseHandshake(
            _NOISE_BOB, initiator=initiator, ephemeral_private=bytes(range(200, 232))
        )
        core.data_to_send()
        try:
            for chunk in _chunks(data):
                core.receive_data(chunk)
                core.data_to_send()
                if core.complete:
                    core.result()
                    core.unused_data()
                    break
        except _NOISE_ERRORS:
            continue


def _noise_handshake_seeds() -> list[bytes]:
    initiator = NoiseHandshake(_NOISE_ALICE, initiator=True, ephemeral_private=bytes(range(50, 82)))
    responder = NoiseHandshake(_NOISE_BOB, initiator=False, ephemeral_private=bytes(range(200, 232)))
    m1 = initiator.data_to_send()
    responder.receive_data(m1)
    m2 = responder.data_to_send()
    initiator.receive_data(m2)
    m3 = initiator.data_to_send()
    return [bytes((0,)) + m1 + m3, _split(m1 + m3), bytes((0,)) + m2]


_NOISE_KEY = bytes(range(32))


def _feed_noise_frames(data: bytes) -> None:
    """Input byte 0: chunk size and mode. Mode 1: the rest is plaintext,
    encrypted with the matching key (so the frames authenticate) and then
    maybe tampered with at the position byte 1 names; mode 0: raw wire bytes."""
    receiver = NoiseTransport(CipherState(bytes(32)), CipherState(_NOISE_KEY))
    if data and data[0] & 0x80:
        sender = NoiseTransport(CipherState(_NOISE_KEY), CipherState(bytes(32)))
        wire = bytearray(sender.encrypt(data[2:]))
        if len(data) > 1 and data[1] and wire:
            wire[data[1] % len(wire)] ^= data[1]
        data = bytes((data[0] & 0x1F,)) + bytes(wire)
    out = []
    try:
        for chunk in _chunks(data):
            out.append(receiver.receive_data(chunk))
            assert receiver.buffered <= 65537, "Noise holds more than one frame"
    except DecodeError:
        out.append(b"<error>")
    whole = NoiseTransport(CipherState(bytes(32)), CipherState(_NOISE_KEY))
    try:
        expected = whole.receive_data(data[1:])
    except DecodeError:
        expected = b"<error>"
    got = b"".join(out)
    if expected == b"<error>":
        assert got.endswith(b"<error>"), "Noise refuses frames only when whole"
    else:
        assert got == expected, "Noise decrypts differently when split"
    if got.endswith(b"<error>"):
        raise DecodeError("refused")


def _noise_frames_seeds() -> list[bytes]:
    return [bytes((0x80, 0)) + b"hello", bytes((0x87, 0)) + bytes(100), bytes((0x80, 5)) + b"tampered"]


def _feed_yamux_header(data: bytes) -> None:
    decode_header(data, data[0] % 4 if data else 0)


def _yamux_run(initiator: bool, chunks: Iterable[bytes]) -> tuple[list[object], int | None]:
    """The session's events, adjacent data of one stream joined, and the
    GoAway code of the error that ended it (``None``: no error)."""
    session = YamuxSession(initiator)
    events: list[object] = []
    try:
        for chunk in chunks:
            for event in session.receive_data(chunk):
                last = events[-1] if events else None
                if isinstance(event, DataReceived) and isinstance(last, DataReceived) and last.stream_id == event.stream_id:
                    events[-1] = DataReceived(event.stream_id, last.data + event.data)
                else:
                    events.append(event)
            session.data_to_send()
    except RemoteProtocolError as exc:
        return events, exc.hint if exc.hint is not None else -1
    return events, None


def _feed_yamux_session(data: bytes) -> None:
    """Both roles; what the peer's bytes mean must not depend on how they
    were split across reads."""
    for initiator in (False, True):
        events, error = _yamux_run(initiator, _chunks(data))
        whole, whole_error = _yamux_run(initiator, [data[1:]])
        assert error == whole_error, f"yamux fails differently when split: {error} vs {whole_error}"
        if error is None:
            assert events == whole, "yamux events differ when the bytes are split"


def _yamux_seeds() -> list[bytes]:
    syn = encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0)
    data = encode_header(FrameType.DATA, 0, 2, 5) + b"hello"
    fin = encode_header(FrameType.DATA, Flag.FIN, 2, 0)
    ping = encode_header(FrameType.PING, Flag.SYN, 0, 7)
    rst = encode_header(FrameType.WINDOW_UPDATE, Flag.RST, 2, 0)
    goaway = encode_header(FrameType.GO_AWAY, 0, 0, 0)
    return [_split(syn + data + fin + ping), bytes((0,)) + syn + data + rst + goaway, bytes((1,)) + syn + ping]


# -- protocols on the host ------------------------------------------------------


def _feed_identify(data: bytes) -> None:
    info = decode_identify(data)
    if info.public_key is not None:
        try:
            PublicKey.from_protobuf(info.public_key)
        except DecodeError:
            pass


def _identify_seeds() -> list[bytes]:
    return [
        encode_identify(
            IdentifyInfo(
                protocol_version="ipfs/0.1.0",
                agent_version="guts/0.1.0",
                public_key=ALICE.public_key.to_protobuf(),
                listen_addrs=ADDRS,
                observed_addr=ADDRS[0],
                protocols=("/ipfs/id/1.0.0", "/guts/sync/1.0.0"),
            )
        ),
        encode_identify(IdentifyInfo(protocols=("/meshsub/1.1.0",))),
    ]


_VALIDATORS = default_validators()


def _feed_kad_message(data: bytes) -> None:
    message = decode_message(data)
    if message.record is not None:
        _validate_record(message.record)


def _validate_record(record: Record) -> None:
    try:
        validator = _VALIDATORS.get(namespace_of(record.key))
        if validator is not None:
            validator.validate(record.key, record.value)
    except InvalidRecord:
        pass


def _feed_kad_record(data: bytes) -> None:
    _validate_record(decode_record(data))


def _kad_seeds() -> list[bytes]:
    peer = KadPeer(ALICE.peer_id, ADDRS[:2], ConnectionType.CONNECTED)
    other = KadPeer(BOB.peer_id, (), ConnectionType.NOT_CONNECTED)
    record = Record(b"/pk/" + ALICE.peer_id.to_bytes(), ALICE.public_key.to_protobuf(), "2026-01-01T00:00:00Z")
    return [
        encode_message(KadMessage(MessageType.FIND_NODE, key=BOB.peer_id.to_bytes(), closer_peers=(peer, other))),
        encode_message(KadMessage(MessageType.PUT_VALUE, key=record.key, record=record)),
        encode_message(KadMessage(MessageType.GET_PROVIDERS, key=RID.multihash, provider_peers=(peer,))),
        encode_message(KadMessage(MessageType.PING)),
    ]


def _kad_record_seeds() -> list[bytes]:
    return [
        encode_record(Record(b"/pk/" + ALICE.peer_id.to_bytes(), ALICE.public_key.to_protobuf(), "")),
        encode_record(Record(b"/guts/name", b"value", "2026-01-01T00:00:00Z")),
    ]


def _feed_gossip_rpc(data: bytes) -> None:
    rpc = decode_rpc(data)
    authors = AuthorCache()
    for message in rpc.messages:
        try:
            check_author(message, SignaturePolicy.STRICT_SIGN, authors)
        except DecodeError:
            pass


def _gossip_seeds() -> list[bytes]:
    signed = sign_message(ALICE, "topic", b"payload", 1)
    control = ControlMessage(
        ihave=(IHave("topic", (b"id1", b"id2")),),
        iwant=(IWant((b"id3",)),),
        graft=(Graft("topic"),),
        prune=(Prune("other", (PxPeer(BOB.peer_id.to_bytes(), None),), 60),),
        idontwant=(IDontWant((b"id4",)),),
    )
    return [
        encode_rpc(RPC(subscriptions=(SubOpts(True, "topic"), SubOpts(False, "old")), messages=(signed,))),
        encode_rpc(RPC(control=control)),
    ]


def _feed_peer_record(data: bytes) -> None:
    open_peer_record(data)


# -- repositories: sync messages, signed refs, identities, git framing -----------


def _feed_sync_request(data: bytes) -> None:
    decode_request(data, SYNC)


def _feed_sync_response(data: bytes) -> None:
    response = decode_response(data, SYNC)
    if isinstance(response, Refs):
        for raw in response.identity + response.proposals:
            try:
                SignedRevision.decode(raw)
            except InvalidIdentity:
                pass
        for raw in response.statements:
            try:
                SignedStatement.decode(raw)
            except InvalidRefs:
                pass


def _upload_request() -> bytes:
    return encode_packets(
        [
            DataPacket(b"command=fetch\n"),
            DataPacket(b"agent=git/2.39\n"),
            DataPacket(b"object-format=sha1\n"),
            DelimPacket(),
            DataPacket(b"thin-pack\n"),
            DataPacket(b"ofs-delta\n"),
            DataPacket(f"want {OID}\n".encode()),
            DataPacket(f"have {'d' * 40}\n".encode()),
            DataPacket(b"done\n"),
            FlushPacket(),
        ]
    )


def _sync_request_seeds() -> list[bytes]:
    return [encode_request(GetRefs(str(RID))), encode_request(GetObjects(str(RID), _upload_request()))]


def _sync_response_seeds() -> list[bytes]:
    return [
        encode_response(Refs((GENESIS.encode(),), (FIRST.encode(),), ("5" * 40,), ())),
        encode_response(Objects()),
        encode_response(Refused(RefusedReason.BUSY, "busy")),
    ]


_SIGNED_OIDS = frozenset({OID, "b" * 40})


def _feed_upload_request(data: bytes) -> None:
    check_upload_request(data, _SIGNED_OIDS, 64 * 1024)


def _upload_seeds() -> list[bytes]:
    ls_refs = encode_packets(
        [DataPacket(b"command=ls-refs\n"), DelimPacket(), DataPacket(b"peel\n"), DataPacket(b"ref-prefix refs/heads/\n"), FlushPacket()]
    )
    return [_upload_request(), ls_refs]


def _feed_identity_document(data: bytes) -> None:
    Identity.decode(data)


def _feed_signed_revision(data: bytes) -> None:
    SignedRevision.decode(data)


def _feed_refs_statement(data: bytes) -> None:
    Statement.parse(data)


def _feed_signed_refs(data: bytes) -> None:
    SignedStatement.decode(data)


def _feed_refname(data: bytes) -> None:
    decode_refname(data)


def _packets(chunks: Iterable[bytes]) -> tuple[list[Packet], bytes, DecodeError | None]:
    decoder = PktLineDecoder()
    packets: list[Packet] = []
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (packet := decoder.next_packet()) is not None:
                packets.append(packet)
    except DecodeError as exc:
        return packets, b"", exc
    return packets, decoder.unused_data(), None


def _feed_pktline(data: bytes) -> None:
    """The packets must not depend on how the bytes were split across reads."""
    packets, rest, error = _packets(_chunks(data))
    whole, whole_rest, whole_error = _packets([data[1:]])
    assert packets == whole, "pkt-lines decode differently when split"
    assert (error is None) == (whole_error is None), "pkt-lines fail only when split (or only whole)"
    assert rest == whole_rest, "pkt-lines keep other unused bytes when split"
    for packet in packets:
        if isinstance(packet, DataPacket) and packet.payload[:1] in (b"\x01", b"\x02", b"\x03", b"\x04"):
            try:
                demux_sideband(packet.payload)
            except DecodeError:
                pass
    if error is not None:
        raise error


def _track(chunks: Iterable[bytes]) -> bytes | DecodeError:
    tracker = ResponseTracker()
    try:
        for chunk in chunks:
            tracker.receive_data(chunk)
        return tracker.end()
    except DecodeError as exc:
        return exc


def _feed_pktline_response(data: bytes) -> None:
    """The verdict must not depend on how the bytes were split, and must
    agree with the full decoder's."""
    split, whole = _track(_chunks(data)), _track([data[1:]])
    assert type(split) is type(whole), "a response is judged differently when split"
    packets, rest, error = _packets([data[1:]])
    if isinstance(whole, bytes):
        assert error is None and not rest and isinstance(packets[-1], FlushPacket), "tracker ends a response the decoder does not"
    elif error is None and not rest and packets and isinstance(packets[-1], FlushPacket):
        raise AssertionError("the tracker refuses a response the decoder reads whole")
    if isinstance(split, DecodeError):
        raise split


def _pktline_seeds() -> list[bytes]:
    response = (
        encode_line("packfile")
        + encode_sideband(Band.PROGRESS, b"Enumerating objects: 3\n")
        + encode_sideband(Band.PACK, b"PACK\x00\x00\x00\x02")
        + b"0000"
    )
    return [_split(_upload_request()), bytes((0,)) + response, _split(encode_line("acknowledgments") + b"0001" + response)]


def _feed_announcement(data: bytes) -> None:
    announcement = decode_announcement(data)
    check_announcement(announcement, topic_of(announcement))


def _announcement_seeds() -> list[bytes]:
    return [
        encode_announcement(announce_refs(FIRST, "5" * 40)),
        encode_announcement(announce_refs(SECOND, "6" * 40)),
        encode_announcement(announce_repository([GENESIS])),
    ]


_SIGNED_KEY = guts_key(ALICE.peer_id, b"name")


def _feed_dht_signed_record(data: bytes) -> None:
    """Input byte 0 (when below 128): the length of the key that follows,
    then the record; otherwise the record under Alice's ``/guts/`` key."""
    if data and data[0] < 128:
        key, record = data[1 : 1 + data[0]], data[1 + data[0] :]
    else:
        key, record = _SIGNED_KEY, data[1:]
    open_record(key, record, 1024)


def _dht_signed_seeds() -> list[bytes]:
    return [
        b"\xff" + sign_record(ALICE, _SIGNED_KEY, 7, b"value"),
        bytes((len(_SIGNED_KEY),)) + _SIGNED_KEY + sign_record(ALICE, _SIGNED_KEY, 1, b""),
    ]


_CONFIG_HOME = Path(tempfile.mkdtemp(prefix="guts-fuzz-config-"))


def _feed_config(data: bytes) -> None:
    """What a person writes: ``config.toml`` before the first NUL, then
    ``name=value`` lines for the ``GUTS_*`` environment."""
    toml, _, env_lines = _text(data).partition("\0")
    (_CONFIG_HOME / "config.toml").write_text(toml, encoding="utf-8")
    env = {}
    for line in env_lines.splitlines():
        name, _, value = line.partition("=")
        env["GUTS_" + name.upper()] = value
    load_config(_CONFIG_HOME, env=env)


def _config_seeds() -> list[bytes]:
    toml = (
        'listen = ["/ip4/127.0.0.1/tcp/9000", "/ip6/::1/tcp/9000/ws"]\n'
        "max_connections = 80\nkeep_alive = 30.0\ndht_mode = \"server\"\n"
        'topics = ["a", "b"]\nrepo_max_pack_bytes = "16GiB"\nseed_policy = "all"\n'
    )
    env = (
        f"bootstrap=/ip4/10.0.0.1/tcp/9000/p2p/{ALICE.peer_id}\nsync_deadline=3600\n"
        f"seed_block_rids={RID}\nseed_block_peers={BOB.peer_id}\nseed_max_storage_bytes=1TiB\n"
        "conn_low_water=10\nconn_high_water=20\nconn_handshake_rate=0.5\npush_wait=1.5\n"
        "dht_protocol=/guts/kad/1.0.0\nconnection_timeout=5\n"
    )
    return [toml.encode() + b"\0" + env.encode(), toml.encode(), b"\0" + env.encode()]


def _feed_control_json(data: bytes) -> None:
    HttpRequest("POST", "/", {}, data).json()


# -- addresses and identifiers --------------------------------------------------


def _feed_multiaddr_bytes(data: bytes) -> None:
    addr = Multiaddr.from_bytes(data)
    assert Multiaddr.from_bytes(addr.to_bytes()) == addr, "binary form does not round-trip"
    assert Multiaddr.parse(str(addr)) == addr, "text form does not round-trip"


def _feed_multiaddr_text(data: bytes) -> None:
    addr = Multiaddr.parse(_text(data))
    assert Multiaddr.from_bytes(addr.to_bytes()) == addr, "binary form does not round-trip"


def _feed_peer_id_bytes(data: bytes) -> None:
    peer = PeerId.from_bytes(data)
    assert PeerId.from_string(str(peer)) == peer, "text form does not round-trip"
    PublicKey.from_peer_id(peer)


def _feed_peer_id_text(data: bytes) -> None:
    peer = PeerId.from_string(_text(data))
    assert PeerId.from_bytes(peer.to_bytes()) == peer, "binary form does not round-trip"


def _feed_cid_bytes(data: bytes) -> None:
    cid = Cid.decode(data)
    assert Cid.decode(cid.to_bytes()) == cid, "binary form does not round-trip"
    assert Cid.parse(cid.encode()) == cid, "text form does not round-trip"


def _feed_cid_text(data: bytes) -> None:
    cid = Cid.parse(_text(data))
    assert Cid.decode(cid.to_bytes()) == cid, "binary form does not round-trip"


def _feed_rid_text(data: bytes) -> None:
    rid = Rid.parse(_text(data))
    assert Rid.parse(str(rid)) == rid, "text form does not round-trip"


def _feed_public_key(data: bytes) -> None:
    key = PublicKey.from_protobuf(data)
    assert PublicKey.from_protobuf(key.to_protobuf()) == key


def _feed_private_key(data: bytes) -> None:
    pair = KeyPair.from_protobuf(data)
    assert KeyPair.from_protobuf(pair.to_protobuf()).public_key == pair.public_key


def _const(*values: bytes) -> Callable[[], list[bytes]]:
    return lambda: list(values)


def _all_targets() -> dict[str, Target]:
    text = str.encode
    targets = [
        Target("varint", _feed_varint, (DecodeError,), _const(encode_uvarint(0) + encode_uvarint(300) + encode_uvarint(2**63 - 1))),
        Target("multistream_dialer", _feed_multistream_dialer, (RemoteProtocolError, NegotiationError), _multistream_seeds),
        Target("multistream_listener", _feed_multistream_listener, (RemoteProtocolError, NegotiationError), _multistream_seeds),
        Target(
            "noise_payload",
            _feed_noise_payload,
            _NOISE_ERRORS,
            _const(_NOISE_ALICE.payload(["/yamux/1.0.0"]), _NOISE_ALICE.payload([])),
        ),
        Target("noise_handshake", _feed_noise_handshake, _NOISE_ERRORS, _noise_handshake_seeds),
        Target("noise_frames", _feed_noise_frames, (DecodeError,), _noise_frames_seeds),
        Target("tls_certificate", feed_tls_certificate, TLS_ERRORS, tls_certificate_seeds),
        Target("tls_client_hello", feed_tls_client_hello, TLS_ERRORS, tls_client_hello_seeds),
        Target("tls_server_hello", feed_tls_server_hello, TLS_ERRORS, tls_server_hello_seeds),
        Target("yamux_header", _feed_yamux_header, (DecodeError,), lambda: [s[1:13] for s in _yamux_seeds()]),
        Target("yamux_session", _feed_yamux_session, (RemoteProtocolError,), _yamux_seeds),
        Target("identify", _feed_identify, (DecodeError,), _identify_seeds),
        Target("kad_message", _feed_kad_message, (DecodeError,), _kad_seeds),
        Target("kad_record", _feed_kad_record, (DecodeError,), _kad_record_seeds),
        Target("gossip_rpc", _feed_gossip_rpc, (DecodeError,), _gossip_seeds),
        Target(
            "peer_record",
            _feed_peer_record,
            (DecodeError,),
            _const(seal_peer_record(ALICE, 1, ADDRS), seal_peer_record(BOB, 7, ())),
        ),
        Target("sync_request", _feed_sync_request, (DecodeError,), _sync_request_seeds),
        Target("sync_response", _feed_sync_response, (DecodeError,), _sync_response_seeds),
        Target("upload_request", _feed_upload_request, (DecodeError,), _upload_seeds),
        Target("identity_document", _feed_identity_document, (InvalidIdentity,), _const(GENESIS.document.raw)),
        Target("signed_revision", _feed_signed_revision, (InvalidIdentity,), _const(GENESIS.encode())),
        Target(
            "refs_statement",
            _feed_refs_statement,
            (InvalidRefs,),
            _const(FIRST.statement.canonical, SECOND.statement.canonical),
        ),
        Target("signed_refs", _feed_signed_refs, (InvalidRefs,), _const(FIRST.encode(), SECOND.encode())),
        Target("refname", _feed_refname, (DecodeError,), _const(b"refs/heads/main", b"refs/tags/v1.0", b"refs/heads/a/b-c")),
        Target("pktline", _feed_pktline, (DecodeError,), _pktline_seeds),
        Target("pktline_response", _feed_pktline_response, (DecodeError,), _pktline_seeds),
        Target("announcement", _feed_announcement, (InvalidAnnouncement,), _announcement_seeds),
        Target("config", _feed_config, (ConfigError,), _config_seeds),
        Target("dht_signed_record", _feed_dht_signed_record, (InvalidRecord,), _dht_signed_seeds),
        Target(
            "control_json",
            _feed_control_json,
            (ValueError,),
            _const(b'{"topic": "t", "data": [1, {"a": "]]]"}]}', b"[]", b'{"a": ' * 64 + b"1" + b"}" * 64),
        ),
        Target("multiaddr_bytes", _feed_multiaddr_bytes, (DecodeError,), lambda: [a.to_bytes() for a in ADDRS]),
        Target("multiaddr_text", _feed_multiaddr_text, (InvalidMultiaddr,), lambda: [text(str(a)) for a in ADDRS]),
        Target(
            "peer_id_bytes",
            _feed_peer_id_bytes,
            (DecodeError,),
            _const(ALICE.peer_id.to_bytes(), b"\x12\x20" + bytes(32)),
        ),
        Target(
            "peer_id_text",
            _feed_peer_id_text,
            (InvalidPeerId,),
            lambda: [text(str(ALICE.peer_id)), text(Cid(1, 0x72, ALICE.peer_id.to_bytes()).encode())],
        ),
        Target("cid_bytes", _feed_cid_bytes, (InvalidCid,), lambda: [Cid.parse(str(RID)).to_bytes(), b"\x12\x20" + bytes(32)]),
        Target(
            "cid_text",
            _feed_cid_text,
            (InvalidCid,),
            lambda: [text(str(RID)), text(Cid.parse(str(RID)).encode("base58btc"))],
        ),
        Target("rid_text", _feed_rid_text, (InvalidRid,), lambda: [text(str(RID))]),
        Target("public_key", _feed_public_key, (DecodeError,), _const(ALICE.public_key.to_protobuf())),
        Target("private_key", _feed_private_key, (DecodeError,), _const(ALICE.to_protobuf())),
    ]
    return {t.name: t for t in targets}


#: Every target, by name.
TARGETS: dict[str, Target] = _all_targets()
