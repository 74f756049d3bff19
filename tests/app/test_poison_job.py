"""The poison timer: drains the poison queue into the book and logs what waits there, the line
the Bicep poison alert reads; it never drains a durable queue into a book kept in memory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from dynamics_bridge.app import jobs
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import PoisonFilter, PoisonRecord
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.test_pipeline import ev


def poisoned(queue: InMemoryQueue, n: int) -> None:
    for i in range(1, n + 1):
        queue.send([ev(i)])
        (message,) = queue.receive()
        queue.to_poison(message, "unmatched: no member")


def waiting_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (line,) = [r for r in caplog.records if r.getMessage().startswith("poison waiting")]
    return line


def test_the_job_absorbs_the_queue_and_reports_the_oldest_record_in_the_book(caplog) -> None:
    queue, ops = InMemoryQueue(), InMemoryOpsStore()
    poisoned(queue, 3)
    old = PoisonRecord(
        "p-old", datetime.now(UTC) - timedelta(minutes=42), "failed: 400", "", (), (), "", ""
    )
    ops.put_poison([old])
    services = Services(load_settings(), queue=queue, ops=ops)
    with caplog.at_level(logging.INFO, "dynamics_bridge.jobs"):
        result = jobs.run_job("poison", services)
    assert result.status == "done"
    assert result.summary == {"absorbed": 3, "waiting": {"messages": 4, "oldest_minutes": 42}}
    assert ops.poison_count(PoisonFilter()) == 4
    line = waiting_line(caplog)
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "poison waiting: 4 message(s), oldest 42 minutes"
    assert (line.poison_waiting, line.poison_oldest_minutes) == (4, 42)  # type: ignore[attr-defined]


def test_each_run_is_recorded_in_the_history_as_the_poison_timer() -> None:
    queue, ops = InMemoryQueue(), InMemoryOpsStore()
    poisoned(queue, 2)
    jobs.run_job("poison", Services(load_settings(), queue=queue, ops=ops))
    (run,) = ops.runs(datetime.now(UTC) - timedelta(minutes=1))
    assert (run.kind, run.name) == ("timer", "poison")
    assert run.counts == {"poison/absorbed/count": 2}


class DurableQueue:
    """Stands for the Azure queue (anything but this process's memory) over a memory one."""

    def __init__(self, inner: InMemoryQueue) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_with_the_book_in_memory_a_durable_queue_is_left_alone_and_still_reported(caplog):
    queue = InMemoryQueue()
    poisoned(queue, 2)
    ops = InMemoryOpsStore()
    services = Services(load_settings(), queue=DurableQueue(queue), ops=ops)
    with caplog.at_level(logging.INFO, "dynamics_bridge.jobs"):
        result = jobs.run_job("poison", services)
    assert result.status == "skipped"
    assert "BRIDGE_OPS__BACKEND=tables" in result.summary["reason"]
    assert queue.depth()["poison"] == 2  # nothing taken off the queue
    assert ops.poison_count(PoisonFilter()) == 0
    assert waiting_line(caplog).getMessage() == "poison waiting: 2 message(s), oldest 0 minutes"
