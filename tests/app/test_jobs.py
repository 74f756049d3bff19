"""Timer jobs: run when their area is built and configured, skip with a reason otherwise,
and raise (after logging) when they fail, so the host records the failed run."""

from __future__ import annotations

import logging
import sys
import types
from importlib.machinery import ModuleSpec

import pytest

from dynamics_bridge.app import jobs
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.settings import load_settings


@pytest.fixture
def services() -> Services:
    return Services(load_settings())


@pytest.fixture
def activation(monkeypatch):
    """A stand-in for the activation area's job module."""
    package = types.ModuleType("dynamics_bridge.activation")
    package.__path__ = []
    module = types.ModuleType("dynamics_bridge.activation.jobs")
    package.__spec__ = ModuleSpec(package.__name__, None, is_package=True)
    module.__spec__ = ModuleSpec(module.__name__, None)
    monkeypatch.setitem(sys.modules, "dynamics_bridge.activation", package)
    monkeypatch.setitem(sys.modules, "dynamics_bridge.activation.jobs", module)
    return module


def test_a_job_of_an_area_not_built_is_skipped_with_the_reason(
    services, caplog, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "dynamics_bridge.activation", None)
    monkeypatch.setitem(sys.modules, "dynamics_bridge.activation.jobs", None)  # not imported yet
    with caplog.at_level(logging.WARNING, "dynamics_bridge.jobs"):
        result = jobs.run_job("segments", services)
    assert result.status == "skipped"
    assert "not part of this build" in result.summary["reason"]
    assert "job segments skipped" in caplog.text


def test_a_job_runs_its_areas_entry_point_with_the_services(services, activation) -> None:
    seen = []
    activation.run_reminders = lambda s: seen.append(s) or {"reminded": 3}
    result = jobs.run_job("reminders", services)
    assert (result.status, result.summary) == ("done", {"reminded": 3})
    assert seen == [services]


def test_a_missing_entry_point_is_named(services, activation) -> None:
    result = jobs.run_job("segments", services)
    assert result.summary == {"reason": "dynamics_bridge.activation.jobs has no run_segments"}


def test_a_failing_job_is_logged_and_raised(services, activation, caplog) -> None:
    def boom(_):
        raise RuntimeError("APSIS down")

    activation.run_segments = boom
    with caplog.at_level(logging.ERROR, "dynamics_bridge.jobs"), pytest.raises(RuntimeError):
        jobs.run_job("segments", services)
    assert "job segments failed" in caplog.text


def test_address_refresh_skips_until_spar_is_configured(services) -> None:
    result = jobs.run_job("address_refresh", services)
    assert result.status == "skipped"
    assert "BRIDGE_SPAR__CUSTOMER_NUMBER" in result.summary["reason"]


def test_availability_follows_the_build(activation) -> None:
    assert jobs.available() == {
        "segments": True,
        "reminders": True,
        "triggers": True,
        "address_refresh": True,
    }
