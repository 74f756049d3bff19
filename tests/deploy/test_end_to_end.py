"""The function app end to end on local parts: provider callbacks through the HTTP functions, onto
an Azure Storage queue (Azurite), through the queue function run the way the Functions host runs
it (tests/support/functions_host.py), into the Dataverse sandbox and on to the APSIS
stand-in as triggers; the segments and reminders timers against both; and the two ways a
message that keeps failing reaches the poison queue, and comes back with ``poison replay``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.register import sandbox_settings, seed_members
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox
from typer.testing import CliRunner

from dynamics_bridge.app.poison import HOST_MOVED
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import app as cli
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.provision import apply_plan, plan
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.settings import Settings, load_settings
from tests.conftest import FIXTURES
from tests.sources.test_billogram import KEY, signed_headers
from tests.support.functions_host import QueueTriggerHost

pytestmark = pytest.mark.integration

MAPPING = load_mapping()
MEMBER = "100234"  # the member both fixture callbacks name
OTHER = "100235"  # pays by autogiro, due in four days: the reminders timer's member
SWISH_IDENTIFIER = "c0ffee-union-2026"  # as in the Swish fixture
PAID = MAPPING.choices["payment_status"].options["paid"].value
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def box() -> Iterator[SandboxInfo]:
    """A fresh register per test: the fixture callbacks have fixed event ids."""
    with run_sandbox() as box:
        client = DataverseClient.from_settings(sandbox_settings(box))
        apply_plan(client, plan(client, MAPPING))
        seed_members(client, MAPPING, [MEMBER, OTHER])
        member = MAPPING.member
        choices = MAPPING.choices
        marketable = {
            "mbr_marketingconsent": True,
            "mbr_joinedon": "2026-10-01",
            "mbr_membershipstatus": choices["membership_status"].options["active"].value,
        }
        due = (datetime.now(UTC) + timedelta(days=4)).date().isoformat()
        autogiro = choices["payment_method"].options["autogiro"].value
        client.rows.update(member.entity_set, {member.key_column: MEMBER}, marketable)
        client.rows.update(
            member.entity_set,
            {member.key_column: OTHER},
            {**marketable, "mbr_paymentmethod": autogiro, "mbr_paidthrough": due},
        )
        yield box


@pytest.fixture
def apsis() -> Iterator[ApsisStandIn]:
    with run_apsis_standin() as standin:
        yield standin


@pytest.fixture
def settings(box: SandboxInfo, azurite: str, apsis: ApsisStandIn) -> Settings:
    values = {k.removeprefix("BRIDGE_APSIS__").lower(): v for k, v in apsis.env.items()}
    return load_settings(
        queue={"backend": "azure", "connection_string": azurite, "name": f"ev-{uuid.uuid4().hex}"},
        billogram={"sign_key": KEY},
        swish={"callback_identifier": SWISH_IDENTIFIER},
        dataverse=sandbox_settings(box, max_attempts=1),
        apsis={k: json.loads(v) if v.startswith("{") else v for k, v in values.items()},
        activation={"first_payment_hold_minutes": 0},  # a welcome goes with its payment
    )


@pytest.fixture
def host(function_app, functions, settings, azurite):
    """The queue function as the host runs it; a failed message is visible again at once."""
    return QueueTriggerHost(
        azurite,
        settings.queue.name,
        functions["payment_events"],
        function_app.QUEUE_OPTIONS,
        visibility_timeout=0,
    )


@pytest.fixture
def poison_cli(monkeypatch, settings):
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    monkeypatch.setenv(
        "BRIDGE_QUEUE__CONNECTION_STRING", settings.queue.connection_string.get_secret_value()
    )
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", settings.queue.name)
    # the poison book: on Azurite's tables, as BRIDGE_OPS__* set it in Azure
    monkeypatch.setenv("BRIDGE_OPS__BACKEND", "tables")
    monkeypatch.setenv("BRIDGE_OPS__TABLE_PREFIX", f"e{uuid.uuid4().hex[:12]}")
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(cli, ["poison", *args])
        assert result.exit_code == 0, result.output
        return result

    return run


def deliver_callbacks(functions) -> list[str]:
    """A signed Billogram payment and a Swish PAID callback, as the providers send them."""
    billogram = (FIXTURES / "webhooks" / "billogram_payment.json").read_bytes()
    swish = (FIXTURES / "webhooks" / "swish_payment_paid.json").read_bytes()
    answers = [
        functions["billogram_webhook"](
            func.HttpRequest(
                method="POST",
                url="/api/webhooks/billogram",
                headers={**JSON, **signed_headers(billogram, timestamp=f"{time.time():.6f}")},
                body=billogram,
            )
        ),
        functions["swish_webhook"](
            func.HttpRequest(
                method="POST",
                url="/api/webhooks/swish",
                headers={**JSON, "X-Forwarded-For": "213.132.115.94:50312"},
                body=swish,
            )
        ),
    ]
    assert [a.status_code for a in answers] == [202, 202]
    return [i for a in answers for i in json.loads(a.get_body())["event_ids"]]


def payment_rows(client: DataverseClient, event_ids: list[str]) -> set[str]:
    payment = MAPPING.payment
    rows = client.rows.query(payment.entity_set, select=[payment.key_column])
    return {r[payment.key_column] for r in rows} & set(event_ids)


def test_callbacks_reach_dataverse_and_apsis_through_the_queue_function(
    function_app, functions, monkeypatch, settings, host, apsis
) -> None:
    services = Services(settings)
    monkeypatch.setattr(function_app, "services", services)
    event_ids = deliver_callbacks(functions)
    assert services.queue.depth() == {"messages": 2, "poison": 0}

    run = host.drain()
    assert (run.invocations, run.succeeded, run.poisoned) == (2, 2, 0)
    assert services.queue.depth() == {"messages": 0, "poison": 0}
    assert payment_rows(services.dataverse, event_ids) == set(event_ids)
    member = services.dataverse.rows.get(
        MAPPING.member.entity_set, {MAPPING.member.key_column: MEMBER}, select=["mbr_paymentstatus"]
    )
    assert member is not None
    assert member["mbr_paymentstatus"] == PAID
    # The pipeline's activation hooks sent the triggers of the applied payments to APSIS: the
    # Billogram payment is the newer one, so it always applies; the Swish one applies too when
    # the queue function happens to take it first (else it arrives late, and being older than
    # the freshness window its triggers are kept unsent).
    confirmed = [e.data["source_event_id"] for e in apsis.events("payment_confirmed", key=MEMBER)]
    assert len(confirmed) == len(set(confirmed))
    assert {event_ids[0]} <= set(confirmed) <= set(event_ids)
    assert event_ids[0].startswith("billogram-")
    # The welcome goes with its payment, or, when the host ran the member's two messages at
    # once and the other write moved the member's ETag under the welcome's claim, with the
    # outbox timer's next sweep: once either way.
    functions["triggers"](TimerRequest(past_due=False))
    assert len(apsis.events("welcome", key=MEMBER)) == 1  # the first payment only
    functions["triggers"](TimerRequest(past_due=False))  # the next sweep: nothing is left
    assert len(apsis.events("welcome", key=MEMBER)) == 1

    health = functions["health"](func.HttpRequest(method="GET", url="/api/health", body=b""))
    checks = json.loads(health.get_body())["checks"]
    assert health.status_code == 200
    assert checks["dataverse"] == {"ok": True}
    assert checks["queue"]["ok"] is True
    assert checks["trigger_outbox"]["ok"] is True
    assert checks["trigger_outbox"]["pending"] == {"count": 0, "oldest_seconds": None}


def test_a_message_that_keeps_failing_is_poisoned_with_its_reason_and_replayed_once_fixed(
    function_app, functions, monkeypatch, settings, host, box, poison_cli
) -> None:
    services = Services(settings)
    monkeypatch.setattr(function_app, "services", services)
    delivered = deliver_callbacks(functions)
    (held,) = services.queue.receive(max_messages=1, visibility_timeout=3600)  # one stays aside
    event_ids = [i for i in delivered if i not in {e.event_id for e in held.events()}]
    box.limits.fault_rate = 1.0  # Dataverse answers 503 to everything
    try:
        run = host.drain()
    finally:
        box.limits.fault_rate = 0.0
    # Attempts 1-4 raise (the host makes the message visible again), attempt 5 settles it here.
    assert (run.invocations, run.failed, run.succeeded, run.poisoned) == (5, 4, 1, 0)

    *lines, count = [json.loads(x) for x in poison_cli("list", "--json").stdout.splitlines()]
    (entry,) = lines
    assert count["count"] == 1
    assert entry["reason"].startswith("gave up after 5 attempts")
    assert entry["event_ids"] == event_ids
    assert payment_rows(services.dataverse, event_ids) == set()

    replayed = poison_cli("replay", "--all").stdout
    assert f"replayed 1 poison message(s): {len(event_ids)} event(s)" in replayed
    run = host.drain()
    assert (run.invocations, run.succeeded) == (1, 1)
    assert payment_rows(services.dataverse, event_ids) == set(event_ids)
    (left,) = [json.loads(x) for x in poison_cli("list", "--json").stdout.splitlines()]
    assert left["count"] == 0


def test_a_function_that_crashes_every_time_is_moved_by_the_host_and_replayed(
    function_app, functions, monkeypatch, settings, host, poison_cli
) -> None:
    broken = settings.model_copy(
        update={"dataverse": settings.dataverse.model_copy(update={"url": None})}
    )
    monkeypatch.setattr(function_app, "services", Services(broken))
    event_ids = deliver_callbacks(functions)

    run = host.drain()
    # Every run raises (ConfigError building the Dataverse client): after attempt 5 the host
    # copies each message, unchanged, to <queue>-poison.
    assert (run.invocations, run.failed, run.poisoned) == (10, 10, 2)
    *entries, count = [json.loads(x) for x in poison_cli("list", "--json").stdout.splitlines()]
    assert count["count"] == 2
    assert {e["reason"] for e in entries} == {HOST_MOVED}
    assert sorted(i for e in entries for i in e["event_ids"]) == sorted(event_ids)

    fixed = Services(settings)
    monkeypatch.setattr(function_app, "services", fixed)
    for entry in entries:
        poison_cli("replay", entry["message_id"])
    run = host.drain()
    assert (run.invocations, run.succeeded) == (2, 2)
    assert payment_rows(fixed.dataverse, event_ids) == set(event_ids)


def test_the_segments_and_reminders_timers_push_to_apsis(
    function_app, functions, monkeypatch, settings, host, apsis
) -> None:
    services = Services(settings)
    monkeypatch.setattr(function_app, "services", services)
    deliver_callbacks(functions)
    assert host.drain().succeeded == 2

    functions["segments"](TimerRequest(past_due=False))
    assert apsis.profile(MEMBER) is not None
    assert apsis.tag_counts()  # the members' segments, as APSIS tags
    member = MAPPING.member
    rows = services.dataverse.rows.query(
        member.entity_set, select=[member.key_column, "mbr_segments", "mbr_engagementscore"]
    )
    segments = {r[member.key_column]: r["mbr_segments"] for r in rows}
    assert segments[MEMBER]
    assert segments[OTHER]

    functions["reminders"](TimerRequest(past_due=True))
    (reminder,) = apsis.events("payment_reminder")
    assert reminder.key == OTHER
    assert "autogiro" in reminder.data["text"]
    functions["reminders"](TimerRequest(past_due=False))  # once a period
    assert len(apsis.events("payment_reminder")) == 1
