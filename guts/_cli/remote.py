"""``git-remote-guts``: git's remote helper for ``guts://<RID>`` URLs.

git runs ``git-remote-guts <remote> guts://<RID>`` for ``git clone``,
``fetch``, ``pull`` and ``push``, and speaks the remote-helper protocol on
its stdin and stdout (gitremote-helpers(7)); the sans-IO
:class:`~guts.repo.remote_helper.RemoteHelper` reads and answers it. What
the helper does, it asks of the local node (the node of ``GUTS_HOME``,
through its control socket), which must hold the repository: made there by
``guts repo init``, or fetched by ``guts repo sync RID``.

Fetch: ``stateless-connect git-upload-pack``. The helper answers with the
protocol v2 advertisement of what the node serves (``GET
/v1/repo/upload-pack``: ``ls-refs``, ``fetch``, sha1, as smart HTTP's
``info/refs``), then passes each request git makes to ``POST /v1/repo/upload-pack``, which
checks it against the verified signed state (only signed oids may be
wanted) and streams ``git upload-pack``'s response back; the helper relays
it and adds ``0002`` only after a whole response
(:class:`~guts.repo.pktline.ResponseTracker`). git's progress and its
``no-progress`` come through unchanged.

Push: the ``push`` capability. ``list for-push`` shows this node's own
namespace (``GET /v1/repo/refs?for_push=1``): a push changes the node's
signed refs, and the canonical refs follow when enough delegates agree
(at once for a delegate of a threshold-1 repository). The helper builds
one thin pack of the new tips minus every tip of the node's signed refs
that the local repository has (``git pack-objects --revs --thin``, its progress on
stderr when git asked for progress), and streams it to ``POST
/v1/repo/push`` behind one JSON line of updates; the node judges each ref
with git's rules and answers per ref, which becomes git's push report.
A push by a node that is no delegate is said so on stderr.

After a push that moved a ref (not ``--dry-run``), once git has its
report, the helper says on stderr how far the new signed state got:
``POST /v1/repo/replicas`` waits up to ``push_wait`` seconds (the
config's, 2 by default, 0 for no report) for the connected followers of
the repository to hold it, and the helper prints one line ("3 seeds have
the new state (0.4 s)", or that none has it yet and it goes out as seeds
connect). ``git push -o replicas=N`` waits for N seeds instead, up to
``push_replicas_timeout`` seconds, and says plainly when fewer had it by
then. Either way the exit status is the push's: the refs are signed and
moved on this node before the wait begins, and a failed status would
tell scripts to push again what is already pushed. Any other push option
is refused before anything is pushed (git stops: "does not support
'--push-option'").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from guts.home import CONTROL_SOCKET, default_home
from guts.control.blocking import BlockingControlClient, ControlError
from guts.errors import DecodeError, GutsError, InputError, NodeNotRunning
from guts.repo.pktline import ResponseTracker
from guts.repo.push_rules import (
    HelperOptions,
    OptionReply,
    OptionStatus,
    PushResult,
    RefRejected,
    RefUnchanged,
    RefUpdated,
)
from guts.repo.remote_helper import (
    Capabilities,
    Connect,
    Fetch,
    InputEnded,
    List,
    Option,
    Push,
    RemoteHelper,
    ServiceData,
    StatelessConnect,
    StatelessRequest,
    replicas_option,
)
from guts.repo.rid import Rid

__all__ = ["main"]

_CHUNK = 64 * 1024
_HINT = "start one with `guts start` (it keeps running), then run git again"


class Fatal(GutsError):
    """Stop with ``fatal: guts: <message>`` on stderr and exit 128, as git's
    own helpers do."""


def _rid(url: str) -> str:
    text = url[len("guts://"):] if url.startswith("guts://") else url
    try:
        return str(Rid.parse(text.rstrip("/")))
    except (GutsError, ValueError):
        raise Fatal(f"{url!r} is not a guts:// URL (guts://<RID>)") from None


def _git(args: list[str], stdin: bytes = b"") -> str:
    """git in the local repository (git set ``GIT_DIR`` for us)."""
    done = subprocess.run(["git", *args], input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise Fatal(f"git {args[0]}: {done.stderr.decode(errors='replace').strip()}")
    return str(done.stdout.decode())


def _resolve(names: list[str]) -> dict[str, str]:
    """Each name (a ref, ``HEAD`` or an oid) the local repository has, to its oid."""
    if not names:
        return {}
    query = "".join(f"{name}\n" for name in names).encode()
    out = _git(["cat-file", "--batch-check=%(objectname) %(objecttype)"], query)
    found = {}
    for name, line in zip(names, out.splitlines()):
        parts = line.split(" ")
        if len(parts) == 2 and parts[1] != "missing":
            found[name] = parts[0]
    return found


class Helper:
    """One session with git: commands in, answers out (module docstring)."""

    def __init__(self, rid: str, client: BlockingControlClient) -> None:
        self.rid = rid
        self.client = client
        self.core = RemoteHelper()
        self.options = HelperOptions()
        self.fetched = False
        self.packs: list[dict[str, Any]] | None = None  # decided at the first stateless-connect
        self.replicas: int | None = None  # git push -o replicas=N
        self.out = sys.stdout.buffer

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()

    def note(self, text: str) -> None:
        if self.options.verbosity > 0:
            print(f"guts: {text}", file=sys.stderr, flush=True)

    def run(self) -> None:
        while True:
            command = self.core.next_command()
            if command is None:
                data = os.read(0, _CHUNK)
                if data:
                    self.core.receive_data(data)
                else:
                    self.core.receive_eof()
                continue
            if isinstance(command, InputEnded):
                return
            self.dispatch(command)

    def dispatch(self, command: object) -> None:
        core, write = self.core, self.write
        if isinstance(command, Capabilities):
            write(core.capabilities())
        elif isinstance(command, Option) and command.name == "push-option":
            write(core.option_reply(self.push_option(command)))
        elif isinstance(command, Option):
            if command.name in ("depth", "deepen-since", "deepen-not", "filter"):
                self.note(f"--{command.name} is not served through guts://: this fetch is whole")
            write(core.option_reply(self.options.apply(command)))
        elif isinstance(command, List):
            if not command.for_push and not self.packs:
                raise Fatal("guts:// needs git's protocol version 2 to fetch (git -c protocol.version=2)")
            answer = self.refs(for_push=command.for_push, every=not command.for_push)
            write(
                core.ref_list(
                    answer["refs"],
                    head=answer["head"],
                    object_format=answer["object_format"] if self.options.object_format else None,
                )
            )
        elif isinstance(command, StatelessConnect):
            if command.service != "git-upload-pack":
                write(core.fall_back())  # a push: git goes on with list for-push and push
            elif self.use_pack_files():
                write(core.fall_back())  # a clone: git goes on with list and fetch
            else:
                write(core.accept() + self.advertisement())
        elif isinstance(command, Fetch):
            self.put_packs()
            write(core.fetch_done(connectivity_ok=self.options.check_connectivity))
        elif isinstance(command, StatelessRequest):
            self.serve(command)
        elif isinstance(command, Push):
            results = self.push(command)
            write(core.push_report(results))
            self.report_replicas(results)
        elif isinstance(command, (Connect, ServiceData)):
            raise Fatal("connect is not advertised")
        else:
            raise Fatal(f"unexpected {command!r}")

    def path(self, route: str, **query: str) -> str:
        args = "".join(f"&{key}={quote(value)}" for key, value in query.items())
        return f"/v1/repo/{route}?rid={self.rid}{args}"

    def refs(self, *, for_push: bool, every: bool = False) -> dict[str, Any]:
        query = {"for_push": "1"} if for_push else {"all": "1"} if every else {}
        while True:
            try:
                return self.client.call("GET", self.path("refs", **query))
            except ControlError as exc:
                self.fetch_if_unheld(exc)

    def advertisement(self) -> bytes:
        """The node's protocol v2 advertisement for the repository."""
        while True:
            try:
                return b"".join(self.client.raw("GET", self.path("upload-pack"), b""))
            except ControlError as exc:
                self.fetch_if_unheld(exc)

    def fetch_if_unheld(self, exc: ControlError) -> None:
        """After ``exc``: when it says the node does not hold the
        repository (and it has not been fetched in this session yet), have
        the node fetch it from its connected peers, showing progress as
        git asked; otherwise raise."""
        if exc.kind != "not_found" or self.fetched:
            raise self.why(exc) from None
        self.fetched = True
        view = _SyncLines(self.options.progress, self.options.verbosity)
        try:
            for event in self.client.stream("POST", "/v1/repo/sync", {"rid": self.rid, "progress": True}):
                view.show(event)
                if event["event"] == "error":
                    raise Fatal(f"this node does not hold {self.rid} and could not fetch it: {event['message']}")
        except ControlError as exc:
            hint = f"`guts repo sync {self.rid} --from <peer address>` fetches it from a peer you name"
            raise Fatal(f"this node does not hold {self.rid} and could not fetch it: {exc}; {hint}") from None

    def why(self, exc: ControlError) -> Exception:
        if exc.kind == "not_found":
            return Fatal(
                f"the node of this GUTS_HOME does not hold {self.rid}: "
                f"`guts repo sync {self.rid} --from <peer address>` fetches it"
            )
        return exc

    # -- fetch -------------------------------------------------------------

    def use_pack_files(self) -> bool:
        """Whether this fetch is a clone that takes the node's packs as they
        are (module docstring); decided once, since git asks twice."""
        if self.packs is None:
            self.packs = self.clone_packs()
        return bool(self.packs)

    def clone_packs(self) -> list[dict[str, Any]]:
        """The node's packs of the repository, when the local repository
        has no ref yet (a clone) and lives on this machine; else none."""
        if not os.environ.get("GIT_DIR") or _git(["for-each-ref", "--count=1"]).strip():
            return []
        while True:
            try:
                answer = self.client.call("GET", self.path("pack-files"))
            except ControlError as exc:
                self.fetch_if_unheld(exc)
                continue
            packs: list[dict[str, Any]] = answer["packs"]
            return packs

    def put_packs(self) -> None:
        """Hard-link (else copy) the node's packs into the local
        repository, each ``.pack`` before its ``.idx``: git finds a pack by
        its index, so it never sees half of one."""
        assert self.packs is not None
        objects = Path(os.environ.get("GIT_OBJECT_DIRECTORY") or Path(os.environ["GIT_DIR"]) / "objects")
        (objects / "pack").mkdir(parents=True, exist_ok=True)
        total, linked = 0, 0
        for entry in self.packs:
            for source in (Path(entry["pack"]), Path(entry["index"])):
                target = objects / "pack" / source.name
                if target.exists():
                    continue
                partial = target.with_name(f"tmp_guts_{source.name}")
                partial.unlink(missing_ok=True)
                try:
                    os.link(source, partial)
                    linked += 1
                except OSError:
                    shutil.copyfile(source, partial)
                os.replace(partial, target)
            total += int(entry["bytes"])
        how = "linked" if linked else "copied"
        if self.options.progress:
            self.note(f"{how} {len(self.packs)} verified pack{'s' if len(self.packs) != 1 else ''} "
                      f"({total / 1024 / 1024:.2f} MiB) from the node")  # fmt: skip

    def serve(self, request: StatelessRequest) -> None:
        """One stateless request through the node; its response to git."""
        if request.command not in ("ls-refs", "fetch"):
            raise Fatal(f"the v2 command {request.command!r} is not served")
        tracker = ResponseTracker()
        try:
            for chunk in self.client.raw("POST", self.path("upload-pack"), request.data):
                tracker.receive_data(chunk)
                self.write(chunk)
            end = tracker.end()
        except (ValueError, DecodeError) as exc:
            raise Fatal(f"the node's response to {request.command} was cut: {exc}") from None
        self.write(end)

    # -- push --------------------------------------------------------------

    def push(self, batch: Push) -> list[PushResult]:
        specs = batch.specs
        sources = sorted({spec.src for spec in specs if spec.src is not None})
        resolved = _resolve(sources)
        unknown = [spec.src for spec in specs if spec.src is not None and spec.src not in resolved]
        if unknown:
            return [RefRejected(spec.dst, f"src {unknown[0]} does not resolve here") for spec in specs]
        news = {spec.dst: resolved[spec.src] if spec.src else None for spec in specs}
        before = self.refs(for_push=True)
        held = set(before["refs"].values()) | set(before.get("tips", ()))
        known = sorted(set((_resolve(sorted(held))).values()))
        tips = sorted({oid for oid in news.values() if oid is not None})
        header = {
            "updates": [
                {
                    "dst": spec.dst,
                    "new": news[spec.dst],
                    "force": spec.force,
                    "lease": self.options.leases.get(spec.dst),
                }
                for spec in specs
            ],
            "known": known,
            "atomic": self.options.atomic,
            "dry_run": self.options.dry_run,
            "pack": bool(tips),
        }

        def body() -> Iterator[bytes]:
            yield json.dumps(header).encode() + b"\n"
            if tips:
                yield from self.pack(tips, known)

        answer = self.client.send("POST", self.path("push"), body())
        results: list[PushResult] = []
        for item in answer["results"]:
            ref, status = item["ref"], item["status"]
            if status == "ok":
                results.append(RefUpdated(ref, forced=bool(item.get("forced"))))
            elif status == "up to date":
                results.append(RefUnchanged(ref))
            else:
                results.append(RefRejected(ref, str(item.get("reason") or "rejected")))
        self.explain(answer, results, news)
        return results

    def explain(self, answer: dict[str, Any], results: list[PushResult], news: dict[str, str | None]) -> None:
        """Say where an accepted push went, when it is not the canonical refs."""
        moved = [r.ref for r in results if isinstance(r, RefUpdated)]
        if not moved or self.options.dry_run:
            return
        namespace = answer["namespace"]
        if not answer["delegate"]:
            self.note(
                f"this node ({namespace}) is no delegate of {self.rid}: the push is in its own namespace "
                f"(refs/guts/{namespace}/...), for a delegate to fetch and merge; the canonical refs did not move"
            )
            return
        canonical = answer["canonical"]
        assert isinstance(canonical, dict)
        waiting = [ref for ref in moved if canonical.get(ref) != news[ref]]
        if waiting:
            self.note(
                f"signed in this node's namespace; {', '.join(waiting)} becomes canonical once enough delegates "
                "sign the same"
            )

    def push_option(self, option: Option) -> OptionReply:
        """``git push -o``: ``replicas=N``, or refused (git then stops
        before pushing; its message does not say why, so we do)."""
        try:
            self.replicas = replicas_option(option.value)
        except InputError as exc:
            print(f"guts: {exc}", file=sys.stderr, flush=True)
            return OptionReply(OptionStatus.ERROR, str(exc))
        return self.options.apply(option)

    def report_replicas(self, results: list[PushResult]) -> None:
        """After git has the push report: how many seeds hold the new
        state, on stderr (module docstring). Never fails the push."""
        if self.options.dry_run or not any(isinstance(r, RefUpdated) for r in results):
            return
        want = self.replicas
        if want is None and self.options.verbosity == 0:
            return  # a quiet push shows no report, so it waits for none
        # Loaded only now: a fetch, which runs this helper too, needs no
        # config (reading it costs about 20 ms).
        from guts.config import load_config

        try:
            config = load_config()
        except GutsError as exc:
            print(f"guts: no report of the seeds that have the new state: {exc}", file=sys.stderr, flush=True)
            return
        timeout = config.push_wait if want is None else config.push_replicas_timeout
        if timeout <= 0:
            return
        line = self.replicas_line(timeout, want)
        if line is not None:
            print(f"guts: {line}", file=sys.stderr, flush=True)

    def replicas_line(self, timeout: float, want: int | None) -> str | None:
        """Ask the node, waiting up to ``timeout`` seconds for ``want``
        seeds (``None``: every connected follower); the line a push ends
        with (``None``: nothing to say)."""
        body: dict[str, Any] = {"rid": self.rid, "timeout": timeout}
        if want is not None:
            body["want"] = want
        try:
            answer = self.client.call("POST", "/v1/repo/replicas", body)
            have, wanted, elapsed = int(answer["have"]), int(answer["want"]), float(answer["elapsed"])
        except (GutsError, ValueError, KeyError, TypeError, OSError) as exc:
            return f"the node could not say which seeds have the new state: {exc}"
        return replicas_text(have, wanted, elapsed, requested=want, quiet=self.options.verbosity == 0)

    def pack(self, tips: list[str], known: list[str]) -> Iterator[bytes]:
        """A thin pack of ``tips`` minus what the node has, as send-pack
        would send it to receive-pack."""
        progress = ["--progress", "--all-progress-implied"] if self.options.progress else ["-q"]
        args = ["git", "pack-objects", "--revs", "--stdout", "--thin", "--delta-base-offset", *progress]
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdin is not None and process.stdout is not None
        try:
            revs = "".join(f"{oid}\n" for oid in tips) + "".join(f"^{oid}\n" for oid in known)
            process.stdin.write(revs.encode())
            process.stdin.close()
            while chunk := os.read(process.stdout.fileno(), _CHUNK):
                yield chunk
            if process.wait() != 0:
                raise Fatal(f"git pack-objects exited with {process.returncode}")
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
            process.stdout.close()


