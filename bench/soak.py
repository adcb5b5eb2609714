"""A soak: one real ``guts start`` node against about 1,000 connections,
honest and hostile mixed, for a bounded time; what the honest peers got,
what the node held, and whether its memory came back.

Usage::

    python -m bench.soak [--seconds 60] [--scale 1.0] [--write]

The populations (``--scale`` multiplies the hostile counts), from loopback
addresses in /24s of their own, so that the per-address and per-subnet
limits see them as a stranger spread over many hosts would look:

- ``honest``: 20 peers (127.0.0.10-29), each a full host (it identifies)
  that pings every 0.5 s from before the attack until after it;
- ``idle``: 400 authenticated connections (Noise and yamux done) that do
  nothing, 4 from each of 100 addresses in 100 subnets (127.10.0.1,
  127.11.0.1, ...);
- ``noise-stall``: 200 TCP connections (127.3.0.4) that propose ``/noise``
  and then say nothing;
- ``tcp-idle``: 200 TCP connections (127.4.0.5) that send nothing;
- ``ls-spam``: 50 authenticated connections (127.5.0.6) that open streams
  and ask ``ls`` again and again without reading the answers;
- ``churn``: 50 authenticated connections (127.6.0.7) that open and reset
  streams as fast as they can;
- ``handshake-flood``: 80 workers (127.7.0.8), each connecting with a fresh
  key, finishing the handshake and hanging up, again and again;
- ``gossip-big``: 5 peers (127.8.0.9) that identify, join the node's topic
  ``soak`` and each send 100 signed messages of 1 MiB as fast as the node
  reads them (refused, they try again every half second).

Measured: the honest pings (answered, median and p99, before, during and
after), the node's RSS (before, peak, 10 s after the attack ended), its
connections during the attack (from ``guts status``), and its stderr lines.
``--rounds N`` attacks the same node N times in a row, 10 s apart, and
gives its RSS after each: memory the node keeps must not grow from one
attack to the next. ``--write`` puts the table into RELIABILITY.md between its soak markers.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench._procs import child_env, proc_status
from guts.crypto import KeyPair
from guts.gossip import MESHSUB_V12, RPC, encode_rpc
from guts.gossip._codec import SubOpts
from guts.gossip._signing import sign_message
from guts.host import HostConfig, open_host
from guts.identify import Identify
from guts.multiaddr import Multiaddr
from guts.peer import PeerId
from guts.mux.yamux import YamuxConfig, YamuxConnection
from guts.ping import Ping, ping
from guts.transport import TcpConnection, TcpTransport
from guts.transport.tcp import tcp_target
from guts.upgrade import upgrade_outbound
from guts.wire import encode_length_prefixed, encode_uvarint

ROOT = Path(__file__).resolve().parent.parent
PING = "/ipfs/ping/1.0.0"
MULTISTREAM = "/multistream/1.0.0"
START, END = "<!-- soak:start -->", "<!-- soak:end -->"


def _line(text: str) -> bytes:
    data = (text + "\n").encode()
    return encode_uvarint(len(data)) + data


@dataclass
class Tally:
    pings: dict[str, list[float]] = field(default_factory=lambda: {"before": [], "during": [], "after": []})
    failures: Counter[str] = field(default_factory=Counter)
    opened: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    phase: str = "before"


async def _tcp(port: int, source: str) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port, local_address=source)


async def _authenticated(port: int, source: str, nursery: trio.Nursery) -> YamuxConnection:
    raw = await _tcp(port, source)
    try:
        with trio.fail_after(10):
            _, muxer = await upgrade_outbound(raw, KeyPair.generate(), None, YamuxConfig(keepalive_interval=None))
    except BaseException:
        await trio.aclose_forcefully(raw)
        raise
    nursery.start_soon(muxer.run)
    return muxer


class _FromAddress(TcpTransport):
    """TCP dialled from one loopback address, so that the node tells the
    peers apart by IP."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    async def dial(self, addr: Multiaddr) -> TcpConnection:
        target = tcp_target(addr)
        assert target is not None
        stream = await trio.open_tcp_stream(target[1], target[2], local_address=self.source)
        return TcpConnection(stream)


