"""`dynamics-bridge demo`: the main job on the embedded default, as `make demo` runs it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dynamics_bridge.cli import app

runner = CliRunner()


def test_demo_json_counts_every_delivery_and_recognises_redeliveries() -> None:
    result = runner.invoke(app, ["demo", "--members", "10", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["deliveries"] == 2 * (summary["unique_event_ids"] + 1)  # + the forged one
    assert summary["answers"] == {"202": summary["deliveries"] - 2, "401": 2}
    assert summary["queued_events"] == 2 * summary["unique_event_ids"]
    assert set(summary["events_by_source"]) == {"swish", "billogram"}
    assert summary["events_by_kind"]["payment.refunded"] == 1
    assert summary["events_by_kind"]["payment.failed"] >= 1
    assert sum(summary["events_by_kind"].values()) == summary["unique_event_ids"]


def test_demo_prints_the_events_as_a_table() -> None:
    result = runner.invoke(app, ["demo", "--members", "4"], env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    assert "payment.succeeded" in result.stdout
    assert "999999 (member_number)" in result.stdout
    assert "got 401 and queued nothing" in result.stdout
