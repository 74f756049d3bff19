"""``make screenshots``: PNGs of each console page over the seeded day, for the README.

    python -m tests.browser.screenshots [folder]     (default docs/screenshots)

Serves the console over tests/browser/world.py's day (sandbox and Azurite), signs in with a
one-time link, and saves each page as the 1280x900 window shows it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dynamics_bridge.app.console.web import create_app
from tests.browser.driver import chromium, missing_browser, serve
from tests.browser.world import seeded_world

__all__ = ["PAGES", "main", "take"]

#: file name → path under the console; ``poison-message`` is the first poison record's page.
PAGES = {
    "overview": "/",
    "history": "/history?days=30",
    "poison": "/poison",
    "poison-search": "/poison?search={member}",
    "poison-message": "/poison/{message_id}",
    "segments": "/segments",
    "triggers": "/triggers",
    "mapping": "/mapping",
}
WIDTH, HEIGHT = 1280, 900


def take(driver: Any, url: str, pages: dict[str, str], folder: Path) -> list[Path]:
    """Each page's screenshot as ``<folder>/<name>.png``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in pages.items():
        driver.get(url + path)
        time.sleep(0.2)  # let layout settle (fonts are local; nothing else loads)
        target = folder / f"{name}.png"
        if not driver.save_screenshot(str(target)):
            raise RuntimeError(f"{target}: the browser saved no screenshot")
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("docs/screenshots")
    problem = missing_browser()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    with (
        tempfile.TemporaryDirectory(prefix="bridge-screenshots-") as work,
        seeded_world(Path(work)) as world,
    ):
        gate = create_app(world.services, auth="local", local_user="Anna Admin")
        first = world.services.ops.poison_page(_everything(), limit=1).records
        pages = {
            name: path.format(
                member=world.unknown[1],
                message_id=first[0].message_id if first else "",
            )
            for name, path in PAGES.items()
            if first or "{message_id}" not in path
        }
        with serve(gate) as url, chromium(WIDTH, HEIGHT) as driver:
            driver.get(f"{url}/login?token={gate.new_login_token()}")
            written = take(driver, url, pages, folder)
    for path in written:
        print(f"{path}  ({path.stat().st_size:,} bytes)")
    return 0


def _everything() -> Any:
    from dynamics_bridge.ops.model import PoisonFilter

    return PoisonFilter()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
