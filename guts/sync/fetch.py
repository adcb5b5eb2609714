"""The sync protocol's fetching side: bring a peer's signed state of a
repository into this node's storage, verified before anything moves.

Theory of operation
-------------------
1. ``GetRefs{rid}`` on a new stream: the peer's identity chain (genesis
   first) and each namespace's latest statement, decoded strictly under
   the repository limits (:class:`~guts.repo.identity.SignedRevision`,
   :class:`~guts.repo.sigrefs.SignedStatement`: a bad signature stops
   here).
2. :meth:`Repositories.receive <guts.repo.state.Repositories.receive>`
   judges it under the repository's lock (chain against the RID and ours,
   each statement against the one we hold) and, for the accepted
   statements' oids we lack, calls back into :func:`_fetch_pack` with a
   quarantine.
3. ``git fetch-pack --stateless-rpc`` runs in the quarantine (its objects
   land there), with fsck on received objects (lenient only on
   :data:`~guts.repo.storage.FSCK_LENIENT`), every pack kept as a pack
   (``unpackLimit=1``, ``--lock-pack``, thin), the wanted oids read from
   stdin. It first reads :data:`~guts.sync.upload_rules.ADVERTISEMENT`;
   its ``ls-refs`` is answered here (no refs: we want oids, not names);
   then each request it writes (pkt-lines up to a flush) goes to the peer
   on a new stream as ``GetObjects``, and the peer's raw upload-pack
   response comes back into fetch-pack's stdin, followed by ``0002`` once
   it ended on a flush (:class:`~guts.repo.pktline.ResponseTracker`). A
   response may hold only the sections such a fetch asks for
   (``acknowledgments``, ``packfile``): a ``shallow-info`` section would
   let index-pack take commits without their parents.
   git's own negotiation sends our repository's refs as ``have``s, so a
   fetch of one new commit moves about one commit.
4. ``receive`` checks every wanted oid connected, migrates the objects
   and moves every ref in one transaction.
5. The peer's pending identity revisions (checked with its chain before
   step 2: a bad signature refuses the fetch) merge into ours
   (:meth:`Repositories.merge_proposals <guts.repo.state.Repositories.merge_proposals>`).

Bounds: the response bytes of one fetch (the storage's pack limit,
counted here: fetch-pack has no input limit of its own), the idle timeout
on every read from the peer (a stalled peer), and an overall deadline.
Any failure leaves refs and objects as they were, raises a typed error
(:class:`SyncError` and its kinds, or the repository's
:class:`~guts.errors.InvalidIdentity`, :class:`~guts.errors.InvalidRefs`,
:class:`~guts.repo.storage.PackRejected`), and logs one line naming the
peer and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import trio

from guts.errors import DecodeError, GutsError, InvalidIdentity
from guts.host import Host
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.repo.identity import SignedRevision
from guts.repo.pktline import (
    RESPONSE_END_PKT,
    DataPacket,
    FlushPacket,
    PktLineDecoder,
    ResponseTracker,
    encode_line,
    encode_packet,
)
from guts.repo.proposals import check_served
from guts.repo.rid import Rid
from guts.repo.sigrefs import SignedStatement
from guts.repo.state import Repositories, RepoState
from guts.repo.storage import FSCK_LENIENT, PackRejected, Quarantine
from guts.sync._codec import (
    RefusedReason,
    SYNC_PROTOCOL,
    GetObjects,
    GetRefs,
    Objects,
    Refs,
    Refused,
    Request,
    Response,
    SyncConfig,
    SyncError,
    SyncRefused,
    SyncStalled,
    decode_response,
    encode_request,
)
from guts.sync.upload_rules import ADVERTISEMENT
from guts.wire import LengthPrefixedDecoder, NegotiatedStream, encode_length_prefixed

__all__ = ["SyncProgress", "fetch"]

log = logging.getLogger("guts.sync")

_CHUNK = 64 * 1024
_FETCH_PACK = [
    "-c", "fetch.fsckObjects=true",
    *(arg for msg in FSCK_LENIENT for arg in ("-c", f"fetch.fsck.{msg}=ignore")),
    "-c", "fetch.unpackLimit=1",
    "fetch-pack", "--stateless-rpc", "--stdin", "--lock-pack", "--thin", "--no-progress", "guts",
]  # fmt: skip
#: fetch-pack's ``ls-refs`` request, and the answer given here: no refs.
#: Our wants are oids the signed statements list, never ref names, and
#: protocol v2 lets fetch-pack want any oid; its haves come from our refs.
_LS_REFS = encode_line("command=ls-refs")
_NO_REFS = b"0000" + RESPONSE_END_PKT


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Where a fetch is, for a progress display.

    Attributes:
        phase: ``refs`` (the peer's signed state arrived), ``objects``
            (pack bytes are arriving), ``applying`` (the pack is whole: the
            connectivity check, the objects' move and the ref transaction).
        received: response bytes received from the peer so far.
        namespaces: statements the peer sent (0 before ``refs``).
    """

    phase: str
    received: int = 0
    namespaces: int = 0


