"""Autogiro reports from Bankgirot, new and old layout, as canonical events (payments.md §1).

Which report a file is comes from its opening record, never from its name. A file may hold
several sections (one per payee bankgiro), each opened and closed by its own records; every
section is checked against its closing figures as it streams past, and a wrong figure raises an
InputError naming ``FILE:LINE`` of the record that holds it. Files *to* Bankgirot are recognised
and refused, and so are seal records (Bankgirot seals files sent to it, never its reports), BgMax
files and BgMax fragments (each named as what it is).

Given :class:`Payees`, every record that names a payee (opening records: bankgiro and customer
number; mandate register records: bankgiro) must name the union's own: payer numbers are unique
per payee bankgiro only, so a report for another payee would book onto the wrong members.
Payment, mandate and e-mandate records must name their opening record's bankgiro.

Records are ``(line, text)`` pairs from :class:`RecordReader`; fields are sliced at Bankgirot's
positions (``text[start - 1 : end]``), which is what keeps a million-record payment
specification at a few microseconds a record.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind, PaymentEvent, Source
from dynamics_bridge.personnummer import mask_text
from dynamics_bridge.sources import autogiro_codes as codes
from dynamics_bridge.sources.bankgirot import (
    STOCKHOLM,
    Occurrences,
    Payees,
    Readable,
    RecordReader,
    bgmax_fragment,
    day,
    digits,
    is_digits,
    located,
    seal_record,
    signed_digits,
)

__all__ = ["MANDATE_REQUEST_FAILED", "AutogiroFile", "Notice", "detect", "log_notice", "parse"]

log = logging.getLogger(__name__)

#: The ``outcome`` field of the WARNING logged for a mandate notice that says the payee's own
#: request failed (no event: the member's mandate is unchanged; someone must fix and resend).
MANDATE_REQUEST_FAILED = "mandate_request_failed"

Records = Iterator[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Notice:
    """A mandate notice saying the payee's own request failed: no event, the mandate is
    unchanged, and someone must correct the request and send it again (a task)."""

    #: ``FILE:LINE`` of the TK73 record.
    origin: str
    #: The payer number, leading zeros dropped and masked like any text that may hold one.
    payer: str
    #: Information code (positions 62-63) and comment code (64-65).
    info: str
    comment: str
    #: Bankgirot's Swedish texts for both codes.
    reason: str
    #: The payer number as the file has it (leading zeros dropped), to find the member by:
    #: never shown or logged (it may be a personnummer); ``payer`` is what is shown.
    payer_number: str = field(default="", repr=False, compare=False)

    @property
    def pair(self) -> str:
        """``info/comment``, as in an event's ``reason_code``."""
        return f"{self.info}/{self.comment}"


def log_notice(notice: Notice) -> None:
    """The WARNING for one failed request (outcome :data:`MANDATE_REQUEST_FAILED`)."""
    log.warning(
        "%s: mandate request for payer %s failed (%s %s); mandate state unchanged, no "
        "event queued: request failed, needs a task (correct the request and send it again)",
        notice.origin,
        notice.payer,
        notice.pair,
        notice.reason,
        extra={
            "source": _SOURCE.value,
            "outcome": MANDATE_REQUEST_FAILED,
            "origin": notice.origin,
            "reason": notice.pair,
        },
    )


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
    MANDATE_EXTRACT_OLD = "mandate register extract (old layout)"


_NEW_LAYOUT_CONTENT = {
    "BET. SPEC & STOPP TK": AutogiroFile.PAYMENT_SPEC,
    "AG-MEDAVI": AutogiroFile.MANDATE_NOTICES,
    "AVVISADE BET UPPDR": AutogiroFile.REJECTED,
}

_REQUEST_KINDS = {
    "82": "a payment order file (betalningsunderlag)",
    "32": "a payment order file (betalningsunderlag)",
    "03": "a mandate order file (medgivandeunderlag)",
    "04": "a mandate order file (medgivandeunderlag)",
    "05": "a mandate order file (medgivandeunderlag)",
    **dict.fromkeys(
        ("23", "24", "25", "26", "27", "28", "29"),
        "a cancellation/change order file (makulerings-/ändringsunderlag)",
    ),
}


