"""``GET /api/health``: is the app configured, and can it reach what it needs?

Configuration is reported by variable name only (never a value), Key Vault references the
platform could not resolve by name, the event queue by its depth, Dataverse by one small read
with one attempt, the trigger outbox by the age of its oldest pending and unconfirmed rows.
The retention model (when ``BRIDGE_RETENTION__ENABLED``) by whether it is used and why.
APSIS and SPAR are reported as configured or not and are not called per answer: APSIS allows
ten token requests a minute (its definitions are read by the start check, which is kept for
``BRIDGE_START_CHECK_MINUTES``), and every SPAR lookup is about a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynamics_bridge import __version__
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import BridgeError, ConfigError
from dynamics_bridge.hosting import QueueHostOptions, unresolved_key_vault_references

__all__ = ["HealthReport", "check_health"]

#: A failing one of these makes the answer 503: without them no event reaches Dataverse
#: (``config``: the start check of settings, mapping files, SPAR contract files, the Dataverse
#: metadata and the APSIS definitions).
REQUIRED = ("key_vault", "settings", "config", "queue", "dataverse")


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: int
    body: dict[str, Any]


def check_health(
    services: Services,
    env: Mapping[str, str],
    *,
    queue_options: QueueHostOptions | None = None,
    jobs: Mapping[str, bool] | None = None,
) -> HealthReport:
    checks: dict[str, dict[str, Any]] = {}
    unresolved = unresolved_key_vault_references(env)
    checks["key_vault"] = {"ok": not unresolved}
    if unresolved:
        checks["key_vault"]["unresolved"] = unresolved
    checks["config"] = _config(services)
    try:
        settings = services.settings
    except ConfigError as exc:
        checks["settings"] = {"ok": False, "problems": _names(exc.problems)}
        return _answer(checks, queue_options, jobs)
    checks["settings"] = {"ok": True}
    checks["queue"] = _queue(services, settings.queue.name)
    checks["dataverse"] = _dataverse(services)
    checks["apsis"] = {"ok": True, "configured": settings.apsis.configured}
    if (outbox := _trigger_outbox(services)) is not None:
        checks["trigger_outbox"] = outbox
    checks["spar"] = {"ok": True, "configured": settings.spar.configured}
    if contract := settings.spar.contract_problems():  # SPAR set up on the demo contract
        checks["spar"] = {**checks["spar"], "ok": False, "problems": _names(contract)}
    # Not required (a union may not use Swish), but said: without the identifier every Swish
    # callback is refused with 503.
    swish = settings.swish.problems()
    checks["swish"] = {"ok": not swish, "callbacks": "refused" if swish else "accepted"}
    if swish:
        checks["swish"]["problems"] = _names(swish)
    if settings.retention.enabled:
        checks["retention"] = _retention(services)
    bankgirot = settings.bankgirot.problems()  # without the union's payee every file is refused
    checks["bankgirot"] = {"ok": not bankgirot, "files": "refused" if bankgirot else "accepted"}
    if bankgirot:
        checks["bankgirot"]["problems"] = _names(bankgirot)
    return _answer(checks, queue_options, jobs)


def _config(services: Services) -> dict[str, Any]:
    """The start check (``dynamics-bridge check``, its Dataverse metadata and APSIS definitions
    included; kept for ``BRIDGE_START_CHECK_MINUTES``): each error and warning with its place
    and what to do; settings by name, never a value. Dataverse or APSIS out of reach is a
    warning here (the ``dataverse`` check says whether it is reachable now)."""
    report = services.startup_check()
    body: dict[str, Any] = {"ok": report.ok, "live": report.live, "files": report.files}
    if report.errors:
        body["errors"] = [f.text() for f in report.errors]
    if report.warnings:
        body["warnings"] = [f.text() for f in report.warnings]
    return body


def _queue(services: Services, name: str) -> dict[str, Any]:
    try:
        depth = services.queue.depth()
    except BridgeError as exc:
        return {"ok": False, "name": name, "error": _word(exc)}
    return {"ok": True, "name": name, **depth}


def _dataverse(services: Services) -> dict[str, Any]:
    settings = services.settings.dataverse
    if not settings.configured:
        return {"ok": False, "error": "not configured (BRIDGE_DATAVERSE__*)"}
    try:
        # Its own client with one attempt and a short timeout (the wiring's probe).
        probe = services.dataverse_probe()
        member = services.mapping.member
        list(probe.rows.query(member.entity_set, select=[member.key_column], top=1))
    except BridgeError as exc:
        return {"ok": False, "error": _word(exc), "status": exc.status}
    return {"ok": True}


#: A pending trigger older than this means the outbox sweep is not running (or cannot send).
OUTBOX_STALE_SECONDS = 3600


def _trigger_outbox(services: Services) -> dict[str, Any] | None:
    """The trigger outbox's age: pending and unconfirmed payment rows, how many and how old the
    oldest is (one Dataverse read each, one attempt). Not ok when a pending one is older than an
    hour or any is unconfirmed (an admin's decision waits); None without activation."""
    try:
        activation = services.activation
        store = services.outbox_probe()
        if activation is None or store is None:
            return None
        age = store.outbox_age(activation.clock())
    except BridgeError as exc:
        return {"ok": False, "error": _word(exc)}
    oldest = age["pending"]["oldest_seconds"] or 0
    ok = oldest < OUTBOX_STALE_SECONDS and age["unconfirmed"]["count"] == 0
    return {"ok": ok, **age}


def _retention(services: Services) -> dict[str, Any]:
    """The latest churn model (its metadata, not the model): not ok while none is used, with
    why (not trained yet, or it does not beat the baseline). Not required: events still flow."""
    from dynamics_bridge.app.retention import model_state

    try:
        state = model_state(services.artifacts)
    except BridgeError as exc:
        return {"ok": False, "error": _word(exc)}
    return {"ok": bool(state["used"]), **state}


def _names(problems: list[str]) -> list[str]:
    """The variables a list of problems names (never their values)."""
    return sorted({p.split(":", 1)[0] for p in problems})


def _word(exc: BridgeError) -> str:
    """The kind of failure, not its text (which may carry URLs with tokens)."""
    return type(exc).__name__


def _answer(
    checks: dict[str, dict[str, Any]],
    queue_options: QueueHostOptions | None,
    jobs: Mapping[str, bool] | None,
) -> HealthReport:
    ok = all(checks.get(name, {"ok": False})["ok"] for name in REQUIRED)
    body: dict[str, Any] = {
        "status": "ok" if ok else "unhealthy",
        "version": __version__,
        "checks": checks,
    }
    if queue_options is not None:
        body["queue_trigger"] = {
            "batch_size": queue_options.batch_size,
            "new_batch_threshold": queue_options.new_batch_threshold,
            "max_dequeue_count": queue_options.max_dequeue_count,
            "visibility_timeout_seconds": queue_options.visibility_timeout_seconds,
        }
    if jobs is not None:
        body["jobs"] = dict(jobs)
    return HealthReport(200 if ok else 503, body)
