"""Autogiro reports: what each record becomes, and every total checked against the file."""

from __future__ import annotations

import io

import pytest
from dynamics_bridge_sandbox.bankgirot_writer import (
    AutogiroPayment,
    MandateNotice,
    mandate_notice_lines,
    payment_spec_lines,
)

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import Source, make_event_id
from dynamics_bridge.sources import autogiro
from dynamics_bridge.sources.bankgirot import Payees
from tests.fixtures.bankgirot import (
    BG,
    CUSTOMER,
    ag_closing,
    ag_count_closing,
    ag_emandate,
    ag_mandate_register,
    ag_mandate_register_old,
    ag_notice,
    ag_old_notices_opening,
    ag_opening,
    ag_payment,
    ag_refund,
    ag_section,
    bg_deposit,
    bg_end,
    bg_opening,
    bg_payment,
    lines,
    old_closing,
    record,
)
from tests.fixtures.bankgirot import build as fixtures

OURS = Payees(frozenset({BG}), frozenset({CUSTOMER}))
OTHER_BG = "0050501055"  # 5050-1055: a valid bankgiro number that is not the union's


def parse(data: bytes, name: str = "ag.txt", **kwargs):
    return list(autogiro.parse(io.BytesIO(data), name, **kwargs))


def spec(*records: str) -> bytes:
    return lines(ag_opening(), *records)


