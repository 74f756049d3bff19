"""Debian's headless Chromium through its chromedriver (Selenium), and a uvicorn server in a
thread: the plumbing the browser tests and ``make screenshots`` share.

Chromium runs with a fresh profile and without its background traffic (component updates,
sync, QUIC, field trials): on a closed network those calls hang the start-up. Selenium is given
both paths, so Selenium Manager never tries to download a driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "FLAGS",
    "chromium",
    "missing_browser",
    "serve",
]

CHROMIUM = Path(os.environ.get("BRIDGE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("BRIDGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def missing_browser() -> str | None:
    """Why the browser cannot start here, in words that say how to fix it; None when it can."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    problems = []
    if absent:
        problems.append(f"{' and '.join(absent)} missing")
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("the selenium package is missing (the dev extra)")
    if not problems:
        return None
    return (
        f"the browser tests need Debian's chromium and chromium-driver: {'; '.join(problems)}. "
        "`make test` installs them (apt-get install chromium chromium-driver; pip install -e "
        "'.[dev]'); BRIDGE_SKIP_BROWSER=1 skips these tests on purpose"
    )


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium whose pages are ``width`` x ``height``; quit and its profile removed
    at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bridge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(30)
        # The window's size includes room for browser chrome even headless: pin the page's own
        # viewport to width x height, so pages lay out (and screenshots come out) at that size.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: Any, *, timeout: float = 20.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1:<free port> in a thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the console did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
