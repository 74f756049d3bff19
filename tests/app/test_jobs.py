"""Timer jobs: run over the wiring when their area is configured, skip with a reason otherwise,
and raise (after logging) when they fail, so the host records the failed run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from dynamics_bridge.app import jobs
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import TransientError
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import RunRecord
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


def test_retention_skips_until_the_union_opts_in(services) -> None:
    result = jobs.run_job("retention", services)
    assert result.status == "skipped"
    assert "BRIDGE_RETENTION__ENABLED" in result.summary["reason"]


def test_retention_skips_without_retention_yaml(tmp_path, monkeypatch) -> None:
    import shutil

    from dynamics_bridge.mapping.loader import MAPPINGS_DIR

    shutil.copy(MAPPINGS_DIR / "dataverse.yaml", tmp_path / "dataverse.yaml")
    settings = load_settings(retention={"enabled": True}, mappings_dir=str(tmp_path))
    result = jobs.run_job("retention", Services(settings))
    assert result.status == "skipped"
    assert "no retention.yaml" in result.summary["reason"]


def test_every_job_is_part_of_the_build() -> None:
    assert jobs.available() == {
        "segments": True,
        "reminders": True,
        "triggers": True,
        "address_refresh": True,
        "housekeeping": True,
        "poison": True,
        "retention": True,
    }


# --- run history: every timer run leaves one run, done, skipped or failed -------------------


def timer_runs(services: Services) -> list[RunRecord]:
    return list(services.ops.runs(datetime(2000, 1, 1, tzinfo=UTC), kind="timer"))


def test_a_segments_run_is_recorded_with_size_added_and_removed_by_segment() -> None:
    summary = {"segment_sizes": {"late": 2}, "added": {"late": 1}, "removed": {"new": 1}}
    activation = SimpleNamespace(segments=SimpleNamespace(run=lambda: Report(**summary)))
    services = with_activation(activation)
    jobs.run_job("segments", services, past_due=True)
    (run,) = timer_runs(services)
    assert (run.name, run.detail) == ("segments", {"past_due": "yes"})
    assert run.counts == {"segment/late/size": 2, "segment/late/added": 1, "segment/new/removed": 1}


def test_a_triggers_run_counts_by_type_and_keeps_its_failures_masked() -> None:
    sweep = Report(
        sent={"welcome": 2},
        skipped_by={"welcome": 1},
        failed_by={"lapsed": 1},
        failed=["member 19811218-9876: not found"],
    )
    activation = SimpleNamespace(triggers=SimpleNamespace(sweep=lambda: sweep, age=lambda: {}))
    services = with_activation(activation)
    jobs.run_job("triggers", services)
    (run,) = timer_runs(services)
    assert run.counts == {
        "trigger/welcome/sent": 2,
        "trigger/welcome/skipped": 1,
        "trigger/lapsed/failed": 1,
    }
    assert run.errors == ("member 19811218-****: not found",)


def test_a_skipped_run_is_recorded_with_its_reason(services) -> None:
    jobs.run_job("address_refresh", services)
    (run,) = timer_runs(services)
    assert run.name == "refresh"
    assert "BRIDGE_SPAR__CUSTOMER_NUMBER" in run.detail["skipped"]
    assert run.ok


def test_a_failed_run_is_recorded_with_its_error_and_still_raised() -> None:
    def boom() -> Report:
        raise RuntimeError("APSIS down")

    services = with_activation(SimpleNamespace(segments=SimpleNamespace(run=boom)))
    with pytest.raises(RuntimeError):
        jobs.run_job("segments", services)
    (run,) = timer_runs(services)
    assert run.errors == ("RuntimeError: APSIS down",)


def test_housekeeping_expires_what_is_older_than_the_retention_and_counts_it() -> None:
    services = Services(load_settings(ops={"retention_days": 10}), ops=InMemoryOpsStore())
    now = datetime.now(UTC)
    for run_id, age in (("old", 11), ("older", 40), ("recent", 9)):
        services.ops.record_run(RunRecord(run_id, "queue", "sync", now - timedelta(days=age), 5))
    result = jobs.run_job("housekeeping", services)
    assert result.summary["expired"] == 2
    kept = {r.run_id for r in services.ops.runs(now - timedelta(days=365))}
    assert "recent" in kept
    assert not kept & {"old", "older"}
    (run,) = timer_runs(services)
    assert (run.name, run.counts) == ("housekeeping", {"housekeeping/expired/count": 2})


def test_a_job_runs_on_when_the_history_cannot_be_written() -> None:
    class Down(InMemoryOpsStore):
        def record_run(self, run: RunRecord) -> None:
            raise TransientError("table runs: 503")

    activation = SimpleNamespace(segments=SimpleNamespace(run=lambda: Report(pushed=3)))
    services = Services(load_settings(apsis=APSIS_KEY), activation=activation, ops=Down())
    assert jobs.run_job("segments", services).summary == {"pushed": 3}
