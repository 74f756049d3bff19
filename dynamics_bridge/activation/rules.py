"""The segment rule language: a small tree of conditions over one member's columns.

Pure. A rule is YAML an admin writes in ``mappings/segments.yaml``::

    any:
      - within_days: {column: mbr_lastfailedon, days: 30}
      - {column: mbr_arrears, gt: 0}

- ``all: [...]``, ``any: [...]``, ``not: <rule>``
- ``{column: C, eq|ne|gt|ge|lt|le: V}``, ``{column: C, in: [V, ...]}``, ``{column: C, is_set: B}``
- ``within_days: {column: C, days: N}``: the date in C lies in the last N days (today included)
- ``older_than_days: {column: C, days: N}``: the date in C is more than N days ago

Columns are member columns by logical name, read through :func:`member_view` (choice columns as
the mapping's words, dates as dates), plus computed values such as ``engagement_score``. A member
without a value in the column matches no comparison and no date condition; ask with ``is_set``.
Rules compile to plain closures (:func:`compile_rule`), so 100,000 members evaluate quickly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from dynamics_bridge.mapping.models import ChoiceSet, ColumnSpec

__all__ = [
    "All",
    "AnyOf",
    "Compare",
    "DaysSpec",
    "Not",
    "OlderThanDays",
    "Predicate",
    "Rule",
    "WithinDays",
    "as_date",
    "choice_words",
    "compile_rule",
    "matches",
    "member_view",
    "rule_columns",
]

Predicate = Callable[[Mapping[str, Any], date], bool]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class All(_Node):
    """Every rule holds."""

    all: list[Rule] = Field(min_length=1)


class AnyOf(_Node):
    """At least one rule holds."""

    any: list[Rule] = Field(min_length=1)


class Not(_Node):
    """The rule does not hold."""

    not_: Rule = Field(alias="not")


OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "in", "is_set")


class Compare(_Node):
    """One column against a value, a list (``in``) or presence (``is_set``)."""

    column: str
    eq: Any = None
    ne: Any = None
    gt: Any = None
    ge: Any = None
    lt: Any = None
    le: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    is_set: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_operator(cls, data: Any) -> Any:
        if isinstance(data, dict):
            used = [k for k in data if k in OPERATORS]
            if len(used) != 1:
                raise ValueError(f"a comparison takes exactly one of {', '.join(OPERATORS)}")
        return data

    @property
    def operator(self) -> tuple[str, Any]:
        (name,) = [n for n in self.model_fields_set if n != "column"]
        return ("in" if name == "in_" else name), getattr(self, name)


class DaysSpec(_Node):
    column: str
    days: int = Field(ge=0)


class WithinDays(_Node):
    within_days: DaysSpec


class OlderThanDays(_Node):
    older_than_days: DaysSpec


def _kind(data: Any) -> str | None:
    if isinstance(data, BaseModel):
        data = data.model_dump(by_alias=True, exclude_unset=True)
    if not isinstance(data, dict):
        return None
    for key in ("all", "any", "not", "within_days", "older_than_days"):
        if key in data:
            return f"rule[{key}]"
    return "rule[compare]" if "column" in data else None


Rule = Annotated[
    Union[  # noqa: UP007 - a tagged union of models reads best spelled out
        Annotated[All, Tag("rule[all]")],
        Annotated[AnyOf, Tag("rule[any]")],
        Annotated[Not, Tag("rule[not]")],
        Annotated[WithinDays, Tag("rule[within_days]")],
        Annotated[OlderThanDays, Tag("rule[older_than_days]")],
        Annotated[Compare, Tag("rule[compare]")],
    ],
    Discriminator(
        _kind,
        custom_error_type="rule",
        custom_error_message="a rule is all, any, not, within_days, older_than_days or "
        "{column: ..., <operator>: ...}",
    ),
]

for _model in (All, AnyOf, Not):
    _model.model_rebuild()


# -- evaluation -------------------------------------------------------------------------------


def as_date(value: Any) -> date | None:
    """A view's date value as a date (a datetime's day; ISO text read; anything else None)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _like(sample: Any, value: Any) -> Any:
    """The rule's value in the member value's type (a date column compared with "2026-01-01")."""
    if isinstance(sample, date) and isinstance(value, str):
        return as_date(value)
    if isinstance(sample, int | float) and not isinstance(sample, bool) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


