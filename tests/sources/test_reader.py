"""The tolerant reader: every quirk real Bankgirot files have (reference payments.md §0)."""

from __future__ import annotations

import io
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources import bankgirot
from dynamics_bridge.sources.bankgirot import (
    Occurrences,
    RecordReader,
    day,
    decode_line,
    digits,
    parse_date,
    signed_digits,
)
from tests.fixtures.bankgirot import HERE, record
from tests.fixtures.bankgirot.build import FIXTURES

A = record("01", (3, "BGMAX"))
B = record("05", (3, "0009912346"), (23, "SEK"))
C = record("20", (3, "0000000000"), (13, "Plåt".rjust(25)))


def read(data: bytes) -> list[tuple[int, str]]:
    return list(RecordReader(io.BytesIO(data), "f"))


def texts(data: bytes) -> list[str]:
    return [text for _, text in read(data)]


class TestLineBreaks:
    def test_crlf_lf_cr_and_no_line_breaks_give_the_same_records(self) -> None:
        expected = [A, B]
        assert texts(f"{A}\r\n{B}\r\n".encode()) == expected
        assert texts(f"{A}\n{B}".encode()) == expected
        assert texts(f"{A}\r{B}\r".encode()) == expected
        assert texts(f"{A}{B}".encode()) == expected

    def test_without_line_breaks_utf8_records_are_80_characters_not_bytes(self) -> None:
        assert texts(f"{C}{A}".encode()) == [C, A]

    def test_a_carriage_return_inside_a_record_names_its_line(self) -> None:
        with pytest.raises(InputError) as caught:
            read(f"{A}\r\n{B[:10]}\r{B[11:]}\r\n".encode())
        assert caught.value.location == "f:2"

    def test_a_line_that_never_ends_is_refused_before_it_fills_memory(self) -> None:
        with pytest.raises(InputError, match="no line break"):
            read(f"{A}\n".encode() + b" " * (bankgirot.CHUNK + bankgirot.MAX_LINE + 10))


class TestShapes:
    def test_short_lines_are_padded_and_blank_overflow_is_ignored(self) -> None:
        assert texts(f"{A.rstrip()}\r\n{B}      \r\n".encode()) == [A, B]

    def test_text_past_column_80_is_an_error_naming_the_line(self) -> None:
        with pytest.raises(InputError) as caught:
            read(f"{A}\r\n{B}EXTRA\r\n".encode())
        assert caught.value.location == "f:2"

    def test_title_lines_and_empty_lines_are_skipped_but_lines_keep_their_numbers(self) -> None:
        data = f"Exempelfil – BgMax\r\n\r\n{A}\r\n\r\n{B}\r\n\r\n\r\n".encode("cp1252")
        assert [n for n, _ in read(data)] == [3, 5]

    def test_tabs_count_as_blanks(self) -> None:
        assert texts(f"{A[:40]}\t{A[41:]}".encode()) == [A]

    def test_a_byte_order_mark_is_not_a_title_line(self) -> None:
        assert texts(b"\xef\xbb\xbf" + f"{A}\r\n{B}\r\n".encode()) == [A, B]

    def test_an_empty_file_has_no_records(self) -> None:
        assert read(b"") == []
        assert read(b"\r\n\r\n") == []


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


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s.encode("cp1252"),
        lambda s: s.encode("utf-8"),
        lambda s: s.encode("utf-8").decode("latin-1").encode("utf-8"),
    ],
    ids=["cp1252", "utf-8", "double-encoded"],
)
def test_whole_files_in_each_encoding_read_the_same(encode) -> None:
    assert texts(encode(f"{A}\r\n{C}\r\n")) == [A, C]


@settings(max_examples=60, deadline=None)
@given(
    chunk=st.integers(min_value=1, max_value=400),
    ending=st.sampled_from(["\r\n", "\n", "\r", ""]),
    title=st.booleans(),
)
def test_chunk_boundaries_change_nothing(chunk: int, ending: str, title: bool) -> None:
    """Records, line numbers and anchors come out the same however the bytes arrive."""
    head = "Exempelfil – titel" + (ending or "\n") if title and ending else ""
    data = (head + ending.join([A, C, B, A]) + ending).encode("cp1252")
    expected = read(data)
    original = bankgirot.CHUNK
    bankgirot.CHUNK = chunk
    try:
        assert read(data) == expected
    finally:
        bankgirot.CHUNK = original


def test_a_seekable_stream_can_be_read_again_from_an_anchor() -> None:
    data = ("Titel\r\n" + "\r\n".join([A, B, C, B]) + "\r\n").encode("cp1252")
    original = bankgirot.CHUNK
    bankgirot.CHUNK = 100  # a chunk per record or so, so the anchor is not the file's start
    try:
        stream = io.BytesIO(data)
        reader = RecordReader(stream, "f")
        seen = []
        for line, text in reader:
            seen.append((line, text, reader.anchor))
        line, _, anchor = seen[2]
        assert anchor is not None
        assert anchor.offset > 0
        stream.seek(anchor.offset)
        again = [r for r in RecordReader(stream, "f", resume=anchor) if r[0] >= line]
        assert again == [(n, t) for n, t, _ in seen[2:]]
    finally:
        bankgirot.CHUNK = original


def test_large_files_are_read_as_a_stream() -> None:
    body = (f"{A}\r\n" * 50_000).encode()
    records = iter(RecordReader(io.BytesIO(body), "big"))
    assert next(records)[0] == 1
    assert sum(1 for _ in records) == 49_999


class TestFields:
    @pytest.mark.parametrize(
        ("raw", "value"),
        [("000000012000", 12000), ("00000012000å", -120000), ("00000120003N", -1200035)],
    )
    def test_overpunch_amounts_are_negative(self, raw: str, value: int) -> None:
        assert signed_digits(raw, "f", 1, "sum", 29, 40) == value

    def test_digits_outside_ascii_are_not_numbers(self) -> None:
        """Found by the property tests: '²'.isdigit() is True, but int('²') fails."""
        with pytest.raises(InputError, match="not a number") as caught:
            digits("²" + "0" * 17, "f", 7, "amount", 51, 68)
        assert (caught.value.location, caught.value.field) == ("f:7", "amount")

    def test_impossible_dates_are_none_and_real_ones_are_stockholm_midnight(self) -> None:
        assert parse_date("20080631") is None
        assert parse_date("2008063X") is None
        assert parse_date("20080630") == date(2008, 6, 30)
        assert day("20260701").isoformat() == "2026-07-01T00:00:00+02:00"  # summer time
        assert day("20261201").isoformat() == "2026-12-01T00:00:00+01:00"


class TestOccurrences:
    def test_repeats_are_numbered_even_when_not_adjacent(self) -> None:
        count = Occurrences().next
        assert [count(k) for k in "abaab"] == [1, 1, 2, 3, 2]

    def test_memory_is_bounded_yet_close_repeats_are_still_counted(self) -> None:
        occurrences = Occurrences(window=10)
        for i in range(1000):
            occurrences.next(str(i))
        assert occurrences.next("995") == 2  # within the window
        assert len(occurrences._current) + len(occurrences._previous) <= 21


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_files_are_what_the_builder_writes(name: str) -> None:
    """Regenerate with ``python -m tests.fixtures.bankgirot.build`` after changing the builder."""
    assert (HERE / name).read_bytes() == FIXTURES[name]()