def refused(data: bytes, name: str = "ag.txt", **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        parse(data, name, **kwargs)
    return caught.value


# A payment specification with every outcome (lines: opening 1, TK15 2, TK82s 3-7, TK16 8, …).
GOOD = spec(
    ag_section("15", "20261128", 50000, 2),
    ag_payment("82", "20261128", "100001", 25000),
    ag_payment("82", "20261128", "100002", 25000),
    ag_payment("82", "20261128", "100003", 25000, status="1"),
    ag_payment("82", "20261128", "100004", 25000, status="2"),
    ag_payment("82", "20261128", "100005", 25000, status="9"),
    ag_section("16", "20261128", 10000, 1, serial="00002"),
    ag_payment("32", "20261128", "100006", 10000),
    ag_payment("32", "20261128", "100007", 10000, status="1"),
    ag_section("17", "20261128", 25000, 1, serial="00003"),
    ag_refund("20261028", "100008", 25000, "20261127", "02"),
    ag_closing(
        "20261128",
        deposits=1,
        collections=2,
        withdrawals=1,
        payouts=1,
        refund_sections=1,
        refunds=1,
    ),
)


class TestPaymentSpecification:
    def test_each_status_becomes_its_kind(self) -> None:
        assert [(e.member_ref.value, e.kind.value, e.reason_code) for e in parse(GOOD)] == [
            ("100001", "payment.succeeded", None),
            ("100002", "payment.succeeded", None),
            ("100003", "payment.failed", "1"),
            ("100004", "payment.failed", "2"),
            ("100005", "payment.rescheduled", "9"),
            ("100006", "payment.refunded", None),
            ("100007", "payment.failed", "1"),
            ("100008", "payment.refunded", "02"),
        ]

    def test_failures_carry_bankgirots_code_and_swedish_text(self) -> None:
        events = parse(GOOD)
        assert (events[2].reason_code, events[2].reason_text) == ("1", "Täckning saknas")
        assert "Koppling till Autogiro saknas" in (events[3].reason_text or "")
        assert "återkallat" in (events[7].reason_text or "")

    def test_amounts_are_positive_ore_and_the_kind_carries_the_direction(self) -> None:
        assert [e.amount_minor for e in parse(GOOD)] == [25000] * 5 + [10000] * 2 + [25000]

    def test_payer_numbers_are_member_refs_without_zero_fill(self) -> None:
        assert parse(GOOD)[0].member_ref.to_json() == {"kind": "payer_number", "value": "100001"}

    def test_dates_are_stockholm_days_and_a_refund_has_its_own_date(self) -> None:
        events = parse(GOOD)
        assert events[0].occurred_at.isoformat() == "2026-11-28T00:00:00+01:00"
        assert events[7].occurred_at.date().isoformat() == "2026-11-27"

    def test_origin_is_the_physical_line(self) -> None:
        assert [e.origin for e in parse(GOOD, "spec.txt")][:2] == ["spec.txt:3", "spec.txt:4"]

    def test_the_reference_is_the_provider_ref(self) -> None:
        assert parse(GOOD)[0].provider_ref == "MEDLEMSAVGIFT"

    def test_a_stopped_payout_is_not_in_the_withdrawal_total(self) -> None:
        """TK16 says 100,00 for one payout though two follow: the second was stopped."""
        assert len(parse(GOOD)) == 8


class TestIds:
    def test_the_same_file_from_anywhere_gives_the_same_ids(self) -> None:
        assert [e.event_id for e in parse(GOOD, "a/x.txt")] == [
            e.event_id for e in parse(GOOD, "b/y.txt")
        ]

    def test_ids_are_make_event_id_over_payee_bankgiro_and_record(self) -> None:
        first = parse(GOOD)[0]
        record_text = ag_payment("82", "20261128", "100001", 25000)
        assert first.event_id == make_event_id(Source.AUTOGIRO, f"{BG}|{record_text}", "1")

    def test_identical_records_standing_together_are_distinct_payments(self) -> None:
        twice = spec(
            ag_section("15", "20261128", 50000, 2),
            ag_payment("82", "20261128", "100001", 25000),
            ag_payment("82", "20261128", "100001", 25000),
            ag_closing("20261128", 1, 2),
        )
        first, second = parse(twice)
        assert first.event_id != second.event_id

    def test_identical_records_apart_are_distinct_too(self) -> None:
        """Payer 100001 approved, cancelled, approved again on the same day: three facts."""
        events = parse(fixtures.mandate_notices())
        ids = [e.event_id for e in events]
        assert events[0].origin != events[4].origin
        assert len(set(ids)) == len(ids)

    def test_a_different_line_ending_or_title_changes_no_id(self) -> None:
        plain = parse(GOOD)
        variant = parse(b"Exempelfil\n\n" + GOOD.replace(b"\r\n", b"\n"))
        assert [e.event_id for e in variant] == [e.event_id for e in plain]
        assert variant[0].origin != plain[0].origin


class TestRefusals:
    def test_a_deposit_amount_that_does_not_add_up_names_its_line_field_and_figures(self) -> None:
        error = refused(GOOD.replace(f"{50000:018d}".encode(), f"{50001:018d}".encode(), 1), "s")
        assert (error.location, error.field) == ("s:2", "amount")
        assert "500.01 kr" in str(error)
        assert "500.00 kr" in str(error)

    def test_a_deposit_count_that_does_not_add_up_is_refused(self) -> None:
        data = GOOD.replace(
            ag_section("15", "20261128", 50000, 2).encode(),
            ag_section("15", "20261128", 50000, 3).encode(),
        )
        error = refused(data, "s")
        assert (error.location, error.field) == ("s:2", "count")

    def test_a_closing_count_that_does_not_add_up_names_its_line(self) -> None:
        data = GOOD.replace(
            ag_closing("20261128", 1, 2, 1, 1, 1, 1).encode(),
            ag_closing("20261128", 1, 3, 1, 1, 1, 1).encode(),
        )
        error = refused(data, "s")
        assert error.location == "s:13"
        assert "approved collections (TK82) = 3" in str(error)
        assert "the file has 2" in str(error)

    def test_a_missing_closing_record_is_refused_at_the_last_line(self) -> None:
        error = refused(GOOD.rsplit(b"\r\n09", 1)[0] + b"\r\n", "s")
        assert "without its TK09" in str(error)
        assert error.location == "s:12"

    def test_a_payment_outside_its_section_is_refused(self) -> None:
        data = spec(
            ag_section("15", "20261128", 0, 0),
            ag_payment("32", "20261128", "1", 100),
            ag_closing("20261128", 1, 0),
        )
        assert "TK32 outside a TK16 section" in str(refused(data))

    def test_a_non_numeric_amount_names_the_line_and_field(self) -> None:
        error = refused(GOOD.replace(b"000000025000000991", b"0000000250X0000991", 1), "s")
        assert (error.location, error.field) == ("s:3", "amount")

    def test_a_payee_bankgiro_other_than_the_openings_is_refused(self) -> None:
        data = spec(
            ag_section("15", "20261128", 100, 1),
            ag_payment("82", "20261128", "7", 100, bankgiro="0001234567"),
            ag_closing("20261128", 1, 1),
        )
        assert refused(data).field == "payee bankgiro"

    def test_an_unknown_status_is_refused(self) -> None:
        data = spec(
            ag_section("15", "20261128", 0, 0),
            ag_payment("82", "20261128", "7", 100, status="5"),
            ag_closing("20261128", 1, 0),
        )
        assert refused(data).field == "status"

    def test_an_unexpected_record_type_is_refused(self) -> None:
        assert "TK99" in str(refused(spec(record("99"), ag_closing("20261128", 0, 0))))

    def test_records_after_the_closing_record_need_a_new_opening(self) -> None:
        error = refused(GOOD + lines(ag_payment("82", "20261128", "1", 1)), "s")
        assert error.location == "s:14"

    def test_an_empty_file_is_refused(self) -> None:
        assert "no Autogiro records" in str(refused(b"\r\n\r\n"))

    def test_a_bgmax_file_is_named_as_such(self) -> None:
        assert "BgMax" in str(refused(fixtures.bgmax()))

    def test_an_unknown_report_is_refused(self) -> None:
        assert "unknown Autogiro report" in str(refused(lines(ag_opening("NÅGOT ANNAT"))))


class TestSections:
    def test_a_file_may_hold_several_sections_each_with_its_own_totals(self) -> None:
        other = "0001234567"
        second = [
            ag_opening(bankgiro=other),
            ag_section("15", "20261128", 100, 1),
            ag_payment("82", "20261128", "9", 100, bankgiro=other),
            ag_closing("20261128", 1, 1),
        ]
        events = parse(GOOD + lines(*second))
        assert len(events) == 9
        assert events[-1].provider_ref == "MEDLEMSAVGIFT"

    def test_a_second_section_of_another_report_kind_is_refused(self) -> None:
        data = GOOD + lines(ag_opening("AG-MEDAVI"), ag_count_closing("20261128", 0))
        assert "another payment specification opening" in str(refused(data))


class TestImpossibleDates:
    def test_an_impossible_date_is_kept_raw_and_the_file_date_used(self) -> None:
        data = spec(
            ag_section("15", "20260631", 100, 1),
            ag_payment("82", "20260631", "7", 100),
            ag_closing("20261128", 1, 1),
        )
        (event,) = parse(data)
        assert "20260631" in (event.reason_text or "")
        assert event.occurred_at.date().isoformat() == "2026-11-28"

    def test_the_rejection_report_keeps_bankgirots_own_kind_of_impossible_date(self) -> None:
        events = parse(fixtures.rejected())
        assert "ogiltigt datum 20260631" in (events[1].reason_text or "")
        assert events[1].reason_code == "12"


class TestOldLayout:
    def test_blank_status_is_approved_and_the_totals_count_every_record(self) -> None:
        events = parse(fixtures.payment_spec_old())
        assert [(e.kind.value, e.reason_code) for e in events] == [
            ("payment.succeeded", None),
            ("payment.succeeded", None),
            ("payment.failed", "1"),
            ("payment.failed", "2"),
        ]

    def test_old_totals_that_count_only_approved_records_are_refused(self) -> None:
        data = fixtures.payment_spec_old().replace(
            old_closing("20261128", "10000", 1, 3, "75000").encode(),
            old_closing("20261128", "0", 0, 2, "50000").encode(),
        )
        assert "payout sum" in str(refused(data))

    def test_old_mandate_notices(self, caplog) -> None:
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            events = parse(fixtures.mandate_notices_old())
        # 04/10 "already registered or under inquiry": our request failed, the mandate stands.
        assert [(e.kind.value, e.reason_code) for e in events] == [("mandate.approved", "04/32")]
        (warning,) = caplog.records
        assert (warning.outcome, warning.reason) == (autogiro.MANDATE_REQUEST_FAILED, "04/10")


class TestMandates:
    def test_comment_codes_decide_approved_cancelled_or_request_failed(self, caplog) -> None:
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            events = parse(fixtures.mandate_notices(), "medavi.txt")
        assert [(e.member_ref.value, e.kind.value, e.reason_code) for e in events] == [
            ("100001", "mandate.approved", "04/32"),
            ("100002", "mandate.cancelled", "46/02"),
            ("100001", "mandate.cancelled", "03/33"),
            ("100001", "mandate.approved", "04/32"),
            ("100004", "mandate.cancelled", "43/07"),
        ]
        # 04/21 "wrong payer number": our request failed; no event, a warning asking for a task.
        (warning,) = caplog.records
        assert warning.levelname == "WARNING"
        assert warning.outcome == autogiro.MANDATE_REQUEST_FAILED
        assert warning.origin.startswith("medavi.txt:")
        message = warning.getMessage()
        assert "payer 100003" in message
        assert "04/21" in message
        assert "Felaktigt betalarnummer" in message
        assert "needs a task" in message

    @pytest.mark.parametrize(
        ("info", "comment", "kind"),
        [
            ("04", "32", "mandate.approved"),
            ("05", "32", "mandate.approved"),
            ("42", "32", "mandate.approved"),  # confirmed by the payer's bank
            ("42", "03", "mandate.rejected"),  # the bank: account type not approved
            ("42", "05", "mandate.rejected"),  # the bank: wrong account or personal data
            ("43", "07", "mandate.cancelled"),  # expired: account inquiry unanswered
            ("03", "33", "mandate.cancelled"),
            ("10", "33", "mandate.cancelled"),  # 10/*: the payee's bankgiro was closed
            ("10", "02", "mandate.cancelled"),
            ("44", "98", "mandate.cancelled"),
            ("46", "02", "mandate.cancelled"),
            *(
                (info, comment, None)  # our request failed: no event
                for info in ("04", "05")
                for comment in ("09", "10", "20", "21", "23", "29", "30")
            ),
            *(("03", comment, None) for comment in ("04", "21", "29", "30")),
        ],
    )
    def test_the_reference_mapping_of_notices(self, info: str, comment: str, kind) -> None:
        # payments.md §1.3 "Suggested CRM mapping".
        data = lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("100009", info, comment),
            ag_count_closing("20261128", 1),
        )
        assert [e.kind.value for e in parse(data)] == ([kind] if kind else [])

    def test_the_reason_text_is_both_codes_in_swedish_and_no_money_moves(self) -> None:
        data = lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("100003", "42", "05"),
            ag_count_closing("20261128", 1),
        )
        (event,) = parse(data)
        assert event.reason_text == (
            "Svar på kontoförfrågan från betalarens bank: "
            "Felaktiga kontouppgifter eller personuppgifter"
        )
        assert all(e.amount_minor == 0 for e in parse(fixtures.mandate_notices()))

    def test_a_failed_request_with_a_personnummer_payer_number_is_logged_masked(
        self, caplog
    ) -> None:
        data = lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("198112189876", "04", "20"),
            ag_count_closing("20261128", 1),
        )
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            assert parse(data) == []
        assert "198112189876" not in caplog.text
        assert "19811218-****" in caplog.text

    def test_a_failed_request_goes_to_on_notice_instead_of_the_log(self, caplog) -> None:
        seen: list[autogiro.Notice] = []
        with caplog.at_level("WARNING", logger="dynamics_bridge.sources.autogiro"):
            events = list(
                autogiro.parse(
                    io.BytesIO(fixtures.mandate_notices()), "medavi.txt", on_notice=seen.append
                )
            )
        assert len(events) == 5
        assert caplog.records == []
        assert seen == [
            autogiro.Notice(
                "medavi.txt:5",
                "100003",
                "04",
                "21",
                "Nytt medgivande initierat av betalningsmottagaren: Felaktigt betalarnummer",
            )
        ]
        assert seen[0].pair == "04/21"

    def test_a_notice_masks_a_personnummer_payer_number(self) -> None:
        data = lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("198112189876", "04", "20"),
            ag_count_closing("20261128", 1),
        )
        seen: list[autogiro.Notice] = []
        assert list(autogiro.parse(io.BytesIO(data), "m.txt", on_notice=seen.append)) == []
        (notice,) = seen
        assert notice.payer == "19811218-****"
        assert (notice.origin, notice.pair) == ("m.txt:2", "04/20")
        # the number itself stays for finding the member, and out of every repr and log
        assert notice.payer_number == "198112189876"
        assert "9876" not in repr(notice)

    def test_a_wrong_notice_count_is_refused(self) -> None:
        data = lines(
            ag_opening("AG-MEDAVI"), ag_notice("1", "04", "32"), ag_count_closing("20261128", 2)
        )
        assert refused(data).field == "mandate notices (TK73)"

    def test_internet_bank_mandates_are_requested_and_names_stay_out(self) -> None:
        events = parse(fixtures.emandates())
        assert [(e.member_ref.value, e.kind.value) for e in events] == [
            ("100011", "mandate.requested"),
            ("100012", "mandate.requested"),
        ]
        assert "Öberg" not in repr([e.to_json() for e in events])
        assert "Påminnelse 1" in (events[1].reason_text or "")

    def test_the_mandate_register_extract_has_no_opening_or_closing(self) -> None:
        events = parse(fixtures.mandate_extract())
        assert [(e.member_ref.value, e.kind.value) for e in events] == [
            ("100001", "mandate.approved"),
            ("100002", "mandate.requested"),
            ("100003", "mandate.approved"),
        ]
        assert events[2].occurred_at.date().isoformat() == "2026-01-01"  # created, never changed