_UNSET = object()
_ORDER = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def _compare(node: Compare) -> Predicate:
    column = node.column
    name, wanted = node.operator
    if name == "is_set":
        return lambda m, _t: (m.get(column) not in (None, "")) is wanted
    # The rule's value in each member value's type, converted once per type (members differ in
    # value, rarely in type): 100,000 members compare without converting 100,000 times.
    if name == "in":
        lists: dict[type, list[Any]] = {}

        def in_list(m: Mapping[str, Any], _t: date) -> bool:
            value = m.get(column)
            if value is None:
                return False
            like = lists.get(type(value))
            if like is None:
                like = lists[type(value)] = [_like(value, c) for c in wanted or []]
            return any(value == c for c in like)

        return in_list
    likes: dict[type, Any] = {}

    def like(value: Any) -> Any:
        found = likes.get(type(value), _UNSET)
        if found is _UNSET:
            found = likes[type(value)] = _like(value, wanted)
        return found

    if name in ("eq", "ne"):
        same = name == "eq"

        def equal(m: Mapping[str, Any], _t: date) -> bool:
            value = m.get(column)
            return value is not None and (value == like(value)) is same

        return equal
    order = _ORDER[name]

    def ordered(m: Mapping[str, Any], _t: date) -> bool:
        value = m.get(column)
        if value is None:
            return False
        try:
            return bool(order(value, like(value)))
        except TypeError:
            return False

    return ordered


def compile_rule(rule: Rule) -> Predicate:
    """The rule as a function of ``(member view, today)``."""
    if isinstance(rule, All):
        parts = [compile_rule(r) for r in rule.all]
        return lambda m, t: all(p(m, t) for p in parts)
    if isinstance(rule, AnyOf):
        parts = [compile_rule(r) for r in rule.any]
        return lambda m, t: any(p(m, t) for p in parts)
    if isinstance(rule, Not):
        inner = compile_rule(rule.not_)
        return lambda m, t: not inner(m, t)
    if isinstance(rule, WithinDays):
        column, days = rule.within_days.column, rule.within_days.days

        def within(m: Mapping[str, Any], today: date) -> bool:
            when = as_date(m.get(column))
            return when is not None and today - timedelta(days=days) <= when <= today

        return within
    if isinstance(rule, OlderThanDays):
        column, days = rule.older_than_days.column, rule.older_than_days.days

        def older(m: Mapping[str, Any], today: date) -> bool:
            when = as_date(m.get(column))
            return when is not None and when < today - timedelta(days=days)

        return older
    return _compare(rule)


def matches(rule: Rule, member: Mapping[str, Any], today: date) -> bool:
    """Whether one member matches (compile once with :func:`compile_rule` for many)."""
    return compile_rule(rule)(member, today)


def rule_columns(rule: Rule) -> set[str]:
    """Every column a rule reads, for the member read and for config checks."""
    if isinstance(rule, All):
        return set().union(*(rule_columns(r) for r in rule.all))
    if isinstance(rule, AnyOf):
        return set().union(*(rule_columns(r) for r in rule.any))
    if isinstance(rule, Not):
        return rule_columns(rule.not_)
    if isinstance(rule, WithinDays):
        return {rule.within_days.column}
    if isinstance(rule, OlderThanDays):
        return {rule.older_than_days.column}
    return {rule.column}


# -- member rows as the rules see them --------------------------------------------------------


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def choice_words(
    columns: Mapping[str, ColumnSpec], choices: Mapping[str, ChoiceSet]
) -> dict[str, dict[int, str]]:
    """Choice column -> {value: word}, for :func:`member_view`."""
    return {
        name: {o.value: word for word, o in choices[spec.choices].options.items()}
        for name, spec in columns.items()
        if spec.type == "choice" and spec.choices is not None and spec.choices in choices
    }


def member_view(
    row: Mapping[str, Any],
    columns: Mapping[str, ColumnSpec],
    choices: Mapping[str, ChoiceSet],
    words: Mapping[str, Mapping[int, str]] | None = None,
) -> dict[str, Any]:
    """A Dataverse member row in the rules' terms: choice values as the mapping's words, dates
    and times parsed, money and decimals as floats. Unmapped columns pass unchanged. Pass
    ``words`` (:func:`choice_words`) when viewing many rows."""
    if words is None:
        words = choice_words(columns, choices)
    view: dict[str, Any] = {}
    for name, value in row.items():
        spec = columns.get(name)
        if spec is None or value is None:
            view[name] = value
        elif spec.type == "choice":
            try:
                view[name] = words[name].get(int(value), value)
            except (TypeError, ValueError):
                view[name] = value
        elif spec.type == "date":
            view[name] = as_date(value)
        elif spec.type == "datetime":
            try:
                view[name] = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                view[name] = None
        elif spec.type in ("money", "decimal", "integer"):
            view[name] = _number(value)
        else:
            view[name] = value
    return view
