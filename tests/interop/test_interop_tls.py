"""Guts's libp2p TLS 1.3 (``/tls/1.0.0``) over TCP against js-libp2p's
@libp2p/tls, both directions: the handshake, the muxer agreed on in ALPN,
ping, identify both ways and a 1 MiB echo; what js puts in its ClientHello
and its certificate; a dial to the wrong peer id ending cleanly; and heavier
traffic (16 MiB, 100 concurrent streams, KeyUpdates, a stream over our cap).

The js peer runs with ``--encrypter tls``: TLS is its only connection
encrypter. It reports each handshake as a ``connection:encrypted`` event whose
``handshake_muxer`` is the muxer agreed on in ALPN, or null when js went on to
multistream-select for it."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from functools import partial

import pytest
import trio
from aioquic._buffer import Buffer
from aioquic.tls import Group, pull_client_hello
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from guts.crypto import KeyPair
from guts.errors import DialError
from guts.host import Host, HostConfig, HostEvent, PeerConnected, PeerDisconnected, open_host
from guts.identify import AGENT_VERSION, IDENTIFY, IDENTIFY_PUSH, Identify
from guts.multiaddr import Multiaddr
from guts.mux.yamux import YamuxConnection
from guts.peer import PeerId
from guts.ping import PING, Ping, ping
from guts.security.tls import _connection as tls_connection
from guts.security.tls import EXTENSION_OID, LIBP2P_ALPN, TlsStream, tls_handshake, verify_certificate
from guts.transport import TcpTransport, WebSocketTransport
from guts.upgrade import NOISE, TLS
from guts.wire import NegotiatedStream, accept_protocol, select_protocol

from ..helpers import ECHO, echo_handler
from .conftest import SpawnJs
from .jspeer import JsCommandError, JsPeer
from .test_interop_host import guts_echo, wait_for

MIB = 1024 * 1024
YAMUX = "/yamux/1.0.0"
TCP = "/ip4/127.0.0.1/tcp/0"
TLS_ONLY = ("--encrypter", "tls")


@asynccontextmanager
async def guts_host(security: tuple[str, ...] = (TLS,), max_streams_per_protocol: int = 64) -> AsyncIterator[Host]:
    config = HostConfig(security=security, max_streams_per_protocol=max_streams_per_protocol)
    async with open_host(KeyPair.generate(), [TcpTransport()], config) as host:
        Identify(host)
        Ping(host)
        host.set_handler(ECHO, echo_handler)
        await host.listen(Multiaddr.parse(TCP))
        yield host


def guts_addr(host: Host) -> str:
    return str(host.listen_addrs[0].with_p2p(str(host.peer_id)))


async def spawn_tls_js(spawn_js: SpawnJs) -> JsPeer:
    return await spawn_js(listen=[TCP], args=TLS_ONLY)


async def ping_and_identify(host: Host, js: JsPeer) -> None:
    """Ping each way, and each side's identify of the other."""
    js_peer = PeerId.from_string(js.peer_id)
    conn = host.connection(js_peer)
    assert conn is not None
    async with aclosing(ping(host, js_peer, count=3)) as pings:
        assert len([r async for r in pings]) == 3
    assert len((await js.call("ping", peer=str(host.peer_id), count=3))["rtts_ms"]) == 3

    with trio.fail_after(10):
        await conn.identified.wait()
    assert {ECHO, IDENTIFY, PING} <= set(host.peerstore.protocols(js_peer))
    assert host.peerstore.info(js_peer).agent_version.startswith("js-libp2p/")
    info = await js.call("identify", peer=str(host.peer_id))
    assert info["agentVersion"] == AGENT_VERSION
    assert {ECHO, IDENTIFY, IDENTIFY_PUSH, PING} <= set(info["protocols"])
    assert info["peerStore"]["agentVersion"] == AGENT_VERSION


# -- the js peer's --encrypter option, between js peers ------------------------------


