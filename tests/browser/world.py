"""A realistic operating day for the console to show, made by the bridge's own code paths.

The Dataverse sandbox holds a small register; the queue and the operations tables are Azurite's
(the in-memory ones only where Azurite is not installed). Provider callbacks go through the
webhook handler, two Bankgirot files through ingest (one BgMax reference mistyped), then the
queue is synced as the Functions host would: events of members the register lacks (a Swish
payer nobody knows, the mistyped reference, three unknown Autogiro payers) end up poisoned
and in the poison book. The timers then run once against an APSIS stand-in (the demo's
activation setup): triggers, segments, reminders; the address refresh skips (no SPAR). The 29
days before today get run records of the same shapes, so the charts have bars to draw.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.bankgirot_writer import (
    EXAMPLE_CUSTOMER_NUMBER,
    EXAMPLE_PAYEE_BANKGIRO,
    AutogiroPayment,
    BgmaxPayment,
    bgmax_lines,
    payment_spec_lines,
)
from dynamics_bridge_sandbox.demo.apsis import prepare_apsis_demo
from dynamics_bridge_sandbox.demo.callbacks import UNKNOWN_MEMBER, demo_callbacks
from dynamics_bridge_sandbox.register import FEE, prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.app.ingest import ingest_file
from dynamics_bridge.app.jobs import run_job
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.ops.model import RunRecord
from dynamics_bridge.settings import Settings, load_settings
from dynamics_bridge.sources.ocr import make_reference
from tests.conftest import ROOT
from tests.support.azurite import azurite_binary, run_azurite

__all__ = ["SIGN_KEY", "SWISH_IDENTIFIER", "World", "seeded_world"]

SIGN_KEY = "console-test-billogram-key"  # the world signs its own callbacks; not a real key
SWISH_IDENTIFIER = "console-test-swish-identifier"
#: Autogiro payers the register does not know: each becomes a poison message of its own.
UNKNOWN_PAYERS = ("990001", "990002", "990003")
HISTORY_DAYS = 29
#: The operations records in Azurite's Table Storage (TableOpsStore) rather than memory.
TABLES = True


@dataclass
class World:
    services: Services
    settings: Settings
    members: list[str]
    #: member numbers whose events were poisoned (the register lacks them)
    unknown: list[str]
    storage: str  # "azurite" or "memory"
    files: list[Path] = field(default_factory=list)
    #: the counts seeded for each day before today (queue runs only)
    history: dict[date, dict[str, int]] = field(default_factory=dict)
    box: Any = None  # the Dataverse sandbox (its ``limits`` make faults)


def _settings(box: Any, connection: str | None, apsis: ApsisStandIn) -> Settings:
    """Azurite's queue and tables with a connection string; this process's memory without (the
    poison book refuses to keep a durable queue's messages in memory)."""
    tag = uuid.uuid4().hex[:10]
    if connection is not None:
        queue: dict[str, Any] = {
            "backend": "azure",
            "connection_string": connection,
            "name": f"events-{tag}",
        }
        ops: dict[str, Any] = {"backend": "tables", "table_prefix": f"console{tag}"}
    else:
        queue = {"backend": "memory", "name": f"events-{tag}"}
        ops = {"backend": "memory"}
    values = {k.removeprefix("BRIDGE_APSIS__").lower(): v for k, v in apsis.env.items()}
    return load_settings(
        apsis={k: json.loads(v) if v.startswith("{") else v for k, v in values.items()},
        activation={"first_payment_hold_minutes": 0},  # a welcome goes with its payment
        dataverse=sandbox_settings(box, suppress_flows=True, max_attempts=1),
        queue=queue,
        ops=ops,
        billogram={"sign_key": SIGN_KEY},
        swish={"callback_identifier": SWISH_IDENTIFIER},
        bankgirot={
            "payee_bankgiros": [EXAMPLE_PAYEE_BANKGIRO],
            "customer_numbers": [EXAMPLE_CUSTOMER_NUMBER],
        },
    )


def _files(directory: Path, autogiro: list[str], bankgiro: list[str]) -> list[Path]:
    """An Autogiro payment specification (a few payers unknown) and a BgMax file whose last
    OCR reference is mistyped (its check digit no longer matches)."""
    directory.mkdir(parents=True, exist_ok=True)
    day = datetime.now(UTC).date()
    statuses = "0000000120"
    spec = directory / f"BFEP.UAGAG.K0471117.D{day:%y%m%d}.T060000"
    with spec.open("wb") as fh:
        fh.writelines(
            payment_spec_lines(
                AutogiroPayment(m, FEE, day, status=statuses[i % 10], reference="MEDLEMSAVGIFT")
                for i, m in enumerate([*autogiro, *UNKNOWN_PAYERS])
            )
        )
    bgmax = directory / f"BGMAX.D{day:%y%m%d}.txt"
    references = [make_reference(m) for m in bankgiro]
    references[-1] = references[-1][:-1] + str((int(references[-1][-1]) + 1) % 10)
    with bgmax.open("wb") as fh:
        fh.writelines(
            bgmax_lines(BgmaxPayment(r, FEE, f"{i + 1:012d}") for i, r in enumerate(references))
        )
    return [spec, bgmax]


def _ingest(path: Path, services: Services) -> None:
    """As the blob function ingests a file dropped in the ``bankgirot-incoming`` container."""
    with path.open("rb") as stream:
        ingest_file(
            stream,
            name=f"bankgirot-incoming/{path.name}",
            queue=services.queue,
            settings=services.settings.bankgirot,
            ops=services.ops,
        )


def _timer_counts(services: Services, today: date) -> dict[str, dict[str, int]]:
    """Today's real timer runs' counts by timer name (the shapes the history repeats)."""
    start = datetime.combine(today, time(0), tzinfo=UTC)
    found: dict[str, dict[str, int]] = {}
    for run in services.ops.runs(start, kind="timer"):
        found.setdefault(run.name, dict(run.counts))
    return found


def _wobble(counts: dict[str, int], rng: random.Random, back: int) -> dict[str, int]:
    """Counts as they might have been ``back`` days ago: sizes a little smaller, sends vary."""
    out = {}
    for key, n in counts.items():
        if key.endswith("/size"):
            out[key] = max(0, n - back // 3 + rng.randint(-1, 1))
        else:
            out[key] = max(0, n + rng.randint(-2, 2))
    return {k: v for k, v in out.items() if v}


def _history(services: Services, today: date, members: int) -> dict[date, dict[str, int]]:
    """Run records for the days before today, shaped like today's (see the module's doc);
    the queue runs' counts by day."""
    rng = random.Random(14)  # made-up figures, not security
    seeded: dict[date, dict[str, int]] = {}
    shapes = _timer_counts(services, today)
    for back in range(HISTORY_DAYS, 0, -1):
        day = today - timedelta(days=back)
        at = datetime.combine(day, time(6, 30), tzinfo=UTC)
        for offset, job in enumerate(("triggers", "segments", "reminders", "refresh")):
            services.ops.record_run(
                RunRecord(
                    run_id=f"history-{day.isoformat()}-{job}",
                    kind="timer",
                    name=job,
                    started_at=at + timedelta(hours=1, minutes=offset),
                    duration_ms=rng.randint(100, 2000),
                    counts=_wobble(shapes.get(job, {}), rng, back),
                )
            )
        if day.weekday() >= 5:
            continue  # no payment files at weekends: the history chart shows the gaps
        applied = rng.randint(members // 2, members * 2)
        counts = {
            "autogiro/payment.succeeded/applied": applied,
            "autogiro/payment.failed/applied": rng.randint(0, applied // 10),
            "bgmax/payment.succeeded/applied": rng.randint(0, members // 3),
            "swish/payment.succeeded/applied": rng.randint(0, members // 4),
            "autogiro/payment.succeeded/duplicate": rng.randint(0, 6),
            "autogiro/payment.succeeded/unmatched": rng.choice((0, 0, 0, 1, 2, 5)),
        }
        seeded[day] = {k: v for k, v in counts.items() if v}
        services.ops.record_run(
            RunRecord(
                run_id=f"history-{day.isoformat()}",
                kind="queue",
                name="sync",
                started_at=at,
                duration_ms=rng.randint(400, 4000),
                counts={k: v for k, v in counts.items() if v},
            )
        )
    return seeded


@contextlib.contextmanager
def seeded_world(workdir: Path, *, members: int = 24, tables: bool = TABLES) -> Iterator[World]:
    """The day described in the module's doc; Azurite and the sandbox stop when it ends.
    ``tables``: the queue and the operations records in Azurite (else this process's memory,
    as where Azurite is not installed)."""
    binary = azurite_binary(ROOT) if tables else None
    with contextlib.ExitStack() as stack:
        connection = (
            stack.enter_context(run_azurite(binary, tables=True)) if binary is not None else None
        )
        box = stack.enter_context(run_sandbox())
        apsis = stack.enter_context(run_apsis_standin())
        settings = _settings(box, connection, apsis)
        mapping = load_mapping()
        client = DataverseClient.from_settings(settings.dataverse)
        numbers = prepare_register(client, mapping, members)
        activation = prepare_apsis_demo(client, mapping, numbers, apsis)  # triggers, segments
        services = Services(settings, mapping=mapping, dataverse=client, activation=activation)
        third = members // 3
        for callback in demo_callbacks(
            numbers[:third], SIGN_KEY, swish_identifier=SWISH_IDENTIFIER
        ):
            handle_webhook(
                callback.provider,
                callback.body,
                callback.headers,
                callback.client_ip,
                settings=settings,
                queue=services.queue,
            )
        files = _files(workdir, numbers[third : 2 * third], numbers[2 * third :])
        for path in files:
            _ingest(path, services)
        services.sync(once=True)
        # The timers, as the function app runs them: the poison one moves the poison queue into
        # the poison book; SPAR is not set up, so the address refresh's run says it skipped.
        for job in (
            "poison",
            "triggers",
            "segments",
            "reminders",
            "address_refresh",
            "housekeeping",
        ):
            run_job(job, services)
        history = _history(services, datetime.now(UTC).date(), members)
        unknown = [UNKNOWN_MEMBER, *UNKNOWN_PAYERS]
        storage = "azurite" if connection else "memory"
        yield World(services, settings, numbers, unknown, storage, files, history, box)
