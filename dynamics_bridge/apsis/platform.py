"""APSIS One behind the :class:`~dynamics_bridge.apsis.port.MarketingPlatform` port.

Our names become APSIS discriminators through the settings maps (``BRIDGE_APSIS__ATTRIBUTES``,
``__EVENT_TYPES``, ``__TAGS``, ``__TOPICS``); a name that already is a discriminator (it holds a
dot) passes through. Events are posted by the event type's current version id.

:meth:`ApsisPlatform.apply_changes` writes attributes through one bulk import when more profiles
than ``bulk_threshold`` change attributes (100 requests/s would otherwise take minutes); tags,
consents and events always go per profile, as the import's tag mapping is not verified.
A profile is created (``POST …/profiles``) only for a change marked ``create`` (not pushed
before); a diff on a known profile is one PATCH per kind of write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Literal

import requests

from dynamics_bridge.apsis.client import ApsisClient
from dynamics_bridge.apsis.models import (
    ApplyReport,
    AttributeValue,
    ChangeOutcome,
    ConsentChange,
    ConsentResult,
    ImportResult,
    MarketingEvent,
    ProfileChange,
)
from dynamics_bridge.apsis.wire import event_items, exported_events, wire_value
from dynamics_bridge.errors import BridgeError, ConfigError, NotFoundError, PermanentError
from dynamics_bridge.settings import ApsisSettings

__all__ = ["ApsisPlatform"]

log = logging.getLogger(__name__)

#: The longest event-time window one export asks for (APSIS's default ``end_at`` is a week).
EXPORT_WINDOW = timedelta(days=7)


class ApsisPlatform:
    """The port's six methods on one APSIS account, keyspace and section."""

    def __init__(
        self,
        client: ApsisClient,
        *,
        attributes: Mapping[str, str] | None = None,
        event_types: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        topics: Mapping[str, str] | None = None,
        erase_mode: Literal["delete", "lock"] = "delete",
        bulk_threshold: int = 500,
        concurrency: int = 8,
        spread_equal_event_times: bool = True,
    ) -> None:
        self.client = client
        self.names = {
            "attributes": dict(attributes or {}),
            "event_types": dict(event_types or {}),
            "tags": dict(tags or {}),
            "topics": dict(topics or {}),
        }
        self.erase_mode = erase_mode
        self.bulk_threshold = bulk_threshold
        self.concurrency = concurrency
        self.spread_equal_event_times = spread_equal_event_times

    @classmethod
    def from_settings(
        cls, settings: ApsisSettings, session: requests.Session | None = None, **client_kw: Any
    ) -> ApsisPlatform:
        return cls(
            ApsisClient.from_settings(settings, session, **client_kw),
            attributes=settings.attributes,
            event_types=settings.event_types,
            tags=settings.tags,
            topics=settings.topics,
            erase_mode=settings.erase_mode,
            bulk_threshold=settings.bulk_threshold,
            concurrency=settings.concurrency,
            spread_equal_event_times=settings.spread_equal_event_times,
        )

    # -- names -------------------------------------------------------------------------------

    def discriminator(self, kind: str, name: str) -> str:
        """Our ``name`` of an attribute/event type/tag/topic as an APSIS discriminator."""
        found = self.names[kind].get(name)
        if found:
            return found
        if "." in name:
            return name
        raise ConfigError(f"BRIDGE_APSIS__{kind.upper()}: no APSIS discriminator for {name!r}")

    def _attributes(self, attributes: Mapping[str, AttributeValue]) -> dict[str, Any]:
        return {
            self.discriminator("attributes", name): wire_value(value)
            for name, value in attributes.items()
        }

    # -- the port ----------------------------------------------------------------------------

    def upsert_profile(self, key: str, attributes: Mapping[str, AttributeValue]) -> None:
        values = self._attributes(attributes)
        self.client.create_profile(key)
        if values:
            self.client.update_attributes(key, values)

    def send_events(self, key: str, events: Sequence[MarketingEvent]) -> None:
        if not events:
            return
        versions: dict[str, str] = {}
        for event in events:
            if event.type not in versions:
                discriminator = self.discriminator("event_types", event.type)
                versions[event.type] = self.client.version_id("events", discriminator)
        items = event_items(
            ((versions[e.type], e.occurred_at, e.data) for e in events),
            spread_equal_times=self.spread_equal_event_times,
        )
        self.client.post_events(key, items)

    def set_tags(self, key: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        self.client.set_tags(
            key,
            [self.discriminator("tags", t) for t in add],
            [self.discriminator("tags", t) for t in remove],
        )

    def set_consent(self, key: str, consent: ConsentChange) -> ConsentResult:
        return self.client.set_consent(
            key,
            self.discriminator("topics", consent.topic),
            consent.channel,
            opt_in=consent.opt_in,
            reason=consent.reason,
        )

    def erase(self, key: str) -> None:
        if self.erase_mode == "lock":
            self.client.lock_profile(key)
        else:
            self.client.delete_profile(key)

    def held_events(self, events: Sequence[MarketingEvent]) -> set[tuple[str, str]]:
        """Which of these events (our type, ``id``) APSIS holds, by its event export (one
        request per week of event time). Raises when the export cannot be read: the caller then
        knows nothing, which is not the same as "absent"."""
        wanted = [e for e in events if e.id]
        if not wanted:
            return set()
        kinds = {e.type: self.discriminator("event_types", e.type) for e in wanted}
        by_discriminator = {d: t for t, d in kinds.items()}
        versions: dict[str, str] = {}
        for item in self.client.definitions("events", refresh=True):
            name = by_discriminator.get(str(item.get("discriminator")))
            for version in item.get("versions", []) if name else []:
                versions[str(version.get("id"))] = name  # type: ignore[assignment]
        held: set[tuple[str, str]] = set()
        moments = sorted(e.occurred_at for e in wanted)
        # Equal event times are spread by a second each when posted (event_items): allow it.
        slack = timedelta(seconds=len(wanted) + 1)
        start = moments[0] - timedelta(seconds=1)
        last = moments[-1] + slack
        while start < last:
            end = min(start + EXPORT_WINDOW, last)
            file = self.client.export_events(sorted(set(kinds.values())), start, end)
            for kind, source in exported_events(file, self.client.section):
                name = by_discriminator.get(kind) or versions.get(kind)
                if name is not None:
                    held.add((name, source))
            start = end
        ids = {(e.type, e.id) for e in wanted}
        return held & ids

    def apply_changes(self, changes: Sequence[ProfileChange]) -> ApplyReport:
        seen: set[str] = set()
        for change in changes:
            if change.key in seen:
                raise ValueError("one change per profile key: merge a key's changes first")
            seen.add(change.key)
        report = ApplyReport()
        done: dict[str, ChangeOutcome] = {}
        imported: set[str] = set()
        writes_attributes = [c for c in changes if c.attributes and not c.erase]
        if len(writes_attributes) > self.bulk_threshold:
            imported = self._bulk(writes_attributes, report, done)
        todo = [c for c in changes if c.key not in done]
        if self.concurrency > 1 and len(todo) > 1:
            with ThreadPoolExecutor(min(self.concurrency, len(todo))) as pool:
                results = list(pool.map(lambda c: self._apply_one(c, c.key in imported), todo))
        else:
            results = [self._apply_one(c, c.key in imported) for c in todo]
        done.update((o.key, o) for o in results)
        report.outcomes = [done[c.key] for c in changes]
        log.info(
            "APSIS changes applied",
            extra={
                "provider": "apsis",
                "count": len(changes),
                "outcome": f"{len(report.failed)} failed, {len(report.imports)} imports",
            },
        )
        return report

    # -- apply_changes parts -----------------------------------------------------------------

    def _bulk(
        self, changes: list[ProfileChange], report: ApplyReport, done: dict[str, ChangeOutcome]
    ) -> set[str]:
        """Import the attribute writes that a CSV can carry; returns the keys it wrote.

        A row that clears an attribute (``None``) stays on the per-profile PATCH, where merge
        patch defines what null means; what an empty CSV cell does is not verified.
        """
        rows: list[tuple[str, Mapping[str, Any]]] = []
        for change in changes:
            if any(v is None for v in change.attributes.values()):
                continue
            try:
                rows.append((change.key, self._attributes(change.attributes)))
            except BridgeError as exc:
                done[change.key] = ChangeOutcome(change.key, "import", exc)
        if not rows:
            return set()
        imported: set[str] = set()
        try:
            body, files = self.client.prepare_import(rows)
        except BridgeError as exc:
            for key, _ in rows:
                done[key] = ChangeOutcome(key, "import", exc)
            return imported
        for csv_bytes, keys in files:
            error: BridgeError | None = None
            try:
                result = self.client.run_import(body, csv_bytes, len(keys))
                report.imports.append(result)
                if result.status != "completed":
                    error = PermanentError(f"APSIS import {result.import_id} ended {result.status}")
            except BridgeError as exc:
                report.imports.append(ImportResult("", "failed", len(keys)))
                error = exc
            if error is None:
                imported.update(keys)
            else:
                for key in keys:
                    done[key] = ChangeOutcome(key, "import", error)
        return imported

    def _apply_one(self, change: ProfileChange, imported: bool) -> ChangeOutcome:
        """One profile in order: erase, or profile + attributes, tags, consents, then events
        (events last: they are the only write that a retry would duplicate).

        The profile is created only when the change asks (``create``: not pushed before), so a
        diff on a known profile costs no create request. Should APSIS answer 404 for it (it was
        deleted there), the profile is created and the change written once more: nothing of it
        was written before the 404, as every write needs the profile."""
        via: Literal["api", "import", "erase"] = (
            "erase" if change.erase else "import" if imported else "api"
        )
        try:
            if change.erase:
                self.erase(change.key)
                return ChangeOutcome(change.key, via)
            create = change.create and not imported
            try:
                self._write(change, create=create, attributes=not imported)
            except NotFoundError:
                if create:
                    raise
                log.warning(
                    "APSIS profile %s unknown: created again",
                    change.key,
                    extra={"provider": "apsis", "outcome": "recreated"},
                )
                self._write(change, create=True, attributes=True)
                return ChangeOutcome(change.key, via, recreated=True)
        except BridgeError as exc:
            return ChangeOutcome(change.key, via, exc)
        return ChangeOutcome(change.key, via)

    def _write(self, change: ProfileChange, *, create: bool, attributes: bool) -> None:
        if create:
            self.client.create_profile(change.key)
        values = self._attributes(change.attributes) if attributes else {}
        if values:
            self.client.update_attributes(change.key, values)
        if change.tags_add or change.tags_remove:
            self.set_tags(change.key, change.tags_add, change.tags_remove)
        for consent in change.consents:
            self.set_consent(change.key, consent)
        self.send_events(change.key, change.events)
