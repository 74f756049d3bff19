"""A sync process killed with SIGKILL in the middle of its work, twice, then restarted: nothing is
lost or written twice in Dataverse, and APSIS holds each trigger of a clean run exactly once
once the trigger sweep (the function app's timer) has run over what the crashes left behind:
pending triggers, claims lost mid-send (read back from APSIS, never resent blindly)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.register import payment_events, prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox

from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.reports import TriggerReport
from dynamics_bridge.app.wiring import apsis_platform, dataverse_activation
from dynamics_bridge.apsis.pacing import Pacer
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import ActivationSettings, QueueSettings
from tests.conftest import ROOT
from tests.support.chaos import (
    RUN_LIMITS,
    ApsisSide,
    apsis_settings,
    compare,
    compare_triggers,
    consenting_members,
    read_register,
    run_register,
    sent_triggers,
)

pytestmark = pytest.mark.integration

MEMBERS, EVENTS, PER_MESSAGE = 100, 400, 4
LATE_DAYS = 3650  # the events are from January: what is measured here is crashes, not age
VISIBILITY = 8  # seconds a taken message stays hidden: what a killed worker held comes back

#: ``dynamics-bridge sync`` as the CLI runs it: the function app's queue trigger over the app's
#: wiring (settings from the environment, the activation hooks on), with a short visibility
#: timeout so the test need not wait 5 minutes.
CHILD = f"""
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.settings import load_settings
import sys
services = Services(load_settings())
assert services.triggers is not None
services.sync(once=sys.argv[1] == "once", concurrency=2, visibility_timeout={VISIBILITY})
"""


@pytest.fixture
def systems() -> Iterator[tuple[SandboxInfo, ApsisStandIn]]:
    with run_sandbox() as box, run_apsis_standin(limits=RUN_LIMITS, export_polls=1) as apsis:
        yield box, apsis


def child_env(box: SandboxInfo, apsis: ApsisStandIn, azurite: str, queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return {
        **env,
        **box.env,
        **apsis.env,
        "BRIDGE_QUEUE__BACKEND": "azure",
        "BRIDGE_QUEUE__CONNECTION_STRING": azurite,
        "BRIDGE_QUEUE__NAME": queue,
        "BRIDGE_APSIS__ACCOUNT_RATE": "1000/s",
        "BRIDGE_ACTIVATION__LATE_TRIGGER_DAYS": str(LATE_DAYS),
        "BRIDGE_LOG__LEVEL": "CRITICAL",
    }


def start(env: dict[str, str], mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_when(process: subprocess.Popen[bytes], apsis: ApsisStandIn, events: int) -> None:
    """SIGKILL the process once APSIS has received ``events`` events (mid-run)."""
    deadline = time.monotonic() + 120
    while len(apsis.events()) < events:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the sync made no progress"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_a_sync_killed_twice_loses_and_doubles_nothing(azurite, systems) -> None:
    box, apsis = systems
    mapping = load_mapping()
    config = load_activation(mapping)
    client = DataverseClient.from_settings(sandbox_settings(box))
    numbers = prepare_register(client, mapping, MEMBERS)
    platform = apsis_platform(apsis_settings(apsis), config.apsis)
    platform.client.export_pacer = Pacer(RUN_LIMITS.event_exports)
    now = [datetime.now(UTC)]
    options = ActivationSettings(readback=True, late_trigger_days=LATE_DAYS)
    activation = dataverse_activation(
        client, mapping, platform, config=config, clock=lambda: now[0], options=options
    )
    consenting_members(activation, numbers)

    events = payment_events(numbers, EVENTS, mandates=0.15)
    name = f"kill-{uuid4().hex[:8]}"
    queue = open_queue(QueueSettings(backend="azure", connection_string=azurite, name=name))
    for start_at in range(0, EVENTS, PER_MESSAGE):
        queue.send(events[start_at : start_at + PER_MESSAGE])
    env = child_env(box, apsis, azurite, name)

    kill_when(start(env, "forever"), apsis, 60)
    kill_when(start(env, "forever"), apsis, 240)
    time.sleep(VISIBILITY + 1)  # what the killed workers held is visible again
    last = start(env, "once")
    assert last.wait(timeout=300) == 0, last.stderr.read().decode() if last.stderr else ""
    assert queue.depth() == {"messages": 0, "poison": 0}

    left = activation.store.outbox_age(now[0])
    # The trigger sweep (its timer) after the lease and the welcome hold.
    lease = timedelta(minutes=config.triggers.outbox.lease_minutes + 31)
    swept = TriggerReport()
    for _ in range(5):
        now[0] += lease
        swept.add(activation.triggers.sweep())
        outbox = activation.store.outbox_age(now[0])
        if not outbox["pending"]["count"] and not outbox["unconfirmed"]["count"]:
            break
    assert outbox["pending"]["count"] == outbox["unconfirmed"]["count"] == 0, (left, outbox)
    print(f"after the kills: outbox {left}; the sweeps: {swept.to_json()}")

    in_order = [events[i : i + PER_MESSAGE] for i in range(0, EVENTS, PER_MESSAGE)]
    clean, _ = run_register(
        mapping, MEMBERS, in_order, workers=1, apsis=ApsisSide(late_trigger_days=LATE_DAYS)
    )
    register = compare(clean, read_register(client, mapping), EVENTS)
    assert (register.lost, register.duplicate_rows, register.differences) == (0, 0, [])
    triggers = compare_triggers(clean.triggers, sent_triggers(apsis))
    assert (triggers.lost, triggers.duplicate, triggers.wrong_event) == (0, 0, 0), triggers.examples
