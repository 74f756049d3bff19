"""Retention curves and lifetime value: Kaplan-Meier survival of members by tenure.

Pure (numpy). A member's duration is their tenure in months, from joining to leaving (an
event) or to the day of reading (censored: still a member, the end not yet known). A register
that keeps its former members only for some years holds those who left long ago no longer:
with ``observed_from`` (since when it is complete) a member who joined earlier enters the risk
set only at their tenure on that day (left truncation). Without it, long tenures would look
safer than they are, because the early leavers of their cohorts are missing.

From a curve: the median tenure, and each member's expected remaining months, the restricted
mean of the curve beyond the tenure they have survived (over the next ``horizon`` months, the
curve held flat after its last step). Lifetime value is that times the monthly fee.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.retention.features import HistoryArrays, active_at
from dynamics_bridge.retention.records import MemberHistory

__all__ = [
    "COHORTS",
    "MONTH_DAYS",
    "MemberValue",
    "SurvivalCurve",
    "cohort_curves",
    "durations",
    "kaplan_meier",
    "lifetime_values",
    "survival_curve",
]

FloatArray = npt.NDArray[np.float64]
MONTH_DAYS = 365.25 / 12
COHORTS = ("join_year", "join_month", "method", "member_type", "region")
Members = Sequence[MemberHistory] | HistoryArrays


@dataclass(frozen=True, eq=False)
class SurvivalCurve:
    """The Kaplan-Meier estimate: at each distinct leaving time (months of tenure), the members
    at risk, how many left, and the share still a member just after."""

    times: FloatArray
    survival: FloatArray
    at_risk: npt.NDArray[np.int64]
    events: npt.NDArray[np.int64]
    members: int

    def at(self, months: npt.ArrayLike) -> FloatArray:
        """S(t): the share still a member after ``months`` of tenure."""
        t = np.asarray(months, np.float64)
        levels = np.concatenate([[1.0], self.survival])
        found: FloatArray = levels[np.searchsorted(self.times, t, side="right")]
        return found

    def median(self) -> float | None:
        """The tenure by which half have left; None if the curve never gets there."""
        below = np.flatnonzero(self.survival <= 0.5)
        return float(self.times[below[0]]) if below.size else None

    def _area(self, months: FloatArray) -> FloatArray:
        """The integral of S from 0 to ``months`` (S held flat after the last step)."""
        knots = np.concatenate([[0.0], self.times])
        levels = np.concatenate([[1.0], self.survival])
        cumulative = np.concatenate([[0.0], np.cumsum(levels[:-1] * np.diff(knots))])
        index = np.searchsorted(knots, months, side="right") - 1
        index = np.maximum(index, 0)
        found: FloatArray = cumulative[index] + levels[index] * (months - knots[index])
        return found

    def restricted_mean(self, horizon: float) -> float:
        """Expected months of membership within the first ``horizon`` months."""
        return float(self._area(np.array([float(horizon)]))[0])

    def remaining_months(self, tenure: npt.ArrayLike, horizon: float = 120.0) -> FloatArray:
        """Expected further months within the next ``horizon``, given ``tenure`` months survived:
        the integral of S from tenure to tenure + horizon over S(tenure); 0 where S is 0."""
        a = np.maximum(np.asarray(tenure, np.float64), 0.0)
        alive = self.at(a)
        area = self._area(a + horizon) - self._area(a)
        found: FloatArray = np.where(alive > 0, area / np.where(alive > 0, alive, 1.0), 0.0)
        return found

    def to_dict(self) -> dict[str, Any]:
        """For the report's plots: the steps and the summary."""
        return {
            "members": self.members,
            "median_months": self.median(),
            "times": self.times.round(3).tolist(),
            "survival": self.survival.round(5).tolist(),
            "at_risk": self.at_risk.tolist(),
            "events": self.events.tolist(),
        }


def kaplan_meier(
    durations: npt.ArrayLike, events: npt.ArrayLike, entered: npt.ArrayLike | None = None
) -> SurvivalCurve:
    """The product-limit estimate. ``durations``: months to leaving or censoring; ``events``:
    whether the member left then; ``entered``: months of tenure when first observed (0 by
    default). A member is at risk at t when entered < t <= duration; a member with no time at
    risk (duration <= entered) counts for nothing. Censoring at t counts as still at risk at t.
    """
    duration = np.asarray(durations, np.float64)
    event = np.asarray(events, bool)
    entry = np.zeros_like(duration) if entered is None else np.asarray(entered, np.float64)
    if not duration.shape == event.shape == entry.shape:
        raise InputError("durations, events and entered must be of the same length")
    keep = duration > entry
    duration, event, entry = duration[keep], event[keep], entry[keep]
    times, deaths = np.unique(duration[event], return_counts=True)
    risk = np.searchsorted(np.sort(entry), times, side="left") - np.searchsorted(
        np.sort(duration), times, side="left"
    )
    survival = np.cumprod(1.0 - deaths / np.maximum(risk, 1))
    return SurvivalCurve(
        times=times,
        survival=survival,
        at_risk=risk.astype(np.int64),
        events=deaths.astype(np.int64),
        members=int(duration.size),
    )