def detect(name: str, line: int, text: str) -> AutogiroFile | None:
    """The report kind from its opening record (checklist §1.5); None for a file *to* Bankgirot."""
    tk = text[:2]
    if tk == "51" and "AG-EMEDGIV" in text[24:44]:
        return AutogiroFile.EMANDATES
    if tk == "01" and text[2:10] == "AUTOGIRO":
        content = text[44:64].strip()
        if content in _NEW_LAYOUT_CONTENT:
            return _NEW_LAYOUT_CONTENT[content]
        if content.startswith("MAKULERING"):
            return AutogiroFile.AMENDMENTS
        raise located(name, line, f"unknown Autogiro report content {content!r} (positions 45-64)")
    if tk == "01" and text[10:18] == "AUTOGIRO":
        if text[18:22] != "9900":
            return None  # requests to Bankgirot have no 9900 in 19-22
        content = text[22:62].strip()
        if content.startswith("BEVAKNINGSREG"):
            return AutogiroFile.PAYMENT_EXTRACT
        if content.startswith("FELLISTA"):
            return AutogiroFile.REJECTED_OLD
        if content.startswith("MAK"):
            return AutogiroFile.AMENDMENTS_OLD
        if not content:
            return AutogiroFile.PAYMENT_SPEC_OLD
        raise located(
            name, line, f"unknown old-layout Autogiro report {content!r} (positions 23-62)"
        )
    if tk == "01" and text[10:14] == "9900" and text[24:33] == "AG-MEDAVI":
        return AutogiroFile.MANDATE_NOTICES_OLD
    if is_digits(text[:10]) and text[38] in "12":
        # AG-TM 8.8: status in 58. Old layout (9.8): status 57, then "0" (mandate OK) in 58.
        if text[57] in "12":
            return AutogiroFile.MANDATE_EXTRACT
        if text[56] in "12" and text[57] == "0":
            return AutogiroFile.MANDATE_EXTRACT_OLD
    if tk in _SEAL_TKS:
        raise seal_record(name, line, tk)
    if text.startswith("01BGMAX"):
        raise located(name, line, "this is a BgMax file, not an Autogiro report (--format bgmax)")
    fragment = bgmax_fragment(text)
    if fragment is not None:
        raise located(
            name,
            line,
            f"this is a BgMax fragment, not an Autogiro report: it starts with {fragment} and "
            "has no TK01 start record ('01BGMAX...', the first record of every BgMax file); "
            "ingest the whole BgMax file as Bankgirot delivered it",
        )
    raise located(name, line, "not an Autogiro report: unknown opening record")


def parse(
    stream: Readable,
    name: str,
    *,
    on_notice: Callable[[Notice], None] | None = None,
    payees: Payees | None = None,
) -> Iterator[PaymentEvent]:
    """Canonical events from one Autogiro report, validated against its closing records.

    A mandate notice saying our own request failed creates no event: it is passed to
    ``on_notice`` as a :class:`Notice` when given (the caller decides how to report it, say
    once for a file read twice), else logged by :func:`log_notice`. With ``payees``, a file
    naming another payee bankgiro or customer number is refused (None: not checked).
    """
    reader = RecordReader(stream, name)
    records = iter(reader)
    first = next(records, None)
    if first is None:
        raise located(
            name,
            max(reader.last_line, 1),
            "no Autogiro records in the file (no line starts with a two-digit record type)",
        )
    kind = detect(name, *first)
    if kind is None:
        detail = next(records, None)
        what = _REQUEST_KINDS.get(detail[1][:2] if detail else "", "a file to Bankgirot")
        raise located(
            name,
            first[0],
            f"this is {what}, sent TO Bankgirot; dynamics_bridge reads the reports Bankgirot "
            "sends back (payment specification, mandate notices, rejections, changes)",
        )
    yield from _Parser(name, reader, on_notice or log_notice, payees).run(kind, first, records)


_PAYOUT_TEXT = "Utbetalning till betalaren via Autogiro"


