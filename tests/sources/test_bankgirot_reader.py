"""The tolerant reader: every quirk real Bankgirot files have (reference payments.md §0)."""

from __future__ import annotations

import io

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources.bankgirot import decode_line, read_records, signed_amount
from tests.sources.bankgirot_records import record

A = record("01", (3, "BGMAX"))
B = record("05", (3, "0009912346"), (23, "SEK"))


def read(data: bytes) -> list[tuple[int, str]]:
    return [(r.line, r.text) for r in read_records(io.BytesIO(data), "f")]


def test_crlf_lf_and_no_line_breaks_give_the_same_records() -> None:
    expected = [A, B]
    assert [t for _, t in read(f"{A}\r\n{B}\r\n".encode())] == expected
    assert [t for _, t in read(f"{A}\n{B}".encode())] == expected
    assert [t for _, t in read(f"{A}{B}".encode())] == expected


def test_short_lines_are_padded_and_blank_overflow_is_ignored() -> None:
    data = f"{A.rstrip()}\r\n{B}      \r\n".encode()
    assert [t for _, t in read(data)] == [A, B]


def test_text_past_column_80_is_an_error_naming_the_line() -> None:
    with pytest.raises(InputError) as caught:
        read(f"{A}\r\n{B}EXTRA\r\n".encode())
    assert caught.value.location == "f:2"


def test_title_lines_and_empty_lines_are_skipped_but_lines_keep_their_numbers() -> None:
    data = f"Exempelfil \u2013 BgMax\r\n\r\n{A}\r\n{B}\r\n\r\n\r\n".encode("cp1252")
    assert [n for n, _ in read(data)] == [3, 4]


def test_tabs_count_as_blanks() -> None:
    assert read(f"{A[:40]}\t{A[41:]}".encode())[0][1] == A


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("Plåt".encode("latin-1"), "Plåt"),
        ("Plåt – AB".encode("cp1252"), "Plåt – AB"),
        ("Plåt".encode(), "Plåt"),
        ("Plåt".encode().decode("latin-1").encode(), "Plåt"),  # double-encoded UTF-8
    ],
)
def test_encodings_are_recognised(raw: bytes, text: str) -> None:
    assert decode_line(raw) == text


def test_large_files_are_read_as_a_stream() -> None:
    body = (f"{A}\r\n" * 50_000).encode()
    records = read_records(io.BytesIO(body), "big")
    assert next(records).line == 1
    assert sum(1 for _ in records) == 49_999


@pytest.mark.parametrize(
    ("raw", "value"),
    [("000000012000", 12000), ("00000012000å", -120000), ("0000000120003N"[-12:], -1200035)],
)
def test_overpunch_amounts_are_negative(raw: str, value: int) -> None:
    rec = next(read_records(io.BytesIO(record("09", (29, raw)).encode()), "f"))
    assert signed_amount(rec, 29, 40, "sum") == value


def test_digits_outside_ascii_are_not_numbers() -> None:
    """Found by the property tests: '²'.isdigit() is True, but int('²') fails."""
    from dynamics_bridge.errors import InputError as Error
    from dynamics_bridge.sources.bankgirot import number

    rec = next(read_records(io.BytesIO(record("15", (51, "²" + "0" * 17)).encode()), "f"))
    with pytest.raises(Error, match="not a number"):
        number(rec, 51, 68, "amount")
