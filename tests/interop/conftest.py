"""Fixtures for the interop tests: real js-libp2p peers driven by JsPeer.

Every test under tests/interop/ is marked ``interop``. Without node the tests
are skipped, except under ``CI=true`` where a missing node is a failure. A
missing or stale ``interop/node_modules`` is always a failure: ``make test``
runs ``npm ci --prefix interop`` first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from .jspeer import JsPeer, missing_node_modules, node_available, node_executable, node_version

_HERE = Path(__file__).resolve().parent

SpawnJs = Callable[..., Awaitable[JsPeer]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.interop)


def require_node() -> None:
    """Skip (fail under CI=true) without node >= 20; fail without node_modules."""
    if not node_available():
        found = node_executable()
        detail = f"{found} is version {node_version()}" if found else "no node on PATH"
        reason = (
            f"interop tests need node >= 20 ({detail}); install node, then "
            "`npm ci --prefix interop`"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " [CI=true: not skipping]", pytrace=False)
        pytest.skip(reason)
    problems = missing_node_modules()
    if problems:
        pytest.fail(
            "interop/node_modules is missing or stale ("
            + ", ".join(problems)
            + "): run `npm ci --prefix interop` (`make test` does this)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def js_available() -> None:
    """Session-wide check that the js peer can be launched."""
    require_node()


@pytest.fixture
async def spawn_js(js_available: None) -> AsyncIterator[SpawnJs]:
    """Factory: ``js = await spawn_js(listen=..., seed=..., **kw)`` starts a
    js peer (see :meth:`JsPeer.start`) that is stopped after the test.

    The peers run in this fixture's nursery, so they may be started from the
    test body; they are all sent ``stop`` together when the test ends.
    """
    stops: list[trio.Event] = []

    async def run(kwargs: dict[str, Any], stop: trio.Event, *, task_status: Any) -> None:
        async with JsPeer.start(**kwargs) as js:
            task_status.started(js)
            await stop.wait()

    async with trio.open_nursery() as nursery:

        async def spawn(**kwargs: Any) -> JsPeer:
            stop = trio.Event()
            stops.append(stop)
            js: JsPeer = await nursery.start(run, kwargs, stop)
            return js

        try:
            yield spawn
        finally:
            for stop in reversed(stops):
                stop.set()


@pytest.fixture
async def js_peer(spawn_js: SpawnJs) -> JsPeer:
    """One js peer with the default listen addresses (tcp and ws on loopback)."""
    return await spawn_js()