def _outcomes() -> dict[tuple[str, str], tuple[EventKind, str | None, str | None, bool]]:
    """Payment result by (TK, status in position 80): kind, reason code, reason text, and
    whether it is approved (new-layout totals count approved records only)."""
    table: dict[tuple[str, str], tuple[EventKind, str | None, str | None, bool]] = {}
    for status in ("0", " "):  # old layout: blank = approved
        table["82", status] = (EventKind.PAYMENT_SUCCEEDED, None, None, True)
        table["32", status] = (EventKind.PAYMENT_REFUNDED, None, _PAYOUT_TEXT, True)
    for status, text in codes.PAYMENT_STATUS.items():
        for tk in ("82", "32"):
            table[tk, status] = (EventKind.PAYMENT_FAILED, status, text, False)
    # 9: not executed now, retried later (collections only).
    table["82", "9"] = (EventKind.PAYMENT_RESCHEDULED, "9", codes.PAYMENT_STATUS["9"], False)
    return table


_OUTCOMES = _outcomes()
_SEAL_TKS = ("00", "99")
_SECTION_OF = {"82": "15", "32": "16", "77": "17"}
_PAYER = MemberRefKind.PAYER_NUMBER
_SOURCE = Source.AUTOGIRO
_ID_PREFIX = f"{Source.AUTOGIRO.value}-"
_EPOCH = datetime(1970, 1, 1, tzinfo=STOCKHOLM)


