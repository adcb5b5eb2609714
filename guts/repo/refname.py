"""Ref names Guts accepts: git's ``check-ref-format`` rules, and a little more.

Ref names arrive from peers inside signed statements and end up as file
names under a bare repository's ``refs/`` and as arguments of git commands,
so they are checked before anything else looks at them. The rules are
git's (``git help check-ref-format``), applied to the whole name:

- components are separated by ``/``; none is empty (no leading or trailing
  ``/``, no ``//``), none begins with ``.``, none ends with ``.lock``;
- no ``..``, no ``@{``, the name is not ``@``, and it does not end with ``.``;
- no ASCII control character (below 0x20, or DEL), no space, and none of
  ``~ ^ : ? * [ \\``.

Guts adds what git leaves to the file system or the terminal:

- at most :data:`MAX_REF_NAME` bytes of UTF-8 in all, and
  :data:`MAX_COMPONENT` in one component. A component is a file name, and
  git writes a ref through ``<last component>.lock``, so a leaf of 251 to
  255 bytes passes ``check-ref-format`` and then fails ``update-ref`` with
  "File name too long" (git 2.39 on Linux): one such name would sink the
  whole ``update-ref --stdin`` transaction of a sync;
- none of :data:`UNSAFE_CHARACTERS`: C1 controls, Unicode spaces,
  invisible characters and the bidirectional overrides that let a name
  read as another on a terminal ("trojan source"). The set is fixed here
  rather than taken from :mod:`unicodedata`, whose tables change with the
  Python version: two nodes must never disagree about a name;
- the name is valid Unicode text (git allows any bytes; statements are
  UTF-8 text).

:func:`branch_problem` adds the rules ``git branch`` applies to a short
branch name: not ``HEAD``, not beginning with ``-``.

The ``*_problem`` functions say why, so that each caller raises the error
of its own kind: a peer's statement is :class:`~guts.errors.InvalidRefs`,
bytes git printed are a :class:`~guts.errors.DecodeError`
(:func:`decode_refname`), and what a person typed is an
:class:`~guts.errors.InputError` (:func:`check_refname`,
:func:`check_branch_name`).
"""

from __future__ import annotations

from guts.errors import DecodeError, InputError

__all__ = [
    "MAX_COMPONENT",
    "MAX_REF_NAME",
    "UNSAFE_CHARACTERS",
    "branch_problem",
    "check_branch_name",
    "check_refname",
    "decode_refname",
    "is_valid_refname",
    "refname_problem",
]

#: Longest ref name, in UTF-8 bytes.
MAX_REF_NAME = 1024
#: Longest component of a ref name, in UTF-8 bytes: a file name on most
#: file systems is at most 255, and git appends ``.lock`` while writing.
MAX_COMPONENT = 250

#: Characters refused anywhere in a ref name (and in the text fields of an
#: identity document): they hide or disguise text on a terminal.
UNSAFE_CHARACTERS: frozenset[str] = frozenset(
    [chr(c) for c in range(0x80, 0xA0)]  # C1 controls
    + [
        "\u00a0", "\u00ad", "\u061c", "\u1680", "\u180e",  # no-break space, soft hyphen, ALM, ogham space, MVS
        *(chr(c) for c in range(0x2000, 0x2010)),  # spaces, zero-width, LRM, RLM
        "\u2028", "\u2029",  # line and paragraph separators
        *(chr(c) for c in range(0x202A, 0x2030)),  # bidi embeddings and overrides, narrow no-break space
        "\u205f", "\u2060",  # medium mathematical space, word joiner
        *(chr(c) for c in range(0x2061, 0x2070)),  # invisible operators, bidi isolates, deprecated formats
        "\u3000", "\ufeff",  # ideographic space, byte order mark
        *(chr(c) for c in range(0xFFF9, 0xFFFC)),  # interlinear annotation
    ]
)

