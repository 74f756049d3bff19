"""Mutated, truncated or arbitrary BgMax files raise only InputError naming FILE:LINE, and a
changed figure in any deposit or end record is refused at the line that holds it."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources import bgmax
from tests.fixtures.bankgirot import build as fixtures
from tests.sources.test_bgmax import GOOD

FILES = [GOOD, fixtures.bgmax(), fixtures.bgmax_no_line_breaks(), fixtures.bgmax_two_currencies()]
LOCATED = re.compile(r"^m\.txt:[1-9][0-9]*$")


def parse_or_locate(data: bytes, buffer_limit: int = bgmax.BUFFER_LIMIT) -> None:
    """Either the file parses, or the one error it raises names the line."""
    location = "m.txt:1"
    try:
        list(bgmax.parse(io.BytesIO(data), "m.txt", buffer_limit=buffer_limit))
    except InputError as exc:
        location = str(exc.location)
    assert LOCATED.match(location), location


mutation = st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=3))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(min_value=0, max_value=len(FILES) - 1),
    mutations=st.lists(mutation, min_size=1, max_size=4),
    buffer_limit=st.sampled_from([1, bgmax.BUFFER_LIMIT]),
)
def test_mutated_files_fail_only_with_located_input_errors(which, mutations, buffer_limit) -> None:
    data = bytearray(FILES[which])
    for position, replacement in mutations:
        at = position % len(data)
        data[at : at + len(replacement)] = replacement
    parse_or_locate(bytes(data), buffer_limit)


@settings(max_examples=300)
@given(which=st.integers(min_value=0, max_value=len(FILES) - 1), cut=st.integers(min_value=0))
def test_truncated_files_fail_only_with_located_input_errors(which: int, cut: int) -> None:
    data = FILES[which]
    parse_or_locate(data[: cut % len(data)])


@settings(max_examples=150)
@given(junk=st.binary(max_size=400))
def test_arbitrary_bytes_fail_only_with_located_input_errors(junk: bytes) -> None:
    parse_or_locate(junk)


# GOOD: the deposit (line 8: amount 51-68, count 72-79) and the end record (line 9: 3-34).
FIGURE_DIGITS = [(8, p) for p in [*range(51, 69), *range(72, 80)]] + [(9, p) for p in range(3, 35)]


@settings(max_examples=200)
@given(where=st.sampled_from(FIGURE_DIGITS), digit=st.integers(min_value=1, max_value=9))
def test_any_changed_figure_is_refused_at_its_line(where: tuple[int, int], digit: int) -> None:
    line, position = where
    records = GOOD.decode("latin-1").split("\r\n")
    text = records[line - 1]
    new = str((int(text[position - 1]) + digit) % 10)
    records[line - 1] = text[: position - 1] + new + text[position:]
    with pytest.raises(InputError) as caught:
        list(bgmax.parse(io.BytesIO("\r\n".join(records).encode("latin-1")), "m.txt"))
    assert caught.value.location == f"m.txt:{line}"
