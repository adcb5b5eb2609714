"""What a peer may ask of our ``git upload-pack``: one protocol v2
stateless request, checked before git sees it. Pure; no trio.

git's protocol v2 ``upload-pack`` serves any object by its oid (it has no
notion of which objects are signed), so the serving node checks every
request itself:

- capability lines: exactly one ``command=``, either ``fetch`` or
  ``ls-refs``; ``agent=``, ``session-id=`` and ``object-format=sha1``
  are allowed; anything else (``server-option``, another object format)
  is refused.
- ``fetch`` arguments: ``want <oid>`` only for an oid some verified
  statement of the repository lists (its namespace refs; canonical refs
  are among them) or a namespace's sigrefs commit (the chain of its
  statements, for a node that lacks the earlier ones), ``have <oid>``, ``done``, ``thin-pack``,
  ``no-progress``, ``include-tag``, ``ofs-delta``. Refused: ``want-ref``
  (it names refs, not signed oids), ``shallow`` and ``deepen*`` (a
  shallow copy cannot be checked for connectivity), ``filter``,
  ``packfile-uris``, ``sideband-all``, and anything unknown.
- ``ls-refs`` arguments: ``peel``, ``symrefs``, ``unborn``,
  ``ref-prefix <prefix>``. git answers ``ls-refs`` from the refs on disk,
  which a hand edit (or a crash the next start repairs) can move away
  from the verified state; :func:`filter_ls_refs` makes the answer say
  what the verified state says, so nothing unsigned is ever listed.
- the request ends with its flush, and nothing follows it.

The identity chain's commits are not served: the fetching node rebuilds
them byte for byte from the revisions ``GetRefs`` carries
(:mod:`guts.repo.layout`), and a sigrefs commit too when it holds the
statement before.

The fetching side answers ``git fetch-pack``'s first read with
:data:`ADVERTISEMENT`, a fixed capability advertisement of the features
allowed here, instead of asking the peer for git's own: no round trip, and
fetch-pack then asks only for what this module accepts.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass

from guts.errors import DecodeError
from guts.repo.pktline import (
    DataPacket,
    DelimPacket,
    FlushPacket,
    Packet,
    PktLineDecoder,
    encode_line,
    encode_packets,
)

__all__ = ["ADVERTISEMENT", "UploadRequest", "check_upload_request", "filter_ls_refs"]

#: The protocol v2 capability advertisement fetch-pack reads first.
ADVERTISEMENT: bytes = (
    b"".join(encode_line(line) for line in ("version 2", "agent=guts/1", "ls-refs", "fetch", "object-format=sha1"))
    + encode_packets([FlushPacket()])
)

_OID = re.compile(rb"[0-9a-f]{40}")
_CAPABILITY = (b"agent=", b"session-id=")
_FETCH_FLAGS = frozenset({b"done", b"thin-pack", b"no-progress", b"include-tag", b"ofs-delta"})
_LS_REFS_FLAGS = frozenset({b"peel", b"symrefs", b"unborn"})


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A request that passed: its command and the oids it wants."""

    command: str
    wants: tuple[str, ...]


def check_upload_request(request: bytes, signed: Container[str], max_size: int) -> UploadRequest:
    """Check one stateless upload-pack request (module docstring).

    Args:
        request: the pkt-lines, ending in a flush.
        signed: the oids a ``want`` may name.
        max_size: the largest request accepted.

    Raises:
        DecodeError: the request breaks a rule; its message says which.
    """
    if len(request) > max_size:
        raise DecodeError(f"an upload request of {len(request)} bytes (limit {max_size})")
    decoder = PktLineDecoder()
    decoder.receive_data(request)
    command: bytes | None = None
    section = "capabilities"
    wants: list[str] = []
    while True:
        packet = decoder.next_packet()
        if packet is None:
            raise DecodeError("the upload request does not end with a flush")
        if isinstance(packet, FlushPacket):
            break
        if isinstance(packet, DelimPacket):
            if section != "capabilities":
                raise DecodeError("two delimiters in the upload request")
            section = "arguments"
            continue
        if not isinstance(packet, DataPacket):
            raise DecodeError("a response-end packet in the upload request")
        line = packet.line()
        if section == "capabilities":
            if line.startswith(b"command="):
                if command is not None:
                    raise DecodeError("two commands in the upload request")
                command = line[len(b"command="):]
                if command not in (b"fetch", b"ls-refs"):
                    raise DecodeError(f"command {command[:40]!r} is not served")
            elif line == b"object-format=sha1" or line.startswith(_CAPABILITY):
                pass
            else:
                raise DecodeError(f"capability {line[:60]!r} is not served")
        elif command == b"fetch":
            want = _fetch_argument(line)
            if want is not None:
                if want not in signed:
                    raise DecodeError(f"want {want}: no signed statement lists it")
                wants.append(want)
        elif command == b"ls-refs":
            if line not in _LS_REFS_FLAGS and not line.startswith(b"ref-prefix "):
                raise DecodeError(f"ls-refs argument {line[:60]!r} is not served")
        else:
            raise DecodeError("arguments before a command")
    if decoder.buffered:
        raise DecodeError("bytes after the upload request's flush")
    if command is None:
        raise DecodeError("an upload request without a command")
    return UploadRequest(command.decode(), tuple(wants))


def _fetch_argument(line: bytes) -> str | None:
    """The oid of a ``want`` line, ``None`` for another allowed argument."""
    if line in _FETCH_FLAGS:
        return None
    verb, _, value = line.partition(b" ")
    if verb in (b"want", b"have") and _OID.fullmatch(value):
        return value.decode() if verb == b"want" else None
    raise DecodeError(f"fetch argument {line[:60]!r} is not served")


def filter_ls_refs(response: bytes, refs: Mapping[str, str]) -> bytes:
    """git's ``ls-refs`` response made to say what the verified state says.

    Args:
        response: upload-pack's whole response (pkt-lines, ending in a flush).
        refs: every ref of the verified state, name to oid.

    A line whose ref has that oid in ``refs`` stays as git wrote it. A ref
    whose oid on disk differs (moved by hand) is listed with its verified
    oid and no attribute (its ``peeled:`` would be the disk value's); one
    the verified state lacks is left out. ``HEAD`` is treated as the ref
    its ``symref-target:`` names; an unborn ``HEAD`` stays.

    Raises:
        DecodeError: the response is not pkt-lines ending in a flush.
    """
    decoder = PktLineDecoder()
    decoder.receive_data(response)
    kept: list[Packet] = []
    while True:
        packet = decoder.next_packet()
        if packet is None:
            raise DecodeError("an ls-refs response without its flush")
        if isinstance(packet, FlushPacket):
            break
        if not isinstance(packet, DataPacket):
            raise DecodeError("an ls-refs response holds data lines only")
        oid, _, rest = packet.line().decode("utf-8", "replace").partition(" ")
        name, *attributes = rest.split(" ")
        if name == "HEAD":
            target = next((a[len("symref-target:"):] for a in attributes if a.startswith("symref-target:")), None)
            if oid == "unborn":
                kept.append(packet)
            elif target is not None and target in refs:
                signed = refs[target]
                kept.append(packet if signed == oid else DataPacket(f"{signed} HEAD symref-target:{target}\n".encode()))
        elif name in refs:
            signed = refs[name]
            kept.append(packet if signed == oid else DataPacket(f"{signed} {name}\n".encode()))
    return encode_packets([*kept, FlushPacket()])