class TestOtherReports:
    def test_rejected_orders_are_failed_payments_with_the_comment_code(self) -> None:
        events = parse(fixtures.rejected())
        assert [(e.kind.value, e.reason_code, e.amount_minor) for e in events] == [
            ("payment.failed", "01", 25000),
            ("payment.failed", "12", 25000),
            ("payment.failed", "09", 10000),
        ]
        assert events[0].reason_text == "Avvisat betalningsuppdrag: Medgivande saknas"

    def test_done_cancellations_and_date_changes_only_and_overpunched_totals(self) -> None:
        events = parse(fixtures.amendments())
        assert [(e.member_ref.value, e.kind.value, e.reason_code) for e in events] == [
            ("100001", "payment.cancelled", "25/12"),
            ("100002", "payment.rescheduled", "29/18"),
            ("100004", "payment.cancelled", "11/12"),
        ]
        assert "nytt datum 20261215" in (events[1].reason_text or "")
        assert events[0].provider_ref == "FAKTURA1"

    def test_the_payment_extract_gives_scheduled_payments(self) -> None:
        events = parse(fixtures.payment_extract())
        assert [(e.kind.value, e.amount_minor) for e in events] == [
            ("payment.scheduled", 25000),
            ("payment.scheduled", 25000),
            ("payment.scheduled", 10000),
        ]

    def test_a_file_to_bankgirot_is_refused_saying_what_it_is(self) -> None:
        error = refused(fixtures.payment_order(), "order.txt")
        assert "payment order file" in str(error)
        assert "sent TO Bankgirot" in str(error)
        assert error.location == "order.txt:1"


