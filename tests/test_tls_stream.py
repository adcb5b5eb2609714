"""libp2p TLS 1.3 sessions: the sans-IO core pumped by hand, then the trio
stream over memory and lockstep streams."""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aioquic._buffer import Buffer
from aioquic.tls import CipherSuite, Group, pull_client_hello
from guts.crypto import KeyPair
from guts.errors import HandshakeError, PeerIdMismatch
from guts.security.tls import (
    LIBP2P_ALPN,
    PROTOCOL_ID,
    CertificateError,
    TlsConnection,
    TlsError,
    TlsIdentity,
    TlsState,
    TlsStream,
    make_certificate,
    tls_handshake,
    verify_certificate_chain,
)
from guts.security.tls import _connection
from guts.mux.yamux import YamuxConfig, YamuxConnection
from guts.transport import memory_connection_pair
from guts.wire import NegotiatedStream, accept_protocol
from guts.security.tls._record import MAX_CIPHERTEXT, MAX_PLAINTEXT, RecordKeys

YAMUX = "/yamux/1.0.0"
NOW = datetime.datetime.now(datetime.UTC)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def alice() -> TlsIdentity:
    return TlsIdentity.generate(KeyPair.generate())


@pytest.fixture(scope="module")
def bob() -> TlsIdentity:
    return TlsIdentity.generate(KeyPair.generate())


# -- the sans-IO core ------------------------------------------------------------


def pump(client: TlsConnection, server: TlsConnection, *, split: int | None = None) -> None:
    """Move bytes both ways until neither side has more (``split``: at most
    that many bytes per ``receive_data``)."""
    for _ in range(10):
        moved = False
        for sender, receiver in ((client, server), (server, client)):
            data = sender.data_to_send()
            moved = moved or bool(data)
            step = split or max(len(data), 1)
            for start in range(0, len(data), step):
                assert receiver.receive_data(data[start : start + step]) == b""
        if not moved:
            return
    raise AssertionError("the handshake does not settle")


def pair(
    alice: TlsIdentity, bob: TlsIdentity, *, client_muxers: tuple[str, ...] = (YAMUX,), server_muxers: tuple[str, ...] = (YAMUX,)
) -> tuple[TlsConnection, TlsConnection]:
    client = TlsConnection(alice, initiator=True, muxers=client_muxers, expected_peer=bob.keypair.peer_id, now=NOW)
    server = TlsConnection(bob, initiator=False, muxers=server_muxers, now=NOW)
    return client, server


