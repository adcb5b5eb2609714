"""git-remote-gutstest: the remote helper's protocol, proven against real git.

A test-only program. The tests install it as ``git-remote-gutstest`` on
PATH (a launcher whose shebang is the test's own Python), so that
``git clone gutstest::<path>`` talks to it. ``<path>`` is a local bare
repository standing in for a Guts node: where ``git-remote-guts`` will
reach the node over its control API and the node a peer over a libp2p
stream, this program runs git directly on the bare repository. Everything
git sees (commands, answers, pkt-lines) goes through the sans-IO core,
:class:`guts.repo.remote_helper.RemoteHelper`.

Fetch: ``stateless-connect git-upload-pack``. The capability
advertisement comes from ``git upload-pack --advertise-refs
--stateless-rpc``; then each request runs one ``git upload-pack
--stateless-rpc`` (one process per request, as smart HTTP does), with
``GIT_PROTOCOL=version=2`` since nobody passes it to us. The response is
streamed to git and followed by ``0002`` only if it ended cleanly.

Push: the ``push`` capability. The helper resolves each source in the
local repository, builds one thin pack with ``git pack-objects --revs``
(the new tips, minus every remote tip the local repository has), indexes
it into a quarantine directory of the remote repository, judges each ref
with git's rules (:func:`~guts.repo.remote_helper.judge_update`), checks
that what it accepts is connected, moves the pack in, and updates each ref
with its old value checked (or all in one transaction with ``--atomic``).

Test hooks, from the environment:

- ``GUTSTEST_LOG``: a file to append one JSON line per stateless request
  (command, request and response bytes) and per push.
- ``GUTSTEST_BEFORE_PUSH``: a shell command run after the pack arrived and
  before the refs are judged, to play a concurrent pusher.
- ``GUTSTEST_CUT_FETCH``: pass on only this many bytes of a ``fetch``
  response, to play a server that dies mid-pack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from guts.errors import DecodeError
from guts.repo.remote_helper import (
    Capabilities,
    Connect,
    HelperOptions,
    InputEnded,
    List,
    Option,
    Push,
    PushResult,
    PushSpec,
    RefRejected,
    RefUpdated,
    RemoteHelper,
    ResponseTracker,
    ServiceData,
    StatelessConnect,
    StatelessRequest,
    judge_update,
)

#: The v2 commands a fetch uses; anything else is refused.
V2_COMMANDS = frozenset({"ls-refs", "fetch", "object-info"})


class Fatal(Exception):
    """Stop with a message on stderr, as git's helpers do (exit 128)."""


