"""The overview's health lines: /api/health's checks as green, red with the reason, or off."""

from __future__ import annotations

from typing import Any

import pytest

from dynamics_bridge.app import health
from dynamics_bridge.app.health import HealthReport
from dynamics_bridge.app.status import HealthLine, health_lines
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.settings import load_settings

GREEN: dict[str, dict[str, Any]] = {
    "key_vault": {"ok": True},
    "settings": {"ok": True},
    "queue": {"ok": True, "name": "payment-events", "messages": 4, "poison": 1},
    "dataverse": {"ok": True},
    "apsis": {"ok": True, "configured": True},
    "trigger_outbox": {
        "ok": True,
        "pending": {"count": 0, "oldest_seconds": None},
        "unconfirmed": {"count": 0, "oldest_seconds": None},
    },
    "spar": {"ok": True, "configured": True},
}


def lines_for(monkeypatch: pytest.MonkeyPatch, **changes: dict[str, Any]) -> dict[str, HealthLine]:
    checks = {**GREEN, **changes}
    monkeypatch.setattr(
        health, "check_health", lambda *_a, **_k: HealthReport(200, {"checks": checks})
    )
    return {line.name: line for line in health_lines(Services(load_settings()), {})}


def test_all_green_names_the_queue_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = lines_for(monkeypatch)
    assert {line.state for line in lines.values()} == {"ok"}
    assert lines["queue"].reason == "4 waiting, 1 on the poison queue"


def test_an_unreachable_dataverse_is_red_with_the_kind_of_failure(monkeypatch) -> None:
    lines = lines_for(
        monkeypatch, dataverse={"ok": False, "error": "TransientError", "status": 503}
    )
    assert lines["dataverse"] == HealthLine("dataverse", "red", "TransientError (HTTP 503)")


def test_a_stalled_trigger_outbox_makes_apsis_red(monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = {
        "ok": False,
        "pending": {"count": 3, "oldest_seconds": 5400},
        "unconfirmed": {"count": 2, "oldest_seconds": 60},
    }
    line = lines_for(monkeypatch, trigger_outbox=outbox)["apsis"]
    assert line.state == "red"
    assert "2 unconfirmed trigger(s)" in line.reason
    assert "90 min" in line.reason


def test_unconfigured_apsis_and_spar_are_off_not_red(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = lines_for(
        monkeypatch,
        apsis={"ok": True, "configured": False},
        trigger_outbox={"ok": False, "error": "ConfigError"},
        spar={"ok": True, "configured": False},
    )
    assert (lines["apsis"].state, lines["spar"].state) == ("off", "off")


def test_spar_on_the_demo_contract_is_red(monkeypatch: pytest.MonkeyPatch) -> None:
    spar = {"ok": False, "configured": True, "problems": ["BRIDGE_SPAR__CUSTOMER_NUMBER"]}
    line = lines_for(monkeypatch, spar=spar)["spar"]
    assert line.state == "red"
    assert "BRIDGE_SPAR__CUSTOMER_NUMBER" in line.reason


def test_an_unreadable_queue_is_red(monkeypatch: pytest.MonkeyPatch) -> None:
    line = lines_for(monkeypatch, queue={"ok": False, "name": "q", "error": "TransientError"})[
        "queue"
    ]
    assert line == HealthLine("queue", "red", "TransientError")


def test_a_failed_start_up_check_makes_settings_red_with_its_first_error(monkeypatch) -> None:
    config = {"ok": False, "errors": ["mappings/triggers.yaml: unknown event", "second"]}
    line = lines_for(monkeypatch, config=config)["settings"]
    assert line == HealthLine(
        "settings", "red", "mappings/triggers.yaml: unknown event (and 1 more)"
    )


def test_settings_that_do_not_load_turn_every_part_red(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = {
        "key_vault": {"ok": True},
        "settings": {"ok": False, "problems": ["BRIDGE_QUEUE__NAME"]},
    }
    monkeypatch.setattr(
        health, "check_health", lambda *_a, **_k: HealthReport(503, {"checks": checks})
    )
    lines = health_lines(Services(load_settings()), {})
    assert [line.state for line in lines] == ["red"] * 5
    assert "BRIDGE_QUEUE__NAME" in lines[0].reason


def test_the_last_timer_runs_are_found_without_reading_every_run() -> None:
    from collections.abc import Iterator
    from datetime import UTC, datetime, timedelta

    from dynamics_bridge.app.status import day_window, last_timer_runs
    from dynamics_bridge.ops.memory import InMemoryOpsStore
    from dynamics_bridge.ops.model import RunRecord

    class Counting(InMemoryOpsStore):
        read = 0

        def runs(self, since, until=None, *, kind=None) -> Iterator[RunRecord]:
            for run in super().runs(since, until, kind=kind):
                Counting.read += 1
                yield run

    ops = Counting()
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for i in range(144):  # every five minutes since midnight
        ops.record_run(RunRecord(f"t{i}", "timer", "triggers", noon - timedelta(minutes=5 * i), 9))
    ops.record_run(RunRecord("r", "timer", "reminders", noon - timedelta(days=2), 9))
    totals = ops.day_totals(day_window(noon.date(), 7))
    last = last_timer_runs(ops, totals)
    assert last["triggers"] is not None
    assert last["triggers"].run_id == "t0"
    assert last["reminders"] is not None
    assert last["reminders"].run_id == "r"
    assert last["refresh"] is None
    assert Counting.read <= 3  # the newest triggers run, and the reminders day's one run


def test_retention_shows_only_when_on_and_is_red_while_no_model_is_used(monkeypatch) -> None:
    assert "retention" not in lines_for(monkeypatch)
    lines = lines_for(
        monkeypatch,
        retention={
            "ok": False,
            "used": False,
            "model": "v00003",
            "why": "does not beat the baseline: ROC AUC 0.540 against the baseline's 0.552",
        },
    )
    assert lines["retention"].state == "red"
    assert "does not beat the baseline" in lines["retention"].reason
    used = lines_for(
        monkeypatch,
        retention={"ok": True, "used": True, "model": "v00004", "trained_on": "2026-11-30"},
    )
    assert used["retention"] == HealthLine(
        "retention", "ok", "churn model v00004 trained 2026-11-30"
    )
