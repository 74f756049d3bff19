"""The demo's APSIS section, and the activation commands without APSIS settings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dynamics_bridge.cli import app

runner = CliRunner()


def test_demo_json_has_apsis_with_nothing_sent_twice_and_no_excluded_profile(tmp_path) -> None:
    result = runner.invoke(
        app, ["demo", "--members", "40", "--workdir", str(tmp_path / "d"), "--json"]
    )
    assert result.exit_code == 0, result.output
    apsis = json.loads(result.stdout)["apsis"]
    assert {"events_by_type", "profiles", "attribute_updates"} <= set(apsis)
    assert apsis["events_by_type"]["payment_confirmed"] > 0
    assert apsis["events_by_type"]["welcome"] > 0
    assert apsis["sent_twice"] == 0  # every input arrived twice
    assert apsis["left_in_outbox"] == 0
    # The second runs sending nothing means something only because the first ones did send.
    segments = apsis["segments_run"]
    assert segments["pushed"] > 0
    assert segments["failed"] == []
    assert segments["delta_saved"]
    assert apsis["segments_second_run_pushed"] == 0
    reminders = apsis["reminders"]
    assert sum(reminders["sent"].values()) > 0
    assert reminders["failed"] == []
    assert reminders["sent"] == reminders["due"]
    assert apsis["reminders_second_run_sent"] == 0
    assert apsis["excluded_members_in_apsis"] == []
    assert apsis["consent_withdrawn"]["erased"] == 1
    assert 0 < apsis["profiles"] < 40  # some members have no marketing consent
    assert apsis["attribute_updates"] > 0


def test_the_commands_say_what_is_missing_without_apsis_settings(monkeypatch) -> None:
    monkeypatch.delenv("BRIDGE_APSIS__CLIENT_ID", raising=False)
    commands = (
        ["segments", "push", "--dry-run"],
        ["reminders", "run"],
        ["apsis", "check"],
        ["triggers", "unconfirmed"],
        ["triggers", "resolve", "swish-1", "--drop"],
    )
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 1, command
        assert "APSIS is not configured" in result.output


@pytest.mark.parametrize("choice", [[], ["--send", "--drop"]], ids=["neither", "both"])
def test_resolving_an_unconfirmed_trigger_takes_exactly_one_decision(choice) -> None:
    result = runner.invoke(app, ["triggers", "resolve", "swish-1", *choice])
    assert result.exit_code == 2
    assert "--send or --drop" in result.output