class TestWriter:
    """The package's writer (for the demo and the benchmark) writes what the parser reads."""

    def test_a_written_payment_specification_reads_back_with_its_totals(self) -> None:
        from datetime import date

        payments = [
            AutogiroPayment("100001", 25000, date(2026, 11, 28)),
            AutogiroPayment("100002", 25000, date(2026, 11, 28), status="1"),
            AutogiroPayment("100003", 5000, date(2026, 11, 27), direction="32"),
        ]
        events = parse(b"".join(payment_spec_lines(payments)))
        assert sorted((e.member_ref.value, e.kind.value) for e in events) == [
            ("100001", "payment.succeeded"),
            ("100002", "payment.failed"),
            ("100003", "payment.refunded"),
        ]

    def test_written_mandate_notices_read_back(self) -> None:
        from datetime import date

        notices = [
            MandateNotice("100001", date(2026, 11, 28)),
            MandateNotice("7", date(2026, 11, 28), "46", "02"),
        ]
        events = parse(b"".join(mandate_notice_lines(notices)))
        assert [e.kind.value for e in events] == ["mandate.approved", "mandate.cancelled"]


class TestOldLayoutMandateExtract:
    """AG-TM 9.8: the status one position earlier (57), then ``0`` (mandate OK), and an
    optional maximum amount in hundreds of kronor (59-63) before the account (64-79)."""

    def test_it_is_read_like_the_new_one(self) -> None:
        events = parse(fixtures.mandate_extract_old())
        assert [(e.member_ref.value, e.kind.value, e.reason_code) for e in events] == [
            ("100001", "mandate.approved", "register/1"),
            ("100002", "mandate.requested", "register/2"),
            ("100003", "mandate.approved", "register/1"),
        ]
        assert all(e.amount_minor == 0 for e in events)

    def test_dates_sit_one_position_earlier(self) -> None:
        events = parse(fixtures.mandate_extract_old())
        assert events[0].occurred_at.date().isoformat() == "2026-11-01"  # changed, 49-56
        assert events[1].occurred_at.date().isoformat() == "2026-01-01"  # never changed: created

    def test_the_maximum_amount_is_in_hundreds_of_kronor(self) -> None:
        events = parse(fixtures.mandate_extract_old())
        assert "maxbelopp 500 kr" in (events[0].reason_text or "")
        assert "maxbelopp" not in (events[1].reason_text or "")

    def test_a_maximum_amount_that_is_not_a_number_is_refused(self) -> None:
        data = lines(ag_mandate_register_old("100001", "1", maximum="5 KR "))
        error = refused(data, "reg.txt")
        assert (error.location, error.field) == ("reg.txt:1", "maximum amount")

    def test_a_new_layout_record_in_an_old_layout_extract_is_refused(self) -> None:
        data = lines(ag_mandate_register_old("100001", "1"), ag_mandate_register("100002", "1"))
        error = refused(data, "reg.txt")
        assert error.location == "reg.txt:2"
        assert "old layout" in str(error)

    def test_each_register_record_must_be_the_unions(self) -> None:
        data = lines(
            ag_mandate_register_old("100001", "1"),
            ag_mandate_register_old("100002", "1", bankgiro=OTHER_BG),
        )
        error = refused(data, "reg.txt", payees=OURS)
        assert (error.location, error.field) == ("reg.txt:2", "payee bankgiro")
        assert "mandate register record (positions 1-10)" in error.detail


