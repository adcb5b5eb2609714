"""identify and identify push (libp2p/specs identify/README.md)."""

from guts.identify._codec import IdentifyInfo, decode_identify, encode_identify
from guts.identify._service import AGENT_VERSION, IDENTIFY, IDENTIFY_PUSH, PROTOCOL_VERSION, Identify

__all__ = [
    "AGENT_VERSION",
    "IDENTIFY",
    "IDENTIFY_PUSH",
    "PROTOCOL_VERSION",
    "Identify",
    "IdentifyInfo",
    "decode_identify",
    "encode_identify",
]
