"""The house rules of ../shared/STYLE.md, checked on every module's imports.

Each module under ``guts/`` is read with :mod:`ast` (never imported), and
every import counts: top level, inside functions, and under
``TYPE_CHECKING``. A lazy import hides a dependency from the interpreter,
not from the design. The rules:

1. **Layers.** A module imports only its own layer and the layers below
   (the order below, from STYLE.md). Modules of one layer may import each
   other, as long as rule 2 holds.
2. **No cycles** between modules.
3. **Private modules stay home.** ``a/b/_c.py`` (or anything under a
   private package ``a/_b/``) is imported only from its own package
   ``a/b`` (or from inside the private package itself); other packages use
   the names ``a/b/__init__.py`` exports. Private names (``from m import
   _x``) are not imported across packages either.
4. **Sans-IO cores do not import trio**, directly or through another
   ``guts`` module they use (for ``from package import name``, the module
   the package took ``name`` from).

When a rule and a change disagree, change the rule here, in the open, with
the reason; never blunt the check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "guts"

#: Layers from the bottom up. A module belongs to the longest prefix that
#: names it. ``guts.errors``, the identity types and the generated protobuf
#: code are the foundation every layer stands on.
LAYERS: list[tuple[str, ...]] = [
    # 0: foundation
    ("guts", "guts.errors", "guts.crypto", "guts.peer", "guts.cid", "guts.multiaddr", "guts.pb", "guts._netaddrs", "guts.home", "guts.ratelog", "guts.sqlitefile"),
    # 1: framing and negotiation
    ("guts.wire",),
    # 2: security and muxers
    ("guts.security", "guts.mux"),
    # 3: transports
    ("guts.transport",),
    # 4: the upgrader, and the connection manager's core below the host
    ("guts.upgrade", "guts.connmgr"),
    # 5: the host and what it keeps (peer scores and the block list too)
    ("guts.host", "guts._host_conn", "guts._host_events", "guts.peerstore", "guts.reputation"),
    # 6: protocols on the host
    ("guts.identify", "guts.ping", "guts.dht", "guts.gossip", "guts.sync", "guts.repo"),
    # 7: replication, composed of the protocols (announcements, seeding)
    ("guts.replicate",),
    # 8: a node composed from its config
    ("guts.config", "guts.node"),
    # 9: the control API (above the node it drives)
    ("guts.control",),
    # 10: the command line
    ("guts.cli", "guts._cli"),
]

#: Pure protocol cores: no trio, not even through a helper module. New cores
#: join this list as they come.
CORES: list[str] = [
    # codecs
    "guts.wire._varint",
    "guts.wire._framing",
    "guts.wire._multistream",
    "guts.mux.yamux._frames",
    "guts.dht._codec",
    "guts.gossip._codec",
    "guts.identify._codec",
    "guts.multiaddr",
    "guts.peer",
    "guts.cid",
    "guts.crypto",
    # state machines
    "guts.mux.yamux._session",
    "guts.security.noise._handshake",
    "guts.security.noise._transport",
    "guts.dht.lookup",
    "guts.dht.routing_table",
    "guts.dht.records",
    "guts.dht.mode",
    "guts.dht.republish",
    "guts.dht.collect",
    "guts.dht.addrbook",
    "guts.dht.inbound",
    "guts.dht.signed",
    "guts.dht.quota",
    "guts.connmgr.limits",
    "guts.connmgr.manager",
    "guts.reputation._core",
    "guts.reputation._store",
    "guts.ratelog",
    "guts.sqlitefile",
    "guts.security.tls._cert",
    "guts.security.tls._record",
    "guts.security.tls._connection",
    "guts.gossip.router",
    "guts.replicate.announce",
    "guts.replicate.coalesce",
    "guts.replicate.policy",
    "guts.repo.proposals",
    "guts.sync._race_plan",
    "guts.gossip._state",
    "guts.gossip._control",
    "guts.gossip._heartbeat",
    "guts.gossip._membership",
    "guts.gossip._messages",
    "guts.gossip._peer_record",
    "guts.gossip._signing",
    "guts.gossip.mesh",
    "guts.gossip.mcache",
    "guts.gossip.score",
    "guts.repo.pktline",
    "guts.repo.refname",
    "guts.repo.rid",
    "guts.repo._codec",
    "guts.repo.identity",
    "guts.repo.revisions",
    "guts.repo.sigrefs",
    "guts.repo.canonical",
    "guts.repo.helper_commands",
    "guts.repo.push_rules",
    "guts.repo.remote_helper",
    "guts.repo.layout",
    "guts.sync._codec",
    "guts.sync.upload_rules",
]


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (resolved to one under guts/)
    names: tuple[str, ...]  # for "from target import names"
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def package_of(module: str) -> str:
    return module if is_package(module) else module.rpartition(".")[0]


def resolve(module: str) -> str | None:
    """The module under guts/ that ``module`` names (or ``None`` if outside)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def imports_of(module: str, path: Path, source: str | None = None) -> Iterator[Import]:
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    package = package_of(module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name) if alias.name.startswith("guts") else None
                if target is not None:
                    yield Import(module, target, (), path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("guts"):
                continue
            for alias in node.names:
                # "from guts.x import y" may name the module guts.x.y itself.
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    yield Import(module, sub, (), path, node.lineno)
                else:
                    target = resolve(base)
                    if target is not None:
                        yield Import(module, target, (alias.name,), path, node.lineno)


def trio_importers(sources: dict[str, tuple[Path, str]]) -> dict[str, str]:
    """Modules that import trio themselves, with where."""
    found: dict[str, str] = {}
    for name, (path, source) in sources.items():
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module or ""]
            else:
                continue
            if any(m == "trio" or m.startswith("trio.") for m in mods):
                found.setdefault(name, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


SOURCES = {m: (p, p.read_text()) for m, p in MODULES.items()}
ALL_IMPORTS: list[Import] = [i for m, (p, src) in SOURCES.items() for i in imports_of(m, p, src)]
TRIO = trio_importers(SOURCES)


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    return layer


def private_root(module: str) -> str | None:
    """The first private component's module path (``guts.dht._store`` for
    ``guts.dht._store``, ``guts._cli`` for ``guts._cli.dht``)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[: i + 1])
    return None


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- the rules: each returns its violations, one line each ------------------------


def layer_violations(imports: list[Import]) -> list[str]:
    return [
        f"{i.where()}: {i.source} (layer {layer_of(i.source)}) imports {i.target} "
        f"(layer {layer_of(i.target)}): a layer imports only the layers below it"
        for i in imports
        if layer_of(i.target) > layer_of(i.source)
    ]


def cycle_violations(imports: list[Import]) -> list[str]:
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for i in imports:
        if i.target != i.source:
            graph.setdefault(i.source, {}).setdefault(i.target, i)
            graph.setdefault(i.target, {})
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[str] = []
    for root in graph:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] != index[node]:
                continue
            members: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                edges = [
                    f"  {imp.where()}: {src} imports {dst}"
                    for src in sorted(members)
                    for dst, imp in sorted(graph[src].items())
                    if dst in members
                ]
                cycles.append("import cycle between " + ", ".join(sorted(members)) + ":\n" + "\n".join(edges))
    return cycles


def private_violations(imports: list[Import]) -> list[str]:
    bad: list[str] = []
    for i in imports:
        root = private_root(i.target)
        if root is not None:
            home = root.rpartition(".")[0]
            if package_of(i.source) != home and not within(i.source, root):
                bad.append(
                    f"{i.where()}: {i.source} imports the private module {i.target}: "
                    f"export what it needs from {home}'s __init__ instead"
                )
        home = package_of(i.target)
        for name in i.names:
            if name.startswith("_") and not name.startswith("__") and not within(i.source, home):
                bad.append(f"{i.where()}: {i.source} imports the private name {name} from {i.target}")
    return bad


def trio_violations(imports: list[Import], trio: dict[str, str], cores: list[str]) -> list[str]:
    graph: dict[str, list[Import]] = {}
    for i in imports:
        graph.setdefault(i.source, []).append(i)
    bad: list[str] = []
    for core in cores:
        # Breadth-first through guts imports, remembering the way.
        via: dict[str, list[str]] = {core: []}
        queue = [core]
        while queue:
            module = queue.pop(0)
            if module in trio:
                chain = " -> ".join([core, *via[module]])
                bad.append(f"{trio[module]}: sans-IO core {core} imports trio (through {chain})")
                break
            for imp in graph.get(module, []):
                for target in _defining_modules(imp, graph):
                    if target not in via:
                        via[target] = [*via[module], f"{target} ({imp.where()})"]
                        queue.append(target)
    return bad


def _defining_modules(imp: Import, graph: dict[str, list[Import]]) -> list[str]:
    """Where the names of ``imp`` come from: for ``from pkg import name``,
    the submodule that ``pkg/__init__.py`` took ``name`` from, so that a
    core using a package's pure codec is not blamed for the adapters the
    same package also exports."""
    if not imp.names or not is_package(imp.target):
        return [imp.target]
    reexports = {
        name: i.target
        for i in graph.get(imp.target, [])
        for name in (i.names or (i.target.rpartition(".")[2],))
    }
    return [reexports.get(name, imp.target) for name in imp.names]


# -- the tests -------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    homeless = [m for m in MODULES if layer_of(m) < 0]
    assert not homeless, f"modules in no layer (add them to LAYERS in {Path(__file__).name}): {homeless}"


def test_every_core_exists() -> None:
    missing = [c for c in CORES if c not in MODULES]
    assert not missing, f"CORES names modules that do not exist (update the list): {missing}"


def test_no_import_from_a_higher_layer() -> None:
    bad = layer_violations(ALL_IMPORTS)
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    bad = cycle_violations(ALL_IMPORTS)
    assert not bad, "\n".join(bad)


def test_no_private_module_imported_from_another_package() -> None:
    bad = private_violations(ALL_IMPORTS)
    assert not bad, "\n".join(bad)


def test_cores_do_not_import_trio() -> None:
    bad = trio_violations(ALL_IMPORTS, TRIO, CORES)
    assert not bad, "\n".join(bad)


# -- the checks have teeth: each catches what it is for ----------------------------


def _probe(module: str, source: str) -> list[Import]:
    return list(imports_of(module, MODULES[module], source))


def test_a_layer_violation_is_caught() -> None:
    bad = layer_violations(_probe("guts.dht.lookup", "from guts.node import Node"))
    assert len(bad) == 1 and "guts/dht/lookup.py:1" in bad[0] and "layer 6" in bad[0] and "layer 8" in bad[0]


def test_a_lazy_cycle_is_caught() -> None:
    imports = _probe("guts.peer", "from guts.multiaddr import Multiaddr") + _probe(
        "guts.multiaddr", "def f():\n    from guts.peer import PeerId\n"
    )
    [bad] = cycle_violations(imports)
    assert "guts.multiaddr, guts.peer" in bad and "guts/multiaddr.py:2" in bad


def test_a_private_import_is_caught() -> None:
    [bad] = private_violations(_probe("guts.node", "from guts.dht._store import DhtStore"))
    assert "guts/node.py:1" in bad and "private module guts.dht._store" in bad
    [bad] = private_violations(_probe("guts.node", "from guts.dht.lookup import _helper"))
    assert "private name _helper" in bad
    # At home, private modules are fine.
    assert not private_violations(_probe("guts.dht.protocol", "from guts.dht._store import DhtStore"))
    assert not private_violations(_probe("guts._cli.dht", "from guts._cli.common import call"))


def test_trio_in_a_core_is_caught_through_a_helper() -> None:
    imports = _probe("guts.dht.lookup", "from guts.dht.protocol import Dht")
    bad = trio_violations(imports, {"guts.dht.protocol": "guts/dht/protocol.py:9"}, ["guts.dht.lookup"])
    assert len(bad) == 1 and bad[0].startswith("guts/dht/protocol.py:9: sans-IO core guts.dht.lookup")
