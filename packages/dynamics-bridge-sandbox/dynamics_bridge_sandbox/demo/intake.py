"""Intake part of the demo: deliver callbacks twice, as providers do, and count what was queued."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import Settings
from dynamics_bridge_sandbox.demo.callbacks import Callback

__all__ = ["IntakeReport", "deliver"]


@dataclass
class IntakeReport:
    deliveries: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    queued: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unique_events(self) -> dict[str, dict[str, Any]]:
        return {e["event_id"]: e for e in self.queued}

    def events_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(e["kind"] for e in self.unique_events.values()).items()))

    def events_by_source(self) -> dict[str, int]:
        return dict(sorted(Counter(e["source"] for e in self.unique_events.values()).items()))


def deliver(
    callbacks: list[Callback], settings: Settings, queue: InMemoryQueue, *, times: int = 2
) -> IntakeReport:
    """Every callback ``times`` times; redeliveries give the same event ids."""
    report = IntakeReport()
    for _ in range(times):
        for callback in callbacks:
            result = handle_webhook(
                callback.provider,
                callback.body,
                callback.headers,
                callback.client_ip,
                settings=settings,
                queue=queue,
            )
            report.deliveries += 1
            report.answers[result.status] += 1
    report.queued = queue.peek_events()
    return report
