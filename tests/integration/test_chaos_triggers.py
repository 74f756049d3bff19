"""Triggers exactly once under chaos: events out of order and delivered twice, Dataverse
throttling and dropping connections, APSIS answering 429 and 503 before any work and storing
event POSTs before answering 503. APSIS ends up holding what a clean, in-order run sends: each
(type, source event) once, none for another event, none lost."""

from __future__ import annotations

import pytest
from dynamics_bridge_sandbox.apsis import ApsisChaos
from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.register import member_numbers, payment_events

from dynamics_bridge.mapping import load_mapping
from tests.support.chaos import (
    ApsisSide,
    ChaosResult,
    Register,
    compare,
    compare_triggers,
    deliveries,
    out_of_order_members,
    run_register,
)

pytestmark = pytest.mark.integration

MEMBERS, EVENTS = 60, 240  # four events a member: payments, failures, mandate changes
APSIS_FAULTS = dict(throttled=0.10, unavailable=0.02, stored_then_unavailable=0.06)


def chaos_run(readback: bool) -> tuple[Register, Register, ChaosResult]:
    mapping = load_mapping()
    events = payment_events(member_numbers(MEMBERS), EVENTS, mandates=0.15)
    in_order = [events[i : i + 20] for i in range(0, EVENTS, 20)]
    clean, clean_poisoned = run_register(
        mapping, MEMBERS, in_order, workers=1, apsis=ApsisSide(readback=readback)
    )
    assert clean_poisoned == 0
    assert clean.triggers
    assert max(clean.triggers.values()) == 1  # in order: each once
    limits = Limits(
        requests_per_window=5,
        window_seconds=300,
        time_scale=600,
        fault_rate=0.05,
        reset_rate=0.05,
        fault_seed=3,
    )
    shuffled = deliveries(events, per_message=10, again=0.3, seed=5)
    assert out_of_order_members(shuffled) > MEMBERS // 2
    side = ApsisSide(readback=readback, chaos=ApsisChaos(**APSIS_FAULTS, seed=7))
    chaotic, poisoned = run_register(
        mapping, MEMBERS, shuffled, limits=limits, workers=4, apsis=side
    )
    assert poisoned == 0
    return clean, chaotic, compare(clean, chaotic, EVENTS)


def test_apsis_holds_each_trigger_of_a_clean_run_exactly_once() -> None:
    clean, chaotic, register = chaos_run(readback=True)
    assert (register.lost, register.duplicate_rows, register.differences) == (0, 0, [])
    faults = chaotic.apsis_chaos
    assert faults["throttled"] > 0
    assert faults["unavailable"] > 0
    assert faults["stored_then_unavailable"] > 0
    assert chaotic.sweeps.confirmed > 0  # stored, answer lost: read back, not sent again
    assert chaotic.sweeps.withdrawn > 0  # welcomes that a late earlier payment took over
    result = compare_triggers(clean.triggers, chaotic.triggers)
    assert (result.lost, result.duplicate, result.wrong_event) == (0, 0, 0), result.examples
    assert chaotic.outbox["pending"]["count"] == 0
    assert chaotic.outbox["unconfirmed"]["count"] == 0


def test_without_the_read_back_nothing_is_sent_twice_and_the_rest_waits_for_an_admin() -> None:
    clean, chaotic, _ = chaos_run(readback=False)
    result = compare_triggers(clean.triggers, chaotic.triggers)
    assert (result.duplicate, result.wrong_event) == (0, 0), result.examples
    assert chaotic.outbox["unconfirmed"]["count"] > 0
    waiting = {row.event_id for row in chaotic.unconfirmed}
    # What APSIS lacks is exactly on the admin's list (triggers unconfirmed), nowhere else.
    assert {event for _, event in result.lost_triggers} <= waiting
