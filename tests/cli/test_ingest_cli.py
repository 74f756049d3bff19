"""`dynamics-bridge ingest`: JSON lines on stdout, summary on stderr, exit 2 for a bad file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dynamics_bridge.cli import app
from tests.sources import test_autogiro, test_bgmax

runner = CliRunner()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_dry_run_json_prints_one_event_per_line_and_a_summary_on_stderr(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["kind"] for e in events] == ["payment.succeeded"] * 3 + ["payment.refunded"]
    assert set(events[0]) == {
        "event_id",
        "source",
        "kind",
        "member_ref",
        "amount_minor",
        "currency",
        "occurred_at",
        "provider_ref",
        "reason_code",
        "reason_text",
        "origin",
    }
    assert '"events": 4' in result.stderr


def test_a_dry_run_needs_no_queue_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")  # and no connection string
    path = write(tmp_path, "ag.txt", test_autogiro.GOOD)
    assert runner.invoke(app, ["ingest", str(path), "--dry-run"]).exit_code == 0


def test_a_bad_file_exits_2_with_its_line_and_good_files_still_go(tmp_path) -> None:
    good = write(tmp_path, "a_good.txt", test_bgmax.GOOD)
    bad = write(tmp_path, "b_bad.txt", test_bgmax.GOOD.replace(b"70000000030", b"70000000099"))
    result = runner.invoke(app, ["ingest", str(tmp_path), "--dry-run", "--json"])
    assert result.exit_code == 2
    assert f"{bad}:9:" in result.stderr
    assert len(result.stdout.splitlines()) == 4  # the good file's events only
    assert str(good) in result.stderr


def test_without_dry_run_events_go_to_the_configured_queue(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Events queued" in result.stdout
    from dynamics_bridge.queue import open_queue
    from dynamics_bridge.settings import load_settings

    assert len(open_queue(load_settings().queue).peek_events()) >= 4


def test_an_unknown_format_is_refused(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    assert runner.invoke(app, ["ingest", str(path), "--format", "xml"]).exit_code == 2
