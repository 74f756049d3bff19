"""`dynamics-bridge ingest`: JSON lines on stdout, summary on stderr, exit 2 for a bad file, and
nothing read until the union's own payee bankgiro is configured."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.model import JSON_KEYS
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import load_settings
from tests.fixtures.bankgirot import HERE
from tests.sources import test_autogiro, test_bgmax

runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory queues are shared per name within a process: each test gets its own. And the
    union is Bankgirot's example payee, the one every fixture file names."""
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", f"ingest-{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", "991-2346")
    monkeypatch.setenv("BRIDGE_BANKGIROT__CUSTOMER_NUMBERS", "471117")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def queued() -> list[dict]:
    return open_queue(load_settings().queue).peek_events()


def test_dry_run_json_prints_one_canonical_event_per_line_and_a_summary_on_stderr(
    tmp_path,
) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["kind"] for e in events] == ["payment.succeeded"] * 3 + ["payment.refunded"]
    assert all(list(e) == list(JSON_KEYS) for e in events)
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert (summary["path"], summary["events"], summary["queued"]) == (str(path), 4, 0)


def test_a_dry_run_queues_nothing_and_needs_no_queue_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")  # and no connection string
    path = write(tmp_path, "ag.txt", test_autogiro.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "nothing queued" in result.stdout
    monkeypatch.delenv("BRIDGE_QUEUE__BACKEND")
    assert queued() == []


def test_a_dry_run_still_uses_the_ocr_scheme_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BANKGIROT__OCR_SCHEME", "plain")
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run", "--json"])
    second = json.loads(result.stdout.splitlines()[1])
    assert second["member_ref"] == {"kind": "member_number", "value": "1000020"}


def test_a_bad_setting_is_refused_by_its_env_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BANKGIROT__OCR_SCHEME", "rot13")
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "BRIDGE_BANKGIROT__OCR_SCHEME" in result.stderr


def test_a_bad_file_exits_2_with_its_line_and_good_files_still_go(tmp_path) -> None:
    good = write(tmp_path, "a_good.txt", test_bgmax.GOOD)
    bad = write(tmp_path, "b_bad.txt", test_bgmax.GOOD.replace(b"70000000030", b"70000000099"))
    also_good = write(tmp_path, "c_good.txt", test_autogiro.GOOD)
    result = runner.invoke(app, ["ingest", str(tmp_path), "--dry-run", "--json"])
    assert result.exit_code == 2
    assert f"{bad}:9: end record says payments (TK20) = 9 (positions 3-10)" in result.stderr
    assert len(result.stdout.splitlines()) == 4 + 8  # the good files' events only
    assert str(good) in result.stderr
    assert str(also_good) in result.stderr


def test_a_missing_path_is_reported_and_the_others_still_go(tmp_path) -> None:
    good = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "nope.txt"), str(good), "--dry-run", "--json"]
    )
    assert result.exit_code == 2
    assert "nope.txt: no such file or directory" in result.stderr
    assert len(result.stdout.splitlines()) == 4


