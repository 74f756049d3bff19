"""The activation side of one register: three jobs over one store port and one marketing platform.

- :class:`~dynamics_bridge.activation.outbox.TriggerOutbox`: triggers written with each applied
  payment (the pipeline's hooks), sent after the batch, swept on a timer, resolved by an admin;
- :class:`~dynamics_bridge.activation.segments_job.SegmentsJob`: score, segments and attributes
  of the members that changed, the differences pushed;
- :class:`~dynamics_bridge.activation.reminders_job.RemindersJob`: reminders due today, once a
  period.

They share the register (an :class:`~dynamics_bridge.activation.port.ActivationStore`: Dataverse
in the app, an in-memory fake in the tests), the member views and the platform. The app's wiring
(:mod:`dynamics_bridge.app.wiring`) builds them from settings; nothing here does I/O itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dynamics_bridge.activation.config import ActivationConfig, ApsisFile
from dynamics_bridge.activation.members import MemberViews
from dynamics_bridge.activation.outbox import TriggerOutbox
from dynamics_bridge.activation.port import ActivationStore
from dynamics_bridge.activation.reminders_job import RemindersJob
from dynamics_bridge.activation.segments_job import SegmentsJob
from dynamics_bridge.apsis.port import MarketingPlatform
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.mapping.models import MappingFile
from dynamics_bridge.settings import ActivationSettings

__all__ = ["Activation", "check_apsis"]


class Activation:
    """The three jobs of one register and platform, sharing their store and member views.

    The pipeline's hooks are :attr:`triggers`."""

    def __init__(
        self,
        store: ActivationStore,
        mapping: MappingFile,
        config: ActivationConfig,
        platform: MarketingPlatform,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        options: ActivationSettings | None = None,
    ) -> None:
        self.store = store
        self.mapping = mapping
        self.config = config
        self.platform = platform
        self.clock = clock
        self.members = MemberViews(mapping, config)
        self.triggers = TriggerOutbox(store, self.members, platform, clock=clock, options=options)
        self.segments = SegmentsJob(store, self.members, platform, clock=clock)
        self.reminders = RemindersJob(store, self.members, platform, clock=clock)


def check_apsis(platform: MarketingPlatform, apsis: ApsisFile) -> list[str]:
    """What apsis.yaml names and the APSIS section lacks (event types are made in its UI)."""
    client: Any = getattr(platform, "client", None)
    names: Any = getattr(platform, "names", None)
    if client is None or names is None:
        return ["the marketing platform is not APSIS: nothing to check"]
    problems: list[str] = []
    try:
        sections = client.request("GET", "/audience/sections").json().get("items", [])
    except BridgeError as exc:
        return [f"APSIS: cannot read sections: {exc}"]
    if client.section not in {s.get("discriminator") for s in sections}:
        return [f"section {client.section}: does not exist in APSIS"]
    wanted = {
        "attributes": {n: names["attributes"].get(n, n) for n in apsis.attributes},
        "events": {n: names["event_types"].get(n, n) for n in apsis.events},
        "tags": {n: names["tags"].get(n, n) for n in apsis.tags},
    }
    for kind, expected in wanted.items():
        have = client.definitions(kind, refresh=True)
        current = {
            d.get("discriminator")
            for d in have
            if kind == "tags" or any(v.get("deprecated_at") is None for v in d.get("versions", []))
        }
        for name, discriminator in expected.items():
            if discriminator not in current:
                problems.append(
                    f"{kind[:-1]} {name}: {discriminator} not in section {client.section}"
                )
    return problems


def event_field_problems(
    platform: MarketingPlatform, config: ActivationConfig
) -> list[tuple[str, str]]:
    """``(where, what)`` for every field triggers.yaml and segments.yaml send on an event that
    the event's current version in APSIS lacks (APSIS refuses unknown ones: ``400 … unknown
    fields``), trigger fields from the member and texts included. A version that does not
    list its fields is not judged."""
    client: Any = getattr(platform, "client", None)
    names: Any = getattr(platform, "names", None)
    if client is None or names is None:
        return []
    versions: dict[str, dict[str, Any]] = {}
    for definition in client.definitions("events"):
        current = [v for v in definition.get("versions", []) if v.get("deprecated_at") is None]
        if current:
            versions[str(definition.get("discriminator"))] = current[-1]
    sent: list[tuple[str, str, list[str]]] = [
        (
            f"triggers.yaml: triggers.{name}.fields",
            rule.event or name,
            list(rule.field_map()),  # the APSIS field names (a renamed one by its new name)
        )
        for name, rule in config.triggers.triggers.items()
    ] + [
        (f"segments.yaml: reminders.{name}.fields", reminder.event, list(reminder.fields.values()))
        for name, reminder in config.segments.reminders.items()
    ]
    problems = []
    for where, event, fields in sent:
        discriminator = names["event_types"].get(event, event)
        version = versions.get(discriminator)
        if version is None or not isinstance(version.get("fields"), list):
            continue
        defined = {str(f.get("name")) if isinstance(f, dict) else str(f) for f in version["fields"]}
        if unknown := sorted(set(fields) - defined):
            problems.append(
                (
                    where,
                    f"event {event} ({discriminator}) has no field(s) {unknown} in APSIS "
                    f"(it has {sorted(defined)}): APSIS would refuse every such event",
                )
            )
    return problems
