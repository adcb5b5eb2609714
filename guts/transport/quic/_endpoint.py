"""One UDP socket and the QUIC connections it carries.

Theory of operation
-------------------
An :class:`Endpoint` owns one non-blocking UDP socket. Its receive loop
(:meth:`Endpoint.receive_loop`) waits until the socket is readable, then
drains up to :data:`RECV_BATCH` datagrams without going back to the
scheduler, and routes each by destination connection id
(:func:`aioquic.quic.packet.pull_quic_header` parses the header only):

* a known id: the datagram goes to its connection;
* an unknown id on a listening endpoint, in a QUIC v1 Initial of at least
  :data:`SMALLEST_INITIAL` bytes (RFC 9000 §14.1), with room under
  :attr:`Endpoint.max_connections` and :attr:`Endpoint.max_handshakes`:
  a new server-side connection, made by :attr:`Endpoint.on_new`, and
  forgotten at once if the Initial does not decrypt (a well-formed header
  on random bytes costs one decryption, no state);
* anything else is dropped and counted in :attr:`Endpoint.dropped`, with
  one rate-limited log line per source address and reason.

Connection ids come and go with the connection's
``ConnectionIdIssued`` / ``Retired`` events (:meth:`Endpoint.route`);
each connection removes all of its ids when it ends. Sending waits for
the socket to be writable; a send error (an ICMP unreachable reported on
a later call) is ignored, QUIC retransmits or times out.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import trio
from aioquic._buffer import Buffer
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

from guts.ratelog import RateLimitedLog
from guts.transport.quic._connection import QUIC_V1

__all__ = ["Endpoint"]

log = logging.getLogger("guts.transport.quic")

#: The largest datagram read (UDP's limit).
MAX_DATAGRAM = 65535
#: A client's Initial is padded to at least this (RFC 9000 §14.1).
SMALLEST_INITIAL = 1200
#: Datagrams read per wakeup of the receive loop.
RECV_BATCH = 64
#: Socket buffers asked for: a window's worth of datagrams overflows the
#: default (~208 KiB) and reads as congestion. The kernel caps it.
SOCKET_BUFFER = 4 << 20
#: QuicConfiguration.connection_id_length, aioquic's default.
CID_LENGTH = 8


class Endpoint:
    """A UDP socket, routing datagrams to connections by connection id.

    Args:
        sock: a bound, non-blocking UDP socket; the endpoint owns it.
        on_new: for a listening endpoint, makes the connection for a new
            Initial ``(data, addr, destination id, original destination
            id, Retry source id)`` (the last two differ from the first and
            from ``None`` when the client came back from a Retry); ``None``
            for a dialling endpoint.
        on_handshake: called with that connection once its Initial decrypted.
        max_connections: connections at most (handshaking or not).
        max_handshakes: connections still handshaking at most.
        ratelog: where dropped datagrams are told of.
        admit: asked with the remote IP before a new connection is made
            (a block list); ``False`` drops the Initial, no state kept.
        retry_above: handshakes in progress past which a new client must
            first prove its address: its Initial without a token gets a
            Retry carrying one (RFC 9000 §8.1), and no state is kept until
            it comes back with it, so Initials from spoofed addresses cost
            a packet each, never a handshake slot. ``None``: never.

    Attributes:
        dropped: datagrams dropped so far (unparsable, unknown id, over a cap).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        on_new: Callable[[bytes, Any, bytes, bytes, bytes | None], Any] | None = None,
        on_handshake: Callable[[Any], None] | None = None,
        max_connections: int = 1,
        max_handshakes: int = 1,
        ratelog: RateLimitedLog | None = None,
        admit: Callable[[str], bool] | None = None,
        retry_above: int | None = None,
    ) -> None:
        self.sock = sock
        self.admit = admit
        self.retry_above = retry_above
        self._retry = QuicRetryTokenHandler()
        #: Retry packets sent (new clients asked to prove their address).
        self.retries = 0
        self.on_new = on_new
        self.on_handshake = on_handshake
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.dropped = 0
        self.connections = 0
        self.handshakes = 0
        self._routes: dict[bytes, Any] = {}
        self._ratelog = ratelog if ratelog is not None else RateLimitedLog(log)
        self._closed = False

    @classmethod
    def bind(cls, host: str, port: int, **kwargs: Any) -> Endpoint:
        """A non-blocking UDP socket bound to ``(host, port)``."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock, **kwargs)

    @property
    def local_address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        return str(name[0]), int(name[1])

    def route(self, cid: bytes, conn: Any, added: bool) -> None:
        """Route ``cid`` to ``conn`` (or stop routing it)."""
        if added:
            self._routes[cid] = conn
        elif self._routes.get(cid) is conn:
            del self._routes[cid]

    def forget(self, conn: Any) -> None:
        """Remove every route to ``conn``."""
        for cid in [cid for cid, c in self._routes.items() if c is conn]:
            del self._routes[cid]

    async def send(self, data: bytes, addr: Any) -> None:
        while not self._closed:
            try:
                self.sock.sendto(data, addr)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
            except OSError:
                return

    def send_now(self, data: bytes, addr: Any) -> None:
        """Send without waiting; drop the datagram if the socket is full."""
        if not self._closed:
            try:
                self.sock.sendto(data, addr)
            except OSError:
                pass

    async def receive_loop(self) -> None:
        """Read and route datagrams until cancelled or closed."""
        sock = self.sock
        while not self._closed:
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                return
            for _ in range(RECV_BATCH):
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                except OSError:  # an ICMP error reported on this call
                    continue
                self.datagram_received(data, addr)

    def _send(self, datagram: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(datagram, addr)
        except OSError:  # a full buffer, an unreachable address: the peer tries again
            pass

    def _drop(self, addr: Any, reason: str) -> None:
        self.dropped += 1
        self._ratelog.debug(addr[0], reason, "dropped a QUIC datagram from %s: %s", addr[0], reason)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Hand one datagram to its connection, or start a server-side one."""
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            self._drop(addr, "unparsable")
            return
        conn = self._routes.get(header.destination_cid)
        if conn is not None:
            conn.datagram_received(data, addr)
            return
        if self.on_new is None:
            self._drop(addr, "unknown connection id")
        elif (
            header.version not in (None, QUIC_V1)
            and header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and len(data) >= SMALLEST_INITIAL  # never answer more than was sent
        ):
            self._send(encode_quic_version_negotiation(
                source_cid=header.destination_cid, destination_cid=header.source_cid, supported_versions=[QUIC_V1],
            ), addr)  # fmt: skip
        elif header.packet_type != QuicPacketType.INITIAL or header.version != QUIC_V1:
            self._drop(addr, "unknown connection id")
        elif len(data) < SMALLEST_INITIAL:
            self._drop(addr, "Initial too small")
        elif self.connections >= self.max_connections:
            self._drop(addr, "too many connections")
        elif self.handshakes >= self.max_handshakes:
            self._drop(addr, "too many handshakes")
        elif self.admit is not None and not self.admit(addr[0]):
            self._drop(addr, "refused")
        else:
            original, retried = header.destination_cid, None
            if header.token:  # back from a Retry, the token proves the address
                try:
                    original = self._retry.validate_token(
                        address=addr, destination_cid=header.destination_cid, token=header.token,
                        now=trio.current_time(),
                    )  # fmt: skip
                    retried = header.destination_cid
                except ValueError:  # not one of ours: as if it had none (RFC 9000 §8.1.3)
                    pass
            if retried is None and self.retry_above is not None and self.handshakes >= self.retry_above:
                source = os.urandom(CID_LENGTH)
                token = self._retry.create_token(
                    address=addr, original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=source, now=trio.current_time(),
                )  # fmt: skip
                self._send(encode_quic_retry(
                    version=QUIC_V1, source_cid=source, destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid, retry_token=token,
                ), addr)  # fmt: skip
                self.retries += 1
                return
            conn = self.on_new(data, addr, header.destination_cid, original, retried)
            conn.datagram_received(data, addr)
            if not conn.packet_received:  # it did not decrypt: hold no state for it
                conn.discard()
                self._drop(addr, "Initial does not decrypt")
            elif self.on_handshake is not None:
                self.on_handshake(conn)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()