async def test_js_peer_encrypter_option(spawn_js: SpawnJs) -> None:
    """``--encrypter tls`` makes TLS js's only encrypter; by default js speaks
    Noise alone, as before."""
    tls_a, tls_b = await spawn_tls_js(spawn_js), await spawn_tls_js(spawn_js)
    reply = await tls_a.call("dial", addr=tls_b.addr("tcp"))
    assert reply["encryption"] == TLS and reply["multiplexer"] == YAMUX
    for js, other, direction in ((tls_a, tls_b, "outbound"), (tls_b, tls_a, "inbound")):
        encrypted = await js.next_event("connection:encrypted", peer_id=other.peer_id)
        assert encrypted["encryption"] == TLS and encrypted["direction"] == direction
        assert encrypted["handshake_muxer"] == YAMUX

    noise_a, noise_b = await spawn_js(listen=[TCP]), await spawn_js(listen=[TCP])
    reply = await noise_a.call("dial", addr=noise_b.addr("tcp"))
    assert reply["encryption"] == NOISE and reply["multiplexer"] == YAMUX
    encrypted = await noise_a.next_event("connection:encrypted", peer_id=noise_b.peer_id)
    assert encrypted["encryption"] == NOISE and encrypted["handshake_muxer"] == YAMUX
    with pytest.raises(JsCommandError, match="could not negotiate /noise"):
        await noise_a.call("dial", addr=tls_a.addr("tcp"), timeout=10)


# -- (a) Guts, TLS only, dials a js TLS-only peer -----------------------------------


async def test_guts_dials_js_over_tls(spawn_js: SpawnJs) -> None:
    js = await spawn_tls_js(spawn_js)
    async with guts_host(security=(TLS,)) as host:
        conn = await host.connect(Multiaddr.parse(js.addr("tcp")))
        js_peer = PeerId.from_string(js.peer_id)
        assert conn.peer_id == js_peer
        assert isinstance(conn.secure, TlsStream)
        # js, the TLS server, chose our first ALPN token: the muxer
        assert conn.secure.alpn == YAMUX and conn.secure.muxer == YAMUX

        opened = await js.next_event("connection:open", peer_id=str(host.peer_id))
        assert opened["direction"] == "inbound"
        assert opened["encryption"] == TLS and opened["multiplexer"] == YAMUX
        encrypted = await js.next_event("connection:encrypted", peer_id=str(host.peer_id))
        assert encrypted["encryption"] == TLS and encrypted["direction"] == "inbound"
        assert encrypted["handshake_muxer"] == YAMUX  # no multistream-select for the muxer

        await ping_and_identify(host, js)

        # 1 MiB each way: our stream to js's echo, js's stream to ours
        with trio.fail_after(60):
            await guts_echo(host, js_peer, MIB)
        result = await js.call("echo", peer=str(host.peer_id), bytes=MIB, streams=1, timeout=60)
        assert result["bytes"] == MIB
        # still the one TLS connection
        assert host.connection(js_peer) is conn
        assert [c["encryption"] for p in (await js.call("peers"))["peers"] for c in p["connections"]] == [TLS]


# -- (b) the js TLS-only peer dials a Guts host with the default security -----------


async def test_js_dials_guts_over_tls(spawn_js: SpawnJs) -> None:
    js = await spawn_tls_js(spawn_js)
    async with guts_host(security=HostConfig().security) as host:
        assert host.config.security == (NOISE, TLS)
        reply = await js.call("dial", addr=guts_addr(host))
        assert reply["peer_id"] == str(host.peer_id)
        assert reply["direction"] == "outbound"
        assert reply["encryption"] == TLS and reply["multiplexer"] == YAMUX
        encrypted = await js.next_event("connection:encrypted", peer_id=str(host.peer_id))
        assert encrypted["direction"] == "outbound" and encrypted["handshake_muxer"] == YAMUX

        js_peer = PeerId.from_string(js.peer_id)
        await wait_for(lambda: host.connection(js_peer) is not None)
        conn = host.connection(js_peer)
        assert conn is not None
        assert isinstance(conn.secure, TlsStream)
        assert conn.secure.remote_peer == js_peer
        # we, the TLS server, picked the muxer js listed first in its ALPN
        assert conn.secure.alpn == YAMUX and conn.secure.muxer == YAMUX

        await ping_and_identify(host, js)
        result = await js.call("echo", peer=str(host.peer_id), bytes=MIB, streams=1, timeout=60)
        assert result["bytes"] == MIB
        with trio.fail_after(60):
            await guts_echo(host, js_peer, MIB)