def _arrays(members: Members) -> HistoryArrays:
    return members if isinstance(members, HistoryArrays) else HistoryArrays.from_records(members)


def durations(
    members: Members, as_of: date, observed_from: date | None = None
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray, npt.NDArray[np.int64]]:
    """(durations, events, entered) in months for the members who joined before ``as_of``,
    and their rows. Leaving after ``as_of`` is not known yet: censored at ``as_of``."""
    data = _arrays(members)
    day = as_of.toordinal()
    rows = np.flatnonzero(data.joined < day)
    joined, ended = data.joined[rows], data.ended[rows]
    event = ended <= day
    end = np.where(event, ended, day)
    duration = (end - joined) / MONTH_DAYS
    if observed_from is None:
        entered = np.zeros(rows.size)
    else:
        entered = np.maximum(observed_from.toordinal() - joined, 0) / MONTH_DAYS
    return duration, event, entered, rows


def survival_curve(
    members: Members, as_of: date, observed_from: date | None = None
) -> SurvivalCurve:
    """The whole register's curve."""
    duration, event, entered, _ = durations(members, as_of, observed_from)
    return kaplan_meier(duration, event, entered)


def _cohort_keys(data: HistoryArrays, rows: npt.NDArray[np.int64], by: str) -> list[str]:
    if by in ("join_year", "join_month"):
        width = 4 if by == "join_year" else 7
        days = {d: date.fromordinal(d).isoformat()[:width] for d in np.unique(data.joined[rows])}
        return [days[d] for d in data.joined[rows].tolist()]
    codes, words = data.categories[by]
    return [words[c] if c >= 0 else "(unknown)" for c in codes[rows].tolist()]


def cohort_curves(
    members: Members,
    by: str,
    as_of: date,
    *,
    observed_from: date | None = None,
    min_members: int = 30,
) -> dict[str, SurvivalCurve]:
    """A curve per cohort (``join_year``, ``join_month``, ``method``, ``member_type``,
    ``region``); cohorts of fewer than ``min_members`` are left out (too noisy to plot)."""
    if by not in COHORTS:
        raise ConfigError(f"unknown cohort {by!r}; the cohorts are {', '.join(COHORTS)}")
    data = _arrays(members)
    duration, event, entered, rows = durations(data, as_of, observed_from)
    keys = np.array(_cohort_keys(data, rows, by), dtype=object)
    found: dict[str, SurvivalCurve] = {}
    for key in sorted(set(keys.tolist())):
        inside = keys == key
        if inside.sum() >= min_members:
            found[key] = kaplan_meier(duration[inside], event[inside], entered[inside])
    return found


@dataclass(frozen=True, slots=True)
class MemberValue:
    """An active member's expected remaining months and lifetime value (months x fee)."""

    member_id: str
    remaining_months: float
    value: float


def lifetime_values(
    members: Members,
    as_of: date,
    curve: SurvivalCurve | Mapping[str, SurvivalCurve],
    *,
    by: str | None = None,
    horizon: float = 120.0,
) -> list[MemberValue]:
    """Each member active on ``as_of``: expected remaining months (within ``horizon``) from
    ``curve``, or from their cohort's curve in a mapping by cohort ``by`` (a member whose
    cohort has no curve gets the mapping's ``"*"`` curve, the whole register's)."""
    data = _arrays(members)
    rows = active_at(data, as_of)
    tenure = (as_of.toordinal() - data.joined[rows]) / MONTH_DAYS
    remaining = np.zeros(rows.size)
    if isinstance(curve, SurvivalCurve):
        remaining = curve.remaining_months(tenure, horizon)
    else:
        if by is None:
            raise ConfigError("lifetime values from cohort curves need the cohort (by)")
        keys = np.array(_cohort_keys(data, rows, by), dtype=object)
        fallback = curve.get("*")
        for key in set(keys.tolist()):
            inside = keys == key
            chosen = curve.get(key, fallback)
            if chosen is None:
                raise InputError(f"no survival curve for the {by} cohort {key!r} and no '*' curve")
            remaining[inside] = chosen.remaining_months(tenure[inside], horizon)
    values = remaining * data.fee[rows]
    return [
        MemberValue(data.ids[r], m, v)
        for r, m, v in zip(rows.tolist(), remaining.tolist(), values.tolist(), strict=True)
    ]
