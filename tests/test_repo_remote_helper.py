"""guts.repo.remote_helper: git's remote-helper protocol, helper's side.

The pure core is tested first, synchronously: commands from bytes split
every way, answers byte for byte, the bounds, the state checks, git's push
rule. Then real git 2.39 drives the core through
``tests/remote_helper_fixture.py`` (installed as ``git-remote-gutstest``):
clone, fetch, progress, sha256, every kind of push, and the two ways a
node could fetch into a quarantine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guts.errors import DecodeError, LocalProtocolError
from guts.repo.pktline import FLUSH, DataPacket, PktLineDecoder, encode_line, encode_packet
from guts.repo.remote_helper import (
    CAPABILITIES,
    Capabilities,
    Connect,
    Fetch,
    HelperLimits,
    HelperOptions,
    HelperState,
    InputEnded,
    List,
    Option,
    OptionReply,
    OptionStatus,
    Push,
    PushSpec,
    RefRejected,
    RefUnchanged,
    RefUpdated,
    Rejection,
    RemoteHelper,
    ResponseTracker,
    ServiceData,
    StatelessConnect,
    StatelessRequest,
    c_quote,
    c_unquote,
    judge_update,
)

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "remote_helper_fixture.py"
A, B, C = "a" * 40, "b" * 40, "c" * 40
OK = OptionReply(OptionStatus.OK)


def commands(data: bytes, *, eof: bool = False, helper: RemoteHelper | None = None) -> list[object]:
    """Every command ``data`` makes, each answered plainly."""
    helper = helper or RemoteHelper()
    helper.receive_data(data)
    if eof:
        helper.receive_eof()
    out: list[object] = []
    while (command := helper.next_command()) is not None:
        out.append(command)
        if isinstance(command, InputEnded | StatelessRequest | ServiceData):
            if isinstance(command, InputEnded):
                break
            continue
        answer(helper, command)
    return out


def answer(helper: RemoteHelper, command: object) -> bytes:
    if isinstance(command, Capabilities):
        return helper.capabilities()
    if isinstance(command, Option):
        return helper.option_reply(OK)
    if isinstance(command, List):
        return helper.ref_list({})
    if isinstance(command, StatelessConnect | Connect):
        return helper.accept()
    if isinstance(command, Push):
        return helper.push_report(RefUpdated(spec.dst) for spec in command.specs)
    if isinstance(command, Fetch):
        return helper.fetch_done()
    raise AssertionError(command)


SESSION = (
    b"capabilities\n"
    b"option progress true\n"
    b"option verbosity 1\n"
    b"option object-format\n"
    b"list for-push\n"
    b'option push-option "bar \\"baz"\n'
    b"push refs/heads/main:refs/heads/main\n"
    b"push +HEAD:refs/heads/x\n"
    b"push :refs/heads/gone\n"
    b"push +" + B.encode() + b":refs/heads/bysha\n"
    b"\n"
    b"\n"
)
SESSION_COMMANDS = [
    Capabilities(),
    Option("progress", "true"),
    Option("verbosity", "1"),
    Option("object-format", "true"),
    List(for_push=True),
    Option("push-option", 'bar "baz'),
    Push(
        (
            PushSpec("refs/heads/main", "refs/heads/main", False),
            PushSpec("HEAD", "refs/heads/x", True),
            PushSpec(None, "refs/heads/gone", False),
            PushSpec(B, "refs/heads/bysha", True),
        )
    ),
    InputEnded(),
]


# -- commands ----------------------------------------------------------------


def test_a_push_session_as_git_sends_it() -> None:
    assert commands(SESSION) == SESSION_COMMANDS


def test_a_clone_after_a_fallback_as_git_sends_it() -> None:
    """git 2.39 cloning through a helper that fell back: the service asked
    twice, ``list``, the fetch options, then one batch."""
    helper = RemoteHelper()
    helper.receive_data(
        b"capabilities\nstateless-connect git-upload-pack\nlist\nstateless-connect git-upload-pack\n"
        b"option check-connectivity true\noption cloning true\n"
        b"fetch " + A.encode() + b" refs/heads/main\nfetch " + B.encode() + b" refs/tags/v1\n\n\n"
    )
    assert helper.next_command() == Capabilities()
    assert b"fetch\ncheck-connectivity\n" in helper.capabilities()
    assert helper.next_command() == StatelessConnect("git-upload-pack")
    assert helper.fall_back() == b"fallback\n"
    assert helper.next_command() == List(for_push=False)
    assert helper.ref_list({"refs/heads/main": A, "refs/tags/v1": B}, head="refs/heads/main")
    assert helper.next_command() == StatelessConnect("git-upload-pack")
    assert helper.fall_back() == b"fallback\n"
    assert helper.next_command() == Option("check-connectivity", "true")
    helper.option_reply(OK)
    assert helper.next_command() == Option("cloning", "true")
    helper.option_reply(OK)
    assert helper.next_command() == Fetch(((A, "refs/heads/main"), (B, "refs/tags/v1")))
    with pytest.raises(LocalProtocolError):
        helper.push_report([])
    assert helper.fetch_done(connectivity_ok=True) == b"connectivity-ok\n\n"
    assert helper.next_command() == InputEnded()


def test_every_split_of_the_input_gives_the_same_commands() -> None:
    for cut in range(1, len(SESSION)):
        helper = RemoteHelper()
        got: list[object] = []
        for part in (SESSION[:cut], SESSION[cut:]):
            helper.receive_data(part)
            while (command := helper.next_command()) is not None:
                got.append(command)
                if not isinstance(command, InputEnded):
                    answer(helper, command)
                else:
                    break
        assert got == SESSION_COMMANDS, cut


def test_one_byte_at_a_time() -> None:
    helper = RemoteHelper()
    got: list[object] = []
    for byte in SESSION:
        helper.receive_data(bytes([byte]))
        while (command := helper.next_command()) is not None and not isinstance(command, InputEnded):
            got.append(command)
            answer(helper, command)
    assert got == SESSION_COMMANDS[:-1]


def test_capabilities_answer() -> None:
    helper = RemoteHelper()
    helper.receive_data(b"capabilities\n")
    assert helper.next_command() == Capabilities()
    assert helper.capabilities() == b"stateless-connect\npush\nfetch\ncheck-connectivity\noption\nobject-format\n\n"
    assert "connect" not in CAPABILITIES  # it would take fetches off v2


def test_option_answers() -> None:
    helper = RemoteHelper()
    helper.receive_data(b"option a 1\noption b 2\noption c 3\n")
    for reply, wire in [
        (OptionReply(OptionStatus.OK), b"ok\n"),
        (OptionReply(OptionStatus.UNSUPPORTED), b"unsupported\n"),
        (OptionReply(OptionStatus.ERROR, "bad\nvalue"), b"error bad value\n"),
    ]:
        assert isinstance(helper.next_command(), Option)
        assert helper.option_reply(reply) == wire


def test_options_inside_a_push_batch_are_answered_there() -> None:
    helper = RemoteHelper()
    helper.receive_data(b"push a:refs/heads/a\noption cas refs/heads/a:" + A.encode() + b"\npush b:refs/heads/b\n\n")
    assert helper.next_command() == Option("cas", f"refs/heads/a:{A}")
    assert helper.state is HelperState.PUSH_BATCH
    assert helper.option_reply(OK) == b"ok\n"
    batch = helper.next_command()
    assert isinstance(batch, Push) and [s.dst for s in batch.specs] == ["refs/heads/a", "refs/heads/b"]


def test_end_of_input() -> None:
    assert commands(b"capabilities\n\n") == [Capabilities(), InputEnded()]
    # The pipe closing at a line boundary is an end too (git went away).
    assert commands(b"capabilities\n", eof=True) == [Capabilities(), InputEnded()]
    helper = RemoteHelper()
    helper.receive_data(b"\n")
    assert helper.next_command() == InputEnded()
    assert helper.next_command() == InputEnded()
    with pytest.raises(DecodeError):
        helper.receive_data(b"capabilities\n")


@pytest.mark.parametrize(
    "data, eof",
    [
        (b"capabilities", True),  # cut inside a line
        (b"push a:refs/heads/a\n", True),  # cut inside a push batch
        (b"frobnicate\n", False),
        (b"list all\n", False),
        (b"fetch " + A.encode() + b" refs/heads/main\n", True),  # cut inside a fetch batch
        (b"fetch " + A.encode() + b" main\n\n", False),  # not a full ref name
        (b"fetch " + A[:39].encode() + b" refs/heads/main\n\n", False),
        (b"fetch " + A.encode() + b" refs/heads/main\npush a:refs/heads/a\n", False),
        (b"stateless-connect\n", False),
        (b"stateless-connect git upload-pack\n", False),
        (b"option Progress true\n", False),
        (b'option push-option "unterminated\n', False),
        (b'option push-option "bad \\q escape"\n', False),
        (b'option push-option "\\377"\n', False),  # not UTF-8
        (b"capabilities\xff\n", False),
        (b"push refs/heads/a\n", False),  # no colon
        (b"push a:main\n", False),  # not a full ref name
        (b"push a:refs/heads/..x\n", False),
        (b"push -a:refs/heads/a\n", False),  # looks like an option to git
        (b"push +:refs/heads/a\n", False),  # a forced deletion
        (b"push a:refs/heads/a\npush b:refs/heads/a\n", False),  # twice
        (b"push a:refs/heads/a\ncapabilities\n", False),
        (b"\nmore\n", False),
    ],
)
def test_bad_input_is_a_decode_error(data: bytes, eof: bool) -> None:
    with pytest.raises(DecodeError):
        commands(data, eof=eof)


def test_limits() -> None:
    limits = HelperLimits(max_line=64, max_push_refs=2, max_options=2, max_request=64)
    with pytest.raises(DecodeError, match="longer than 64"):
        commands(b"option push-option " + b"x" * 64 + b"\n", helper=RemoteHelper(limits))
    with pytest.raises(DecodeError, match="longer than 64"):  # no LF yet, already too long
        commands(b"x" * 64, helper=RemoteHelper(limits))
    with pytest.raises(DecodeError, match="more than 2 refs"):
        commands(b"push a:refs/heads/a\npush b:refs/heads/b\npush c:refs/heads/c\n", helper=RemoteHelper(limits))
    with pytest.raises(DecodeError, match="more than 2 options"):
        commands(b"option a b\noption a b\noption a b\n", helper=RemoteHelper(limits))
    helper = RemoteHelper(limits)
    helper.receive_data(b"stateless-connect git-upload-pack\n")
    helper.next_command()
    helper.accept()
    helper.receive_data(encode_line("command=fetch") + encode_line("want " + A) * 2 + b"0000")
    with pytest.raises(DecodeError, match="request longer than 64"):
        helper.next_command()


def test_answers_must_fit_the_command() -> None:
    helper = RemoteHelper()
    with pytest.raises(LocalProtocolError):
        helper.capabilities()
    helper.receive_data(b"list\ncapabilities\n")
    assert helper.next_command() == List(for_push=False)
    assert helper.awaiting == List(for_push=False)
    with pytest.raises(LocalProtocolError):
        helper.next_command()  # git waits for the list first
    with pytest.raises(LocalProtocolError):
        helper.option_reply(OK)
    with pytest.raises(LocalProtocolError):
        helper.push_report([])
    assert helper.ref_list({}) == b"\n"
    assert helper.next_command() == Capabilities()


# -- list ----------------------------------------------------------------------


def listed(refs: dict[str, str], **kwargs: str | None) -> bytes:
    helper = RemoteHelper()
    helper.receive_data(b"list for-push\n")
    helper.next_command()
    return helper.ref_list(refs, **kwargs)


def test_ref_list() -> None:
    assert listed({"refs/heads/main": A, "refs/tags/v1": B}, head="refs/heads/main") == (
        f"@refs/heads/main HEAD\n{A} refs/heads/main\n{B} refs/tags/v1\n\n".encode()
    )
    assert listed({"HEAD": A}) == f"{A} HEAD\n\n".encode()  # a detached HEAD
    d = "d" * 64
    assert listed({"refs/heads/main": d}, object_format="sha256") == (
        f":object-format sha256\n{d} refs/heads/main\n\n".encode()
    )


@pytest.mark.parametrize(
    "refs, kwargs",
    [
        ({"refs/heads/main": "A" * 40}, {}),  # upper case
        ({"refs/heads/main": A}, {"object_format": "sha256"}),  # a sha1 oid in a sha256 list
        ({"refs/heads/main": "d" * 64}, {}),
        ({"refs/heads/main": A}, {"object_format": "md5"}),
        ({"main": A}, {}),
        ({"refs/heads/a b": A}, {}),
        ({}, {"head": "refs/heads/\n"}),
    ],
)
def test_ref_list_refuses_what_git_would_misread(refs: dict[str, str], kwargs: dict[str, str]) -> None:
    with pytest.raises(LocalProtocolError):
        listed(refs, **kwargs)


# -- push reports --------------------------------------------------------------


def batch(*dsts: str) -> RemoteHelper:
    helper = RemoteHelper()
    helper.receive_data(b"".join(f"push x:{d}\n".encode() for d in dsts) + b"\n")
    assert isinstance(helper.next_command(), Push)
    return helper


def test_push_report() -> None:
    helper = batch("refs/heads/a", "refs/heads/b", "refs/heads/c", "refs/heads/d", "refs/heads/e")
    report = helper.push_report(
        [
            RefUpdated("refs/heads/a"),
            RefUpdated("refs/heads/b", forced=True),
            RefUnchanged("refs/heads/c"),
            RefRejected("refs/heads/d", Rejection.NON_FAST_FORWARD),
            RefRejected("refs/heads/e", "two\nlines"),
        ]
    )
    assert report == (
        b"ok refs/heads/a\n"
        b"ok refs/heads/b forced update\n"
        b"ok refs/heads/c up to date\n"
        b"error refs/heads/d non-fast forward\n"
        b'error refs/heads/e "two\\nlines"\n'
        b"\n"
    )


def test_a_push_report_covers_every_ref_once() -> None:
    # git prints "Everything up-to-date" and exits 0 for a ref left out.
    helper = batch("refs/heads/a", "refs/heads/b")
    with pytest.raises(LocalProtocolError, match="leaves out"):
        helper.push_report([RefUpdated("refs/heads/a")])
    with pytest.raises(LocalProtocolError):
        helper.push_report([RefUpdated("refs/heads/a"), RefUpdated("refs/heads/a")])
    with pytest.raises(LocalProtocolError):
        helper.push_report([RefUpdated("refs/heads/a"), RefUpdated("refs/heads/b"), RefUpdated("refs/heads/c")])
    assert helper.awaiting is not None  # still waiting for a good report
    helper.push_report([RefUpdated("refs/heads/b"), RefUpdated("refs/heads/a")])
    assert helper.awaiting is None


# -- C quoting ---------------------------------------------------------------


def test_c_quoting_as_git_writes_it() -> None:
    # What git 2.39 sent for `git push -o 'bar "baz' -o 'ünï' -o 'a\b'`.
    assert c_unquote('"bar \\"baz"') == 'bar "baz'
    assert c_unquote('"\\303\\274n\\303\\257"') == "ünï"
    assert c_unquote('"a\\\\b"') == "a\\b"
    assert c_unquote("plain text") == "plain text"
    assert c_quote("plain ünï") == "plain ünï"
    assert c_quote("a\nb\tc\x01") == '"a\\nb\\tc\\001"'
    assert c_quote('"lead') == '"\\"lead"'


@given(st.text())
def test_c_quote_round_trips(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    quoted = c_quote(text)
    assert "\n" not in quoted
    assert c_unquote(quoted) == text if quoted.startswith('"') else quoted == text


@given(st.lists(st.binary(max_size=30) | st.sampled_from(SESSION.splitlines(keepends=True)), max_size=12))
def test_any_input_gives_commands_or_a_decode_error(parts: list[bytes]) -> None:
    helper = RemoteHelper()
    try:
        for part in parts:
            helper.receive_data(part)
            while (command := helper.next_command()) is not None and not isinstance(command, InputEnded):
                if not isinstance(command, StatelessRequest | ServiceData):
                    answer(helper, command)
        helper.receive_eof()
        while not isinstance(helper.next_command(), InputEnded):
            pass
    except DecodeError:
        pass


@given(st.binary(max_size=40))
def test_c_unquote_never_fails_otherwise(raw: bytes) -> None:
    text = '"' + raw.decode("latin-1") + '"'
    try:
        c_unquote(text)
    except DecodeError:
        pass


# -- options -------------------------------------------------------------------


def test_helper_options() -> None:
    options = HelperOptions()
    for name, value, status in [
        ("progress", "true", OptionStatus.OK),
        ("verbosity", "0", OptionStatus.OK),
        ("dry-run", "true", OptionStatus.OK),
        ("atomic", "true", OptionStatus.OK),
        ("object-format", "true", OptionStatus.OK),
        ("force-if-includes", "true", OptionStatus.OK),
        ("push-option", "a", OptionStatus.OK),
        ("push-option", "b", OptionStatus.OK),
        ("cas", f"refs/heads/main:{A}", OptionStatus.OK),
        ("cas", f"refs/heads/new:{'0' * 40}", OptionStatus.OK),
        ("progress", "yes", OptionStatus.ERROR),
        ("verbosity", "-1", OptionStatus.ERROR),
        ("verbosity", "١", OptionStatus.ERROR),  # a digit, but not ASCII
        ("cas", "refs/heads/main", OptionStatus.ERROR),
        ("cas", "main:" + A, OptionStatus.ERROR),
        ("push-option", "a\nb", OptionStatus.ERROR),
        ("pushcert", "true", OptionStatus.UNSUPPORTED),  # git then refuses --signed
        ("depth", "1", OptionStatus.UNSUPPORTED),  # only on the list/fetch path
        ("check-connectivity", "true", OptionStatus.OK),
        ("cloning", "true", OptionStatus.OK),
        ("servpath", "/x", OptionStatus.UNSUPPORTED),
    ]:
        assert options.apply(Option(name, value)).status is status, (name, value)
    assert (options.progress, options.verbosity, options.dry_run, options.atomic, options.object_format) == (
        True,
        0,
        True,
        True,
        True,
    )
    assert options.push_options == ["a", "b"]
    assert options.leases == {"refs/heads/main": A, "refs/heads/new": "0" * 40}


# -- git's push rule -------------------------------------------------------------

MAIN, TAG = "refs/heads/main", "refs/tags/v1"


@pytest.mark.parametrize(
    "spec, kwargs, expected",
    [
        (PushSpec("x", MAIN, False), dict(current=A, new=A), RefUnchanged(MAIN)),
        (PushSpec("x", MAIN, False), dict(current=None, new=A), RefUpdated(MAIN)),
        (PushSpec("x", MAIN, False), dict(current=A, new=B, fast_forward=True), RefUpdated(MAIN)),
        (PushSpec("x", MAIN, False), dict(current=A, new=B), RefRejected(MAIN, Rejection.NON_FAST_FORWARD)),
        (PushSpec("x", MAIN, True), dict(current=A, new=B), RefUpdated(MAIN, forced=True)),
        (PushSpec("x", MAIN, True), dict(current=A, new=B, fast_forward=True), RefUpdated(MAIN)),
        (PushSpec("x", MAIN, False), dict(current=A, new=B, known_locally=False),
         RefRejected(MAIN, Rejection.FETCH_FIRST)),
        (PushSpec("x", MAIN, False), dict(current=A, new=B, commits=False), RefRejected(MAIN, Rejection.NEEDS_FORCE)),
        (PushSpec("x", TAG, False), dict(current=A, new=B, fast_forward=True),
         RefRejected(TAG, Rejection.ALREADY_EXISTS)),
        (PushSpec("x", TAG, True), dict(current=A, new=B), RefUpdated(TAG, forced=True)),
        (PushSpec(None, MAIN, False), dict(current=A, new=None), RefUpdated(MAIN)),
        (PushSpec(None, MAIN, False), dict(current=None, new=None), RefRejected(MAIN, "remote ref does not exist")),
        # --force-with-lease: git sends no '+', the lease decides.
        (PushSpec("x", MAIN, False), dict(current=A, new=B, lease=A), RefUpdated(MAIN, forced=True)),
        (PushSpec("x", MAIN, False), dict(current=C, new=B, lease=A), RefRejected(MAIN, Rejection.STALE_INFO)),
        (PushSpec("x", MAIN, False), dict(current=None, new=B, lease="0" * 40), RefUpdated(MAIN)),
        (PushSpec("x", MAIN, False), dict(current=A, new=B, lease="0" * 40), RefRejected(MAIN, Rejection.STALE_INFO)),
        (PushSpec(None, MAIN, False), dict(current=C, new=None, lease=A), RefRejected(MAIN, Rejection.STALE_INFO)),
        (PushSpec("x", MAIN, True), dict(current=C, new=B, lease=A), RefRejected(MAIN, Rejection.STALE_INFO)),
    ],
)
def test_judge_update_follows_git(spec: PushSpec, kwargs: dict[str, object], expected: object) -> None:
    assert judge_update(spec, **kwargs) == expected  # type: ignore[arg-type]


# -- stateless-connect -----------------------------------------------------------

LS_REFS = encode_line("command=ls-refs") + b"0001" + encode_line("peel") + b"0000"
FETCH = b"0011command=fetch" + encode_line("agent=git/2.39.5") + b"0001" + encode_line(f"want {A}") + b"0000"


def connected(extra: bytes = b"") -> RemoteHelper:
    helper = RemoteHelper()
    helper.receive_data(b"capabilities\nstateless-connect git-upload-pack\n" + extra)
    helper.next_command()
    helper.capabilities()
    assert helper.next_command() == StatelessConnect("git-upload-pack")
    assert helper.accept() == b"\n"
    assert helper.state is HelperState.STATELESS
    return helper


def test_stateless_requests_end_at_a_flush() -> None:
    helper = connected(LS_REFS[:7])  # bytes that came with the command line
    assert helper.next_command() is None
    helper.receive_data(LS_REFS[7:] + FETCH)
    assert helper.next_command() == StatelessRequest("ls-refs", LS_REFS)
    assert helper.next_command() == StatelessRequest("fetch", FETCH)
    assert helper.next_command() is None
    helper.receive_eof()  # git closes after its last response: no blank line
    assert helper.next_command() == InputEnded()
    assert helper.state is HelperState.ENDED


def test_a_request_split_anywhere() -> None:
    data = LS_REFS + FETCH
    for cut in range(len(data)):
        helper = connected()
        helper.receive_data(data[:cut])
        got = []
        while (r := helper.next_command()) is not None:
            got.append(r)
        helper.receive_data(data[cut:])
        while (r := helper.next_command()) is not None:
            got.append(r)
        assert [r.command for r in got if isinstance(r, StatelessRequest)] == ["ls-refs", "fetch"], cut


@pytest.mark.parametrize(
    "data",
    [
        LS_REFS[:-4],  # cut before its flush
        encode_line("peel") + b"0000",  # no command
        b"0001" + LS_REFS,
        encode_line("command=Fetch") + b"0000",
        b"zzzz",
    ],
)
def test_bad_stateless_input(data: bytes) -> None:
    helper = connected(data)
    helper.receive_eof()
    with pytest.raises(DecodeError):
        while not isinstance(helper.next_command(), InputEnded):
            pass


def test_fall_back_stays_on_commands() -> None:
    helper = RemoteHelper()
    helper.receive_data(b"stateless-connect git-upload-archive\nlist\n")
    assert helper.next_command() == StatelessConnect("git-upload-archive")
    assert helper.fall_back() == b"fallback\n"
    assert helper.next_command() == List(for_push=False)


def test_connect_passes_the_service_bytes() -> None:
    helper = RemoteHelper()
    helper.receive_data(b"connect git-receive-pack\n0000")
    assert helper.next_command() == Connect("git-receive-pack")
    helper.accept()
    assert helper.state is HelperState.CONNECTED
    assert helper.next_command() == ServiceData(b"0000")
    helper.receive_data(b"more")
    assert helper.next_command() == ServiceData(b"more")
    helper.receive_eof()
    assert helper.next_command() == InputEnded()


# -- the response tracker ----------------------------------------------------------

RESPONSE = (
    encode_line("packfile")
    + b"0005\x02"
    + encode_line("\x02Enumerating objects: 3, done.")
    + b"0009\x01PACK"
    + b"0000"
)


def test_tracker_gives_the_response_end_after_a_clean_response() -> None:
    for cut in range(len(RESPONSE) + 1):
        tracker = ResponseTracker()
        tracker.receive_data(RESPONSE[:cut])
        tracker.receive_data(RESPONSE[cut:])
        assert tracker.end() == b"0002"
        assert tracker.size == len(RESPONSE)
    byte_by_byte = ResponseTracker()
    for b in RESPONSE:
        byte_by_byte.receive_data(bytes([b]))
    assert byte_by_byte.end() == b"0002"


@pytest.mark.parametrize("cut", [1, 2, 6, len(RESPONSE) - 4, len(RESPONSE) - 2])
def test_tracker_refuses_a_cut_response(cut: int) -> None:
    tracker = ResponseTracker()
    tracker.receive_data(RESPONSE[:cut])
    with pytest.raises(DecodeError):
        tracker.end()


@pytest.mark.parametrize("data", [b"00zz", b"0003", b"fff1"])
def test_tracker_refuses_bad_lengths(data: bytes) -> None:
    with pytest.raises(DecodeError):
        ResponseTracker().receive_data(data)


def test_the_core_does_not_import_trio() -> None:
    from tests.test_layers import ALL_IMPORTS, TRIO, trio_violations

    assert trio_violations(ALL_IMPORTS, TRIO, ["guts.repo.remote_helper"]) == []
    code = "import sys, guts.repo.remote_helper; print('trio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# == real git ====================================================================


@dataclass
class World:
    """A PATH with git-remote-gutstest, a quiet git configuration, and a
    bare upstream repository with branches, tags and a merge."""

    root: Path
    env: dict[str, str]
    upstream: Path
    log: Path

    def git(
        self, *args: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}:\n{done.stdout}\n{done.stderr}")
        return done

    def refs(self, repo: Path) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", env={"GIT_DIR": str(repo)}).stdout
        return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}

    def copy(self, name: str) -> Path:
        path = self.root / name
        shutil.copytree(self.upstream, path)
        return path

    def commit(self, repo: Path, ref: str, message: str, *, parent: str | None = None) -> str:
        """A new commit on ``ref`` of a bare repository (a file changed)."""
        env = {"GIT_DIR": str(repo)}
        parent = parent or self.git("rev-parse", ref, env=env).stdout.strip()
        tree = self.git("rev-parse", f"{parent}^{{tree}}", env=env).stdout.strip()
        index = self.root / f"index-{message}"
        env_i = {**env, "GIT_INDEX_FILE": str(index)}
        self.git("read-tree", tree, env=env_i)
        content = subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], input=(message * 20).encode(),
            env={**self.env, **env}, capture_output=True, check=True,
        ).stdout.decode().strip()
        self.git("update-index", "--add", "--cacheinfo", f"100644,{content},{message}.txt", env=env_i)
        new_tree = self.git("write-tree", env=env_i).stdout.strip()
        oid = self.git("commit-tree", new_tree, "-p", parent, "-m", message, env=env).stdout.strip()
        self.git("update-ref", ref, oid, env=env)
        return oid

    def logged(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return entries


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("remote-helper")
    home, bin_dir = root / "home", root / "bin"
    home.mkdir()
    bin_dir.mkdir()
    launcher = bin_dir / "git-remote-gutstest"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(HERE.parent)!r})\n"
        f"runpy.run_path({str(FIXTURE)!r}, run_name='__main__')\n"
    )
    launcher.chmod(0o755)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = A U Thor\n\temail = author@example.com\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_DATE="1600000000 +0000",
        GIT_COMMITTER_DATE="1600000000 +0000",
        GUTSTEST_LOG=str(root / "helper.log"),
        LC_ALL="C",
    )
    world = World(root, env, root / "upstream.git", root / "helper.log")
    work = root / "work"
    world.git("init", "-q", str(work))
    script = [
        ("commit", "one"), ("tag", "-a", "v1.0", "-m", "first"), ("commit", "two"),
        ("checkout", "-q", "-b", "topic"), ("commit", "t1"), ("commit", "t2"),
        ("checkout", "-q", "main"), ("commit", "three"), ("tag", "light"),
        ("merge", "-q", "--no-ff", "topic", "-m", "merge topic"), ("tag", "-a", "v2.0", "-m", "second"),
        ("checkout", "-q", "-b", "feature"), ("commit", "f1"), ("checkout", "-q", "main"),
    ]  # fmt: skip
    for step in script:
        if step[0] == "commit":
            (work / f"{step[1]}.txt").write_text(step[1] * 50 + "\n")
            world.git("add", ".", cwd=work)
            world.git("commit", "-q", "-m", step[1], cwd=work)
        else:
            world.git(*step, cwd=work)
    world.git("clone", "-q", "--bare", str(work), str(world.upstream))
    yield world


def clone(world: World, name: str, source: Path | None = None, *args: str) -> Path:
    dest = world.root / name
    world.git("clone", "-q", *args, f"gutstest::{source or world.upstream}", str(dest))
    return dest


def test_clone_gets_every_branch_and_tag(world: World) -> None:
    dest = clone(world, "clone")
    upstream = world.refs(world.upstream)
    assert set(upstream) == {"refs/heads/main", "refs/heads/topic", "refs/heads/feature",
                             "refs/tags/v1.0", "refs/tags/light", "refs/tags/v2.0"}  # fmt: skip
    mine = world.refs(dest / ".git")
    for name, oid in upstream.items():
        local = name.replace("refs/heads/", "refs/remotes/origin/")
        assert mine[local] == oid, name
    assert world.git("symbolic-ref", "refs/remotes/origin/HEAD", cwd=dest).stdout.strip() == "refs/remotes/origin/main"
    parents = world.git("rev-list", "--parents", "-1", "--merges", "main", cwd=dest).stdout.split()
    assert len(parents) == 3  # the merge arrived whole
    world.git("fsck", "--strict", "--no-dangling", cwd=dest)
    assert [e["command"] for e in world.logged()] == ["ls-refs", "fetch"]


def test_fetch_moves_a_pack_as_small_as_gits(world: World) -> None:
    upstream = world.copy("fetch-upstream.git")
    ours = clone(world, "fetch-ours", upstream)
    theirs = world.root / "fetch-theirs"
    world.git("clone", "-q", f"file://{upstream}", str(theirs))
    full = sum(e["response"] for e in world.logged() if e["command"] == "fetch")  # type: ignore[misc]
    new = world.commit(upstream, "refs/heads/main", "four")

    world.git("fetch", "-q", cwd=ours, env={"GIT_TRACE_PACKFILE": str(world.root / "ours.pack")})
    world.git("fetch", "-q", cwd=theirs, env={"GIT_TRACE_PACKFILE": str(world.root / "theirs.pack")})
    assert world.git("rev-parse", "origin/main", cwd=ours).stdout.strip() == new
    ours_pack = (world.root / "ours.pack").read_bytes()
    theirs_pack = (world.root / "theirs.pack").read_bytes()
    assert ours_pack == theirs_pack  # the same negotiation, the same pack
    assert len(ours_pack) < 1024 < full
    log = world.logged()
    assert [e["command"] for e in log] == ["ls-refs", "fetch"]

    # Nothing new: only the ref listing goes over.
    world.git("fetch", "-q", cwd=ours)
    assert [e["command"] for e in world.logged()] == ["ls-refs"]
    world.git("fsck", "--strict", "--no-dangling", cwd=ours)


def test_progress_is_relayed_only_when_asked(world: World) -> None:
    loud = world.git("clone", "--progress", f"gutstest::{world.upstream}", str(world.root / "loud"))
    assert "remote: Enumerating objects" in loud.stderr
    assert "remote: Total" in loud.stderr
    assert "Receiving objects: 100%" in loud.stderr
    quiet = world.git("clone", "--no-progress", f"gutstest::{world.upstream}", str(world.root / "quiet"))
    assert "remote:" not in quiet.stderr and "Receiving" not in quiet.stderr
    world.logged()


def test_sha256(world: World) -> None:
    work = world.root / "work256"
    world.git("init", "-q", "--object-format=sha256", str(work))
    (work / "a.txt").write_text("a\n")
    world.git("add", ".", cwd=work)
    world.git("commit", "-q", "-m", "a", cwd=work)
    bare = world.root / "up256.git"
    world.git("clone", "-q", "--bare", str(work), str(bare))
    oid = world.refs(bare)["refs/heads/main"]
    # Outside any repository git assumes sha1; the v2 advertisement says sha256.
    listed = world.git("ls-remote", f"gutstest::{bare}", cwd=world.root).stdout
    assert f"{oid}\trefs/heads/main" in listed
    dest = clone(world, "clone256", bare)
    assert world.git("rev-parse", "--show-object-format", cwd=dest).stdout.strip() == "sha256"
    world.git("commit", "-q", "--allow-empty", "-m", "b", cwd=dest)
    pushed = world.git("push", "origin", "main", cwd=dest)
    assert "main -> main" in pushed.stderr
    assert world.refs(bare)["refs/heads/main"] == world.git("rev-parse", "HEAD", cwd=dest).stdout.strip()
    world.logged()


def test_a_mismatched_object_format_is_refused(world: World) -> None:
    empty256 = world.root / "empty256.git"
    world.git("init", "-q", "--bare", "--object-format=sha256", str(empty256))
    source = clone(world, "sha1-source")
    refused = world.git("push", f"gutstest::{empty256}", "main", cwd=source, check=False)
    assert refused.returncode != 0
    assert "object format mismatch" in refused.stderr
    assert world.refs(empty256) == {}


def test_a_response_cut_short_fails_the_clone_without_a_hang(world: World) -> None:
    """The server dies mid-pack: the tracker withholds the ``0002``, the
    helper exits, and git reports an error instead of waiting forever."""
    dest = world.root / "cut"
    done = world.git("clone", f"gutstest::{world.upstream}", str(dest), check=False,
                     env={"GUTSTEST_CUT_FETCH": "300"})  # fmt: skip
    assert done.returncode != 0
    assert "gutstest: upload-pack's response is cut" in done.stderr
    assert not dest.exists()  # git cleaned up after itself
    world.logged()


def test_protocol_v0_is_refused_with_the_reason(world: World) -> None:
    done = world.git("-c", "protocol.version=0", "clone", f"gutstest::{world.upstream}", str(world.root / "v0"),
                     check=False)  # fmt: skip
    assert done.returncode != 0
    assert "protocol version 2" in done.stderr


def test_git_v2_serves_any_object_by_oid(world: World) -> None:
    """Why a serving node must check ``want`` lines itself: git 2.39's v2
    upload-pack hands out an object no ref reaches to anyone naming it
    (v0 refuses: "not our ref")."""
    upstream = world.copy("dangling.git")
    tree = world.git("rev-parse", "main^{tree}", env={"GIT_DIR": str(upstream)}).stdout.strip()
    secret = world.git("commit-tree", tree, "-m", "unreachable", env={"GIT_DIR": str(upstream)}).stdout.strip()
    dest = world.root / "dangling-fetch"
    world.git("init", "-q", str(dest))
    world.git("fetch", "-q", f"gutstest::{upstream}", secret, cwd=dest)
    assert world.git("cat-file", "-t", secret, cwd=dest).stdout.strip() == "commit"
    v0 = world.git("-c", "protocol.version=0", "fetch", f"file://{upstream}", secret, cwd=world.root / "clone",
                   check=False)  # fmt: skip
    assert "not our ref" in v0.stderr or "unadvertised object" in v0.stderr
    world.logged()


# -- push -------------------------------------------------------------------------


@pytest.fixture
def pair(world: World, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """A fresh copy of the upstream repository and a clone of it."""
    name = request.node.name.replace("[", "-").replace("]", "")
    remote = world.copy(f"{name}.git")
    local = clone(world, name, remote)
    world.logged()
    return remote, local


def push(world: World, local: Path, *args: str, hook: str | None = None) -> subprocess.CompletedProcess[str]:
    """``git push`` from ``local``; ``hook`` runs in the remote repository
    after the pack arrived, before the helper judges the refs."""
    return world.git("push", *args, cwd=local, check=False, env={"GUTSTEST_BEFORE_PUSH": hook} if hook else None)


def no_quarantine_left(remote: Path) -> bool:
    return not list((remote / "objects").glob("incoming-*"))


def test_push_a_new_commit(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    old = world.refs(remote)["refs/heads/main"]
    world.git("commit", "-q", "--allow-empty", "-m", "pushed", cwd=local)
    new = world.git("rev-parse", "HEAD", cwd=local).stdout.strip()
    done = push(world, local, "--progress", "origin", "main")
    assert done.returncode == 0, done.stderr
    assert f"   {old[:7]}..{new[:7]}  main -> main" in done.stderr
    assert "Writing objects: 100%" in done.stderr  # pack-objects' own progress
    assert world.refs(remote)["refs/heads/main"] == new
    world.git("fsck", "--strict", "--no-dangling", env={"GIT_DIR": str(remote)})
    assert no_quarantine_left(remote)
    world.git("commit", "-q", "--allow-empty", "-m", "again", cwd=local)
    done = push(world, local, "-q", "origin", "main")
    assert done.returncode == 0 and done.stderr == ""
    assert world.logged()[-1] == {"push": [["RefUpdated", "refs/heads/main"]]}


def test_push_into_an_empty_repository(world: World, pair: tuple[Path, Path]) -> None:
    _, local = pair
    empty = world.root / "empty.git"
    world.git("init", "-q", "--bare", str(empty))
    done = push(world, local, f"gutstest::{empty}", "main", "v1.0")
    assert done.returncode == 0, done.stderr
    assert " * [new branch]      main -> main" in done.stderr
    assert " * [new tag]         v1.0 -> v1.0" in done.stderr
    world.git("fsck", "--strict", "--no-dangling", env={"GIT_DIR": str(empty)})


def test_a_non_fast_forward_is_refused_as_git_refuses_it(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    before = world.refs(remote)
    world.git("reset", "-q", "--hard", "HEAD~1", cwd=local)
    world.git("commit", "-q", "--allow-empty", "-m", "diverged", cwd=local)
    done = push(world, local, "origin", "main")
    assert done.returncode == 1
    assert " ! [rejected]        main -> main (non-fast-forward)" in done.stderr
    assert "hint: Updates were rejected because the tip of your current branch is behind" in done.stderr
    assert world.refs(remote) == before
    assert world.logged() == []  # git refused it itself, from `list for-push`

    # --force is accepted, and git marks it forced.
    done = push(world, local, "--force", "origin", "main")
    assert done.returncode == 0, done.stderr
    new = world.git("rev-parse", "HEAD", cwd=local).stdout.strip()
    assert f" + {before['refs/heads/main'][:7]}...{new[:7]} main -> main (forced update)" in done.stderr
    assert world.refs(remote)["refs/heads/main"] == new


def test_the_helper_refuses_a_non_fast_forward_git_could_not_see(world: World, pair: tuple[Path, Path]) -> None:
    """Another push lands between ``list for-push`` and ours: the helper's
    own check (:func:`judge_update`) answers, and git prints its usual
    rejection from that answer."""
    remote, local = pair
    main = world.refs(remote)["refs/heads/main"]
    feature = world.refs(remote)["refs/heads/feature"]  # known here, not an ancestor of ours
    world.git("commit", "-q", "--allow-empty", "-m", "mine", cwd=local)
    move = f"git update-ref refs/heads/main {feature}"
    done = push(world, local, "origin", "main", hook=move)
    assert done.returncode == 1
    assert " ! [rejected]        main -> main (non-fast-forward)" in done.stderr
    assert world.refs(remote)["refs/heads/main"] == feature
    assert no_quarantine_left(remote)

    # A commit this repository has never seen: git's advice is to fetch first.
    world.git("update-ref", "refs/heads/main", main, env={"GIT_DIR": str(remote)})
    stranger = world.commit(remote, "refs/heads/side", "stranger", parent=feature)
    move = f"git update-ref refs/heads/main {stranger}"
    done = push(world, local, "origin", "main", hook=move)
    assert " ! [rejected]        main -> main (fetch first)" in done.stderr
    assert "hint: Updates were rejected because the remote contains work that you do" in done.stderr


def test_force_with_lease(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    world.git("reset", "-q", "--hard", "HEAD~1", cwd=local)
    world.git("commit", "-q", "--allow-empty", "-m", "rewritten", cwd=local)
    new = world.git("rev-parse", "HEAD", cwd=local).stdout.strip()
    # The lease holds when we push, but someone moves main in between.
    other = world.commit(remote, "refs/heads/other", "other", parent=world.refs(remote)["refs/heads/main"])
    done = push(world, local, "--force-with-lease", "origin", "main",
                hook=f"git update-ref refs/heads/main {other}")  # fmt: skip
    assert " ! [rejected]        main -> main (stale info)" in done.stderr
    assert world.refs(remote)["refs/heads/main"] == other
    world.git("fetch", "-q", "origin", cwd=local)
    done = push(world, local, "--force-with-lease", "origin", "main")
    assert done.returncode == 0, done.stderr
    assert "(forced update)" in done.stderr
    assert world.refs(remote)["refs/heads/main"] == new


def test_tags(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    world.git("tag", "-a", "v3.0", "-m", "third", cwd=local)
    tag = world.git("rev-parse", "v3.0", cwd=local).stdout.strip()
    done = push(world, local, "origin", "v3.0")
    assert " * [new tag]         v3.0 -> v3.0" in done.stderr
    assert world.refs(remote)["refs/tags/v3.0"] == tag
    assert world.git("cat-file", "-t", tag, env={"GIT_DIR": str(remote)}).stdout.strip() == "tag"
    # Moving a tag needs --force, as with any git remote.
    world.git("tag", "-f", "-a", "v3.0", "-m", "moved", "HEAD~1", cwd=local)
    done = push(world, local, "origin", "v3.0")
    assert " ! [rejected]        v3.0 -> v3.0 (already exists)" in done.stderr
    done = push(world, local, "--force", "origin", "v3.0")
    assert done.returncode == 0, done.stderr
    assert world.refs(remote)["refs/tags/v3.0"] == world.git("rev-parse", "v3.0", cwd=local).stdout.strip()


def test_delete_a_branch(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    done = push(world, local, "origin", ":feature")
    assert done.returncode == 0, done.stderr
    assert " - [deleted]         feature" in done.stderr
    assert "refs/heads/feature" not in world.refs(remote)
    done = push(world, local, "origin", ":nothing")
    assert "error: unable to delete 'nothing': remote ref does not exist" in done.stderr


def test_atomic_and_dry_run(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    before = world.refs(remote)
    world.git("commit", "-q", "--allow-empty", "-m", "a", cwd=local)
    world.git("branch", "new-one", cwd=local)
    done = push(world, local, "--dry-run", "origin", "main", "new-one")
    assert done.returncode == 0, done.stderr
    assert "main -> main" in done.stderr and "[new branch]      new-one -> new-one" in done.stderr
    assert world.refs(remote) == before and no_quarantine_left(remote)

    # One ref refused makes the whole atomic push refused.
    feature = before["refs/heads/feature"]
    done = push(world, local, "--atomic", "origin", "main", "new-one",
                hook=f"git update-ref refs/heads/main {feature}")  # fmt: skip
    assert done.returncode == 1
    assert "main -> main (non-fast-forward)" in done.stderr
    assert "new-one -> new-one (atomic push failed)" in done.stderr
    assert "refs/heads/new-one" not in world.refs(remote)


def test_push_options_are_accepted(world: World, pair: tuple[Path, Path]) -> None:
    remote, local = pair
    world.git("commit", "-q", "--allow-empty", "-m", "o", cwd=local)
    refused = push(world, local, "--signed", "origin", "main")
    assert "does not support --signed" in refused.stderr
    done = push(world, local, "-o", "ci.skip", "-o", 'a "quoted" ünï', "origin", "main")
    assert done.returncode == 0, done.stderr


# -- a node's own fetch into a quarantine --------------------------------------------


def quarantine(world: World, repo: Path) -> tuple[Path, dict[str, str]]:
    path = Path(os.path.realpath(repo / "objects" / "incoming-test"))
    (path / "pack").mkdir(parents=True)
    env = {
        "GIT_DIR": str(repo),
        "GIT_OBJECT_DIRECTORY": str(path),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo / "objects"),
        "GIT_QUARANTINE_PATH": str(path),
    }
    return path, env


def objects_in(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def test_node_fetch_with_git_fetch_into_a_quarantine(world: World) -> None:
    """``git fetch`` through the helper, with the quarantine's variables: no
    ref, no FETCH_HEAD, no followed tag, objects only in the quarantine;
    and ``GIT_QUARANTINE_PATH`` refuses any ref update a refspec asks for."""
    node = world.root / "node-a.git"
    world.git("init", "-q", "--bare", str(node))
    path, env = quarantine(world, node)
    main = world.refs(world.upstream)["refs/heads/main"]
    url = f"gutstest::{world.upstream}"
    quiet = ["--no-write-fetch-head", "--no-tags", "--refmap=", "--no-auto-maintenance", "--no-recurse-submodules"]
    world.git("fetch", "-q", *quiet, url, main, env=env)
    assert world.refs(node) == {}
    assert not (node / "FETCH_HEAD").exists()
    assert objects_in(path) > 0 and objects_in(node / "objects" / "pack") == 0
    world.git("cat-file", "-e", main, env=env)

    refused = world.git("fetch", "--no-write-fetch-head", url, "refs/heads/main:refs/heads/main", check=False, env=env)
    assert refused.returncode != 0
    assert "ref updates forbidden inside quarantine environment" in refused.stderr
    assert world.refs(node) == {}
    world.logged()


def test_node_fetch_with_fetch_pack_over_stateless_rpc(world: World) -> None:
    """``git fetch-pack --stateless-rpc`` speaks exactly what
    stateless-connect carries on its stdin and stdout: the node can pump
    requests to a peer's upload-pack and responses back (adding ``0002``)
    with no helper process, and fetch-pack writes no ref."""
    node = world.root / "node-b.git"
    world.git("init", "-q", "--bare", str(node))
    path, env = quarantine(world, node)
    main = world.refs(world.upstream)["refs/heads/main"]
    serve_env = {**world.env, "GIT_PROTOCOL": "version=2"}
    # --lock-pack, as git's own remote-curl passes it: without it, git
    # 2.39's fetch-pack --stateless-rpc crashes (SIGSEGV) when it keeps a
    # pack with fetch.fsckObjects on.
    fetch_pack = subprocess.Popen(
        ["git", "-c", "fetch.fsckObjects=true", "-c", "fetch.unpackLimit=1",
         "fetch-pack", "--stateless-rpc", "--lock-pack", "--thin", "--no-progress", "peer", main],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**world.env, **env},
    )  # fmt: skip
    assert fetch_pack.stdin is not None and fetch_pack.stdout is not None
    advertisement = subprocess.run(
        ["git", "upload-pack", "--advertise-refs", "--stateless-rpc", str(world.upstream)],
        env=serve_env, capture_output=True, check=True,
    ).stdout  # fmt: skip
    fetch_pack.stdin.write(advertisement)
    fetch_pack.stdin.flush()
    decoder, request, commands = PktLineDecoder(), b"", []
    while chunk := os.read(fetch_pack.stdout.fileno(), 65536):
        decoder.receive_data(chunk)
        while (packet := decoder.next_packet()) is not None:
            request += encode_packet(packet)
            if isinstance(packet, DataPacket) and packet.line().startswith(b"command="):
                commands.append(packet.line().decode())
            if packet == FLUSH:
                response = subprocess.run(
                    ["git", "upload-pack", "--stateless-rpc", str(world.upstream)],
                    input=request, env=serve_env, capture_output=True, check=True,
                ).stdout  # fmt: skip
                tracker = ResponseTracker()
                tracker.receive_data(response)
                fetch_pack.stdin.write(response + tracker.end())
                fetch_pack.stdin.flush()
                request = b""
    assert fetch_pack.wait(timeout=30) == 0, fetch_pack.stderr.read() if fetch_pack.stderr else ""
    assert commands == ["command=ls-refs", "command=fetch"]
    assert world.refs(node) == {}
    packs = sorted(p.suffix for p in (path / "pack").iterdir())
    assert packs == [".idx", ".keep", ".pack"]  # the .keep must not migrate
    world.git("cat-file", "-e", main, env=env)