async def test_tls_over_websocket_both_ways(spawn_js: SpawnJs) -> None:
    """The same over WebSocket: TLS inside the WebSocket, 1 MiB echoed."""
    js = await spawn_js(args=TLS_ONLY)  # tcp and ws
    js_peer = PeerId.from_string(js.peer_id)
    config = HostConfig(security=(TLS,))
    async with open_host(KeyPair.generate(), [TcpTransport(), WebSocketTransport()], config) as host:
        Identify(host)
        Ping(host)
        host.set_handler(ECHO, echo_handler)
        await host.listen(Multiaddr.parse("/ip4/127.0.0.1/tcp/0/ws"))
        conn = await host.connect(Multiaddr.parse(js.addr("ws")))
        assert isinstance(conn.secure, TlsStream) and conn.secure.muxer == YAMUX
        with trio.fail_after(60):
            await guts_echo(host, js_peer, MIB)
        await host.disconnect(js_peer)
        await js.next_event("connection:close", peer_id=str(host.peer_id))

        reply = await js.call("dial", addr=guts_addr(host))
        assert "ws" in Multiaddr.parse(reply["remote_addr"]).protocols()
        assert reply["encryption"] == TLS and reply["multiplexer"] == YAMUX
        result = await js.call("echo", peer=str(host.peer_id), bytes=MIB, streams=1, timeout=60)
        assert result["bytes"] == MIB


# -- (c) what js puts on the wire ---------------------------------------------------


async def test_js_client_hello_offers_muxers_then_libp2p(spawn_js: SpawnJs) -> None:
    """js's ClientHello, read by a bare listener that answers multistream-select
    and nothing more: ALPN lists js's muxers, then "libp2p"; no SNI; TLS 1.3
    only; one X25519 key share."""
    js = await spawn_tls_js(spawn_js)
    hello_record = trio.Event()
    captured: list[bytes] = []

    async def capture(stream: trio.SocketStream) -> None:
        negotiated = await accept_protocol(stream, [TLS])
        assert negotiated.protocol == TLS
        data = b""
        while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
            chunk = await negotiated.receive_some(64 * 1024)
            if not chunk:
                break
            data += chunk
        captured.append(data)
        hello_record.set()
        # a fatal handshake_failure alert: js's dial fails at once (on a
        # bare close js notices nothing and waits for its handshake timeout)
        await stream.send_all(bytes((21, 3, 3, 0, 2, 2, 40)))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, capture, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        fake = KeyPair.generate().peer_id
        with trio.fail_after(3):
            with pytest.raises(JsCommandError, match="alert handshake failure"):
                await js.call("dial", addr=f"/ip4/127.0.0.1/tcp/{port}/p2p/{fake}", timeout=10)
        with trio.fail_after(10):
            await hello_record.wait()
        nursery.cancel_scope.cancel()

    record = captured[0]
    assert record[0] == 22  # a handshake record, in the clear
    hello = pull_client_hello(Buffer(data=record[5 : 5 + int.from_bytes(record[3:5], "big")]))
    assert hello.alpn_protocols == [YAMUX, LIBP2P_ALPN]
    assert hello.server_name is None
    assert hello.supported_versions == [0x0304]
    # one key share, X25519 (a group we take as a server), and no session
    # resumption attempted on a first connection
    assert hello.key_share is not None and [group for group, _ in hello.key_share] == [Group.X25519]
    assert hello.pre_shared_key is None and not hello.early_data


async def test_js_certificate(spawn_js: SpawnJs) -> None:
    """The certificate js presents: a fresh P-256 key signed with
    ecdsa-with-SHA256, the libp2p extension first and critical, valid from an
    hour ago for about a hundred years; a new one for every handshake."""
    js = await spawn_tls_js(spawn_js)
    js_peer = PeerId.from_string(js.peer_id)
    certificates = []
    async with guts_host() as host:
        for _ in range(2):
            conn = await host.connect(Multiaddr.parse(js.addr("tcp")))
            assert isinstance(conn.secure, TlsStream)
            # the session keeps the peer's certificate where aioquic put it
            certificate: x509.Certificate = conn.secure._connection._context._peer_certificate
            certificates.append(certificate)
            # a TLS 1.3 client is done a flight before the server: let js
            # finish its side before we hang up
            await js.next_event("connection:open", peer_id=str(host.peer_id))
            await host.disconnect(js_peer)
            await js.next_event("connection:close", peer_id=str(host.peer_id))

    now = datetime.datetime.now(datetime.UTC)
    for certificate in certificates:
        key = certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        assert certificate.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert certificate.version == x509.Version.v3
        extensions = list(certificate.extensions)
        assert [e.oid for e in extensions] == [EXTENSION_OID]
        assert extensions[0].critical
        assert certificate.issuer == certificate.subject
        assert verify_certificate(certificate.public_bytes(serialization.Encoding.DER), now=now).peer_id == js_peer
        not_before = certificate.not_valid_before_utc
        assert datetime.timedelta(minutes=50) < now - not_before < datetime.timedelta(minutes=70)
        years = (certificate.not_valid_after_utc - not_before).days / 365.25
        assert 99 < years < 101
    assert certificates[0].public_key() != certificates[1].public_key()


