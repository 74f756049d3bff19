"""The timer jobs: one entry point per job, for the function app's timer triggers.

Each job runs over the worker's wiring (:class:`~dynamics_bridge.app.wiring.Services`); a job
whose settings or files are missing skips and says why instead of failing every run. A job's own
failure raises after it is logged, so the host records a failed run (and, where the function has
a retry policy, tries again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dynamics_bridge.activation.service import Activation
from dynamics_bridge.app.wiring import Services, apsis_credentials

__all__ = [
    "JOBS",
    "JobResult",
    "available",
    "run_job",
    "run_reminders",
    "run_segments",
    "run_triggers",
]

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
    from dynamics_bridge.registry.refresh import AddressRefresh

    refresh = AddressRefresh(
        services.dataverse, services.mapping, services.spar, services.marketing
    )
    return refresh.run().to_json()


def _activation(services: Services) -> Activation:
    if not apsis_credentials(services.settings.apsis):
        raise Skip("APSIS is not configured (BRIDGE_APSIS__CLIENT_ID, __CLIENT_SECRET)")
    activation = services.activation
    if activation is None:
        raise Skip("mappings/apsis.yaml, triggers.yaml or segments.yaml is missing")
    return activation


def run_segments(services: Services) -> dict[str, Any]:
    """Timer job: segments and engagement score over the members changed since the last run,
    over every member once the last full run is older than segments.yaml ``full_run_hours``."""
    return _activation(services).segments.run().to_json()


def run_reminders(services: Services) -> dict[str, Any]:
    """Timer job: triggers left in the outbox, then every reminder due today (once a period)."""
    activation = _activation(services)
    triggers = activation.triggers.sweep()
    return {**activation.reminders.run().to_json(), "triggers": triggers.to_json()}


def run_triggers(services: Services) -> dict[str, Any]:
    """Timer job (every few minutes, ``BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE``): triggers
    still in the outbox (held, a crash, an outage) sent, unknown sends read back; nothing is
    sent twice. The summary carries the outbox's age (pending and unconfirmed rows)."""
    activation = _activation(services)
    return {**activation.triggers.sweep().to_json(), "outbox": activation.triggers.age()}


#: Job name → runner. The function app's timers call :func:`run_job` with these names.
JOBS: dict[str, Runner] = {
    "segments": run_segments,
    "reminders": run_reminders,
    "triggers": run_triggers,
    "address_refresh": _address_refresh,
}


def available() -> dict[str, bool]:
    """Which jobs this build can run (for the health answer): every one; whether its settings
    are there is the job's own skip."""
    return dict.fromkeys(JOBS, True)


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
