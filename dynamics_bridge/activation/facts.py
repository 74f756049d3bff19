"""Derived member facts: age and age band, tenure and tenure band, from the member's own columns.

Pure. Rules, segments and APSIS attributes use them as they use a column (``age_band`` in a
rule, ``computed: age_band`` for an attribute), so a welcome or a reminder can differ by age and
years of membership without a column the union has to keep up to date.

The birth date comes from a birth-date column when the mapping names one and it holds a date,
else from the personnummer column: the date it encodes, a samordningsnummer's day less 60. The
personnummer itself never leaves this function: only the age and the band do. A source that is
empty or does not parse gives no fact (a rule on it matches nothing, as for an empty column).

Ages and years are whole years on the calendar (a birthday on 29 February counts from 1 March in
other years, the later of the two choices, so nobody is a year older a day early).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from dynamics_bridge.activation.config import Facts
from dynamics_bridge.activation.rules import as_date
from dynamics_bridge.errors import InputError
from dynamics_bridge.personnummer import Personnummer

__all__ = ["band", "birth_date", "member_facts", "whole_years"]


def whole_years(since: date, today: date) -> int:
    """Completed years from ``since`` to ``today`` (0 before the first anniversary)."""
    years = today.year - since.year
    if (today.month, today.day) < (since.month, since.day):
        years -= 1
    return years


def band(value: int, bounds: Sequence[int]) -> str:
    """The band ``value`` falls in, named by its first and last value: bounds ``[18, 26, 66]``
    give ``0-17``, ``18-25``, ``26-65`` and ``66+``; a band of one value is that value."""
    low = 0
    for bound in bounds:
        if value < bound:
            return str(low) if bound - 1 == low else f"{low}-{bound - 1}"
        low = bound
    return f"{low}+"


def birth_date(member: Mapping[str, Any], facts: Facts, today: date) -> date | None:
    """The member's birth date: the birth-date column, else the personnummer (or None)."""
    if facts.birth_date_column:
        born = as_date(member.get(facts.birth_date_column))
        if born is not None:
            return born
    if facts.personnummer_column:
        raw = member.get(facts.personnummer_column)
        if isinstance(raw, str) and raw.strip():
            try:
                return Personnummer.parse(raw, today=today).birth_date
            except InputError:
                return None
    return None


def member_facts(member: Mapping[str, Any], facts: Facts, today: date) -> dict[str, Any]:
    """The derived facts of one member view (only those its sources give)."""
    found: dict[str, Any] = {}
    born = birth_date(member, facts, today)
    if born is not None and born <= today:
        age = whole_years(born, today)
        found["age"] = age
        found["age_band"] = band(age, facts.age_bands)
    joined = as_date(member.get(facts.joined_column)) if facts.joined_column else None
    if joined is not None and joined <= today:
        years = whole_years(joined, today)
        found["tenure_years"] = years
        found["tenure_band"] = band(years, facts.tenure_bands)
    return found
