"""Bankgirot's published BgMax example files (and open-source variants of them) give the figures
in their SOURCE.txt. Read from ../shared/samples/payments/bgmax; skipped when that is absent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.sources import bgmax
from tests.conftest import shared_samples

# file → TK20 count and sum, TK21 count and sum, deposits (serial, amount, count); amounts öre.
EXPECTED = {
    "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv.txt": (
        (5, 85_000),
        (0, 0),
        [("00005", 85_000, 5)],
    ),
    "bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv-with-new-line.txt": (
        (5, 85_000),
        (0, 0),
        [("00005", 85_000, 5)],
    ),
    "no_padding_bangiroinbetalningar_exempelfil_avtalutantillval_kontroller_sv-with-new-line.txt": (
        (5, 85_000),
        (0, 0),
        [("00005", 85_000, 5)],
    ),
    "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_sv.txt": (
        (4, 210_000),
        (0, 0),
        [("00054", 210_000, 4)],
    ),
    "bankgiroinbetalningar_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-kontroll_"
    "exempelfil.txt": (
        (7, 860_000),
        (0, 0),
        [("00056", 370_000, 2), ("00057", 200_000, 1), ("00058", 290_000, 4)],
    ),
    "bankgiroinbetalningar_bildfil_avtal-ocr-kontroll_utokad-blankettregistrering-ocr-"
    "kontroll_exempelfil.txt": (
        (6, 353_300),
        (0, 0),
        [("00005", 353_300, 6)],
    ),
    "bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_langd_sv.txt": (
        (8, 1_440_000),
        (1, 50_000),
        [("00074", 190_000, 3), ("00075", 800_000, 4), ("00076", 400_000, 2)],
    ),
    "fabhed-variant_bankgiroinbetalningar_exempelfil_avtal-om-ocr-kontroll_checksiffra_"
    "langd_sv.txt": (
        (6, 1_040_000),
        (1, 50_000),
        [("00074", 190_000, 3), ("00075", 800_000, 4)],
    ),
    "pybgmax_multipayment.txt": ((4, 70_000), (0, 0), [("00036", 70_000, 4)]),
    "autogiro_exempelfil_bg-max-forma_sv.txt": ((4, 70_000), (0, 0), [("00036", 70_000, 4)]),
}


@pytest.fixture
def folder() -> Path:
    return shared_samples("payments", "bgmax")


def events_of(folder: Path, name: str) -> list[PaymentEvent]:
    with (folder / name).open("rb") as fh:
        return list(bgmax.parse(fh, name))


def deposits(folder: Path, name: str) -> list[tuple[str, int, int]]:
    """(serial, amount, count) of each TK15, read straight from the file's bytes."""
    raw = (folder / name).read_bytes().decode("latin-1").replace("\r", "")
    lines = raw.split("\n") if "\n" in raw else [raw[i : i + 80] for i in range(0, len(raw), 80)]
    return [(r[45:50], int(r[50:68]), int(r[71:79])) for r in lines if r.startswith("15")]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_gives_its_documented_figures(folder: Path, name: str) -> None:
    (payments, payment_sum), (deductions, deduction_sum), expected_deposits = EXPECTED[name]
    events = events_of(folder, name)
    paid = [e for e in events if e.kind == "payment.succeeded"]
    deducted = [e for e in events if e.kind == "payment.refunded"]
    assert (len(paid), sum(e.amount_minor for e in paid)) == (payments, payment_sum)
    assert (len(deducted), sum(e.amount_minor for e in deducted)) == (deductions, deduction_sum)
    assert deposits(folder, name) == expected_deposits


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_deposit_is_its_payments_less_deductions(folder: Path, name: str) -> None:
    """The events of each deposit (grouped by booking date and currency) add up to it."""
    net: Counter[tuple[str, str]] = Counter()
    for e in events_of(folder, name):
        sign = 1 if e.kind == "payment.succeeded" else -1
        net[e.occurred_at.date().isoformat(), e.currency] += sign * e.amount_minor
    assert sum(net.values()) == sum(amount for _, amount, _ in EXPECTED[name][2])


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
