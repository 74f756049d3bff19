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


class TestLeadingZeros:
    """One rule for every scheme: check digits are checked as written, and the member number
    is what remains with its leading zeros dropped (sources/ocr.py)."""

    @pytest.mark.parametrize("scheme", ["luhn", "plain"])
    @given(
        member=st.integers(min_value=1, max_value=10**12).map(str),
        zeros=st.integers(min_value=1, max_value=12),
    )
    def test_zero_padding_names_the_same_member(self, scheme, member: str, zeros: int) -> None:
        padded = "0" * zeros + make_reference(member, scheme)
        ref, problem = member_ref_for(padded, scheme)
        assert problem is None
        assert (ref.kind.value, ref.value) == ("member_number", member)

    @given(
        member=st.integers(min_value=1, max_value=10**12).map(str),
        zeros=st.integers(min_value=1, max_value=12),
    )
    def test_luhn_and_plain_agree_on_a_padded_luhn_valid_reference(
        self, member: str, zeros: int
    ) -> None:
        # The defect: "000" + a Luhn reference named member "000<member>" under luhn but
        # "<member><check digit>" under plain; now both drop the zeros the same way.
        padded = "0" * zeros + make_reference(member, "luhn")
        assert member_ref_for(padded, "luhn")[0].value == member
        assert member_ref_for(padded, "plain")[0].value == padded.lstrip("0")

    @given(
        member=st.integers(min_value=1, max_value=10**12).map(str),
        zeros=st.integers(min_value=1, max_value=9),
    )
    def test_the_length_digit_counts_the_zeros_as_written(self, member: str, zeros: int) -> None:
        padded = "0" * zeros + make_reference(member, "luhn_length")
        assert member_ref_for(padded, "luhn_length")[1] == OCR_CHECK_FAILED

    @pytest.mark.parametrize(("scheme", "reference"), [("luhn", "00"), ("plain", "0000")])
    def test_a_member_part_of_only_zeros_names_no_member(self, scheme, reference) -> None:
        ref, problem = member_ref_for(reference, scheme)
        assert (ref.kind.value, ref.value, problem) == ("ocr", reference, OCR_CHECK_FAILED)

    @pytest.mark.parametrize("member", ["0123", "", "12a"])
    def test_no_reference_is_made_for_a_member_number_no_reference_could_name(self, member) -> None:
        with pytest.raises(ValueError, match="member number"):
            make_reference(member)
