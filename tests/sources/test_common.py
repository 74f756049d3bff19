"""The strict readers every webhook source uses: bounded JSON, amounts, references, timestamps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dynamics_bridge.errors import InputError, SignatureError
from dynamics_bridge.sources._common import (
    MAX_AMOUNT,
    ExponentNumber,
    JsonLimits,
    auth_header,
    header,
    load_json,
    parse_timestamp,
    reference,
    to_minor_units,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


class TestBoundedJson:
    def test_nesting_up_to_the_limit_is_parsed(self) -> None:
        assert load_json(nested(4), JsonLimits(max_depth=4)) == [[[[]]]]

    @pytest.mark.parametrize("depth", [5, 1000, 100_000])
    def test_nesting_past_the_limit_is_refused_before_parsing(self, depth: int) -> None:
        with pytest.raises(InputError, match="deeper than 4 levels") as caught:
            load_json(nested(depth), JsonLimits(max_depth=4))
        assert caught.value.field == "body"

    def test_unclosed_brackets_count_as_depth(self) -> None:
        with pytest.raises(InputError, match="deeper") as caught:
            load_json(b"[" * 5000)
        assert caught.value.field == "body"

    def test_brackets_inside_strings_are_text_not_nesting(self) -> None:
        text = '"' + "[" * 500 + '\\"{{{{"'
        assert load_json(('{"a": ' + text + "}").encode(), JsonLimits(max_depth=2)) == {
            "a": "[" * 500 + '"{{{{'
        }

    def test_the_default_depth_is_32(self) -> None:
        load_json(nested(32))
        with pytest.raises(InputError):
            load_json(nested(33))

    @pytest.mark.parametrize("literal", ["9" * 41, "-" + "9" * 40, "1." + "0" * 39])
    def test_a_number_literal_over_the_length_limit_is_refused_unconverted(self, literal) -> None:
        with pytest.raises(InputError, match="41 characters long") as caught:
            load_json(f'{{"amount": {literal}}}'.encode())
        assert caught.value.field == "body"

    def test_an_integer_of_5000_digits_is_refused_not_a_value_error(self) -> None:
        with pytest.raises(InputError, match="5000 characters"):
            load_json(b"[" + b"7" * 5000 + b"]")

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_nan_and_infinity_are_not_json_numbers(self, constant: str) -> None:
        with pytest.raises(InputError, match=f"{constant} is not a JSON number"):
            load_json(f'{{"amount": {constant}}}'.encode())

    def test_a_key_twice_in_one_object_is_refused(self) -> None:
        with pytest.raises(InputError, match="'status' appears twice"):
            load_json(b'{"status": "ERROR", "status": "PAID"}')

    def test_the_same_key_in_two_objects_is_fine(self) -> None:
        assert load_json(b'[{"id": 1}, {"id": 2}]') == [{"id": 1}, {"id": 2}]

    def test_an_unpaired_surrogate_escape_is_refused(self) -> None:
        with pytest.raises(InputError, match="unpaired surrogate"):
            load_json(b'{"ref": "100\\ud800"}')

    def test_a_paired_surrogate_escape_is_one_character(self) -> None:
        assert load_json(b'{"m": "\\ud83d\\ude00"}') == {"m": "\U0001f600"}

    def test_decimals_are_exact_and_exponent_forms_are_marked(self) -> None:
        data = load_json(b'{"a": 250.10, "b": 2.5e2, "c": 100}')
        assert (data["a"], type(data["a"])) == (Decimal("250.10"), Decimal)
        assert isinstance(data["b"], ExponentNumber)
        assert data["c"] == 100


class TestAmounts:
    @pytest.mark.parametrize(
        ("amount", "minor"),
        [
            ("250.00", 25000),
            ("250", 25000),
            (" 250.5 ", 25050),
            (250, 25000),
            (Decimal("250.0"), 25000),
            (250.1, 25010),  # shortest repr, never 25009
            ("0", 0),
            ("922337203685477", 92233720368547700),
            (Decimal("922337203685477.00"), 92233720368547700),
        ],
    )
    def test_plain_decimals_in_range_become_ore(self, amount, minor: int) -> None:
        assert to_minor_units(amount, path="amount") == minor

    @pytest.mark.parametrize(
        ("amount", "why"),
        [
            ("1e3", "not a plain decimal"),
            ("1E3", "not a plain decimal"),
            (ExponentNumber("1e3"), "exponent"),
            (ExponentNumber("-1e-999999999"), "exponent"),
            ("NaN", "not a plain decimal"),
            ("Infinity", "not a plain decimal"),
            (Decimal("NaN"), "not a finite number"),
            (Decimal("Infinity"), "not a finite number"),
            (float("nan"), "not a finite number"),
            (1e16, "exponent"),
            ("abc", "not a plain decimal"),
            ("١٠٠", "not a plain decimal"),
            ("１００", "not a plain decimal"),
            ("1_000", "not a plain decimal"),
            ("+100", "not a plain decimal"),
            ("100,00", "not a plain decimal"),
            ("9" * 5000, "not a plain decimal"),
            (10**30, "beyond 922,337,203,685,477"),
            (2**63, "beyond"),
            # Compared as numbers: no str() of 5,000 digits (pytest's own id would fail on it).
            pytest.param(10**5000, "beyond", id="int-of-5001-digits"),
            ("922337203685477.01", "beyond"),
            (Decimal("1E+400"), "beyond"),
            ("12.345", "fractions of an öre"),
            (Decimal("0.001"), "fractions of an öre"),
            ("-250.00", "must not be negative"),
            (True, "must be a number, got a boolean"),
            ([250], "must be a number, got an array"),
            ({"v": 250}, "must be a number, got an object"),
            (None, "must be a number, got null"),
        ],
    )
    def test_anything_else_is_refused_naming_the_field(self, amount, why: str) -> None:
        with pytest.raises(InputError, match=why) as caught:
            to_minor_units(amount, path="event.data.amount")
        assert caught.value.field == "event.data.amount"

    def test_a_reversal_may_be_negative_but_not_beyond_the_range(self) -> None:
        assert to_minor_units("-75.00", path="a", magnitude=True) == 7500
        with pytest.raises(InputError, match="beyond"):
            to_minor_units(-(MAX_AMOUNT + 1), path="a", magnitude=True)


class TestReferences:
    @pytest.mark.parametrize(
        ("value", "read"), [("100234", "100234"), (" 100234 ", "100234"), (100234, "100234")]
    )
    def test_plain_ascii_references_are_read(self, value, read: str) -> None:
        assert reference(value, "ref") == read

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("١٠٠٢٣٤", "U+0661 ARABIC-INDIC DIGIT ONE at position 1, a digit 1 of another script"),
            ("१००२३४", "U+0967 DEVANAGARI DIGIT ONE at position 1, a digit 1"),
            ("１００２３４", "U+FF11 FULLWIDTH DIGIT ONE at position 1, which looks like '1'"),
            ("100\u200b234", "U+200B ZERO WIDTH SPACE at position 4"),
            ("\u202e432001", "U+202E RIGHT-TO-LEFT OVERRIDE at position 1"),
            ("100234\x00", "U+0000 at position 7"),
            ("100234\n", "U+000A at position 7"),
            ("100234\u0301", "U+0301 COMBINING ACUTE ACCENT at position 7"),
            ("\ufeff100234", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
            ("   ", "is empty"),
            ("9" * 65, "longer than 64"),
            (10**64, "longer than 64"),
            (-5, "must not be negative"),
            ({"customer_no": 1}, "must be a string or an integer, got an object"),
            ([1], "got an array"),
            (True, "got a boolean"),
            (1.5, "got a number"),
        ],
    )
    def test_anything_not_plain_ascii_is_refused_never_normalised(self, value, says) -> None:
        with pytest.raises(InputError) as caught:
            reference(value, "payeePaymentReference")
        assert caught.value.field == "payeePaymentReference"
        assert says in str(caught.value)


class TestTimestamps:
    @pytest.mark.parametrize(
        ("text", "utc"),
        [
            ("2026-11-02T08:15:09.540+0100", "2026-11-02T07:15:09.540000+00:00"),
            ("2026-11-02T08:15:09Z", "2026-11-02T08:15:09+00:00"),
            ("2026-11-04 09:12:40", "2026-11-04T09:12:40+00:00"),
        ],
    )
    def test_provider_forms_become_utc(self, text: str, utc: str) -> None:
        assert parse_timestamp(text, path="datePaid").isoformat() == utc

    @pytest.mark.parametrize(
        "text",
        [
            "9999-12-31T23:59:59-23:59",  # OverflowError moving it to UTC
            "0001-01-01T00:00:00+23:59",
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "２０２６-11-02T08:15:09Z",
            "2026-11-02T08:15:09\x00",
            "NaN",
            "2" * 5000,
            "",
            1790000000,
            None,
        ],
    )
    def test_anything_else_is_refused_naming_the_field(self, text) -> None:
        with pytest.raises(InputError) as caught:
            parse_timestamp(text, path="datePaid")
        assert caught.value.field == "datePaid"


class TestHeaders:
    def test_look_up_ignores_case(self) -> None:
        assert header({"content-TYPE": "application/json"}, "Content-Type") == "application/json"

    def test_an_authentication_header_in_two_spellings_is_refused(self) -> None:
        headers = {"Billogram-Signature": "aa", "billogram-signature": "bb"}
        with pytest.raises(SignatureError, match="appears 2 times"):
            auth_header(headers, "Billogram-Signature", provider="billogram")

    def test_an_authentication_header_once_is_read(self) -> None:
        assert auth_header({"X-Id": "v"}, "x-id", provider="swish") == "v"
        assert auth_header({}, "x-id", provider="swish") is None
