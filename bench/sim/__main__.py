"""``python -m bench.sim [--only NAME]... [--quick] [--write]``.

Runs every simulation module in this package (see ``__init__``), prints
each one's Markdown table, and with ``--write`` puts each table into
BENCHMARKS.md between ``<!-- sim:NAME:begin -->`` and
``<!-- sim:NAME:end -->`` (appending the section the first time).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from types import ModuleType

import bench.sim as package
from bench._sections import write_section

def simulations() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.sim.{info.name}")
        found[module.NAME] = module
    return dict(sorted(found.items()))


def main(argv: list[str] | None = None) -> int:
    sims = simulations()
    parser = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(sims), help="run only this simulation (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    parser.add_argument("--write", action="store_true", help="write the tables into BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.write and args.quick:
        parser.error("--write records full runs only; drop --quick")
    for name in args.only or sims:
        module = sims[name]
        print(f"== {name}: {module.DESCRIPTION}", file=sys.stderr, flush=True)
        start = time.monotonic()
        markdown = module.run(quick=args.quick)
        print(markdown, flush=True)
        print(f"({name}: {time.monotonic() - start:.0f} s)\n", file=sys.stderr, flush=True)
        if args.write:
            write_section(f"sim:{name}", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
