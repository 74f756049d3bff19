"""BgMax (Bankgiro Inbetalningar): incoming bankgiro and OCR payments (payments.md §2).

TK01 start; sections of TK05 opening, payments (TK20, deductions TK21, each followed by extra
references TK22/23 and payer data TK25-29) and a TK15 deposit; TK70 end. A payment's booking
date stands in its section's TK15, so a section is held until its deposit record (sections are
one deposit each; memory is bounded by the largest section, not the file). Payer names and
addresses (TK25-29) are read past and never copied into events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.sources.autogiro_codes import DEDUCTION
from dynamics_bridge.sources.bankgirot import (
    Readable,
    Record,
    RunCounter,
    amount,
    day_start,
    number,
    parse_date,
    read_records,
)
from dynamics_bridge.sources.ocr import OcrScheme, member_ref_for

__all__ = ["parse"]

_OCR_CODES = {"2", "4"}
_TEXT_CODES = {"3", "5"}


@dataclass
class _Payment:
    record: Record
    extra: list[Record] = field(default_factory=list)


@dataclass
class _Section:
    opening: Record
    bankgiro: str
    currency: str
    payments: list[_Payment] = field(default_factory=list)
    total: int = 0


def parse(stream: Readable, name: str, *, ocr_scheme: OcrScheme = "luhn") -> Iterator[PaymentEvent]:
    """One event per payment (TK20) and per deduction (TK21), validated against TK15 and TK70."""
    records = read_records(stream, name)
    first = next(records, None)
    if first is None:
        raise InputError("no BgMax records in the file", location=f"{name}:1")
    if first.tk != "01" or first.field(3, 22).strip() != "BGMAX":
        raise first.error("not a BgMax file: the first record must be TK01 'BGMAX'")
    counts: Counter[str] = Counter()
    runs = RunCounter()
    section: _Section | None = None
    ended = False
    for rec in records:
        tk = rec.tk
        if ended:
            raise rec.error(f"TK{tk} after the TK70 end record")
        if tk == "05":
            if section is not None:
                raise rec.error("TK05 opens a section before the previous TK15 deposit")
            currency = rec.field(23, 25)
            if not (currency.isascii() and currency.isalpha() and currency.isupper()):
                raise rec.error(
                    f"currency {currency!r} (positions 23-25) is not a code", field="currency"
                )
            section = _Section(rec, rec.field(3, 12), currency)
        elif tk in ("20", "21"):
            if section is None:
                raise rec.error(f"TK{tk} outside a section (no TK05 before it)")
            money = amount(rec, 38, 55)
            section.total += money if tk == "20" else -money
            section.payments.append(_Payment(rec))
            counts[tk] += 1
        elif tk in ("22", "23"):
            if section is None or not section.payments:
                raise rec.error(f"TK{tk} extra reference without a payment before it")
            amount(rec, 38, 55)
            section.payments[-1].extra.append(rec)
            counts["22+23"] += 1
        elif tk in ("25", "26", "27", "28", "29"):
            if section is None or not section.payments:
                raise rec.error(f"TK{tk} payer information without a payment before it")
        elif tk == "15":
            if section is None:
                raise rec.error("TK15 deposit without a TK05 opening")
            yield from _close(rec, section, runs, ocr_scheme)
            counts["15"] += 1
            section = None
        elif tk == "70":
            if section is not None:
                raise rec.error("TK70 end record inside an open section (TK15 missing)")
            _expect(rec, 3, 10, "payments (TK20)", counts["20"])
            _expect(rec, 11, 18, "deductions (TK21)", counts["21"])
            _expect(rec, 19, 26, "extra references (TK22+23)", counts["22+23"])
            _expect(rec, 27, 34, "deposits (TK15)", counts["15"])
            ended = True
        elif tk == "01":
            raise rec.error("a second TK01 start record")
        else:
            raise rec.error(f"unknown record type TK{tk}")
    if not ended:
        raise InputError("the file ends without its TK70 end record", location=f"{name}:end")


def _close(
    deposit: Record, section: _Section, runs: RunCounter, scheme: OcrScheme
) -> Iterator[PaymentEvent]:
    stated = amount(deposit, 51, 68, "deposit amount")
    if stated != section.total:
        raise deposit.error(
            f"deposit amount (positions 51-68) is {_money(stated)} {section.currency} but the "
            f"section's payments less deductions are {_money(section.total)}",
            field="amount",
        )
    count = number(deposit, 72, 79, "count")
    if count != len(section.payments):
        raise deposit.error(
            f"deposit count (positions 72-79) is {count} but the section holds "
            f"{len(section.payments)} payments and deductions",
            field="count",
        )
    booked_raw = deposit.field(38, 45)
    booked = parse_date(booked_raw)
    if booked is None:
        raise deposit.error(
            f"deposit date {booked_raw!r} (positions 38-45) is not a date", field="date"
        )
    deposit_key = f"{section.bankgiro}|{booked_raw}|{deposit.field(46, 50)}|"
    for payment in section.payments:
        rec = payment.record
        identity = deposit_key + rec.text
        member_ref, reason_code, reason_text = _member(payment, scheme)
        if rec.tk == "21":
            code = rec.field(71, 71)
            kind = EventKind.PAYMENT_REFUNDED
            reason_code = code
            reason_text = "Avdrag: " + DEDUCTION.get(code, f"avdragskod {code}")
        else:
            kind = EventKind.PAYMENT_SUCCEEDED
        yield PaymentEvent(
            event_id=make_event_id(Source.BGMAX, identity, str(runs.next(identity))),
            source=Source.BGMAX,
            kind=kind,
            member_ref=member_ref,
            amount_minor=amount(rec, 38, 55),
            currency=section.currency,
            occurred_at=day_start(booked),
            provider_ref=rec.field(58, 69).strip() or rec.field(13, 37).strip(),
            reason_code=reason_code,
            reason_text=reason_text,
            origin=rec.where,
        )


def _member(payment: _Payment, scheme: OcrScheme) -> tuple[MemberRef, str | None, str | None]:
    """Reference code 2/4: an OCR number; 3/5: free text, tried as OCR; 0/1: none given."""
    rec = payment.record
    code = rec.field(56, 56)
    reference = rec.field(13, 37).strip()
    if code in ("0", "1") and not reference:
        # Extended form registration may carry the OCR in a TK22 that follows.
        for extra in payment.extra:
            if extra.tk == "22" and extra.field(56, 56) in _OCR_CODES:
                reference, code = extra.field(13, 37).strip(), "2"
                break
    if not reference:
        return MemberRef(MemberRefKind.OCR, ""), "no_reference", "Betalningen saknar referens"
    if code in _OCR_CODES or code in _TEXT_CODES:
        ref, problem = member_ref_for(reference.replace(" ", ""), scheme)
        if problem is None:
            return ref, None, None
        return (
            MemberRef(MemberRefKind.OCR, reference),
            problem,
            f"Referensen {reference!r} klarade inte OCR-kontrollen",
        )
    return (
        MemberRef(MemberRefKind.OCR, reference),
        "unknown_reference_code",
        (f"Okänd referenskod {code!r}"),
    )


def _expect(rec: Record, start: int, end: int, what: str, found: int) -> None:
    stated = number(rec, start, end, what)
    if stated != found:
        raise rec.error(
            f"end record says {what} = {stated} (positions {start}-{end}), the file has {found}",
            field=what,
        )


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"
