"""The demo's APSIS section, the activation commands without APSIS settings, and what their
summaries say (a dry run says *would*)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.cli import activation as activation_cli
from dynamics_bridge.cli import app
from dynamics_bridge.mapping import load_mapping
from tests.activation.conftest import ACTIVE, NOW
from tests.activation.fakes import FakeActivationStore, FakePlatform

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
        ["segments", "push"],
        ["reminders", "run"],
        ["apsis", "check"],
        ["triggers", "unconfirmed"],
        ["triggers", "resolve", "swish-1", "--drop"],
    )
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 1, command
        assert "APSIS is not configured" in result.output


def test_dry_runs_need_read_access_to_dataverse_only_not_apsis_keys(monkeypatch) -> None:
    from dynamics_bridge_sandbox.server import run_sandbox

    with run_sandbox() as box:
        for name, value in box.env.items():
            monkeypatch.setenv(name, value)
        assert runner.invoke(app, ["provision", "--apply"]).exit_code == 0
        for command in (["segments", "push", "--dry-run"], ["reminders", "run", "--dry-run"]):
            result = runner.invoke(app, command)
            assert result.exit_code == 0, (command, result.output)
            assert "dry run" in result.stdout
        pushed = runner.invoke(app, ["segments", "push"])  # for real, APSIS is needed
        assert pushed.exit_code == 1
        assert "APSIS is not configured" in pushed.output


@pytest.mark.parametrize("choice", [[], ["--send", "--drop"]], ids=["neither", "both"])
def test_resolving_an_unconfirmed_trigger_takes_exactly_one_decision(choice) -> None:
    result = runner.invoke(app, ["triggers", "resolve", "swish-1", *choice])
    assert result.exit_code == 2
    assert "--send or --drop" in result.output


@pytest.fixture
def activation(monkeypatch: pytest.MonkeyPatch) -> Activation:
    """The commands over the in-memory register and platform: three consenting members, one
    of whom APSIS already holds and who then withdraws consent."""
    mapping = load_mapping()
    config = load_activation(mapping)
    store = FakeActivationStore(lease_minutes=config.triggers.outbox.lease_minutes)
    for key in ("1001", "1002", "1003"):
        store.add_member(
            key, mbr_marketingconsent=True, mbr_joinedon="2026-10-01", mbr_membershipstatus=ACTIVE
        )
    jobs = Activation(store, mapping, config, FakePlatform(), clock=lambda: NOW)
    jobs.segments.run(full=True)
    store.update_members([("1003", {"mbr_marketingconsent": False}, "*")])
    for key in ("1001", "1002"):  # their attributes change: each needs an update
        store.update_members([(key, {"mbr_paymentmethod": 100000001}, "*")])
    monkeypatch.setattr(activation_cli, "_activation", lambda dry_run=False: jobs)
    return jobs


def test_a_segments_dry_run_says_what_it_would_push_and_erase(activation, bars) -> None:
    result = runner.invoke(app, ["segments", "push", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would push 2, would erase 1" in result.stdout
    assert "pushed" not in result.stdout
    calls = bars.calls["segments: members evaluated"]
    assert calls[-1] == (3, 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    done = runner.invoke(app, ["segments", "push"])
    assert "2 pushed, 1 erased" in done.stdout  # what the dry run said


def test_a_reminders_dry_run_says_what_it_would_send(activation, bars) -> None:
    paid_through = (NOW.date() + timedelta(days=7)).isoformat()
    activation.store.update_members([("1001", {"mbr_paidthrough": paid_through}, "*")])
    result = runner.invoke(app, ["reminders", "run", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would send 1 (upcoming_payment 1)" in result.stdout
    (calls,) = bars.calls.values()
    assert calls[-1][0] == calls[-1][1]
    assert "sent 1 (upcoming_payment 1)" in runner.invoke(app, ["reminders", "run"]).stdout


@pytest.mark.parametrize("command", [["segments", "push"], ["reminders", "run"]])
def test_the_exit_codes_are_in_the_help(command) -> None:
    text = " ".join(runner.invoke(app, [*command, "--help"]).stdout.split())
    assert "Exit codes: 0 done" in text
