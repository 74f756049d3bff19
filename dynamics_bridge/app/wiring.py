"""What the functions of one worker process share, built on first use.

Nothing is built at import: a function app's start-up must not fail (or take long) because a
setting is missing, and an HTTP function must still answer 503 in that case. Built once, the
Dataverse client keeps its token cache and its per-app-user gates (the 429 pause every worker
of one app user shares), and the queue client its connection pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.hosting import QueueHostOptions
from dynamics_bridge.settings import ActivationSettings, ApsisSettings, Settings, load_settings

if TYPE_CHECKING:
    import requests

    from dynamics_bridge.activation.config import ActivationConfig, ApsisFile
    from dynamics_bridge.activation.outbox import TriggerOutbox
    from dynamics_bridge.activation.port import ActivationStore
    from dynamics_bridge.activation.service import Activation
    from dynamics_bridge.app.check import CheckReport, Severity
    from dynamics_bridge.app.ingest import MandateTasks
    from dynamics_bridge.app.poison import PoisonBook
    from dynamics_bridge.app.retention import RetentionRun
    from dynamics_bridge.app.sync import SyncReport
    from dynamics_bridge.apsis.platform import ApsisPlatform
    from dynamics_bridge.apsis.port import MarketingPlatform
    from dynamics_bridge.dataverse.client import DataverseClient
    from dynamics_bridge.mapping import MappingFile
    from dynamics_bridge.mapping.retention import RetentionFile
    from dynamics_bridge.ops.artifacts import ArtifactStore
    from dynamics_bridge.ops.port import OpsStore
    from dynamics_bridge.pipeline import MemberStore, Pipeline
    from dynamics_bridge.queue import EventQueue, ReceivedMessage
    from dynamics_bridge.registry import SparClient
    from dynamics_bridge.sources.swish import SwishApi

__all__ = [
    "Services",
    "apsis_credentials",
    "apsis_platform",
    "build_activation",
    "dataverse_activation",
]

T = TypeVar("T")


class Services:
    """Settings, queue, mapping, Dataverse client, pipeline and marketing platform, lazily.

    Tests and the benchmark pass ``settings`` (and may pass ready-made parts); the function
    app passes nothing and reads the environment (app settings, Key Vault references resolved).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        on_settings: Callable[[Settings], None] | None = None,
        queue_options: QueueHostOptions | None = None,
        **parts: Any,
    ) -> None:
        self._lock = threading.RLock()
        self._check_lock = threading.Lock()
        #: The start check and when it is due again (time.monotonic()).
        self._start_check: tuple[CheckReport, float] | None = None
        self._parts: dict[str, Any] = dict(parts)
        self._given = frozenset(parts)  # what the caller built, not this wiring
        if settings is not None:
            self._parts["settings"] = settings
        self._on_settings = on_settings
        #: The queue trigger's options (host.json): the function app passes what the host runs
        #: with; the CLI and the demo run the host's defaults locally.
        self.queue_options: QueueHostOptions = queue_options or QueueHostOptions()

    def _get(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build()
            return self._parts[name]

    @property
    def settings(self) -> Settings:
        """Raises ConfigError listing every problem by its variable name."""

        def build() -> Settings:
            settings = load_settings()
            if self._on_settings is not None:
                self._on_settings(settings)
            return settings

        return self._get("settings", build)

    @property
    def queue(self) -> EventQueue:
        from dynamics_bridge.queue import open_queue

        return self._get("queue", lambda: open_queue(self.settings.queue))

    @property
    def ops(self) -> OpsStore:
        """Run history, the poison book and audits: Table Storage, or this process's memory."""

        def build() -> OpsStore:
            settings = self.settings
            if settings.ops.backend == "tables":
                from dynamics_bridge.ops.tables import TableOpsStore

                return TableOpsStore.from_settings(settings.ops, settings.queue)
            from dynamics_bridge.ops.memory import InMemoryOpsStore

            return InMemoryOpsStore()

        return self._get("ops", build)

    @property
    def poison_book(self) -> PoisonBook:
        """The poison queue drained into :attr:`ops` for operators (list, replay, purge)."""
        from dynamics_bridge.app.poison import PoisonBook

        return self._get("poison_book", lambda: PoisonBook(self.queue, self.ops))

    @property
    def mapping(self) -> MappingFile:
        """``dataverse.yaml`` of the mappings folder (``BRIDGE_MAPPINGS_DIR``)."""
        from dynamics_bridge.mapping import load_mapping

        return self._get("mapping", lambda: load_mapping(self.settings.mappings / "dataverse.yaml"))

    def check(self, *, live: bool = True, unreachable: Severity = "error") -> CheckReport:
        """``dynamics-bridge check`` over this wiring: settings, every mapping file, the SPAR
        contract files and, ``live``, the Dataverse metadata (the one-attempt probe) and the
        APSIS definitions (one attempt per request); ``unreachable``: what Dataverse or APSIS
        out of reach counts as. Reports, never raises."""
        from dynamics_bridge.app.check import run_check

        try:
            settings: Settings | None = self.settings
        except ConfigError:
            settings = None  # run_check reads (and reports) them again
        # A Dataverse client (or the activation over one) given by the caller needs no
        # Dataverse settings: tests, the demo, the benchmark bring their own.
        given = bool({"dataverse", "activation", "store", "pipeline"} & self._given)
        marketing: Callable[[ActivationConfig], MarketingPlatform | None] | None = None
        if "activation" in self._given:
            activation = self._parts["activation"]

            def marketing(_config: ActivationConfig) -> MarketingPlatform | None:
                """The given activation's own APSIS (a stand-in), or none at all."""
                return getattr(activation, "platform", None)

        return run_check(
            settings,
            live=live,
            need_dataverse=not given,
            wiring=lambda _: self,
            dataverse=(lambda: self.dataverse) if "dataverse" in self._given else None,
            marketing=marketing,
            unreachable=unreachable,
        )

    def startup_check(self) -> CheckReport:
        """What the timers and ``/api/health`` refuse to work without: :meth:`check` with its
        live part (the Dataverse metadata, the APSIS definitions and event fields), once per
        process and again once ``BRIDGE_START_CHECK_MINUTES`` have passed (the live part costs
        requests). Dataverse or APSIS out of reach is a warning here, not an error: a job then
        meets the outage itself and retries, and is not blocked until the next check; a
        metadata mismatch or an event field APSIS lacks is an error. Each error is logged
        whenever it is checked."""
        from dynamics_bridge.app.check import log

        with self._check_lock:  # not the wiring's lock: the live part may take seconds
            if self._start_check is not None and time.monotonic() < self._start_check[1]:
                return self._start_check[0]
            report = self.check(live=True, unreachable="warning")
            for finding in report.errors:
                log.error("configuration: %s", finding.text(), extra={"check": finding.area})
            for finding in report.warnings:
                if finding.what.startswith("not reachable"):
                    log.warning("configuration: %s", finding.text(), extra={"check": finding.area})
            self._start_check = (report, time.monotonic() + 60 * self._start_check_minutes())
            return report

    def _start_check_minutes(self) -> float:
        try:
            return self.settings.start_check_minutes
        except ConfigError:
            return float(Settings.model_fields["start_check_minutes"].default)

    @property
    def dataverse(self) -> DataverseClient:
        from dynamics_bridge.dataverse.client import DataverseClient

        return self._get(
            "dataverse", lambda: DataverseClient.from_settings(self.settings.dataverse)
        )

    @property
    def store(self) -> MemberStore:
        """The pipeline's member store: Dataverse through this wiring's client."""

        def build() -> MemberStore:
            from dynamics_bridge.dataverse.store import DataverseMemberStore

            return DataverseMemberStore(self.dataverse, self.mapping)

        return self._get("store", build)

    @property
    def pipeline(self) -> Pipeline:
        from dynamics_bridge.pipeline import Pipeline

        return self._get(
            "pipeline", lambda: Pipeline(self.store, self.mapping, hooks=self.triggers)
        )

    @property
    def dry_run_pipeline(self) -> Pipeline:
        """The pipeline without activation hooks: a dry run plans and triggers nothing."""
        from dynamics_bridge.pipeline import Pipeline

        return self._get("dry_run_pipeline", lambda: Pipeline(self.store, self.mapping, hooks=None))

    def dataverse_probe(self) -> DataverseClient:
        """A Dataverse client of its own with one attempt and a short timeout: a health probe
        must not wait out the sync's retry budget (minutes of Retry-After under throttling)."""
        from dynamics_bridge.dataverse.client import DataverseClient

        if "dataverse" in self._given:  # the caller's own client (the demo, tests)
            return self.dataverse
        settings = self.settings.dataverse
        return DataverseClient.from_settings(
            settings.model_copy(
                update={"max_attempts": 1, "timeout_seconds": min(settings.timeout_seconds, 10.0)}
            )
        )

    def queue_function(self, message: ReceivedMessage) -> SyncReport:
        """What the function app's queue trigger runs for one message, over this wiring's
        pipeline and queue (its run recorded in :attr:`ops`); raises TransientError to have the
        message delivered again."""
        from dynamics_bridge.app.handlers import handle_queue_message
        from dynamics_bridge.app.runs import store_of

        return handle_queue_message(
            message.raw,
            message_id=message.message_id,
            dequeue_count=message.dequeue_count,
            pipeline=self.pipeline,
            queue=self.queue,
            max_dequeue_count=self.queue_options.max_dequeue_count,
            ops=store_of(self),
        )

    def sync(
        self,
        *,
        once: bool = False,
        concurrency: int | None = None,
        visibility_timeout: int = 300,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[SyncReport], None] | None = None,
    ) -> SyncReport:
        """Consume the queue locally as the Functions host would run the queue trigger
        (:func:`dynamics_bridge.app.sync.run_host`), ``concurrency`` messages at a time
        (default: the host's ``batchSize`` + ``newBatchThreshold``)."""
        from dynamics_bridge.app.sync import run_host

        self.pipeline  # noqa: B018 - built first: a missing setting fails at once, not per message
        options = self.queue_options
        return run_host(
            self.queue,
            self.queue_function,
            concurrency=concurrency or options.in_flight_per_instance,
            max_dequeue_count=options.max_dequeue_count,
            visibility_timeout=visibility_timeout,
            once=once,
            should_stop=should_stop,
            on_progress=on_progress,
        )

    def dry_run_sync(self) -> SyncReport:
        """What a sync would do with the messages on the queue now; takes and writes nothing."""
        from dynamics_bridge.app.sync import dry_run_sync

        return dry_run_sync(self.queue, self.dry_run_pipeline)

    @property
    def activation(self) -> Activation | None:
        """Triggers, segments, reminders (APSIS settings and mappings/apsis.yaml...) or None."""
        return self._get(
            "activation",
            lambda: build_activation(
                self.settings, self.dataverse, self.mapping, directory=self.settings.mappings
            ),
        )

    @property
    def dry_run_activation(self) -> Activation | None:
        """The activation side for a dry run: over Dataverse (read), with an APSIS that is never
        asked, so no APSIS key is needed; None when the mapping files are absent."""

        def build() -> Activation | None:
            from dynamics_bridge.activation.loader import activation_configured, load_activation

            folder = self.settings.mappings
            if not activation_configured(folder):
                return None
            config = load_activation(self.mapping, folder)
            return dataverse_activation(
                self.dataverse,
                self.mapping,
                _NotAsked(),
                config=config,
                options=self.settings.activation,
            )

        return self._get("dry_run_activation", build)

    def apsis_platform_for(self, config: ActivationConfig) -> ApsisPlatform | None:
        """APSIS as the activation side sees it (apsis.yaml's names), for ``check``, with one
        attempt per request; None without an API key."""
        settings = self.settings.apsis
        if not apsis_credentials(settings):
            return None
        # One attempt, a short wait: a check must not wait out a sync's retry budget.
        probe = settings.model_copy(
            update={"max_attempts": 1, "timeout_seconds": min(settings.timeout_seconds, 10.0)}
        )
        return apsis_platform(probe, config.apsis)

    def outbox_probe(self) -> ActivationStore | None:
        """The trigger outbox over :meth:`dataverse_probe` (the health answer), or None without
        activation."""
        from dynamics_bridge.dataverse.activation_store import DataverseActivationStore

        activation = self.activation
        if activation is None:
            return None
        outbox = activation.config.triggers.outbox
        return DataverseActivationStore(self.dataverse_probe(), self.mapping, outbox)

    @property
    def triggers(self) -> TriggerOutbox | None:
        """The activation side's trigger outbox (the pipeline's hooks), or None."""
        activation = self.activation
        return activation.triggers if activation is not None else None

    @property
    def swish_api(self) -> SwishApi | None:
        """The Swish payment-status API, when callbacks are confirmed with it
        (``BRIDGE_SWISH__CONFIRM_WITH_API``); one client and its mTLS session for the process."""

        def build() -> SwishApi | None:
            if not self.settings.swish.confirm_with_api:
                return None
            from dynamics_bridge.providers.swish_api import SwishApiClient

            return SwishApiClient.from_settings(self.settings.swish)

        return self._get("swish_api", build)

    @property
    def spar(self) -> SparClient:
        """SPAR PersonSok (``BRIDGE_SPAR__*``); raises ConfigError naming what is missing."""

        def build() -> SparClient:
            from dynamics_bridge.registry import SparClient

            return SparClient.from_settings(self.settings.spar)

        return self._get("spar", build)

    @property
    def marketing(self) -> MarketingPlatform | None:
        """APSIS One when ``BRIDGE_APSIS__*`` is configured, else None."""

        def build() -> MarketingPlatform | None:
            if not self.settings.apsis.configured:
                return None
            from dynamics_bridge.apsis import ApsisPlatform

            return ApsisPlatform.from_settings(self.settings.apsis)

        return self._get("marketing", build)

    @property
    def retention_config(self) -> RetentionFile | None:
        """``retention.yaml`` of the mappings folder, or None where the union has none."""

        def build() -> RetentionFile | None:
            from dynamics_bridge.mapping.loader import load_config
            from dynamics_bridge.mapping.retention import RetentionFile, cross_check

            path = self.settings.mappings / "retention.yaml"
            if not path.is_file():
                return None
            config = load_config(RetentionFile, path, prefix=self.mapping.publisher_prefix)
            if problems := cross_check(config, self.mapping):
                raise ConfigError(problems)
            return config

        return self._get("retention_config", build)

    @property
    def artifacts(self) -> ArtifactStore:
        """Versioned models, metrics and reports: the ops tables, else a folder."""

        def build() -> ArtifactStore:
            from dynamics_bridge.ops.artifacts import DirectoryArtifacts, TableArtifacts

            settings = self.settings
            if settings.ops.backend == "tables":
                return TableArtifacts.from_settings(settings.ops, settings.queue)
            return DirectoryArtifacts(settings.retention.directory)

        return self._get("artifacts", build)

    def retention_report(self) -> str | None:
        """The latest retention report's HTML (the console's Retention page), or None."""
        latest = self.artifacts.latest("report")
        return latest.data.decode("utf-8") if latest is not None else None

    def retention_run(self, today: date, *, dry_run: bool = False) -> RetentionRun:
        """One retention run over Dataverse (``retention.yaml`` must be there)."""
        from dynamics_bridge.app.retention import RetentionRun
        from dynamics_bridge.dataverse.retention_store import RetentionStore
        from dynamics_bridge.dataverse.tasks import TaskWriter

        config = self.retention_config
        if config is None:
            raise ConfigError(
                f"{self.settings.mappings / 'retention.yaml'}: no such file; the retention "
                "analytics are configured there (see the shipped mappings/retention.yaml)"
            )
        tasks = None
        if config.advisor.enabled and self.mapping.tasks is not None:
            tasks = TaskWriter(self.dataverse, self.mapping, config.advisor)
        return RetentionRun(
            config,
            self.mapping,
            RetentionStore(self.dataverse, self.mapping),
            self.artifacts,
            today=today,
            tasks=tasks,
            dry_run=dry_run,
        )

    def mandate_tasks(self) -> MandateTasks | None:
        """What makes the advisor tasks for failed Autogiro mandate requests (ingest), or None
        when they are off: no ``tasks`` in dataverse.yaml, no retention.yaml in the mappings
        folder, or ``advisor.enabled``/``failed_mandates`` false. Builds the Dataverse client:
        ingest calls it only for a queued file that has such requests."""
        from dynamics_bridge.app.ingest import MandateTaskMaker
        from dynamics_bridge.dataverse.tasks import TaskWriter

        mapping = self.mapping
        config = self.retention_config if mapping.tasks is not None else None
        if config is None or not (config.advisor.enabled and config.advisor.failed_mandates):
            return None
        writer = TaskWriter(self.dataverse, mapping, config.advisor)
        return MandateTaskMaker(self.store, writer, mapping, config.advisor)


