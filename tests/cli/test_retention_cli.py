"""``dynamics-bridge retention …`` on the Dataverse sandbox with a seeded register: what an admin
does by hand, end to end (read the history, train, find themes, score, make tasks, report)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from dynamics_bridge_sandbox.demo.retention import seed_retention
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox
from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.mapping import load_mapping

pytestmark = pytest.mark.integration
TODAY = "2026-11-28"
MAPPING = load_mapping()


@pytest.fixture(scope="module")
def box() -> Iterator[SandboxInfo]:
    with run_sandbox() as info:
        seed_retention(info, MAPPING, members=3_000, today=date(2026, 11, 28), seed=2)
        yield info


@pytest.fixture
def cli(box: SandboxInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in box.env.items():
        monkeypatch.setenv(name, value)
    models = tmp_path / "models"
    monkeypatch.setenv("BRIDGE_RETENTION__DIRECTORY", str(models))
    return models


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["retention", *args, "--today", TODAY])
    return result.exit_code, result.stdout + result.stderr


def rows(box: SandboxInfo, table: str) -> list[dict[str, object]]:
    return [row for _, row, _ in box.dataverse._rows(table)]


def risks(box: SandboxInfo) -> list[object]:
    return [r.get("mbr_churnrisk") for r in rows(box, "contact") if r.get("mbr_joinedon")]


def churn_tasks(box: SandboxInfo) -> list[dict[str, object]]:
    return [t for t in rows(box, "task") if str(t.get("mbr_retentionkey")).startswith("churn:")]


def test_a_dry_run_reads_and_computes_everything_and_writes_nothing(
    box: SandboxInfo, cli: Path
) -> None:
    tasks_before = len(rows(box, "task"))
    code, out = invoke("run", "--dry-run")
    assert code == 0, out
    assert "dry run: nothing written" in out
    assert "members scored" in out
    assert not cli.exists()  # no model, no themes, no report kept
    assert not any(risks(box))
    assert len(rows(box, "task")) == tasks_before


def test_train_themes_score_and_report_then_a_rerun_changes_nothing(
    box: SandboxInfo, cli: Path, tmp_path: Path
) -> None:
    code, out = invoke("train")
    assert code == 0, out
    assert "used: ROC AUC" in out
    assert "kept as version v00001" in out
    themes = CliRunner().invoke(app, ["retention", "themes", "--json", "--today", TODAY])
    assert themes.exit_code == 0, themes.stdout
    (step,) = json.loads(themes.stdout)
    leading = {t["id"]: t["reasons"][0][0] for t in step["detail"]["themes"]}
    assert "t1" in leading
    assert "too_expensive" in leading.values()  # a planted group's reason leads a theme
    code, out = invoke("score")
    assert code == 0, out
    scored = [r for r in risks(box) if r is not None]
    assert len(scored) > 1_000
    assert all(0 <= r <= 100 for r in scored)  # type: ignore[operator]
    themed = [str(r["mbr_winbacktheme"]) for r in rows(box, "contact") if r.get("mbr_winbacktheme")]
    assert themed
    assert {t[:1] for t in themed} == {"t"}  # unnamed themes are written as their ids
    tasks = churn_tasks(box)
    assert tasks, out
    code, again = invoke("score")
    assert code == 0, again
    assert "0 members changed" in again
    assert "0 advisor tasks made" in again
    assert len(churn_tasks(box)) == len(tasks)
    page = tmp_path / "report.html"
    code, out = invoke("report", "-o", str(page))
    assert code == 0, out
    html = page.read_text(encoding="utf-8")
    assert "<svg" in html
    assert "ROC AUC" in html
    status = CliRunner().invoke(app, ["retention", "status"])
    assert status.exit_code == 0, status.stdout
    assert "churn model v00001 (trained 2026-11-28): used:" in status.stdout


def mappings_with(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shipped mappings folder with one change to retention.yaml."""
    import shutil

    from dynamics_bridge.mapping.loader import MAPPINGS_DIR

    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS_DIR, folder)
    text = (folder / "retention.yaml").read_text(encoding="utf-8")
    assert old in text
    (folder / "retention.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def check_output(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BRIDGE_MAPPINGS_DIR", str(folder))
    result = CliRunner().invoke(app, ["check"])
    return result.stdout + result.stderr


def test_check_says_when_too_few_members_left_to_train_on(
    box: SandboxInfo, cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = mappings_with(tmp_path, "min_leavers: 200", "min_leavers: 100000")
    out = check_output(folder, monkeypatch)
    assert "the churn model needs 100000, so `retention train` will train nothing" in out
    assert "leaving reason is empty" not in out


def test_check_says_when_no_recent_leaver_has_a_reason(
    box: SandboxInfo, cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = mappings_with(
        tmp_path,
        'leaving_reason: {column: "{prefix}_leavingreason", choices: leaving_reason}\n'
        '  leaving_text: "{prefix}_leavingtext"',
        'leaving_reason: {column: "{prefix}_mandatestatus", choices: mandate_status}',
    )
    out = check_output(folder, monkeypatch)
    assert "the leaving reason is empty for all" in out
    assert "retention themes` has nothing to cluster on" in out
    assert "train nothing" not in out
