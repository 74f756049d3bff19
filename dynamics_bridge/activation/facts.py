"""Derived member facts: age and age band, tenure and tenure band, county and municipality,
member type and payment method, from the member's own columns.

Pure. Rules, segments and APSIS attributes use them as they use a column (``age_band`` in a
rule, ``computed: age_band`` for an attribute), so a welcome or a reminder can differ by age and
years of membership without a column the union has to keep up to date.

Where the member is registered comes from the county and municipality codes the SPAR address
refresh stores (``01``, ``0180``): ``county_code`` and ``municipality_code`` as stored, ``county``
and ``municipality`` their official names (:mod:`dynamics_bridge.activation.regions`), and
``region`` the county's name (a union's regions are counties unless it says otherwise). A code
not in the list gives the code and no name. ``member_type`` and ``payment_method`` are the words
of their choice columns, as the rules see them.

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
from dynamics_bridge.activation.regions import county_name, municipality_name
from dynamics_bridge.activation.rules import as_date
from dynamics_bridge.errors import InputError
from dynamics_bridge.personnummer import Personnummer

__all__ = ["band", "birth_date", "member_facts", "region_facts", "whole_years"]


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


def _code(value: Any, digits: int) -> str | None:
    """A region code as text: a string as stored (trimmed), a whole number zero-padded."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value).zfill(digits) if value >= 0 else None
    if isinstance(value, str):
        return value.strip() or None
    return None


def _word(value: Any) -> str | None:
    """A choice column's word (a value the choice set has no word for gives none)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def region_facts(member: Mapping[str, Any], facts: Facts) -> dict[str, str]:
    """County and municipality: the codes, and their names where the official list has them.
    Without a county code, the county is the municipality code's first two digits."""
    found: dict[str, str] = {}
    municipality = (
        _code(member.get(facts.municipality_column), 4) if facts.municipality_column else None
    )
    county = _code(member.get(facts.county_column), 2) if facts.county_column else None
    if county is None and municipality and len(municipality) == 4 and municipality.isdigit():
        county = municipality[:2]
    if county is not None:
        found["county_code"] = county
        name = county_name(county)
        if name is not None:
            found["county"] = name
            found["region"] = name
    if municipality is not None:
        found["municipality_code"] = municipality
        name = municipality_name(municipality)
        if name is not None:
            found["municipality"] = name
    return found


def member_facts(
    member: Mapping[str, Any], facts: Facts, today: date, *, method_column: str | None = None
) -> dict[str, Any]:
    """The derived facts of one member view (only those its sources give); ``method_column`` is
    ``segments.yaml``'s, the payment method's column."""
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
    found.update(region_facts(member, facts))
    for name, column in (
        ("member_type", facts.member_type_column),
        ("payment_method", method_column),
    ):
        word = _word(member.get(column)) if column else None
        if word is not None:
            found[name] = word
    return found