_GIT_FORBIDDEN = frozenset(" ~^:?*[\\\x7f") | frozenset(chr(c) for c in range(0x20))


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")


def refname_problem(name: str) -> str | None:
    """Why ``name`` is not a ref name Guts accepts, or ``None`` if it is one.

    A full name (``refs/heads/main``) is expected: the checks are git's
    ``check-ref-format`` without ``--allow-onelevel``, plus the extras of
    the module docstring.
    """
    if not isinstance(name, str):
        return "a ref name is text"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{_shown(name)} is not valid Unicode text"
    if not name:
        return "the ref name is empty"
    if size > MAX_REF_NAME:
        return f"a ref name is at most {MAX_REF_NAME} bytes, {_shown(name)} is {size}"
    bad = next((c for c in name if c in _GIT_FORBIDDEN or c in UNSAFE_CHARACTERS), None)
    if bad is not None:
        return f"{_shown(name)} contains the character {bad!r}"
    if name == "@" or "@{" in name:
        return f"{_shown(name)} contains '@{{' or is '@'"
    if ".." in name:
        return f"{_shown(name)} contains '..'"
    if name.endswith("."):
        return f"{_shown(name)} ends with '.'"
    components = name.split("/")
    if len(components) < 2:
        return f"{_shown(name)} has one component: a ref name is a path such as refs/heads/main"
    for component in components:
        if not component:
            return f"{_shown(name)} has an empty component (a leading, trailing or double '/')"
        if component.startswith("."):
            return f"{_shown(name)} has a component beginning with '.'"
        if component.endswith(".lock"):
            return f"{_shown(name)} has a component ending with '.lock'"
        if len(component.encode("utf-8")) > MAX_COMPONENT:
            return f"{_shown(name)} has a component longer than {MAX_COMPONENT} bytes"
    return None


def branch_problem(branch: str) -> str | None:
    """Why ``branch`` (a short name such as ``main``) is not a branch name
    Guts accepts, or ``None`` if it is one.

    ``refs/heads/<branch>`` must pass :func:`refname_problem`, and, as
    ``git branch`` requires, the branch is not ``HEAD`` and does not begin
    with ``-`` (it would read as an option on a git command line).
    """
    if not isinstance(branch, str):
        return "a branch name is text"
    if branch == "HEAD":
        return "'HEAD' is not a branch name"
    if branch.startswith("-"):
        return f"{_shown(branch)} begins with '-'"
    problem = refname_problem("refs/heads/" + branch)
    if problem is not None:
        return f"{_shown(branch)} is not a branch name: {problem}"
    return None


def is_valid_refname(name: str) -> bool:
    """Whether ``name`` is a full ref name Guts accepts (see :func:`refname_problem`)."""
    return refname_problem(name) is None


def check_refname(name: str) -> None:
    """Refuse a ref name a person wrote that Guts does not accept.

    Raises:
        InputError: why, naming the name.
    """
    problem = refname_problem(name)
    if problem is not None:
        raise InputError(problem)


def check_branch_name(branch: str) -> str:
    """The full ref name of a branch a person named (``main`` gives
    ``refs/heads/main``).

    Raises:
        InputError: the branch name breaks a rule of :func:`branch_problem`.
    """
    problem = branch_problem(branch)
    if problem is not None:
        raise InputError(problem)
    return "refs/heads/" + branch


def decode_refname(raw: bytes) -> str:
    """A ref name read from git or the wire (a line of ``ls-refs``, of
    ``for-each-ref``), checked.

    Raises:
        DecodeError: the bytes are not UTF-8, or the name breaks a rule of
            :func:`refname_problem`.
    """
    if len(raw) > MAX_REF_NAME:
        # Before decoding: the message must not quote a megabyte.
        raise DecodeError(f"a ref name is at most {MAX_REF_NAME} bytes, this one is {len(raw)}")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"ref name {raw!r} is not UTF-8") from None
    problem = refname_problem(name)
    if problem is not None:
        raise DecodeError(problem)
    return name
