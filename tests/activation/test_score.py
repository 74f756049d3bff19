"""The engagement score: a weighted mean of the parts that have data."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from dynamics_bridge.activation.config import Engagement
from dynamics_bridge.activation.score import (
    PaymentCounts,
    engagement_score,
    explain,
    score_parts,
)

TODAY = date(2026, 11, 28)
CONFIG = Engagement.model_validate(
    {
        "column": "score",
        "on_time_payments": {"weight": 50},
        "tenure": {"weight": 30, "column": "joined", "full_after_days": 1000},
        "benefit_use": {"weight": 20, "column": "benefits", "full_at": 4},
    }
)


def test_full_marks_on_every_part_is_100() -> None:
    member = {"joined": TODAY - timedelta(days=2000), "benefits": 9.0}
    assert engagement_score(member, PaymentCounts(12, 0), CONFIG, TODAY) == 100


def test_each_part_counts_by_its_weight() -> None:
    member = {"joined": TODAY - timedelta(days=500), "benefits": 1.0}
    # 50 * 0.75 + 30 * 0.5 + 20 * 0.25 = 57.5
    assert engagement_score(member, PaymentCounts(3, 1), CONFIG, TODAY) == 58


def test_a_part_without_data_drops_out_and_the_others_are_renormalised() -> None:
    member = {"joined": TODAY - timedelta(days=1000)}  # no benefit column value, no payments
    assert set(score_parts(member, None, CONFIG, TODAY)) == {"tenure"}
    assert engagement_score(member, None, CONFIG, TODAY) == 100
    assert engagement_score(member, PaymentCounts(0, 4), CONFIG, TODAY) == 38  # 30 / 80


def test_nothing_known_is_zero() -> None:
    assert engagement_score({}, PaymentCounts(), CONFIG, TODAY) == 0


def test_the_explanation_gives_each_parts_share_and_marks_a_part_without_data() -> None:
    member = {"joined": TODAY - timedelta(days=500)}
    parts = score_parts(member, PaymentCounts(3, 1), CONFIG, TODAY)
    assert explain(parts, CONFIG) == "on_time_payments=75 tenure=50 benefit_use=-"


def test_counts_from_related_tables_and_extra_sources_score_like_columns() -> None:
    config = Engagement.model_validate(
        {
            "column": "score",
            "events": {"weight": 10, "column": "events.count", "full_at": 2},
            "sources": {"advice": {"weight": 10, "column": "advice.count", "full_at": 1}},
        }
    )
    # A related count is 0 when the member has no rows: data (no events), not a missing part.
    member = {"events.count": 1, "advice.count": 0}
    assert score_parts(member, None, config, TODAY) == {"events": (10, 0.5), "advice": (10, 0.0)}
    assert engagement_score(member, None, config, TODAY) == 25
    assert explain(score_parts(member, None, config, TODAY), config) == "events=50 advice=0"


def test_a_source_may_not_take_the_name_of_a_part_of_its_own() -> None:
    with pytest.raises(ValidationError, match="parts of their own"):
        Engagement.model_validate(
            {
                "column": "score",
                "sources": {"events": {"weight": 1, "column": "events.count", "full_at": 1}},
            }
        )
