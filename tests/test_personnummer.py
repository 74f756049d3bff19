"""Personnummer: what we accept, what we refuse, and that a full number never shows in output.

Numbers here are test numbers: 191212121212 ("Tolvan Tolvansson", the well-known Luhn-valid
example), serials 980-999 (Skatteverket's range for test numbers) and 701063-2391, Skatteverket's
example samordningsnummer.
"""

from __future__ import annotations

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


def test_mask_text_masks_every_form_in_free_text() -> None:
    text = "a 191212121212 b 19121212-1212 c 121212+1212 d 1212121212 e"
    masked = mask_text(text)
    assert "1212121212" not in masked.replace("-", "").replace("+", "")
    assert masked.count("-****") == 4


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
