"""`dynamics-bridge spar lookup` and `address-refresh` against the SPAR responder and the
Dataverse sandbox, configured through BRIDGE_* variables as an operator would."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from dynamics_bridge_sandbox.register import prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox
from dynamics_bridge_sandbox.spar import NOT_FOUND, SparResponder, run_spar_responder
from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import load_mapping

runner = CliRunner()
ANNA, CECILIA = "196503129816", "195809199838"


@pytest.fixture
def spar(monkeypatch) -> Iterator[SparResponder]:
    with run_spar_responder() as responder:
        for name, value in responder.env.items():
            monkeypatch.setenv(name, value)
        yield responder


def test_lookup_prints_the_address_with_the_personnummer_masked(spar) -> None:
    result = runner.invoke(app, ["spar", "lookup", ANNA])
    assert result.exit_code == 0, result.output
    assert "19650312-****" in result.stdout
    assert ANNA not in result.stdout
    assert "Storgatan 1" in result.stdout


def test_lookup_json_and_show_pnr(spar) -> None:
    masked = json.loads(runner.invoke(app, ["spar", "lookup", ANNA, "--json"]).stdout)
    assert masked["personnummer"] == "19650312-****"
    assert masked["mailing_address"]["city"] == "STOCKHOLM"
    full = json.loads(runner.invoke(app, ["spar", "lookup", ANNA, "--json", "--show-pnr"]).stdout)
    assert full["personnummer"] == ANNA


def test_protected_identity_is_said_plainly(spar) -> None:
    result = runner.invoke(app, ["spar", "lookup", CECILIA])
    assert result.exit_code == 0
    assert "protected identity" in result.stdout
    assert "post to" not in result.stdout


@pytest.mark.parametrize("bad", ["196503129817", "19650312-98", "650332-9816", "hello"])
def test_invalid_personnummer_exits_2_and_sends_nothing(spar, bad) -> None:
    result = runner.invoke(app, ["spar", "lookup", bad])
    assert result.exit_code == 2
    assert "personnummer" in result.stderr or "check digit" in result.stderr
    assert spar.lookups == []


def test_not_found_exits_1_with_a_masked_message(spar) -> None:
    result = runner.invoke(app, ["spar", "lookup", NOT_FOUND])
    assert result.exit_code == 1
    assert "19790101-****" in result.stderr
    assert NOT_FOUND not in result.stderr


def test_missing_settings_are_listed(monkeypatch) -> None:
    result = runner.invoke(app, ["spar", "lookup", ANNA])
    assert result.exit_code == 1
    assert "BRIDGE_SPAR__ENDPOINT" in result.stderr


def test_address_refresh_dry_run_then_for_real(spar, monkeypatch, tmp_path, bars) -> None:
    mapping = load_mapping()
    with run_sandbox(tmp_path / "dv.sqlite") as box:
        for name, value in box.env.items():
            monkeypatch.setenv(name, value)
        client = DataverseClient.from_settings(sandbox_settings(box))
        numbers = prepare_register(client, mapping, 5)
        for number in numbers:  # checked lately: only the flagged ones are due
            client.rows.update(
                "contacts", {"mbr_memberno": number}, {"mbr_sparcheckedon": "2026-11-20T00:00:00Z"}
            )
        client.rows.update(
            "contacts",
            {"mbr_memberno": numbers[0]},
            {"governmentid": CECILIA, "mbr_addresscheck": True},
        )

        # A dry run asks SPAR nothing, so it needs none of the contract numbers.
        numbers_env = ("CUSTOMER_NUMBER", "ASSIGNMENT_ID", "END_USER_ID")
        for name in numbers_env:
            monkeypatch.delenv(f"BRIDGE_SPAR__{name}")
        dry = runner.invoke(app, ["address-refresh", "--dry-run", "--json"])
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["selected"] == {"flagged": 1}
        assert json.loads(dry.stdout)["would_look_up"] == 1
        table = runner.invoke(app, ["address-refresh", "--dry-run"])
        assert "would look up" in table.stdout
        assert "updated" not in table.stdout  # nothing was asked: no zeros that look like results
        assert spar.lookups == []
        refused = runner.invoke(app, ["address-refresh", "--json"])
        assert refused.exit_code == 1  # for real, SPAR needs them
        assert "BRIDGE_SPAR__CUSTOMER_NUMBER" in refused.stderr

        for name in numbers_env:
            monkeypatch.setenv(f"BRIDGE_SPAR__{name}", spar.env[f"BRIDGE_SPAR__{name}"])
        done = runner.invoke(app, ["address-refresh", "--json"])
        assert done.exit_code == 0, done.output
        assert bars.calls["address refresh: members looked up"][-2:] == [(0, 1), (1, 1)]
        summary = json.loads(done.stdout)
        assert (summary["looked_up"], summary["protected"]) == (1, 1)
        assert spar.lookups == [CECILIA]
