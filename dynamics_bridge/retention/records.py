"""A member's history as the retention analytics consume it.

Pure, plain values: a Dataverse reader fills them (member columns, payment rows, activity rows
with their dates, the leaving date and reason through the mapping). Personnummer is not a field:
nothing here can turn it into a feature. The free-text reason is kept for the winback themes
only, which never push it anywhere.

Everything dated (payments, activity, joining and leaving) can be cut at any past date, which is
what lets the churn model train on the past without seeing its future. The undated columns
(method, member type, region, age band, fee) are as read: taken to hold for the whole history.
``engagement`` and ``arrears`` are snapshots of the day of reading and are deliberately no churn
feature (a past cut-off would see today's values, after the member left); arrears are
reconstructed from the payment rows and engagement is counted from ``activity`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from dynamics_bridge.errors import InputError

__all__ = ["PAYMENT_KINDS", "MemberHistory", "TooLittleHistory"]

PAYMENT_KINDS = ("paid", "failed", "overdue", "refunded")
"""A payment row's outcome: ``failed`` (a direct debit or card refused) and ``overdue`` (an
invoice not paid by its due date) are both a *missed* payment."""


@dataclass(frozen=True, slots=True)
class MemberHistory:
    """One member: who, since when, until when and why, how they paid, what they took part in.

    ``payments`` are ``(date, kind)`` with kind one of :data:`PAYMENT_KINDS`; ``activity`` are
    ``(date, kind)`` with kind a word such as ``event``, ``portal``, ``advice``, ``benefit``
    (one row per related row: an event attended, a portal sign-in). ``reason`` is the leaving
    reason's choice as a word (``too_expensive``), ``reason_text`` the free text.
    """

    member_id: str
    joined_on: date
    ended_on: date | None = None
    reason: str | None = None
    reason_text: str | None = None
    method: str | None = None
    member_type: str | None = None
    region: str | None = None
    age_band: str | None = None
    monthly_fee: float = 0.0
    payments: tuple[tuple[date, str], ...] = ()
    activity: tuple[tuple[date, str], ...] = ()
    engagement: Mapping[str, float] = field(default_factory=dict)
    arrears: float = 0.0


class TooLittleHistory(InputError):
    """The register cannot support the analysis asked for (too few leavers, no leaving reasons);
    the message says what is missing. Nothing was trained."""
