"""The engagement score (0-100): a weighted mean of what is known about a member.

Pure. Components are configured in ``segments.yaml`` (``engagement``): on-time payment ratio
(from the member's payment rows), tenure, and counts such as benefit use, events attended,
portal visits and survey answers where the union maps them, from member columns or counted in
related tables. A component without data (no payments in the window, no column value) drops out
and the others' weights are renormalised, so a new member is not punished for what cannot be
known yet; :func:`explain` says which parts counted and how much, per member, and the segments
job counts the members each part had no data for (a source that never has any is warned of).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from dynamics_bridge.activation.config import Engagement
from dynamics_bridge.activation.rules import as_date

__all__ = ["PaymentCounts", "engagement_score", "explain", "score_from_parts", "score_parts"]


@dataclass(frozen=True, slots=True)
class PaymentCounts:
    """A member's payments in the window: paid, and failed or overdue."""

    on_time: int = 0
    late: int = 0


def score_parts(
    member: Mapping[str, Any], payments: PaymentCounts | None, config: Engagement, today: date
) -> dict[str, tuple[float, float]]:
    """Component name -> (weight, fraction 0..1) for the components that have data."""
    parts: dict[str, tuple[float, float]] = {}
    on_time = config.on_time_payments
    if on_time and payments and payments.on_time + payments.late > 0:
        parts["on_time_payments"] = (
            on_time.weight,
            payments.on_time / (payments.on_time + payments.late),
        )
    tenure = config.tenure
    if tenure and (since := as_date(member.get(tenure.column))) is not None:
        days = max((today - since).days, 0)
        parts["tenure"] = (tenure.weight, min(days / tenure.full_after_days, 1.0))
    for name, part in config.counts().items():
        value = member.get(part.column)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts[name] = (part.weight, min(max(float(value), 0.0) / part.full_at, 1.0))
    return parts


def engagement_score(
    member: Mapping[str, Any], payments: PaymentCounts | None, config: Engagement, today: date
) -> int:
    """0-100; 0 when nothing is known."""
    return score_from_parts(score_parts(member, payments, config, today))


def explain(parts: Mapping[str, tuple[float, float]], config: Engagement) -> str:
    """Each configured part's share in percent, ``-`` where the member had no data for it:
    ``on_time_payments=100 tenure=40 events=-`` (stored on the member and pushed as an
    attribute, so a CRM user or a flow can see why a score is what it is)."""
    return " ".join(
        f"{name}={round(100 * parts[name][1]) if name in parts else '-'}"
        for name in config.part_names()
    )


def score_from_parts(parts: Mapping[str, tuple[float, float]]) -> int:
    """The weighted mean of :func:`score_parts`, 0-100 (0 when nothing is known)."""
    total = sum(weight for weight, _ in parts.values())
    if total <= 0:
        return 0
    return round(100 * sum(weight * fraction for weight, fraction in parts.values()) / total)
