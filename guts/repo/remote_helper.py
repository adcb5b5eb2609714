"""git's remote-helper protocol, the helper's side, sans-IO.

``git clone guts://<RID>`` starts ``git-remote-guts <remote> <url>`` with
pipes on its stdin and stdout (gitremote-helpers(7)). This module is the
protocol of those pipes and nothing else: bytes git wrote go in with
:meth:`RemoteHelper.receive_data`, typed commands come out of
:meth:`RemoteHelper.next_command`, and each answer is built by a method
that returns the bytes to write back. Running git, reaching the node and
writing to the pipes are the caller's. git runs the helper in the
person's working directory with ``GIT_DIR`` naming their repository (no
``GIT_DIR`` for ``git ls-remote`` outside one).

Theory of operation (what git 2.39 sends and expects, checked against it)
--------------------------------------------------------------------------

Commands are LF-terminated text lines. Every command but ``push`` is
answered before git sends the next one, so the core holds at most one
command awaiting its answer, and refuses (:class:`LocalProtocolError`) an
answer to a command it did not yield, or a second command before the
first is answered.

``capabilities``
    Always first. We answer :data:`CAPABILITIES`, one per line, then a
    blank line: ``stateless-connect`` (git fetches with protocol v2
    through us), ``push`` (we run the push ourselves; why below),
    ``fetch`` and ``check-connectivity`` (a clone's objects put in place
    by the helper, after a ``fallback``), ``option`` and
    ``object-format``. ``connect`` is deliberately absent:
    git prefers ``connect`` over ``stateless-connect`` for *every*
    service when both are advertised (transport-helper.c tries
    ``connect`` first), so advertising it for pushes would also take
    fetches off protocol v2.
``option <name> [<value>]``
    Answered ``ok``, ``unsupported`` or ``error <why>``. Values of
    non-boolean options are C-quoted when they need it (``push-option``,
    ``cas``); :class:`Option` carries the unquoted text. git 2.39 sends
    ``option object-format`` with no value; like git's own helper we read
    a missing value as ``true``. git ignores the answer to some options:
    it keeps pushing after ``option cas`` is ``unsupported``, silently
    dropping ``--force-with-lease``, which is why :class:`HelperOptions`
    supports ``cas`` rather than refusing it.
``list`` / ``list for-push``
    Refs, one ``<oid> <name>`` line each, ``@<target> HEAD`` for a
    symbolic HEAD, an optional first line ``:object-format sha256``, and a
    blank line (:meth:`RemoteHelper.ref_list`). git sends ``list for-push``
    before a push. A plain ``list`` only comes when git will not use
    ``stateless-connect``: with ``protocol.version`` 0 or 1 configured, or
    after a ``fallback``; a ``fetch`` batch may follow.
    Without the keyword, git parses the oids with the local repository's
    hash (sha1 outside a repository): ``git ls-remote`` of a sha256
    repository then shows oids cut to 40 digits. Send the keyword.
``stateless-connect <service>``
    Answered with a blank line (:meth:`RemoteHelper.accept`) or
    ``fallback``. git 2.39 asks for ``git-upload-pack`` only (``git
    archive --remote`` needs ``connect``), and only when protocol v2 is
    configured (the default since git 2.26). After the
    blank line the pipes carry pkt-lines (:mod:`guts.repo.pktline`):

    1. The helper writes the v2 capability advertisement, exactly what
       ``git upload-pack --advertise-refs --stateless-rpc`` prints with
       ``GIT_PROTOCOL=version=2`` (``version 2``, the capabilities, a
       flush). No ``0002`` after it: git 2.39 reads one there as the start
       of the ``ls-refs`` answer and dies ("expected flush after ref
       listing").
    2. Then requests: each is pkt-lines ending with a flush
       (``command=ls-refs`` or ``command=fetch``, capability lines, a
       delimiter, arguments, ``0000``); :class:`StatelessRequest` carries
       one whole. The flush is how the helper knows a request ended.
    3. Each answer is the server's response (which ends with a flush)
       followed by ``0002``. Without the ``0002`` git waits for it
       forever. :class:`ResponseTracker` follows a response's packets as
       they pass, and gives the ``0002`` only if the response ended
       cleanly on a flush: a server that died mid-response must not look
       like one that finished.
    4. git closes the pipe after its last response, with no blank line
       and no flush: end of input between requests is the normal end.

    Progress needs nothing from the helper: git asks for it (or sends
    ``no-progress``) inside the fetch request, and the server's side-band
    progress travels in the response. The hash is negotiated inside too:
    the advertisement says ``object-format=sha256`` and git adopts it.
``connect <service>``
    Parsed and answerable for completeness; after :meth:`~RemoteHelper.accept`
    the pipes carry the service's own bytes (:class:`ServiceData`). git
    does not pass ``GIT_PROTOCOL`` to such a helper: protocol v2 over
    ``connect`` would be the helper's to ask for.
``push [+]<src>:<dst>`` ...
    A batch of lines ended by a blank line; ``+`` asks for a forced
    update, an empty ``<src>`` deletes. ``<src>`` is a local ref name,
    ``HEAD`` or an oid. git has already refused, from the ``list
    for-push`` answer, every update it can tell is not a fast-forward;
    the helper judges each ref again against the node's refs of the
    moment, since another push may land in between. Options git sets for
    the push (``cas``, ``atomic``, ``dry-run``, ``push-option``) come
    before the batch in git 2.39; the documentation allows them inside it
    too, so we answer them there as well. ``git-remote-guts`` answers
    ``error`` to a ``push-option`` (``git push -o``) that guts does not
    know: git then stops with "helper ... does not support
    '--push-option'" before anything is pushed, as it does for a server
    without push options, rather than drop a misspelt option silently.
    The one known is ``replicas=N`` (:func:`replicas_option`).
    The answer (:meth:`RemoteHelper.push_report`) is one
    ``ok <dst>`` or ``error <dst> <why>`` per ref, then a blank line; the
    core refuses a report that leaves a ref out, because git then prints
    "Everything up-to-date" and exits 0 for a ref that never moved. git
    turns the reasons of :class:`Rejection` into its usual messages and
    hints; any other text shows as ``[remote rejected] (<why>)``. A text
    after ``ok`` is dropped by git (only ``forced update`` and
    ``up to date`` mean something), so a note to the person, such as
    "your push went to your own namespace", belongs on stderr.
``fetch <oid> <name>`` ...
    After a ``fallback`` to ``stateless-connect git-upload-pack`` (git
    asks twice: for the refs, then for the fetch; the helper must answer
    alike) and a ``list``: a batch of lines ended by a blank line
    (:class:`Fetch`), each naming a ref of the ``list`` answer. The helper
    writes the objects into the local repository itself; the answer
    (:meth:`RemoteHelper.fetch_done`) is a blank line, after
    ``connectivity-ok`` when git set ``option check-connectivity`` and the
    objects are complete (git then skips its own connectivity walk, as a
    clone does after a self-contained pack).
blank line
    End of input (:class:`InputEnded`); git closes the pipe after it.

Why ``push`` rather than ``connect`` to ``git-receive-pack``: git has no
stateless or v2 push, so ``connect`` means a full-duplex v0 receive-pack
conversation, and the node would have to be a receive-pack: either run
git's, which writes refs straight into the repository (no signed
statement, no namespace for a non-delegate, no quarantine of our own), or
reimplement its server side. With ``push`` the helper holds every fact a
report needs: it builds the pack itself (``git pack-objects --revs
--thin`` over the wanted tips, minus the remote tips the local repository
has, which is what ``send-pack`` does), shows pack-objects' own progress,
hands pack and updates to the node, and reports each ref with the reason
the node gives. :func:`judge_update` is git's rule for one ref, so a
refusal reads exactly as git's. The cost: the helper implements what
``send-pack`` would (the object selection, ``--force-with-lease``,
``--atomic``, ``--dry-run``), and ``--signed`` pushes are unsupported.

Limits (:class:`HelperLimits`): a line, the refs of one push batch, the
options of a session and the bytes of one stateless request are bounded,
so a broken or hostile peer on the pipe cannot make the helper hold more
than those.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Final

from guts.errors import DecodeError, LocalProtocolError
from guts.repo.pktline import (
    ResponseTracker,
    DataPacket,
    FlushPacket,
    Packet,
    PktLineDecoder,
    encode_packet,
)
from guts.repo.helper_commands import (
    Capabilities,
    Command,
    Connect,
    Fetch,
    HelperLimits,
    InputEnded,
    List,
    Option,
    Push,
    PushSpec,
    ServiceData,
    StatelessConnect,
    StatelessRequest,
    c_quote,
    c_unquote,
)
from guts.repo.push_rules import (
    MAX_REPLICAS,
    HelperOptions,
    OptionReply,
    OptionStatus,
    PushResult,
    RefRejected,
    RefUnchanged,
    RefUpdated,
    Rejection,
    judge_update,
    replicas_option,
)
from guts.repo.refname import MAX_REF_NAME, refname_problem
__all__ = [
    "CAPABILITIES",
    "MAX_REPLICAS",
    "Capabilities",
    "Command",
    "Connect",
    "Fetch",
    "HelperLimits",
    "HelperOptions",
    "HelperState",
    "InputEnded",
    "List",
    "Option",
    "OptionReply",
    "OptionStatus",
    "Push",
    "PushResult",
    "PushSpec",
    "RefRejected",
    "RefUnchanged",
    "RefUpdated",
    "Rejection",
    "RemoteHelper",
    "ResponseTracker",
    "ServiceData",
    "StatelessConnect",
    "StatelessRequest",
    "c_quote",
    "c_unquote",
    "judge_update",
    "replicas_option",
]

#: What we answer to ``capabilities`` (see the module docstring).
CAPABILITIES: Final = ("stateless-connect", "push", "fetch", "check-connectivity", "option", "object-format")

_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_SERVICE = re.compile(r"git-[a-z-]+")
_OID_LENGTHS: Final = {"sha1": 40, "sha256": 64}


class HelperState(enum.Enum):
    """Where the conversation is.

    ======================  ===========================================
    state                   what comes in
    ======================  ===========================================
    COMMANDS                command lines
    PUSH_BATCH              ``push`` lines (and options) until a blank
    FETCH_BATCH             ``fetch`` lines until a blank
    STATELESS               pkt-line requests, after ``accept()`` of a
                            ``stateless-connect``
    CONNECTED               raw service bytes, after ``accept()`` of a
                            ``connect``
    ENDED                   nothing more (input ended)
    ======================  ===========================================
    """

    COMMANDS = "commands"
    PUSH_BATCH = "push batch"
    FETCH_BATCH = "fetch batch"
    STATELESS = "stateless"
    CONNECTED = "connected"
    ENDED = "ended"


# -- the state machine -----------------------------------------------------


def _line_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"a command line is not UTF-8: {raw[:80]!r}") from None


def _parse_spec(text: str) -> PushSpec:
    force = text.startswith("+")
    body = text[1:] if force else text
    src, sep, dst = body.rpartition(":")
    if not sep:
        raise DecodeError(f"a push line is [+]<src>:<dst>, not {text[:120]!r}")
    problem = refname_problem(dst)
    if problem is not None:
        raise DecodeError(f"push destination: {problem}")
    if src:
        if src.startswith("-") or any(c.isspace() or ord(c) < 0x20 for c in src) or len(src) > MAX_REF_NAME:
            raise DecodeError(f"push source {src[:120]!r} is not a ref name or oid")
    elif force:
        raise DecodeError(f"a deletion cannot be forced: {text[:120]!r}")
    return PushSpec(src or None, dst, force)


class RemoteHelper:
    """The helper's end of git's remote-helper pipes (sans-IO).

    Feed what git writes to :meth:`receive_data` (and :meth:`receive_eof`
    when its pipe closes), take commands from :meth:`next_command` until it
    returns ``None`` (more bytes needed), and write what each answer method
    returns. Errors in git's input raise :class:`DecodeError`; the
    conversation cannot continue after one, so the helper should print
    the message and exit non-zero, as git's own helpers do.
    """

    def __init__(self, limits: HelperLimits | None = None) -> None:
        self.limits = limits or HelperLimits()
        self._state = HelperState.COMMANDS
        self._buf = bytearray()
        self._scanned = 0
        self._eof = False
        self._pending: Command | None = None
        self._batch: list[PushSpec] = []
        self._fetches: list[tuple[str, str]] = []
        self._batch_refs: set[str] = set()
        self._options = 0
        self._pkt: PktLineDecoder | None = None
        self._request = bytearray()
        self._command = ""

    @property
    def state(self) -> HelperState:
        return self._state

    @property
    def awaiting(self) -> Command | None:
        """The command whose answer git is waiting for, if any."""
        return self._pending

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes git wrote to the helper's stdin.

        Raises:
            DecodeError: bytes after the end of input.
        """
        if not data:
            return
        if self._eof or self._state is HelperState.ENDED:
            raise DecodeError("git wrote after the end of its input")
        if self._pkt is not None:
            self._pkt.receive_data(data)
        else:
            self._buf += data

    def receive_eof(self) -> None:
        """git closed the helper's stdin."""
        self._eof = True

    def next_command(self) -> Command | None:
        """The next command, or ``None`` if more bytes are needed.

        Raises:
            LocalProtocolError: the previous command is not answered yet.
            DecodeError: git's input breaks the protocol or a limit.
        """
        if self._pending is not None:
            raise LocalProtocolError(f"answer {type(self._pending).__name__} before reading on")
        state = self._state
        if state is HelperState.ENDED:
            return InputEnded()
        if state is HelperState.STATELESS:
            return self._next_request()
        if state is HelperState.CONNECTED:
            return self._next_service_data()
        while True:
            raw = self._next_line()
            if raw is None:
                if not self._eof:
                    return None
                if self._buf:
                    raise DecodeError("input ended inside a command line")
                if self._state in (HelperState.PUSH_BATCH, HelperState.FETCH_BATCH):
                    raise DecodeError(f"input ended inside a {self._state.value}")
                # The pipe closed without the blank line: git is gone.
                self._state = HelperState.ENDED
                return InputEnded()
            command = self._parse(raw)
            if command is not None:
                return command

    def _next_line(self) -> bytes | None:
        buf = self._buf
        newline = buf.find(b"\n", self._scanned)
        if newline < 0:
            if len(buf) >= self.limits.max_line:
                raise DecodeError(f"a command line longer than {self.limits.max_line} bytes")
            self._scanned = len(buf)
            return None
        if newline + 1 > self.limits.max_line:
            raise DecodeError(f"a command line longer than {self.limits.max_line} bytes")
        raw = bytes(buf[:newline])
        del buf[: newline + 1]
        self._scanned = 0
        return raw

    def _parse(self, raw: bytes) -> Command | None:
        """One line to a command (``None``: a push line, kept in the batch)."""
        text = _line_text(raw)
        batch = self._state is HelperState.PUSH_BATCH
        if self._state is HelperState.FETCH_BATCH:
            return self._fetch_line(text)
        if not text:
            if batch:
                self._state = HelperState.COMMANDS
                return self._hold(Push(tuple(self._batch)))
            self._state = HelperState.ENDED
            if self._buf:
                raise DecodeError("git wrote after the end of its input")
            return InputEnded()
        verb, _, rest = text.partition(" ")
        if verb == "option":
            return self._option(rest)
        if verb == "push":
            if len(self._batch) >= self.limits.max_push_refs:
                raise DecodeError(f"more than {self.limits.max_push_refs} refs in one push")
            spec = _parse_spec(rest)
            if not batch:
                self._batch, self._batch_refs = [], set()
                self._state = HelperState.PUSH_BATCH
            if spec.dst in self._batch_refs:
                raise DecodeError(f"{spec.dst} appears twice in one push")
            self._batch.append(spec)
            self._batch_refs.add(spec.dst)
            return None
        if batch:
            raise DecodeError(f"{text[:80]!r} inside a push batch")
        if text == "capabilities":
            return self._hold(Capabilities())
        if text in ("list", "list for-push"):
            return self._hold(List(for_push=text != "list"))
        if verb in ("stateless-connect", "connect"):
            if not _SERVICE.fullmatch(rest):
                raise DecodeError(f"{verb} names no service: {text[:80]!r}")
            return self._hold(StatelessConnect(rest) if verb == "stateless-connect" else Connect(rest))
        if verb == "fetch":
            self._fetches = []
            self._state = HelperState.FETCH_BATCH
            return self._fetch_line(text)
        raise DecodeError(f"unknown command {text[:80]!r}")

    def _fetch_line(self, text: str) -> Command | None:
        """One line of a fetch batch (``None``: kept in the batch)."""
        if not text:
            self._state = HelperState.COMMANDS
            return self._hold(Fetch(tuple(self._fetches)))
        verb, _, rest = text.partition(" ")
        oid, _, name = rest.partition(" ")
        if verb != "fetch" or not _OID.fullmatch(oid) or (name != "HEAD" and refname_problem(name) is not None):
            raise DecodeError(f"a fetch batch holds 'fetch <oid> <ref>' lines, not {text[:120]!r}")
        if len(self._fetches) >= self.limits.max_push_refs:
            raise DecodeError(f"more than {self.limits.max_push_refs} refs in one fetch")
        self._fetches.append((oid, name))
        return None

    def _option(self, rest: str) -> Command:
        self._options += 1
        if self._options > self.limits.max_options:
            raise DecodeError(f"more than {self.limits.max_options} options")
        name, sep, value = rest.partition(" ")
        if not _NAME.fullmatch(name):
            raise DecodeError(f"option name {name[:80]!r}")
        return self._hold(Option(name, c_unquote(value) if sep else "true"))

    def _hold(self, command: Command) -> Command:
        self._pending = command
        return command

    def _next_request(self) -> Command | None:
        decoder = self._pkt
        assert decoder is not None
        request = self._request
        while True:
            packet = decoder.next_packet()
            if packet is None:
                if self._eof:
                    decoder.end_of_stream()
                    if request:
                        raise DecodeError("input ended inside a stateless request")
                    self._state = HelperState.ENDED
                    return InputEnded()
                return None
            if not request:
                self._command = _request_command(packet)
            # git never sends an empty data packet (0004), and encode_packet
            # refuses one: write it as it came.
            wire = b"0004" if isinstance(packet, DataPacket) and not packet.payload else encode_packet(packet)
            if len(request) + len(wire) > self.limits.max_request:
                raise DecodeError(f"a request longer than {self.limits.max_request} bytes")
            request += wire
            if isinstance(packet, FlushPacket):
                done = StatelessRequest(self._command, bytes(request))
                request.clear()
                return done

    def _next_service_data(self) -> Command | None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            return ServiceData(data)
        if self._eof:
            self._state = HelperState.ENDED
            return InputEnded()
        return None

    # -- answers -----------------------------------------------------------

    def _answer(self, kind: type | tuple[type, ...]) -> Command:
        pending = self._pending
        if pending is None or not isinstance(pending, kind):
            name = type(pending).__name__ if pending is not None else "no command"
            raise LocalProtocolError(f"this answer does not fit {name}")
        self._pending = None
        return pending

    def capabilities(self, capabilities: Iterable[str] = CAPABILITIES) -> bytes:
        """The answer to :class:`Capabilities`."""
        self._answer(Capabilities)
        lines = list(capabilities)
        for cap in lines:
            if not cap or any(c.isspace() and c != " " for c in cap):
                raise LocalProtocolError(f"capability {cap!r}")
        return "".join(f"{cap}\n" for cap in lines).encode() + b"\n"

    def option_reply(self, reply: OptionReply) -> bytes:
        """The answer to :class:`Option`."""
        self._answer(Option)
        if reply.status is OptionStatus.ERROR:
            return f"error {_one_line(reply.reason)}\n".encode()
        return f"{reply.status.value}\n".encode()

    def ref_list(
        self,
        refs: Mapping[str, str],
        *,
        head: str | None = None,
        object_format: str | None = None,
    ) -> bytes:
        """The answer to :class:`List`.

        Args:
            refs: ref name to oid (``HEAD`` may be one, for a detached HEAD).
            head: the branch ``HEAD`` points to, if it is symbolic.
            object_format: ``sha1`` or ``sha256``, for the keyword line.

        Raises:
            LocalProtocolError: a bad name or oid, or oids of another length
                than ``object_format``'s.
        """
        self._answer(List)
        width = _OID_LENGTHS.get(object_format or "sha1")
        if width is None:
            raise LocalProtocolError(f"object format {object_format!r}")
        lines = [f":object-format {object_format}\n"] if object_format else []
        if head is not None:
            if refname_problem(head) is not None:
                raise LocalProtocolError(f"HEAD target {head!r:.80}")
            lines.append(f"@{head} HEAD\n")
        for name, oid in refs.items():
            if name != "HEAD" and refname_problem(name) is not None:
                raise LocalProtocolError(f"ref name {name!r:.80}")
            if len(oid) != width or not _OID.fullmatch(oid):
                raise LocalProtocolError(f"{name}: {oid!r:.80} is not a {object_format or 'sha1'} oid")
            lines.append(f"{oid} {name}\n")
        return "".join(lines).encode() + b"\n"

    def accept(self) -> bytes:
        """The answer to :class:`StatelessConnect` or :class:`Connect`: connected.

        For ``stateless-connect``, write the service's v2 capability
        advertisement right after these bytes.
        """
        command = self._answer((StatelessConnect, Connect))
        if isinstance(command, StatelessConnect):
            self._state = HelperState.STATELESS
            self._pkt = PktLineDecoder()
            self._pkt.receive_data(self._buf)
            self._buf.clear()
        else:
            self._state = HelperState.CONNECTED
        return b"\n"

    def fall_back(self) -> bytes:
        """The answer to :class:`StatelessConnect` or :class:`Connect`: not
        this way (git then tries ``list`` and ``fetch``)."""
        self._answer((StatelessConnect, Connect))
        return b"fallback\n"

    def fetch_done(self, *, connectivity_ok: bool = False) -> bytes:
        """The answer to :class:`Fetch`: the objects are in place;
        ``connectivity_ok`` says they are complete and connected (only
        when git set ``option check-connectivity``)."""
        self._answer(Fetch)
        return (b"connectivity-ok\n" if connectivity_ok else b"") + b"\n"

    def push_report(self, results: Iterable[PushResult]) -> bytes:
        """The answer to :class:`Push`: one result per ref, in any order.

        Raises:
            LocalProtocolError: a ref of the batch has no result, or one
                result names a ref twice or a ref not in the batch.
        """
        batch = self._pending
        if not isinstance(batch, Push):
            raise LocalProtocolError("a push report answers a push batch")
        wanted = {spec.dst for spec in batch.specs}
        lines: list[str] = []
        seen: set[str] = set()
        for result in results:
            if result.ref not in wanted or result.ref in seen:
                raise LocalProtocolError(f"push report for {result.ref!r:.80}: not in the batch, or twice")
            seen.add(result.ref)
            if isinstance(result, RefUpdated):
                lines.append(f"ok {result.ref} forced update\n" if result.forced else f"ok {result.ref}\n")
            elif isinstance(result, RefUnchanged):
                lines.append(f"ok {result.ref} up to date\n")
            else:
                lines.append(f"error {result.ref} {c_quote(str(result.reason) or 'rejected')}\n")
        missing = wanted - seen
        if missing:
            raise LocalProtocolError(f"push report leaves out {sorted(missing)[:5]}")
        self._answer(Push)
        return "".join(lines).encode() + b"\n"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "invalid value"


def _request_command(packet: Packet) -> str:
    """The v2 command a request's first packet names."""
    text = packet.line() if isinstance(packet, DataPacket) else b""
    if not text.startswith(b"command="):
        raise DecodeError(f"a request begins with command=<name>, not {text[:80]!r}")
    command = text[len(b"command=") :].decode("ascii", "replace")
    if not _NAME.fullmatch(command):
        raise DecodeError(f"request command {command[:80]!r}")
    return command
