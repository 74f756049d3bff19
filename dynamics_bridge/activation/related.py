"""Values from the tables related to a member: the employer's industry, the local branch, the
latest membership row, how many events the member registered for in the last year.

Pure. ``dataverse.yaml`` ``related`` names the tables (:class:`~dynamics_bridge.mapping.models.
RelatedTable`); a store reads their rows in bulk (the Dataverse store by id lists or whole
tables, the in-memory fake from its lists) and :func:`assemble` turns them into each member's
values, named ``<table name>.<value name>`` (``employer.industry``, ``membership.type``,
``events.count``), so rules, attributes, trigger fields and texts use them as they use a column.

A member with no related row has no such value (a rule on it matches nothing, as for an empty
column), except a count, which is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import Any

from dynamics_bridge.activation.rules import as_date
from dynamics_bridge.mapping.models import MappingFile, RelatedTable

__all__ = [
    "RelatedRead",
    "assemble",
    "lookup_value",
    "member_columns",
    "reads",
]


def lookup_value(column: str) -> str:
    """How the Web API answers a lookup column: ``_<column>_value`` (the related row's id)."""
    return f"_{column}_value"


def member_columns(mapping: MappingFile) -> list[str]:
    """The lookup columns a member read must carry for the related tables reached from it."""
    return sorted({lookup_value(t.lookup) for t in mapping.related.values() if t.lookup})


@dataclass(frozen=True, slots=True)
class RelatedRead:
    """What to read of one related table for a set of members: its rows whose ``by`` column
    (the table's id, or its lookup to the member) is one of ``ids``, matching ``filter``."""

    name: str
    table: RelatedTable
    by: str
    ids: tuple[str, ...]
    select: tuple[str, ...]
    filter: str | None


def reads(
    mapping: MappingFile, members: Iterable[Mapping[str, Any]], today: date
) -> list[RelatedRead]:
    """One read per related table, for these member rows (each with its id column and the
    lookups of :func:`member_columns`). A count reads only the rows of its window."""
    rows = list(members)
    member_ids = tuple(
        dict.fromkeys(
            str(r[mapping.member.id_column]) for r in rows if r.get(mapping.member.id_column)
        )
    )
    found = []
    for name, table in mapping.related.items():
        select = {table.id_column, *(s.column for s in table.column_specs().values())}
        if table.lookup:
            column = lookup_value(table.lookup)
            ids = tuple(dict.fromkeys(str(r[column]) for r in rows if r.get(column)))
            by = table.id_column
        else:
            by = lookup_value(table.member_lookup or "")
            ids = member_ids
            select.add(by)
        clauses = [f"({table.filter})"] if table.filter else []
        if table.latest:
            select.add(table.latest)
        if table.count is not None:
            select.add(table.count.date_column)
            since = today - timedelta(days=table.count.window_days)
            clauses.append(f"{table.count.date_column} ge {since.isoformat()}")
        found.append(
            RelatedRead(name, table, by, ids, tuple(sorted(select)), " and ".join(clauses) or None)
        )
    return found


def _value(raw: Any, words: Mapping[int, str] | None) -> Any:
    if words is None or raw is None:
        return raw
    try:
        return words.get(int(raw), raw)
    except (TypeError, ValueError):
        return raw


def _put(
    target: dict[str, Any],
    row: Mapping[str, Any],
    columns: Sequence[tuple[str, str, Mapping[int, str] | None]],
) -> None:
    """A related row's values into a member's, by name (choices as words)."""
    for name, column, words in columns:
        raw = row.get(column)
        if raw is not None:
            target[name] = _value(raw, words)


def _counts(
    rows: Iterable[Mapping[str, Any]], by: str, column: str, days: int, today: date
) -> Counter[str]:
    """Rows per member whose date lies in the last ``days`` days (today included). ISO dates
    and date-times compare as text by their first ten characters, so 100,000 members' rows are
    counted without parsing each date."""
    low, high = (today - timedelta(days=days)).isoformat(), today.isoformat()
    counted: Counter[str] = Counter()
    for row in rows:
        value = row.get(column)
        if isinstance(value, str):
            day = value[:10]
        else:
            parsed = as_date(value)
            day = parsed.isoformat() if parsed is not None else ""
        if low <= day <= high:
            counted[str(row.get(by))] += 1
    return counted


def _latest_key(row: Mapping[str, Any], column: str) -> tuple[bool, str]:
    value = row.get(column)
    return (value is not None, str(value) if value is not None else "")


def assemble(
    mapping: MappingFile,
    members: Iterable[Mapping[str, Any]],
    found: Mapping[str, Sequence[Mapping[str, Any]]],
    today: date,
) -> dict[str, dict[str, Any]]:
    """Member id -> its related values, from ``found`` (table name -> the rows read for
    :func:`reads`). Rows outside a count's window are not counted, whoever read them; a table
    missing from ``found`` gives no values (not even a count of 0)."""
    rows = [r for r in members if r.get(mapping.member.id_column)]
    values: dict[str, dict[str, Any]] = {str(r[mapping.member.id_column]): {} for r in rows}
    for name, table in mapping.related.items():
        specs = table.column_specs()
        words = {
            value: {o.value: w for w, o in mapping.choices[s.choices].options.items()}
            for value, s in specs.items()
            if s.choices and s.choices in mapping.choices
        }

        columns = [
            (f"{name}.{value}", spec.column, words.get(value)) for value, spec in specs.items()
        ]

        if name not in found:
            continue  # not read (an optional table the environment lacks): no values at all
        table_rows = found[name]
        if table.lookup:
            by_id = {str(r.get(table.id_column)): r for r in table_rows}
            column = lookup_value(table.lookup)
            for member in rows:
                related = by_id.get(str(member.get(column)))
                if related is not None:
                    _put(values[str(member[mapping.member.id_column])], related, columns)
            continue
        by = lookup_value(table.member_lookup or "")
        if table.latest:
            latest: dict[str, Mapping[str, Any]] = {}
            key = partial(_latest_key, column=table.latest)
            for row in table_rows:
                member_id = str(row.get(by))
                if member_id not in latest or key(row) > key(latest[member_id]):
                    latest[member_id] = row
            for member_id, row in latest.items():
                if member_id in values:
                    _put(values[member_id], row, columns)
        if table.count is not None:
            counted = _counts(
                table_rows, by, table.count.date_column, table.count.window_days, today
            )
            for member_id, target in values.items():
                target[f"{name}.count"] = counted.get(member_id, 0)
    return values