class _Parser:
    """State shared by the sections of one file: its name, the current section's payee and date,
    and the occurrence counter that keeps ids of identical records apart."""

    def __init__(
        self,
        name: str,
        reader: RecordReader,
        on_notice: Callable[[Notice], None],
        payees: Payees | None,
    ) -> None:
        self.name = name
        self.origin = f"{name}:"
        self.reader = reader
        self.on_notice = on_notice
        self.payees = payees
        self.count = Occurrences().next
        self.days: dict[str, datetime] = {}
        self.payee_bankgiro = ""
        self.id_base = hashlib.sha256(b"|")
        self.file_day: datetime | None = None

    # -- framing ----------------------------------------------------------------------------

    def run(
        self, kind: AutogiroFile, first: tuple[int, str], records: Records
    ) -> Iterator[PaymentEvent]:
        handler = _HANDLERS[kind]
        opening: tuple[int, str] | None = first
        while opening is not None:
            yield from handler(self, opening, records)
            if kind in (AutogiroFile.MANDATE_EXTRACT, AutogiroFile.MANDATE_EXTRACT_OLD):
                return  # no closing record: the handler read the whole file
            opening = next(records, None)
            if opening is not None:
                line, text = opening
                if text[:2] in _SEAL_TKS:
                    raise seal_record(self.name, line, text[:2])
                try:
                    again = detect(self.name, line, text)
                except InputError:
                    again = None
                if again is not kind:
                    raise located(
                        self.name,
                        line,
                        f"TK{text[:2]} after the closing record; a new section must open with "
                        f"another {kind.value} opening record",
                    )

    def section(
        self,
        line: int,
        text: str,
        bankgiro_at: int,
        date_raw: str,
        customer_at: int | None = None,
        record: str = "opening record",
    ) -> None:
        """A new payee: its bankgiro (10 digits from ``bankgiro_at``) and, when the record
        has one, customer number (6 digits from ``customer_at``), checked against the union's
        own when :class:`Payees` are given."""
        payees = self.payees
        if payees is not None:
            payees.bankgiro(self.name, line, text, bankgiro_at, bankgiro_at + 9, record)
            if customer_at is not None:
                payees.customer(self.name, line, text, customer_at, customer_at + 5, record)
        bankgiro = text[bankgiro_at - 1 : bankgiro_at + 9]
        self.payee_bankgiro = bankgiro
        self.id_base = hashlib.sha256(f"{bankgiro}|".encode())
        self.file_day = day(date_raw)

    def missing_closing(self, closing: str) -> InputError:
        return located(
            self.name,
            max(self.reader.last_line, 1),
            f"the file ends without its TK{closing} closing record",
        )

    # -- events -----------------------------------------------------------------------------

    def event(
        self,
        line: int,
        text: str,
        kind: EventKind,
        payer: str,
        amount_minor: int,
        date_raw: str,
        reason_code: str | None,
        reason_text: str | None,
        reference: str,
    ) -> PaymentEvent:
        """One event; its id is the payee bankgiro and the whole record, numbered on repeats
        (``make_event_id(Source.AUTOGIRO, bankgiro + "|" + record, str(occurrence))``)."""
        when = day(date_raw)
        if when is None:
            when = self.file_day or _EPOCH
            if date_raw.strip("0 "):
                # Bankgirot's own examples hold impossible dates (20080631): keep the raw value.
                note = f"ogiltigt datum {date_raw} i filen"
                reason_text = f"{reason_text}; {note}" if reason_text else note
        payer_number = payer.strip().lstrip("0") or "0"
        digest = self.id_base.copy()
        digest.update(f"{text}\x1f{self.count(text)}".encode())
        return PaymentEvent(
            _ID_PREFIX + digest.hexdigest()[:32],
            _SOURCE,
            kind,
            MemberRef(_PAYER, payer_number),
            amount_minor,
            "SEK",
            when,
            reference or f"{self.payee_bankgiro}/{payer_number}",
            reason_code,
            reason_text,
            self.origin + str(line),
        )

    def payment(self, line: int, text: str) -> tuple[PaymentEvent, bool]:
        """A TK82/TK32 payment result or a TK77 refund (same positions up to 69).

        The hot path of a million-record file, so :meth:`event` is inlined here for the common
        case: the same id, the same fields, a third of the time. Arguments are positional
        because a keyword call to the dataclass costs twice as much.
        """
        numbers = text[15:43]  # payer number 16-31 and amount 32-43, checked in one go
        if not (numbers.isdigit() and numbers.isascii() and text[43:53] == self.payee_bankgiro):
            raise self.bad_payment(line, text)
        payer = numbers[:16]
        raw = numbers[16:]
        tk = text[:2]
        if tk == "77":
            reason = text[77:79]
            refund = self.event(
                line,
                text,
                EventKind.PAYMENT_REFUNDED,
                payer,
                int(raw),
                text[69:77],
                reason,
                codes.REFUND_REASON.get(reason, f"Återbetalningsorsak {reason}"),
                text[53:69].strip(),
            )
            return refund, True
        outcome = _OUTCOMES.get((tk, text[79]))
        if outcome is None:
            raise located(
                self.name, line, f"unknown status {text[79]!r} in position 80", field="status"
            )
        kind, code, reason_text, approved = outcome
        date_raw = text[2:10]
        when = self.days.get(date_raw)
        if when is None:  # first time this date, or an impossible one: the general path
            parsed = day(date_raw)
            if parsed is not None:
                self.days[date_raw] = parsed
            event = self.event(
                line, text, kind, payer, int(raw), date_raw, code, reason_text, text[53:69].strip()
            )
            return event, approved
        payer_number = payer.lstrip("0") or "0"
        digest = self.id_base.copy()
        digest.update(f"{text}\x1f{self.count(text)}".encode())
        event = PaymentEvent(
            _ID_PREFIX + digest.hexdigest()[:32],
            _SOURCE,
            kind,
            MemberRef(_PAYER, payer_number),
            int(raw),
            "SEK",
            when,
            text[53:69].strip() or f"{self.payee_bankgiro}/{payer_number}",
            code,
            reason_text,
            self.origin + str(line),
        )
        return event, approved

    def bad_payment(self, line: int, text: str) -> InputError:
        """Which field of a payment record is wrong (the slow path of :meth:`payment`)."""
        if not is_digits(text[31:43]):
            return located(
                self.name,
                line,
                f"amount is not a number: {text[31:43]!r} (positions 32-43)",
                field="amount",
            )
        if not is_digits(text[15:31]):
            return located(
                self.name,
                line,
                f"payer number is not a number: {text[15:31]!r} (positions 16-31)",
                field="payer number",
            )
        return self.other_payee(line, text[43:53], 44, 53)

    def other_payee(self, line: int, found: str, start: int, end: int) -> InputError:
        """A record naming another payee bankgiro than its section's opening record."""
        return located(
            self.name,
            line,
            f"payee bankgiro {found!r} (positions {start}-{end}) differs from the opening "
            f"record's {self.payee_bankgiro!r}",
            field="payee bankgiro",
        )

    # -- checks -----------------------------------------------------------------------------

    def check(
        self,
        line: int,
        text: str,
        start: int,
        end: int,
        what: str,
        found: int,
        *,
        signed: bool = False,
        money: bool = False,
    ) -> None:
        """A closing figure against what the file holds; the error names both and the record."""
        raw = text[start - 1 : end]
        if signed:
            stated = abs(signed_digits(raw, self.name, line, what, start, end))
        else:
            stated = digits(raw, self.name, line, what, start, end)
        if stated != found:
            shown = (_kr(stated), _kr(found)) if money else (stated, found)
            raise located(
                self.name,
                line,
                f"closing record says {what} = {shown[0]} (positions {start}-{end}), "
                f"the file has {shown[1]}",
                field=what,
            )

    # -- payment specification ----------------------------------------------------------------

    def payment_spec(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """New layout: TK01, [TK15 + TK82…], [TK16 + TK32…], [TK17 + TK77], TK09 (§1.3).

        Section amounts and counts (TK15/16/17) and the TK09 counts cover approved records only.
        """
        self.section(*opening, 71, opening[1][24:32], 65)
        name = self.name
        payment = self.payment
        totals = {"15": 0, "16": 0, "17": 0, "82": 0, "32": 0, "77": 0}
        section_tk = ""
        section_line, section_text = 0, ""
        amount = count = 0
        for line, text in records:
            tk = text[:2]
            if tk == "82" or tk == "32" or tk == "77":
                if section_tk != _SECTION_OF[tk]:
                    raise located(name, line, f"TK{tk} outside a TK{_SECTION_OF[tk]} section")
                event, approved = payment(line, text)
                if approved:
                    amount += event.amount_minor
                    count += 1
                    totals[tk] += 1
                yield event
            elif tk == "15" or tk == "16" or tk == "17":
                if section_tk:
                    self.close_section(section_line, section_text, amount, count)
                section_tk, section_line, section_text = tk, line, text
                amount = count = 0
                totals[tk] += 1
            elif tk == "09":
                if section_tk:
                    self.close_section(section_line, section_text, amount, count)
                self.check(line, text, 15, 20, "deposit records (TK15)", totals["15"])
                self.check(line, text, 21, 32, "approved collections (TK82)", totals["82"])
                self.check(line, text, 33, 38, "withdrawal records (TK16)", totals["16"])
                self.check(line, text, 39, 50, "approved payouts (TK32)", totals["32"])
                self.check(line, text, 51, 56, "refund withdrawal records (TK17)", totals["17"])
                self.check(line, text, 57, 68, "refunds (TK77)", totals["77"])
                return
            else:
                raise located(
                    name, line, f"unexpected record type TK{tk} in a payment specification"
                )
        raise self.missing_closing("09")

    def close_section(self, line: int, text: str, amount: int, count: int) -> None:
        tk = text[:2]
        stated = digits(text[50:68], self.name, line, "amount", 51, 68)
        if stated != amount:
            raise located(
                self.name,
                line,
                f"TK{tk} amount (positions 51-68) is {_kr(stated)} but its approved records "
                f"sum to {_kr(amount)}",
                field="amount",
            )
        stated = digits(text[71:79], self.name, line, "count", 72, 79)
        if stated != count:
            raise located(
                self.name,
                line,
                f"TK{tk} count (positions 72-79) is {stated} but {count} approved records follow",
                field="count",
            )

    def payment_spec_old(
        self, opening: tuple[int, str], records: Records
    ) -> Iterator[PaymentEvent]:
        """Old layout: no deposit records; TK09 counts and sums ALL records, stopped ones too."""
        self.section(*opening, 69, opening[1][2:10], 63)
        sums = {"82": 0, "32": 0}
        counts = {"82": 0, "32": 0}
        payment = self.payment
        for line, text in records:
            tk = text[:2]
            if tk == "82" or tk == "32":
                event = payment(line, text)[0]
                sums[tk] += event.amount_minor
                counts[tk] += 1
                yield event
            elif tk == "09":
                self.old_closing(line, text, sums, counts)
                return
            else:
                raise located(
                    self.name, line, f"unexpected record type TK{tk} in a payment specification"
                )
        raise self.missing_closing("09")

    def old_closing(
        self, line: int, text: str, sums: dict[str, int], counts: dict[str, int], what: str = ""
    ) -> None:
        """The TK09 of old-layout reports, the payment extract and the changes report: 29-40
        payout sum, 41-46 payout count, 47-52 collection count, 57-68 collection sum."""
        self.check(line, text, 29, 40, f"{what}payout sum", sums["32"], signed=True, money=True)
        self.check(line, text, 41, 46, f"{what}payout count", counts["32"])
        self.check(line, text, 47, 52, f"{what}collection count", counts["82"])
        self.check(line, text, 57, 68, f"{what}collection sum", sums["82"], signed=True, money=True)

    def payment_extract(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """Payments waiting for their date: facts the upcoming-payment reminders need."""
        self.section(*opening, 69, opening[1][2:10], 63)
        sums = {"82": 0, "32": 0}
        counts = {"82": 0, "32": 0}
        for line, text in records:
            tk = text[:2]
            if tk == "82" or tk == "32":
                money = digits(text[31:43], self.name, line, "amount", 32, 43)
                sums[tk] += money
                counts[tk] += 1
                yield self.event(
                    line,
                    text,
                    EventKind.PAYMENT_SCHEDULED,
                    text[15:31],
                    money,
                    text[2:10],
                    None,
                    "Kommande autogirobetalning" if tk == "82" else "Kommande utbetalning",
                    text[53:69].strip(),
                )
            elif tk == "09":
                self.old_closing(line, text, sums, counts)
                return
            else:
                raise located(
                    self.name, line, f"unexpected record type TK{tk} in a payment extract"
                )
        raise self.missing_closing("09")

    # -- mandates -----------------------------------------------------------------------------

    def mandate_notices(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """TK73 per mandate event: information code (what) + comment code (result), in order.

        payments.md §1.3, "Suggested CRM mapping": information 10 (payee's bankgiro closed) and
        comments 02/07/33/98 mean the mandate is gone (43/07 expired, 46/02 cancelled by the
        payer); comment 32 that it exists. Information 04/05 with comment 09/10/20/21/23/29/30,
        or 03 with 04/21/29/30, mean the payee's own request failed: the mandate is unchanged,
        so no event, only a :class:`Notice` for the caller (by default a WARNING, ``outcome``
        :data:`MANDATE_REQUEST_FAILED`) asking for a task. What remains (42/03, 42/05: the
        payer's bank said no) is mandate.rejected.
        """
        text = opening[1]
        if text[2:10] == "AUTOGIRO":
            self.section(*opening, 71, text[24:32], 65)
        else:  # old layout: 01 + date + 9900 + bankgiro, no customer number
            self.section(*opening, 15, text[2:10])
        count = 0
        for line, text in records:
            tk = text[:2]
            if tk == "73":
                count += 1
                info, comment = text[61:63], text[63:65]
                failed_request = (info, comment) in codes.MANDATE_REQUEST_FAILED_PAIRS
                if text[2:12] != self.payee_bankgiro and not failed_request:
                    # A failed request (comment 29: wrong payee bankgiro) may echo the wrong one.
                    raise self.other_payee(line, text[2:12], 3, 12)
                reason = (
                    f"{codes.MANDATE_INFO.get(info, f'Informationskod {info}')}: "
                    f"{codes.MANDATE_COMMENT.get(comment, f'Kommentarskod {comment}')}"
                )
                if info in codes.MANDATE_REMOVED_INFO:
                    kind = EventKind.MANDATE_CANCELLED
                elif failed_request:
                    payer = text[12:28].strip().lstrip("0") or "0"
                    self.on_notice(
                        Notice(
                            self.origin + str(line), mask_text(payer), info, comment, reason, payer
                        )
                    )
                    continue
                elif comment in codes.MANDATE_CREATED:
                    kind = EventKind.MANDATE_APPROVED
                elif comment in codes.MANDATE_REMOVED:
                    kind = EventKind.MANDATE_CANCELLED
                else:
                    kind = EventKind.MANDATE_REJECTED
                yield self.event(
                    line, text, kind, text[12:28], 0, text[65:73], f"{info}/{comment}", reason, ""
                )
            elif tk == "09":
                self.check(line, text, 15, 21, "mandate notices (TK73)", count)
                return
            else:
                raise located(self.name, line, f"unexpected record type TK{tk} in mandate notices")
        raise self.missing_closing("09")

    def emandates(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """TK52 (+ TK53-56 with the payer's text and address, never copied into events), TK59."""
        self.section(*opening, 15, opening[1][2:10])
        written = opening[1][2:10]
        count = 0
        mandates = 0
        for line, text in records:
            tk = text[:2]
            if tk == "52":
                if text[2:12] != self.payee_bankgiro:
                    raise self.other_payee(line, text[2:12], 3, 12)
                count += 1
                mandates += 1
                message = text[61]
                yield self.event(
                    line,
                    text,
                    EventKind.MANDATE_REQUESTED,
                    text[12:28],
                    0,
                    written,
                    message,
                    f"{_EMANDATE_MESSAGE.get(message, 'Medgivande')} via internetbanken; "
                    "svara med godkännande eller avvisning",
                    "",
                )
            elif tk in ("53", "54", "55", "56"):
                if mandates == 0:
                    raise located(self.name, line, f"TK{tk} before any TK52 mandate")
                count += 1
            elif tk == "59":
                self.check(line, text, 15, 21, "records (TK52-56)", count)
                return
            else:
                raise located(
                    self.name, line, f"unexpected record type TK{tk} in internet-bank mandates"
                )
        raise self.missing_closing("59")

    def mandate_extract(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """One record per mandate, no opening or closing (AG-TM 8.8): bankgiro 1-10, payer
        23-38, created 42-49, changed 50-57, status 58 (1 approved, 2 under inquiry)."""
        return self.register(opening, records, old=False)

    def mandate_extract_old(
        self, opening: tuple[int, str], records: Records
    ) -> Iterator[PaymentEvent]:
        """The old layout (AG-TM 9.8): last activity year is one digit (40), so created 41-48,
        changed 49-56, status 57, then 58 ``0`` (mandate OK) and 59-63 an optional maximum
        amount in hundreds of kronor; account 64-79."""
        return self.register(opening, records, old=True)

    def register(
        self, opening: tuple[int, str], records: Records, *, old: bool
    ) -> Iterator[PaymentEvent]:
        status_at = 56 if old else 57
        layout = (
            "old layout: bankgiro 1-10, status 57, '0' in 58" if old else "bankgiro 1-10, status 58"
        )
        line, text = opening
        self.payee_bankgiro = ""
        while True:
            status = text[status_at]
            if not (is_digits(text[:10]) and status in ("1", "2") and (not old or text[57] == "0")):
                if text[:2] in _SEAL_TKS and not is_digits(text[:10]):
                    raise seal_record(self.name, line, text[:2])
                raise located(self.name, line, f"not a mandate register record ({layout})")
            if text[:10] != self.payee_bankgiro:  # the extract may list several payees
                self.section(line, text, 1, "", record="mandate register record")
            if old:
                created, changed = text[40:48], text[48:56]
            else:
                created, changed = text[41:49], text[49:57]
            when = changed if day(changed) else created
            if status == "1":
                kind, reason = EventKind.MANDATE_APPROVED, "Godkänt medgivande (registerutdrag)"
            else:
                kind = EventKind.MANDATE_REQUESTED
                reason = "Medgivande under förfrågan hos banken (registerutdrag)"
            if old and (maximum := text[58:63]).strip():
                hundreds = digits(maximum, self.name, line, "maximum amount", 59, 63)
                if hundreds:
                    reason += f"; maxbelopp {hundreds * 100} kr"
            yield self.event(
                line, text, kind, text[22:38], 0, when, f"register/{status}", reason, ""
            )
            following = next(records, None)
            if following is None:
                return
            line, text = following

    # -- rejections and amendments ------------------------------------------------------------

    def rejected(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """Orders stopped in Bankgirot's checks; they never reach their date. Positions differ
        from the payment specification (§1.3)."""
        self.opening_date_and_payee(opening)
        sums = {"82": 0, "32": 0}
        counts = {"82": 0, "32": 0}
        for line, text in records:
            tk = text[:2]
            if tk == "82" or tk == "32":
                code = text[58:60]
                money = digits(text[30:42], self.name, line, "amount", 31, 42)
                counts[tk] += 1
                sums[tk] += money
                yield self.event(
                    line,
                    text,
                    EventKind.PAYMENT_FAILED,
                    text[14:30],
                    money,
                    text[2:10],
                    code,
                    "Avvisat betalningsuppdrag: "
                    + codes.REJECTION.get(code, f"kommentarskod {code}"),
                    text[42:58].strip(),
                )
            elif tk == "09":
                self.check(line, text, 15, 20, "rejected payouts", counts["32"])
                self.check(line, text, 21, 32, "rejected payout sum", sums["32"], money=True)
                self.check(line, text, 33, 38, "rejected collections", counts["82"])
                self.check(line, text, 39, 50, "rejected collection sum", sums["82"], money=True)
                return
            else:
                raise located(
                    self.name, line, f"unexpected record type TK{tk} in rejected payments"
                )
        raise self.missing_closing("09")

    def amendments(self, opening: tuple[int, str], records: Records) -> Iterator[PaymentEvent]:
        """Every cancellation and date change, done or not; the totals cover the done ones.

        Done ones about one payer become events; requests Bankgirot could not carry out change
        nothing, and records about no single payer (move all payments) name no member.
        """
        self.opening_date_and_payee(opening)
        sums = {"82": 0, "32": 0}
        counts = {"82": 0, "32": 0}
        for line, text in records:
            tk = text[:2]
            if tk in codes.AMENDMENT_CAUSE:
                comment = text[72:74]
                direction = text[26:28]
                money = digits(text[28:40], self.name, line, "amount", 29, 40)
                moved = comment in codes.AMENDMENT_DONE_MOVED
                done = moved or comment in codes.AMENDMENT_DONE_CANCELLED
                if done and direction in sums:
                    counts[direction] += 1
                    sums[direction] += money
                payer = text[10:26]
                if not done or not payer.strip("0 "):
                    continue
                reason = codes.AMENDMENT_CAUSE[tk]
                if moved:
                    reason += f"; nytt datum {text[48:56]}"
                yield self.event(
                    line,
                    text,
                    EventKind.PAYMENT_RESCHEDULED if moved else EventKind.PAYMENT_CANCELLED,
                    payer,
                    money,
                    text[2:10],
                    f"{tk}/{comment}",
                    reason,
                    text[56:72].strip().lstrip("0"),
                )
            elif tk == "09":
                self.old_closing(line, text, sums, counts, "cancelled/changed ")
                return
            else:
                raise located(
                    self.name, line, f"unexpected record type TK{tk} in cancellations/changes"
                )
        raise self.missing_closing("09")

    def opening_date_and_payee(self, opening: tuple[int, str]) -> None:
        text = opening[1]
        if text[2:10] == "AUTOGIRO":  # new layout
            self.section(*opening, 71, text[24:32], 65)
        else:
            self.section(*opening, 69, text[2:10], 63)


_EMANDATE_MESSAGE = {"0": "Nytt medgivande", "1": "Påminnelse 1", "2": "Påminnelse 2"}


def _kr(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d} kr"


_HANDLERS: dict[
    AutogiroFile, Callable[[_Parser, tuple[int, str], Records], Iterator[PaymentEvent]]
] = {
    AutogiroFile.PAYMENT_SPEC: _Parser.payment_spec,
    AutogiroFile.PAYMENT_SPEC_OLD: _Parser.payment_spec_old,
    AutogiroFile.MANDATE_NOTICES: _Parser.mandate_notices,
    AutogiroFile.MANDATE_NOTICES_OLD: _Parser.mandate_notices,
    AutogiroFile.REJECTED: _Parser.rejected,
    AutogiroFile.REJECTED_OLD: _Parser.rejected,
    AutogiroFile.AMENDMENTS: _Parser.amendments,
    AutogiroFile.AMENDMENTS_OLD: _Parser.amendments,
    AutogiroFile.EMANDATES: _Parser.emandates,
    AutogiroFile.PAYMENT_EXTRACT: _Parser.payment_extract,
    AutogiroFile.MANDATE_EXTRACT: _Parser.mandate_extract,
    AutogiroFile.MANDATE_EXTRACT_OLD: _Parser.mandate_extract_old,
}
