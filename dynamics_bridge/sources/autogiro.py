"""Autogiro reports from Bankgirot, new and old layout, as canonical events (payments.md §1).

Which report a file is comes from its content (the opening record), never from its name. Every
section is checked against its own totals as it streams past; a wrong figure raises an
InputError naming ``FILE:LINE`` of the record that holds it. Files *to* Bankgirot are recognised
and refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.sources import autogiro_codes as codes
from dynamics_bridge.sources.bankgirot import (
    Readable,
    Record,
    RunCounter,
    amount,
    day_start,
    number,
    parse_date,
    read_records,
    signed_amount,
)

__all__ = ["AutogiroFile", "detect", "parse"]


class AutogiroFile(StrEnum):
    PAYMENT_SPEC = "payment specification"
    PAYMENT_SPEC_OLD = "payment specification (old layout)"
    MANDATE_NOTICES = "mandate notices"
    MANDATE_NOTICES_OLD = "mandate notices (old layout)"
    REJECTED = "rejected payments"
    REJECTED_OLD = "rejected payments (old layout)"
    AMENDMENTS = "cancellations and date changes"
    AMENDMENTS_OLD = "cancellations and date changes (old layout)"
    EMANDATES = "mandates signed in the internet bank"
    PAYMENT_EXTRACT = "payment register extract"
    MANDATE_EXTRACT = "mandate register extract"


_REQUEST_KINDS = {
    "82": "a payment order file (betalningsunderlag)",
    "32": "a payment order file (betalningsunderlag)",
    "03": "a mandate order file (medgivandeunderlag)",
    "04": "a mandate order file (medgivandeunderlag)",
    "05": "a mandate order file (medgivandeunderlag)",
}


def detect(first: Record) -> AutogiroFile | None:
    """The report kind from its opening record; None for a file *to* Bankgirot."""
    text = first.text
    if first.tk == "51" and "AG-EMEDGIV" in text[24:44]:
        return AutogiroFile.EMANDATES
    if first.tk == "01" and text[2:10] == "AUTOGIRO":
        content = text[44:64].strip()
        by_content = {
            "BET. SPEC & STOPP TK": AutogiroFile.PAYMENT_SPEC,
            "AG-MEDAVI": AutogiroFile.MANDATE_NOTICES,
            "AVVISADE BET UPPDR": AutogiroFile.REJECTED,
        }
        if content in by_content:
            return by_content[content]
        if content.startswith("MAKULERING"):
            return AutogiroFile.AMENDMENTS
        raise first.error(f"unknown Autogiro report content {content!r} (positions 45-64)")
    if first.tk == "01" and text[10:18] == "AUTOGIRO":
        if text[18:22] != "9900":
            return None  # a file to Bankgirot: no 9900 in 19-22
        content = text[22:62].strip()
        if content.startswith("BEVAKNINGSREG"):
            return AutogiroFile.PAYMENT_EXTRACT
        if content.startswith("FELLISTA"):
            return AutogiroFile.REJECTED_OLD
        if content.startswith("MAK"):
            return AutogiroFile.AMENDMENTS_OLD
        if not content:
            return AutogiroFile.PAYMENT_SPEC_OLD
        raise first.error(f"unknown old-layout Autogiro report {content!r} (positions 23-62)")
    if first.tk == "01" and text[10:14] == "9900" and text[24:33] == "AG-MEDAVI":
        return AutogiroFile.MANDATE_NOTICES_OLD
    if text[:10].isdigit() and text[38] in "12" and text[57] in "12":
        return AutogiroFile.MANDATE_EXTRACT
    raise first.error("not an Autogiro report: unknown opening record")


@dataclass
class _Context:
    """What every record of one file shares: its name, date and payee, and ids already used."""

    name: str
    file_date: date | None = None
    payee_bankgiro: str = ""
    runs: RunCounter = field(default_factory=RunCounter)

    def event(
        self,
        record: Record,
        kind: EventKind,
        payer: str,
        amount_minor: int,
        date_raw: str,
        *,
        reason_code: str | None = None,
        reason_text: str | None = None,
        reference: str = "",
    ) -> PaymentEvent:
        when = parse_date(date_raw)
        if when is None:
            # Bankgirot's own examples hold impossible dates (20080631): keep the raw value.
            note = f"ogiltigt datum {date_raw.strip() or '(tomt)'} i filen"
            reason_text = f"{reason_text}; {note}" if reason_text else note
            when = self.file_date or date(1970, 1, 1)
        identity = self.payee_bankgiro + "|" + record.text
        payer_number = payer.strip().lstrip("0") or "0"
        return PaymentEvent(
            event_id=make_event_id(Source.AUTOGIRO, identity, str(self.runs.next(identity))),
            source=Source.AUTOGIRO,
            kind=kind,
            member_ref=MemberRef(MemberRefKind.PAYER_NUMBER, payer_number),
            amount_minor=amount_minor,
            currency="SEK",
            occurred_at=day_start(when),
            provider_ref=reference.strip() or f"{self.payee_bankgiro}/{payer_number}",
            reason_code=reason_code,
            reason_text=reason_text,
            origin=record.where,
        )


def parse(stream: Readable, name: str) -> Iterator[PaymentEvent]:
    """Canonical events from one Autogiro report, validated against its closing records."""
    records = read_records(stream, name)
    first = next(records, None)
    if first is None:
        raise InputError("no Autogiro records in the file", location=f"{name}:1")
    kind = detect(first)
    if kind is None:
        detail = next(records, None)
        what = _REQUEST_KINDS.get(detail.tk if detail else "", "a file to Bankgirot")
        if detail is not None and detail.tk in {"23", "24", "25", "26", "27", "28", "29"}:
            what = "a cancellation/change order file (makulerings-/ändringsunderlag)"
        raise first.error(
            f"this is {what}, sent TO Bankgirot; dynamics_bridge reads the reports Bankgirot "
            "sends back (payment specification, mandate notices, rejections, changes)"
        )
    yield from _PARSERS[kind](first, records, _Context(name))


# -- payment specification --------------------------------------------------------------------


@dataclass
class _Section:
    opening: Record
    expected_amount: int
    expected_count: int
    amount: int = 0
    count: int = 0


def _payment_spec(
    first: Record, records: Iterator[Record], ctx: _Context
) -> Iterator[PaymentEvent]:
    """New layout: TK01, [TK15 + TK82…], [TK16 + TK32…], [TK17 + TK77], TK09 (§1.3)."""
    opening: Record | None = first
    section: _Section | None = None
    totals: Counter[str] = Counter()
    for rec in _with_first(first, records):
        tk = rec.tk
        if tk == "01":
            if opening is not None and rec is not first:
                raise rec.error("new section opened before the previous TK09 closing record")
            opening = rec
            ctx.file_date = parse_date(rec.field(25, 32))
            ctx.payee_bankgiro = rec.field(71, 80)
            totals.clear()
            continue
        if opening is None:
            raise rec.error(f"TK{tk} after the closing record, without a new TK01 opening")
        if tk in ("15", "16", "17"):
            _close_section(section)
            section = _Section(rec, amount(rec, 51, 68), number(rec, 72, 79, "count"))
            totals[tk] += 1
        elif tk in ("82", "32", "77"):
            parent = {"82": "15", "32": "16", "77": "17"}[tk]
            if section is None or section.opening.tk != parent:
                raise rec.error(f"TK{tk} outside a TK{parent} section")
            event, approved = _payment_result(rec, ctx)
            if approved:
                section.amount += event.amount_minor
                section.count += 1
                totals[tk] += 1
            yield event
        elif tk == "09":
            _close_section(section)
            section = None
            _check(rec, 15, 20, "deposit records (TK15)", totals["15"])
            _check(rec, 21, 32, "approved collections (TK82)", totals["82"])
            _check(rec, 33, 38, "withdrawal records (TK16)", totals["16"])
            _check(rec, 39, 50, "approved payouts (TK32)", totals["32"])
            _check(rec, 51, 56, "refund withdrawal records (TK17)", totals["17"])
            _check(rec, 57, 68, "refunds (TK77)", totals["77"])
            opening = None
        else:
            raise rec.error(f"unexpected record type TK{tk} in a payment specification")
    if opening is not None:
        raise InputError(
            "the file ends without its TK09 closing record", location=f"{ctx.name}:end"
        )


def _payment_result(rec: Record, ctx: _Context) -> tuple[PaymentEvent, bool]:
    tk = rec.tk
    money = amount(rec, 32, 43)
    payer = rec.field(16, 31)
    reference = rec.field(54, 69)
    if tk == "77":
        reason = rec.field(78, 79)
        event = ctx.event(
            rec,
            EventKind.PAYMENT_REFUNDED,
            payer,
            money,
            rec.field(70, 77),
            reason_code=reason,
            reference=reference,
            reason_text=codes.REFUND_REASON.get(reason, f"Återbetalningsorsak {reason}"),
        )
        return event, True
    status = rec.field(80, 80)
    if status in ("0", " "):
        kind = EventKind.PAYMENT_SUCCEEDED if tk == "82" else EventKind.PAYMENT_REFUNDED
        text = None if tk == "82" else "Utbetalning till betalaren via Autogiro"
        return ctx.event(
            rec, kind, payer, money, rec.field(3, 10), reference=reference, reason_text=text
        ), True
    if status not in codes.PAYMENT_STATUS:
        raise rec.error(f"unknown status {status!r} in position 80", field="status")
    kind = (
        EventKind.PAYMENT_RESCHEDULED if status == "9" and tk == "82" else EventKind.PAYMENT_FAILED
    )
    return ctx.event(
        rec,
        kind,
        payer,
        money,
        rec.field(3, 10),
        reason_code=status,
        reason_text=codes.PAYMENT_STATUS[status],
        reference=reference,
    ), False


def _close_section(section: _Section | None) -> None:
    if section is None:
        return
    rec = section.opening
    if section.amount != section.expected_amount:
        raise rec.error(
            f"TK{rec.tk} amount (positions 51-68) is {_kr(section.expected_amount)} but its "
            f"approved records sum to {_kr(section.amount)}",
            field="amount",
        )
    if section.count != section.expected_count:
        raise rec.error(
            f"TK{rec.tk} count (positions 72-79) is {section.expected_count} but "
            f"{section.count} approved records follow",
            field="count",
        )


def _payment_spec_old(
    first: Record, records: Iterator[Record], ctx: _Context
) -> Iterator[PaymentEvent]:
    """Old layout: no deposit records; TK09 counts and sums ALL records, stopped ones too (§1.4)."""
    yield from _counted_report(
        first,
        records,
        ctx,
        detail=("82", "32"),
        emit=lambda rec: _payment_result(rec, ctx)[0],
        amount_at=(32, 43),
    )


def _payment_extract(
    first: Record, records: Iterator[Record], ctx: _Context
) -> Iterator[PaymentEvent]:
    """Payments waiting for their date: facts the upcoming-payment reminders need."""

    def emit(rec: Record) -> PaymentEvent:
        text = "Kommande autogirobetalning" if rec.tk == "82" else "Kommande utbetalning"
        return ctx.event(
            rec,
            EventKind.PAYMENT_SCHEDULED,
            rec.field(16, 31),
            amount(rec, 32, 43),
            rec.field(3, 10),
            reason_text=text,
            reference=rec.field(54, 69),
        )

    yield from _counted_report(
        first, records, ctx, detail=("82", "32"), emit=emit, amount_at=(32, 43)
    )


def _counted_report(
    first: Record,
    records: Iterator[Record],
    ctx: _Context,
    *,
    detail: tuple[str, ...],
    emit: Callable[[Record], PaymentEvent],
    amount_at: tuple[int, int],
) -> Iterator[PaymentEvent]:
    """Reports closed by the old-style TK09: 29-40 payout sum, 41-46 payout count, 47-52
    collection count, 57-68 collection sum."""
    ctx.file_date = parse_date(first.field(3, 10))
    ctx.payee_bankgiro = first.field(69, 78)
    sums: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for rec in _framed(records, ctx):
        if rec.tk in detail:
            event = emit(rec)
            counts[rec.tk] += 1
            sums[rec.tk] += amount(rec, *amount_at)
            yield event
        elif rec.tk == "09":
            _check(rec, 29, 40, "payout sum", sums["32"], signed=True)
            _check(rec, 41, 46, "payout count", counts["32"])
            _check(rec, 47, 52, "collection count", counts["82"])
            _check(rec, 57, 68, "collection sum", sums["82"], signed=True)
        else:
            raise rec.error(f"unexpected record type TK{rec.tk}")


# -- mandates ---------------------------------------------------------------------------------


def _mandate_notices(
    first: Record, records: Iterator[Record], ctx: _Context
) -> Iterator[PaymentEvent]:
    """TK73 per mandate event: information code (what) + comment code (result); apply in order."""
    if first.text[2:10] == "AUTOGIRO":
        ctx.file_date = parse_date(first.field(25, 32))
        ctx.payee_bankgiro = first.field(71, 80)
    else:
        ctx.file_date = parse_date(first.field(3, 10))
        ctx.payee_bankgiro = first.field(15, 24)
    count = 0
    for rec in _framed(records, ctx):
        if rec.tk == "73":
            count += 1
            info, comment = rec.field(62, 63), rec.field(64, 65)
            if comment in codes.MANDATE_CREATED:
                kind = EventKind.MANDATE_APPROVED
            elif comment in codes.MANDATE_REMOVED:
                kind = EventKind.MANDATE_CANCELLED
            else:
                kind = EventKind.MANDATE_REJECTED
            text = (
                f"{codes.MANDATE_INFO.get(info, f'Informationskod {info}')}: "
                f"{codes.MANDATE_COMMENT.get(comment, f'Kommentarskod {comment}')}"
            )
            yield ctx.event(
                rec,
                kind,
                rec.field(13, 28),
                0,
                rec.field(66, 73),
                reason_code=f"{info}/{comment}",
                reason_text=text,
            )
        elif rec.tk == "09":
            _check(rec, 15, 21, "mandate notices (TK73)", count)
        else:
            raise rec.error(f"unexpected record type TK{rec.tk} in mandate notices")


def _emandates(first: Record, records: Iterator[Record], ctx: _Context) -> Iterator[PaymentEvent]:
    """TK52 (+ TK53-56 with the payer's text and address, never copied into events), TK59."""
    ctx.file_date = parse_date(first.field(3, 10))
    ctx.payee_bankgiro = first.field(15, 24)
    count = 0
    message_types = {"0": "Nytt medgivande", "1": "Påminnelse 1", "2": "Påminnelse 2"}
    for rec in _framed(records, ctx, closing="59"):
        if rec.tk == "52":
            count += 1
            message = rec.field(62, 62)
            yield ctx.event(
                rec,
                EventKind.MANDATE_REQUESTED,
                rec.field(13, 28),
                0,
                first.field(3, 10),
                reason_code=message,
                reason_text=f"{message_types.get(message, 'Medgivande')} via internetbanken; "
                "svara med godkännande eller avvisning",
            )
        elif rec.tk in ("53", "54", "55", "56"):
            if count == 0:
                raise rec.error(f"TK{rec.tk} before any TK52 mandate")
            count += 1
        elif rec.tk == "59":
            _check(rec, 15, 21, "records (TK52-56)", count)
        else:
            raise rec.error(f"unexpected record type TK{rec.tk} in internet-bank mandates")


def _mandate_extract(
    first: Record, records: Iterator[Record], ctx: _Context
) -> Iterator[PaymentEvent]:
    """One record per mandate, no opening or closing: status 1 approved, 2 under inquiry."""
    ctx.payee_bankgiro = first.field(1, 10)
    for rec in _with_first(first, records):
        status = rec.field(58, 58)
        if not rec.field(1, 10).isdigit() or status not in "12":
            raise rec.error("not a mandate register record (bankgiro 1-10, status 58)")
        changed = rec.field(50, 57)
        when = changed if parse_date(changed) else rec.field(42, 49)
        kind = EventKind.MANDATE_APPROVED if status == "1" else EventKind.MANDATE_REQUESTED
        text = (
            "Godkänt medgivande (registerutdrag)"
            if status == "1"
            else ("Medgivande under förfrågan hos banken (registerutdrag)")
        )
        yield ctx.event(
            rec,
            kind,
            rec.field(23, 38),
            0,
            when,
            reason_code=f"register/{status}",
            reason_text=text,
        )


# -- rejections and amendments ----------------------------------------------------------------


def _rejected(first: Record, records: Iterator[Record], ctx: _Context) -> Iterator[PaymentEvent]:
    """Orders stopped in Bankgirot's checks; they never reach their date. Positions differ from
    the payment specification (§1.3)."""
    new = first.text[2:10] == "AUTOGIRO"
    ctx.file_date = parse_date(first.field(25, 32) if new else first.field(3, 10))
    ctx.payee_bankgiro = first.field(71, 80) if new else first.field(69, 78)
    sums: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for rec in _framed(records, ctx):
        if rec.tk in ("82", "32"):
            code = rec.field(59, 60)
            money = amount(rec, 31, 42)
            counts[rec.tk] += 1
            sums[rec.tk] += money
            yield ctx.event(
                rec,
                EventKind.PAYMENT_FAILED,
                rec.field(15, 30),
                money,
                rec.field(3, 10),
                reason_code=code,
                reference=rec.field(43, 58),
                reason_text="Avvisat betalningsuppdrag: "
                + codes.REJECTION.get(code, f"kommentarskod {code}"),
            )
        elif rec.tk == "09":
            _check(rec, 15, 20, "rejected payouts", counts["32"])
            _check(rec, 21, 32, "rejected payout sum", sums["32"])
            _check(rec, 33, 38, "rejected collections", counts["82"])
            _check(rec, 39, 50, "rejected collection sum", sums["82"])
        else:
            raise rec.error(f"unexpected record type TK{rec.tk} in rejected payments")


def _amendments(first: Record, records: Iterator[Record], ctx: _Context) -> Iterator[PaymentEvent]:
    """Every cancellation and date change, done or not; the totals cover the done ones."""
    new = first.text[2:10] == "AUTOGIRO"
    ctx.file_date = parse_date(first.field(25, 32) if new else first.field(3, 10))
    ctx.payee_bankgiro = first.field(71, 80) if new else first.field(69, 78)
    sums: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for rec in _framed(records, ctx):
        if rec.tk in codes.AMENDMENT_CAUSE:
            comment = rec.field(73, 74)
            direction = rec.field(27, 28)
            money = amount(rec, 29, 40)
            done = comment in codes.AMENDMENT_DONE_CANCELLED | codes.AMENDMENT_DONE_MOVED
            if done and direction in ("82", "32"):
                counts[direction] += 1
                sums[direction] += money
            payer = rec.field(11, 26)
            if not done or not payer.strip().strip("0"):
                continue  # not carried out, or about no single payer: nothing to record
            moved = comment in codes.AMENDMENT_DONE_MOVED
            text = codes.AMENDMENT_CAUSE[rec.tk]
            if moved:
                text += f"; nytt datum {rec.field(49, 56)}"
            yield ctx.event(
                rec,
                EventKind.PAYMENT_RESCHEDULED if moved else EventKind.PAYMENT_CANCELLED,
                payer,
                money,
                rec.field(3, 10),
                reason_code=f"{rec.tk}/{comment}",
                reason_text=text,
                reference=rec.field(57, 72).lstrip("0"),
            )
        elif rec.tk == "09":
            _check(rec, 29, 40, "cancelled/changed payout sum", sums["32"], signed=True)
            _check(rec, 41, 46, "cancelled/changed payouts", counts["32"])
            _check(rec, 47, 52, "cancelled/changed collections", counts["82"])
            _check(rec, 57, 68, "cancelled/changed collection sum", sums["82"], signed=True)
        else:
            raise rec.error(f"unexpected record type TK{rec.tk} in cancellations/changes")


# -- helpers ----------------------------------------------------------------------------------


def _framed(records: Iterator[Record], ctx: _Context, closing: str = "09") -> Iterator[Record]:
    """The records up to and including the closing record; nothing may follow it."""
    closed = False
    for rec in records:
        if closed:
            raise rec.error(f"TK{rec.tk} after the closing record")
        closed = rec.tk == closing
        yield rec
    if not closed:
        raise InputError(
            f"the file ends without its TK{closing} closing record", location=f"{ctx.name}:end"
        )


def _with_first(first: Record, records: Iterator[Record]) -> Iterator[Record]:
    yield first
    yield from records


def _check(rec: Record, start: int, end: int, what: str, found: int, *, signed: bool = False):
    stated = (signed_amount if signed else number)(rec, start, end, what)
    if abs(stated) != found:
        shown = (_kr(abs(stated)), _kr(found)) if "sum" in what else (abs(stated), found)
        raise rec.error(
            f"closing record says {what} = {shown[0]} (positions {start}-{end}), "
            f"the file has {shown[1]}",
            field=what,
        )


def _kr(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d} kr"


_PARSERS: dict[
    AutogiroFile, Callable[[Record, Iterator[Record], _Context], Iterator[PaymentEvent]]
] = {
    AutogiroFile.PAYMENT_SPEC: _payment_spec,
    AutogiroFile.PAYMENT_SPEC_OLD: _payment_spec_old,
    AutogiroFile.MANDATE_NOTICES: _mandate_notices,
    AutogiroFile.MANDATE_NOTICES_OLD: _mandate_notices,
    AutogiroFile.REJECTED: _rejected,
    AutogiroFile.REJECTED_OLD: _rejected,
    AutogiroFile.AMENDMENTS: _amendments,
    AutogiroFile.AMENDMENTS_OLD: _amendments,
    AutogiroFile.EMANDATES: _emandates,
    AutogiroFile.PAYMENT_EXTRACT: _payment_extract,
    AutogiroFile.MANDATE_EXTRACT: _mandate_extract,
}
