"""Ref names, judged side by side with git's own ``check-ref-format``.

Every name here is also given to the real git (installed for the whole
suite). Guts must accept nothing git refuses, and may refuse what git
accepts only for its own documented extras: the length limits and
:data:`~guts.repo.refname.UNSAFE_CHARACTERS`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guts.errors import DecodeError, InputError
from guts.repo.refname import (
    MAX_COMPONENT,
    MAX_REF_NAME,
    UNSAFE_CHARACTERS,
    branch_problem,
    check_branch_name,
    check_refname,
    decode_refname,
    is_valid_refname,
    refname_problem,
)

# Outside any repository, so that --branch does not expand @{-N} against
# this checkout's history.
OUTSIDE = Path(os.environ.get("TMPDIR", "/tmp"))


def git_accepts(*args: str) -> bool:
    if args[0].startswith("-") and args[0] != "--branch":
        # git would read the name as an option. The rules give '-' no
        # meaning, so git's answer for 'x' in its place is the answer.
        args = ("x" + args[0][1:], *args[1:])
    done = subprocess.run(
        ["git", "check-ref-format", *args],
        cwd=OUTSIDE,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(OUTSIDE.parent)},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode in (0, 1, 128), done.stderr
    return done.returncode == 0


def guts_extra(name: str) -> bool:
    """Whether one of Guts's own rules (beyond git's) refuses ``name``."""
    raw = name.encode("utf-8")
    return (
        len(raw) > MAX_REF_NAME
        or any(len(c) > MAX_COMPONENT for c in raw.split(b"/"))
        or any(c in UNSAFE_CHARACTERS for c in name)
    )


def agrees_with_git(name: str) -> None:
    ours = is_valid_refname(name)
    if git_accepts(name):
        assert ours or guts_extra(name), f"git accepts {name!r}, we refuse: {refname_problem(name)}"
    else:
        assert not ours, f"git refuses {name!r}, we accept it"


VALID = [
    "refs/heads/main",
    "refs/heads/feature/x",
    "refs/tags/v1.0",
    "refs/a",
    "refs/heads/@",  # only the whole name '@' is refused
    "refs/heads/a@b",
    "refs/heads/a{b}",
    "refs/heads/a./b",  # only the name's end may not be '.'
    "refs/heads/a.lck",
    "refs/heads/lock",
    "refs/heads/-x",  # a dash is fine in a ref, not in a branch name
    "refs/heads/HEAD",
    "refs/heads/ä/日本語/😀",
    "refs/heads/" + "a" * MAX_COMPONENT,
    "refs/heads/" + "/".join(["a" * 200] * 4),
    "refs/heads/{}!#$%&'()+,;<=>\"`|",
]

INVALID = [
    "",
    "@",
    "main",  # one level
    "HEAD",
    "refs/heads/../x",
    "refs/heads/a..b",
    "refs/heads/..",
    "refs/heads/.hidden",
    "refs/heads/x/.hidden",
    "refs/heads/.",
    "refs/heads/x.lock",
    "refs/heads/x.lock/y",
    "refs/heads/.lock",
    "refs/heads/x/",
    "refs/heads/x.",
    "/refs/heads/x",
    "refs//heads/x",
    "refs/heads//x",
    "refs/heads/@{x}",
    "refs/heads/@{-1}",
    "refs/heads/a@{",
    "refs/heads/a b",
    "refs/heads/a\tb",
    "refs/heads/a\nb",
    "refs/heads/a\rb",
    "refs/heads/a\x01b",
    "refs/heads/a\x1bb",
    "refs/heads/a\x7fb",
    "refs/heads/a~1",
    "refs/heads/a^",
    "refs/heads/a:b",
    "refs/heads/a?",
    "refs/heads/a*",
    "refs/heads/a[b",
    "refs/heads/a\\b",
]

# git accepts these; Guts refuses them on purpose.
EXTRA = [
    "refs/heads/" + "a" * (MAX_COMPONENT + 1),  # update-ref cannot write its .lock
    "refs/heads/" + "/".join(["a" * 200] * 6),  # over MAX_REF_NAME
    "refs/heads/" + "a" * 5000,
    "refs/heads/admin\u202egnp.exe",  # right-to-left override
    "refs/heads/a\u200bb",  # zero-width space
    "refs/heads/a\u00a0b",  # no-break space
    "refs/heads/a\x85b",  # C1 next line
    "refs/heads/\ufeffmain",  # byte order mark
]


@pytest.mark.parametrize("name", VALID)
def test_valid(name: str) -> None:
    assert git_accepts(name)
    assert refname_problem(name) is None
    check_refname(name)


@pytest.mark.parametrize("name", INVALID)
def test_invalid(name: str) -> None:
    assert not git_accepts(name)
    assert not is_valid_refname(name)
    with pytest.raises(InputError):
        check_refname(name)


@pytest.mark.parametrize("name", EXTRA)
def test_refused_beyond_git(name: str) -> None:
    assert git_accepts(name)
    assert guts_extra(name)
    with pytest.raises(InputError):
        check_refname(name)


def test_leaf_component_limit_is_git_update_refs(tmp_path: Path) -> None:
    """The longest leaf we accept is the longest git can write; one more is not."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, capture_output=True, timeout=30)

    git("init", "-q", "--bare", ".")
    oid = git("hash-object", "-w", "--stdin").stdout.decode().strip()
    # Under refs/tags/: git writes no blob under refs/heads/.
    longest = "refs/tags/" + "a" * MAX_COMPONENT
    assert is_valid_refname(longest)
    written = git("update-ref", longest, oid)
    assert written.returncode == 0, written.stderr
    assert not is_valid_refname(longest + "b")
    refused = git("update-ref", longest + "b", oid)
    assert b"File name too long" in refused.stderr