async def test_js_falls_back_to_multistream_select_for_the_muxer(spawn_js: SpawnJs) -> None:
    """A client that offers no muxer in ALPN, only "libp2p" (as go-libp2p
    does): js chooses "libp2p", and the muxer is then negotiated with
    multistream-select inside TLS; a ping runs over the yamux stream."""
    js = await spawn_tls_js(spawn_js)
    js_peer = PeerId.from_string(js.peer_id)
    keypair = KeyPair.generate()
    _, _, ip, _, port, *_ = js.addr("tcp").split("/")  # /ip4/IP/tcp/PORT/p2p/ID
    raw = await trio.open_tcp_stream(ip, int(port))
    async with raw, trio.open_nursery() as nursery:
        with trio.fail_after(10):
            secure = await tls_handshake(
                NegotiatedStream.lazy(raw, TLS), keypair, initiator=True, expected_peer=js_peer, muxers=()
            )
            assert secure.alpn == LIBP2P_ALPN and secure.muxer is None and secure.remote_muxers == ()
            negotiated = await select_protocol(secure, [YAMUX])
            assert negotiated.protocol == YAMUX
            yamux = YamuxConnection(negotiated.unwrap(), is_initiator=True)
            await nursery.start(yamux.run)
            stream = await select_protocol(await yamux.open_stream(), [PING])
            payload = bytes(range(32))
            await stream.send_all(payload)
            echoed = b""
            while len(echoed) < 32:
                echoed += await stream.receive_some(32 - len(echoed))
            assert echoed == payload
        encrypted = await js.next_event("connection:encrypted", peer_id=str(keypair.peer_id))
        assert encrypted["handshake_muxer"] is None
        opened = await js.next_event("connection:open", peer_id=str(keypair.peer_id))
        assert opened["encryption"] == TLS and opened["multiplexer"] == YAMUX
        await yamux.aclose()
        nursery.cancel_scope.cancel()


# -- (d) failures end cleanly ---------------------------------------------------------


async def test_guts_dial_with_wrong_peer_id_fails_cleanly(spawn_js: SpawnJs) -> None:
    js = await spawn_tls_js(spawn_js)
    js_peer = PeerId.from_string(js.peer_id)
    wrong = KeyPair.generate().peer_id
    tcp = Multiaddr.parse(js.addr("tcp").rsplit("/p2p/", 1)[0])
    async with guts_host() as host:
        with trio.fail_after(15):
            with pytest.raises(DialError, match=f"dialled {wrong}, but the certificate authenticates {js_peer}"):
                await host.connect(tcp.with_p2p(str(wrong)))
        assert host.connection(js_peer) is None and host.connection(wrong) is None
        assert not [e for e in js.events if e.get("event") == "connection:open"]

        # js is none the worse: the right peer id connects at once
        conn = await host.connect(tcp.with_p2p(str(js_peer)))
        assert conn.peer_id == js_peer
        async with aclosing(ping(host, js_peer, count=1)) as pings:
            assert len([r async for r in pings]) == 1


async def test_js_dial_with_wrong_peer_id_leaves_no_connection(spawn_js: SpawnJs) -> None:
    """js checks our certificate once its side of the handshake is done (in
    TLS 1.3 the client finishes first), then drops the connection: whatever
    our side had by then must go."""
    js = await spawn_tls_js(spawn_js)
    js_peer = PeerId.from_string(js.peer_id)
    async with guts_host() as host:
        events: list[HostEvent] = []
        host.add_event_handler(events.append)
        wrong = KeyPair.generate().peer_id
        addr = str(host.listen_addrs[0].with_p2p(str(wrong)))
        with pytest.raises(JsCommandError) as failed:
            await js.call("dial", addr=addr, timeout=15)
        assert "Unexpected Peer" in failed.value.error
        # our side saw the handshake complete, and then the connection end
        await wait_for(lambda: any(isinstance(e, PeerDisconnected) for e in events), timeout=10)
        seen = [e for e in events if isinstance(e, (PeerConnected, PeerDisconnected))]
        assert [type(e) for e in seen] == [PeerConnected, PeerDisconnected]
        assert all(e.peer_id == js_peer for e in seen)
        assert host.connection(js_peer) is None
        assert not [e for e in js.events if e.get("event") == "connection:open"]

        # and the right one works
        reply = await js.call("dial", addr=guts_addr(host))
        assert reply["encryption"] == TLS


