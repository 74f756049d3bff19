"""One member's score, segments and APSIS attributes from its Dataverse row.

Pure: the segments job runs it over the members that changed, the benchmark over 100,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, NamedTuple

from dynamics_bridge.activation.audience import desired_attributes
from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.facts import member_facts
from dynamics_bridge.activation.rules import choice_words, compile_rule, member_view
from dynamics_bridge.activation.score import PaymentCounts, explain, score_from_parts, score_parts
from dynamics_bridge.mapping.models import MappingFile

__all__ = ["Evaluation", "SegmentEvaluator"]


class Evaluation(NamedTuple):
    """One member's score, segment names, desired APSIS attributes, and the score's parts
    (name -> (weight, fraction)) with their explanation."""

    score: int
    names: list[str]
    attributes: dict[str, Any]
    parts: dict[str, tuple[float, float]]
    explanation: str


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
        segments = self.config.segments
        parts = score_parts(view, payments, segments.engagement, today)
        score = score_from_parts(parts)
        explanation = explain(parts, segments.engagement)
        computed = {
            **member_facts(view, segments.facts, today, method_column=segments.method_column),
            "engagement_score": score,
            "engagement_parts": explanation,
        }
        scored = {**view, **computed}
        names = [name for name, (rule, _) in self.rules.items() if rule(scored, today)]
        attributes = desired_attributes(scored, self.config.apsis, computed)
        return Evaluation(score, names, attributes, parts, explanation)

    def tags(self, names: list[str]) -> list[str]:
        return [self.rules[n][1] for n in names]