def _seeds(count: int) -> str:
    return f"{count} seed has" if count == 1 else f"{count} seeds have"


def replicas_text(have: int, want: int, elapsed: float, *, requested: int | None, quiet: bool = False) -> str | None:
    """What a push says about its seeds: ``have`` of ``want`` hold the new
    state after ``elapsed`` seconds; ``requested`` is the N of ``-o
    replicas=N`` (``None``: the default report, every connected follower
    wanted). ``quiet`` keeps only a shortfall of ``-o replicas=N``."""
    took = f"{elapsed:.1f} s"
    stays = "it stays signed on this node and goes out as seeds connect"
    if requested is not None:
        if have >= requested:
            return None if quiet else f"{_seeds(have)} the new state, as -o replicas={requested} asked ({took})"
        held = "none" if have == 0 else f"only {have}"
        return (
            f"{held} of the {requested} seeds -o replicas={requested} asked for had the new state after {took}; "
            f"the push stands, and {stays}"
        )
    if quiet:
        return None
    if want == 0:
        return f"no seed has the new state yet (none is connected); {stays}"
    if have == 0:
        return f"no seed has the new state yet after {took}; {stays}"
    if have < want:
        return f"{have} of {want} connected seeds have the new state after {took}; the others fetch it as they can"
    return f"{_seeds(have)} the new state ({took})"