async def _honest(addr: Multiaddr, source: str, tally: Tally, stop: trio.Event) -> None:
    """An honest peer: a full host (it identifies) that pings every 0.5 s,
    dialling again when its connection is gone."""
    assert addr.peer_id is not None
    node = PeerId.from_string(addr.peer_id)
    async with open_host(KeyPair.generate(), [_FromAddress(source)], HostConfig(keep_alive=0)) as host:
        Identify(host)
        Ping(host)
        while not stop.is_set():
            start = time.perf_counter()
            try:
                with trio.fail_after(5):
                    if host.connection(node) is None:
                        await host.connect(addr)
                    async for _ in ping(host, node, 1):
                        pass
                tally.pings[tally.phase].append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - counted: the figure is how many failed
                tally.failures[f"{tally.phase}: {type(exc).__name__}"] += 1
            await trio.sleep(0.5)


async def _hold(kind: str, port: int, source: str, tally: Tally, stop: trio.Event) -> None:
    """One hostile connection of ``kind`` until ``stop``."""
    try:
        with trio.fail_after(15):
            if kind in ("tcp-idle", "noise-stall"):
                raw = await _tcp(port, source)
            else:
                raw = None
    except (OSError, trio.TooSlowError):
        tally.refused[kind] += 1
        return
    if raw is not None:
        async with raw:
            tally.opened[kind] += 1
            try:
                if kind == "noise-stall":
                    await raw.send_all(_line(MULTISTREAM) + _line("/noise"))
                await stop.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        return
    async with trio.open_nursery() as nursery:
        try:
            muxer = await _authenticated(port, source, nursery)
        except Exception:  # noqa: BLE001 - a refusal is what is counted
            tally.refused[kind] += 1
            nursery.cancel_scope.cancel()
            return
        tally.opened[kind] += 1
        try:
            if kind == "idle":
                await stop.wait()
            elif kind == "ls-spam":
                while not stop.is_set():
                    stream = await muxer.open_stream()
                    await stream.send_all(_line(MULTISTREAM) + _line("ls") * 64)
                    await trio.sleep(0.01)
            elif kind == "churn":
                while not stop.is_set():
                    stream = await muxer.open_stream()
                    await stream.send_all(_line(MULTISTREAM) + _line(PING))
                    await stream.reset()
                    await trio.sleep(0)
        except Exception:  # noqa: BLE001 - the node closed it: counted as refused work
            tally.refused[f"{kind} (closed by the node)"] += 1
        await muxer.aclose()
        nursery.cancel_scope.cancel()


async def _gossip_big(addr: Multiaddr, source: str, tally: Tally, stop: trio.Event) -> None:
    """A peer that joins the topic ``soak`` and sends 100 messages of 1 MiB."""
    assert addr.peer_id is not None
    node = PeerId.from_string(addr.peer_id)
    keypair = KeyPair.generate()
    try:
        async with open_host(keypair, [_FromAddress(source)], HostConfig(keep_alive=0)) as host:
            Identify(host)
            host.set_handler(MESHSUB_V12, lambda stream: trio.sleep_forever())  # the node opens its stream too
            with trio.fail_after(60):
                while True:  # as an attacker would: again until let in
                    try:
                        await host.connect(addr)
                        stream = await host.new_stream(node, [MESHSUB_V12])
                        break
                    except Exception:  # noqa: BLE001 - refused: counted, tried again
                        tally.refused["gossip-big"] += 1
                        if stop.is_set():
                            raise
                        await trio.sleep(0.5)
                tally.opened["gossip-big"] += 1
                await stream.send_all(encode_length_prefixed(encode_rpc(RPC(subscriptions=(SubOpts(True, "soak"),)))))
                payload = os.urandom(1024 * 1024 - 2048)
                for i in range(100):
                    if stop.is_set():
                        break
                    message = sign_message(keypair, "soak", payload[:-8] + b"%08d" % i, i + 1)
                    await stream.send_all(encode_length_prefixed(encode_rpc(RPC(messages=(message,)))))
                    tally.opened["gossip-big messages sent"] += 1
            await stop.wait()
    except Exception:  # noqa: BLE001 - the node closed it: counted
        tally.refused["gossip-big"] += 1


