"""What a ping, a MiB of bulk data or a handshake costs each process.

Wall-clock figures on a shared machine move with everything else that
runs; CPU time moves less, and instruction counts not at all. This starts
a Guts server in a second process (the benchmark server: identify, ping,
echo, sink, over TCP + Noise + yamux on loopback), and either pings it
``--count`` times on one stream, or (``--bulk``) pushes ``--count`` MiB
into a sink stream in 256 KiB writes, or (``--handshakes``) connects and
closes ``--count`` times, or (``--streams``) runs ``--count`` echo
streams at once, and prints per ping (per MiB, handshake, stream):

* CPU time of the client and of the server (``/proc/<pid>/schedstat``:
  nanoseconds on a CPU, the scheduler's own count; and the user / system
  split from ``getrusage``);
* the wall-clock median and p99 round trip (or MB/s), for what they are
  worth here;
* for pings, trio task steps and run-loop I/O waits on each side
  (instruments), and Python function calls on each side
  (``sys.setprofile``; resuming a coroutine counts as a call of each frame
  in its await chain), in separate, shorter passes, since counting slows
  everything down::

    .venv/bin/python bench/cost.py --count 20000 [--top 40]
    .venv/bin/python bench/cost.py --bulk --count 256
    .venv/bin/python bench/cost.py --handshakes --count 1000
    .venv/bin/python bench/cost.py --streams --count 1000

``--instructions`` instead counts user-space instructions per unit on
each side with valgrind's callgrind: the difference between runs of two
counts, so that start-up and connecting cancel out (a minute or two;
repeated runs agree within about 3%)::

    .venv/bin/python bench/cost.py --instructions [--bulk | --handshakes | --streams]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import trio

from guts.crypto import KeyPair
from guts.host import HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.ping import ping
from guts.transport import TcpTransport

BENCH = Path(__file__).resolve().parent
CONFIG = HostConfig(keep_alive=0)


def cpu_ns(pid: int | str = "self") -> int:
    """Nanoseconds the process's main thread spent on a CPU."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def _short(path: str) -> str:
    """A code object's file, relative to site-packages or to the repository."""
    for marker in ("site-packages/", f"{BENCH.parent}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


class Counter(trio.abc.Instrument):
    """Counts task steps and run-loop I/O waits."""

    def __init__(self) -> None:
        self.steps = 0
        self.waits = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def before_io_wait(self, timeout: float) -> None:
        self.waits += 1


class Calls:
    """Counts Python and C function calls while active, per function."""

    def __init__(self) -> None:
        self.py = 0
        self.c = 0
        self.by_name: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            self.py += 1
            code = frame.f_code
            self.by_name[f"{_short(code.co_filename)}:{code.co_firstlineno}:{code.co_qualname}"] += 1
        elif event == "c_call":
            self.c += 1
            self.by_name[f"<c>:{getattr(arg, '__qualname__', arg)}"] += 1

    def top(self, n: int, per: int) -> list[str]:
        return [f"{count / per:6.2f}  {name}" for name, count in self.by_name.most_common(n)]

    def __enter__(self) -> Calls:
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


# -- server -----------------------------------------------------------------


async def serve() -> None:
    """The benchmark server, plus commands on stdin, one a line: ``count``
    (count task steps and I/O waits), ``calls`` (count calls), ``sync``
    (answer ``{}``), ``rusage`` (print user and system CPU seconds),
    ``report`` (stop counting, print the counts); answers are JSON lines."""
    sys.path.insert(0, str(BENCH))
    from _guts_server import serve_node  # type: ignore[import-not-found]  # a script beside this one

    counter: Counter | None = None
    calls: Calls | None = None
    async with open_host(KeyPair.generate(), [TcpTransport()], CONFIG) as host:
        serve_node(host)
        addrs = await host.listen(Multiaddr.parse("/ip4/127.0.0.1/tcp/0"))
        print(json.dumps({"addr": str(addrs[0].with_p2p(str(host.peer_id))), "pid": os.getpid()}), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        buf = b""
        async with stdin:
            while data := await stdin.receive_some(4096):
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    command = line.decode().strip()
                    if command == "count":
                        counter = Counter()
                        trio.lowlevel.add_instrument(counter)
                    elif command == "calls":
                        calls = Calls()
                        sys.setprofile(calls)
                    elif command == "sync":
                        print("{}", flush=True)
                    elif command == "rusage":
                        usage = resource.getrusage(resource.RUSAGE_SELF)
                        print(json.dumps({"user": usage.ru_utime, "system": usage.ru_stime}), flush=True)
                    elif command == "report":
                        sys.setprofile(None)
                        report: dict[str, Any] = {}
                        if counter is not None:
                            trio.lowlevel.remove_instrument(counter)
                            report.update(steps=counter.steps, waits=counter.waits)
                            counter = None
                        if calls is not None:
                            report.update(py=calls.py, c=calls.c, by_name=dict(calls.by_name))
                            calls = None
                        print(json.dumps(report), flush=True)
        await host.aclose()


# -- client -----------------------------------------------------------------


class Server:
    """The server process, and its commands."""

    def __init__(self, wrapper: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        hello = json.loads(self.proc.stdout.readline())
        self.addr = Multiaddr.parse(hello["addr"])
        self.pid = hello["pid"]

    def start(self, what: str) -> None:
        """Start counting (``count`` or ``calls``); returns once the server
        has read the command."""
        self._send(what)
        self._send("sync")
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def rusage(self) -> tuple[float, float]:
        """The server's user and system CPU seconds so far."""
        self._send("rusage")
        assert self.proc.stdout is not None
        usage = json.loads(self.proc.stdout.readline())
        return usage["user"], usage["system"]

    def report(self) -> dict[str, Any]:
        self._send("report")
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def pings(host, peer, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    rtts = []
    with trio.fail_after(max(60, count / 1000)):
        async with aclosing(ping(host, peer, count)) as results:
            async for rtt in results:
                rtts.append(rtt)
    return rtts


async def push(conn, mib: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds to push ``mib`` MiB through a sink stream and get the count back."""
    sys.path.insert(0, str(BENCH))
    from _guts_client import send_to_sink  # type: ignore[import-not-found]

    with trio.fail_after(max(60, mib)):
        return float(await send_to_sink(conn, mib * 1024 * 1024)) if mib else 0.0


async def handshakes(host, addr: Multiaddr, count: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for ``count`` sequential connects (Noise, yamux, identify) and closes."""
    start = time.perf_counter()
    with trio.fail_after(max(60, count / 50)):
        for _ in range(count):
            conn = await host.connect(addr)
            await conn.aclose()
    return time.perf_counter() - start


async def concurrent_streams(conn, count: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for ``count`` echo streams at once (32 bytes each way), as
    the benchmark's 1,000-stream figure does."""
    sys.path.insert(0, str(BENCH))
    from _guts_client import echo_once

    payload = os.urandom(32)
    start = time.perf_counter()
    with trio.fail_after(max(60, count / 20)):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(echo_once, conn, payload)
    return time.perf_counter() - start


async def work(host, conn, server: Server, mode: str, count: int) -> float:  # type: ignore[no-untyped-def]
    if mode == "bulk":
        return await push(conn, count)
    if mode == "streams":
        return await concurrent_streams(conn, count)
    if mode == "handshakes":
        return await handshakes(host, server.addr, count)
    start = time.perf_counter()
    if count:
        await pings(host, conn.peer_id, count)
    return time.perf_counter() - start


async def bare(server: Server, count: int, mode: str) -> None:
    """Connect, then ``count`` units of work and nothing else: for
    instruction counts (run with two counts; the difference is the work)."""
    async with open_host(KeyPair.generate(), [TcpTransport()], CONFIG) as host:
        Identify(host)
        conn = await host.connect(server.addr)
        await work(host, conn, server, mode, count)
        await host.aclose()


UNITS = {
    "bulk": ("MiB", "MB/s", 1024 * 1024 / 1e6),
    "handshakes": ("handshake", "handshakes/s", 1.0),
    "streams": ("stream", "streams/s", 1.0),
}


async def timed_client(server: Server, mode: str, count: int, runs: int) -> None:
    """CPU per MiB or per handshake on each side, and the rate."""
    unit, rate_unit, scale = UNITS[mode]
    async with open_host(KeyPair.generate(), [TcpTransport()], CONFIG) as host:
        Identify(host)
        conn = await host.connect(server.addr)
        await work(host, conn, server, mode, max(1, count // 8))  # warm-up
        for run in range(runs):
            su0, ss0 = server.rusage()
            u0 = resource.getrusage(resource.RUSAGE_SELF)
            c0, s0 = cpu_ns(), cpu_ns(server.pid)
            seconds = await work(host, conn, server, mode, count)
            c1, s1 = cpu_ns(), cpu_ns(server.pid)
            u1 = resource.getrusage(resource.RUSAGE_SELF)
            su1, ss1 = server.rusage()
            per = 1e6 / count
            print(
                f"run {run}: cpu/{unit} client {(c1 - c0) / count / 1e3:.0f} us"
                f" (user {(u1.ru_utime - u0.ru_utime) * per:.0f}, system {(u1.ru_stime - u0.ru_stime) * per:.0f}),"
                f" server {(s1 - s0) / count / 1e3:.0f} us"
                f" (user {(su1 - su0) * per:.0f}, system {(ss1 - ss0) * per:.0f});"
                f" {count * scale / seconds:.0f} {rate_unit}; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        await host.aclose()


async def client(server: Server, count: int, call_count: int, runs: int, top: int, steps: bool) -> None:
    async with open_host(KeyPair.generate(), [TcpTransport()], CONFIG) as host:
        Identify(host)  # as the benchmark client does
        conn = await host.connect(server.addr)
        peer = conn.peer_id
        await pings(host, peer, 200)  # warm-up
        for run in range(runs):
            su0, ss0 = server.rusage()
            u0 = resource.getrusage(resource.RUSAGE_SELF)
            c0, s0 = cpu_ns(), cpu_ns(server.pid)
            rtts = await pings(host, peer, count)
            c1, s1 = cpu_ns(), cpu_ns(server.pid)
            u1 = resource.getrusage(resource.RUSAGE_SELF)
            su1, ss1 = server.rusage()
            rtts.sort()
            per = 1e6 / count
            print(
                f"run {run}: cpu/ping client {(c1 - c0) / count / 1e3:.1f} us"
                f" (user {(u1.ru_utime - u0.ru_utime) * per:.1f}, system {(u1.ru_stime - u0.ru_stime) * per:.1f}),"
                f" server {(s1 - s0) / count / 1e3:.1f} us"
                f" (user {(su1 - su0) * per:.1f}, system {(ss1 - ss0) * per:.1f});"
                f" rtt median {statistics.median(rtts) * 1e3:.3f} ms, p99 {rtts[int(len(rtts) * 0.99)] * 1e3:.3f} ms;"
                f" load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        if not steps:
            await host.aclose()
            return
        n = min(count, 2000)
        counter = Counter()
        server.start("count")
        trio.lowlevel.add_instrument(counter)
        await pings(host, peer, n)
        trio.lowlevel.remove_instrument(counter)
        remote = server.report()
        print(
            f"per ping: task steps client {counter.steps / n:.2f}, server {remote['steps'] / n:.2f};"
            f" I/O waits client {counter.waits / n:.2f}, server {remote['waits'] / n:.2f}"
            " (one stream open and close included)",
            flush=True,
        )
        if call_count:
            server.start("calls")
            with Calls() as calls:
                await pings(host, peer, call_count)
            remote = server.report()
            print(
                f"calls/ping (Python + C): client {calls.py / call_count:.0f} + {calls.c / call_count:.0f},"
                f" server {remote['py'] / call_count:.0f} + {remote['c'] / call_count:.0f}"
                " (one stream open and close included)",
                flush=True,
            )
            if top:
                served = Calls()
                served.by_name.update(remote["by_name"])
                for side, counts in (("client", calls), ("server", served)):
                    print(f"top {top} calls per ping, {side}:")
                    print("\n".join(counts.top(top, call_count)))
        await host.aclose()


def _instructions(args: list[str], out: str) -> int:
    """Run ``args`` with callgrind writing to ``out.<pid>``; total instructions."""
    for old in Path(out).parent.glob(Path(out).name + ".*"):
        old.unlink()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    (result,) = Path(out).parent.glob(Path(out).name + ".*")
    for line in result.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {result}")


def instructions(low: int, high: int, mode: str) -> None:
    """Instructions per unit of work on each side, under callgrind."""
    out_dir = BENCH.parent / ".bench" / "callgrind"
    out_dir.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, __file__, "--bare", *([f"--{mode}"] if mode != "ping" else [])]
    for side in ("client", "server"):
        counts = []
        for count in (low, high):
            out = str(out_dir / f"{side}.{mode}.{count}")
            grind = f"valgrind --tool=callgrind --callgrind-out-file={out}.%p"
            if side == "client":
                args = [*shlex.split(grind), *me, "--count", str(count)]
            else:
                args = [*me, "--count", str(count), "--wrap-server", grind]
            counts.append(_instructions(args, out))
        unit = UNITS[mode][0] if mode in UNITS else "ping"
        print(f"{side}: {(counts[1] - counts[0]) / (high - low):,.0f} instructions per {unit}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=None, help="pings (10,000) or MiB (256) per timed run")
    parser.add_argument("--bulk", action="store_true", help="bulk data into a sink stream instead of pings")
    parser.add_argument("--handshakes", action="store_true", help="connects and closes instead of pings")
    parser.add_argument("--streams", action="store_true", help="that many concurrent echo streams instead of pings")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2_000, help="pings in the call-counting pass (0: none)")
    parser.add_argument("--no-steps", action="store_true", help="skip the pass that counts task steps")
    parser.add_argument("--top", type=int, default=0, help="also list the N most called functions per side")
    parser.add_argument("--bare", action="store_true", help="only connect and do the work (no output)")
    parser.add_argument("--wrap-server", default="", help="command prefix for the server (e.g. valgrind ...)")
    parser.add_argument("--instructions", action="store_true", help="instructions per ping under callgrind")
    args = parser.parse_args()
    if args.serve:
        trio.run(serve)
        return
    mode = "bulk" if args.bulk else "handshakes" if args.handshakes else "streams" if args.streams else "ping"
    if args.instructions:
        low, high = {"bulk": (16, 96), "handshakes": (10, 60), "streams": (200, 1000), "ping": (200, 1200)}[mode]
        instructions(low, high, mode)
        return
    if args.count is None:
        args.count = {"bulk": 256, "handshakes": 1000, "streams": 1000, "ping": 10_000}[mode]
    server = Server(shlex.split(args.wrap_server))
    try:
        if args.bare:
            trio.run(bare, server, args.count, mode)
            return
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        if mode in UNITS:
            trio.run(timed_client, server, mode, args.count, args.runs)
        else:
            trio.run(client, server, args.count, args.calls, args.runs, args.top, not args.no_steps)
    finally:
        server.close()


if __name__ == "__main__":
    main()
