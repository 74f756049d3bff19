"""BgMax: one event per payment and deduction, sections checked against their deposits."""

from __future__ import annotations

import io
from datetime import date

import pytest
from dynamics_bridge_sandbox.bankgirot_writer import BgmaxPayment, bgmax_lines

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import Source, make_event_id
from dynamics_bridge.sources import bgmax
from dynamics_bridge.sources.bankgirot import Payees
from dynamics_bridge.sources.ocr import make_reference
from tests.fixtures.bankgirot import (
    BG,
    bg_deposit,
    bg_end,
    bg_extra,
    bg_opening,
    bg_payment,
    bg_start,
    lines,
    record,
)
from tests.fixtures.bankgirot import build as fixtures

OCR_100001 = make_reference("100001")  # member number + Luhn digit


def parse(data: bytes, name: str = "bgmax.txt", **kwargs):
    return list(bgmax.parse(io.BytesIO(data), name, **kwargs))


def refused(data: bytes, name: str = "bgmax.txt", **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        parse(data, name, **kwargs)
    return caught.value


# Lines: start 1, opening 2, payments 3-5, deduction 6, name 7, deposit 8, end 9.
GOOD = lines(
    bg_start(),
    bg_opening(),
    bg_payment(OCR_100001, 25000),
    bg_payment("1000020", 25000, serial="000000000002"),  # check digit wrong
    bg_payment("", 10000, ref_code="1", serial="000000000003"),
    bg_payment(OCR_100001, 5000, tk="21", deduction_code="1", serial="000000000004"),
    record("26", (3, "Testa Medlem")),
    bg_deposit(25000 + 25000 + 10000 - 5000, 4),
    bg_end(payments=3, deductions=1),
)


class TestEvents:
    def test_payments_and_deductions_become_events(self) -> None:
        events = parse(GOOD)
        assert [e.kind.value for e in events] == ["payment.succeeded"] * 3 + ["payment.refunded"]
        assert [e.amount_minor for e in events] == [25000, 25000, 10000, 5000]

    def test_a_deduction_carries_its_deduction_code_as_reason(self) -> None:
        deduction = parse(GOOD)[3]
        assert deduction.reason_code == "1"
        assert deduction.reason_text == "Avdrag: Delavdrag, rest finns"

    def test_an_ocr_reference_passing_the_check_names_the_member(self) -> None:
        assert parse(GOOD)[0].member_ref.to_json() == {"kind": "member_number", "value": "100001"}

    def test_an_ocr_reference_failing_the_check_is_kept_whole_with_a_reason(self) -> None:
        event = parse(GOOD)[1]
        assert event.member_ref.to_json() == {"kind": "ocr", "value": "1000020"}
        assert event.reason_code == "ocr_check_failed"
        assert event.kind == "payment.succeeded"

    def test_a_payment_without_reference_is_kept_with_a_reason(self) -> None:
        event = parse(GOOD)[2]
        assert (event.member_ref.value, event.reason_code) == ("", "no_reference")

    def test_an_ocr_number_in_the_extra_reference_after_a_blank_one_names_the_member(
        self,
    ) -> None:
        events = parse(fixtures.bgmax())
        assert events[-1].member_ref.to_json() == {"kind": "member_number", "value": "100002"}
        assert len(events) == 5  # the TK22/TK23 extra references made no event of their own

    def test_the_bgc_serial_is_the_provider_ref(self) -> None:
        assert parse(GOOD)[1].provider_ref == "000000000002"

    def test_the_booking_date_comes_from_the_deposit_record(self) -> None:
        assert parse(GOOD)[0].occurred_at.isoformat() == "2026-11-27T00:00:00+01:00"

    def test_origin_is_the_physical_line(self) -> None:
        assert [e.origin for e in parse(GOOD, "in.txt")] == [f"in.txt:{n}" for n in (3, 4, 5, 6)]

    def test_payer_names_never_reach_the_events(self) -> None:
        assert "Testa" not in repr([e.to_json() for e in parse(GOOD)])
        assert "Öberg" not in repr([e.to_json() for e in parse(fixtures.bgmax())])

    def test_the_ocr_scheme_is_configurable(self) -> None:
        ref = make_reference("100001", "luhn_length")
        data = GOOD.replace(f"{OCR_100001:>25}".encode(), f"{ref:>25}".encode(), 1)
        assert parse(data, ocr_scheme="luhn_length")[0].member_ref.value == "100001"
        # Read with the wrong scheme, the length digit would become part of the member number.
        assert parse(data, ocr_scheme="luhn")[0].member_ref.value == ref[:-1]

    def test_currencies_are_kept_per_section(self) -> None:
        events = parse(fixtures.bgmax_two_currencies())
        assert [(e.currency, e.amount_minor) for e in events] == [("SEK", 25000), ("EUR", 4000)]


def one_payment(*records: str, amount: int = 25000) -> bytes:
    """A file with one TK20 payment record and the extra references that follow it."""
    return lines(
        bg_start(),
        bg_opening(),
        *records,
        bg_deposit(amount, 1),
        bg_end(payments=1, extra=sum(1 for r in records if r[:2] in ("22", "23"))),
    )


class TestReferenceCodes:
    """payments.md §2: position 56 says what the reference is; only codes 2 and 4 are OCR."""

    def test_a_free_text_reference_that_passes_luhn_by_chance_names_no_one(self) -> None:
        (event,) = parse(one_payment(bg_payment(OCR_100001, 25000, ref_code="3")))
        assert event.member_ref.to_json() == {"kind": "ocr", "value": OCR_100001}
        assert event.reason_code == bgmax.FREE_TEXT_REFERENCE
        assert "manuellt" in (event.reason_text or "")

    def test_free_text_is_kept_whole(self) -> None:
        (event,) = parse(one_payment(bg_payment("KUNDNR 4325 FAKTURA 63890", 25000, "3")))
        assert event.member_ref.to_json() == {
            "kind": "ocr",
            "value": "KUNDNR 4325 FAKTURA 63890",
        }
        assert event.reason_code == bgmax.FREE_TEXT_REFERENCE

    def test_a_code_3_payment_is_named_by_the_ocr_numbers_repeated_in_tk22(self) -> None:
        second = make_reference("100002")
        data = one_payment(
            bg_payment(f"{OCR_100001},{second}", 25000, ref_code="3"),
            bg_extra(OCR_100001),
            bg_extra(second),
        )
        (event,) = parse(data)
        assert event.member_ref.to_json() == {"kind": "member_number", "value": "100001"}
        assert event.reason_code is None
        assert second in (event.reason_text or "")

    def test_a_free_text_tk22_does_not_name_a_member(self) -> None:
        data = one_payment(
            bg_payment("FAKTURA 1", 25000, ref_code="3"), bg_extra(OCR_100001, ref_code="3")
        )
        (event,) = parse(data)
        assert (event.member_ref.value, event.reason_code) == (
            "FAKTURA 1",
            bgmax.FREE_TEXT_REFERENCE,
        )

    def test_code_4_extended_form_registration_is_checked(self) -> None:
        (event,) = parse(one_payment(bg_payment(OCR_100001.ljust(25), 25000, ref_code="4")))
        assert event.member_ref.to_json() == {"kind": "member_number", "value": "100001"}

    def test_code_5_wrong_reference_is_an_ocr_failure_without_a_luhn_guess(self) -> None:
        (event,) = parse(one_payment(bg_payment(OCR_100001, 25000, ref_code="5")))
        assert event.member_ref.to_json() == {"kind": "ocr", "value": OCR_100001}
        assert event.reason_code == "ocr_check_failed"

    def test_a_deduction_keeps_both_its_code_and_the_failed_ocr_check(self) -> None:
        data = lines(
            bg_start(),
            bg_opening(),
            bg_payment(OCR_100001, 25000),
            bg_payment("1000020", 5000, tk="21", deduction_code="1", serial="000000000002"),
            bg_deposit(20000, 2),
            bg_end(payments=1, deductions=1),
        )
        event = parse(data)[1]
        assert event.kind == "payment.refunded"
        assert event.reason_code == "ocr_check_failed"
        assert event.member_ref.to_json() == {"kind": "ocr", "value": "1000020"}
        assert "Avdrag: Delavdrag, rest finns (avdragskod 1)" in (event.reason_text or "")
        assert "OCR-kontrollen" in (event.reason_text or "")


class TestIds:
    def test_ids_are_stable_and_distinct(self) -> None:
        first, second = parse(GOOD, "a.txt"), parse(GOOD, "b.txt")
        assert [e.event_id for e in first] == [e.event_id for e in second]
        assert len({e.event_id for e in first}) == 4

    def test_ids_are_make_event_id_over_the_deposit_and_the_record(self) -> None:
        record_text = bg_payment(OCR_100001, 25000)
        identity = f"0009912346|20261127|00042|{record_text}"
        assert parse(GOOD)[0].event_id == make_event_id(Source.BGMAX, identity, "1")

    def test_records_without_line_breaks_give_the_same_events(self) -> None:
        glued = parse(fixtures.bgmax_no_line_breaks())
        lined = parse(fixtures.bgmax())
        assert [e.to_json() for e in glued] == [e.to_json() for e in lined]


class TestRefusals:
    def test_a_deposit_that_does_not_add_up_names_its_line_and_both_figures(self) -> None:
        error = refused(GOOD.replace(f"{55000:018d}".encode(), f"{55100:018d}".encode()), "in")
        assert (error.location, error.field) == ("in:8", "amount")
        assert "551.00" in str(error)
        assert "550.00" in str(error)

    def test_a_deposit_count_that_does_not_add_up_is_refused(self) -> None:
        error = refused(GOOD.replace(bg_deposit(55000, 4).encode(), bg_deposit(55000, 5).encode()))
        assert error.field == "count"

    def test_an_end_record_that_does_not_add_up_is_refused(self) -> None:
        error = refused(GOOD.replace(bg_end(3, 1).encode(), bg_end(4, 1).encode()), "in")
        assert error.location == "in:9"
        assert "payments (TK20) = 4" in str(error)

    def test_a_missing_end_record_is_refused_at_the_last_line(self) -> None:
        error = refused(GOOD.rsplit(b"70", 1)[0], "in")
        assert "without its TK70" in str(error)
        assert error.location == "in:8"

    def test_a_deposit_in_another_currency_than_its_section_is_refused(self) -> None:
        data = lines(
            bg_start(),
            bg_opening("SEK"),
            bg_payment(OCR_100001, 100),
            bg_deposit(100, 1, currency="EUR"),
            bg_end(1),
        )
        assert refused(data).field == "currency"

    def test_a_payment_outside_a_section_is_refused(self) -> None:
        data = lines(bg_start(), bg_payment(OCR_100001, 100), bg_end(1, deposits=0))
        assert "outside a section" in str(refused(data))

    def test_a_file_that_is_not_bgmax_is_refused(self) -> None:
        assert "not a BgMax file" in str(refused(lines(record("01", (3, "AUTOGIRO")))))

    def test_records_after_the_end_record_are_refused(self) -> None:
        error = refused(GOOD + lines(bg_opening()), "in")
        assert error.location == "in:10"

    def test_unknown_record_types_are_ignored_but_counted_payments_still_must_agree(self) -> None:
        data = GOOD.replace(b"26Testa Medlem", b"99Testa Medlem")
        assert len(parse(data)) == 4


class TestDates:
    def test_an_impossible_deposit_date_is_kept_raw_and_the_file_date_used(self) -> None:
        data = GOOD.replace(
            bg_deposit(55000, 4).encode(), bg_deposit(55000, 4, date="20260631").encode()
        )
        events = parse(data)
        assert len(events) == 4
        assert all("20260631" in (e.reason_text or "") for e in events)
        assert events[0].occurred_at.date() == date(2026, 11, 27)  # TK01 written on that day


class TestLargeSections:
    """A section larger than the buffer is read a second time instead of being held."""

    @pytest.mark.parametrize("limit", [1, 2, 3])
    def test_a_section_read_again_gives_the_same_events(self, limit: int) -> None:
        data = fixtures.bgmax()
        held = parse(data)
        again = parse(data, buffer_limit=limit)
        assert [e.to_json() for e in again] == [e.to_json() for e in held]

    def test_the_stream_is_put_back_after_reading_a_section_again(self) -> None:
        data = fixtures.bgmax() + lines(bg_opening())  # a record after TK70
        with pytest.raises(InputError, match="after the TK70"):
            parse(data, buffer_limit=1)

    def test_without_seeking_a_large_section_is_held_instead(self) -> None:
        class OneWay(io.RawIOBase):
            def __init__(self, data: bytes) -> None:
                self._inner = io.BytesIO(data)

            def readable(self) -> bool:
                return True

            def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
                chunk = self._inner.read(len(buffer))
                buffer[: len(chunk)] = chunk
                return len(chunk)

        data = fixtures.bgmax()
        streamed = list(bgmax.parse(OneWay(data), "bgmax.txt", buffer_limit=1))
        assert [e.to_json() for e in streamed] == [e.to_json() for e in parse(data)]


class TestWriter:
    def test_a_written_file_reads_back_with_one_deposit_or_many(self) -> None:
        payments = [
            BgmaxPayment(make_reference(str(100001 + i)), 100 + i, f"{i:012d}") for i in range(5)
        ]
        for per_deposit in (None, 2):
            events = parse(b"".join(bgmax_lines(payments, per_deposit=per_deposit)))
            assert [e.member_ref.value for e in events] == [str(100001 + i) for i in range(5)]
            assert sum(e.amount_minor for e in events) == 510


class TestTheUnionsOwnPayee:
    def test_each_sections_receiving_bankgiro_is_checked(self) -> None:
        ours = Payees(frozenset({BG}))
        assert len(parse(GOOD, payees=ours)) == len(parse(GOOD))
        error = refused(GOOD, payees=Payees(frozenset({"0050501055"})))
        assert (error.location, error.field) == ("bgmax.txt:2", "payee bankgiro")
        assert "section opening record (TK05) (positions 3-12) is 991-2346" in error.detail
        assert "= 5050-1055" in error.detail

    def test_a_second_section_for_another_payee_is_refused_at_its_opening(self) -> None:
        data = lines(
            bg_start(),
            bg_opening(),
            bg_payment(OCR_100001, 100),
            bg_deposit(100, 1),
            bg_opening(bankgiro="0050501055"),
            bg_payment(OCR_100001, 200, serial="000000000002"),
            bg_deposit(200, 1, serial="00043"),
            bg_end(payments=2, deposits=2),
        )
        assert len(parse(data, payees=Payees(frozenset({BG, "0050501055"})))) == 2
        error = refused(data, payees=Payees(frozenset({BG})))
        assert (error.location, error.field) == ("bgmax.txt:5", "payee bankgiro")


class TestWhatAFileIsNot:
    def test_a_section_without_its_start_record_is_named_a_bgmax_fragment(self) -> None:
        fragment = b"\r\n".join(GOOD.split(b"\r\n")[1:])
        error = refused(fragment, "section.txt")
        assert error.location == "section.txt:1"
        assert "BgMax fragment" in error.detail
        assert "section opening record (TK05)" in error.detail
        assert "no TK01 start record" in error.detail

    def test_payment_records_alone_are_a_fragment_too(self) -> None:
        error = refused(lines(bg_payment(OCR_100001, 100), bg_payment(OCR_100001, 100)))
        assert "payment record (TK20)" in error.detail

    def test_a_seal_start_record_before_the_file_is_refused_as_a_seal(self) -> None:
        error = refused(lines(record("00", (3, "261127"), (9, "HMAC"))) + GOOD, "sealed.txt")
        assert error.location == "sealed.txt:1"
        assert "seal start record" in error.detail
        assert "carry no seal records" in error.detail

    def test_a_seal_end_record_after_the_end_record_is_refused_as_a_seal(self) -> None:
        error = refused(GOOD + lines(record("99", (3, "261127"), (9, "A" * 32))), "sealed.txt")
        assert error.location == "sealed.txt:10"
        assert "seal end record" in error.detail
