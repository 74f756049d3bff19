"""One member's score, segments and APSIS attributes from its Dataverse row.

Pure: the segments job runs it over the members that changed, the benchmark over 100,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from dynamics_bridge.activation.audience import desired_attributes
from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.facts import member_facts
from dynamics_bridge.activation.rules import choice_words, compile_rule, member_view
from dynamics_bridge.activation.score import PaymentCounts, engagement_score
from dynamics_bridge.mapping.models import MappingFile

__all__ = ["Evaluation", "SegmentEvaluator"]

Evaluation = tuple[int, list[str], dict[str, Any]]


class SegmentEvaluator:
    """Rules compiled once; :meth:`evaluate` per member."""

    def __init__(self, config: ActivationConfig, mapping: MappingFile) -> None:
        self.config = config
        self.mapping = mapping
        self.words = choice_words(mapping.member.columns, mapping.choices)
        self.rules = {
            name: (compile_rule(s.rule), s.tag or name)
            for name, s in config.segments.segments.items()
        }

    def view(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A member row as the rules see it (choice words, dates)."""
        return member_view(row, self.mapping.member.columns, self.mapping.choices, self.words)

    def evaluate(
        self, view: Mapping[str, Any], payments: PaymentCounts | None, today: date
    ) -> Evaluation:
        """Score, segment names and desired attributes of one member."""
        score = engagement_score(view, payments, self.config.segments.engagement, today)
        computed = {
            **member_facts(view, self.config.segments.facts, today),
            "engagement_score": score,
        }
        scored = {**view, **computed}
        names = [name for name, (rule, _) in self.rules.items() if rule(scored, today)]
        attributes = desired_attributes(scored, self.config.apsis, computed)
        return score, names, attributes

    def tags(self, names: list[str]) -> list[str]:
        return [self.rules[n][1] for n in names]
