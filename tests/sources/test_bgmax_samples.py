"""Bankgirot's published BgMax example files (and open-source variants of them) give the figures
in their SOURCE.txt. Read from ../shared/samples/payments/bgmax; skipped when that is absent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.sources import bgmax
from dynamics_bridge.sources.bankgirot import Payees
from tests.conftest import shared_samples

#: Every BgMax sample's sections (TK05) are for bankgiro 0009912346, Bankgirot's example payee
#: (SOURCE.txt: "first section receiver bankgiro 0009912346"); read as that union's.
SAMPLE_PAYEE = Payees(frozenset({"0009912346"}))

# file → TK20 count and sum, TK21 count and sum, then each deposit (TK15) in file order as
# SOURCE.txt lists it: (serial, amount, count of TK20 + TK21, currency, booking date when
# SOURCE.txt gives one). Amounts in öre.
EXPECTED = {
    "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv.txt": (
        (5, 85_000),
        (0, 0),
        [("00005", 85_000, 5, "SEK", None)],
    ),
    "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv-with-new-line.txt": (
        (5, 85_000),
        (0, 0),
        [("00005", 85_000, 5, "SEK", None)],
    ),
    "no_padding_bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv-with-new-line.txt": (
        (5, 85_000),
        (0, 0),
        [("00005", 85_000, 5, "SEK", None)],
    ),
    "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_sv.txt": (
        (4, 210_000),
        (0, 0),
        [("00054", 210_000, 4, "SEK", None)],
    ),
    "bankgiroinbetalningar_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-kontroll_"
    "exempelfil.txt": (
        (7, 860_000),
        (0, 0),
        [
            ("00056", 370_000, 2, "SEK", None),
            ("00057", 200_000, 1, "SEK", None),
            ("00058", 290_000, 4, "SEK", None),
        ],
    ),
    "bankgiroinbetalningar_bildfil_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-"
    "kontroll_exempelfil.txt": (
        (6, 353_300),
        (0, 0),
        [("00005", 353_300, 6, "SEK", "2005-12-06")],
    ),
    "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_langd_sv.txt": (
        (8, 1_440_000),
        (1, 50_000),
        [
            ("00074", 190_000, 3, "SEK", None),
            ("00075", 800_000, 4, "SEK", None),
            ("00076", 400_000, 2, "EUR", None),
        ],
    ),
    "fabhed-variant_bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_"
    "langd_sv.txt": (
        (6, 1_040_000),
        (1, 50_000),
        [("00074", 190_000, 3, "SEK", None), ("00075", 800_000, 4, "SEK", None)],
    ),
    "pybgmax_multipayment.txt": (
        (4, 70_000),
        (0, 0),
        [("00036", 70_000, 4, "SEK", "2009-06-03")],
    ),
    "autogiro_exempelfil_bg-max-forma_sv.txt": (
        (4, 70_000),
        (0, 0),
        [("00036", 70_000, 4, "SEK", "2009-06-03")],
    ),
}


@pytest.fixture
def folder() -> Path:
    return shared_samples("payments", "bgmax")


def events_of(folder: Path, name: str, payees: Payees = SAMPLE_PAYEE) -> list[PaymentEvent]:
    with (folder / name).open("rb") as fh:
        return list(bgmax.parse(fh, name, payees=payees))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_for_another_union_each_file_is_refused_at_its_first_section(
    folder: Path, name: str
) -> None:
    with pytest.raises(InputError) as caught:
        events_of(folder, name, Payees(frozenset({"0050501055"})))
    assert caught.value.field == "payee bankgiro"
    assert "TK05" in caught.value.detail


def per_deposit(events: list[PaymentEvent], counts: list[int]) -> list[list[PaymentEvent]]:
    """The parser's events cut into its deposits: it emits each section's payments and
    deductions together, in file order, so SOURCE.txt's per-deposit counts cut the list."""
    assert sum(counts) == len(events)
    chunks, start = [], 0
    for count in counts:
        chunks.append(events[start : start + count])
        start += count
    return chunks


