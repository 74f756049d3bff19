from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dynamics_bridge.cli import _progress


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


class Bars:
    """Stands in for the progress bars: records each ``(done, total)`` a command reports, by
    the bar's description (the rendering is rich's; what is tested is what it is told)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[int, int | None]]] = {}
        self.notes: dict[str, list[str]] = {}

    @contextmanager
    def __call__(self, description: str, **options: object) -> Iterator[_progress.Advance]:
        calls = self.calls.setdefault(description, [])
        notes = self.notes.setdefault(description, [])

        def advance(done: int, total: int | None = None, note: str | None = None) -> None:
            calls.append((done, total))
            if note:
                notes.append(note)

        yield advance


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> Bars:
    recorded = Bars()
    monkeypatch.setattr(_progress, "progress_bar", recorded)
    return recorded
