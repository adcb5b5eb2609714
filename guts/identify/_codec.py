"""Identify messages <-> :class:`IdentifyInfo`. The only module here that
touches the generated protobuf classes."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError as _PbDecodeError

from guts.errors import DecodeError
from guts.multiaddr import Multiaddr
from guts.pb import identify_pb2

__all__ = ["IdentifyInfo", "encode_identify", "decode_identify", "MAX_ADDRS", "MAX_PROTOCOLS"]

MAX_ADDRS = 64
MAX_PROTOCOLS = 256
MAX_PROTOCOL_LEN = 256


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    """One identify message. ``None`` marks a field the message left out
    (a push carries only what changed)."""

    protocol_version: str | None = None
    agent_version: str | None = None
    public_key: bytes | None = None
    listen_addrs: tuple[Multiaddr, ...] | None = None
    observed_addr: Multiaddr | None = None
    protocols: tuple[str, ...] | None = None


def encode_identify(info: IdentifyInfo) -> bytes:
    msg = identify_pb2.Identify()
    if info.protocol_version is not None:
        msg.protocolVersion = info.protocol_version
    if info.agent_version is not None:
        msg.agentVersion = info.agent_version
    if info.public_key is not None:
        msg.publicKey = info.public_key
    if info.listen_addrs is not None:
        msg.listenAddrs.extend(a.to_bytes() for a in info.listen_addrs)
    if info.observed_addr is not None:
        msg.observedAddr = info.observed_addr.to_bytes()
    if info.protocols is not None:
        msg.protocols.extend(info.protocols)
    return msg.SerializeToString()


def decode_identify(data: bytes) -> IdentifyInfo:
    """Decode an identify message; addresses that do not parse are skipped
    (a newer peer may announce transports we do not know).

    Raises:
        DecodeError: malformed protobuf or too many entries.
    """
    msg = identify_pb2.Identify()
    try:
        msg.ParseFromString(data)
    except _PbDecodeError as exc:
        raise DecodeError(f"malformed identify message: {exc}") from None
    if len(msg.listenAddrs) > MAX_ADDRS:
        raise DecodeError(f"identify lists {len(msg.listenAddrs)} addresses (limit {MAX_ADDRS})")
    if len(msg.protocols) > MAX_PROTOCOLS:
        raise DecodeError(f"identify lists {len(msg.protocols)} protocols (limit {MAX_PROTOCOLS})")
    if any(not isinstance(p, str) or len(p) > MAX_PROTOCOL_LEN for p in msg.protocols):
        raise DecodeError("identify lists an over-long or non-UTF-8 protocol id")
    for name in ("protocolVersion", "agentVersion"):
        if msg.HasField(name) and not isinstance(getattr(msg, name), str):
            raise DecodeError(f"identify {name} is not UTF-8")
    addrs: list[Multiaddr] = []
    for raw in msg.listenAddrs:
        try:
            addrs.append(Multiaddr.from_bytes(raw))
        except DecodeError:
            continue
    observed = None
    if msg.HasField("observedAddr"):
        try:
            observed = Multiaddr.from_bytes(msg.observedAddr)
        except DecodeError:
            observed = None
    return IdentifyInfo(
        protocol_version=msg.protocolVersion if msg.HasField("protocolVersion") else None,
        agent_version=msg.agentVersion if msg.HasField("agentVersion") else None,
        public_key=msg.publicKey if msg.HasField("publicKey") else None,
        listen_addrs=tuple(addrs) if msg.listenAddrs else None,
        observed_addr=observed,
        protocols=tuple(msg.protocols) if msg.protocols else None,
    )
