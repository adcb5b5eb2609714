"""Pushing through a remote helper: the options git sets for a push, the
result of each ref, and git's own rule for whether a ref may move (see
:mod:`guts.repo.remote_helper` for why the helper runs the push itself)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, TypeAlias

from guts.errors import InputError
from guts.repo.helper_commands import Option, PushSpec
from guts.repo.refname import refname_problem

__all__ = [
    "MAX_REPLICAS",
    "HelperOptions",
    "OptionReply",
    "OptionStatus",
    "PushResult",
    "RefRejected",
    "RefUnchanged",
    "RefUpdated",
    "Rejection",
    "judge_update",
    "replicas_option",
]

_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


# -- answers ---------------------------------------------------------------


class OptionStatus(enum.Enum):
    """The three answers to ``option``."""

    OK = "ok"
    UNSUPPORTED = "unsupported"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class OptionReply:
    """An answer to ``option``; ``reason`` goes with :attr:`OptionStatus.ERROR`."""

    status: OptionStatus
    reason: str = ""


_OK: Final = OptionReply(OptionStatus.OK)
_UNSUPPORTED: Final = OptionReply(OptionStatus.UNSUPPORTED)


class Rejection(enum.StrEnum):
    """Reasons git knows after ``error <ref>``: it prints its own status
    and hint for each (``! [rejected] main -> main (non-fast-forward)``)."""

    NON_FAST_FORWARD = "non-fast forward"
    FETCH_FIRST = "fetch first"
    ALREADY_EXISTS = "already exists"
    NEEDS_FORCE = "needs force"
    STALE_INFO = "stale info"


@dataclass(frozen=True, slots=True)
class RefUpdated:
    """The ref was updated (created, moved or deleted): ``ok <ref>``.

    ``forced`` says the update was not a fast-forward, so git shows
    ``+ old...new (forced update)``.
    """

    ref: str
    forced: bool = False


@dataclass(frozen=True, slots=True)
class RefUnchanged:
    """The ref already had the pushed value: ``ok <ref> up to date``."""

    ref: str


@dataclass(frozen=True, slots=True)
class RefRejected:
    """The ref was not updated: ``error <ref> <reason>``.

    ``reason`` is a :class:`Rejection` for git's own messages, or any text
    (shown as ``[remote rejected] (<reason>)``).
    """

    ref: str
    reason: str


PushResult: TypeAlias = RefUpdated | RefUnchanged | RefRejected


# -- options ---------------------------------------------------------------


def _bool(value: str) -> bool | None:
    return {"true": True, "false": False}.get(value)


_FLAGS: Final = frozenset(
    {"progress", "dry-run", "atomic", "object-format", "force-if-includes", "check-connectivity", "cloning"}
)


class HelperOptions:
    """The options git set in one session, as a helper honours them.

    :meth:`apply` records each ``option`` command and decides its answer.
    A session's state rather than a configuration, so it changes in place:
    ``cas`` arrives once per leased ref, and copying a frozen record per
    option would cost quadratic time on a ``--mirror`` push.

    Of the options git only sends when it fetches through ``list``/``fetch``
    (after a ``fallback``), ``check-connectivity`` and ``cloning`` are
    kept; ``depth``, ``followtags`` and the rest are ``unsupported``; so
    are ``pushcert`` (git then refuses ``--signed`` itself), ``servpath``
    and ``family``.

    Attributes:
        progress: show progress on stderr.
        verbosity: 0 quiet, 1 normal, more for each ``-v``.
        dry_run: report what a push would do, change nothing.
        atomic: every ref of the push or none.
        object_format: git asked for ``:object-format`` in ``list`` output.
        check_connectivity: git asks a ``fetch`` to say ``connectivity-ok``
            when the objects it put in place are complete.
        cloning: the fetch is a clone's (the repository is empty).
        push_options: the ``-o`` strings, in order.
        leases: ``--force-with-lease`` expectations, ref to expected oid
            (an all-zero oid: the ref must not exist).
    """

    __slots__ = (
        "progress", "verbosity", "dry_run", "atomic", "object_format", "check_connectivity", "cloning",
        "push_options", "leases",
    )  # fmt: skip

    def __init__(self) -> None:
        self.progress = False
        self.check_connectivity = False
        self.cloning = False
        self.verbosity = 1
        self.dry_run = False
        self.atomic = False
        self.object_format = False
        self.push_options: list[str] = []
        self.leases: dict[str, str] = {}

    def apply(self, option: Option) -> OptionReply:
        """Record ``option`` if it is valid; return the answer to give git."""
        name, value = option.name, option.value
        if name in _FLAGS:
            flag = _bool(value)
            if flag is None:
                return OptionReply(OptionStatus.ERROR, f"{name} is true or false, not {value[:40]!r}")
            if name == "progress":
                self.progress = flag
            elif name == "dry-run":
                self.dry_run = flag
            elif name == "atomic":
                self.atomic = flag
            elif name == "object-format":
                self.object_format = flag
            elif name == "check-connectivity":
                self.check_connectivity = flag
            elif name == "cloning":
                self.cloning = flag
            # force-if-includes needs nothing from us: git checks it itself,
            # against the remote-tracking ref's reflog, before the batch.
            return _OK
        if name == "verbosity":
            if not value.isascii() or not value.isdigit() or len(value) > 3:
                return OptionReply(OptionStatus.ERROR, f"verbosity is a small number, not {value[:40]!r}")
            self.verbosity = int(value)
            return _OK
        if name == "push-option":
            if "\n" in value or "\0" in value:
                return OptionReply(OptionStatus.ERROR, "a push option holds no LF or NUL")
            self.push_options.append(value)
            return _OK
        if name == "cas":
            ref, sep, oid = value.rpartition(":")
            if not sep or not _OID.fullmatch(oid) or refname_problem(ref) is not None:
                return OptionReply(OptionStatus.ERROR, f"cas is <ref>:<oid>, not {value[:80]!r}")
            self.leases[ref] = oid
            return _OK
        return _UNSUPPORTED


# -- the push rule ---------------------------------------------------------


def judge_update(
    spec: PushSpec,
    *,
    current: str | None,
    new: str | None,
    lease: str | None = None,
    commits: bool = True,
    fast_forward: bool = False,
    known_locally: bool = True,
) -> PushResult:
    """What git's rules say about one pushed ref, before it is applied.

    The checks and their order are those git applies to each ref before
    it pushes (``set_ref_status_for_push``), so the node refuses what git
    would and git prints its usual message. A caller applies the
    :class:`RefUpdated` ones and may still report a failure to apply.

    Args:
        spec: the push line.
        current: the remote ref's oid now, ``None`` if it does not exist.
        new: the oid ``spec.src`` resolved to, ``None`` for a deletion.
        lease: the ``cas`` expectation for ``spec.dst``, if any.
        commits: both ``current`` and ``new`` peel to commits (only asked
            when both exist).
        fast_forward: ``current`` is an ancestor of ``new``.
        known_locally: the pushing repository has ``current`` (else git's
            advice is to fetch first).
    """
    ref = spec.dst
    if new is not None and new == current:
        return RefUnchanged(ref)
    forced = False
    if lease is not None:
        if (current or "0" * len(lease)) != lease:
            return RefRejected(ref, Rejection.STALE_INFO)
        forced = True
    if new is None:
        if current is None:
            return RefRejected(ref, "remote ref does not exist")
        return RefUpdated(ref)
    if current is None:
        return RefUpdated(ref)
    if not (spec.force or forced):
        if ref.startswith("refs/tags/"):
            return RefRejected(ref, Rejection.ALREADY_EXISTS)
        if not known_locally:
            return RefRejected(ref, Rejection.FETCH_FIRST)
        if not commits:
            return RefRejected(ref, Rejection.NEEDS_FORCE)
        if not fast_forward:
            return RefRejected(ref, Rejection.NON_FAST_FORWARD)
    return RefUpdated(ref, forced=not fast_forward)


#: The most seeds ``git push -o replicas=N`` may ask for: the node asks at
#: most that many peers (:data:`guts.replicate.replicas.MAX_PEERS`).
MAX_REPLICAS: Final = 32
_REPLICAS = re.compile(r"replicas=([0-9]+)")


def replicas_option(value: str) -> int:
    """N of the push option ``replicas=N`` (``git push -o replicas=N``:
    wait until N seeds hold the pushed state), the only push option guts
    knows.

    Raises:
        InputError: any other option, or an N outside 1 to
            :data:`MAX_REPLICAS`; the message says what guts takes.
    """
    match = _REPLICAS.fullmatch(value)
    if match is None:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise InputError(f"push option {shown!r} means nothing to guts, which takes -o replicas=N")
    digits = match.group(1)
    if len(digits) > 4 or not 1 <= int(digits) <= MAX_REPLICAS:
        raise InputError(f"-o replicas=N waits for 1 to {MAX_REPLICAS} seeds, not {digits[:20]}")
    return int(digits)
