"""Write Bankgirot report files from payments: the demo's and the benchmarks' own inputs.

Positions follow reference/payments.md §1.3 (payment specification, new layout) and §2 (BgMax);
the closing records carry correct totals, so what is written parses back to the same payments.
Lines are yielded one at a time, so a million-record file never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import groupby

from dynamics_bridge.sources.bankgirot import STOCKHOLM

__all__ = ["AutogiroPayment", "BgmaxPayment", "bgmax_lines", "payment_spec_lines"]


@dataclass(frozen=True, slots=True)
class AutogiroPayment:
    payer_number: str
    amount_minor: int
    payment_date: date
    status: str = "0"  # 0 approved, 1 no funds, 2 no Autogiro link, 9 retried later
    reference: str = ""
    direction: str = "82"  # 82 collection, 32 payout


@dataclass(frozen=True, slots=True)
class BgmaxPayment:
    reference: str
    amount_minor: int
    serial: str
    reference_code: str = "2"
    channel: str = "1"
    deduction: bool = False


def _line(text: str) -> bytes:
    if len(text) != 80:
        raise ValueError(f"record is {len(text)} characters, not 80: {text!r}")
    return (text + "\r\n").encode("latin-1")


def payment_spec_lines(
    payments: Iterable[AutogiroPayment],
    *,
    payee_bankgiro: str = "0009912346",
    customer_number: str = "471117",
    written: datetime | None = None,
    account: str = "00000000000000000000089010032323232",
) -> Iterator[bytes]:
    """A payment specification: one TK15/TK16 section per payment date and direction, TK09."""
    written = written or datetime(2026, 11, 28, 6, 0, tzinfo=STOCKHOLM)
    stamp = written.strftime("%Y%m%d%H%M%S") + "000000"
    yield _line(
        f"01{'AUTOGIRO':<20}  {stamp}{'BET. SPEC & STOPP TK':<20}{customer_number:>06}"
        f"{payee_bankgiro:>010}"
    )
    totals = {"15": 0, "82": 0, "16": 0, "32": 0}
    ordered = sorted(payments, key=lambda p: (p.payment_date, p.direction != "82", p.payer_number))
    groups = groupby(ordered, key=lambda p: (p.payment_date, p.direction))
    for serial, ((day, direction), group) in enumerate(groups, start=1):
        items = list(group)
        approved = [p for p in items if p.status == "0"]
        opening = "15" if direction == "82" else "16"
        totals[opening] += 1
        totals[direction] += len(approved)
        yield _line(
            f"{opening}{account:>035}{day:%Y%m%d}{serial:05d}"
            f"{sum(p.amount_minor for p in approved):018d}   {len(approved):08d} "
        )
        for p in items:
            yield _line(
                f"{direction}{day:%Y%m%d}0    {p.payer_number:>016}{p.amount_minor:012d}"
                f"{payee_bankgiro:>010}{p.reference:<16.16}{'':10}{p.status}"
            )
    yield _line(
        f"09{written:%Y%m%d}9900{totals['15']:06d}{totals['82']:012d}{totals['16']:06d}"
        f"{totals['32']:012d}{0:06d}{0:012d}{'':12}"
    )


def bgmax_lines(
    payments: Iterable[BgmaxPayment],
    *,
    receiving_bankgiro: str = "0009912346",
    booked: date | None = None,
    per_deposit: int = 1000,
    currency: str = "SEK",
    written: datetime | None = None,
) -> Iterator[bytes]:
    """A BgMax file with one section (TK05 … TK15) per ``per_deposit`` payments, then TK70."""
    booked = booked or date(2026, 11, 27)
    written = written or datetime(2026, 11, 27, 18, 0, tzinfo=STOCKHOLM)
    yield _line(f"01{'BGMAX':<20}01{written:%Y%m%d%H%M%S}000000P{'':35}")
    counts = {"20": 0, "21": 0, "15": 0}
    section: list[BgmaxPayment] = []

    def close(items: list[BgmaxPayment]) -> Iterator[bytes]:
        counts["15"] += 1
        yield _line(f"05{receiving_bankgiro:>010}{'':10}{currency}{'':55}")
        total = 0
        for p in items:
            tk = "21" if p.deduction else "20"
            counts[tk] += 1
            total += -p.amount_minor if p.deduction else p.amount_minor
            deduction_code = "0" if p.deduction else " "
            yield _line(
                f"{tk}{0:010d}{p.reference:>25}{p.amount_minor:018d}{p.reference_code}"
                f"{p.channel}{p.serial:>012}0{deduction_code}{'':9}"
            )
        yield _line(
            f"15{'00000000000000000000089010032323232':>035}{booked:%Y%m%d}"
            f"{counts['15']:05d}{total:018d}{currency}{len(items):08d} "
        )

    for payment in payments:
        section.append(payment)
        if len(section) >= per_deposit:
            yield from close(section)
            section = []
    if section:
        yield from close(section)
    yield _line(f"70{counts['20']:08d}{counts['21']:08d}{0:08d}{counts['15']:08d}{'':46}")
