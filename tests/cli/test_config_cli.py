"""`schema` writes editor schemas; `check` lists every problem with its place and exits 1."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.mapping import DEFAULT_MAPPING

runner = CliRunner()


def test_schema_writes_a_json_schema_per_mapping_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    schema = json.loads((tmp_path / "dataverse.schema.json").read_text())
    assert schema["title"] == "dynamics_bridge mappings/dataverse.yaml"
    assert {"member", "payment", "rules", "choices"} <= set(schema["properties"])


def test_the_committed_schema_is_up_to_date(tmp_path: Path) -> None:
    runner.invoke(app, ["schema", "--out", str(tmp_path)])
    committed = DEFAULT_MAPPING.parent / "schema" / "dataverse.schema.json"
    assert committed.read_text() == (tmp_path / "dataverse.schema.json").read_text(), (
        "run `dynamics-bridge schema` after changing the mapping models"
    )


def test_check_passes_on_the_defaults() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


def test_check_lists_settings_and_mapping_problems_together(tmp_path: Path, monkeypatch) -> None:
    broken = tmp_path / "dataverse.yaml"
    broken.write_text(DEFAULT_MAPPING.read_text().replace("period: year,", "period: weekly,"))
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    result = runner.invoke(app, ["check", "--mapping", str(broken)])
    assert result.exit_code == 1
    assert "BRIDGE_QUEUE__CONNECTION_STRING" in result.stderr
    assert f"{broken}:" in result.stderr
    assert "weekly" in result.stderr or "period" in result.stderr


def test_check_warns_that_swish_callbacks_are_refused_without_an_identifier(monkeypatch) -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output  # a union without Swish needs none
    assert "BRIDGE_SWISH__CALLBACK_IDENTIFIER" in result.stderr
    assert "refused" in result.stderr
    monkeypatch.setenv("BRIDGE_SWISH__CALLBACK_IDENTIFIER", "set-on-payment-requests")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "SWISH" not in result.stderr


def test_check_warns_that_bankgirot_files_are_refused_without_the_unions_payee(
    monkeypatch,
) -> None:
    monkeypatch.setenv("BRIDGE_SWISH__CALLBACK_IDENTIFIER", "set-on-payment-requests")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output  # a union without Bankgirot files needs none
    assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS" in result.stderr
    monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", "991-2346")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "BANKGIROT" not in result.stderr
