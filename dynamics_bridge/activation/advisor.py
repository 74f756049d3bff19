"""Advisor tasks as plain values: what a task in Dynamics says, and the key that makes it once.

Pure (no I/O, no analytics library): the retention run (:mod:`dynamics_bridge.app.retention`)
and the Bankgirot ingest (:mod:`dynamics_bridge.app.ingest`) build :class:`AdvisorTask` values
here; :class:`dynamics_bridge.dataverse.tasks.TaskWriter` writes them.

A task's key (``kind:period:member``, written to the task's key column) is what makes it once:
:func:`task_key` cuts time into periods of ``period_days`` (``date.toordinal() // period_days``,
labelled by the period's first day), so a member gets at most one task of a kind per period
however often the run repeats; a failed mandate request's key names the file and the payer
(:func:`mandate_key`), so a file ingested again makes no second task.

What a description may hold: tenure, payment method, missed payments, churn risk, lifetime value,
the winback theme's name and the top reasons. Never a personnummer: nothing here reads one, and
every text is masked (:func:`dynamics_bridge.personnummer.mask_text`) before it leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import PurePath
from typing import Literal, Protocol

from dynamics_bridge.errors import InputError
from dynamics_bridge.personnummer import mask_text

__all__ = [
    "DESCRIPTION_LENGTH",
    "KEY_LENGTH",
    "SUBJECT_LENGTH",
    "AdvisorTask",
    "HistoryLike",
    "mandate_key",
    "mandate_task",
    "period_label",
    "summary",
    "task_key",
]

#: The key column's length (``{prefix}_retentionkey``, string 200 in dataverse.yaml).
KEY_LENGTH = 200
#: The task's ``subject`` holds 200 characters in Dataverse (task.md, Subject MaxLength).
SUBJECT_LENGTH = 200
#: The task's ``description`` holds 2,000 (task.md, Description MaxLength).
DESCRIPTION_LENGTH = 2000
#: Payment kinds that count as missed (``dynamics_bridge.retention.records.PAYMENT_KINDS``).
_MISSED = frozenset({"failed", "overdue"})

Priority = Literal[0, 1, 2]  # the task's prioritycode: low, normal, high


@dataclass(frozen=True, slots=True)
class AdvisorTask:
    """One task for an advisor, regarding one member.

    ``member_id`` names the member as the caller knows it; ``contact_id`` is the contact row's
    id (GUID) when the caller has it. Without ``contact_id`` the writer binds the task to the
    member by ``member_id``: as the row id when it is a GUID, else by the member number (the
    mapping's ``member.key_column``, an alternate key)."""

    kind: str
    member_id: str
    key: str
    subject: str
    description: str
    due: date
    contact_id: str | None = None
    priority: Priority = 1

    def __post_init__(self) -> None:
        if not self.key or len(self.key) > KEY_LENGTH:
            raise InputError(f"a task key holds 1 to {KEY_LENGTH} characters: {self.key!r}")


def period_label(day: date, period_days: int) -> str:
    """The period ``day`` falls in, named by its first day: periods are ``period_days`` long,
    counted from the proleptic calendar's day 1 (``day.toordinal() // period_days``), so the
    label is the same on every day of one period and changes the day the next one starts."""
    if period_days < 1:
        raise InputError("period_days must be at least 1")
    index = day.toordinal() // period_days
    return date.fromordinal(max(index * period_days, 1)).isoformat()


def task_key(kind: str, member_id: str, today: date, period_days: int) -> str:
    """``kind:period:member``: one task of a kind per member per period. With ``member_id``
    empty it is the prefix every key of that kind and period starts with (for
    ``TaskWriter.existing_keys``)."""
    if ":" in kind:
        raise InputError(f"a task kind has no colon: {kind!r}")
    return f"{kind}:{period_label(today, period_days)}:{member_id}"


def mandate_key(file: str, payer: str) -> str:
    """``mandate:<file>:<payer number>`` for a failed mandate request: the file's own name (not
    its folder, so a file moved and ingested again keeps its key), hashed when the key would
    not fit the column."""
    name = PurePath(file.rsplit(":", 1)[0] if _has_line(file) else file).name or file
    key = f"mandate:{name}:{payer}"
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"mandate:{digest}:{payer}"[:KEY_LENGTH]


def _has_line(origin: str) -> bool:
    """``FILE:LINE`` (a notice's origin) rather than a bare file name."""
    head, colon, tail = origin.rpartition(":")
    return bool(colon and head and tail.isdigit())


class HistoryLike(Protocol):
    """What :func:`summary` reads of a member's history
    (:class:`dynamics_bridge.retention.records.MemberHistory` has it)."""

    @property
    def joined_on(self) -> date: ...

    @property
    def ended_on(self) -> date | None: ...

    @property
    def method(self) -> str | None: ...

    @property
    def payments(self) -> tuple[tuple[date, str], ...]: ...


def summary(
    member: HistoryLike,
    today: date,
    *,
    probability: float | None = None,
    value: float | None = None,
    theme: str | None = None,
    reasons: Sequence[str] = (),
) -> str:
    """The task's description: the member's history in a few plain-text lines, for the advisor
    who makes the call (tenure, method, missed payments in the last 12 months, churn risk,
    lifetime value, theme, top reasons). Masked, and cut to what the column holds."""
    until = member.ended_on or today
    months = max(
        (until.year - member.joined_on.year) * 12 + until.month - member.joined_on.month, 0
    )
    if until.day < member.joined_on.day and months:
        months -= 1
    since = today - timedelta(days=365)
    missed = sum(1 for day, kind in member.payments if kind in _MISSED and since < day <= today)
    lines = [
        f"Member for: {_tenure(months)}"
        + (f" (left {member.ended_on})" if member.ended_on else ""),
        f"Payment method: {member.method or 'unknown'}",
        f"Missed payments, last 12 months: {missed}",
    ]
    if probability is not None:
        lines.append(f"Risk of leaving within the horizon: {round(probability * 100)} %")
    if value is not None:
        lines.append(f"Expected lifetime value: {_kronor(value)}")
    if theme:
        lines.append(f"Winback theme: {theme}")
    if reasons:
        lines.append("Top reasons: " + "; ".join(reasons))
    return _fit(mask_text("\n".join(lines)), DESCRIPTION_LENGTH)


def mandate_task(
    *,
    origin: str,
    payer: str,
    codes: str,
    reason: str,
    contact_id: str,
    today: date,
    due_days: int,
    payer_key: str | None = None,
) -> AdvisorTask:
    """The task for one failed Autogiro mandate request (a :class:`Notice
    <dynamics_bridge.sources.autogiro.Notice>`: ``origin`` FILE:LINE, the payer number as the
    notice masks it, ``codes`` information/comment, Bankgirot's ``reason``; ``payer_key``: the
    payer in the key where the shown number is masked)."""
    description = (
        f"Bankgirot did not accept the Autogiro mandate request for payer number {payer} "
        f"({codes}: {reason}). The mandate is unchanged: correct the request and send it "
        f"again.\nReport: {origin}"
    )
    return AdvisorTask(
        kind="mandate",
        member_id=payer,
        key=mandate_key(origin, payer_key or payer),
        subject=_fit(
            mask_text(f"Autogiro mandate request failed ({codes}): correct and resend"),
            SUBJECT_LENGTH,
        ),
        description=_fit(mask_text(description), DESCRIPTION_LENGTH),
        due=today + timedelta(days=due_days),
        contact_id=contact_id,
    )


def _tenure(months: int) -> str:
    years, rest = divmod(months, 12)
    parts = [_count(years, "year")] if years else []
    if rest or not years:
        parts.append(_count(rest, "month"))
    return " ".join(parts)


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def _kronor(value: float) -> str:
    return f"{round(value):,} kr".replace(",", " ")


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
