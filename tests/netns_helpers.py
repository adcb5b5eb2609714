"""Real ``guts start`` processes in network namespaces of their own, for
fault tests: each node's namespace is joined to a bridge namespace by a
veth link whose egress ``tc netem`` delays, drops or slows packets, and a
partition is a set of blackhole routes between two groups of nodes.

Everything a :class:`Lab` makes (namespaces, links, processes) it removes
in :meth:`Lab.close`, and the names carry a random tag so that runs do not
collide. :func:`netns_problem` says why namespaces cannot be used here
(not root, no ``ip``/``tc``, not permitted), or ``None``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

GUTS = [sys.executable, "-m", "guts.cli"]
SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _tc(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tc", "-n", ns, *args], capture_output=True, text=True, timeout=20)


def netns_problem() -> str | None:
    """Why this machine cannot run namespace tests, or ``None``."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "the ip and tc commands (iproute2) are not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"gutsprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Node:
    index: int
    ns: str
    home: Path
    ip: str
    process: subprocess.Popen[str] | None = None
    peer_id: str = ""
    addr: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "GUTS_HOME": str(self.home)}

    def guts(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """A ``guts`` command against this node (its control socket is a
        file: no need to enter the namespace)."""
        return subprocess.run([*GUTS, *args], capture_output=True, text=True, timeout=timeout, env=self.env, cwd=cwd)

    def json(self, *args: str, timeout: float = 60) -> dict:
        done = self.guts(*args, "--json", timeout=timeout)
        assert done.returncode == 0, f"guts {' '.join(args)} on node {self.index}: {done.stderr}"
        answer: dict = json.loads(done.stdout)
        return answer


@dataclass
class Lab:
    root: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    nodes: list[Node] = field(default_factory=list)
    _blackholes: list[tuple[str, str]] = field(default_factory=list)
    #: Link properties asked for that this kernel could not give.
    unshaped: set[str] = field(default_factory=set)

    @property
    def bridge(self) -> str:
        return f"gb{self.tag}"

    def build(self, count: int, *, delay_ms: int = 5, loss: float = 1.0) -> None:
        """``count`` namespaces on one bridge, each link's egress shaped (see
        :meth:`shape`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _ip("netns", "add", self.bridge)
        _ip("-n", self.bridge, "link", "set", "lo", "up")
        _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge, "link", "set", "br0", "up")
        for i in range(count):
            ns = f"gn{i}{self.tag}"
            node = Node(i, ns, self.root / f"node{i}", f"{SUBNET}.{i + 1}")
            _ip("netns", "add", ns)
            self.nodes.append(node)
            inside, outside = f"gv{i}{self.tag}", f"gp{i}{self.tag}"
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "netns", self.bridge)
            _ip("-n", self.bridge, "link", "set", outside, "master", "br0")
            _ip("-n", self.bridge, "link", "set", outside, "up")
            _ip("-n", ns, "link", "set", inside, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.shape(node, delay_ms=delay_ms, loss=loss)

    #: Whether the kernel has ``sch_netem`` (delay and loss); probed once.
    _netem: bool | None = None

    def netem(self) -> bool:
        if Lab._netem is None:
            probe = self.nodes[0].ns if self.nodes else self.bridge
            done = _tc(probe, "qdisc", "replace", "dev", "lo", "root", "netem", "delay", "1ms")
            Lab._netem = done.returncode == 0
            _tc(probe, "qdisc", "del", "dev", "lo", "root")
        return Lab._netem

    def shape(self, node: Node, *, rate: str | None = None, delay_ms: int = 0, loss: float = 0.0) -> None:
        """Shape ``node``'s egress: a rate (``"4mbit"``), a delay and a loss
        (percent), with ``tc netem``. A kernel without ``sch_netem`` gets
        the rate alone (``tbf``), and what it could not do is listed in
        :attr:`unshaped`, for the test to print."""
        if self.netem():
            args = ["netem", "delay", f"{delay_ms}ms", "loss", f"{loss}%", *(["rate", rate] if rate else [])]
        else:
            if delay_ms or loss:
                self.unshaped.add(f"delay {delay_ms} ms and loss {loss}% (this kernel has no sch_netem)")
            if rate is None:
                _tc(node.ns, "qdisc", "del", "dev", "eth0", "root")
                return
            args = ["tbf", "rate", rate, "burst", "32kbit", "latency", "2s"]
        done = _tc(node.ns, "qdisc", "replace", "dev", "eth0", "root", *args)
        if done.returncode != 0:
            raise RuntimeError(f"tc {' '.join(args)}: {done.stderr.strip()}")

    def start(self, node: Node, *extra: str) -> None:
        """``guts start`` in the node's namespace; waits for its ready line."""
        node.home.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"node{node.index}.log", "a") as log:  # the child keeps its own descriptor
            node.process = subprocess.Popen(
                ["ip", "netns", "exec", node.ns, *GUTS, "start", "--json", "--dht-mode", "server",
                 "--listen", f"/ip4/{node.ip}/tcp/4001", *extra],
                stdout=subprocess.PIPE, stderr=log, text=True, env=node.env,
            )  # fmt: skip
        assert node.process.stdout is not None
        line = node.process.stdout.readline()
        if not line:
            raise RuntimeError(f"node {node.index} did not start: {self.log(node)}")
        ready = json.loads(line)
        node.peer_id = ready["peer_id"]
        node.addr = f"/ip4/{node.ip}/tcp/4001/p2p/{node.peer_id}"
        # Events are not read from here on: drain them so the node never
        # waits on a full pipe.
        _drain(node.process)

    def log(self, node: Node) -> str:
        """The node's stderr so far (its last 4 KB)."""
        path = self.root / f"node{node.index}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self, node: Node) -> None:
        """``kill -9`` the node (the ``ip netns exec`` child is the node)."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)

    def stop(self, node: Node) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGINT)
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=10)

    def partition(self, side_a: list[Node], side_b: list[Node]) -> None:
        """Drop every packet between the two sides (both ways)."""
        for a in side_a:
            for b in side_b:
                for src, dst in ((a, b), (b, a)):
                    _ip("-n", src.ns, "route", "add", "blackhole", f"{dst.ip}/32")
                    self._blackholes.append((src.ns, dst.ip))

    def heal(self) -> None:
        for ns, ip in self._blackholes:
            _ip("-n", ns, "route", "del", "blackhole", f"{ip}/32", check=False)
        self._blackholes = []

    def close(self) -> None:
        for node in self.nodes:
            try:
                self.stop(node)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        for node in self.nodes:
            _ip("netns", "del", node.ns, check=False)
        _ip("netns", "del", self.bridge, check=False)


def _drain(process: subprocess.Popen[str]) -> None:
    import threading

    def read(stream: object) -> None:
        try:
            for _ in stream:  # type: ignore[attr-defined]
                pass
        except (OSError, ValueError):
            pass

    for stream in (process.stdout,):
        if stream is not None:
            threading.Thread(target=read, args=(stream,), daemon=True).start()


def wait_for(check: object, timeout: float, what: str, step: float = 0.2) -> float:
    """Poll ``check()`` until true; the seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while True:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)
