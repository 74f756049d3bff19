"""The timer jobs: one entry point per job, for the function app's timer triggers.

Each job's code lives with its area and is imported only when the job runs, so a build without
an area (or without its settings) still starts, and its timer says why it skipped instead of
failing every run. A job's own failure raises after it is logged, so the host records a failed
run (and, where the function has a retry policy, tries again).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dynamics_bridge.app.wiring import Services

__all__ = ["JOBS", "JobResult", "available", "run_job"]

log = logging.getLogger("dynamics_bridge.jobs")

Runner = Callable[[Services], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JobResult:
    job: str
    status: Literal["done", "skipped"]
    summary: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0


class Skip(Exception):
    """The job cannot run in this build or configuration; the reason says why."""


def _address_refresh(services: Services) -> dict[str, Any]:
    if not services.settings.spar.configured:
        raise Skip("SPAR is not configured: " + "; ".join(services.settings.spar.problems()))
    from dynamics_bridge.registry import SparClient
    from dynamics_bridge.registry.refresh import AddressRefresh

    spar = SparClient.from_settings(services.settings.spar)
    refresh = AddressRefresh(services.dataverse, services.mapping, spar, services.marketing)
    return refresh.run().to_json()


def _activation(name: str) -> Runner:
    """The activation area's job ``name`` (issue 6), imported when the timer fires."""

    def run(services: Services) -> dict[str, Any]:
        try:
            module = importlib.import_module("dynamics_bridge.activation.jobs")
        except ModuleNotFoundError as exc:
            if exc.name not in ("dynamics_bridge.activation", "dynamics_bridge.activation.jobs"):
                raise  # something the activation area needs is missing: a real failure
            raise Skip("dynamics_bridge.activation.jobs is not part of this build") from None
        entry: Runner | None = getattr(module, f"run_{name}", None)
        if entry is None:
            raise Skip(f"dynamics_bridge.activation.jobs has no run_{name}")
        return entry(services)

    return run


#: Job name → runner. The function app's timers call :func:`run_job` with these names.
JOBS: dict[str, Runner] = {
    "segments": _activation("segments"),
    "reminders": _activation("reminders"),
    "triggers": _activation("triggers"),
    "address_refresh": _address_refresh,
}


def available() -> dict[str, bool]:
    """Which jobs this build can run (for the health answer)."""
    try:
        found = importlib.util.find_spec("dynamics_bridge.activation.jobs") is not None
    except ModuleNotFoundError:  # the parent package is missing
        found = False
    return {"segments": found, "reminders": found, "triggers": found, "address_refresh": True}


def run_job(name: str, services: Services, *, past_due: bool = False) -> JobResult:
    """Run one job; a skip is logged at WARNING and returned, a failure logged and raised."""
    runner = JOBS[name]
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        summary = runner(services)
    except Skip as reason:
        log.warning("job %s skipped: %s", name, reason, extra={"kind": name, "outcome": "skipped"})
        return JobResult(name, "skipped", {"reason": str(reason)}, elapsed())
    except Exception:
        log.exception(
            "job %s failed",
            name,
            extra={"kind": name, "outcome": "failed", "duration_ms": elapsed()},
        )
        raise
    result = JobResult(name, "done", summary, elapsed())
    log.info(
        "job %s done%s",
        name,
        " (past due)" if past_due else "",
        extra={"kind": name, "outcome": "done", "duration_ms": result.duration_ms},
    )
    return result