def test_core_handshake_authenticates_both(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    assert client.state is server.state is TlsState.HANDSHAKING
    pump(client, server)
    assert client.state is server.state is TlsState.OPEN
    assert client.remote_peer == bob.keypair.peer_id and server.remote_peer == alice.keypair.peer_id
    assert client.remote_public_key == bob.keypair.public_key
    assert client.muxer == server.muxer == client.alpn == YAMUX
    assert server.receive_data(client.encrypt(b"ping")) == b"ping"
    assert client.receive_data(server.encrypt(b"pong")) == b"pong"


def test_core_client_hello_follows_the_spec(alice: TlsIdentity) -> None:
    """No SNI (the spec forbids it), TLS 1.3 only, muxers then "libp2p" in
    ALPN, one X25519 share, no session resumption."""
    client = TlsConnection(alice, initiator=True, muxers=(YAMUX, "/mplex/6.7.0"), now=NOW)
    record = client.data_to_send()
    assert record[:3] == b"\x16\x03\x03" and int.from_bytes(record[3:5], "big") == len(record) - 5
    hello = pull_client_hello(Buffer(data=record[5:]))
    assert hello.server_name is None
    assert hello.alpn_protocols == [YAMUX, "/mplex/6.7.0", LIBP2P_ALPN]
    assert hello.supported_versions == [0x0304]
    assert hello.key_share is not None and [group for group, _ in hello.key_share] == [Group.X25519]
    assert hello.psk_key_exchange_modes is None and hello.pre_shared_key is None and not hello.early_data
    assert hello.cipher_suites[0] == CipherSuite.AES_128_GCM_SHA256


def test_core_handshake_one_byte_at_a_time(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    pump(client, server, split=1)
    assert client.state is server.state is TlsState.OPEN
    payload = os.urandom(3 * MAX_PLAINTEXT + 7)
    records = client.encrypt(payload)
    assert b"".join(server.receive_data(records[i : i + 1]) for i in range(len(records))) == payload


def test_core_records_are_bounded(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    pump(client, server)
    records = client.encrypt(b"x" * (2 * MAX_PLAINTEXT + 1))
    sizes = []
    pos = 0
    while pos < len(records):
        size = int.from_bytes(records[pos + 3 : pos + 5], "big")
        sizes.append(size)
        pos += 5 + size
    assert sizes == [MAX_PLAINTEXT + 17, MAX_PLAINTEXT + 17, 18]
    header = bytes((23, 3, 3)) + (MAX_CIPHERTEXT + 1).to_bytes(2, "big")
    with pytest.raises(TlsError, match="over") as info:
        server.receive_data(header)  # refused before its body is buffered
    assert info.value.alert == 22
    assert server.state is TlsState.FAILED


@pytest.mark.parametrize(
    ("muxers", "expected"),
    [
        (((YAMUX,), (YAMUX,)), YAMUX),
        (((), (YAMUX,)), None),  # the client offers only "libp2p"
        (((YAMUX,), ()), None),  # the server wants multistream-select
        ((("/mplex/6.7.0", YAMUX), (YAMUX,)), YAMUX),
    ],
)
def test_core_alpn_inlines_the_muxer(
    alice: TlsIdentity, bob: TlsIdentity, muxers: tuple[tuple[str, ...], tuple[str, ...]], expected: str | None
) -> None:
    client, server = pair(alice, bob, client_muxers=muxers[0], server_muxers=muxers[1])
    pump(client, server)
    assert client.muxer == server.muxer == expected
    assert client.alpn == server.alpn == (expected or LIBP2P_ALPN)


def test_core_ignores_change_cipher_spec_in_the_handshake(alice: TlsIdentity, bob: TlsIdentity) -> None:
    """Middlebox-compatible clients (OpenSSL, Go) send a dummy one."""
    client, server = pair(alice, bob)
    hello = client.data_to_send()
    server.receive_data(hello + b"\x14\x03\x03\x00\x01\x01")
    client.receive_data(server.data_to_send())
    server.receive_data(b"\x14\x03\x03\x00\x01\x01" + client.data_to_send())
    assert server.state is client.state is TlsState.OPEN
    with pytest.raises(TlsError, match="change_cipher_spec"):
        server.receive_data(b"\x14\x03\x03\x00\x01\x01")


def test_core_key_update(monkeypatch: pytest.MonkeyPatch, alice: TlsIdentity, bob: TlsIdentity) -> None:
    """Past the interval a side updates its keys and asks the peer to; the
    peer answers before its next record."""
    monkeypatch.setattr(_connection, "KEY_UPDATE_INTERVAL", 3)
    client, server = pair(alice, bob)
    pump(client, server)
    for i in range(8):
        assert server.receive_data(client.encrypt(b"c%d" % i)) == b"c%d" % i
        assert client.receive_data(server.encrypt(b"s%d" % i)) == b"s%d" % i
    assert client._send_keys[_connection.Epoch.ONE_RTT].sequence < 3
    assert server._send_keys[_connection.Epoch.ONE_RTT].sequence < 3


def test_core_refuses_a_missing_client_certificate(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    client._context.certificate = None  # the client answers the request with no certificate
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    with pytest.raises(CertificateError, match="no certificate") as info:
        server.receive_data(client.data_to_send())
    assert info.value.alert == 116
    assert server.data_to_send()  # the alert for the client


def test_core_close_notify_is_end_of_file(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    pump(client, server)
    assert server.receive_data(client.encrypt(b"last") + client.close()) == b"last"
    assert server.eof_received and client.eof_sent
    assert client.close() == b""
    with pytest.raises(TlsError, match="close_notify"):
        client.encrypt(b"more")
    assert client.receive_data(server.encrypt(b"still open")) == b"still open"  # half-close


def test_core_fatal_alert_from_the_peer(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    pump(client, server)
    keys = client._send_keys[_connection.Epoch.ONE_RTT]
    with pytest.raises(TlsError, match="alert 40"):
        server.receive_data(keys.seal(21, b"\x02\x28"))
    with pytest.raises(TlsError, match="failed earlier"):
        server.receive_data(b"")


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x17\x03\x03\x00\x20" + bytes(32),  # application data before any key
        b"\x15\x03\x03\x00\x02\x02\x28",  # a plaintext fatal alert
        b"\x16\x03\x03\x00\x04\x01\x00\xff\xff",  # a ClientHello announcing 64 KiB
    ],
)
def test_core_refuses_garbage_in_the_handshake(bob: TlsIdentity, garbage: bytes) -> None:
    server = TlsConnection(bob, initiator=False, now=NOW)
    with pytest.raises(TlsError):
        server.receive_data(garbage)
    assert server.state is TlsState.FAILED


def test_core_refuses_tampered_records(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    pump(client, server)
    record = bytearray(client.encrypt(b"payload"))
    record[-1] ^= 1
    with pytest.raises(TlsError, match="authentication") as info:
        server.receive_data(bytes(record))
    assert info.value.alert == 20


def test_core_refuses_unprotected_records_after_the_handshake(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = pair(alice, bob)
    pump(client, server)
    with pytest.raises(TlsError, match="unprotected"):
        server.receive_data(b"\x16\x03\x03\x00\x01\x00")


def test_core_wrong_expected_peer(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client = TlsConnection(alice, initiator=True, expected_peer=KeyPair.generate().peer_id, now=NOW)
    server = TlsConnection(bob, initiator=False, now=NOW)
    server.receive_data(client.data_to_send())
    with pytest.raises(PeerIdMismatch):
        client.receive_data(server.data_to_send())
    alert = client.data_to_send()
    with pytest.raises(TlsError, match="alert 42"):
        server.receive_data(alert)


# -- the trio stream --------------------------------------------------------------


def crafted(identity: TlsIdentity, **changes: object) -> TlsIdentity:
    """``identity`` with a certificate that breaks one rule."""
    keypair = identity.keypair
    if changes.get("no_extension") or changes.get("bad_signature"):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([]))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(NOW - HOUR)
            .not_valid_after(NOW + HOUR)
        )
        if changes.get("bad_signature"):
            # The extension of a certificate for another key.
            _, other = make_certificate(keypair, now=NOW)
            source, _ = make_certificate(keypair, now=NOW, certificate_key=other)
            extension = next(iter(source.extensions))
            builder = builder.add_extension(extension.value, critical=True)
        return TlsIdentity(keypair, builder.sign(key, hashes.SHA256()), key)
    certificate, key = make_certificate(
        keypair, now=NOW, not_before=changes.get("not_before"), not_after=changes.get("not_after")  # type: ignore[arg-type]
    )
    return TlsIdentity(keypair, certificate, key)


async def handshake_pair(
    client_identity: TlsIdentity,
    server_identity: TlsIdentity,
    *,
    make_pair: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]] = trio.testing.memory_stream_pair,
    expected_peer: object = "server",
) -> tuple[TlsStream, TlsStream]:
    left, right = make_pair()
    expected = server_identity.keypair.peer_id if expected_peer == "server" else expected_peer
    results: dict[str, TlsStream] = {}

    async def client() -> None:
        results["client"] = await tls_handshake(left, client_identity, initiator=True, expected_peer=expected)  # type: ignore[arg-type]

    async def server() -> None:
        results["server"] = await tls_handshake(right, server_identity, initiator=False)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            nursery.start_soon(server)
    return results["client"], results["server"]


@pytest.mark.parametrize("make_pair", [trio.testing.memory_stream_pair, trio.testing.lockstep_stream_pair])
async def test_handshake_and_echo_both_ways(
    alice: TlsIdentity, bob: TlsIdentity, make_pair: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]
) -> None:
    client, server = await handshake_pair(alice, bob, make_pair=make_pair)
    assert client.remote_peer == bob.keypair.peer_id and server.remote_peer == alice.keypair.peer_id
    assert client.local_peer == alice.keypair.peer_id
    assert client.muxer == server.muxer == YAMUX and client.remote_muxers == (YAMUX,)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"from the client")
        assert await server.receive_some() == b"from the client"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, b"from the server")
        assert await client.receive_some() == b"from the server"


