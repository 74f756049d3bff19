"""Member history as features: what was known about each member on a cut-off date.

Pure (numpy). The records are turned once into :class:`HistoryArrays` (dates as day numbers,
every dated row as a sorted key per kind), so the features of a million members on any cut-off
are a few binary searches instead of a loop over their rows. A feature on cut-off ``c`` sees
only rows dated before ``c``; the label looks ``horizon_days`` ahead: the member, active on
``c``, left on ``c`` or within the following ``horizon_days`` days.

Features come in groups an admin can leave out (configuration): ``payments`` (missed, paid,
refunded rows, a reconstructed arrears streak), ``tenure``, ``engagement`` (activity rows),
``membership`` (payment method, member type, fee) and ``demographics`` (age band, region).
Column names are stable, ``group.feature`` or ``group.column=level``, and are the words the
churn model gives as a member's reasons. The leaving reason and its free text are never a
feature here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.mapping.retention import add_months, training_cutoffs
from dynamics_bridge.retention.records import PAYMENT_KINDS, MemberHistory

__all__ = [
    "CATEGORIES",
    "GROUPS",
    "FeatureBuilder",
    "HistoryArrays",
    "Snapshots",
    "active_at",
    "add_months",
    "left_within",
    "missed_within",
    "snapshots",
    "training_cutoffs",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

GROUPS = ("payments", "tenure", "engagement", "membership", "demographics")
"""Every feature group, in column order."""

CATEGORIES = {"membership": ("method", "member_type"), "demographics": ("age_band", "region")}
"""The member columns each group one-hot encodes."""

NEVER = np.iinfo(np.int64).max // 4
"""The day number of "not ended"."""

_KEY = 1 << 22  # key = member row * _KEY + day number (date.max is day 3,652,059)
_KIND_BITS = 6  # a row's code: day number << _KIND_BITS | kind
_CHUNK = 200_000  # members converted at a time: bounds the temporary arrays
UNKNOWN = "(unknown)"
OTHER = "(other)"


def _codes_of(kinds: dict[str, int], what: str, *, grow: bool) -> Callable[[object], int]:
    """A row ``(date, kind)`` -> its code, remembered per distinct row (a reader shares date
    objects and kind strings, so a register holds few distinct rows)."""
    seen: dict[object, int] = {}

    def code(row: Any) -> int:
        found = seen.get(row)
        if found is not None:
            return found
        try:
            day, kind = row
            number = int(day.toordinal())
        except (TypeError, ValueError, AttributeError):
            raise InputError(f"a {what} row must be (date, kind), not {row!r}") from None
        if kind not in kinds:
            if not grow:
                raise InputError(
                    f"a {what} row's kind must be one of {', '.join(kinds)}, not {kind!r}"
                )
            if len(kinds) >= 1 << _KIND_BITS:
                raise InputError(f"more than {(1 << _KIND_BITS) - 1} {what} kinds")
            kinds[kind] = len(kinds)
        seen[row] = found = number << _KIND_BITS | kinds[kind]
        return found

    return code


def _sorted(keys: IntArray) -> IntArray:
    if keys.size > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
        keys = np.sort(keys)
    return keys


def _category(values: list[str | None]) -> tuple[IntArray, tuple[str, ...]]:
    """Codes into the sorted distinct words, -1 for no value."""
    levels = tuple(sorted({v for v in values if v is not None}))
    index: dict[str | None, int] = {v: i for i, v in enumerate(levels)}
    codes = np.fromiter((index.get(v, -1) for v in values), np.int64, len(values))
    return codes, levels


@dataclass(frozen=True, eq=False)
class HistoryArrays:
    """A register's history as arrays, one row per member (in the records' order).

    ``events`` maps ``payments.<kind>`` and ``activity.<kind>`` to the sorted keys
    ``row * 2**22 + day number`` of that kind's rows; ``categories`` maps a member column to
    (codes per member, -1 for none; its words).
    """

    ids: tuple[str, ...]
    joined: IntArray
    ended: IntArray
    fee: FloatArray
    categories: Mapping[str, tuple[IntArray, tuple[str, ...]]]
    events: Mapping[str, IntArray]
    activity_kinds: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_records(cls, members: Sequence[MemberHistory]) -> HistoryArrays:
        """Convert once; bad rows are an :class:`InputError` naming the member."""
        n = len(members)
        joined = np.fromiter((m.joined_on.toordinal() for m in members), np.int64, n)
        ended = np.fromiter(
            (m.ended_on.toordinal() if m.ended_on else NEVER for m in members), np.int64, n
        )
        early = np.flatnonzero(ended < joined)
        if early.size:
            raise InputError(
                f"member {members[int(early[0])].member_id}: left before joining", field="ended_on"
            )
        payment_kinds = {k: i for i, k in enumerate(PAYMENT_KINDS)}
        activity_kinds: dict[str, int] = {}
        events: dict[str, list[IntArray]] = {}
        for start in range(0, n, _CHUNK):
            chunk = members[start : start + _CHUNK]
            for what, kinds, grow in (
                ("payments", payment_kinds, False),
                ("activity", activity_kinds, True),
            ):
                try:
                    keys = _chunk_keys(chunk, start, what, kinds, grow=grow)
                except InputError as error:
                    raise _naming_member(error, chunk, what, kinds, grow=grow) from None
                for kind, found in keys.items():
                    events.setdefault(f"{what}.{kind}", []).append(found)
        merged = {name: _sorted(np.concatenate(parts)) for name, parts in events.items()}
        empty = np.zeros(0, np.int64)
        for kind in PAYMENT_KINDS:
            merged.setdefault(f"payments.{kind}", empty)
        categories = {
            column: _category([getattr(m, column) for m in members])
            for columns in CATEGORIES.values()
            for column in columns
        }
        return cls(
            ids=tuple(m.member_id for m in members),
            joined=joined,
            ended=ended,
            fee=np.fromiter((float(m.monthly_fee) for m in members), np.float64, n),
            categories=categories,
            events=merged,
            activity_kinds=tuple(sorted(activity_kinds)),
        )

    def keys(self, name: str) -> IntArray:
        return self.events.get(name, np.zeros(0, np.int64))


def _chunk_keys(
    chunk: Sequence[MemberHistory], start: int, what: str, kinds: dict[str, int], *, grow: bool
) -> dict[str, IntArray]:
    lengths = np.fromiter((len(getattr(m, what)) for m in chunk), np.int64, len(chunk))
    code = _codes_of(kinds, what, grow=grow)
    rows = itertools.chain.from_iterable(getattr(m, what) for m in chunk)
    codes = np.fromiter(map(code, rows), np.int64, int(lengths.sum()))
    owner = np.repeat(np.arange(start, start + len(chunk), dtype=np.int64), lengths)
    key = owner * _KEY + (codes >> _KIND_BITS)
    kind_of = codes & ((1 << _KIND_BITS) - 1)
    return {kind: _sorted(key[kind_of == index]) for kind, index in kinds.items()}


def _naming_member(
    error: InputError,
    chunk: Sequence[MemberHistory],
    what: str,
    kinds: dict[str, int],
    *,
    grow: bool,
) -> InputError:
    """The same error, with the first member whose rows cause it (found by a slower scan)."""
    for member in chunk:
        code = _codes_of(dict(kinds), what, grow=grow)
        try:
            for row in getattr(member, what):
                code(row)
        except InputError as found:
            return InputError(f"member {member.member_id}: {found.detail}", field=what)
    return error


def _days(as_of: date | IntArray, rows: IntArray) -> IntArray:
    if isinstance(as_of, date):
        return np.full(rows.size, as_of.toordinal(), np.int64)
    return np.asarray(as_of, np.int64)


def active_at(data: HistoryArrays, as_of: date) -> IntArray:
    """The rows of the members active on ``as_of``: joined before it, not left before it."""
    day = as_of.toordinal()
    return np.flatnonzero((data.joined < day) & (data.ended >= day))


def left_within(
    data: HistoryArrays, rows: IntArray, as_of: date | IntArray, horizon_days: int
) -> BoolArray:
    """The label: left on ``as_of`` or within the ``horizon_days`` days after it."""
    result: BoolArray = data.ended[rows] < _days(as_of, rows) + horizon_days
    return result


def _count(keys: IntArray, base: IntArray, low: IntArray, high: IntArray) -> IntArray:
    """Rows per member dated in [low, high)."""
    counted: IntArray = np.searchsorted(keys, base + high) - np.searchsorted(keys, base + low)
    return counted


def _last(keys: IntArray, base: IntArray, high: IntArray) -> IntArray:
    """Each member's last day number before ``high``; -1 for none."""
    if keys.size == 0:
        return np.full(base.size, -1, np.int64)
    at = np.searchsorted(keys, base + high) - 1
    found = keys[np.maximum(at, 0)]
    return np.where((at >= 0) & (found >= base), found - base, -1)