class _NotAsked:
    """APSIS in a dry run: any call is refused (a dry run computes, it sends nothing)."""

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(f"a dry run asks APSIS nothing (it tried {name})")


def apsis_platform(
    settings: ApsisSettings, apsis: ApsisFile, session: requests.Session | None = None
) -> ApsisPlatform:
    """APSIS with apsis.yaml's keyspace, section and names; settings that are set win."""
    from dynamics_bridge.apsis.platform import ApsisPlatform

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
    """The activation side over Dataverse and APSIS, or None when APSIS is not configured or
    the files are absent."""
    from dynamics_bridge.activation.loader import activation_configured, load_activation

    if not apsis_credentials(settings.apsis) or not activation_configured(directory):
        return None
    config = load_activation(mapping, directory)
    platform = apsis_platform(settings.apsis, config.apsis)
    return dataverse_activation(
        client, mapping, platform, config=config, options=settings.activation
    )


def dataverse_activation(
    client: DataverseClient,
    mapping: MappingFile,
    platform: MarketingPlatform,
    *,
    config: ActivationConfig | None = None,
    clock: Callable[[], datetime] | None = None,
    options: ActivationSettings | None = None,
) -> Activation:
    """The three activation jobs over Dataverse (its ActivationStore adapter) and ``platform``:
    :func:`build_activation`'s second half, and what the demo, the benchmark and the chaos
    runner build on their stand-ins (their own platform and clock). ``config``: the shipped
    mappings' apsis.yaml, triggers.yaml and segments.yaml when None."""
    from dynamics_bridge.activation.loader import load_activation
    from dynamics_bridge.activation.service import Activation
    from dynamics_bridge.dataverse.activation_store import DataverseActivationStore

    config = config or load_activation(mapping)
    store = DataverseActivationStore(client, mapping, config.triggers.outbox)
    return Activation(
        store,
        mapping,
        config,
        platform,
        clock=clock or (lambda: datetime.now(UTC)),
        options=options,
    )