class TestTheUnionsOwnPayee:
    def test_the_opening_bankgiro_and_customer_number_are_checked(self) -> None:
        assert len(parse(GOOD, payees=OURS)) == len(parse(GOOD))
        error = refused(GOOD, payees=Payees(frozenset({OTHER_BG})))
        assert (error.location, error.field) == ("ag.txt:1", "payee bankgiro")
        assert "is 991-2346, not one of the union's" in error.detail
        error = refused(GOOD, payees=Payees(frozenset({BG}), frozenset({"000001"})))
        assert (error.location, error.field) == ("ag.txt:1", "customer number")

    @pytest.mark.parametrize(
        ("opening", "positions"),
        [
            (ag_old_notices_opening(bankgiro=OTHER_BG), "15-24"),
            (ag_opening("AG-MEDAVI", bankgiro=OTHER_BG), "71-80"),
        ],
    )
    def test_mandate_notices_old_and_new(self, opening: str, positions: str) -> None:
        data = lines(opening, ag_notice("100001", "04", "32"), ag_count_closing("20261128", 1))
        error = refused(data, payees=OURS)
        assert f"positions {positions}" in error.detail

    def test_a_notice_for_another_payee_than_its_opening_is_refused(self) -> None:
        data = lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("100001", "04", "32", bankgiro=OTHER_BG),
            ag_count_closing("20261128", 1),
        )
        error = refused(data)
        assert (error.location, error.field) == ("ag.txt:2", "payee bankgiro")

    def test_a_failed_request_may_echo_the_wrong_bankgiro_it_was_refused_for(self) -> None:
        # 04/29: the payee's own request named a wrong payee bankgiro; no event either way.
        data = lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("100001", "04", "29", bankgiro=OTHER_BG),
            ag_count_closing("20261128", 1),
        )
        seen: list[autogiro.Notice] = []
        assert parse(data, on_notice=seen.append, payees=OURS) == []
        assert [n.pair for n in seen] == ["04/29"]

    def test_an_internet_bank_mandate_for_another_payee_is_refused(self) -> None:
        data = lines(
            record("51", (3, "20261128"), (11, "9900"), (15, BG), (25, "AG-EMEDGIV")),
            ag_emandate("100011", bankgiro=OTHER_BG),
            ag_count_closing("20261128", 1, tk="59"),
        )
        assert refused(data).location == "ag.txt:2"
        other_opening = data.replace(BG.encode(), OTHER_BG.encode(), 1)
        assert "positions 15-24" in refused(other_opening, payees=OURS).detail

    def test_each_section_of_a_file_is_checked(self) -> None:
        second = lines(
            ag_opening(bankgiro=OTHER_BG),
            ag_section("15", "20261128", 100, 1),
            ag_payment("82", "20261128", "9", 100, bankgiro=OTHER_BG),
            ag_closing("20261128", 1, 1),
        )
        assert refused(GOOD + second, payees=OURS).location == "ag.txt:14"
        both = Payees(frozenset({BG, OTHER_BG}), frozenset({CUSTOMER}))
        assert len(parse(GOOD + second, payees=both)) == len(parse(GOOD)) + 1