def remote_env(repo: Path, **extra: str) -> dict[str, str]:
    """The environment of git on the remote side: none of the variables git
    set for us (they name the *local* repository, or carry the user's
    ``-c`` settings), only the test's config isolation."""
    keep = ("GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in keep}
    env["GIT_DIR"] = str(repo)
    env.update(extra)
    return env


def git(args: list[str], env: dict[str, str] | None = None, stdin: bytes | None = None, check: bool = True) -> str:
    done = subprocess.run(["git", *args], input=stdin, capture_output=True, env=env, timeout=120)
    if check and done.returncode != 0:
        raise Fatal(f"git {' '.join(args[:3])}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode()


def log(entry: dict[str, object]) -> None:
    path = os.environ.get("GUTSTEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


class Helper:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.core = RemoteHelper()
        self.options = HelperOptions()

    def write(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def run(self) -> int:
        while True:
            command = self.core.next_command()
            if command is None:
                data = os.read(0, 65536)
                if data:
                    self.core.receive_data(data)
                else:
                    self.core.receive_eof()
                continue
            if isinstance(command, InputEnded):
                return 0
            self.dispatch(command)

    def dispatch(self, command: object) -> None:
        core = self.core
        if isinstance(command, Capabilities):
            self.write(core.capabilities())
        elif isinstance(command, Option):
            self.write(core.option_reply(self.options.apply(command)))
        elif isinstance(command, List):
            if not command.for_push:
                raise Fatal("this remote needs git's protocol version 2 to fetch (git -c protocol.version=2)")
            self.write(self.list_refs())
        elif isinstance(command, StatelessConnect):
            if command.service != "git-upload-pack":
                self.write(core.fall_back())
                return
            self.check_repo()
            advertisement = subprocess.run(
                ["git", "upload-pack", "--advertise-refs", "--stateless-rpc", str(self.repo)],
                capture_output=True,
                env=remote_env(self.repo, GIT_PROTOCOL="version=2"),
                timeout=60,
            )
            if advertisement.returncode != 0:
                raise Fatal(advertisement.stderr.decode(errors="replace").strip())
            self.write(core.accept() + advertisement.stdout)
        elif isinstance(command, StatelessRequest):
            self.serve(command)
        elif isinstance(command, Push):
            self.write(core.push_report(self.push(command)))
        elif isinstance(command, (Connect, ServiceData)):
            raise Fatal("connect is not advertised")
        else:
            raise Fatal(f"unexpected {command!r}")

    def check_repo(self) -> None:
        if not (self.repo / "objects").is_dir():
            raise Fatal(f"{self.repo} is not a repository")

    # -- fetch -------------------------------------------------------------

    def serve(self, request: StatelessRequest) -> None:
        if request.command not in V2_COMMANDS:
            raise Fatal(f"refusing the v2 command {request.command!r}")
        process = subprocess.Popen(
            ["git", "upload-pack", "--stateless-rpc", str(self.repo)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=remote_env(self.repo, GIT_PROTOCOL="version=2"),
        )
        assert process.stdin is not None and process.stdout is not None
        # upload-pack reads the whole request before it answers.
        process.stdin.write(request.data)
        process.stdin.close()
        tracker = ResponseTracker()
        out = sys.stdout.buffer
        cut = int(os.environ.get("GUTSTEST_CUT_FETCH", "-1")) if request.command == "fetch" else -1
        while chunk := os.read(process.stdout.fileno(), 65536):
            if cut >= 0:
                chunk = chunk[: max(cut - tracker.size, 0)]
            tracker.receive_data(chunk)
            out.write(chunk)
            out.flush()
        if process.wait() != 0:
            raise Fatal(f"upload-pack exited with {process.returncode}")
        try:
            end = tracker.end()
        except DecodeError as error:
            raise Fatal(f"upload-pack's response is cut: {error}") from None
        self.write(end)
        log({"command": request.command, "request": len(request.data), "response": tracker.size})

    # -- push --------------------------------------------------------------

    def object_format(self, env: dict[str, str] | None) -> str:
        return git(["rev-parse", "--show-object-format"], env=env).strip()

    def remote_refs(self) -> dict[str, str]:
        out = git(["for-each-ref", "--format=%(objectname) %(refname)"], env=remote_env(self.repo))
        return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}

    def list_refs(self) -> bytes:
        self.check_repo()
        refs = self.remote_refs()
        head = git(["symbolic-ref", "-q", "HEAD"], env=remote_env(self.repo), check=False).strip()
        return self.core.ref_list(
            refs,
            head=head if head in refs else None,
            object_format=self.object_format(remote_env(self.repo)) if self.options.object_format else None,
        )

    def push(self, batch: Push) -> list[PushResult]:
        specs = batch.specs
        local_format, remote_format = self.object_format(None), self.object_format(remote_env(self.repo))
        if local_format != remote_format:
            why = f"object format mismatch: {local_format} here, {remote_format} there"
            return [RefRejected(spec.dst, why) for spec in specs]

        sources = [spec.src for spec in specs if spec.src is not None]
        resolved = resolve(sources, env=None)
        unknown = [spec for spec in specs if spec.src is not None and spec.src not in resolved]
        if unknown:
            return [RefRejected(s.dst, f"src {s.src} does not resolve here") for s in specs]
        news = {spec.dst: resolved[spec.src][0] if spec.src else None for spec in specs}
        before = self.remote_refs()
        known = resolve(sorted(set(before.values())), env=None)

        quarantine = Path(tempfile.mkdtemp(prefix="incoming-", dir=self.repo / "objects"))
        try:
            (quarantine / "pack").mkdir()
            q_env = remote_env(
                self.repo,
                GIT_OBJECT_DIRECTORY=str(quarantine),
                GIT_ALTERNATE_OBJECT_DIRECTORIES=str(self.repo / "objects"),
            )
            tips = sorted({oid for oid in news.values() if oid is not None})
            if tips:
                self.transfer(tips, sorted(known), q_env)
            if hook := os.environ.get("GUTSTEST_BEFORE_PUSH"):
                subprocess.run(hook, shell=True, check=True, env=remote_env(self.repo))
            current = self.remote_refs()
            results = [self.judge(spec, current.get(spec.dst), news[spec.dst], known, q_env) for spec in specs]
            accepted = [r for r in results if isinstance(r, RefUpdated)]
            if self.options.atomic and len(accepted) != len(results):
                results = [
                    r if isinstance(r, RefRejected) else RefRejected(r.ref, "atomic push failed") for r in results
                ]
                accepted = []
            wanted = [oid for r in accepted if (oid := news[r.ref]) is not None]
            if wanted and not connected(wanted, q_env):
                return [RefRejected(r.ref, "missing objects") if isinstance(r, RefUpdated) else r for r in results]
            if self.options.dry_run or not accepted:
                return results
            migrate(quarantine, self.repo / "objects")
        finally:
            shutil.rmtree(quarantine, ignore_errors=True)
        results = self.update_refs(results, current, news)
        log({"push": [[type(r).__name__, r.ref] for r in results]})
        return results

    def transfer(self, tips: list[str], known: list[str], q_env: dict[str, str]) -> None:
        """One thin pack from here into the quarantine, as send-pack would
        send it to receive-pack."""
        progress = ["--progress", "--all-progress-implied"] if self.options.progress else ["-q"]
        pack = subprocess.Popen(
            ["git", "pack-objects", "--revs", "--stdout", "--thin", "--delta-base-offset", *progress],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        index = subprocess.Popen(
            ["git", "index-pack", "--stdin", "--fix-thin", "--strict"],
            stdin=pack.stdout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=q_env,
        )
        assert pack.stdin is not None and pack.stdout is not None
        pack.stdout.close()
        revs = "".join(f"{oid}\n" for oid in tips) + "".join(f"^{oid}\n" for oid in known)
        pack.stdin.write(revs.encode())
        pack.stdin.close()
        _, err = index.communicate(timeout=300)
        if pack.wait(timeout=300) != 0 or index.returncode != 0:
            raise Fatal(f"the pack did not go through: {err.decode(errors='replace').strip()}")

    def judge(
        self, spec: PushSpec, current: str | None, new: str | None, known: dict[str, tuple[str, str]],
        q_env: dict[str, str],
    ) -> PushResult:
        """git's rules for one ref, asked of the remote repository with the
        quarantined objects in view."""
        commits, fast_forward = True, False
        if current is not None and new is not None and current != new:
            peeled = [
                subprocess.run(["git", "rev-parse", "-q", "--verify", f"{oid}^{{commit}}"], env=q_env,
                               capture_output=True).stdout.decode().strip()
                for oid in (current, new)
            ]
            commits = all(peeled)
            if commits:
                fast_forward = subprocess.run(
                    ["git", "merge-base", "--is-ancestor", current, new], env=q_env, capture_output=True
                ).returncode == 0
        return judge_update(
            spec,
            current=current,
            new=new,
            lease=self.options.leases.get(spec.dst),
            commits=commits,
            fast_forward=fast_forward,
            known_locally=current is None or current in known,
        )

    def update_refs(
        self, results: list[PushResult], current: dict[str, str], news: dict[str, str | None]
    ) -> list[PushResult]:
        """Apply the accepted updates, each old value checked under git's
        lock: one transaction with --atomic, else one per ref."""
        zero = "0" * (64 if self.object_format(remote_env(self.repo)) == "sha256" else 40)

        def command(ref: str) -> str:
            return f"update {ref} {news[ref] or zero} {current.get(ref, zero)}\n"

        def apply(lines: list[str]) -> bool:
            done = subprocess.run(["git", "update-ref", "--stdin"], input="".join(lines).encode(),
                                  env=remote_env(self.repo), capture_output=True, timeout=120)
            return done.returncode == 0

        if self.options.atomic:
            if apply([command(r.ref) for r in results if isinstance(r, RefUpdated)]):
                return results
            return [RefRejected(r.ref, "atomic transaction failed") if isinstance(r, RefUpdated) else r
                    for r in results]
        return [
            RefRejected(r.ref, "failed to update ref")
            if isinstance(r, RefUpdated) and not apply([command(r.ref)]) else r
            for r in results
        ]


def resolve(names: list[str], env: dict[str, str] | None) -> dict[str, tuple[str, str]]:
    """Each name git can resolve here, to its (oid, type)."""
    if not names:
        return {}
    out = git(["cat-file", "--batch-check=%(objectname) %(objecttype)"], env=env,
              stdin="".join(f"{n}\n" for n in names).encode())
    found = {}
    for name, line in zip(names, out.splitlines()):
        parts = line.split(" ")
        if len(parts) == 2 and parts[1] != "missing":
            found[name] = (parts[0], parts[1])
    return found


def connected(tips: list[str], env: dict[str, str]) -> bool:
    """Whether everything the tips reach is present (the quarantine's
    objects included), as receive-pack checks before it updates refs."""
    done = subprocess.run(
        ["git", "rev-list", "--objects", "--stdin", "--not", "--all", "--quiet"],
        input="".join(f"{oid}\n" for oid in tips).encode(),
        env=env,
        capture_output=True,
        timeout=120,
    )
    return done.returncode == 0


def migrate(quarantine: Path, objects: Path) -> None:
    """Move the quarantined pack in: each .pack before its .idx, so that no
    reader finds an index without its pack."""
    packs = sorted((quarantine / "pack").iterdir(), key=lambda p: p.suffix != ".pack")
    for path in packs:
        os.replace(path, objects / "pack" / path.name)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: git-remote-gutstest <remote> <path>", file=sys.stderr)
        return 1
    try:
        return Helper(Path(argv[2]).resolve()).run()
    except (Fatal, DecodeError) as error:
        print(f"fatal: gutstest: {error}", file=sys.stderr)
        return 128
    except BrokenPipeError:
        return 128


if __name__ == "__main__":
    sys.exit(main(sys.argv))
