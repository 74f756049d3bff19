"""`provision` against the sandbox: a plan first, then --apply, then nothing left to do."""

from __future__ import annotations

from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.sandbox.server import run_sandbox

runner = CliRunner()


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
