"""guts.sync's pure parts: the messages of proto/sync.proto (round trips,
bounds, and hypothesis on every decoder: DecodeError or a value, nothing
else) and the rules an upload-pack request must pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guts.errors import DecodeError
from guts.repo.pktline import encode_line
from guts.sync import (
    filter_ls_refs,
    ADVERTISEMENT,
    GetObjects,
    GetRefs,
    Objects,
    Refs,
    Refused,
    RefusedReason,
    SyncConfig,
    check_upload_request,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

CONFIG = SyncConfig(max_request=4096, max_refs_message=1 << 16, max_namespaces=4)
A, B, C = "a" * 40, "b" * 40, "c" * 40
RID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


@pytest.mark.parametrize("request_", [GetRefs(RID), GetObjects(RID, b"0000"), GetObjects(RID, b"")])
def test_requests_round_trip(request_: GetRefs | GetObjects) -> None:
    assert decode_request(encode_request(request_), CONFIG) == request_


@pytest.mark.parametrize(
    "response",
    [Refs((b"rev",), (b"st1", b"st2"), (A, B)), Refs((), (), ()), Objects(), Refused(RefusedReason.BUSY, "later")],
)
def test_responses_round_trip(response: Refs | Objects | Refused) -> None:
    assert decode_response(encode_response(response), CONFIG) == response


def test_bounds() -> None:
    with pytest.raises(DecodeError, match="limit"):
        decode_request(encode_request(GetObjects(RID, b"x" * 5000)), CONFIG)
    with pytest.raises(DecodeError, match="statements"):
        decode_response(encode_response(Refs((), (b"s",) * 5, (A,) * 5)), CONFIG)
    with pytest.raises(DecodeError, match="sigrefs"):
        decode_response(encode_response(Refs((), (b"s",), ())), CONFIG)
    with pytest.raises(DecodeError, match="sigrefs"):
        decode_response(encode_response(Refs((), (b"s",), ("xyz",))), CONFIG)
    with pytest.raises(DecodeError, match="rid"):
        decode_request(encode_request(GetRefs("b" * 300)), CONFIG)
    with pytest.raises(DecodeError, match="no known kind"):
        decode_request(b"", CONFIG)
    assert decode_response(encode_response(Refused(RefusedReason.BUSY, "x" * 5000)), CONFIG) == Refused(
        RefusedReason.BUSY, "x" * 1000
    )


@given(st.binary(max_size=300))
def test_decoders_raise_only_decode_error(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        try:
            decode(data, CONFIG)
        except DecodeError:
            pass


def request(*capabilities: str, args: tuple[str, ...] = (), tail: bytes = b"0000") -> bytes:
    body = b"".join(encode_line(line) for line in capabilities)
    if args:
        body += b"0001" + b"".join(encode_line(line) for line in args)
    return body + tail


FETCH = ("command=fetch", "agent=git/2.39.5", "object-format=sha1")


def test_fetch_requests_that_pass() -> None:
    got = check_upload_request(
        request(*FETCH, args=(f"want {A}", "thin-pack", "ofs-delta", "no-progress", f"have {C}", "done")), {A, B}, 4096
    )
    assert got.command == "fetch" and got.wants == (A,)
    ls = check_upload_request(request("command=ls-refs", args=("peel", "symrefs", "ref-prefix refs/heads/")), {A}, 4096)
    assert ls.command == "ls-refs" and ls.wants == ()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (request(*FETCH, args=(f"want {C}",)), "no signed statement lists it"),
        (request(*FETCH, args=("want-ref refs/heads/main",)), "not served"),
        (request(*FETCH, args=(f"shallow {A}",)), "not served"),
        (request(*FETCH, args=("deepen 1",)), "not served"),
        (request(*FETCH, args=("filter blob:none",)), "not served"),
        (request(*FETCH, args=(f"want {A.upper()}",)), "not served"),
        (request("command=push"), "not served"),
        (request("command=fetch", "command=fetch"), "two commands"),
        (request("server-option=x", "command=fetch"), "not served"),
        (request("command=fetch", "object-format=sha256"), "not served"),
        (request("agent=x"), "without a command"),
        (request(*FETCH, args=(f"want {A}",), tail=b""), "does not end with a flush"),
        (request(*FETCH, args=(f"want {A}",), tail=b"00000000"), "after the upload request"),
        (request(*FETCH, args=(f"want {A}",), tail=b"0001"), "two delimiters"),
        (request("command=ls-refs", args=("unknown",)), "not served"),
        (b"zzzz", None),
        (request(*FETCH, args=("have x" * 2000,)), "limit"),
    ],
)
def test_fetch_requests_refused(data: bytes, why: str | None) -> None:
    with pytest.raises(DecodeError, match=why):
        check_upload_request(data, {A, B}, 4096)


def test_the_advertisement_is_protocol_v2() -> None:
    assert ADVERTISEMENT.startswith(b"000eversion 2\n") and ADVERTISEMENT.endswith(b"0000")


@given(st.binary(max_size=200))
def test_check_raises_only_decode_error(data: bytes) -> None:
    try:
        check_upload_request(data, {A}, 4096)
    except DecodeError:
        pass


def test_ls_refs_says_what_the_verified_state_says() -> None:
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    response = b"".join(
        encode_line(line)
        for line in (
            f"{a} HEAD symref-target:refs/heads/main",
            f"{a} refs/heads/main",
            f"{c} refs/heads/moved-by-hand",  # no signature covers it
            f"{b} refs/tags/v1 peeled:{c}",
            f"{c} refs/heads/topic",  # on disk c, signed b
        )
    ) + b"0000"
    refs = {"refs/heads/main": a, "refs/tags/v1": b, "refs/heads/topic": b}
    assert filter_ls_refs(response, refs) == b"".join(
        encode_line(line)
        for line in (
            f"{a} HEAD symref-target:refs/heads/main",
            f"{a} refs/heads/main",
            f"{b} refs/tags/v1 peeled:{c}",
            f"{b} refs/heads/topic",
        )
    ) + b"0000"
    # HEAD follows its branch's signed value; an unborn HEAD stays.
    moved = encode_line(f"{c} HEAD symref-target:refs/heads/main") + b"0000"
    assert filter_ls_refs(moved, refs) == encode_line(f"{a} HEAD symref-target:refs/heads/main") + b"0000"
    unborn = encode_line("unborn HEAD symref-target:refs/heads/main") + b"0000"
    assert filter_ls_refs(unborn, {}) == unborn
    with pytest.raises(DecodeError):
        filter_ls_refs(encode_line(f"{a} refs/heads/main"), refs)  # no flush
