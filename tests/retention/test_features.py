"""The feature builder: what was known about a member on a cut-off, and nothing after it."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import numpy as np
import pytest

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.retention.features import (
    GROUPS,
    FeatureBuilder,
    HistoryArrays,
    active_at,
    left_within,
    missed_within,
    training_cutoffs,
)
from dynamics_bridge.retention.records import MemberHistory

CUTOFF = date(2026, 6, 1)


def day(offset: int) -> date:
    return CUTOFF + timedelta(days=offset)


def member(member_id: str = "a", **values: object) -> MemberHistory:
    base: dict[str, object] = {
        "member_id": member_id,
        "joined_on": date(2024, 1, 15),
        "method": "autogiro",
        "member_type": "regular",
        "region": "Skåne",
        "age_band": "30-39",
        "monthly_fee": 300.0,
        "payments": (
            (day(-400), "paid"),
            (day(-100), "paid"),
            (day(-50), "failed"),
            (day(-20), "overdue"),
        ),
        "activity": ((day(-30), "event"), (day(-200), "portal"), (day(-500), "portal")),
    }
    base.update(values)
    return MemberHistory(**base)  # type: ignore[arg-type]


def features(*members: MemberHistory, groups: tuple[str, ...] = GROUPS) -> dict[str, list[float]]:
    """Column name -> each member's value on CUTOFF (levels fitted on these members)."""
    data = HistoryArrays.from_records(members)
    builder = FeatureBuilder(groups=groups, min_level_count=1).fit(data)
    matrix = builder.build(data, CUTOFF)
    return {name: matrix[:, i].tolist() for i, name in enumerate(builder.names)}


def test_payment_features_count_the_rows_in_their_window_before_the_cutoff() -> None:
    found = features(member())
    assert found["payments.missed_60d"] == [2.0]  # failed at -50, overdue at -20
    assert found["payments.missed_365d"] == [2.0]
    assert found["payments.paid_365d"] == [1.0]  # the one at -400 is outside the year
    assert found["payments.missed_share_365d"] == pytest.approx([2 / 3])
    assert found["payments.open_missed"] == [2.0]  # both missed after the last paid row
    assert found["payments.years_since_missed"] == pytest.approx([20 / 365.25])
    assert found["payments.no_payments_365d"] == [0.0]


def test_a_payment_after_the_missed_ones_closes_the_arrears_streak() -> None:
    paid_again = member(payments=(*member().payments, (day(-5), "paid")))
    assert features(paid_again)["payments.open_missed"] == [0.0]


def test_nothing_on_or_after_the_cutoff_changes_the_features() -> None:
    """No leakage: rows dated on or after the cut-off, a later leaving date and reason, and
    the snapshot columns read today leave the features as they were."""
    before = member()
    after = dataclasses.replace(
        before,
        ended_on=day(30),
        reason="too_expensive",
        reason_text="Avgiften är för hög",
        payments=(*before.payments, (day(0), "failed"), (day(10), "failed"), (day(40), "refunded")),
        activity=(*before.activity, (day(0), "event"), (day(5), "advice")),
        engagement={"events": 0.0},
        arrears=900.0,
    )
    assert features(before, after)["payments.missed_60d"] == [2.0, 2.0]
    data = HistoryArrays.from_records([before, after])
    builder = FeatureBuilder(min_level_count=1).fit(data)
    matrix = builder.build(data, CUTOFF)
    assert np.array_equal(matrix[0], matrix[1])


def test_the_label_is_leaving_within_the_horizon_after_a_cutoff_the_member_was_active_on() -> None:
    members = [
        member("soon", ended_on=day(10)),
        member("on_the_day", ended_on=day(0)),
        member("later", ended_on=day(100)),
        member("stays"),
        member("gone_before", ended_on=day(-1)),
        member("joined_after", joined_on=day(3)),
        member("joined_that_day", joined_on=day(0)),
    ]
    data = HistoryArrays.from_records(members)
    rows = active_at(data, CUTOFF)
    active = [data.ids[r] for r in rows]
    assert active == ["soon", "on_the_day", "later", "stays"]
    assert left_within(data, rows, CUTOFF, 90).tolist() == [True, True, False, False]


def test_training_cutoffs_are_monthly_and_their_label_windows_end_by_the_split() -> None:
    split = date(2026, 8, 30)
    cutoffs = training_cutoffs(split, months=12, horizon_days=90)
    assert len(cutoffs) == 12
    assert cutoffs == sorted(cutoffs)
    assert all(c + timedelta(days=90) <= split for c in cutoffs)
    assert cutoffs[-1] == date(2026, 5, 30)  # three months back: 92 days, the first that fits
    assert cutoffs[0] == date(2025, 6, 30)


def test_an_excluded_group_leaves_no_column() -> None:
    every = features(member())
    assert {name.split(".")[0] for name in every} == set(GROUPS)
    for group in GROUPS:
        kept = tuple(g for g in GROUPS if g != group)
        names = features(member(), groups=kept)
        assert not [n for n in names if n.startswith(f"{group}.")]
        assert set(names) == {n for n in every if not n.startswith(f"{group}.")}


@pytest.mark.parametrize(
    ("groups", "message"),
    [(("payments", "income"), "unknown retention feature group"), ((), "no retention feature")],
)
def test_an_unknown_or_empty_group_list_is_a_config_error(
    groups: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        FeatureBuilder(groups=groups)


def test_no_personnummer_or_leaving_reason_can_become_a_feature() -> None:
    fields = {f.name for f in dataclasses.fields(MemberHistory)}
    assert not {"personnummer", "governmentid", "ssn"} & fields
    names = features(member(ended_on=day(400), reason="dissatisfied", reason_text="Dålig service"))
    assert not [n for n in names if "reason" in n or "text" in n]


def test_one_hot_columns_name_the_word_and_gather_rare_and_missing_values() -> None:
    members = [member(str(i), method="autogiro") for i in range(3)] + [
        member("rare", method="postgiro"),
        member("none", method=None),
    ]
    data = HistoryArrays.from_records(members)
    builder = FeatureBuilder(min_level_count=2).fit(data)
    methods = [n for n in builder.names if n.startswith("membership.method=")]
    assert methods == [
        "membership.method=autogiro",
        "membership.method=(other)",
        "membership.method=(unknown)",
    ]
    unseen = HistoryArrays.from_records([member("new", method="bitcoin")])
    row = dict(zip(builder.names, builder.build(unseen, CUTOFF)[0].tolist(), strict=True))
    assert row["membership.method=(other)"] == 1.0
    assert row["membership.method=autogiro"] == 0.0


def test_features_on_each_members_own_day() -> None:
    """Themes describe leavers as of their leaving day: one cut-off per row."""
    data = HistoryArrays.from_records([member("a"), member("b")])
    per_row = np.array([CUTOFF.toordinal(), day(-30).toordinal()])
    assert missed_within(data, np.arange(2), per_row, 60).tolist() == [2, 1]


def test_a_bad_payment_row_is_an_input_error_naming_the_member() -> None:
    good = member("good")
    bad = member("bad", payments=((day(-3), "paid"), (day(-2), "bounced")))
    with pytest.raises(InputError, match=r"member bad: .*'bounced'"):
        HistoryArrays.from_records([good, bad])
    with pytest.raises(InputError, match=r"member worse: .*must be \(date, kind\)"):
        HistoryArrays.from_records([member("worse", payments=(("2026-01-01", "paid"),))])


def test_leaving_before_joining_is_an_input_error() -> None:
    with pytest.raises(InputError, match="member odd: left before joining"):
        HistoryArrays.from_records([member("odd", ended_on=date(2023, 1, 1))])
