"""The commands git sends a remote helper, as :mod:`guts.repo.remote_helper`
yields them, their bounds, and git's C-style quoting of names and values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from guts.errors import DecodeError

__all__ = [
    "Capabilities",
    "Command",
    "Connect",
    "Fetch",
    "HelperLimits",
    "InputEnded",
    "List",
    "Option",
    "Push",
    "PushSpec",
    "ServiceData",
    "StatelessConnect",
    "StatelessRequest",
    "c_quote",
    "c_unquote",
]


@dataclass(frozen=True, slots=True)
class HelperLimits:
    """Bounds on what git may make the helper hold.

    Attributes:
        max_line: bytes of one command line, its LF included.
        max_push_refs: refs in one ``push`` batch (a ``--mirror`` push of
            a large repository names every ref).
        max_options: ``option`` commands in one session (``cas`` comes
            once per leased ref, so this is above ``max_push_refs``).
        max_request: bytes of one stateless request; git repeats every
            common ``have`` in each round, so a long negotiation grows.
    """

    max_line: int = 16 * 1024
    max_push_refs: int = 100_000
    max_options: int = 250_000
    max_request: int = 32 * 1024 * 1024


# -- commands --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """``capabilities``: answer with :meth:`RemoteHelper.capabilities`."""


@dataclass(frozen=True, slots=True)
class Option:
    """``option <name> <value>``: answer with :meth:`RemoteHelper.option_reply`.

    Attributes:
        name: the option, lower case (``progress``, ``cas``, ...).
        value: its value, C-unquoted; ``"true"`` when git sent none.
    """

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class List:
    """``list`` or ``list for-push``: answer with :meth:`RemoteHelper.ref_list`."""

    for_push: bool


@dataclass(frozen=True, slots=True)
class StatelessConnect:
    """``stateless-connect <service>``: :meth:`RemoteHelper.accept` or
    :meth:`RemoteHelper.fall_back`."""

    service: str


@dataclass(frozen=True, slots=True)
class Connect:
    """``connect <service>``: :meth:`RemoteHelper.accept` or
    :meth:`RemoteHelper.fall_back`."""

    service: str


@dataclass(frozen=True, slots=True)
class PushSpec:
    """One ``push`` line.

    Attributes:
        src: the local ref name, ``HEAD`` or oid to push; ``None`` deletes.
        dst: the remote ref to update, a full ref name.
        force: the line began with ``+``.
    """

    src: str | None
    dst: str
    force: bool


@dataclass(frozen=True, slots=True)
class Push:
    """A batch of ``push`` lines: answer with :meth:`RemoteHelper.push_report`."""

    specs: tuple[PushSpec, ...]


@dataclass(frozen=True, slots=True)
class Fetch:
    """A batch of ``fetch <oid> <name>`` lines (after a ``fallback`` and a
    ``list``): put the objects in the local repository, then answer with
    :meth:`RemoteHelper.fetch_done`.

    Attributes:
        refs: each ``(oid, name)``, in git's order.
    """

    refs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StatelessRequest:
    """One request on a stateless connection, to pass on whole.

    Attributes:
        command: the v2 command (``ls-refs``, ``fetch``, ...).
        data: the request's pkt-lines, its final flush included.
    """

    command: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ServiceData:
    """Bytes git sent to the service of an accepted ``connect``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class InputEnded:
    """git ended its input cleanly (a blank line, or the pipe closed where
    that is the normal end): the helper exits."""


Command: TypeAlias = (
    Capabilities
    | Option
    | List
    | StatelessConnect
    | Connect
    | Push
    | Fetch
    | StatelessRequest
    | ServiceData
    | InputEnded
)


# -- C quoting -------------------------------------------------------------

_ESCAPES: Final = {
    ord("a"): 7, ord("b"): 8, ord("t"): 9, ord("n"): 10, ord("v"): 11, ord("f"): 12, ord("r"): 13,
    ord('"'): ord('"'), ord("\\"): ord("\\"),
}  # fmt: skip
_QUOTES: Final = {value: b"\\" + bytes((key,)) for key, value in _ESCAPES.items()}


def c_unquote(text: str) -> str:
    """Undo git's ``quote_c_style`` if ``text`` is quoted; else return it.

    git quotes a value that holds a quote, a backslash, a control
    character or (by default) any byte above 0x7f, writing the latter as
    octal escapes of its UTF-8 bytes.

    Raises:
        DecodeError: an unterminated string, an unknown escape, text after
            the closing quote, or bytes that are not UTF-8.
    """
    if not text.startswith('"'):
        return text
    raw = text.encode("utf-8")
    out = bytearray()
    i, end = 1, len(raw)
    while i < end:
        c = raw[i]
        if c == ord('"'):
            if i != end - 1:
                raise DecodeError(f"text after a quoted value: {text[:80]!r}")
            try:
                return out.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError(f"a quoted value is not UTF-8: {text[:80]!r}") from None
        if c != ord("\\"):
            out.append(c)
            i += 1
            continue
        if i + 1 >= end:
            break
        e = raw[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif ord("0") <= e <= ord("3") and i + 3 < end and all(ord("0") <= d <= ord("7") for d in raw[i + 2 : i + 4]):
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            raise DecodeError(f"unknown escape in a quoted value: {text[:80]!r}")
    raise DecodeError(f"unterminated quoted value: {text[:80]!r}")


def c_quote(text: str) -> str:
    """Quote ``text`` as git's ``unquote_c_style`` reads it, if it must be.

    git reads a push reason as quoted only when it begins with a quote, so
    text is quoted when it does, or when it holds a control character (an
    LF would end the line). Unlike git's ``quote_c_style``, text above
    ASCII stays as it is: git reads it back the same, and people read it.
    """
    if not text.startswith('"') and not any(ord(c) < 0x20 or c == "\x7f" for c in text):
        return text
    out = bytearray(b'"')
    for b in text.encode("utf-8"):
        if b in _QUOTES:
            out += _QUOTES[b]
        elif b < 0x20 or b == 0x7F:
            out += b"\\%03o" % b
        else:
            out.append(b)
    out += b'"'
    return out.decode("utf-8")
