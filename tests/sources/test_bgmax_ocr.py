"""OCR schemes: a reference names a member only when it passes the union's check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamics_bridge.personnummer import luhn_valid
from dynamics_bridge.sources.ocr import OCR_CHECK_FAILED, luhn_ok, make_reference, member_ref_for


@pytest.mark.parametrize("scheme", ["luhn", "luhn_length", "plain"])
@given(member=st.integers(min_value=1, max_value=10**12).map(str))
def test_a_made_reference_reads_back_as_its_member(scheme, member: str) -> None:
    ref, problem = member_ref_for(make_reference(member, scheme), scheme)
    assert problem is None
    assert (ref.kind.value, ref.value) == ("member_number", member)


@given(digits=st.text(alphabet="0123456789", min_size=2, max_size=30))
def test_the_table_luhn_agrees_with_the_digit_by_digit_one(digits: str) -> None:
    assert luhn_ok(digits) == luhn_valid(digits)


def test_known_luhn_numbers() -> None:
    assert luhn_ok("79927398713")  # the textbook example
    assert not luhn_ok("79927398710")


def test_a_wrong_check_digit_keeps_the_whole_reference() -> None:
    ref, problem = member_ref_for("1000020")
    assert (ref.kind.value, ref.value, problem) == ("ocr", "1000020", OCR_CHECK_FAILED)


@pytest.mark.parametrize("scheme", ["luhn", "luhn_length", "plain"])
def test_letters_fail_every_scheme(scheme) -> None:
    assert member_ref_for("FAKTNR158", scheme)[1] == OCR_CHECK_FAILED


def test_the_length_digit_is_checked() -> None:
    good = make_reference("4711", "luhn_length")
    tampered = good[:-2] + "9" + good[-1]
    assert member_ref_for(tampered, "luhn_length")[1] == OCR_CHECK_FAILED
