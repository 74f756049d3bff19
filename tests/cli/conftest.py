from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _cli_logging_stays_in_its_test() -> Iterator[None]:
    """Each command installs the scrubbing handler on the root logger, as a real process should.
    In tests the handler would outlive its CliRunner (whose stderr is closed by then) and its
    filter would go on rewriting the records other tests capture: take it off again."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if getattr(h, "_bridge", False)]:
        root.removeHandler(handler)
    root.setLevel(level)
