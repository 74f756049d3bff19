"""What the functions of one worker process share, built on first use.

Nothing is built at import: a function app's start-up must not fail (or take long) because a
setting is missing, and an HTTP function must still answer 503 in that case. Built once, the
Dataverse client keeps its token cache and its per-app-user gates (the 429 pause every worker
of one app user shares), and the queue client its connection pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from dynamics_bridge.settings import Settings, load_settings

if TYPE_CHECKING:
    from dynamics_bridge.activation.service import Activation
    from dynamics_bridge.apsis.port import MarketingPlatform
    from dynamics_bridge.dataverse.client import DataverseClient
    from dynamics_bridge.mapping import MappingFile
    from dynamics_bridge.pipeline import Pipeline
    from dynamics_bridge.queue import EventQueue

__all__ = ["Services"]

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
        **parts: Any,
    ) -> None:
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = dict(parts)
        if settings is not None:
            self._parts["settings"] = settings
        self._on_settings = on_settings

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
    def mapping(self) -> MappingFile:
        from dynamics_bridge.mapping import load_mapping

        return self._get("mapping", load_mapping)

    @property
    def dataverse(self) -> DataverseClient:
        from dynamics_bridge.dataverse.client import DataverseClient

        return self._get(
            "dataverse", lambda: DataverseClient.from_settings(self.settings.dataverse)
        )

    @property
    def pipeline(self) -> Pipeline:
        from dynamics_bridge.dataverse.store import DataverseMemberStore
        from dynamics_bridge.pipeline import Pipeline

        return self._get(
            "pipeline",
            lambda: Pipeline(
                DataverseMemberStore(self.dataverse, self.mapping),
                self.mapping,
                hooks=self.activation,
            ),
        )

    @property
    def activation(self) -> Activation | None:
        """Triggers, segments, reminders (APSIS settings and mappings/apsis.yaml...) or None."""
        from dynamics_bridge.activation.jobs import build_activation

        return self._get(
            "activation", lambda: build_activation(self.settings, self.dataverse, self.mapping)
        )

    @property
    def marketing(self) -> MarketingPlatform | None:
        """APSIS One when ``BRIDGE_APSIS__*`` is configured, else None."""

        def build() -> MarketingPlatform | None:
            if not self.settings.apsis.configured:
                return None
            from dynamics_bridge.apsis import ApsisPlatform

            return ApsisPlatform.from_settings(self.settings.apsis)

        return self._get("marketing", build)
