"""``dynamics-bridge status``: the console's overview in the terminal, from the same data."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dynamics_bridge.app.status import HealthLine
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import app
from dynamics_bridge.cli import status as status_cli
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.app.console.conftest import POISON, RUNS

runner = CliRunner()


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> Services:
    ops = InMemoryOpsStore()
    for run in RUNS:
        ops.record_run(run)
    ops.put_poison(POISON)
    services = Services(load_settings(), queue=InMemoryQueue("status"), ops=ops)
    monkeypatch.setattr(status_cli, "_services", lambda: services)
    return services


def healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every part green (Dataverse is not configured in unit tests: the probe would be red)."""
    lines = [HealthLine(p, "ok") for p in ("settings", "dataverse", "apsis", "spar", "queue")]
    monkeypatch.setattr("dynamics_bridge.app.status.health_lines", lambda *_a, **_k: lines)


def test_the_json_is_the_overview(seeded: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    healthy(monkeypatch)
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "ok"
    assert data["today"]["events_by_source"]["bgmax"] == {"applied": 5, "poisoned": 2, "queued": 7}
    assert data["week"]["events_by_source"]["autogiro"] == {"applied": 4, "failed": 1}
    assert data["poison"]["total"] == 3
    assert sum(data["poison"]["by_day"]) == 3
    assert data["files"][0]["detail"]["receipt"] == "7 payments, 1 750.00 SEK"
    assert data["timers"]["refresh"] is None
    assert data["timers"]["reminders"]["ok"] is False


def test_the_tables_show_today_poison_files_and_timers(
    seeded: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy(monkeypatch)
    result = runner.invoke(app, ["status"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Poison book: 3 waiting" in out
    assert "BGMAX.D261203.txt" in out
    assert "7 payments, 1 750.00 SEK" in out
    assert "APSIS answered 503" in out
    bgmax = next(line for line in out.splitlines() if line.strip("│ ").startswith("bgmax"))
    assert "5" in bgmax
    assert "7" in bgmax


def test_a_red_part_exits_1_and_names_its_reason(seeded: Services) -> None:
    # No Dataverse settings here: the health probe finds it red, as /api/health would.
    result = runner.invoke(app, ["status"], env={"COLUMNS": "160"})
    assert result.exit_code == 1
    assert "not configured (BRIDGE_DATAVERSE__*)" in result.stdout
    as_json = runner.invoke(app, ["status", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["status"] == "red"


def test_settings_that_do_not_load_are_listed_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "carrier-pigeon")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "BRIDGE_QUEUE__BACKEND" in result.stderr
