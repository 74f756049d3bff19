"""Mutated, truncated or arbitrary Autogiro files raise only InputError naming FILE:LINE, and a
changed figure in any total is refused at the line that holds it."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources import autogiro
from tests.fixtures.bankgirot import build as fixtures
from tests.sources.test_autogiro import GOOD

FILES = [
    GOOD,
    fixtures.payment_spec(),
    fixtures.payment_spec_old(),
    fixtures.mandate_notices(),
    fixtures.mandate_notices_old(),
    fixtures.rejected(),
    fixtures.amendments(),
    fixtures.emandates(),
    fixtures.payment_extract(),
    fixtures.mandate_extract(),
]
LOCATED = re.compile(r"^m\.txt:[1-9][0-9]*$")


def parse_or_locate(data: bytes) -> None:
    """Either the file parses, or the one error it raises names the line."""
    location = "m.txt:1"
    try:
        list(autogiro.parse(io.BytesIO(data), "m.txt"))
    except InputError as exc:
        location = str(exc.location)
    assert LOCATED.match(location), location


mutation = st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=3))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(min_value=0, max_value=len(FILES) - 1),
    mutations=st.lists(mutation, min_size=1, max_size=4),
)
def test_mutated_files_fail_only_with_located_input_errors(which: int, mutations) -> None:
    data = bytearray(FILES[which])
    for position, replacement in mutations:
        at = position % len(data)
        data[at : at + len(replacement)] = replacement
    parse_or_locate(bytes(data))


@settings(max_examples=300)
@given(which=st.integers(min_value=0, max_value=len(FILES) - 1), cut=st.integers(min_value=0))
def test_truncated_files_fail_only_with_located_input_errors(which: int, cut: int) -> None:
    data = FILES[which]
    parse_or_locate(data[: cut % len(data)])


@settings(max_examples=150)
@given(junk=st.binary(max_size=400))
def test_arbitrary_bytes_fail_only_with_located_input_errors(junk: bytes) -> None:
    parse_or_locate(junk)


# Payment specification GOOD: line → the figure fields (1-based, inclusive) its record holds.
FIGURES = {
    2: [(51, 68), (72, 79)],  # TK15 amount, count
    8: [(51, 68), (72, 79)],  # TK16
    11: [(51, 68), (72, 79)],  # TK17
    13: [(15, 20), (21, 32), (33, 38), (39, 50), (51, 56), (57, 68)],  # TK09
}
FIGURE_DIGITS = [
    (line, position)
    for line, fields in FIGURES.items()
    for start, end in fields
    for position in range(start, end + 1)
]


@settings(max_examples=200)
@given(where=st.sampled_from(FIGURE_DIGITS), digit=st.integers(min_value=1, max_value=9))
def test_any_changed_figure_is_refused_at_its_line(where: tuple[int, int], digit: int) -> None:
    line, position = where
    records = GOOD.decode("latin-1").split("\r\n")
    text = records[line - 1]
    new = str((int(text[position - 1]) + digit) % 10)
    records[line - 1] = text[: position - 1] + new + text[position:]
    with pytest.raises(InputError) as caught:
        list(autogiro.parse(io.BytesIO("\r\n".join(records).encode("latin-1")), "m.txt"))
    assert caught.value.location == f"m.txt:{line}"