async def _flood(port: int, source: str, tally: Tally, stop: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        while not stop.is_set():
            try:
                with trio.fail_after(5):
                    muxer = await _authenticated(port, source, nursery)
                tally.opened["handshake-flood"] += 1
                await muxer.aclose()
            except Exception:  # noqa: BLE001 - counted
                tally.refused["handshake-flood"] += 1
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


def _status(home: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "guts.cli", "status", "--json"],
        capture_output=True, text=True, timeout=30, env={**child_env(), "GUTS_HOME": str(home)},
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(done.stdout) if done.returncode == 0 else {}
    return answer


def _rss(pid: int) -> float:
    return proc_status(pid).get("VmRSS", 0) / 1024


async def soak(seconds: float, scale: float, home: Path, rounds: int = 1) -> dict[str, Any]:
    log_path = home / "node.log"
    with open(log_path, "w") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "guts.cli", "start", "--json", "--listen", "/ip4/127.0.0.1/tcp/0", "--topic", "soak"],
            stdout=subprocess.PIPE, stderr=log, text=True, env={**child_env(), "GUTS_HOME": str(home)},
        )  # fmt: skip
    try:
        assert node.stdout is not None
        ready = json.loads(node.stdout.readline())
        port = int(ready["addrs"][0].split("/")[4])
        tally = Tally()
        figures: dict[str, Any] = {"rss_start": _rss(node.pid)}
        honest_stop = trio.Event()
        count = {k: max(1, round(n * scale)) for k, n in
                 {"idle": 400, "noise-stall": 200, "tcp-idle": 200, "ls-spam": 50, "churn": 50,
                  "handshake-flood": 80, "gossip-big": 5}.items()}  # fmt: skip
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(_honest, Multiaddr.parse(ready["addrs"][0]), f"127.0.0.{10 + i}", tally, honest_stop)
            await trio.sleep(5)
            for _ in range(rounds):
                hostile_stop = trio.Event()
                tally.phase = "during"
                attack_started = time.monotonic()
                async with trio.open_nursery() as attack:
                    sources = {"noise-stall": "127.3.0.4", "tcp-idle": "127.4.0.5", "ls-spam": "127.5.0.6",
                               "churn": "127.6.0.7"}  # fmt: skip
                    for i in range(count["idle"]):
                        attack.start_soon(_hold, "idle", port, f"127.{10 + i % 100}.0.1", tally, hostile_stop)
                    for kind in ("noise-stall", "tcp-idle", "ls-spam", "churn"):
                        for _ in range(count[kind]):
                            attack.start_soon(_hold, kind, port, sources[kind], tally, hostile_stop)
                    for _ in range(count["handshake-flood"]):
                        attack.start_soon(_flood, port, "127.7.0.8", tally, hostile_stop)
                    for _ in range(count["gossip-big"]):
                        attack.start_soon(_gossip_big, Multiaddr.parse(ready["addrs"][0]), "127.8.0.9", tally, hostile_stop)
                    peak, held, samples = max(figures["rss_start"], figures.get("rss_peak", 0)), figures.get("held", 0), 0
                    while time.monotonic() - attack_started < seconds:
                        await trio.sleep(2)
                        peak = max(peak, _rss(node.pid))
                        status = await trio.to_thread.run_sync(_status, home)
                        if status:
                            samples += 1
                            held = max(held, len(status.get("connections", [])))
                            figures["gossip_dropped"] = status.get("pubsub", {}).get("dropped", {})
                            figures["output"] = status.get("output", {})
                        else:
                            tally.failures["during: guts status did not answer"] += 1
                    figures.update(rss_peak=peak, held=held)
                    figures["status_answers"] = figures.get("status_answers", 0) + samples
                    hostile_stop.set()
                    attack.cancel_scope.deadline = trio.current_time() + 20  # the hostile tasks end by then
                tally.phase = "after"
                await trio.sleep(10)
                figures.setdefault("rss_after", []).append(_rss(node.pid))
            honest_stop.set()
        figures["stderr_lines"] = sum(1 for _ in open(log_path, errors="replace"))
        figures["tally"] = tally
        figures["alive"] = node.poll() is None
        return figures
    finally:
        node.terminate()
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f} ms"


