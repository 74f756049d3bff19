"""Timer jobs: run over the wiring when their area is configured, skip with a reason otherwise,
and raise (after logging) when they fail, so the host records the failed run."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from dynamics_bridge.app import jobs
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.settings import load_settings

APSIS_KEY = {"client_id": "bridge", "client_secret": "s3cret"}


@pytest.fixture
def services() -> Services:
    return Services(load_settings())


class Report:
    def __init__(self, **summary: Any) -> None:
        self.summary = summary

    def to_json(self) -> dict[str, Any]:
        return self.summary


def with_activation(activation: object | None) -> Services:
    """The wiring with an APSIS key set and this activation side (None: its files missing)."""
    return Services(load_settings(apsis=APSIS_KEY), activation=activation)


def test_an_activation_job_skips_until_apsis_is_configured_and_says_so(services, caplog) -> None:
    with caplog.at_level(logging.WARNING, "dynamics_bridge.jobs"):
        result = jobs.run_job("segments", services)
    assert result.status == "skipped"
    assert "BRIDGE_APSIS__CLIENT_ID" in result.summary["reason"]
    assert "job segments skipped" in caplog.text


def test_an_activation_job_skips_when_its_mapping_files_are_missing() -> None:
    result = jobs.run_job("reminders", with_activation(None))
    assert result.status == "skipped"
    assert "segments.yaml" in result.summary["reason"]


def test_the_segments_job_runs_the_wirings_segments_job() -> None:
    activation = SimpleNamespace(segments=SimpleNamespace(run=lambda: Report(pushed=3)))
    result = jobs.run_job("segments", with_activation(activation))
    assert (result.status, result.summary) == ("done", {"pushed": 3})


def test_the_reminders_job_sweeps_the_outbox_first_then_sends_reminders() -> None:
    order: list[str] = []
    activation = SimpleNamespace(
        triggers=SimpleNamespace(sweep=lambda: order.append("sweep") or Report(claimed=1)),
        reminders=SimpleNamespace(run=lambda: order.append("remind") or Report(sent=2)),
    )
    result = jobs.run_job("reminders", with_activation(activation))
    assert result.summary == {"sent": 2, "triggers": {"claimed": 1}}
    assert order == ["sweep", "remind"]


def test_the_triggers_job_reports_the_outbox_age_after_its_sweep() -> None:
    activation = SimpleNamespace(
        triggers=SimpleNamespace(sweep=lambda: Report(claimed=0), age=lambda: {"pending": 0})
    )
    result = jobs.run_job("triggers", with_activation(activation))
    assert result.summary == {"claimed": 0, "outbox": {"pending": 0}}


def test_a_failing_job_is_logged_and_raised(caplog) -> None:
    def boom() -> Report:
        raise RuntimeError("APSIS down")

    activation = SimpleNamespace(segments=SimpleNamespace(run=boom))
    with caplog.at_level(logging.ERROR, "dynamics_bridge.jobs"), pytest.raises(RuntimeError):
        jobs.run_job("segments", with_activation(activation))
    assert "job segments failed" in caplog.text


def test_address_refresh_skips_until_spar_is_configured(services) -> None:
    result = jobs.run_job("address_refresh", services)
    assert result.status == "skipped"
    assert "BRIDGE_SPAR__CUSTOMER_NUMBER" in result.summary["reason"]


def test_every_job_is_part_of_the_build() -> None:
    assert jobs.available() == {
        "segments": True,
        "reminders": True,
        "triggers": True,
        "address_refresh": True,
    }
