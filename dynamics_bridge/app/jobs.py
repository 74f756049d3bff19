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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from dynamics_bridge.activation.service import Activation
from dynamics_bridge.app.runs import RunRecorder, failures_of, job_counts, store_of
from dynamics_bridge.app.wiring import Services, apsis_credentials
from dynamics_bridge.personnummer import mask_text

__all__ = [
    "DATAVERSE_JOBS",
    "JOBS",
    "RUN_NAMES",
    "JobResult",
    "available",
    "run_housekeeping",
    "run_job",
    "run_poison",
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


class Refused(Skip):
    """The configuration fails the start check (``dynamics-bridge check``, live part included)
    in a part the job needs (logged as an error: the job will not run until it is fixed and
    checked again, within ``BRIDGE_START_CHECK_MINUTES``)."""


#: What each Dataverse job needs of the configuration (areas of `app.check.Finding`).
NEEDS: dict[str, frozenset[str]] = {
    "segments": frozenset({"settings", "mappings", "dataverse", "apsis"}),
    "reminders": frozenset({"settings", "mappings", "dataverse", "apsis"}),
    "triggers": frozenset({"settings", "mappings", "dataverse", "apsis"}),
    "address_refresh": frozenset({"settings", "mappings", "dataverse", "spar"}),
    "retention": frozenset({"settings", "mappings", "dataverse"}),
}  # housekeeping and poison need only the ops store and queue: their settings fail loudly


def _refuse_on_failing_check(name: str, services: Services) -> None:
    """Each runner calls this once its own area is on (an area simply off is a skip, said
    as such): a job works on a configuration that passes the start-up check, or not at all."""
    errors = services.startup_check().errors_in(NEEDS[name])
    if errors:
        raise Refused(
            f"the configuration fails `dynamics-bridge check` ({len(errors)} error(s)): "
            + "; ".join(f.text() for f in errors)
        )


def _address_refresh(services: Services) -> dict[str, Any]:
    if not services.settings.spar.configured:
        raise Skip("SPAR is not configured: " + "; ".join(services.settings.spar.problems()))
    _refuse_on_failing_check("address_refresh", services)
    from dynamics_bridge.registry.refresh import AddressRefresh

    refresh = AddressRefresh(
        services.dataverse, services.mapping, services.spar, services.marketing
    )
    return refresh.run().to_json()


def _activation(services: Services, name: str) -> Activation:
    if not apsis_credentials(services.settings.apsis):
        raise Skip("APSIS is not configured (BRIDGE_APSIS__CLIENT_ID, __CLIENT_SECRET)")
    _refuse_on_failing_check(name, services)
    activation = services.activation
    if activation is None:
        raise Skip("mappings/apsis.yaml, triggers.yaml or segments.yaml is missing")
    return activation


def run_segments(services: Services) -> dict[str, Any]:
    """Timer job: segments and engagement score over the members changed since the last run,
    over every member once the last full run is older than segments.yaml ``full_run_hours``."""
    return _activation(services, "segments").segments.run().to_json()


def run_reminders(services: Services) -> dict[str, Any]:
    """Timer job: triggers left in the outbox, then every reminder due today (once a period)."""
    activation = _activation(services, "reminders")
    triggers = activation.triggers.sweep()
    return {**activation.reminders.run().to_json(), "triggers": triggers.to_json()}


def run_triggers(services: Services) -> dict[str, Any]:
    """Timer job (every few minutes, ``BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE``): triggers
    still in the outbox (held, a crash, an outage) sent, unknown sends read back; nothing is
    sent twice. The summary carries the outbox's age (pending and unconfirmed rows)."""
    activation = _activation(services, "triggers")
    return {**activation.triggers.sweep().to_json(), "outbox": activation.triggers.age()}


def run_retention(services: Services) -> dict[str, Any]:
    """Timer job (weekly): train, themes, score (member columns, advisor tasks), report. Off
    unless ``BRIDGE_RETENTION__ENABLED`` (profiling is opt-in) and retention.yaml is there."""
    if not services.settings.retention.enabled:
        raise Skip("retention analytics are off (BRIDGE_RETENTION__ENABLED)")
    if services.retention_config is None:
        raise Skip(f"no retention.yaml in {services.settings.mappings}")
    _refuse_on_failing_check("retention", services)
    from dynamics_bridge.app.retention import run_steps

    run = services.retention_run(datetime.now(UTC).date())
    reports = run_steps(run)
    return {
        report.step: {"done": report.done, "message": report.message, **report.counts}
        for report in reports
    }


def run_housekeeping(services: Services) -> dict[str, Any]:
    """Timer job (daily): run history and audits older than ``BRIDGE_OPS__RETENTION_DAYS`` go
    (the poison book stays until its messages are replayed or purged)."""
    days = services.settings.ops.retention_days
    before = datetime.now(UTC) - timedelta(days=days)
    return {
        "expired": services.ops.expire(before),
        "before": before.isoformat(),
        "retention_days": days,
    }


def run_poison(services: Services) -> dict[str, Any]:
    """Timer job (every 5 minutes): the poison queue drained into the poison book, then what
    waits there logged as ``poison waiting: N message(s), oldest M minutes`` (fields
    ``poison_waiting``, ``poison_oldest_minutes``: the Bicep poison alert reads them).

    With the book in this process's memory (``BRIDGE_OPS__BACKEND=memory``) and a durable
    queue, the messages stay on the queue (absorbing would lose them), what waits is read from
    the queue, and the job skips naming the setting."""
    from dynamics_bridge.app.poison import record_of

    book = services.poison_book
    now = datetime.now(UTC)
    absorbed = 0
    if book.durable:
        absorbed = book.absorb()
        waiting, oldest = book.waiting()
    else:
        waiting = services.queue.depth()["poison"]
        front = services.queue.poison_peek(1)  # the front of a queue is its oldest message
        oldest = record_of(front[0], now=now).failed_at if front else None
    minutes = max(0, int((now - oldest).total_seconds() // 60)) if oldest else 0
    fields = {"poison_waiting": waiting, "poison_oldest_minutes": minutes}
    if waiting:
        log.warning(
            "poison waiting: %d message(s), oldest %d minutes", waiting, minutes, extra=fields
        )
    else:
        log.info("poison waiting: 0 message(s)", extra=fields)
    if not book.durable:
        raise Skip(
            "the poison book needs BRIDGE_OPS__BACKEND=tables: with the book in memory the "
            f"{waiting} message(s) stay on the poison queue"
        )
    # Only ``absorbed`` is a whole number at the top: the run history sums those per day
    # (``poison/absorbed/count``); what waits is a level, not a sum.
    return {"absorbed": absorbed, "waiting": {"messages": waiting, "oldest_minutes": minutes}}


#: Job name → runner. The function app's timers call :func:`run_job` with these names.
JOBS: dict[str, Runner] = {
    "segments": run_segments,
    "reminders": run_reminders,
    "triggers": run_triggers,
    "address_refresh": _address_refresh,
    "housekeeping": run_housekeeping,
    "poison": run_poison,
    "retention": run_retention,
}

#: The jobs that call Dataverse (each may hold a connection against the app user's limit);
#: housekeeping touches only the ops store.
DATAVERSE_JOBS = frozenset({"segments", "reminders", "triggers", "address_refresh", "retention"})

#: The name a job's runs have in the history, where it differs from the job's.
RUN_NAMES = {"address_refresh": "refresh"}


def available() -> dict[str, bool]:
    """Which jobs this build can run (for the health answer): every one; whether its settings
    are there is the job's own skip."""
    return dict.fromkeys(JOBS, True)


def run_job(name: str, services: Services, *, past_due: bool = False) -> JobResult:
    """Run one job; a skip is logged at WARNING and returned, a failure logged and raised.

    Every run, skipped or failed too, leaves one run in the history (kind ``timer``, name as in
    :data:`RUN_NAMES` or the job's), counted by :func:`dynamics_bridge.app.runs.job_counts`."""
    runner = JOBS[name]
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    with RunRecorder("timer", RUN_NAMES.get(name, name), store_of(services)) as run:
        if past_due:
            run.detail["past_due"] = "yes"
        try:
            summary = runner(services)
        except Skip as reason:
            refused = isinstance(reason, Refused)
            log.log(
                logging.ERROR if refused else logging.WARNING,
                "job %s %s: %s",
                name,
                "refused" if refused else "skipped",
                reason,
                extra={"kind": name, "outcome": "refused" if refused else "skipped"},
            )
            run.detail["skipped"] = mask_text(str(reason))
            return JobResult(name, "skipped", {"reason": str(reason)}, elapsed())
        except Exception:
            log.exception(
                "job %s failed",
                name,
                extra={"kind": name, "outcome": "failed", "duration_ms": elapsed()},
            )
            raise
        run.add_counts(job_counts(name, summary))
        for failure in failures_of(summary):
            run.error(failure)
    result = JobResult(name, "done", summary, elapsed())
    log.info(
        "job %s done%s",
        name,
        " (past due)" if past_due else "",
        extra={"kind": name, "outcome": "done", "duration_ms": result.duration_ms},
    )
    return result