def missed_within(
    data: HistoryArrays, rows: IntArray, as_of: date | IntArray, days: int
) -> IntArray:
    """Missed payments (failed or overdue) in the ``days`` days before ``as_of``: the rule of
    thumb the churn model has to beat."""
    high = _days(as_of, rows)
    base = rows * _KEY
    return sum(
        (
            _count(data.keys(f"payments.{k}"), base, high - days, high)
            for k in ("failed", "overdue")
        ),
        np.zeros(rows.size, np.int64),
    )


@dataclass(frozen=True)
class FeatureBuilder:
    """Builds the feature matrix of a set of members on a cut-off, with stable column names.

    ``groups`` are the feature groups used (configuration; an excluded group leaves no column).
    :meth:`fit` learns the words of the one-hot columns (a word seen for fewer than
    ``min_level_count`` members joins ``(other)``) and the activity kinds; a fitted builder is
    saved with a model, so scoring builds exactly the columns the model was trained on.
    """

    groups: tuple[str, ...] = GROUPS
    min_level_count: int = 20
    levels: Mapping[str, tuple[str, ...]] | None = None
    activity_kinds: tuple[str, ...] | None = None
    _names: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise ConfigError(
                f"unknown retention feature group(s) {', '.join(map(repr, unknown))}; "
                f"the groups are {', '.join(GROUPS)}"
            )
        if not groups:
            raise ConfigError("no retention feature group is enabled: enable at least one")
        object.__setattr__(self, "groups", tuple(g for g in GROUPS if g in groups))
        if self.fitted:
            object.__setattr__(self, "_names", tuple(name for name, _, _ in self._columns()))

    @property
    def fitted(self) -> bool:
        return self.levels is not None and self.activity_kinds is not None

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        if not self.fitted:
            raise ConfigError("the feature builder is not fitted: call fit() first")
        return self._names

    def fit(self, data: HistoryArrays, rows: IntArray | None = None) -> FeatureBuilder:
        """The builder with the words and activity kinds of these members (all by default)."""
        rows = np.arange(len(data)) if rows is None else rows
        levels: dict[str, tuple[str, ...]] = {}
        for group, columns in CATEGORIES.items():
            if group not in self.groups:
                continue
            for column in columns:
                codes, words = data.categories[column]
                counts = np.bincount(codes[rows] + 1, minlength=len(words) + 1)
                seen = counts[1:]
                kept = [w for w, c in zip(words, seen, strict=True) if c >= self.min_level_count]
                rare = bool(np.any((seen > 0) & (seen < self.min_level_count)))
                levels[column] = (
                    *kept,
                    *((OTHER,) if rare else ()),
                    *((UNKNOWN,) if counts[0] else ()),
                )
        kinds = tuple(
            k
            for k in data.activity_kinds
            if "engagement" in self.groups and data.keys(f"activity.{k}").size
        )
        return replace(self, levels=levels, activity_kinds=kinds)

    def _columns(self) -> Iterator[tuple[str, str, int]]:
        """(name, how it is computed, the word's index for a one-hot column or -1)."""
        assert self.levels is not None
        assert self.activity_kinds is not None
        for group in self.groups:
            if group == "payments":
                for name in (
                    "missed_60d",
                    "missed_365d",
                    "paid_365d",
                    "missed_share_365d",
                    "refunded_365d",
                    "open_missed",
                    "years_since_missed",
                    "no_payments_365d",
                ):
                    yield f"payments.{name}", name, -1
            elif group == "tenure":
                for name in ("years", "under_1y", "1y_to_2y"):
                    yield f"tenure.{name}", name, -1
            elif group == "engagement":
                for kind in self.activity_kinds:
                    yield f"engagement.{kind}_365d", f"activity.{kind}", -1
                yield "engagement.none_365d", "none_365d", -1
                yield "engagement.years_since_activity", "years_since_activity", -1
            if group in CATEGORIES:
                for column in CATEGORIES[group]:
                    for index, word in enumerate(self.levels[column]):
                        yield f"{group}.{column}={word}", column, index
                if group == "membership":
                    yield "membership.monthly_fee_100", "fee", -1

    def blocks(self) -> list[tuple[str, tuple[int, ...], bool]]:
        """The columns that make one reason: a one-hot column's words together (named
        ``group.column``), each other column alone; (name, column indices, one-hot)."""
        found: dict[str, tuple[list[int], bool]] = {}
        for position, (name, _how, index) in enumerate(self._columns()):
            key = name.split("=", 1)[0] if index >= 0 else name
            found.setdefault(key, ([], index >= 0))[0].append(position)
        return [(name, tuple(columns), hot) for name, (columns, hot) in found.items()]

    def build(
        self, data: HistoryArrays, as_of: date | IntArray, rows: IntArray | None = None
    ) -> npt.NDArray[np.float32]:
        """The members' features on ``as_of`` (one date, or a day number per row), from rows
        dated before it only. ``rows`` picks members (all by default)."""
        names = self.names
        rows = np.arange(len(data), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        high = _days(as_of, rows)
        out = np.zeros((rows.size, len(names)), np.float32)
        assert self.activity_kinds is not None
        computed = _Computed(data, rows, rows * _KEY, high, self.activity_kinds)
        words: dict[str, IntArray] = {}
        for position, (_name, how, index) in enumerate(self._columns()):
            if index < 0:
                out[:, position] = computed.value(how)
                continue
            if how not in words:
                words[how] = self._word_index(data, rows, how)
            out[:, position] = words[how] == index
        return out

    def _word_index(self, data: HistoryArrays, rows: IntArray, column: str) -> IntArray:
        """Each member's column value as an index into the fitted words (-1: no column)."""
        assert self.levels is not None
        index = {w: i for i, w in enumerate(self.levels[column])}
        codes, data_words = data.categories[column]
        other = index.get(OTHER, -1)
        mapping = np.array(
            [index.get(UNKNOWN, -1)] + [index.get(w, other) for w in data_words], np.int64
        )
        found: IntArray = mapping[codes[rows] + 1]
        return found


class _Computed:
    """The numeric features of some members on their cut-offs, computed on demand."""

    def __init__(
        self,
        data: HistoryArrays,
        rows: IntArray,
        base: IntArray,
        high: IntArray,
        activity_kinds: Sequence[str],
    ):
        self.data, self.rows, self.base, self.high = data, rows, base, high
        #: the kinds the builder learned in training: a kind seen only later (advisor outcome
        #: rows) must not change what "no activity" means between training and scoring
        self.activity_kinds = activity_kinds
        self.cache: dict[str, npt.NDArray[np.float64]] = {}

    def _window(self, name: str, days: int) -> IntArray:
        return _count(self.data.keys(name), self.base, self.high - days, self.high)

    def _missed(self, days: int) -> IntArray:
        return self._window("payments.failed", days) + self._window("payments.overdue", days)

    def value(self, how: str) -> npt.NDArray[np.float64]:
        if how not in self.cache:
            self.cache[how] = np.asarray(self._compute(how), np.float64)
        return self.cache[how]

    def _compute(self, how: str) -> npt.ArrayLike:
        data, high = self.data, self.high
        if how == "missed_60d":
            return self._missed(60)
        if how == "missed_365d":
            return self._missed(365)
        if how == "paid_365d":
            return self._window("payments.paid", 365)
        if how == "missed_share_365d":
            missed, paid = self.value("missed_365d"), self.value("paid_365d")
            return missed / np.maximum(missed + paid, 1.0)
        if how == "refunded_365d":
            return self._window("payments.refunded", 365)
        if how == "no_payments_365d":
            return (self.value("missed_365d") + self.value("paid_365d")) == 0
        if how == "open_missed":  # missed since the last paid row: the arrears, as of then
            last_paid = _last(data.keys("payments.paid"), self.base, high)
            low = np.where(last_paid >= 0, last_paid + 1, 0)
            return sum(
                (
                    _count(data.keys(f"payments.{k}"), self.base, low, high)
                    for k in ("failed", "overdue")
                ),
                np.zeros(self.rows.size, np.int64),
            )
        if how == "years_since_missed":
            last = np.maximum(
                _last(data.keys("payments.failed"), self.base, high),
                _last(data.keys("payments.overdue"), self.base, high),
            )
            return _years_since(last, high)
        if how in ("years", "under_1y", "1y_to_2y"):
            years = np.clip((high - data.joined[self.rows]) / 365.25, 0.0, 40.0)
            if how == "years":
                return years
            return years < 1.0 if how == "under_1y" else (years >= 1.0) & (years < 2.0)
        if how.startswith("activity."):
            return np.log1p(self._window(how, 365))
        if how in ("none_365d", "years_since_activity"):
            kinds = [f"activity.{k}" for k in self.activity_kinds]
            if how == "none_365d":
                total = sum((self._window(k, 365) for k in kinds), np.zeros(self.rows.size))
                return total == 0
            last = np.full(self.rows.size, -1, np.int64)
            for kind in kinds:
                last = np.maximum(last, _last(data.keys(kind), self.base, high))
            return _years_since(last, high)
        if how == "fee":
            return data.fee[self.rows] / 100.0
        raise AssertionError(how)  # pragma: no cover


def _years_since(last: IntArray, high: IntArray) -> FloatArray:
    """Years since the day (capped at 2; 2 when there was none)."""
    years: FloatArray = np.where(last >= 0, np.minimum((high - last) / 365.25, 2.0), 2.0)
    return years


@dataclass(frozen=True, eq=False)
class Snapshots:
    """Feature rows of members on several cut-offs, with their labels."""

    features: npt.NDArray[np.float32]
    labels: BoolArray
    rows: IntArray
    cutoff: IntArray  # index into ``cutoffs``
    cutoffs: tuple[date, ...]


def snapshots(
    builder: FeatureBuilder,
    data: HistoryArrays,
    cutoffs: Iterable[date],
    horizon_days: int,
    *,
    max_rows: int | None = None,
    rng: np.random.Generator | None = None,
) -> Snapshots:
    """The members active on each cut-off, their features then and whether they left within
    ``horizon_days``. Over ``max_rows`` in all, each cut-off's members are sampled evenly (a
    logistic model on 40 columns learns nothing more from ten million rows than from one)."""
    cutoffs = tuple(cutoffs)
    active = [active_at(data, c) for c in cutoffs]
    total = sum(a.size for a in active)
    if max_rows is not None and total > max_rows:
        rng = rng or np.random.default_rng(0)
        share = max_rows / total
        active = [np.sort(rng.choice(a, int(a.size * share), replace=False)) for a in active]
    sizes = [a.size for a in active]
    features = np.empty((sum(sizes), len(builder.names)), np.float32)
    labels = np.empty(sum(sizes), np.bool_)
    start = 0
    for cutoff, rows in zip(cutoffs, active, strict=True):
        features[start : start + rows.size] = builder.build(data, cutoff, rows)
        labels[start : start + rows.size] = left_within(data, rows, cutoff, horizon_days)
        start += rows.size
    return Snapshots(
        features=features,
        labels=labels,
        rows=np.concatenate(active) if active else np.zeros(0, np.int64),
        cutoff=np.repeat(np.arange(len(cutoffs)), sizes),
        cutoffs=cutoffs,
    )
