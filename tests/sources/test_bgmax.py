"""BgMax: one event per payment and deduction, sections checked against their deposits."""

from __future__ import annotations

import io
from collections import Counter

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources import bgmax
from dynamics_bridge.sources.ocr import make_reference
from tests.conftest import shared_samples
from tests.sources.bankgirot_records import (
    bg_deposit,
    bg_end,
    bg_opening,
    bg_payment,
    bg_start,
    lines,
    record,
)

OCR_100001 = make_reference("100001")  # member number + Luhn digit


def parse(data: bytes, name: str = "bgmax.txt", **kwargs):
    return list(bgmax.parse(io.BytesIO(data), name, **kwargs))


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


def test_payments_and_deductions_become_events() -> None:
    events = parse(GOOD)
    assert [e.kind.value for e in events] == ["payment.succeeded"] * 3 + ["payment.refunded"]
    assert [e.amount_minor for e in events] == [25000, 25000, 10000, 5000]
    assert events[3].reason_code == "1"
    assert "Delavdrag" in (events[3].reason_text or "")


def test_an_ocr_reference_passing_the_check_names_the_member() -> None:
    assert parse(GOOD)[0].member_ref.to_json() == {"kind": "member_number", "value": "100001"}


def test_an_ocr_reference_failing_the_check_is_kept_whole_with_a_reason() -> None:
    event = parse(GOOD)[1]
    assert event.member_ref.to_json() == {"kind": "ocr", "value": "1000020"}
    assert event.reason_code == "ocr_check_failed"
    assert event.kind == "payment.succeeded"


def test_a_payment_without_reference_is_kept_with_a_reason() -> None:
    event = parse(GOOD)[2]
    assert (event.member_ref.value, event.reason_code) == ("", "no_reference")


def test_the_booking_date_comes_from_the_deposit_record() -> None:
    assert parse(GOOD)[0].occurred_at.isoformat() == "2026-11-27T00:00:00+01:00"


def test_payer_names_never_reach_the_events() -> None:
    assert "Testa" not in repr([e.to_json() for e in parse(GOOD)])


def test_the_ocr_scheme_is_configurable() -> None:
    ref = make_reference("100001", "luhn_length")
    data = GOOD.replace(f"{OCR_100001:>25}".encode(), f"{ref:>25}".encode(), 1)
    assert parse(data, ocr_scheme="luhn_length")[0].member_ref.value == "100001"
    # Read with the wrong scheme, the length digit would become part of the member number.
    assert parse(data, ocr_scheme="luhn")[0].member_ref.value == ref[:-1]


def test_a_deposit_that_does_not_add_up_names_its_line_and_both_figures() -> None:
    bad = GOOD.replace(f"{55000:018d}".encode(), f"{55100:018d}".encode())
    with pytest.raises(InputError) as caught:
        parse(bad, "in.txt")
    assert caught.value.location == "in.txt:8"
    assert "551.00" in str(caught.value)
    assert "550.00" in str(caught.value)


def test_an_end_record_that_does_not_add_up_is_refused() -> None:
    bad = GOOD.replace(bg_end(3, 1).encode(), bg_end(4, 1).encode())
    with pytest.raises(InputError, match=r"payments \(TK20\) = 4"):
        parse(bad)


def test_a_missing_end_record_is_refused() -> None:
    with pytest.raises(InputError, match="without its TK70"):
        parse(GOOD.rsplit(b"70", 1)[0])


def test_a_file_that_is_not_bgmax_is_refused() -> None:
    with pytest.raises(InputError, match="not a BgMax file"):
        parse(lines(record("01", (3, "AUTOGIRO"))))


def test_ids_are_stable_and_distinct() -> None:
    first, second = parse(GOOD, "a.txt"), parse(GOOD, "b.txt")
    assert [e.event_id for e in first] == [e.event_id for e in second]
    assert len({e.event_id for e in first}) == 4


def test_records_without_line_breaks_parse_the_same() -> None:
    glued = GOOD.replace(b"\r\n", b"")
    assert [e.event_id for e in parse(glued)] == [e.event_id for e in parse(GOOD)]


class TestBankgirotsPublishedExamples:
    """Figures from ../shared/samples/payments/bgmax/SOURCE.txt (amounts in öre)."""

    @pytest.mark.parametrize(
        ("name", "payments", "payment_sum", "deductions"),
        [
            ("bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv.txt", 5, 85_000, 0),
            (
                "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv-with-new-line.txt",
                5,
                85_000,
                0,
            ),
            (
                "no_padding_bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv-with-new"
                "-line.txt",
                5,
                85_000,
                0,
            ),
            ("bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_sv.txt", 4, 210_000, 0),
            (
                "bankgiroinbetalningar_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-kontroll_"
                "exempelfil.txt",
                7,
                860_000,
                0,
            ),
            (
                "bankgiroinbetalningar_bildfil_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-"
                "kontroll_exempelfil.txt",
                6,
                353_300,
                0,
            ),
            (
                "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_langd_sv.txt",
                8,
                1_440_000,
                1,
            ),
            (
                "fabhed-variant_bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_"
                "langd_sv.txt",
                6,
                1_040_000,
                1,
            ),
            ("pybgmax_multipayment.txt", 4, 70_000, 0),
            ("autogiro_exempelfil_bg-max-forma_sv.txt", 4, 70_000, 0),
        ],
    )
    def test_each_file_gives_its_documented_figures(
        self, name: str, payments: int, payment_sum: int, deductions: int
    ) -> None:
        folder = shared_samples("payments", "bgmax")
        with (folder / name).open("rb") as fh:
            events = list(bgmax.parse(fh, name))
        paid = [e for e in events if e.kind == "payment.succeeded"]
        assert len(paid) == payments
        assert sum(e.amount_minor for e in paid) == payment_sum
        assert len([e for e in events if e.kind == "payment.refunded"]) == deductions

    def test_currencies_are_kept_apart(self) -> None:
        folder = shared_samples("payments", "bgmax")
        name = "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_langd_sv.txt"
        with (folder / name).open("rb") as fh:
            events = list(bgmax.parse(fh, name))
        paid = Counter()
        for e in events:
            paid[e.currency] += e.amount_minor if e.kind == "payment.succeeded" else -e.amount_minor
        assert paid == {"SEK": 990_000, "EUR": 400_000}
