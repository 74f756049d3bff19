"""`dynamics-bridge demo`: the whole main job on the sandbox, as `make demo` runs it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dynamics_bridge.cli import app

runner = CliRunner()


def test_demo_json_shows_every_redelivery_recognised(tmp_path) -> None:
    result = runner.invoke(
        app, ["demo", "--members", "40", "--workdir", str(tmp_path / "d"), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    outcomes = summary["outcomes"]
    # Everything was delivered twice: one applied, one duplicate per distinct event.
    assert outcomes["applied"] == outcomes["duplicate"]
    assert outcomes["applied"] == summary["dataverse_rows"]["payments"]
    assert (
        sum(summary["events_by_kind"].values()) == outcomes["applied"] + outcomes["unmatched"] // 2
    )
    assert summary["dataverse_rows"]["members"] == 40
    assert summary["answers"]["401"] == 2
    assert set(summary["events_by_source"]) == {"swish", "billogram", "autogiro", "bgmax"}
    assert any("999999" in reason for reason in summary["poisoned"])
    assert summary["members_by_payment_status"]["paid"] > 0
    # SPAR: every (new) member looked up once; the protected one kept its CRM address and left
    # the marketing platform.
    spar = summary["spar"]
    assert spar["looked_up"] == 40
    assert spar["protected"] == 1
    assert spar["updated"] >= 1
    assert spar["statuses"]["deceased"] == spar["statuses"]["emigrated"] == 1
    assert spar["protected_address_kept"] is True
    assert spar["protected_in_marketing"] is False
    # Members who joined 1, 5 or 10 years ago today hear from the union, once.
    apsis = summary["apsis"]
    assert apsis["reminders"]["sent"]["anniversary"] == 2  # members 7 and 27 of 40
    assert apsis["events_by_type"]["anniversary"] == 2
    assert apsis["reminders_second_run_sent"] == 0
    # Members 11 (30 today) has a round birthday; the welcome is personal, read from the
    # member's facts and the union's own tables; the score has a part for every channel.
    assert apsis["events_by_type"]["birthday"] == 1
    welcome = apsis["welcome_payloads"]
    assert sum(welcome["age_band"].values()) == apsis["events_by_type"]["welcome"]
    assert "-" not in welcome["age_band"]
    assert "-" not in welcome["region"]
    assert "86.101" in welcome["industry"]  # the employer's SNI code (account.sic)
    assert set(apsis["welcome_example"]) >= {"age_band", "region", "member_type", "text"}
    parts = apsis["score_parts"]
    assert set(parts) == {
        "on_time_payments",
        "tenure",
        "benefit_use",
        "events",
        "portal_visits",
        "surveys",
        "advice",
    }
    assert all(parts[p]["members"] > 0 for p in ("events", "portal_visits", "surveys", "advice"))
    assert summary["union_tables"]["mbr_memberships"] == 40
    # The retention step on its seeded register: the model beats its baseline on the held-out
    # period, the themes find the planted leaver groups, and results land on the members.
    retention = summary["retention"]
    assert all(step["done"] for step in retention["steps"].values()), retention["steps"]
    assert retention["churn"]["used"] is True
    assert retention["churn"]["roc_auc"] > retention["churn"]["baseline_roc_auc"]
    assert retention["themes_ari"] >= 0.7
    assert {t["reason"] for t in retention["themes"]} >= {"too_expensive", "dissatisfied"}
    assert retention["score"]["scored"] > 2_000
    assert retention["score"]["changed"] > 2_000
