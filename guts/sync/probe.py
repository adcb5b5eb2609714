"""Ask a peer which statement of one namespace it holds: one ``GetRefs``.

Theory of operation
-------------------
A node that signed a new statement (a push) wants to know which peers
hold it yet: what it holds is what the peer's ``Refs`` answer lists,
since a node serves a statement only after the statement and its
objects were applied together (:meth:`Repositories.receive
<guts.repo.state.Repositories.receive>` moves nothing before everything
verified). :func:`probe_seq` sends the same ``GetRefs`` a fetch begins
with, reads the answer under the same limits, and reads from it only the
one namespace asked about: :func:`held_seq`, pure.

:func:`held_seq` trusts nothing the peer says about the statement
without its signature: the statement of ``signer`` counts only when it
parses strictly, is signed by ``signer`` and is about ``rid``. The other
namespaces are skipped without a signature check (a cheap look for the
signer's line first), so a probe of a repository with many namespaces
costs one verification, not one per namespace. The identity chain is not
checked: a probe judges nothing and applies nothing, it only counts.

Bounds: the answer is read under ``SyncConfig.max_refs_message`` and the
idle timeout on every read; a caller that wants an answer sooner (a push
waiting a few seconds) wraps the call in its own deadline.
"""

from __future__ import annotations

from guts.errors import InvalidRefs
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.sigrefs import RefsLimits, SignedStatement
from guts.sync._codec import Refs, SyncConfig
from guts.sync.fetch import _get_refs

__all__ = ["held_seq", "probe_seq"]


def held_seq(refs: Refs, rid: Rid, signer: PeerId, limits: RefsLimits | None = None) -> int | None:
    """The seq of ``signer``'s statement in a ``Refs`` answer about ``rid``,
    or ``None`` when it lists none that verifies.

    A statement that names ``signer`` but does not parse, is badly signed
    or is about another repository counts as none: the peer does not hold
    a statement we would take.
    """
    marker = f"\nsigner {signer}\n".encode()
    best: int | None = None
    for data in refs.statements:
        if marker not in data:  # the statement's bytes travel verbatim inside SignedRefs
            continue
        try:
            signed = SignedStatement.decode(data, limits or RefsLimits())
        except InvalidRefs:
            continue
        statement = signed.statement
        if statement.signer == signer and statement.rid == rid and (best is None or statement.seq > best):
            best = statement.seq
    return best


async def probe_seq(
    host: Host,
    peer: PeerId | Multiaddr,
    rid: Rid | str,
    signer: PeerId,
    config: SyncConfig | None = None,
    limits: RefsLimits | None = None,
) -> int | None:
    """The seq of ``signer``'s statement in ``rid`` that ``peer`` holds
    (``None``: it holds the repository but no statement of that namespace).

    Raises:
        SyncRefused: the peer does not hold ``rid`` (``NOT_FOUND``) or
            refused the request.
        SyncStalled: the peer sent nothing for the idle timeout.
        SyncError: the peer broke the protocol.
        DialError: the peer could not be reached.
    """
    key = rid if isinstance(rid, Rid) else Rid.parse(rid)
    refs = await _get_refs(host, peer, str(key), config or SyncConfig())
    return held_seq(refs, key, signer, limits)
