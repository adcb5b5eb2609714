"""The connection manager: limits before work, and whom to drop.

A sans-IO core (no trio; time passed in) that the host consults before
each inbound handshake and each dial, tells when connections change
state, and asks periodically whom to close. :mod:`guts.connmgr.limits`
holds the settings and token buckets, :mod:`guts.connmgr.manager` the
decisions; :class:`ConnWatch` is the trio side that closes what the
manager names and logs refusals, bounded by :mod:`guts.ratelog`. The host (:mod:`guts.host`) wires them in.
"""

from guts.connmgr._watch import ConnWatch
from guts.connmgr.limits import ConnLimits, RateLimiter, Refusal, TokenBucket, subnet_of
from guts.connmgr.manager import ConnManager, ConnState, SlotInfo

__all__ = [
    "ConnLimits",
    "ConnManager",
    "ConnState",
    "ConnWatch",
    "RateLimiter",
    "Refusal",
    "SlotInfo",
    "TokenBucket",
    "subnet_of",
]