async def test_handshake_with_a_bare_keypair() -> None:
    one, two = KeyPair.generate(), KeyPair.generate()
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(tls_handshake, right, two, initiator=False))
        stream = await tls_handshake(left, one, initiator=True, expected_peer=two.peer_id, muxers=())
    assert stream.remote_peer == two.peer_id
    assert stream.muxer is None and stream.alpn == LIBP2P_ALPN and stream.remote_muxers == ()


async def test_16_mib_echo_is_intact(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob)
    payload = os.urandom(16 << 20)
    received = bytearray()

    async def echo() -> None:
        while chunk := await server.receive_some(100_000):
            await server.send_all(chunk)
        await server.send_eof()

    async def receive() -> None:
        while chunk := await client.receive_some():
            received.extend(chunk)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            nursery.start_soon(receive)
            await client.send_all(payload)
            await client.send_eof()
    assert bytes(received) == payload


async def test_wrong_expected_peer_is_refused(alice: TlsIdentity, bob: TlsIdentity) -> None:
    left, right = trio.testing.memory_stream_pair()
    errors: list[BaseException] = []

    async def server() -> None:
        try:
            await tls_handshake(right, bob, initiator=False)
        except TlsError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            with pytest.raises(PeerIdMismatch):
                await tls_handshake(left, alice, initiator=True, expected_peer=KeyPair.generate().peer_id)
    assert len(errors) == 1 and "alert 42" in str(errors[0])  # the client told the server why


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"no_extension": True}, "lacks the libp2p Public Key Extension"),
        ({"bad_signature": True}, "signature is not valid"),
        ({"not_before": NOW - 48 * HOUR, "not_after": NOW - HOUR}, "expired"),
        ({"not_before": NOW + HOUR, "not_after": NOW + 48 * HOUR}, "not valid before"),
    ],
)
async def test_bad_server_certificate_is_refused(
    alice: TlsIdentity, bob: TlsIdentity, change: dict[str, object], match: str
) -> None:
    left, right = trio.testing.memory_stream_pair()
    server_errors: list[BaseException] = []

    async def server() -> None:
        try:
            await tls_handshake(right, crafted(bob, **change), initiator=False)
        except TlsError as exc:
            server_errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            with pytest.raises(CertificateError, match=match):
                await tls_handshake(left, alice, initiator=True)
    assert len(server_errors) == 1  # the alert reached the server


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"no_extension": True}, "lacks the libp2p Public Key Extension"),
        ({"bad_signature": True}, "signature is not valid"),
        ({"not_before": NOW - 48 * HOUR, "not_after": NOW - HOUR}, "expired"),
        ({"not_before": NOW + HOUR, "not_after": NOW + 48 * HOUR}, "not valid before"),
    ],
)
async def test_bad_client_certificate_is_refused(
    alice: TlsIdentity, bob: TlsIdentity, change: dict[str, object], match: str
) -> None:
    """The client's handshake completes first (TLS 1.3); the server's
    refusal reaches it as an alert on its first read."""
    left, right = trio.testing.memory_stream_pair()
    clients: list[TlsStream] = []

    async def client() -> None:
        clients.append(await tls_handshake(left, crafted(alice, **change), initiator=True))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            with pytest.raises(CertificateError, match=match):
                await tls_handshake(right, bob, initiator=False)
    (stream,) = clients
    with pytest.raises(TlsError, match="alert"):
        await stream.receive_some()


