"""The console served over a seeded day (tests/browser/world.py) and a headless Chromium.

These tests run in CI: without chromium and chromedriver they FAIL with a message saying
``make test`` installs them. ``BRIDGE_SKIP_BROWSER=1`` skips them, on purpose only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dynamics_bridge.app.console.web import create_app
from tests.browser.driver import chromium, missing_browser, serve
from tests.browser.world import World, seeded_world

#: The sandbox register's size: small, the pages show every part of it.
MEMBERS = 24


def _require_browser() -> None:
    if os.environ.get("BRIDGE_SKIP_BROWSER") == "1":
        pytest.skip("BRIDGE_SKIP_BROWSER=1: the browser tests are skipped on purpose")
    problem = missing_browser()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@dataclass
class Console:
    url: str
    world: World
    gate: Any  # the ConsoleAuth in front of the app: new_login_token() for a sign-in link

    def login_link(self) -> str:
        return f"{self.url}/login?token={self.gate.new_login_token()}"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    _require_browser()  # no minutes of seeding for tests that cannot run
    with seeded_world(Path(tmp_path_factory.mktemp("world")), members=MEMBERS) as w:
        yield w


@pytest.fixture(scope="session")
def console(world: World) -> Iterator[Console]:
    gate = create_app(world.services, auth="local", local_user="Test Admin")
    with serve(gate) as url:
        yield Console(url, world, gate)


@pytest.fixture(scope="session")
def new_browser() -> Iterator[Callable[[], Any]]:
    """Opens a Chromium of its own (a fresh profile: no cookies); closed at the session's end."""
    _require_browser()
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(chromium())


@pytest.fixture(scope="session")
def browser(console: Console, new_browser: Callable[[], Any]) -> Any:
    """One Chromium signed in to the console with a one-time link, shared by the page tests."""
    driver = new_browser()
    driver.get(console.login_link())
    return driver
