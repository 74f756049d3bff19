"""Transforms, specified: what each one writes for an event and a member's current values."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.models import Transform
from dynamics_bridge.mapping.transforms import evaluate, paid_through, period_end
from dynamics_bridge.model import EventKind, Source
from tests.test_model import event

MAPPING = load_mapping()


def run(spec: dict, member: dict | None = None, column: str = "c", **event_changes):
    return evaluate(
        Transform.model_validate(spec), event(**event_changes), member or {}, column, MAPPING
    )


class TestPeriodEnd:
    @pytest.mark.parametrize(
        ("day", "period", "end"),
        [
            (date(2026, 2, 10), "month", date(2026, 2, 28)),
            (date(2028, 2, 10), "month", date(2028, 2, 29)),
            (date(2026, 5, 1), "quarter", date(2026, 6, 30)),
            (date(2026, 7, 1), "half_year", date(2026, 12, 31)),
            (date(2026, 6, 30), "half_year", date(2026, 6, 30)),
            (date(2026, 1, 1), "year", date(2026, 12, 31)),
        ],
    )
    def test_is_the_last_day_of_the_calendar_period(self, day, period, end) -> None:
        assert period_end(day, period) == end


class TestPaidThrough:
    def test_a_first_payment_covers_the_period_it_falls_in(self) -> None:
        assert paid_through(date(2026, 3, 14), None, "year") == date(2026, 12, 31)

    def test_a_payment_after_a_lapse_covers_its_own_period(self) -> None:
        assert paid_through(date(2026, 3, 14), date(2024, 12, 31), "year") == date(2026, 12, 31)

    def test_paying_while_paid_up_covers_the_next_period(self) -> None:
        assert paid_through(date(2026, 11, 20), date(2026, 12, 31), "year") == date(2027, 12, 31)

    def test_monthly_payments_advance_one_month_at_a_time(self) -> None:
        current = None
        for day in (date(2026, 9, 28), date(2026, 10, 28), date(2026, 11, 28)):
            current = paid_through(day, current, "month")
        assert current == date(2026, 11, 30)

    def test_it_never_moves_backwards(self) -> None:
        assert paid_through(date(2026, 1, 5), date(2027, 12, 31), "month") >= date(2027, 12, 31)

    def test_the_period_can_depend_on_the_payment_method(self) -> None:
        spec = {"paid_through": {"period": "year", "by_method": {"autogiro": "month"}}}
        moment = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)  # 28 Nov in Stockholm
        assert run(spec, source=Source.AUTOGIRO, occurred_at=moment) == "2026-11-30"
        assert run(spec, source=Source.SWISH, occurred_at=moment) == "2026-12-31"


class TestOtherTransforms:
    def test_constant(self) -> None:
        assert run({"constant": 7}) == 7

    def test_copy_reads_event_fields_including_derived_ones(self) -> None:
        assert run({"copy": "provider_ref"}) == "X1"
        assert run({"copy": "member_ref.value"}) == "100234"
        assert run({"copy": "method"}) == "swish"

    def test_choice_from_a_fixed_option_and_from_an_event_field(self) -> None:
        assert run({"choice": {"set": "payment_status", "value": "failed"}}) == 100000001
        assert run({"choice": {"set": "payment_method", "from": "method"}}) == 100000000

    def test_a_choice_without_that_option_is_a_config_error_naming_the_column(self) -> None:
        with pytest.raises(ConfigError, match=r"mbr_x.*no option 'swish'"):
            run({"choice": {"set": "mandate_status", "from": "method"}}, column="mbr_x")

    def test_date_is_cut_in_the_mapping_time_zone(self) -> None:
        late_evening_utc = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
        assert run({"date": "occurred_at"}, occurred_at=late_evening_utc) == "2027-01-01"

    def test_datetime_is_utc(self) -> None:
        assert run({"datetime": "occurred_at"}) == "2026-11-02T07:15:00Z"

    def test_money_is_kronor_with_two_decimals(self) -> None:
        assert run({"money": "amount_minor"}, amount_minor=12345) == 123.45

    def test_template_fills_event_fields_and_amount_in_kronor(self) -> None:
        assert run({"template": "{source}/{kind}: {amount} {currency}"}) == (
            "swish/payment.succeeded: 250.00 SEK"
        )

    def test_a_template_naming_an_unknown_field_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="nickname"):
            run({"template": "{nickname}"})

    @pytest.mark.parametrize(
        ("direction", "current", "amount", "expected"),
        [
            ("increase", 100.0, 25000, 350.0),
            ("decrease", 300.0, 25000, 50.0),
            ("decrease", 100.0, 25000, 0.0),
            ("increase", None, 100, 1.0),
            ("clear", 999.0, 1, 0.0),
        ],
    )
    def test_arrears(self, direction, current, amount, expected) -> None:
        member = {"a": current}
        assert run({"arrears": direction}, member, column="a", amount_minor=amount) == expected

    def test_a_column_takes_exactly_one_transform(self) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            Transform.model_validate({"constant": 1, "copy": "kind"})


def test_every_kind_has_a_rule_in_the_default_mapping() -> None:
    assert set(MAPPING.rules) == set(EventKind)
