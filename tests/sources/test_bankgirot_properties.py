"""Mutated and truncated files raise only InputError with a location, never anything else."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.sources import autogiro, bgmax
from tests.sources import test_autogiro, test_bgmax

FILES = {"autogiro": test_autogiro.GOOD, "bgmax": test_bgmax.GOOD}
PARSERS = {"autogiro": autogiro.parse, "bgmax": bgmax.parse}


def parse_all(kind: str, data: bytes) -> None:
    """Either the file parses, or the error names where in it the problem is."""
    location = "m.txt:ok"
    try:
        list(PARSERS[kind](io.BytesIO(data), "m.txt"))
    except InputError as exc:
        location = exc.location or ""
    assert location.startswith("m.txt:")


mutation = st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=3))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(FILES)), mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_files_fail_only_with_located_input_errors(kind, mutations) -> None:
    data = bytearray(FILES[kind])
    for position, replacement in mutations:
        at = position % len(data)
        data[at : at + len(replacement)] = replacement
    parse_all(kind, bytes(data))


@settings(max_examples=200)
@given(kind=st.sampled_from(sorted(FILES)), cut=st.integers(min_value=0))
def test_truncated_files_fail_only_with_located_input_errors(kind, cut) -> None:
    data = FILES[kind]
    parse_all(kind, data[: cut % len(data)])


@settings(max_examples=100)
@given(kind=st.sampled_from(sorted(FILES)), junk=st.binary(max_size=200))
def test_arbitrary_bytes_fail_only_with_located_input_errors(kind, junk) -> None:
    parse_all(kind, junk)