async def test_garbage_after_the_handshake_is_refused(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob)
    await client.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + bytes(32))
    with pytest.raises(TlsError, match="authentication"):
        await server.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


async def test_garbage_instead_of_a_handshake_is_refused(bob: TlsIdentity) -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"/multistream/1.0.0\n")
    with trio.fail_after(10), pytest.raises(TlsError) as info:
        await tls_handshake(right, bob, initiator=False)
    assert isinstance(info.value, HandshakeError)
    assert await left.receive_some() == b"\x15\x03\x03\x00\x02\x02\x32"  # a plaintext decode_error alert


async def test_end_of_file_mid_handshake(alice: TlsIdentity) -> None:
    left, right = trio.testing.memory_stream_pair()
    await right.aclose()
    with trio.fail_after(10), pytest.raises(TlsError, match="broke|closed"):
        await tls_handshake(left, alice, initiator=True)


async def test_end_of_file_mid_record_is_an_error(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob)
    record = client._connection.encrypt(b"cut short")
    await client.transport_stream.send_all(record[:-3])
    await client.transport_stream.aclose()
    with pytest.raises(TlsError, match="middle of a TLS record"):
        await server.receive_some()


async def test_aclose_sends_close_notify(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob)
    await client.send_all(b"bye")
    await client.aclose()
    assert await server.receive_some() == b"bye"
    assert await server.receive_some() == b""
    assert server._connection.eof_received
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"more")