async def test_guts_tls_only_to_js_noise_only_fails_cleanly(spawn_js: SpawnJs) -> None:
    """No common security protocol: multistream-select says so, a DialError."""
    js = await spawn_js(listen=[TCP])
    async with guts_host(security=(TLS,)) as host:
        with trio.fail_after(15):
            with pytest.raises(DialError, match=r"NegotiationError: remote supports none of \['/tls/1.0.0'\]"):
                await host.connect(Multiaddr.parse(js.addr("tcp")))
        assert host.connection(PeerId.from_string(js.peer_id)) is None


# -- heavier traffic ------------------------------------------------------------------


async def test_key_updates_both_ways(spawn_js: SpawnJs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our side moves its keys on every 16 records (routinely every 2**23),
    asking js to do the same each time: js's OpenSSL follows both our
    KeyUpdates and its own answers, over 2 MiB echoed each way."""
    monkeypatch.setattr(tls_connection, "KEY_UPDATE_INTERVAL", 16)
    js = await spawn_tls_js(spawn_js)
    async with guts_host() as host:
        conn = await host.connect(Multiaddr.parse(js.addr("tcp")))
        assert isinstance(conn.secure, TlsStream)
        session = conn.secure._connection
        receive_keys = session._receive_keys
        with trio.fail_after(60):
            await guts_echo(host, conn.peer_id, 2 * MIB)
        result = await js.call("echo", peer=str(host.peer_id), bytes=2 * MIB, streams=1, timeout=60)
        assert result["bytes"] == 2 * MIB
        # js answered our requests with KeyUpdates of its own
        assert session._receive_keys is not receive_keys
        async with aclosing(ping(host, conn.peer_id, count=1)) as pings:
            assert len([r async for r in pings]) == 1
        assert host.connection(conn.peer_id) is conn


@pytest.mark.parametrize("guts_dials", [True, False], ids=["guts-dials", "js-dials"])
async def test_many_streams_over_tls(spawn_js: SpawnJs, guts_dials: bool) -> None:
    """16 MiB on one stream, then 100 concurrent 256 KiB streams, each way
    (our host's cap of streams per protocol raised past 100)."""
    js = await spawn_tls_js(spawn_js)
    async with guts_host(max_streams_per_protocol=128) as host:
        js_peer = PeerId.from_string(js.peer_id)
        if guts_dials:
            await host.connect(Multiaddr.parse(js.addr("tcp")))
        else:
            await js.call("dial", addr=guts_addr(host))
            await wait_for(lambda: host.connection(js_peer) is not None)
        conn = host.connection(js_peer)
        assert conn is not None and isinstance(conn.secure, TlsStream)
        with trio.fail_after(60):
            await guts_echo(host, js_peer, 16 * MIB)
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(guts_echo, host, js_peer, 256 * 1024, i)
        result = await js.call("echo", peer=str(host.peer_id), bytes=16 * MIB, streams=1, timeout=60)
        assert result["bytes"] == 16 * MIB
        result = await js.call("echo", peer=str(host.peer_id), bytes=256 * 1024, streams=100, timeout=60)
        assert result["streams"] == 100
        assert host.connection(js_peer) is conn


async def test_streams_over_the_cap_are_reset_over_tls(spawn_js: SpawnJs) -> None:
    """Past our 64 inbound echo streams the 65th is reset, and js hears of it
    at once over TLS as over Noise (the connection stays up)."""
    js = await spawn_tls_js(spawn_js)
    async with guts_host(max_streams_per_protocol=64) as host:
        conn = await host.connect(Multiaddr.parse(js.addr("tcp")))
        with trio.fail_after(20):
            with pytest.raises(JsCommandError, match="is reset"):
                await js.call("echo", peer=str(host.peer_id), bytes=256 * 1024, streams=65, timeout=15)
        # js aborted the other 64 when one failed: our handlers end
        await wait_for(lambda: ECHO not in conn.serving)
        result = await js.call("echo", peer=str(host.peer_id), bytes=256 * 1024, streams=64, timeout=30)
        assert result["streams"] == 64
        assert host.connection(conn.peer_id) is conn
