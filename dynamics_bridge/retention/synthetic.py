"""A fictitious register with known structure, for honest evaluation of the retention analytics.

Pure, seeded numpy. Members are simulated month by month over ``years`` before ``today``: they
join, pay (or miss a payment), take part (events, portal, advice, benefits) and leave with a
monthly hazard made of four planted causes, each one a leaver group with its own reason choice
and Swedish free texts:

- ``price`` (``too_expensive``): raised by a missed payment in the two months before, paying by
  invoice, a low fee (low pay) and short tenure;
- ``service`` (``dissatisfied``): raised by low engagement and short tenure;
- ``job_change`` (``changed_job``): higher under 40; students leave at graduation;
- ``retired`` (``retired``): members aged 60-67.

Region has no effect. Reasons are noisy (another choice, ``other`` or none; texts empty, with
noise words, or borrowed from another group), so finding the groups takes more than reading the
choice. Members who left before the window are not in the register (as in a real one that
keeps leavers for some years): ``observed_from`` says since when it is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from dynamics_bridge.retention.features import add_months
from dynamics_bridge.retention.records import PAYMENT_KINDS, MemberHistory

__all__ = ["PLANTED_GROUPS", "REASONS", "SyntheticRegister", "generate"]

PLANTED_GROUPS = ("price", "service", "job_change", "retired")
REASONS = {
    "price": "too_expensive",
    "service": "dissatisfied",
    "job_change": "changed_job",
    "retired": "retired",
}
METHODS = ("autogiro", "invoice", "card", "swish")
METHOD_SHARES = (0.55, 0.25, 0.1, 0.1)
PAY_DAY = (27, 20, 0, 5)  # days after the month's start a method's payment is dated
PAY_DAYS = np.array(PAY_DAY)
MISSED_KIND = ("failed", "overdue", "failed", "overdue")
MEMBER_TYPES = ("regular", "student", "reduced")
TYPE_SHARES = (0.82, 0.10, 0.08)
REGIONS = ("Stockholm", "Västra Götaland", "Skåne", "Uppsala", "Östergötland", "Norrbotten")
AGE_BANDS = ("18-29", "30-39", "40-49", "50-59", "60-67")
AGE_SHARES = (0.14, 0.22, 0.24, 0.25, 0.15)
ACTIVITY = ("event", "portal", "advice", "benefit")
ACTIVITY_SHARES = np.array([0.15, 0.5, 0.1, 0.25])
ENGAGEMENT_RATES = np.array([0.1, 0.5, 1.4])  # activity rows a month: low, mid, high
ENGAGEMENT_SHARES = (0.3, 0.45, 0.25)

TEXTS = {
    "price": (
        "Avgiften är för hög för mig",
        "Det blev för dyrt med medlemsavgiften",
        "Har inte råd med avgiften längre",
        "Kostar för mycket i förhållande till vad jag får",
        "För dyrt, lönen räcker inte till",
        "Medlemsavgiften har höjts för mycket",
        "Måste spara pengar och avgiften känns onödig",
        "Dyr avgift, har inte råd",
    ),
    "service": (
        "Fick ingen hjälp när jag behövde råd",
        "Långsamma svar från ombudsmannen",
        "Ingen återkoppling på mitt ärende",
        "Dåligt bemötande när jag ringde",
        "Fick inget stöd i min tvist med chefen",
        "Väntade i veckor på svar om rådgivning",
        "Missnöjd med stödet och servicen",
        "Ingen svarade på mina mejl, dålig service",
    ),
    "job_change": (
        "Har bytt yrke och går till ett annat förbund",
        "Ny arbetsgivare i en ny bransch",
        "Byter till förbundet för mitt nya yrke",
        "Fått jobb inom en annan bransch",
        "Har börjat ett nytt jobb med ett annat avtal",
        "Ny tjänst hos en annan arbetsgivare",
        "Fått jobb efter examen inom ett annat yrke",
        "Bytt bransch, nytt förbund passar bättre",
    ),
    "retired": (
        "Går i pension",
        "Pensionerad sedan förra månaden",
        "Slutar arbeta och blir pensionär",
        "Har gått i pension och behöver inte facket längre",
        "Pension från och med nästa månad",
        "Ålderspension, tack för alla år",
        "Pensionär nu",
    ),
}
NOISE = ("hej", "tyvärr", "tack", "mvh", "helt enkelt", "just nu", "ok", "facket", "medlemskapet")


@dataclass(frozen=True, eq=False)
class SyntheticRegister:
    """The members, the planted group of each leaver (member id -> group), the day it was
    read and since when it holds every member."""

    members: list[MemberHistory]
    groups: dict[str, str]
    today: date
    observed_from: date


def _month_starts(today: date, months: int) -> list[date]:
    """Month m covers [starts[m], starts[m + 1]); starts[months] is ``today``."""
    return [add_months(today, m - months) for m in range(months + 1)]


def generate(members: int, *, today: date, seed: int = 0, years: int = 3) -> SyntheticRegister:
    """``members`` members (those active ``years`` before ``today`` and those who joined since),
    with monthly payments, activity, and leaving with a planted cause."""
    rng = np.random.default_rng(seed)
    months = 12 * years
    starts = _month_starts(today, months)
    n = members
    initial = rng.random(n) < 0.82
    joined_month = np.where(initial, -1, rng.integers(0, months, n))
    kind = rng.choice(len(MEMBER_TYPES), n, p=TYPE_SHARES)
    student = kind == 1
    age = np.where(
        student, np.where(rng.random(n) < 0.9, 0, 1), rng.choice(len(AGE_BANDS), n, p=AGE_SHARES)
    )
    tenure_days = np.where(
        student,
        rng.integers(30, 4 * 365, n),
        np.minimum(rng.exponential(7 * 365, n), (age * 10 + 8) * 365).astype(np.int64) + 20,
    )
    first = starts[0].toordinal()
    joined = np.where(
        initial,
        first - tenure_days,
        np.array([s.toordinal() for s in starts[:-1]])[np.maximum(joined_month, 0)]
        + rng.integers(0, 28, n),
    )
    method = rng.choice(len(METHODS), n, p=METHOD_SHARES)
    low_paid = (kind == 0) & (rng.random(n) < 0.35)
    fee = np.select(
        [kind == 1, kind == 2, low_paid],
        [np.full(n, 25.0), np.full(n, 100.0), rng.uniform(120, 200, n).round()],
        rng.uniform(200, 450, n).round(),
    )
    engagement = rng.choice(3, n, p=ENGAGEMENT_SHARES)
    struggling = rng.random(n) < 0.12
    miss_p = np.where(struggling, 0.25, 0.015) * np.where(method == 1, 1.6, 1.0)
    graduation = np.where(student, rng.integers(-12, months + 24, n), -999)

    # Monthly hazards by cause (before the tenure factor).
    price = (
        0.0012 * np.where(method == 1, 2.2, 1.0) * np.select([low_paid, kind == 2], [2.2, 1.5], 1)
    )
    service = 0.0012 * np.array([5.0, 1.0, 0.3])[engagement]
    job = 0.0012 * np.where(age <= 1, 1.6, 0.8)
    retire = np.where(age == 4, 0.010, 0.0)

    pay = np.full((n, months), -1, np.int8)  # method * 4 + payment kind index
    ended_month = np.full(n, -1, np.int64)
    ended_day = np.zeros(n, np.int64)
    cause = np.full(n, -1, np.int64)
    last_missed = np.full(n, -99, np.int64)
    open_missed = np.zeros(n, np.int64)
    act_rows: list[npt.NDArray[np.int64]] = []
    act_codes: list[npt.NDArray[np.int64]] = []
    kind_of_miss = np.array([1 if k == "failed" else 2 for k in MISSED_KIND])
    for m in range(months):
        active = np.flatnonzero((joined_month < m) & (ended_month < 0))
        years_in = (starts[m].toordinal() - joined[active]) / 365.25
        tenure = np.select([years_in < 1, years_in < 2], [3.0, 1.6], 1.0)
        recent = (m - last_missed[active]) <= 2
        hazards = np.stack(
            [
                price[active] * tenure * np.where(recent, 8.0, 1.0),
                service[active] * tenure,
                job[active] * tenure,
                retire[active],
            ],
            axis=1,
        )
        total = hazards.sum(axis=1)
        leaves = rng.random(active.size) < -np.expm1(-total)
        graduates = graduation[active] == m
        leaves_graduating = graduates & (rng.random(active.size) < 0.6) & ~leaves
        leaving = active[leaves | leaves_graduating]
        share = hazards[leaves] / total[leaves, None]
        picked = (rng.random((share.shape[0], 1)) > np.cumsum(share, axis=1)).sum(axis=1)
        cause[active[leaves]] = np.minimum(picked, 3)
        cause[active[leaves_graduating]] = 2
        ended_month[leaving] = m
        ended_day[leaving] = rng.integers(0, 28, leaving.size)

        # This month's payment, dated before leaving.
        paying = active[
            ~(leaves | leaves_graduating) | (PAY_DAYS[method[active]] < ended_day[active])
        ]
        missed = rng.random(paying.size) < miss_p[paying]
        kinds = np.where(missed, kind_of_miss[method[paying]], 0)
        refunded = ~missed & (rng.random(paying.size) < 0.002)
        kinds = np.where(refunded, 3, kinds)
        pay[paying, m] = method[paying] * 4 + kinds
        last_missed[paying[missed]] = m
        open_missed[paying[missed]] += 1
        open_missed[paying[~missed]] = 0

        # Activity rows, dated before leaving.
        rates = ENGAGEMENT_RATES[engagement[active]]
        for k in range(len(ACTIVITY)):
            count = rng.poisson(rates * ACTIVITY_SHARES[k])
            rows = np.repeat(active, count)
            days = rng.integers(0, 28, rows.size)
            keep = (ended_month[rows] != m) | (days < ended_day[rows])
            act_rows.append(rows[keep])
            act_codes.append((m * 28 + days[keep]) * len(ACTIVITY) + k)

    return _records(
        rng,
        starts=starts,
        joined=joined,
        ended_month=ended_month,
        ended_day=ended_day,
        cause=cause,
        kind=kind,
        age=age,
        method=method,
        fee=fee,
        open_missed=open_missed,
        pay=pay,
        act_rows=np.concatenate(act_rows),
        act_codes=np.concatenate(act_codes),
        today=today,
    )


_NO_ENGAGEMENT: MappingProxyType[str, float] = MappingProxyType({})
_CHUNK = 20_000


def _reason(rng: np.random.Generator, group: str) -> tuple[str | None, str | None]:
    """A leaver's reason choice and text: mostly their group's, with noise."""
    draw = rng.random()
    if draw < 0.75:
        choice: str | None = REASONS[group]
    elif draw < 0.85:
        choice = "other"
    elif draw < 0.95:
        choice = None
    else:
        choice = REASONS[PLANTED_GROUPS[int(rng.integers(4))]]
    draw = rng.random()
    if draw < 0.2:
        return choice, None if draw < 0.1 else ""
    pool = TEXTS[group] if draw < 0.96 else TEXTS[PLANTED_GROUPS[int(rng.integers(4))]]
    text = pool[int(rng.integers(len(pool)))]
    if rng.random() < 0.4:
        noise = NOISE[int(rng.integers(len(NOISE)))]
        text = (
            f"{noise.capitalize()}, {text[0].lower()}{text[1:]}"
            if rng.random() < 0.5
            else f"{text}. {noise.capitalize()}"
        )
    return choice, text


def _records(
    rng: np.random.Generator,
    *,
    starts: list[date],
    joined: npt.NDArray[np.int64],
    ended_month: npt.NDArray[np.int64],
    ended_day: npt.NDArray[np.int64],
    cause: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int64],
    age: npt.NDArray[np.int64],
    method: npt.NDArray[np.int64],
    fee: npt.NDArray[np.float64],
    open_missed: npt.NDArray[np.int64],
    pay: npt.NDArray[np.int8],
    act_rows: npt.NDArray[np.int64],
    act_codes: npt.NDArray[np.int64],
    today: date,
) -> SyntheticRegister:
    """Turn the simulation into records; rows share their (date, kind) tuples, as a reader
    that caches dates would, so a million members fit in memory."""
    n = joined.size
    months = len(starts) - 1
    pay_rows = np.empty(months * 16 + 1, object)  # index 0: no payment that month
    pay_rows[1:] = [
        (starts[m] + timedelta(days=PAY_DAY[c // 4]), PAYMENT_KINDS[c % 4])
        for m in range(months)
        for c in range(16)
    ]
    act_objects = np.empty(months * 28 * len(ACTIVITY), object)
    act_objects[:] = [
        (starts[m] + timedelta(days=d), a)
        for m in range(months)
        for d in range(28)
        for a in ACTIVITY
    ]
    order = np.argsort(act_rows * act_objects.size + act_codes, kind="stable")
    act_codes = act_codes[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(act_rows, minlength=n))])
    del order, act_rows
    region = rng.integers(len(REGIONS), size=n)
    dates = {d: date.fromordinal(d) for d in np.unique(joined).tolist()}
    month_index = np.arange(months) * 16
    found: list[MemberHistory] = []
    groups: dict[str, str] = {}
    for low in range(0, n, _CHUNK):
        high = min(low + _CHUNK, n)
        paid = pay_rows[np.where(pay[low:high] >= 0, month_index + pay[low:high] + 1, 0)].tolist()
        acts = act_objects[act_codes[offsets[low] : offsets[high]]].tolist()
        for i in range(low, high):
            member_id = f"m{i:07d}"
            ended_on = reason = text = None
            if ended_month[i] >= 0:
                ended_on = starts[int(ended_month[i])] + timedelta(days=int(ended_day[i]))
                group = PLANTED_GROUPS[int(cause[i])]
                groups[member_id] = group
                reason, text = _reason(rng, group)
            a, b = int(offsets[i] - offsets[low]), int(offsets[i + 1] - offsets[low])
            found.append(
                MemberHistory(
                    member_id=member_id,
                    joined_on=dates[int(joined[i])],
                    ended_on=ended_on,
                    reason=reason,
                    reason_text=text,
                    method=METHODS[int(method[i])],
                    member_type=MEMBER_TYPES[int(kind[i])],
                    region=REGIONS[int(region[i])],
                    age_band=AGE_BANDS[int(age[i])],
                    monthly_fee=float(fee[i]),
                    payments=tuple(filter(None, paid[i - low])),
                    activity=tuple(acts[a:b]),
                    engagement=_NO_ENGAGEMENT,
                    arrears=float(open_missed[i] * fee[i]) if ended_on is None else 0.0,
                )
            )
    return SyntheticRegister(found, groups, today, starts[0])
