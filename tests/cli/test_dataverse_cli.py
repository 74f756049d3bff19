"""`provision` against the sandbox: a plan first, then --apply, then nothing left to do."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from dynamics_bridge_sandbox.server import run_sandbox
from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.mapping import DEFAULT_MAPPING as MAPPING

runner = CliRunner()


def test_provision_plans_from_the_configured_mappings_folder(monkeypatch, tmp_path) -> None:
    """BRIDGE_MAPPINGS_DIR, as every other command reads it: the union's own dataverse.yaml
    (here with its own prefix), not the bridge's."""
    folder = Path(shutil.copytree(MAPPING.parent, tmp_path / "union-mappings"))
    path = folder / "dataverse.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("publisher_prefix: mbr", "publisher_prefix: fack"),
        encoding="utf-8",
    )
    with run_sandbox() as box:
        for name, value in box.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("BRIDGE_DATAVERSE__SOLUTION", raising=False)  # its publisher: mbr_
        monkeypatch.setenv("BRIDGE_MAPPINGS_DIR", str(folder))
        planned = runner.invoke(app, ["provision"])
        assert planned.exit_code == 0, planned.output
        assert "would create column fack_memberno on contact" in planned.stdout
        assert "mbr_" not in planned.stdout
        explicit = runner.invoke(app, ["provision", "--mapping", str(MAPPING)])  # still wins
        assert "would create column mbr_memberno on contact" in explicit.stdout


def test_provision_with_an_unreachable_login_endpoint_says_so_in_one_line(monkeypatch) -> None:
    for name, value in {
        "BRIDGE_DATAVERSE__URL": "https://union.crm4.dynamics.com",
        "BRIDGE_DATAVERSE__TENANT_ID": "tenant",
        "BRIDGE_DATAVERSE__CLIENT_ID": "app",
        "BRIDGE_DATAVERSE__CLIENT_SECRET": "secret",
        "BRIDGE_DATAVERSE__AUTHORITY": "https://127.0.0.1:9/tenant",
    }.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["provision"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert "login endpoint https://127.0.0.1:9/tenant" in line
    assert "unreachable" in line
    assert result.stdout == ""


def test_provision_plans_then_applies(monkeypatch) -> None:
    with run_sandbox() as box:
        for name, value in box.env.items():
            monkeypatch.setenv(name, value)
        planned = runner.invoke(app, ["provision"])
        assert planned.exit_code == 0, planned.output
        assert "would create table mbr_payment" in planned.stdout
        assert "would create column mbr_memberno on contact" in planned.stdout
        assert box.dataverse.entity("mbr_payment") is None
        applied = runner.invoke(app, ["provision", "--apply"])
        assert applied.exit_code == 0, applied.output
        assert box.dataverse.entity("mbr_payment") is not None
        assert "0 step(s)" in runner.invoke(app, ["provision"]).stdout


def test_provision_without_dataverse_settings_says_which_are_missing() -> None:
    result = runner.invoke(app, ["provision"])
    assert result.exit_code == 1
    assert "BRIDGE_DATAVERSE__URL" in result.stderr


def test_check_compares_the_mapping_with_dataverse(monkeypatch) -> None:
    with run_sandbox() as box:
        for name, value in box.env.items():
            monkeypatch.setenv(name, value)
        before = runner.invoke(app, ["check"])
        assert before.exit_code == 1
        # The place names the mapping file; what to do is said once, on the → line.
        assert f"✗ Dataverse: table mbr_payment not found ({MAPPING}: payment.table)" in (
            before.stderr
        )
        assert "  → run `dynamics-bridge provision` to see the plan" in before.stderr
        assert not [line for line in before.stderr.splitlines() if line.count("provision`") > 1]
        assert "the mapping:" not in before.stderr
        runner.invoke(app, ["provision", "--apply"])
        after = runner.invoke(app, ["check"])
        assert after.exit_code == 0, after.output
        assert "match Dataverse" in after.stdout


def test_sync_applies_queued_events_and_a_dry_run_writes_nothing(monkeypatch, tmp_path) -> None:
    from tests.sources import test_bgmax

    with run_sandbox() as box:
        for name, value in box.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BRIDGE_QUEUE__NAME", "cli-sync-test")
        monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", "991-2346")  # the file's payee
        runner.invoke(app, ["provision", "--apply"])
        box.dataverse.handle("POST", "/api/data/v9.2/contacts", {}, b'{"mbr_memberno": "100001"}')
        path = tmp_path / "bg.txt"
        path.write_bytes(test_bgmax.GOOD)
        assert runner.invoke(app, ["ingest", str(path)]).exit_code == 0
        dry = runner.invoke(app, ["sync", "--dry-run"], env={"COLUMNS": "200"})
        assert dry.exit_code == 0, dry.output
        assert "mbr_paymentstatus" in dry.stdout
        assert box.dataverse.entity("mbr_payment") is not None
        assert not box.dataverse._rows("mbr_payment")
        time.sleep(1.1)  # the dry run's look at the messages expires
        done = runner.invoke(app, ["sync", "--once"])
        assert done.exit_code == 0, done.output
        assert "applied 2" in done.stdout  # the member's payment and deduction
        assert len(box.dataverse._rows("mbr_payment")) == 2
