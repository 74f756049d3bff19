"""The segment rule language, as an admin reads it in mappings/segments.yaml."""

from __future__ import annotations

from datetime import date

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from dynamics_bridge.activation.rules import Rule, matches, member_view, rule_columns
from dynamics_bridge.mapping import load_mapping

TODAY = date(2026, 11, 28)
RULE = TypeAdapter(Rule)


def rule(text: str) -> Rule:
    return RULE.validate_python(yaml.safe_load(text))


def test_eq_and_ne_compare_a_column_with_a_value() -> None:
    assert matches(rule("{column: method, eq: autogiro}"), {"method": "autogiro"}, TODAY)
    assert not matches(rule("{column: method, eq: autogiro}"), {"method": "swish"}, TODAY)
    assert matches(rule("{column: method, ne: autogiro}"), {"method": "swish"}, TODAY)


def test_ordering_operators_compare_numbers_and_dates() -> None:
    assert matches(rule("{column: arrears, gt: 0}"), {"arrears": 250.0}, TODAY)
    assert not matches(rule("{column: arrears, gt: 0}"), {"arrears": 0.0}, TODAY)
    assert matches(rule("{column: score, ge: 70}"), {"score": 70}, TODAY)
    assert matches(rule("{column: score, lt: 40}"), {"score": 39}, TODAY)
    assert matches(rule("{column: score, le: 40}"), {"score": 40}, TODAY)
    since = rule("{column: joined, lt: '2020-01-01'}")
    assert matches(since, {"joined": date(2019, 5, 1)}, TODAY)
    assert not matches(since, {"joined": date(2021, 5, 1)}, TODAY)


def test_in_matches_any_value_of_the_list() -> None:
    r = rule("{column: method, in: [swish, invoice]}")
    assert matches(r, {"method": "invoice"}, TODAY)
    assert not matches(r, {"method": "autogiro"}, TODAY)


def test_a_member_without_a_value_matches_no_comparison_but_is_set_can_ask() -> None:
    empty: dict[str, object] = {"arrears": None}
    for text in (
        "{column: arrears, gt: 0}",
        "{column: arrears, le: 0}",
        "{column: arrears, ne: 5}",
        "{column: arrears, in: [0]}",
        "within_days: {column: arrears, days: 9}",
    ):
        assert not matches(rule(text), empty, TODAY), text
    assert matches(rule("{column: arrears, is_set: false}"), empty, TODAY)
    assert matches(rule("{column: arrears, is_set: true}"), {"arrears": 0.0}, TODAY)


def test_within_days_means_in_the_last_n_days_today_included() -> None:
    r = rule("within_days: {column: joined, days: 90}")
    assert matches(r, {"joined": TODAY}, TODAY)
    assert matches(r, {"joined": date(2026, 8, 30)}, TODAY)  # exactly 90 days ago
    assert not matches(r, {"joined": date(2026, 8, 29)}, TODAY)  # 91 days ago
    assert not matches(r, {"joined": date(2026, 12, 1)}, TODAY)  # not yet


def test_older_than_days_means_strictly_more_than_n_days_ago() -> None:
    r = rule("older_than_days: {column: ended, days: 365}")
    assert matches(r, {"ended": date(2025, 11, 27)}, TODAY)
    assert not matches(r, {"ended": date(2025, 11, 28)}, TODAY)


def test_all_any_and_not_combine_rules() -> None:
    at_risk = rule("""
        all:
          - {column: status, ne: ended}
          - any:
              - within_days: {column: failed, days: 30}
              - {column: arrears, gt: 0}
    """)
    assert matches(at_risk, {"status": "active", "failed": date(2026, 11, 20)}, TODAY)
    assert matches(at_risk, {"status": "active", "arrears": 250.0}, TODAY)
    assert not matches(at_risk, {"status": "active", "arrears": 0.0}, TODAY)
    assert not matches(at_risk, {"status": "ended", "arrears": 250.0}, TODAY)
    assert matches(rule("not: {column: status, eq: ended}"), {"status": "active"}, TODAY)


def test_a_comparison_takes_exactly_one_operator() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        rule("{column: a, eq: 1, gt: 0}")
    with pytest.raises(ValidationError, match="exactly one of"):
        rule("{column: a}")


def test_an_unknown_rule_shape_is_refused_with_what_a_rule_may_be() -> None:
    with pytest.raises(ValidationError, match="a rule is all, any, not"):
        rule("{between: [1, 2]}")
    with pytest.raises(ValidationError):
        rule("{all: []}")  # an empty list says nothing


def test_rule_columns_lists_every_column_read() -> None:
    r = rule("{all: [{column: a, eq: 1}, {not: {within_days: {column: b, days: 1}}}]}")
    assert rule_columns(r) == {"a", "b"}


def test_member_view_gives_choice_words_dates_and_numbers() -> None:
    mapping = load_mapping()
    row = {
        "mbr_paymentmethod": 100000001,
        "mbr_joinedon": "2024-03-01",
        "mbr_arrears": "250.00",
        "mbr_lastpaymentevent": "2026-11-02T08:00:00Z",
        "unmapped": "as is",
    }
    view = member_view(row, mapping.member.columns, mapping.choices)
    assert view["mbr_paymentmethod"] == "autogiro"
    assert view["mbr_joinedon"] == date(2024, 3, 1)
    assert view["mbr_arrears"] == 250.0
    assert view["mbr_lastpaymentevent"].year == 2026
    assert view["unmapped"] == "as is"
