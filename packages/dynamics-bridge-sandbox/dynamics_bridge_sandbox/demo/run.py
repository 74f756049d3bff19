"""The whole main job on the local sandbox: intake of every source, twice, then sync to Dataverse.

Members are fictitious (see :mod:`dynamics_bridge_sandbox.register`); they exist only in the
sandbox.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from dynamics_bridge.app.ingest import ingest_file
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.model import EventKind
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import Settings, load_settings
from dynamics_bridge.sources.ocr import make_reference
from dynamics_bridge_sandbox.apsis import run_apsis_standin
from dynamics_bridge_sandbox.bankgirot_writer import (
    EXAMPLE_CUSTOMER_NUMBER,
    EXAMPLE_PAYEE_BANKGIRO,
    AutogiroPayment,
    BgmaxPayment,
    bgmax_lines,
    payment_spec_lines,
)
from dynamics_bridge_sandbox.demo.apsis import DEMO_NOW, prepare_apsis_demo, run_apsis_demo
from dynamics_bridge_sandbox.demo.callbacks import demo_callbacks
from dynamics_bridge_sandbox.demo.intake import deliver
from dynamics_bridge_sandbox.demo.spar import run_spar_demo
from dynamics_bridge_sandbox.demo.union import define_union_tables, demo_mapping, seed_union
from dynamics_bridge_sandbox.register import FEE, prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

__all__ = ["DemoReport", "run_demo"]

DEMO_SIGN_KEY = "demo-billogram-sign-key"  # the demo signs its own callbacks; not a real key
DEMO_SWISH_IDENTIFIER = "demo-swish-callback-identifier"  # set on the demo's payment requests


@dataclass
class DemoReport:
    deliveries: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    files_ingested: int = 0
    events_by_source: Counter[str] = field(default_factory=Counter)
    events_by_kind: Counter[str] = field(default_factory=Counter)
    queued_events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    poisoned: list[str] = field(default_factory=list)
    members_by_status: Counter[str] = field(default_factory=Counter)
    dataverse_rows: dict[str, int] = field(default_factory=dict)
    dataverse_requests: int = 0
    spar: dict[str, Any] = field(default_factory=dict)
    apsis: dict[str, Any] = field(default_factory=dict)
    #: rows of the union's own tables the demo seeded (employers, memberships, activities)
    union_tables: dict[str, int] = field(default_factory=dict)
    #: the retention analytics on a seeded register (run_retention_demo)
    retention: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "answers": dict(sorted(self.answers.items())),
            "files_ingested": self.files_ingested,
            "queued_events": self.queued_events,
            "events_by_source": dict(sorted(self.events_by_source.items())),
            "events_by_kind": dict(sorted(self.events_by_kind.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "poisoned": self.poisoned,
            "members_by_payment_status": dict(sorted(self.members_by_status.items())),
            "dataverse_rows": self.dataverse_rows,
            "dataverse_requests": self.dataverse_requests,
            "union_tables": self.union_tables,
            "spar": self.spar,
            "apsis": self.apsis,
            "retention": self.retention,
        }


def _files(directory: Path, numbers: list[str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    half = len(numbers) // 2
    autogiro_members, bankgiro_members = numbers[:half], numbers[half:]
    statuses = "0000000120"
    spec = directory / "BFEP.UAGAG.K0471117.D261128.T060000"
    with spec.open("wb") as fh:
        fh.writelines(
            payment_spec_lines(
                AutogiroPayment(
                    m, FEE, date(2026, 11, 28), status=statuses[i % 10], reference="MEDLEMSAVGIFT"
                )
                for i, m in enumerate(autogiro_members)
            )
        )
    bgmax = directory / "BGMAX.D261127.txt"
    references = [make_reference(m) for m in bankgiro_members]
    references[-1] = references[-1][:-1] + str((int(references[-1][-1]) + 1) % 10)  # mistyped
    with bgmax.open("wb") as fh:
        fh.writelines(
            bgmax_lines(BgmaxPayment(ref, FEE, f"{i + 1:012d}") for i, ref in enumerate(references))
        )
    return [spec, bgmax]


def _retention(sandbox: Any, settings: Settings, mapping: Any, client: Any) -> dict[str, Any]:
    """The retention step, where the ``retention`` extra is installed (else said why not)."""
    try:
        from dynamics_bridge_sandbox.demo.retention import run_retention_demo
    except (ImportError, ConfigError) as exc:  # the extra's absence, said by its __init__
        return {"skipped": str(exc)}
    from dynamics_bridge.ops.artifacts import MemoryArtifacts

    services = Services(settings, mapping=mapping, dataverse=client, artifacts=MemoryArtifacts())
    return run_retention_demo(sandbox, services, mapping, DEMO_NOW.date())


def run_demo(
    workdir: Path,
    *,
    members: int = 300,
    then: Callable[[Services], None] | None = None,
) -> DemoReport:
    """Sandbox up, provision, seed, deliver every input twice, sync, and count what landed.

    ``then(services)`` runs last, while the sandbox still runs (``dynamics-bridge console
    --demo`` serves the console over the demo's day until it is stopped)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    report = DemoReport()
    mapping = demo_mapping(load_mapping())
    with run_sandbox(workdir / "dataverse.sqlite") as sandbox, run_apsis_standin() as apsis:
        define_union_tables(sandbox.dataverse, mapping.publisher_prefix)
        settings: Settings = load_settings(
            dataverse=sandbox_settings(sandbox, suppress_flows=True),
            queue={"backend": "memory", "name": "demo-payment-events"},
            billogram={"sign_key": DEMO_SIGN_KEY},
            swish={"callback_identifier": DEMO_SWISH_IDENTIFIER},
            # The demo's files are for Bankgirot's example payee; ingest refuses any other.
            bankgirot={
                "payee_bankgiros": [EXAMPLE_PAYEE_BANKGIRO],
                "customer_numbers": [EXAMPLE_CUSTOMER_NUMBER],
            },
        )
        queue = InMemoryQueue(settings.queue.name)
        ops = InMemoryOpsStore()  # the day's run history: files here, the sync's messages below
        # The function app's wiring builds the client; the sync below runs its queue trigger.
        client = Services(settings, mapping=mapping, queue=queue).dataverse
        numbers = prepare_register(client, mapping, members)
        report.union_tables = seed_union(client, mapping, numbers, DEMO_NOW.date())
        activation = prepare_apsis_demo(client, mapping, numbers, apsis)  # triggers from sync
        half = members // 2
        intake = deliver(
            demo_callbacks(numbers[:half], DEMO_SIGN_KEY, swish_identifier=DEMO_SWISH_IDENTIFIER),
            settings,
            queue,
        )
        report.deliveries = intake.deliveries
        report.answers.update({str(k): v for k, v in intake.answers.items()})
        for path in _files(workdir / "inputs", numbers[half:]) * 2:  # files arrive twice too
            ingest_file(path, queue=queue, settings=settings.bankgirot, ops=ops)
            report.files_ingested += 1
        queued = queue.peek_events()
        report.queued_events = len(queued)
        unique = {e["event_id"]: e for e in queued}
        report.events_by_source.update(e["source"] for e in unique.values())
        report.events_by_kind.update(e["kind"] for e in unique.values())

        requests_before = client.requests_sent
        # Every message through the queue trigger, settled as the Functions host settles it,
        # batchSize + newBatchThreshold at once; then the outbox timer's sweep, as in Azure: a
        # trigger two concurrent runs raced for (a member's ETag moved under its claim) waits
        # for it, so the summary is the same on every run.
        services = Services(
            settings,
            mapping=mapping,
            queue=queue,
            dataverse=client,
            activation=activation,
            ops=ops,
        )
        sync = services.sync(once=True)
        if activation is not None:
            activation.triggers.sweep()
        report.dataverse_requests = client.requests_sent - requests_before
        report.outcomes.update(sync.outcomes)
        report.poisoned = [f"{m['poison']['reason']}" for m in queue.poison_messages()]

        labels = {o.value: word for word, o in mapping.choices["payment_status"].options.items()}
        status_column = next(
            c
            for c, t in mapping.rules[EventKind.PAYMENT_SUCCEEDED].set.items()
            if t.choice and t.choice.set == "payment_status"
        )
        rows = list(client.rows.query(mapping.member.entity_set, select=[status_column]))
        report.members_by_status.update(
            labels.get(int(r[status_column]), "?") if r.get(status_column) is not None else "(none)"
            for r in rows
        )
        payments = sum(
            1
            for _ in client.rows.query(
                mapping.payment.entity_set, select=[mapping.payment.key_column]
            )
        )
        report.dataverse_rows = {"members": len(rows), "payments": payments}
        report.apsis = run_apsis_demo(activation, apsis)
        report.spar = run_spar_demo(client, mapping, numbers)
        report.retention = _retention(sandbox, settings, mapping, client)
        if then is not None:
            then(services)
    return report