async def test_small_reads_of_a_large_buffer(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob)
    await client.send_all(b"abcdefghij")
    assert [await server.receive_some(3) for _ in range(4)] == [b"abc", b"def", b"ghi", b"j"]
    with pytest.raises(ValueError):
        await server.receive_some(0)


async def test_half_closeable_stream_conformance(alice: TlsIdentity, bob: TlsIdentity) -> None:
    async def make() -> tuple[TlsStream, TlsStream]:
        return await handshake_pair(alice, bob)

    async def make_lockstep() -> tuple[TlsStream, TlsStream]:
        return await handshake_pair(alice, bob, make_pair=trio.testing.lockstep_stream_pair)

    await trio.testing.check_half_closeable_stream(make, make_lockstep)


async def test_behind_lazy_multistream_select(alice: TlsIdentity, bob: TlsIdentity) -> None:
    """The upgrader's path: the dialer's ClientHello rides with its
    ``/tls/1.0.0`` proposal, the listener's answer with its ServerHello."""
    left, right = trio.testing.memory_stream_pair()
    servers: list[TlsStream] = []

    async def listener() -> None:
        negotiated = await accept_protocol(right, [PROTOCOL_ID], hold_answer=True)
        servers.append(await tls_handshake(negotiated.unwrap(), bob, initiator=False))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener)
            dialed = NegotiatedStream.lazy(left, PROTOCOL_ID)
            client = await tls_handshake(dialed, alice, initiator=True, expected_peer=bob.keypair.peer_id)
    (server,) = servers
    assert client.transport_stream is left  # the wrapper is gone once the handshake is done
    await client.send_all(b"over tls")
    assert await server.receive_some() == b"over tls"


# -- OpenSSL as the peer, through ssl.MemoryBIO (no sockets) ----------------------


