"""The synthetic register: seeded, complete, and with the structure it claims to plant."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from dynamics_bridge.retention.records import PAYMENT_KINDS, MemberHistory
from dynamics_bridge.retention.synthetic import PLANTED_GROUPS, REASONS, SyntheticRegister, generate

from .conftest import TODAY


def test_the_same_seed_gives_the_same_register() -> None:
    first, second = generate(500, today=TODAY, seed=4), generate(500, today=TODAY, seed=4)
    assert first.members == second.members
    assert first.groups == second.groups
    assert generate(500, today=TODAY, seed=5).members != first.members


def test_every_leaver_has_a_planted_group_and_rows_end_with_membership(
    register: SyntheticRegister,
) -> None:
    leavers = [m for m in register.members if m.ended_on is not None]
    assert set(register.groups) == {m.member_id for m in leavers}
    assert set(register.groups.values()) == set(PLANTED_GROUPS)
    assert register.observed_from == TODAY - timedelta(days=3 * 365 + 1)  # 2023-11-28
    for member in register.members:
        end = member.ended_on or TODAY
        assert all(member.joined_on < d < end for d, _ in member.payments)
        assert all(member.joined_on < d < end for d, _ in member.activity)
        assert all(kind in PAYMENT_KINDS for _, kind in member.payments)
        if member.ended_on is not None:
            assert register.observed_from <= member.ended_on < TODAY


def test_reasons_are_mostly_the_groups_choice_with_noise(register: SyntheticRegister) -> None:
    leavers = [m for m in register.members if m.ended_on is not None]
    own = sum(1 for m in leavers if m.reason == REASONS[register.groups[m.member_id]])
    assert 0.7 < own / len(leavers) < 0.9
    texts = Counter(bool(m.reason_text) for m in leavers)
    assert 0.1 < texts[False] / len(leavers) < 0.3  # some leavers write nothing


def test_the_planted_drivers_show_in_who_leaves(register: SyntheticRegister) -> None:
    def leaving_rate(members: list[MemberHistory]) -> float:
        return sum(1 for m in members if m.ended_on) / len(members)

    invoice = [m for m in register.members if m.method == "invoice"]
    autogiro = [m for m in register.members if m.method == "autogiro"]
    assert leaving_rate(invoice) > 1.3 * leaving_rate(autogiro)
    retiring = [m for m in register.members if m.age_band == "60-67"]
    retired = [m for m in retiring if m.ended_on and register.groups[m.member_id] == "retired"]
    assert len(retired) > 0.2 * len(retiring)
    assert all(
        m.age_band == "60-67"
        for m in register.members
        if register.groups.get(m.member_id) == "retired"
    )
