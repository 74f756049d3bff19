"""Write Bankgirot report files: the demo's, the benchmarks' and the tests' own inputs.

Positions follow reference/payments.md §1.3 (payment specification and mandate notices, new
layout) and §2 (BgMax); closing records carry correct totals, so what is written parses back to
the same payments. Lines (80 characters + CRLF, Latin-1) are yielded one at a time.

Files name a payee (``payee_bankgiro``, ``customer_number``); ingest refuses them unless those
are the union's own, so whoever ingests what is written here configures the same numbers (the
defaults are Bankgirot's example payee, :data:`EXAMPLE_PAYEE_BANKGIRO` and
:data:`EXAMPLE_CUSTOMER_NUMBER`, which the demo configures).

Example::

    with open("BFEP.UAGAG.K0471117.D261128.T060000", "wb") as fh:
        fh.writelines(payment_spec_lines([AutogiroPayment("100001", 25000, date(2026, 11, 28))]))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import groupby

from dynamics_bridge.sources.bankgirot import STOCKHOLM

__all__ = [
    "EXAMPLE_CUSTOMER_NUMBER",
    "EXAMPLE_PAYEE_BANKGIRO",
    "AutogiroPayment",
    "BgmaxPayment",
    "MandateNotice",
    "bgmax_lines",
    "mandate_notice_lines",
    "payment_spec_lines",
]

_ACCOUNT = "00000000000000000000089010032323232"  # Bankgirot's example account (clearing 8901)
#: Bankgirot's example payee in its published example files: bankgiro 991-2346, customer 471117.
EXAMPLE_PAYEE_BANKGIRO = "0009912346"
EXAMPLE_CUSTOMER_NUMBER = "471117"


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
    serial: str  # BGC serial number, unique per payment
    reference_code: str = "2"  # 2 = OCR reference that passed Bankgirot's check
    channel: str = "1"  # 1 bank, 2 LB, 3 paper form, 4 Autogiro
    deduction: bool = False


@dataclass(frozen=True, slots=True)
class MandateNotice:
    payer_number: str
    action_date: date
    info: str = "04"  # 04 new mandate initiated by the payee
    comment: str = "32"  # 32 new mandate (approved)


def _line(text: str) -> bytes:
    if len(text) != 80:
        raise ValueError(f"record is {len(text)} characters, not 80: {text!r}")
    return (text + "\r\n").encode("latin-1")


def _opening(content: str, stamp: str, customer_number: str, payee_bankgiro: str) -> bytes:
    """New-layout TK01: 3-22 AUTOGIRO, 25-44 stamp, 45-64 content, 65-70 customer, 71-80 BG."""
    return _line(
        f"01{'AUTOGIRO':<20}  {stamp:<20}{content:<20}{customer_number:>06}{payee_bankgiro:>010}"
    )


def payment_spec_lines(
    payments: Iterable[AutogiroPayment],
    *,
    payee_bankgiro: str = EXAMPLE_PAYEE_BANKGIRO,
    customer_number: str = EXAMPLE_CUSTOMER_NUMBER,
    written: datetime | None = None,
    account: str = _ACCOUNT,
) -> Iterator[bytes]:
    """A payment specification: one TK15/TK16 section per payment date and direction, TK09.

    Payments are sorted by date, direction and payer number as Bankgirot does; a section's
    records are held until its TK15/TK16 (which states their approved sum) is written.
    """
    written = written or datetime(2026, 11, 28, 6, 0, tzinfo=STOCKHOLM)
    yield _opening(
        "BET. SPEC & STOPP TK",
        written.strftime("%Y%m%d%H%M%S") + "000000",
        customer_number,
        payee_bankgiro,
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


def mandate_notice_lines(
    notices: Iterable[MandateNotice],
    *,
    payee_bankgiro: str = EXAMPLE_PAYEE_BANKGIRO,
    customer_number: str = EXAMPLE_CUSTOMER_NUMBER,
    written: date | None = None,
) -> Iterator[bytes]:
    """Mandate notices (AG-MEDAVI, new layout): one TK73 per notice, in the order given, TK09."""
    written = written or date(2026, 11, 28)
    yield _opening("AG-MEDAVI", f"{written:%Y%m%d}", customer_number, payee_bankgiro)
    count = 0
    for n in notices:
        count += 1
        yield _line(
            f"73{payee_bankgiro:>010}{n.payer_number:>016}{'':16}{'':12}{'':5}"
            f"{n.info}{n.comment}{n.action_date:%Y%m%d}{'':7}"
        )
    yield _line(f"09{written:%Y%m%d}9900{count:07d}{'':59}")


def bgmax_lines(
    payments: Iterable[BgmaxPayment],
    *,
    receiving_bankgiro: str = EXAMPLE_PAYEE_BANKGIRO,
    booked: date | None = None,
    per_deposit: int | None = 1000,
    currency: str = "SEK",
    written: datetime | None = None,
) -> Iterator[bytes]:
    """A BgMax file: sections (TK05 … TK15) of ``per_deposit`` payments, or one section for all
    of them with ``None`` (a real day's file: one deposit per bankgiro), then TK70.

    Streams: nothing is held, however many payments there are.
    """
    booked = booked or date(2026, 11, 27)
    written = written or datetime(2026, 11, 27, 18, 0, tzinfo=STOCKHOLM)
    yield _line(f"01{'BGMAX':<20}01{written:%Y%m%d%H%M%S}000000P{'':35}")
    counts = {"20": 0, "21": 0, "15": 0}
    in_section = total = 0
    for p in payments:
        if in_section == 0:
            yield _line(f"05{receiving_bankgiro:>010}{'':10}{currency}{'':55}")
        tk = "21" if p.deduction else "20"
        counts[tk] += 1
        total += -p.amount_minor if p.deduction else p.amount_minor
        in_section += 1
        yield _line(
            f"{tk}{0:010d}{p.reference:>25}{p.amount_minor:018d}{p.reference_code}"
            f"{p.channel}{p.serial:>012}0{'0' if p.deduction else ' '}{'':9}"
        )
        if per_deposit is not None and in_section >= per_deposit:
            counts["15"] += 1
            yield _deposit(counts["15"], booked, total, currency, in_section)
            in_section = total = 0
    if in_section:
        counts["15"] += 1
        yield _deposit(counts["15"], booked, total, currency, in_section)
    yield _line(f"70{counts['20']:08d}{counts['21']:08d}{0:08d}{counts['15']:08d}{'':46}")


def _deposit(serial: int, booked: date, total: int, currency: str, count: int) -> bytes:
    if total < 0:
        raise ValueError("a deposit cannot be negative: more deducted than paid in one section")
    return _line(f"15{_ACCOUNT:>035}{booked:%Y%m%d}{serial:05d}{total:018d}{currency}{count:08d} ")