def report(f: dict[str, Any], seconds: float, rounds: int = 1) -> str:
    tally: Tally = f["tally"]
    lines = ["| phase | honest pings answered | failed | median | p99 |", "| --- | ---: | ---: | ---: | ---: |"]
    for phase in ("before", "during", "after"):
        ok = tally.pings[phase]
        failed = sum(n for k, n in tally.failures.items() if k.startswith(phase + ":"))
        median = f"{statistics.median(ok) * 1000:.1f} ms" if ok else "—"
        lines.append(f"| {phase} the attack | {len(ok)} | {failed} | {median} | {_ms(ok, 0.99)} |")
    lines += ["", "| hostile population | connections made | refused or closed by the node |", "| --- | ---: | ---: |"]
    for kind in ("idle", "noise-stall", "tcp-idle", "ls-spam", "churn", "handshake-flood", "gossip-big"):
        closed = sum(n for k, n in tally.refused.items() if k.startswith(kind))
        lines.append(f"| {kind} | {tally.opened[kind]} | {closed} |")
    per = (f["rss_peak"] - f["rss_start"]) / f["held"] * 1024 if f["held"] else 0.0
    lines += [
        "",
        f"Node RSS: {f['rss_start']:.0f} MiB before, {f['rss_peak']:.0f} MiB at the peak, "
        f"{', '.join(f'{r:.0f}' for r in f['rss_after'])} MiB 10 s after the attack ended"
        f"{' (after each of the ' + str(rounds) + ' rounds)' if rounds > 1 else ''}; at most {f['held']} connections "
        f"held at once ({per:.0f} KiB each at the peak). `guts status` answered {f['status_answers']} times during the "
        f"{seconds:.0f} s attack{' rounds' if rounds > 1 else ''}; failures: {dict(tally.failures) or 'none'}. The node wrote {f['stderr_lines']} "
        f"lines to stderr, and {'was still running' if f['alive'] else 'HAD STOPPED'} at the end. "
        f"The gossip-big peers sent {tally.opened['gossip-big messages sent']} messages of 1 MiB; the node "
        f"did not deliver {sum(f.get('gossip_dropped', {}).values()):,} gossip messages "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(f.get('gossip_dropped', {}).items())) or 'none'}), and its "
        f"output (stdout not read after the first line) dropped {f.get('output', {}).get('lines_dropped', 0):,} lines.",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python -m bench.soak"
        f"{' --rounds ' + str(rounds) if rounds > 1 else ''}`, "
        f"{os.cpu_count()} cores; the attackers run in one process on the same machine.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the attack lasts")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the hostile populations")
    parser.add_argument("--rounds", type=int, default=1, help="attacks in a row against the same node")
    parser.add_argument("--write", action="store_true", help="write the table into RELIABILITY.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="guts-soak-") as tmp:
        figures = trio.run(soak, args.seconds, args.scale, Path(tmp), args.rounds)
    text = report(figures, args.seconds, args.rounds)
    print(text)
    if args.write:
        path = ROOT / "RELIABILITY.md"
        doc = path.read_text()
        if START not in doc or END not in doc:
            print(f"RELIABILITY.md has no {START} … {END} markers", file=sys.stderr)
            return 1
        head, rest = doc.split(START, 1)
        path.write_text(head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