def test_without_dry_run_events_go_to_the_configured_queue_with_a_table(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Events queued" in result.stdout
    assert "payment.succeeded" in result.stdout
    assert "600.00" in result.stdout  # 250 + 250 + 100 kr
    assert len(queued()) == 4


def test_the_memory_backend_is_said_to_lose_the_events_when_the_command_ends(tmp_path) -> None:
    # Still allowed (in-process callers such as the CLI sync tests read the memory queue), but
    # never presented as if the events were durably queued.
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Events queued in memory only (lost when this command ends)" in result.stdout
    assert "BRIDGE_QUEUE__BACKEND is 'memory'" in result.stderr
    assert "--dry-run" in result.stderr
    assert "BRIDGE_QUEUE__BACKEND=azure" in result.stderr
    as_json = runner.invoke(app, ["ingest", str(path), "--json"])
    assert json.loads(as_json.stdout)["queue"].startswith("memory")


def test_a_dry_run_does_not_warn_about_the_memory_queue(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run"], env={"COLUMNS": "160"})
    assert "BRIDGE_QUEUE__BACKEND is 'memory'" not in result.stderr


@pytest.mark.parametrize("dry_run", [True, False])
def test_failed_mandate_requests_are_counted_as_needing_a_task(tmp_path, dry_run) -> None:
    from tests.fixtures.bankgirot import build

    path = write(tmp_path, "medavi.txt", build.mandate_notices())  # one 04/21 among six
    args = ["ingest", str(path), *(["--dry-run"] if dry_run else [])]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "needs a task" in line)
    assert "(mandate request failed, needs a task)" in row
    assert row.rstrip(" │|").split()[-1] == "1"
    warnings = [line for line in result.stderr.splitlines() if "mandate_request_failed" in line]
    assert len(warnings) == 1  # ingest reads the file twice; logged once
    assert "100003" in warnings[0]
    as_json = runner.invoke(app, [*args, "--json"])
    lines = (as_json.stderr if dry_run else as_json.stdout).strip().splitlines()
    summary = json.loads(lines[-1])
    assert len(summary["mandate_requests_failed"]) == 1
    assert summary["mandate_requests_failed"][0].startswith(f"{path}:")
    assert "mandate.rejected" not in summary["by_kind"]


def test_without_dry_run_nothing_from_a_bad_file_is_queued(tmp_path) -> None:
    bad = write(tmp_path, "bad.txt", test_bgmax.GOOD.replace(b"70000000030", b"70000000099"))
    result = runner.invoke(app, ["ingest", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:9:" in result.stderr
    assert queued() == []


def test_a_file_to_bankgirot_is_refused_saying_what_it_is(tmp_path) -> None:
    order = HERE / "autogiro_payment_order_to_bankgirot.txt"
    result = runner.invoke(app, ["ingest", str(order), "--dry-run"])
    assert result.exit_code == 2
    assert "payment order file" in result.stderr


def test_the_format_can_be_forced(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--format", "autogiro", "--dry-run"])
    assert result.exit_code == 2
    assert "BgMax" in result.stderr


def test_an_unknown_format_is_refused(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--format", "xml"])
    assert result.exit_code == 2
    assert "--format must be one of" in result.stderr


def test_json_summary_without_dry_run_goes_to_stdout(tmp_path) -> None:
    path = write(tmp_path, "ag.txt", test_autogiro.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["queued"] == 8
    assert summary["by_kind"]["payment.failed"]["SEK"] == {"count": 3, "sum_minor": 60000}


@pytest.mark.parametrize("dry_run", [True, False])
def test_without_the_unions_payee_bankgiro_nothing_is_read(tmp_path, monkeypatch, dry_run) -> None:
    monkeypatch.delenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS")
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), *(["--dry-run"] if dry_run else [])])
    assert result.exit_code == 2
    assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS: required to ingest Bankgirot files" in result.stderr
    assert result.stdout == ""
    assert queued() == []


def test_a_file_for_another_payee_exits_2_naming_line_field_and_both_numbers(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", "5050-1055")
    path = write(tmp_path, "ag.txt", test_autogiro.GOOD)
    result = runner.invoke(app, ["ingest", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1: payee bankgiro in the opening record (positions 71-80) is 991-2346" in (
        " ".join(result.stderr.split())
    )
    assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS = 5050-1055" in " ".join(result.stderr.split())
    assert queued() == []


def test_a_bad_payee_bankgiro_setting_is_refused_by_its_env_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", "991-2345")  # wrong check digit
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS" in result.stderr
    assert "check digit" in result.stderr


def test_a_bgmax_fragment_is_named_as_one_with_format_auto(tmp_path) -> None:
    fragment = b"\r\n".join(test_bgmax.GOOD.split(b"\r\n")[1:])  # without its TK01
    path = write(tmp_path, "section.txt", fragment)
    result = runner.invoke(app, ["ingest", str(path), "--dry-run"])
    assert result.exit_code == 2
    stderr = " ".join(result.stderr.split())
    assert f"{path}:1: this is a BgMax fragment" in stderr
    assert "no TK01 start record" in stderr
    assert "not an Autogiro report: unknown opening record" not in stderr


def test_a_directory_with_nothing_to_ingest_exits_2_naming_it_while_other_paths_go_on(
    tmp_path,
) -> None:
    empty = tmp_path / "drop"
    empty.mkdir()
    good = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    result = runner.invoke(app, ["ingest", str(empty), str(good), "--dry-run", "--json"])
    assert result.exit_code == 2
    assert f"{empty}: nothing to ingest" in result.stderr
    assert len(result.stdout.splitlines()) == 4  # the good file's events still came out


def test_a_dry_run_says_what_it_would_queue_and_a_real_one_what_it_queued(tmp_path) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    dry = runner.invoke(app, ["ingest", str(path), "--dry-run"])
    assert "would queue 4 event(s) from 1 file(s) (dry run)" in dry.stdout
    real = runner.invoke(app, ["ingest", str(path)])
    assert "queued 4 event(s) from 1 file(s) in memory only" in real.stdout
    assert len(queued()) == 4


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_progress_grows_over_the_bytes_of_each_pass(tmp_path, bars, dry_run) -> None:
    path = write(tmp_path, "bg.txt", test_bgmax.GOOD)
    size = path.stat().st_size
    result = runner.invoke(app, ["ingest", str(path), *(["--dry-run"] if dry_run else [])])
    assert result.exit_code == 0, result.output
    calls = bars.calls["ingest bg.txt"]
    passes = 1 if dry_run else 2  # checked, then read again to queue
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (size * passes, size * passes)


def test_the_exit_codes_are_in_the_help() -> None:
    text = " ".join(runner.invoke(app, ["ingest", "--help"]).stdout.split())
    assert "Exit codes: 0 every file checked out" in text
    assert "a path held nothing to ingest" in text