async def fetch(
    host: Host,
    repos: Repositories,
    peer: PeerId | Multiaddr,
    rid: Rid | str,
    config: SyncConfig | None = None,
    progress: Callable[[SyncProgress], None] | None = None,
    *,
    select: Callable[[Sequence[PeerId], Sequence[PeerId]], Collection[PeerId]] | None = None,
    refs: Refs | None = None,
) -> RepoState:
    """Fetch ``rid`` from ``peer`` and apply what verifies (module docstring);
    ``progress``, when given, is told of each step and of pack bytes as
    they arrive (it must not block). ``select``, when given, is asked with
    the delegates of the identity the peer sent and the signers of its
    statements which namespaces to take: the others are left out before
    any object is asked for (a seeding scope, a blocked peer). ``refs``,
    when given, is the peer's answer to a ``GetRefs`` already sent
    (:mod:`guts.sync.race`): it is checked as one received now, and not
    asked for again.

    Returns:
        The repository's state afterwards (unchanged when the peer had
        nothing newer).

    Raises:
        SyncRefused: the peer does not hold ``rid``, or refused a request.
        SyncStalled: the peer stalled past the idle timeout, or the fetch
            passed its deadline.
        SyncError: the peer broke the protocol.
        InvalidIdentity, InvalidRefs: its signed state does not verify or
            is older than ours.
        PackRejected: its objects were refused, over the limit, or missing.
        SyncError: also when the connection broke mid-fetch.
    """
    cfg = config or SyncConfig()
    key = str(rid) if isinstance(rid, Rid) else str(Rid.parse(rid))
    guarded = peer if isinstance(peer, PeerId) else None  # a fetch keeps its connection from being trimmed
    if guarded is not None:
        host.connmgr.protect(guarded, SYNC_PROTOCOL)
    try:
        with trio.fail_after(cfg.deadline):
            if refs is None:
                refs = await _get_refs(host, peer, key, cfg)
            revisions, statements = _decode_refs(repos, refs)
            if select is not None:
                signers = [signed.statement.signer for signed, _ in statements]
                keep = select(revisions[-1].document.delegate_ids, signers)
                statements = [(signed, oid) for signed, oid in statements if signed.statement.signer in keep]
            limit = repos.storage.config.max_pack_bytes
            budget = [limit]
            report = progress or (lambda _: None)
            report(SyncProgress("refs", namespaces=len(statements)))

            def received() -> None:
                report(SyncProgress("objects", limit - budget[0], len(statements)))

            async def objects(quarantine: Quarantine, oids: list[str]) -> None:
                await _fetch_pack(host, peer, key, quarantine, oids, cfg, budget, received)
                report(SyncProgress("applying", limit - budget[0], len(statements)))

            # Pending identity revisions: checked against the peer's own chain
            # before anything moves (a bad one refuses the fetch), merged after.
            identity_limits = repos.config.identity
            proposals = check_served(
                Rid.parse(key), revisions, [SignedRevision.decode(p, identity_limits) for p in refs.proposals],
                identity_limits,
            )  # fmt: skip
            state = await repos.receive(key, revisions, statements, objects)
            return await repos.merge_proposals(key, proposals) if proposals else state
    except trio.TooSlowError:
        error: GutsError = SyncStalled(f"the fetch passed its deadline of {cfg.deadline:g} s")
        log.warning("peer %s: fetch of %s failed: %s", peer, key, error)
        raise error from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        # The connection went away mid-fetch (the peer died, or hung up).
        broken = SyncError(f"the connection to the peer broke: {exc}")
        log.info("peer %s: fetch of %s failed: %s", peer, key, broken)
        raise broken from None
    except GutsError as exc:
        # A peer that does not hold the repository did nothing wrong.
        absent = isinstance(exc, SyncRefused) and exc.reason is RefusedReason.NOT_FOUND
        log.log(logging.INFO if absent else logging.WARNING, "peer %s: fetch of %s failed: %s", peer, key, exc)
        raise
    finally:
        if guarded is not None:
            host.connmgr.unprotect(guarded, SYNC_PROTOCOL)