class TestWhatAFileIsNot:
    def test_a_seal_start_record_is_refused_saying_reports_carry_no_seal(self) -> None:
        sealed = lines(record("00", (3, "261128"), (9, "HMAC")), ag_opening()) + GOOD[84:]
        error = refused(sealed, "sealed.txt")
        assert error.location == "sealed.txt:1"
        assert "seal start record" in error.detail
        assert "sent TO Bankgirot" in error.detail

    def test_a_seal_end_record_after_the_closing_record_is_refused(self) -> None:
        sealed = GOOD + lines(record("99", (3, "261128"), (9, "0" * 32)))
        error = refused(sealed, "sealed.txt")
        assert error.location == "sealed.txt:14"
        assert "seal end record" in error.detail

    def test_a_seal_end_record_after_a_mandate_register_extract_is_refused(self) -> None:
        sealed = fixtures.mandate_extract() + lines(record("99", (3, "261128")))
        assert "seal end record" in refused(sealed).detail

    @pytest.mark.parametrize(
        ("first", "what"),
        [
            (bg_opening(), "section opening record (TK05)"),
            (bg_payment("1000014", 100), "payment record (TK20)"),
            (bg_payment("1000014", 100, tk="21"), "deduction record (TK21)"),
            (bg_deposit(100, 1), "deposit record (TK15"),
            (bg_end(1), "end record (TK70)"),
        ],
    )
    def test_a_bgmax_fragment_is_named_with_what_is_missing(self, first: str, what: str) -> None:
        error = refused(lines("Utdrag ur BgMax-filen", first), "cut.txt")
        assert error.location == "cut.txt:2"
        assert "BgMax fragment" in error.detail
        assert what in error.detail
        assert "no TK01 start record" in error.detail