class _SyncLines:
    """A node's sync (its JSON-line events) on stderr, as git shows its own
    progress: a line rewritten in place while bytes arrive, when git asked
    for progress; only the outcome otherwise. Several peers are asked at
    once: each request is named, and the peer whose answer serves once it
    verified; the outcome names the peer that served and every peer asked."""

    def __init__(self, progress: bool, verbosity: int) -> None:
        self.progress = progress
        self.verbosity = verbosity
        self.open = False  # a progress line without its newline yet

    def write(self, text: str, *, end: str = "\n") -> None:
        sys.stderr.write(text + end)
        sys.stderr.flush()
        self.open = end == "\r"

    def close_line(self) -> None:
        if self.open:
            self.write("")

    def show(self, event: dict[str, Any]) -> None:
        kind, peer = event["event"], str(event.get("peer", "")).rsplit("/p2p/", 1)[-1]
        if kind == "peer" and self.progress:
            self.write(f"guts: asking {peer}")
        elif kind == "cancelled" and self.progress:
            self.write(f"guts: {peer}: cancelled, {str(event['winner']).rsplit('/p2p/', 1)[-1]} answered first")
        elif kind == "progress" and self.progress and event["phase"] == "refs":
            self.close_line()
            self.write(f"guts: fetching from {peer}")
        elif kind == "lookup" and self.progress:
            self.write(f"guts: the DHT knows {event['seeds']} more seed{'s' if event['seeds'] != 1 else ''} of it")
        elif kind == "progress" and self.progress:
            received = f"{event['received'] / 1024 / 1024:.2f} MiB"
            if event["phase"] == "objects":
                self.write(f"guts: receiving: {received}", end="\r")
            elif event["phase"] == "applying":
                self.close_line()
                self.write(f"guts: received {received}, verified; applying")
        elif kind == "failed" and self.verbosity > 0:
            self.close_line()
            self.write(f"guts: {peer}: {event['error']}")
        elif kind == "done" and self.verbosity > 0:
            self.close_line()
            asked = [str(other).rsplit("/p2p/", 1)[-1] for other in event.get("asked", [])]
            also = f" (asked {', '.join(asked)})" if len(asked) > 1 else ""
            self.write(f"guts: fetched {event['repository']['name']!r} from {peer}{also}")


def _session(rid: str) -> None:
    Helper(rid, BlockingControlClient(default_home() / CONTROL_SOCKET)).run()


def main() -> None:
    """``git-remote-guts <remote> <url>``, as git runs it."""
    if len(sys.argv) < 3:
        print("usage: git-remote-guts <remote> guts://<RID> (git runs it for guts:// URLs)", file=sys.stderr)
        sys.exit(1)
    try:
        _session(_rid(sys.argv[2]))
    except NodeNotRunning as exc:
        print(f"fatal: guts: {exc}: {_HINT}", file=sys.stderr)
        sys.exit(128)
    except BrokenPipeError:
        sys.exit(128)  # git went away
    except (GutsError, ValueError, OSError) as exc:  # DecodeError and ControlError included
        print(f"fatal: guts: {exc}", file=sys.stderr)
        sys.exit(128)
    sys.exit(0)
