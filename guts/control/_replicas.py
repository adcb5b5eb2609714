"""``POST /v1/repo/replicas``: how many peers hold a statement this node
signed, waiting a bounded time for them (what ``git push`` reports).

The body: ``rid``; ``signer`` (a peer id, this node's by default);
``seq`` (this node's latest statement of that namespace by default);
``want`` (peers wanted, 0 to :data:`~guts.replicate.replicas.MAX_PEERS`;
absent or ``null``: every follower connected now); ``timeout`` (seconds,
at most :data:`MAX_TIMEOUT`, :data:`DEFAULT_TIMEOUT` by default). The
answer: ``have`` (peers that hold it), ``asked``, ``peers_with_it``
(their ids), ``want`` (the count waited for), ``reached``, ``elapsed``
(seconds), and the ``rid``, ``signer`` and ``seq`` asked about.
:func:`~guts.replicate.replicas.find_replicas` says which peers are
asked and how often.

A repository this node does not hold, or a namespace it holds no
statement of, answers 404 ``not_found``; a node without a replicator
(one that persists nothing), 409 ``unavailable``.
"""

from __future__ import annotations

from typing import Any

from guts.control._api import ApiError, ControlApi, require
from guts.control._http import HttpRequest, HttpResponse
from guts.crypto import KeyPair
from guts.dht import Dht
from guts.errors import DecodeError, InputError
from guts.host import Host
from guts.peer import PeerId
from guts.repo.rid import Rid
from guts.repo.state import Repositories
from guts.repo.storage import RepositoryNotFound
from guts.replicate.replicas import MAX_PEERS, find_replicas
from guts.replicate.replicator import Replicator
from guts.sync import SyncConfig

__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "add_replicas_routes"]

#: Seconds a request waits when it names no ``timeout``.
DEFAULT_TIMEOUT = 2.0
#: The longest wait a request may ask for.
MAX_TIMEOUT = 3600.0


def _number(body: dict[str, Any], name: str, low: float, high: float, kind: type = float) -> Any:
    """``body[name]``, absent or ``None`` as ``None``, else a number of
    ``kind`` (an int is a float too) from ``low`` to ``high``."""
    value = body.get(name)
    if value is None:
        return None
    kinds = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "a number" if kind is float else "a whole number"
        raise InputError(f"{name!r} must be {what} from {low:g} to {high:g}")
    return kind(value)


def add_replicas_routes(
    api: ControlApi,
    repos: Repositories | None,
    keypair: KeyPair,
    host: Host | None,
    dht: Dht | None,
    replicator: Replicator | None,
    sync_config: SyncConfig | None = None,
) -> None:
    """Serve ``POST /v1/repo/replicas`` (module docstring): the followers
    are those of ``replicator``'s gossip, the seeds ``dht``'s, each peer
    asked through ``host`` under ``sync_config``."""

    async def replicas(request: HttpRequest) -> HttpResponse:
        if repos is None or host is None or replicator is None:
            raise ApiError(409, "unavailable", "this node follows no repositories (it persists nothing)")
        body = request.json()
        text = require(body, "rid")
        try:
            rid = Rid.parse(text[len("guts://"):].rstrip("/") if text.startswith("guts://") else text)
            named = body.get("signer")
            if named is not None and not isinstance(named, str):
                raise InputError("'signer' must be a peer id")
            signer = PeerId.from_string(named) if named else keypair.peer_id
        except (DecodeError, ValueError) as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        seq: int | None = _number(body, "seq", 1, 2**63 - 1, int)
        want: int | None = _number(body, "want", 0, MAX_PEERS, int)
        timeout: float | None = _number(body, "timeout", 0, MAX_TIMEOUT)
        try:
            state = repos.show(str(rid))
        except RepositoryNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        if seq is None:
            ns = state.namespaces.get(signer)
            if ns is None:
                raise ApiError(404, "not_found", f"this node holds no statement of {signer} in {rid}")
            seq = ns.statement.seq
        report = await find_replicas(
            host, replicator.gossip, dht, state.rid, signer, seq, want=want,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            sync_config=sync_config, limits=repos.config.refs,
        )  # fmt: skip
        return HttpResponse(
            200,
            {
                "rid": str(state.rid),
                "signer": str(signer),
                "seq": seq,
                "want": report.want,
                "have": len(report.have),
                "reached": report.reached,
                "asked": len(report.asked),
                "peers_with_it": [str(peer) for peer in report.have],
                "elapsed": round(report.elapsed, 3),
            },
        )

    api.route("POST", "/v1/repo/replicas", replicas, timeout=MAX_TIMEOUT + 30)