def openssl_peer(identity: TlsIdentity, tmp_path: Path, *, server: bool) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """An OpenSSL endpoint with ``identity``'s certificate. It cannot check a
    libp2p certificate itself (no verify callback in ``ssl``), so it checks
    none: this exercises our side against a second TLS 1.3 stack."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(identity.certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        identity.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols([YAMUX, LIBP2P_ALPN])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(incoming, outgoing, server_side=server), incoming, outgoing


def openssl_step(peer: ssl.SSLObject) -> None:
    try:
        peer.do_handshake()
    except ssl.SSLWantReadError:
        pass


def openssl_read(peer: ssl.SSLObject) -> bytes:
    data = b""
    while True:
        try:
            chunk = peer.read(1 << 16)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            return data
        if not chunk:
            return data
        data += chunk


def test_openssl_client_to_our_server(alice: TlsIdentity, bob: TlsIdentity, tmp_path: Path) -> None:
    """OpenSSL sends a middlebox-compatible ClientHello (session id, dummy
    change_cipher_spec) and its certificate when asked."""
    peer, incoming, outgoing = openssl_peer(alice, tmp_path, server=False)
    server = TlsConnection(bob, initiator=False, muxers=(YAMUX,), now=NOW)
    for _ in range(4):
        openssl_step(peer)
        server.receive_data(outgoing.read())
        incoming.write(server.data_to_send())
    assert server.state is TlsState.OPEN and server.remote_peer == alice.keypair.peer_id
    assert peer.version() == "TLSv1.3" and peer.selected_alpn_protocol() == YAMUX == server.muxer
    peer.write(b"from openssl")
    assert server.receive_data(outgoing.read()) == b"from openssl"
    payload = os.urandom(100_000)
    incoming.write(server.encrypt(payload) + server.close())
    assert openssl_read(peer) == payload


def test_our_client_to_an_openssl_server(alice: TlsIdentity, bob: TlsIdentity, tmp_path: Path) -> None:
    """OpenSSL sends two NewSessionTickets after the handshake; we ignore
    them. It does not ask for our certificate (it could not check it)."""
    peer, incoming, outgoing = openssl_peer(bob, tmp_path, server=True)
    client = TlsConnection(alice, initiator=True, muxers=(YAMUX,), expected_peer=bob.keypair.peer_id, now=NOW)
    for _ in range(4):
        incoming.write(client.data_to_send())
        openssl_step(peer)
        client.receive_data(outgoing.read())
    assert client.state is TlsState.OPEN and client.remote_peer == bob.keypair.peer_id and client.muxer == YAMUX
    incoming.write(client.encrypt(b"from guts"))
    assert openssl_read(peer) == b"from guts"
    payload = os.urandom(100_000)
    peer.write(payload)
    assert client.receive_data(outgoing.read()) == payload
    try:
        peer.unwrap()  # close_notify
    except ssl.SSLWantReadError:
        pass
    assert client.receive_data(outgoing.read()) == b"" and client.eof_received


# -- robustness: mutated handshakes end in typed errors ----------------------------

IDENTITIES = (TlsIdentity.generate(KeyPair.generate()), TlsIdentity.generate(KeyPair.generate()))


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    flight=st.sampled_from([0, 1, 2]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), min_size=1, max_size=3),
)
def test_mutated_flights_end_in_typed_errors(flight: int, edits: list[tuple[int, bytes]]) -> None:
    """ClientHello, the server's flight, or the client's: bytes changed,
    dropped or inserted, the receiver fails with a HandshakeError or
    carries on; nothing else escapes."""
    client = TlsConnection(IDENTITIES[0], initiator=True, expected_peer=IDENTITIES[1].keypair.peer_id, now=NOW)
    server = TlsConnection(IDENTITIES[1], initiator=False, now=NOW)
    sender, receiver = client, server
    try:
        for step in range(3):
            data = bytearray(sender.data_to_send())
            if step == flight:
                for position, replacement in edits:
                    position %= len(data)
                    data[position : position + 1] = replacement
            receiver.receive_data(bytes(data))
            sender, receiver = receiver, sender
    except HandshakeError:
        assert TlsState.FAILED in (client.state, server.state)
        return
    if client.state is server.state is TlsState.OPEN:
        assert client.remote_peer == IDENTITIES[1].keypair.peer_id
        assert server.remote_peer == IDENTITIES[0].keypair.peer_id


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(["server", "client"]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), min_size=1, max_size=3),
)
def test_mutated_handshake_messages_end_in_typed_errors(side: str, edits: list[tuple[int, bytes]]) -> None:
    """The handshake messages themselves changed before they are
    encrypted (what a peer with the keys could send): certificates, ALPN,
    signatures, lengths. A HandshakeError, or a handshake that holds."""
    client = TlsConnection(IDENTITIES[0], initiator=True, now=NOW)
    server = TlsConnection(IDENTITIES[1], initiator=False, now=NOW)
    seal_all = RecordKeys.seal_all
    mutate = False

    def mutated(keys: RecordKeys, content_type: int, data: bytes | bytearray | memoryview) -> bytes:
        if mutate and content_type == 22:
            changed = bytearray(data)
            for position, replacement in edits:
                position %= len(changed)
                changed[position : position + 1] = replacement
            data = bytes(changed)
        return seal_all(keys, content_type, data)

    with mock.patch.object(RecordKeys, "seal_all", mutated):
        try:
            mutate = side == "server"
            server.receive_data(client.data_to_send())
            mutate = False
            flight = server.data_to_send()
            mutate = side == "client"
            client.receive_data(flight)
            mutate = False
            server.receive_data(client.data_to_send())
        except HandshakeError:
            return
    if client.state is server.state is TlsState.OPEN:
        assert client.remote_peer == IDENTITIES[1].keypair.peer_id
        assert server.remote_peer == IDENTITIES[0].keypair.peer_id


class _ForgedCertificate:
    """Stands in for our certificate in the context: its DER is what we say."""

    def __init__(self, der: bytes) -> None:
        self._der = der

    def public_bytes(self, encoding: serialization.Encoding) -> bytes:
        return self._der


def test_certificate_that_cryptography_cannot_load_is_refused(alice: TlsIdentity, bob: TlsIdentity) -> None:
    """An invalid X.509 version makes cryptography raise InvalidVersion, not
    ValueError, while aioquic parses the certificate."""
    der = bytearray(bob.certificate.public_bytes(serialization.Encoding.DER))
    der[der.index(bytes.fromhex("a003020102")) + 4] = 38
    client, server = pair(alice, bob)
    server._context.certificate = _ForgedCertificate(bytes(der))  # type: ignore[assignment]
    server.receive_data(client.data_to_send())
    with pytest.raises(CertificateError, match="does not parse"):
        client.receive_data(server.data_to_send())


def test_our_client_to_an_openssl_server_that_requires_a_certificate(alice: TlsIdentity, bob: TlsIdentity) -> None:
    """What js-libp2p's server does: OpenSSL asking for a certificate it
    will not check against a CA (``requestCert``, ``rejectUnauthorized:
    false``), choosing the muxer in its ALPN callback. ``ssl`` cannot do
    that (no verify callback); pyOpenSSL, which aioquic brings, can."""
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.use_certificate(bob.certificate)
    context.use_privatekey(bob.private_key)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
    context.set_alpn_select_callback(lambda _, offered: YAMUX.encode() if YAMUX.encode() in offered else b"libp2p")
    peer = SSL.Connection(context, None)
    peer.set_accept_state()
    client = TlsConnection(alice, initiator=True, muxers=(YAMUX,), expected_peer=bob.keypair.peer_id, now=NOW)

    def from_peer() -> bytes:
        try:
            return peer.bio_read(1 << 20)
        except SSL.WantReadError:
            return b""

    for _ in range(4):
        data = client.data_to_send()
        if data:
            peer.bio_write(data)
        try:
            peer.do_handshake()
        except SSL.WantReadError:
            pass
        client.receive_data(from_peer())
    assert client.state is TlsState.OPEN and client.muxer == YAMUX
    presented = peer.get_peer_certificate(as_cryptography=True)
    assert presented is not None
    assert verify_certificate_chain([presented.public_bytes(serialization.Encoding.DER)], now=NOW) == alice.keypair.peer_id
    peer.bio_write(client.encrypt(b"from guts"))
    assert peer.recv(100) == b"from guts"
    peer.send(b"from openssl")
    assert client.receive_data(from_peer()) == b"from openssl"


# -- writes that never wait, and the muxer on top ----------------------------------


async def test_try_send_all_writes_whole_records_without_waiting(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob, make_pair=lambda: memory_connection_pair(1024))
    with trio.testing.assert_no_checkpoints():
        assert client.try_send_all(b"ping") is True
        assert client.try_send_all(b"") is True
    assert await server.receive_some() == b"ping"


async def test_try_send_all_keeps_the_rest_for_flush(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob, make_pair=lambda: memory_connection_pair(256))
    first, second = os.urandom(2000), os.urandom(100)
    with trio.testing.assert_no_checkpoints():
        assert client.try_send_all(first) is False
        with pytest.raises(trio.BusyResourceError, match="flush"):
            client.try_send_all(b"not consumed")
    received = bytearray()

    async def reader() -> None:
        while len(received) < 2100:
            received.extend(await server.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await client.send_all(second)  # the rest of the first goes out before it
    assert received == first + second
    assert client.try_send_all(b"y" * 3000) is False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.flush)
        data = b""
        while len(data) < 3000:
            data += await server.receive_some()
    assert data == b"y" * 3000


async def test_try_send_all_without_try_send_below(alice: TlsIdentity, bob: TlsIdentity) -> None:
    client, server = await handshake_pair(alice, bob)  # trio's memory streams have no try_send
    assert client.try_send_all(b"later") is False
    await client.flush()
    assert await server.receive_some() == b"later"
    assert client.try_send_all(b"and then eof") is False
    await client.send_eof()  # what was held goes out before close_notify
    assert await server.receive_some() == b"and then eof"
    assert await server.receive_some() == b""


async def test_yamux_over_tls(alice: TlsIdentity, bob: TlsIdentity) -> None:
    """The muxer ALPN chose runs over the TLS stream, with its direct writes."""
    client, server = await handshake_pair(alice, bob, make_pair=lambda: memory_connection_pair(64 * 1024))
    assert client.muxer == YAMUX
    dialer = YamuxConnection(client, is_initiator=True, config=YamuxConfig())
    listener = YamuxConnection(server, is_initiator=False, config=YamuxConfig())
    payload = os.urandom(1 << 20)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(dialer.run)
            await nursery.start(listener.run)

            async def echo() -> None:
                stream = await listener.accept_stream()
                while data := await stream.receive_some():
                    await stream.send_all(data)
                await stream.send_eof()

            nursery.start_soon(echo)
            stream = await dialer.open_stream()
            received = bytearray()

            async def read() -> None:
                while data := await stream.receive_some():
                    received.extend(data)

            async with trio.open_nursery() as exchange:
                exchange.start_soon(read)  # until the echo's end-of-file
                await stream.send_all(payload)
                await stream.send_eof()
            await dialer.aclose()
            await listener.aclose()
    assert bytes(received) == payload
