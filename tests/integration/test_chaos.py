"""Chaos changes nothing: 429s, 5xx, dropped connections, redeliveries and any order of arrival
leave the register exactly as a clean, in-order run of the same events does, also when a
member's several events (payments, failures, mandate changes) arrive out of order."""

from __future__ import annotations

import pytest
from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.register import member_numbers, payment_events

from dynamics_bridge.mapping import load_mapping
from tests.support.chaos import (
    compare,
    deliveries,
    out_of_order_members,
    run_register,
)

pytestmark = pytest.mark.integration

MEMBERS = EVENTS = 240  # a monthly run: one payment a member, one in ten failed
SEVERAL = 60  # members with four events each: payments, failures and mandate changes


@pytest.mark.parametrize(
    ("members", "mandates"), [(MEMBERS, 0.0), (SEVERAL, 0.15)], ids=["monthly", "several"]
)
def test_chaos_leaves_the_register_a_clean_run_leaves(members: int, mandates: float) -> None:
    mapping = load_mapping()
    events = payment_events(member_numbers(members), EVENTS, mandates=mandates)
    in_order = [events[i : i + 20] for i in range(0, EVENTS, 20)]
    clean, clean_poisoned = run_register(mapping, members, in_order, workers=1)
    assert clean_poisoned == 0
    assert len(clean.payments) == EVENTS

    limits = Limits(
        requests_per_window=5,
        window_seconds=300,
        time_scale=600,  # 5 requests in any 0.5 s: more than that is a 429
        fault_rate=0.08,
        reset_rate=0.08,
        fault_seed=3,
    )
    shuffled = deliveries(events, per_message=10, again=0.3, seed=5)
    if members < EVENTS:
        assert out_of_order_members(shuffled) > members // 2
    chaotic, poisoned = run_register(mapping, members, shuffled, limits=limits, workers=4)

    result = compare(clean, chaotic, EVENTS)
    assert limits.throttled.total() > 0
    assert limits.chaos_seen["fault"] > 0
    assert limits.chaos_seen["reset_after"] > 0
    assert poisoned == 0
    assert (result.lost, result.duplicate_rows) == (0, 0)
    assert result.differences == []