def line_of(event: PaymentEvent) -> int:
    return int(event.origin.rpartition(":")[2])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_gives_its_documented_figures(folder: Path, name: str) -> None:
    (payments, payment_sum), (deductions, deduction_sum), _ = EXPECTED[name]
    events = events_of(folder, name)
    paid = [e for e in events if e.kind == "payment.succeeded"]
    deducted = [e for e in events if e.kind == "payment.refunded"]
    assert (len(paid), sum(e.amount_minor for e in paid)) == (payments, payment_sum)
    assert (len(deducted), sum(e.amount_minor for e in deducted)) == (deductions, deduction_sum)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_deposit_is_its_own_payments_less_deductions(folder: Path, name: str) -> None:
    """Per deposit, from the parsed events: payments less deductions, count, currency and
    booking date are SOURCE.txt's figures for that deposit (not a file-wide sum)."""
    deposits = EXPECTED[name][2]
    events = events_of(folder, name)
    assert [line_of(e) for e in events] == sorted(line_of(e) for e in events)  # file order
    chunks = per_deposit(events, [count for _, _, count, _, _ in deposits])
    for chunk, (serial, amount, _, currency, booked) in zip(chunks, deposits, strict=True):
        net = sum(
            e.amount_minor if e.kind == "payment.succeeded" else -e.amount_minor for e in chunk
        )
        assert net == amount, serial
        assert {e.currency for e in chunk} == {currency}, serial
        dates = {e.occurred_at.date().isoformat() for e in chunk}
        assert len(dates) == 1, serial  # one deposit, one booking date
        if booked is not None:
            assert dates == {booked}, serial


def test_a_free_text_payment_is_named_by_the_ocr_numbers_repeated_in_tk22(folder: Path) -> None:
    """avtal-om-ocr-kontroll line 9: reference code 3 with free text '65896,65862,65763' and
    the correct OCR numbers repeated as TK22 (payments.md §2: code 3 → TK22 extras)."""
    events = events_of(folder, "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_sv.txt")
    (line_9,) = [e for e in events if line_of(e) == 9]
    assert line_9.member_ref.to_json() == {"kind": "member_number", "value": "6589"}
    assert line_9.reason_code is None
    assert "65862, 65763" in (line_9.reason_text or "")


def test_free_text_references_never_name_a_member(folder: Path) -> None:
    """The file without OCR agreement holds plain numbers with reference code 3: none is read
    as an OCR number (a Luhn-valid one would otherwise name a member by chance)."""
    name = "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv.txt"
    events = events_of(folder, name)
    assert all(e.member_ref.kind == "ocr" for e in events)
    assert [e.reason_code for e in events] == [bgmax.FREE_TEXT_REFERENCE] * 3 + ["no_reference"] * 2
    assert [e.member_ref.value for e in events[:3]] == ["65598", "524963", "23554"]


def test_a_deduction_keeps_its_code_and_its_reference_problem(folder: Path) -> None:
    name = "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_langd_sv.txt"
    (deduction,) = [e for e in events_of(folder, name) if e.kind == "payment.refunded"]
    assert deduction.reason_code == bgmax.FREE_TEXT_REFERENCE
    assert "Avdrag: Helt avdrag, ingen rest (avdragskod 0)" in (deduction.reason_text or "")


def test_currencies_are_kept_apart(folder: Path) -> None:
    name = "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_langd_sv.txt"
    net: Counter[str] = Counter()
    for e in events_of(folder, name):
        net[e.currency] += e.amount_minor if e.kind == "payment.succeeded" else -e.amount_minor
    assert net == {"SEK": 990_000, "EUR": 400_000}


def test_the_bildfil_date_is_the_deposits(folder: Path) -> None:
    name = (
        "bankgiroinbetalningar_bildfil_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-"
        "kontroll_exempelfil.txt"
    )
    assert {e.occurred_at.date().isoformat() for e in events_of(folder, name)} == {"2005-12-06"}


def test_the_same_payments_in_different_encodings_and_shapes_get_the_same_ids(
    folder: Path,
) -> None:
    """The concatenated original, its LF copy and its stripped UTF-8 copy are one file."""
    base = "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv"
    names = [f"{base}.txt", f"{base}-with-new-line.txt", f"no_padding_{base}-with-new-line.txt"]
    ids = [[e.event_id for e in events_of(folder, n)] for n in names]
    assert ids[0] == ids[1] == ids[2]


def test_double_encoded_and_autogiro_copies_of_one_file_agree(folder: Path) -> None:
    """pybgmax's copy (mis-encoded names) and Bankgirot's Autogiro-in-BgMax file."""
    a = events_of(folder, "pybgmax_multipayment.txt")
    b = events_of(folder, "autogiro_exempelfil_bg-max-forma_sv.txt")
    assert [(e.member_ref.to_json(), e.amount_minor) for e in a] == [
        (e.member_ref.to_json(), e.amount_minor) for e in b
    ]


def test_every_file_in_the_folder_is_covered(folder: Path) -> None:
    assert sorted(p.name for p in folder.glob("*.txt") if p.name != "SOURCE.txt") == sorted(
        EXPECTED
    )