def _decode_refs(
    repos: Repositories, refs: Refs
) -> tuple[list[SignedRevision], list[tuple[SignedStatement, str]]]:
    """A ``Refs`` answer decoded strictly under the repository limits:
    the identity revisions, genesis first, and each statement (its
    signature checked) with the peer's sigrefs commit of it.

    Raises:
        InvalidIdentity: no chain, too long a chain, or a revision that
            does not decode.
        InvalidRefs: a statement that does not decode or verify.
    """
    limits = repos.config
    if len(refs.identity) > limits.identity.max_revisions or not refs.identity:
        raise InvalidIdentity(f"an identity chain of {len(refs.identity)} revisions")
    revisions = [SignedRevision.decode(data, limits.identity) for data in refs.identity]
    pairs = zip(refs.statements, refs.sigrefs)
    return revisions, [(SignedStatement.decode(data, limits.refs), oid) for data, oid in pairs]


async def _exchange(
    host: Host, peer: PeerId | Multiaddr, request: Request, cfg: SyncConfig
) -> tuple[NegotiatedStream, Response, bytes]:
    """Open a stream, send ``request``, read the answer message: the
    stream (the caller closes it), the answer, and bytes past it."""
    stream = await host.new_stream(peer, [SYNC_PROTOCOL])
    try:
        await stream.send_all(encode_length_prefixed(encode_request(request)))
        decoder = LengthPrefixedDecoder(cfg.max_refs_message)
        while (message := decoder.next_message()) is None:
            data = await _receive(stream, cfg)
            if not data:
                raise SyncError("the peer closed the stream without an answer")
            decoder.receive_data(data)
        response = decode_response(message, cfg)
        if isinstance(response, Refused):
            raise SyncRefused(f"refused ({response.reason.name}): {response.message}", response.reason)
        return stream, response, decoder.unused_data()
    except DecodeError as exc:
        await stream.aclose()
        raise SyncError(f"bad answer: {exc}") from None
    except BaseException:
        await stream.aclose()
        raise


async def _receive(stream: trio.abc.Stream, cfg: SyncConfig) -> bytes:
    with trio.move_on_after(cfg.idle_timeout):
        return bytes(await stream.receive_some(_CHUNK))
    raise SyncStalled(f"the peer sent nothing for {cfg.idle_timeout:g} s")


async def _get_refs(host: Host, peer: PeerId | Multiaddr, rid: str, cfg: SyncConfig) -> Refs:
    stream, response, extra = await _exchange(host, peer, GetRefs(rid), cfg)
    await stream.aclose()
    if not isinstance(response, Refs) or extra:
        raise SyncError("GetRefs not answered with Refs alone")
    return response


