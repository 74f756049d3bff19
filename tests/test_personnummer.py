"""Personnummer: what we accept, what we refuse, and that a full number never shows in output.

Numbers here are test numbers: 191212121212 ("Tolvan Tolvansson", the well-known Luhn-valid
example), serials 980-999 (Skatteverket's range for test numbers) and 701063-2391, Skatteverket's
example samordningsnummer.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.personnummer import (
    Personnummer,
    luhn_check_digit,
    luhn_valid,
    mask,
    mask_text,
)

TODAY = date(2025, 6, 15)


def parse(raw: str, today: date = TODAY) -> Personnummer:
    return Personnummer.parse(raw, today=today)


def with_check(nine: str) -> str:
    return nine + str(luhn_check_digit(nine))


# --- accepted forms, normalised to 12 digits -------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["191212121212", "19121212-1212", "121212+1212", " 121212 + 1212 ", "\t1912121212 12\n"]
)
def test_every_accepted_form_normalises_to_twelve_digits(raw: str) -> None:
    # Tolvan was born in 1912: 100 or older, so the 10-digit form carries '+'.
    assert parse(raw).digits == "191212121212"


def test_ten_digits_without_a_separator_are_read_as_under_a_hundred() -> None:
    assert parse("1212121212").digits == "201212121212"


def test_str_is_the_twelve_digit_form_for_storage_and_the_wire() -> None:
    assert str(parse("121212+1212")) == "191212121212"


# --- century rules for the 10-digit form -----------------------------------------------------


def test_ten_digits_take_the_latest_century_that_is_not_in_the_future() -> None:
    # Born 2005-01-01: 20 years old on TODAY, not 120.
    assert parse(with_check("050101980")).digits.startswith("2005")


def test_ten_digits_for_a_birthday_later_this_year_mean_a_hundred_years_ago() -> None:
    # "250701" is after TODAY (2025-06-15), so the person was born in 1925.
    assert parse(with_check("250701980")).digits.startswith("1925")


def test_ten_digits_born_today_are_this_year() -> None:
    assert parse(with_check("250615980")).digits.startswith("2025")


def test_plus_means_a_hundred_years_older_than_the_dash_form() -> None:
    assert parse("121212-1212").digits[:4] == "2012"
    assert parse("121212+1212").digits[:4] == "1912"


def test_samordningsnummer_century_is_judged_on_the_real_birth_day() -> None:
    # Born 2025-06-05 (day 65 = 5 + 60): earlier than TODAY, so 2025, not 1925.
    assert parse(with_check("250665980")).digits.startswith("2025")
    # Born 2025-06-25: later than TODAY, so 1925.
    assert parse(with_check("250685980")).digits.startswith("1925")


def test_plus_is_refused_in_the_twelve_digit_form() -> None:
    with pytest.raises(InputError, match=r"'\+' is only used in the 10-digit form"):
        parse("19121212+1212")


@pytest.mark.parametrize("century", ["17", "21", "99"])
def test_a_twelve_digit_number_starts_with_18_19_or_20(century: str) -> None:
    nine = "121212121"
    with pytest.raises(InputError, match="century must be 18, 19 or 20"):
        parse(f"{century}{nine}{luhn_check_digit(nine)}")


# --- Luhn, real dates, samordningsnummer -----------------------------------------------------


def test_luhn_check_digit_matches_the_published_example() -> None:
    assert luhn_check_digit("121212121") == 2
    assert luhn_valid("1212121212")
    assert not luhn_valid("1212121213")


def test_a_wrong_check_digit_is_refused() -> None:
    with pytest.raises(InputError, match="check digit wrong"):
        parse("191212121213")


@pytest.mark.parametrize(
    "nine",
    [
        "810230980",  # 30 February
        "811300980",  # month 13
        "810100980",  # day 0
        "010229980",  # 29 February 2001 (not a leap year)
        "810192980",  # day 92: beyond a samordningsnummer's 61-91
    ],
)
def test_a_date_that_does_not_exist_is_refused(nine: str) -> None:
    with pytest.raises(InputError, match="no such date"):
        parse("19" + with_check(nine))


def test_29_february_in_a_leap_year_is_a_real_date() -> None:
    assert parse("20" + with_check("040229980")).birth_date == date(2004, 2, 29)


def test_a_birth_date_after_today_is_refused() -> None:
    with pytest.raises(InputError, match="birth date after today"):
        parse("20" + with_check("250701980"))


def test_samordningsnummer_adds_sixty_to_the_day() -> None:
    number = parse("701063-2391")
    assert number.digits == "197010632391"
    assert number.is_coordination_number
    assert number.birth_date == date(1970, 10, 3)


def test_an_ordinary_number_is_not_a_samordningsnummer() -> None:
    number = parse("191212121212")
    assert not number.is_coordination_number
    assert number.birth_date == date(1912, 12, 12)


@pytest.mark.parametrize(
    "raw", ["", "abc", "19121212121", "1912121212123", "121212_1212", "12121212-12", "١٢١٢١٢١٢١٢"]
)
def test_anything_not_shaped_like_a_personnummer_is_refused(raw: str) -> None:
    with pytest.raises(InputError, match="not a personnummer"):
        parse(raw)


def test_errors_name_the_field_and_never_repeat_the_full_number() -> None:
    for raw in ["191212121213", "19810230" + "9801", "20" + with_check("250701980")]:
        with pytest.raises(InputError) as caught:
            parse(raw)
        assert caught.value.field == "personnummer"
        assert raw not in str(caught.value)
        assert raw[-4:] not in str(caught.value)


# --- masking ---------------------------------------------------------------------------------


def test_mask_keeps_the_birth_date_and_hides_the_last_four() -> None:
    assert mask("191212121212") == "19121212-****"
    assert mask("121212-1212") == "121212-****"


def test_mask_hides_everything_in_a_value_that_is_not_a_number_of_known_length() -> None:
    assert mask("1234") == "****"


def test_repr_and_masked_never_show_the_serial() -> None:
    number = parse("191212121212")
    assert number.masked == "19121212-****"
    assert "1212121212" not in repr(number)
    assert repr(number) == "Personnummer('19121212-****')"


# --- mask_text: every way a personnummer gets written is masked ------------------------------
# 19811218-9876 and 701063-2391 (samordningsnummer) pass the Luhn check; 121212+1212 is Tolvan.

WRITTEN_FORMS = [
    pytest.param("198112189876", "19811218-****", id="12 digits"),
    pytest.param("19811218-9876", "19811218-****", id="12 digits, hyphen"),
    pytest.param("8112189876", "811218-****", id="10 digits"),
    pytest.param("811218-9876", "811218-****", id="10 digits, hyphen"),
    pytest.param("121212+1212", "121212-****", id="10 digits, plus: 100 or older"),
    pytest.param("19811218 9876", "19811218-****", id="12 digits, space"),
    pytest.param("811218 9876", "811218-****", id="10 digits, space"),
    pytest.param("19811218\u00a09876", "19811218-****", id="no-break space"),
    pytest.param("811218 - 9876", "811218-****", id="spaced hyphen"),
    pytest.param("19811218\u20139876", "19811218-****", id="en dash"),
    pytest.param("811218\u20139876", "811218-****", id="10 digits, en dash"),
    pytest.param("19811218\u22129876", "19811218-****", id="minus sign U+2212"),
    pytest.param("19811218\u20149876", "19811218-****", id="em dash"),
    pytest.param("19811218\u20119876", "19811218-****", id="non-breaking hyphen"),
    pytest.param("19811218\uff0d9876", "19811218-****", id="fullwidth hyphen-minus"),
    pytest.param("811218\u00ad9876", "811218-****", id="soft hyphen"),
    pytest.param("811218\u200b9876", "811218-****", id="zero-width space"),
    pytest.param("1981.12.18-9876", "19811218-****", id="dotted date, 12 digits"),
    pytest.param("81.12.18-9876", "811218-****", id="dotted date, 10 digits"),
    pytest.param("811218.9876", "811218-****", id="dot before the number"),
    pytest.param("１９８１１２１８９８７６", "19811218-****", id="fullwidth digits"),
    pytest.param("１９８１１２１８－９８７６", "19811218-****", id="fullwidth digits and hyphen"),
    pytest.param(
        "\u0668\u0661\u0661\u0662\u0661\u0668\u0669\u0668\u0667\u0666",
        "811218-****",
        id="Arabic-Indic digits",
    ),
    pytest.param("pnr198112189876", "pnr19811218-****", id="glued to letters before"),
    pytest.param("ABC811218-9876x", "ABC811218-****x", id="glued to letters on both sides"),
    pytest.param("x8112189876y", "x811218-****y", id="10 digits glued on both sides"),
    pytest.param('{"pnr": "198112189876"}', '{"pnr": "19811218-****"}', id="JSON string"),
    pytest.param(
        '{"member":{"id":"811218-9876"}}', '{"member":{"id":"811218-****"}}', id="JSON, nested"
    ),
    pytest.param(
        "GET /api/members/198112189876?expand=all",
        "GET /api/members/19811218-****?expand=all",
        id="URL path",
    ),
    pytest.param(
        "/members?pnr=19811218-9876&x=1", "/members?pnr=19811218-****&x=1", id="URL query"
    ),
    pytest.param("/members?pnr=811218%2B9876", "/members?pnr=811218-****", id="URL, encoded plus"),
    pytest.param(
        "/members?pnr=811218%2D9876", "/members?pnr=811218-****", id="URL, encoded hyphen"
    ),
    pytest.param("701063-2391", "701063-****", id="samordningsnummer, 10 digits"),
    pytest.param("197010632391", "19701063-****", id="samordningsnummer, 12 digits"),
    pytest.param("008112189876", "00811218-****", id="zero-padded into a 12-digit field"),
    pytest.param(
        "mandate request for payer 8112189876 failed",
        "mandate request for payer 811218-**** failed",
        id="Autogiro payer number",
    ),
    pytest.param(
        "Fritextreferens '8112189876' (referenskod 3)",
        "Fritextreferens '811218-****' (referenskod 3)",
        id="free-text reference",
    ),
    pytest.param(
        "Referensen '811218-9876' klarade inte OCR-kontrollen",
        "Referensen '811218-****' klarade inte OCR-kontrollen",
        id="reference written with a hyphen",
    ),
    pytest.param(
        '"payeePaymentReference": "198112189876"',
        '"payeePaymentReference": "19811218-****"',
        id="12-digit payment reference",
    ),
    pytest.param("serial 19811218-9876", "serial 19811218-****", id="labelled, but with a hyphen"),
    pytest.param("pnr_ref=8112189876", "pnr_ref=811218-****", id="label naming a person"),
    pytest.param("konto 3300-8112189876", "konto 3300-811218-****", id="Nordea personkonto"),
]


@pytest.mark.parametrize(("text", "masked"), WRITTEN_FORMS)
def test_mask_text_masks_every_written_form(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "dash", [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Pd"]
)
def test_every_unicode_dash_counts_as_a_separator(dash: str) -> None:
    assert mask_text(f"811218{dash}9876") == "811218-****"


def test_two_numbers_in_one_line_are_both_masked() -> None:
    text = "a 191212121212 b 19121212-1212 c 121212+1212 d 1212121212 e"
    assert mask_text(text) == "a 19121212-**** b 19121212-**** c 121212-**** d 121212-**** e"


# --- mask_text: what only looks like one stays readable -----------------------------------

KEPT = [
    pytest.param("000000000012", id="BgMax bank serial"),
    pytest.param("bgmax.txt:14: BGC serial 000000000012, 250.00 SEK", id="serial in a log line"),
    pytest.param('{"provider_ref": "000230000111"}', id="serial in JSON"),
    pytest.param("bank serial 198112189876", id="plausible 12 digits labelled serial"),
    pytest.param('{"bankSerialNumber": "198112189876"}', id="camelCase serial key"),
    pytest.param("BGC-löpnummer 198112189876", id="Swedish serial label"),
    pytest.param("faktura nr 8112189876", id="invoice number, filler word skipped"),
    pytest.param("request_id=8112189876", id="request id"),
    pytest.param("Referensen '8112189876' klarade inte OCR-kontrollen", id="10-digit reference"),
    pytest.param('"payeePaymentReference": "8112189876"', id="10-digit reference key"),
    pytest.param("ocr=8112189876", id="OCR number"),
    pytest.param("556036-0793", id="organisation number: month 60 is no month"),
    pytest.param("005560360793", id="organisation number in Autogiro's 12 positions"),
    pytest.param("1231181189", id="Swish number"),
    pytest.param("198112189875", id="check digit wrong"),
    pytest.param("811232-9876", id="day 32"),
    pytest.param("19810229" + "9876", id="29 February in a year that has none"),
    pytest.param("218112189876", id="century 21"),
    pytest.param("1981121898760", id="13 digits"),
    pytest.param("811218-98765", id="five digits after the date"),
    pytest.param("amount 25000 invoice 10042 ocr 1002345", id="other lengths"),
    pytest.param("bgmax-a1b2c38112189876d4e5f6a7b8c9d0e1f2", id="inside an event id"),
    pytest.param("19811218-9876-4abc-a456-426614174000", id="inside a UUID"),
]


@pytest.mark.parametrize("text", KEPT)
def test_mask_text_leaves_numbers_that_are_not_personnummer(text: str) -> None:
    assert mask_text(text) == text


def test_a_label_given_for_a_whole_value_counts_as_the_word_before_it() -> None:
    assert mask_text("198112189876", label="bank_serial") == "198112189876"
    assert mask_text("8112189876", label="reference") == "8112189876"
    assert mask_text("8112189876", label="reason") == "811218-****"
    # Words in the text come first: the field's name does not reach past them.
    assert mask_text("payer 8112189876", label="bank_serial") == "payer 811218-****"


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    serial=st.integers(min_value=0, max_value=999),
    coordination=st.booleans(),
    twelve=st.booleans(),
    separator=st.sampled_from(["", "-", "+", " ", "\u2013", "\u2212", ".", "\u00a0", " - "]),
    before=st.text(alphabet="xyzåä .,;:(\"'", max_size=8),
    after=st.text(alphabet="xyzåä .,;:)\"'", max_size=8),
)
def test_any_valid_number_in_any_form_is_masked(
    born: date,
    serial: int,
    coordination: bool,
    twelve: bool,
    separator: str,
    before: str,
    after: str,
) -> None:
    day = born.day + (60 if coordination else 0)
    ten = with_check(f"{born:%y%m}{day:02d}{serial:03d}")
    date_part = (f"{born.year // 100}" if twelve else "") + ten[:6]
    text = f"{before}{date_part}{separator}{ten[6:]}{after}"
    assert mask_text(text) == f"{before}{date_part}-****{after}"


@given(digits=st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_twelve_digits_outside_the_three_centuries_are_never_masked(digits: str) -> None:
    if digits[:2] not in ("00", "18", "19", "20"):
        assert mask_text(digits) == digits


@given(nine=st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_a_ten_digit_ocr_reference_is_never_masked(nine: str) -> None:
    # An OCR number carries its own Luhn digit: 1 in 14 also looks like a personnummer.
    assert mask_text(f"OCR {with_check(nine)}") == f"OCR {with_check(nine)}"


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    serial=st.integers(min_value=980, max_value=999),
    coordination=st.booleans(),
)
def test_any_valid_number_round_trips_between_its_ten_and_twelve_digit_forms(
    born: date, serial: int, coordination: bool
) -> None:
    day = born.day + (60 if coordination else 0)
    nine = f"{born:%y%m}{day:02d}{serial}"
    twelve = f"{born.year // 100}{with_check(nine)}"
    separator = "+" if born <= TODAY.replace(year=TODAY.year - 100) else "-"  # 100 or older
    ten = f"{with_check(nine)[:6]}{separator}{with_check(nine)[6:]}"
    assert parse(twelve).digits == twelve
    assert parse(ten).digits == twelve
    assert parse(twelve).birth_date == born
    assert parse(twelve).is_coordination_number is coordination
