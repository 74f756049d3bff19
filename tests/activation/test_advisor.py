"""Advisor tasks as values: the period key that makes a task once a period, the mandate key that
makes one per file and payer, and a description with the history and no personnummer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from dynamics_bridge.activation.advisor import (
    DESCRIPTION_LENGTH,
    KEY_LENGTH,
    AdvisorTask,
    mandate_key,
    mandate_task,
    period_label,
    summary,
    task_key,
)
from dynamics_bridge.errors import InputError


@dataclass(frozen=True)
class History:
    """The fields summary() reads (MemberHistory has them; the retention extra is not needed)."""

    joined_on: date
    ended_on: date | None = None
    method: str | None = None
    payments: tuple[tuple[date, str], ...] = ()


class TestPeriodKey:
    def test_every_day_of_one_period_has_one_label_and_the_next_period_another(self) -> None:
        start = date.fromordinal((date(2026, 3, 1).toordinal() // 90) * 90)
        labels = {period_label(start + timedelta(days=d), 90) for d in range(90)}
        assert labels == {start.isoformat()}
        assert (
            period_label(start + timedelta(days=90), 90) == (start + timedelta(days=90)).isoformat()
        )
        assert period_label(start - timedelta(days=1), 90) != start.isoformat()

    def test_a_key_is_kind_period_member_and_the_empty_member_gives_its_prefix(self) -> None:
        today = date(2026, 3, 14)
        key = task_key("churn", "100003", today, 90)
        prefix = task_key("churn", "", today, 90)
        assert key == f"churn:{period_label(today, 90)}:100003"
        assert key.startswith(prefix)
        assert prefix.endswith(":")
        assert not task_key("winback", "100003", today, 90).startswith(prefix)

    def test_a_kind_with_a_colon_or_a_period_under_a_day_is_refused(self) -> None:
        with pytest.raises(InputError, match="colon"):
            task_key("a:b", "1", date(2026, 1, 1), 30)
        with pytest.raises(InputError, match="at least 1"):
            period_label(date(2026, 1, 1), 0)


class TestMandateKey:
    def test_the_file_name_and_payer_make_it_wherever_the_file_lies(self) -> None:
        here = mandate_key("/drop/incoming/BFEP.IAGAG.K0123.D260314:5", "100003")
        moved = mandate_key("/archive/2026/BFEP.IAGAG.K0123.D260314:9", "100003")
        assert here == moved == "mandate:BFEP.IAGAG.K0123.D260314:100003"
        assert mandate_key("medavi.txt", "7") == "mandate:medavi.txt:7"
        assert mandate_key("medavi.txt", "7") != mandate_key("medavi2.txt", "7")

    def test_a_name_too_long_for_the_column_is_hashed_to_fit(self) -> None:
        key = mandate_key("x" * 300 + ".txt:4", "100003")
        assert len(key) <= KEY_LENGTH
        assert key.startswith("mandate:")
        assert key.endswith(":100003")
        assert key == mandate_key("x" * 300 + ".txt:12", "100003")


class TestSummary:
    def test_it_holds_tenure_method_missed_payments_risk_value_theme_and_reasons(self) -> None:
        today = date(2026, 3, 14)
        member = History(
            joined_on=date(2021, 1, 20),
            method="autogiro",
            payments=(
                (date(2026, 2, 28), "failed"),
                (date(2025, 9, 28), "overdue"),
                (date(2025, 9, 1), "paid"),
                (date(2025, 3, 1), "failed"),  # more than 12 months ago
            ),
        )
        text = summary(
            member,
            today,
            probability=0.342,
            value=12500.4,
            theme="price",
            reasons=("missed payments", "short tenure"),
        )
        assert text.splitlines() == [
            "Member for: 5 years 1 month",
            "Payment method: autogiro",
            "Missed payments, last 12 months: 2",
            "Risk of leaving within the horizon: 34 %",
            "Expected lifetime value: 12 500 kr",
            "Winback theme: price",
            "Top reasons: missed payments; short tenure",
        ]

    def test_a_leaver_s_tenure_ends_when_they_left_and_unknown_parts_are_left_out(self) -> None:
        text = summary(History(date(2025, 1, 10), ended_on=date(2025, 7, 9)), date(2026, 3, 14))
        assert text.splitlines() == [
            "Member for: 5 months (left 2025-07-09)",
            "Payment method: unknown",
            "Missed payments, last 12 months: 0",
        ]

    def test_a_personnummer_in_a_reason_is_masked_and_the_text_fits_its_column(self) -> None:
        text = summary(
            History(date(2020, 1, 1)),
            date(2026, 3, 14),
            reasons=("member 19811218-9876 called", "x" * 3000),
        )
        assert "9876" not in text
        assert "811218-****" in text
        assert len(text) <= DESCRIPTION_LENGTH


def test_a_failed_mandate_request_task_regards_its_contact_and_says_what_to_do() -> None:
    task = mandate_task(
        origin="/drop/medavi.txt:5",
        payer="100003",
        codes="04/21",
        reason="Felaktigt betalarnummer",
        contact_id="9e7d2c41-5a10-f011-8406-000d3a2b1c77",
        today=date(2026, 3, 14),
        due_days=7,
    )
    assert task == AdvisorTask(
        kind="mandate",
        member_id="100003",
        key="mandate:medavi.txt:100003",
        subject="Autogiro mandate request failed (04/21): correct and resend",
        description=task.description,
        due=date(2026, 3, 21),
        contact_id="9e7d2c41-5a10-f011-8406-000d3a2b1c77",
    )
    assert "payer number 100003" in task.description
    assert "04/21: Felaktigt betalarnummer" in task.description
    assert "/drop/medavi.txt:5" in task.description


def test_a_key_longer_than_its_column_is_refused() -> None:
    with pytest.raises(InputError, match="1 to 200"):
        AdvisorTask("churn", "1", "k" * 201, "s", "d", date(2026, 1, 1))