async def _fetch_pack(
    host: Host,
    peer: PeerId | Multiaddr,
    rid: str,
    quarantine: Quarantine,
    oids: list[str],
    cfg: SyncConfig,
    budget: list[int],
    received: Callable[[], None],
) -> None:
    """Run fetch-pack in ``quarantine`` for ``oids``, pumping its requests
    to ``peer``; ``budget`` is the response bytes left for this fetch,
    ``received`` is called after each piece of a response."""
    wants = b"".join(encode_line(oid) for oid in oids) + b"0000"
    # strict: with fetch.fsckObjects, fetch-pack runs index-pack --strict (see Quarantine.check_connected)
    async with quarantine.git(_FETCH_PACK, timeout=cfg.deadline, strict=True) as git:
        await git.stdin.send_all(wants + ADVERTISEMENT)
        decoder, request, exchanges = PktLineDecoder(), bytearray(), 0
        while chunk := await git.stdout.receive_some(_CHUNK):
            decoder.receive_data(chunk)
            while True:
                try:
                    packet = decoder.next_packet()
                except DecodeError:
                    if exchanges and not request:
                        decoder = PktLineDecoder()  # fetch-pack's closing report ("lock <path>"): not a request
                        break
                    raise SyncError("git fetch-pack wrote what is not a request") from None
                if packet is None:
                    break
                request += encode_packet(packet)
                if len(request) > cfg.max_request:
                    raise SyncError(f"git's request is over {cfg.max_request} bytes")
                if isinstance(packet, FlushPacket):
                    if request.startswith(_LS_REFS):
                        await git.stdin.send_all(_NO_REFS)  # no round trip to the peer for its refs
                    else:
                        await _relay(host, peer, rid, bytes(request), git.stdin, cfg, budget, received)
                    request.clear()
                    exchanges += 1


async def _relay(
    host: Host,
    peer: PeerId | Multiaddr,
    rid: str,
    request: bytes,
    git: trio.abc.SendStream,
    cfg: SyncConfig,
    budget: list[int],
    received: Callable[[], None],
) -> None:
    """One ``GetObjects`` round: ``request`` to the peer, its response (and
    ``0002``) to fetch-pack."""
    stream, response, data = await _exchange(host, peer, GetObjects(rid, request), cfg)
    async with stream:
        if not isinstance(response, Objects):
            raise SyncError("GetObjects not answered with Objects")
        tracker, sections = ResponseTracker(), _Sections()
        while True:
            if data:
                budget[0] -= len(data)
                if budget[0] < 0:
                    raise PackRejected("the peer's packs are over the pack limit")
                received()
                try:
                    tracker.receive_data(data)
                    sections.receive_data(data)
                except DecodeError as exc:
                    raise SyncError(f"bad upload-pack response: {exc}") from None
                try:
                    await git.send_all(data)
                except trio.BrokenResourceError:
                    raise PackRejected("git fetch-pack stopped reading the pack") from None
            data = await _receive(stream, cfg)
            if not data:
                break
        try:
            end = tracker.end()
        except DecodeError as exc:
            raise SyncError(f"the upload-pack response was cut: {exc}") from None
        await git.send_all(end)


class _Sections:
    """The sections of one upload-pack response, checked up to its
    ``packfile``: a fetch of oids, without depth, without packfile URIs,
    is answered with ``acknowledgments`` and ``packfile`` only (an ``ERR``
    line passes, for fetch-pack to report). A ``shallow-info`` section
    would make fetch-pack treat the peer as shallow and run index-pack
    with a shallow file, under which ``--strict`` takes commits without
    their parents; the checks of the quarantine count on every link
    having been resolved."""

    __slots__ = ("_decoder", "_header", "_done")

    def __init__(self) -> None:
        self._decoder = PktLineDecoder()
        self._header = True
        self._done = False

    def receive_data(self, data: bytes) -> None:
        """Follow the next bytes of the response.

        Raises:
            DecodeError: a section this fetch never asks for, or a broken packet.
        """
        if self._done:
            return
        self._decoder.receive_data(data)
        while not self._done and (packet := self._decoder.next_packet()) is not None:
            if not isinstance(packet, DataPacket):
                self._header = True  # a delimiter (or the end): a section header next
            elif self._header:
                name = packet.payload.rstrip(b"\n")
                if name == b"packfile" or name.startswith(b"ERR "):
                    self._done = True  # the pack follows: nothing more to check
                elif name != b"acknowledgments":
                    raise DecodeError(f"a {name[:40]!r} section, which this fetch does not ask for")
                self._header = False
