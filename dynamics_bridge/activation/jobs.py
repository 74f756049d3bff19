"""Entry points: the activation side built from settings, and its timer jobs as plain functions.

``run_segments``, ``run_reminders`` and ``run_triggers`` take the worker's
:class:`~dynamics_bridge.app.wiring.Services` (or bare :class:`~dynamics_bridge.settings.Settings`)
and return a JSON-able summary; :func:`dynamics_bridge.app.jobs.run_job` calls them by name.
Without APSIS settings they skip, saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from dynamics_bridge.activation.config import ApsisFile
from dynamics_bridge.activation.loader import activation_configured, load_activation
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.apsis.platform import ApsisPlatform
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.settings import ApsisSettings, Settings

__all__ = [
    "apsis_credentials",
    "apsis_platform",
    "build_activation",
    "run_reminders",
    "run_segments",
    "run_triggers",
]


def apsis_platform(
    settings: ApsisSettings, apsis: ApsisFile, session: requests.Session | None = None
) -> ApsisPlatform:
    """APSIS with apsis.yaml's keyspace, section and names; settings that are set win."""
    chosen = settings.model_fields_set
    merged = settings.model_copy(
        update={
            "keyspace": settings.keyspace if "keyspace" in chosen else apsis.keyspace,
            "section": settings.section or apsis.section,
            "attributes": {
                **{n: a.discriminator for n, a in apsis.attributes.items()},
                **settings.attributes,
            },
            "event_types": {**apsis.events, **settings.event_types},
            "tags": {**apsis.tags, **settings.tags},
        }
    )
    return ApsisPlatform.from_settings(merged, session)


def apsis_credentials(settings: ApsisSettings) -> bool:
    """An API key is set (the section may come from apsis.yaml)."""
    return bool(settings.client_id and settings.client_secret)


def build_activation(
    settings: Settings,
    client: DataverseClient,
    mapping: MappingFile,
    *,
    directory: Path | str | None = None,
) -> Activation | None:
    """The activation side, or None when APSIS is not configured or the files are absent."""
    if not apsis_credentials(settings.apsis) or not activation_configured(directory):
        return None
    config = load_activation(mapping, directory)
    platform = apsis_platform(settings.apsis, config.apsis)
    return Activation(client, mapping, config, platform, options=settings.activation)


def _activation(services: Services | Settings) -> Activation:
    from dynamics_bridge.app.jobs import Skip

    if isinstance(services, Settings):
        services = Services(services)
    if not apsis_credentials(services.settings.apsis):
        raise Skip("APSIS is not configured (BRIDGE_APSIS__CLIENT_ID, __CLIENT_SECRET)")
    activation = services.activation
    if activation is None:
        raise Skip("mappings/apsis.yaml, triggers.yaml or segments.yaml is missing")
    return activation


def run_segments(services: Services | Settings) -> dict[str, Any]:
    """Timer job: segments and engagement score over the members changed since the last run,
    over every member once the last full run is older than segments.yaml ``full_run_hours``."""
    return _activation(services).run_segments().to_json()


def run_reminders(services: Services | Settings) -> dict[str, Any]:
    """Timer job: triggers left in the outbox, then every reminder due today (once a period)."""
    activation = _activation(services)
    triggers = activation.sweep_triggers()
    return {**activation.run_reminders().to_json(), "triggers": triggers.to_json()}


def run_triggers(services: Services | Settings) -> dict[str, Any]:
    """Timer job (every few minutes, ``BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE``): triggers
    still in the outbox (held, a crash, an outage) sent, unknown sends read back; nothing is
    sent twice. The summary carries the outbox's age (pending and unconfirmed rows)."""
    activation = _activation(services)
    return {**activation.sweep_triggers().to_json(), "outbox": activation.outbox_age()}
