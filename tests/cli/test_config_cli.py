"""`schema` writes editor schemas; `check` lists every problem with its place and exits 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
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


DATAVERSE_ENV = {
    "BRIDGE_DATAVERSE__URL": "https://union.crm4.dynamics.com",
    "BRIDGE_DATAVERSE__TENANT_ID": "tenant",
    "BRIDGE_DATAVERSE__CLIENT_ID": "app",
    "BRIDGE_DATAVERSE__CLIENT_SECRET": "secret",
}


@pytest.fixture
def dataverse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DATAVERSE_ENV.items():
        monkeypatch.setenv(name, value)


def test_check_passes_on_the_defaults_with_a_dataverse_app_user(dataverse_env) -> None:
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout
    assert "dataverse.yaml ✓, apsis.yaml ✓, triggers.yaml ✓, segments.yaml ✓" in result.stdout


def test_check_without_dataverse_settings_fails_naming_every_one_at_once() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    for name in ("__URL", "__TENANT_ID", "__CLIENT_ID"):
        assert f"✗ BRIDGE_DATAVERSE{name}" in result.stderr
    assert "valid" not in result.stdout


def test_check_says_which_mapping_file_is_missing(dataverse_env, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(DEFAULT_MAPPING.parent, tmp_path / "mappings"))
    (folder / "segments.yaml").unlink()
    result = runner.invoke(app, ["check", "--offline"], env={"BRIDGE_MAPPINGS_DIR": str(folder)})
    assert result.exit_code == 1
    assert f"✗ {folder / 'segments.yaml'}: missing" in result.stderr
    assert "segments.yaml ✗ missing" in result.stdout


def test_an_unreachable_login_endpoint_is_one_line(dataverse_env, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__AUTHORITY", "https://127.0.0.1:9/tenant")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if "Dataverse" in line]
    assert "login endpoint https://127.0.0.1:9/tenant" in line
    assert "unreachable" in line


def test_check_lists_settings_and_mapping_problems_together(tmp_path: Path, monkeypatch) -> None:
    broken = tmp_path / "dataverse.yaml"
    broken.write_text(DEFAULT_MAPPING.read_text().replace("period: year,", "period: weekly,"))
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    result = runner.invoke(app, ["check", "--mapping", str(broken)])
    assert result.exit_code == 1
    assert "BRIDGE_QUEUE__CONNECTION_STRING" in result.stderr
    assert f"{broken}:" in result.stderr
    assert "weekly" in result.stderr or "period" in result.stderr


def test_check_warns_that_swish_callbacks_are_refused_without_an_identifier(
    dataverse_env, monkeypatch
) -> None:
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 0, result.output  # a union without Swish needs none
    assert "BRIDGE_SWISH__CALLBACK_IDENTIFIER" in result.stderr
    assert "refused" in result.stderr
    monkeypatch.setenv("BRIDGE_SWISH__CALLBACK_IDENTIFIER", "set-on-payment-requests")
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 0, result.output
    assert "SWISH" not in result.stderr


def test_check_warns_that_bankgirot_files_are_refused_without_the_unions_payee(
    dataverse_env, monkeypatch
) -> None:
    monkeypatch.setenv("BRIDGE_SWISH__CALLBACK_IDENTIFIER", "set-on-payment-requests")
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 0, result.output  # a union without Bankgirot files needs none
    assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS" in result.stderr
    monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", "991-2346")
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 0, result.output
    assert "BANKGIROT" not in result.stderr
