"""Retention curves (Kaplan-Meier) and lifetime value, against examples worked by hand."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.retention.records import MemberHistory
from dynamics_bridge.retention.survival import (
    MONTH_DAYS,
    cohort_curves,
    durations,
    kaplan_meier,
    lifetime_values,
    survival_curve,
)
from dynamics_bridge.retention.synthetic import SyntheticRegister

# Six members: left after 1, 2, 3 and 5 months; still members after 2 and 4 (censored).
DURATIONS = [1, 2, 2, 3, 4, 5]
EVENTS = [1, 1, 0, 1, 0, 1]


def test_kaplan_meier_on_a_hand_computed_example() -> None:
    curve = kaplan_meier(DURATIONS, EVENTS)
    assert curve.times.tolist() == [1, 2, 3, 5]
    assert curve.at_risk.tolist() == [6, 5, 3, 1]  # the censored at 2 is still at risk at 2
    assert curve.events.tolist() == [1, 1, 1, 1]
    # 5/6; 5/6 * 4/5 = 2/3; 2/3 * 2/3 = 4/9; then 0
    assert curve.survival == pytest.approx([5 / 6, 2 / 3, 4 / 9, 0.0])
    assert curve.at([0, 0.5, 1, 2.5, 4, 9]) == pytest.approx([1, 1, 5 / 6, 2 / 3, 4 / 9, 0])
    assert curve.median() == 3.0
    assert curve.members == 6


def test_a_member_who_joined_before_the_register_is_complete_enters_the_risk_set_late() -> None:
    """Left truncation: a seventh member, observed from 2.5 months of tenure, left at 4."""
    curve = kaplan_meier([*DURATIONS, 4], [*EVENTS, 1], entered=[0] * 6 + [2.5])
    assert curve.times.tolist() == [1, 2, 3, 4, 5]
    assert curve.at_risk.tolist() == [6, 5, 4, 3, 1]  # not at risk at 1 or 2
    # 5/6; 2/3; 2/3 * 3/4 = 1/2; 1/2 * 2/3 = 1/3; 0
    assert curve.survival == pytest.approx([5 / 6, 2 / 3, 1 / 2, 1 / 3, 0.0])
    assert curve.median() == 3.0


def test_a_curve_that_never_halves_has_no_median() -> None:
    assert kaplan_meier([1, 2, 3, 4], [1, 0, 0, 0]).median() is None


def test_restricted_mean_and_expected_remaining_months_by_hand() -> None:
    curve = kaplan_meier(DURATIONS, EVENTS)
    # Area under S over 0-6: 1 + 5/6 + 2/3 + 2 * 4/9 (3 to 5) = 3.3889
    assert curve.restricted_mean(6) == pytest.approx(1 + 5 / 6 + 2 / 3 + 8 / 9)
    assert curve.restricted_mean(0.5) == pytest.approx(0.5)
    # Having survived 2 months: (2/3 * 1 + 4/9 * 2) / (2/3) = 7/3
    remaining = curve.remaining_months([0, 2, 3, 5, 8], horizon=120)
    assert remaining == pytest.approx([1 + 5 / 6 + 2 / 3 + 8 / 9, 7 / 3, 2.0, 0.0, 0.0])
    # Within a horizon of one month from 2 months: 1 month at S=2/3, over S(2)=2/3
    assert curve.remaining_months([2], horizon=1) == pytest.approx([1.0])


def member(member_id: str, joined_months_ago: float, fee: float, **values: object) -> MemberHistory:
    joined = TODAY - timedelta(days=round(joined_months_ago * MONTH_DAYS))
    return MemberHistory(member_id, joined_on=joined, monthly_fee=fee, **values)  # type: ignore[arg-type]


TODAY = date(2026, 11, 28)


def test_lifetime_value_is_expected_remaining_months_times_the_fee() -> None:
    curve = kaplan_meier(DURATIONS, EVENTS)
    members = [
        member("new", 0.1, 200.0),
        member("two", 2.0, 300.0),
        member("veteran", 7.0, 400.0),
        member("left", 3.0, 500.0, ended_on=TODAY - timedelta(days=10)),
    ]
    values = {v.member_id: v for v in lifetime_values(members, TODAY, curve)}
    assert set(values) == {"new", "two", "veteran"}  # only active members have a value
    tenure = (TODAY - members[1].joined_on).days / MONTH_DAYS  # just over 2 months
    expected = (2 / 3 * (3 - tenure) + 4 / 9 * 2) / (2 / 3)  # about 7/3
    assert values["two"].remaining_months == pytest.approx(expected)
    assert values["two"].value == pytest.approx(300 * expected)
    assert values["veteran"].value == 0.0  # past the curve's last step, where S is 0
    assert values["new"].remaining_months > values["two"].remaining_months


def test_lifetime_values_from_cohort_curves_fall_back_to_the_whole_register() -> None:
    short = kaplan_meier([1, 2], [1, 1])  # everyone gone by 2 months
    long = kaplan_meier([100, 200], [0, 0])  # no one ever leaves
    members = [
        member("a", 1.5, 100.0, method="invoice"),
        member("b", 1.5, 100.0, method="autogiro"),
        member("c", 1.5, 100.0, method="swish"),
    ]
    values = lifetime_values(
        members, TODAY, {"invoice": short, "autogiro": long, "*": long}, by="method", horizon=12
    )
    tenure = (TODAY - members[0].joined_on).days / MONTH_DAYS  # about 1.5 months
    assert [v.remaining_months for v in values] == pytest.approx([2 - tenure, 12.0, 12.0])
    with pytest.raises(ConfigError, match="need the cohort"):
        lifetime_values(members, TODAY, {"*": long})


def test_durations_censor_at_the_day_of_reading_and_enter_late_members_late() -> None:
    members = [
        member("stays", 10.0, 100.0),
        member("left", 10.0, 100.0, ended_on=TODAY - timedelta(days=round(4 * MONTH_DAYS))),
        member("leaves_later", 10.0, 100.0, ended_on=TODAY + timedelta(days=30)),
        member("not_yet", -1.0, 100.0),
    ]
    duration, event, entered, rows = durations(
        members, TODAY, observed_from=TODAY - timedelta(days=round(8 * MONTH_DAYS))
    )
    assert rows.tolist() == [0, 1, 2]
    assert duration == pytest.approx([10, 6, 10], abs=0.05)
    assert event.tolist() == [False, True, False]
    assert entered == pytest.approx([2, 2, 2], abs=0.05)


def test_cohorts_by_method_on_the_synthetic_register(register: SyntheticRegister) -> None:
    curves = cohort_curves(register.members, "method", TODAY, observed_from=register.observed_from)
    assert set(curves) == {"autogiro", "invoice", "card", "swish"}
    assert sum(c.members for c in curves.values()) > 0.99 * len(register.members)
    # Invoice is a planted churn driver: its members leave sooner.
    assert curves["invoice"].restricted_mean(60) < curves["autogiro"].restricted_mean(60) - 3
    assert len(cohort_curves(register.members, "join_year", TODAY)) > 3
    with pytest.raises(ConfigError, match="unknown cohort"):
        cohort_curves(register.members, "shoe_size", TODAY)


def test_left_truncation_matters_when_early_leavers_are_missing(
    register: SyntheticRegister,
) -> None:
    """Ignoring that members who left before the window are not in the register makes the
    curve look better than it is."""
    naive = survival_curve(register.members, TODAY)
    honest = survival_curve(register.members, TODAY, register.observed_from)
    assert honest.restricted_mean(120) < naive.restricted_mean(120) - 5
    assert np.all(np.diff(honest.survival) <= 0)
    assert honest.to_dict()["median_months"] == honest.median()