def test_nul_is_refused() -> None:
    # Not given to git: a NUL cannot pass through argv.
    assert not is_valid_refname("refs/heads/a\x00b")
    assert not is_valid_refname("refs/heads/a\x00")


def test_lone_surrogate_is_refused() -> None:
    # os.fsencode would hand git the byte 0xff, which git accepts; a name
    # that is not Unicode text is refused here.
    assert not is_valid_refname("refs/heads/\udcff")


def test_messages_quote_safely() -> None:
    problem = refname_problem("refs/heads/a\x1b[31mred")
    assert problem is not None
    assert "\x1b" not in problem
    problem = refname_problem("refs/heads/" + "a" * 5000)
    assert problem is not None
    assert len(problem) < 200


# Branch names, against ``git check-ref-format --branch``.


@pytest.mark.parametrize(
    ("branch", "valid"),
    [
        ("main", True),
        ("feature/x", True),
        ("@", True),
        ("x/HEAD", True),
        ("HEAD/x", True),
        ("ünïcode", True),
        ("HEAD", False),
        ("-x", False),
        ("--force", False),
        ("", False),
        ("a b", False),
        ("a..b", False),
        ("x.lock", False),
        ("x/", False),
        ("/x", False),
        (".x", False),
        ("@{-1}", False),
        ("a@{u}", False),
    ],
)
def test_branch_names(branch: str, valid: bool) -> None:
    assert git_accepts("--branch", branch) == valid
    assert (branch_problem(branch) is None) == valid
    if valid:
        assert check_branch_name(branch) == "refs/heads/" + branch
    else:
        with pytest.raises(InputError):
            check_branch_name(branch)


# Bytes from git or the wire.


def test_decode_refname() -> None:
    assert decode_refname(b"refs/heads/main") == "refs/heads/main"
    assert decode_refname("refs/heads/ä".encode()) == "refs/heads/ä"
    for raw in (
        b"refs/heads/\xff",  # not UTF-8 (git would take it)
        b"refs/heads/\xc3",  # truncated sequence
        b"refs/heads/\xc0\xaf",  # overlong '/'
        b"refs/heads/\xed\xa0\x80",  # an encoded surrogate
        b"refs/heads/../x",
        b"refs/heads/" + b"a" * 2000,
        b"main",
    ):
        with pytest.raises(DecodeError):
            decode_refname(raw)


# Random names, compared with git. Each example runs git once (a few ms),
# so the counts are kept small.

# Characters that meet the rules: separators, dots, the '@{' pair, the
# forbidden ASCII set, a few letters, multi-byte and unsafe characters.
PIECES = list("ab/.@{}-~^:?*[\\ \t\x01\x7f") + [".lock", "refs/", "heads/", "é", "日", "\u202e", "\u00a0", "😀"]

names = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.lists(st.sampled_from(PIECES), max_size=10).map(lambda p: "refs/heads/" + "".join(p)),
    # Any text but NUL (argv cannot carry it) and lone surrogates (not text).
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=30),
)


@settings(max_examples=250, deadline=None)
@given(names)
def test_random_names_agree_with_git(name: str) -> None:
    agrees_with_git(name)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=8).map("".join))
def test_random_branch_names_agree_with_git(branch: str) -> None:
    ours = branch_problem(branch) is None
    if git_accepts("--branch", branch):
        assert ours or guts_extra("refs/heads/" + branch), branch
    else:
        assert not ours, branch
