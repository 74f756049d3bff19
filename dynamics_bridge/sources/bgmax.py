"""BgMax (Bankgiro Inbetalningar): incoming bankgiro and OCR payments (payments.md §2).

TK01 start; sections of TK05 opening, payments (TK20, deductions TK21, each followed by extra
references TK22/23 and payer data TK25-29) and a TK15 deposit; TK70 end. One event per payment
and per deduction; extra references and payer data create none, and payer names and addresses
are never copied into events.

A payment's booking date stands in its section's TK15, after the payments. A section is held
until then (as raw records) up to ``buffer_limit`` payments; a larger one (a big day's single
deposit) is not held: when the stream can seek, its records are read a second time once the
deposit has been checked, so memory stays flat however large the file or the section is.

Given :class:`Payees`, every section's receiving bankgiro (TK05) must be the union's own. A
section or records without the TK01 start record are refused as a BgMax fragment, and seal
records (TK00/TK99: Bankgirot seals files sent to it, not BgMax) as what they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind, PaymentEvent, Source
from dynamics_bridge.sources.autogiro_codes import DEDUCTION
from dynamics_bridge.sources.bankgirot import (
    STOCKHOLM,
    Anchor,
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
)
from dynamics_bridge.sources.ocr import OCR_CHECK_FAILED, OcrScheme, member_ref_for

__all__ = ["BUFFER_LIMIT", "FREE_TEXT_REFERENCE", "parse"]

#: ``reason_code`` of a payment whose reference is free text (reference code 3, or a reference
#: where code 0/1 says there is none): never checked as an OCR number, so it names no member by
#: chance; kept whole as ``{"kind": "ocr", ...}`` for a person or a fuzzy matcher.
FREE_TEXT_REFERENCE = "free_text_reference"

#: Payments of one section held in memory before the section is re-read instead (~200 B each).
BUFFER_LIMIT = 20_000

# Enum members bound once: in Python 3.11 each ``EventKind.X`` look-up costs a call.
_SOURCE = Source.BGMAX
_SUCCEEDED = EventKind.PAYMENT_SUCCEEDED
_REFUNDED = EventKind.PAYMENT_REFUNDED
_OCR = MemberRefKind.OCR
_ID_PREFIX = f"{Source.BGMAX.value}-"
_EPOCH = datetime(1970, 1, 1, tzinfo=STOCKHOLM)
_PAYER_DATA = frozenset(("25", "26", "27", "28", "29"))
_SEAL = ("00", "99")
#: Reference codes (position 56) whose reference passed Bankgirot's OCR check (payments.md §2:
#: 2 = OCR check agreement, 4 = extended form registration); only these are read as OCR numbers.
_OCR_CODES = frozenset(("2", "4"))
_NO_REFERENCE = MemberRef(_OCR, "")
_DEDUCTIONS = {code: f"Avdrag: {text}" for code, text in DEDUCTION.items()}


def parse(
    stream: Readable,
    name: str,
    *,
    ocr_scheme: OcrScheme = "luhn",
    buffer_limit: int = BUFFER_LIMIT,
    payees: Payees | None = None,
) -> Iterator[PaymentEvent]:
    """One event per payment (TK20) and deduction (TK21), validated against TK15 and TK70.

    With ``payees``, a section for another receiving bankgiro is refused (None: not checked).
    """
    return _Parser(stream, name, ocr_scheme, buffer_limit, payees).events()


@dataclass(slots=True)
class _Section:
    line: int
    bankgiro: str
    currency: str
    anchor: Anchor | None
    kept: list[tuple[int, str]] | None  # None once the section is too large to hold
    total: int = 0
    count: int = 0


class _Parser:
    def __init__(
        self,
        stream: Readable,
        name: str,
        scheme: OcrScheme,
        buffer_limit: int,
        payees: Payees | None,
    ) -> None:
        self.stream = stream
        self.payees = payees
        self.name = name
        self.origin = f"{name}:"
        self.scheme = scheme
        self.buffer_limit = buffer_limit
        self.count = Occurrences().next
        self.file_day: datetime | None = None
        seekable = getattr(stream, "seekable", None)
        self.seekable = bool(seekable()) if callable(seekable) else False

    def events(self) -> Iterator[PaymentEvent]:
        name = self.name
        reader = RecordReader(self.stream, name)
        records = iter(reader)
        first = next(records, None)
        if first is None:
            raise located(
                name,
                max(reader.last_line, 1),
                "no BgMax records in the file (no line starts with a two-digit record type)",
            )
        line, text = first
        if text[:2] != "01" or text[2:22].strip() != "BGMAX":
            if text[:2] in _SEAL:
                raise seal_record(name, line, text[:2])
            fragment = bgmax_fragment(text)
            if fragment is not None:
                raise located(
                    name,
                    line,
                    f"a BgMax fragment: it starts with {fragment} and has no TK01 start record "
                    "('01BGMAX...', the first record of every BgMax file); ingest the whole "
                    "file as Bankgirot delivered it",
                )
            raise located(name, line, "not a BgMax file: the first record must be TK01 'BGMAX'")
        self.file_day = day(text[24:32])
        payments = deductions = extra = deposits = 0
        limit = self.buffer_limit
        section: _Section | None = None
        for line, text in records:
            tk = text[:2]
            if tk == "20" or tk == "21":
                if section is None:
                    raise located(name, line, f"TK{tk} outside a section (no TK05 before it)")
                raw = text[37:55]
                if not (raw.isdigit() and raw.isascii()):
                    raise located(
                        name,
                        line,
                        f"amount is not a number: {raw!r} (positions 38-55)",
                        field="amount",
                    )
                if tk == "20":
                    section.total += int(raw)
                    payments += 1
                else:
                    section.total -= int(raw)
                    deductions += 1
                section.count += 1
                kept = section.kept
                if kept is not None:
                    kept.append((line, text))
                    if len(kept) > limit:
                        self.let_go(section)
            elif tk in _PAYER_DATA:
                if section is None or not section.count:
                    raise located(name, line, f"TK{tk} payer information without a payment")
            elif tk == "22" or tk == "23":
                if section is None or not section.count:
                    raise located(name, line, f"TK{tk} extra reference without a payment")
                digits(text[37:55], name, line, "amount", 38, 55)
                extra += 1
                if section.kept is not None:
                    section.kept.append((line, text))
            elif tk == "05":
                if section is not None:
                    raise located(name, line, "TK05 opens a section before the previous TK15")
                currency = text[22:25]
                if not (currency.isascii() and currency.isalpha() and currency.isupper()):
                    raise located(
                        name,
                        line,
                        f"currency {currency!r} (positions 23-25) is not a currency code",
                        field="currency",
                    )
                if self.payees is not None:
                    self.payees.bankgiro(name, line, text, 3, 12, "section opening record (TK05)")
                section = _Section(line, text[2:12], currency, reader.anchor, [])
            elif tk == "15":
                if section is None:
                    raise located(name, line, "TK15 deposit without a TK05 opening")
                yield from self.emit(*self.close(section, line, text))
                deposits += 1
                section = None
            elif tk == "70":
                if section is not None:
                    raise located(name, line, "TK70 end record inside an open section (no TK15)")
                self.expect(line, text, 3, 10, "payments (TK20)", payments)
                self.expect(line, text, 11, 18, "deductions (TK21)", deductions)
                self.expect(line, text, 19, 26, "extra references (TK22+23)", extra)
                self.expect(line, text, 27, 34, "deposits (TK15)", deposits)
                for after, following in records:
                    if following[:2] in _SEAL:
                        raise seal_record(name, after, following[:2])
                    raise located(name, after, f"TK{following[:2]} after the TK70 end record")
                return
            elif tk == "01":
                raise located(name, line, "a second TK01 start record")
            elif not is_digits(tk):
                raise located(name, line, f"not a BgMax record: {tk!r} in positions 1-2")
            # Other record types are ignored (§2); the totals above still have to agree.
        raise located(name, max(reader.last_line, 1), "the file ends without its TK70 end record")

    def let_go(self, section: _Section) -> None:
        """A section too large to hold is read again from its anchor once its deposit checks
        out, when the stream allows (else it is held: memory then grows with the section)."""
        if self.seekable and section.anchor is not None:
            section.kept = None

    def expect(self, line: int, text: str, start: int, end: int, what: str, found: int) -> None:
        stated = digits(text[start - 1 : end], self.name, line, what, start, end)
        if stated != found:
            raise located(
                self.name,
                line,
                f"end record says {what} = {stated} (positions {start}-{end}), "
                f"the file has {found}",
                field=what,
            )

    # -- a checked section becomes events -----------------------------------------------------

    def close(
        self, section: _Section, line: int, text: str
    ) -> tuple[Iterable[tuple[int, str]], hashlib._Hash, datetime, str, str | None]:
        """Check a section against its deposit; what :meth:`emit` needs to make its events."""
        name = self.name
        stated = digits(text[50:68], name, line, "deposit amount", 51, 68)
        if stated != section.total:
            raise located(
                name,
                line,
                f"deposit amount (positions 51-68) is {_money(stated)} {section.currency} but "
                f"the section's payments less deductions are {_money(section.total)}",
                field="amount",
            )
        count = digits(text[71:79], name, line, "count", 72, 79)
        if count != section.count:
            raise located(
                name,
                line,
                f"deposit count (positions 72-79) is {count} but the section holds "
                f"{section.count} payments and deductions",
                field="count",
            )
        currency = text[68:71]
        if currency.strip() and currency != section.currency:
            raise located(
                name,
                line,
                f"deposit currency {currency!r} (positions 69-71) differs from the section's "
                f"{section.currency!r} (TK05 on line {section.line})",
                field="currency",
            )
        booked_raw = text[37:45]
        booked = day(booked_raw)
        note = None
        if booked is None:
            # Kept raw, never fatal: dated by the file's creation day instead.
            booked = self.file_day or _EPOCH
            note = f"ogiltigt insättningsdatum {booked_raw} i filen"
        base = hashlib.sha256(f"{section.bankgiro}|{booked_raw}|{text[45:50]}|".encode())
        records = section.kept if section.kept is not None else self.reread(section, line)
        return records, base, booked, section.currency, note

    def reread(self, section: _Section, deposit_line: int) -> Iterator[tuple[int, str]]:
        """The section's payment records again, read from its anchor; the stream is put back."""
        stream = self.stream
        assert section.anchor is not None  # keep() only lets go of sections it can re-read
        saved = stream.tell()  # type: ignore[attr-defined]
        stream.seek(section.anchor.offset)  # type: ignore[attr-defined]
        try:
            for line, text in RecordReader(stream, self.name, resume=section.anchor):
                if line <= section.line:
                    continue
                if line >= deposit_line:
                    return
                tk = text[:2]
                if tk == "20" or tk == "21" or tk == "22" or tk == "23":
                    yield line, text
        finally:
            stream.seek(saved)  # type: ignore[attr-defined]

    def emit(
        self,
        records: Iterable[tuple[int, str]],
        base: hashlib._Hash,
        booked: datetime,
        currency: str,
        note: str | None,
    ) -> Iterator[PaymentEvent]:
        """Payments with the OCR-coded extra references (TK22, code 2/4) that follow each."""
        pending: tuple[int, str] | None = None
        extras: list[str] = []
        for line, text in records:
            tk = text[:2]
            if tk == "20" or tk == "21":
                if pending is not None:
                    yield self.event(*pending, extras, base, booked, currency, note)
                pending, extras = (line, text), []
            elif tk == "22" and text[55] in _OCR_CODES and (extra := text[12:37].strip()):
                extras.append(extra)
        if pending is not None:
            yield self.event(*pending, extras, base, booked, currency, note)

    def event(
        self,
        line: int,
        text: str,
        extras: list[str],
        base: hashlib._Hash,
        booked: datetime,
        currency: str,
        note: str | None,
    ) -> PaymentEvent:
        """One payment or deduction; its id is the deposit and the whole record
        (``make_event_id(Source.BGMAX, bankgiro|date|serial| + record, str(occurrence))``).

        The member, by the matching rule of payments.md §2: a reference with code 2/4 (checked
        by Bankgirot) is read with the OCR scheme; otherwise the first OCR number repeated in a
        TK22 (code 3 with several references, or 0 with extended form registration); otherwise
        a free-text reference (code 3, or 5: wrong per Bankgirot's check) is kept whole and
        unmatched, never Luhn-checked, so it cannot name a member by chance.
        """
        reference = text[12:37].strip()
        code = text[55]
        reason_code: str | None = None
        reason_text: str | None = None
        if reference and code in _OCR_CODES:
            ocr = reference
        elif extras:
            ocr = extras[0]
        else:
            ocr = ""
        if ocr:
            member, reason_code = member_ref_for(
                ocr.replace(" ", "") if " " in ocr else ocr, self.scheme
            )
            if reason_code is not None:
                member = MemberRef(_OCR, ocr)
                reason_text = f"Referensen {ocr!r} klarade inte OCR-kontrollen"
            if len(extras) > 1:
                also = ", ".join(x for x in extras if x != ocr)
                more = f"Betalningen anger också {also}"
                reason_text = f"{reason_text}; {more}" if reason_text else more
        elif reference:
            member = MemberRef(_OCR, reference)
            if code == "5":
                reason_code = OCR_CHECK_FAILED
                reason_text = f"Referensen {reference!r} är fel enligt Bankgirots kontroll"
            else:
                reason_code = FREE_TEXT_REFERENCE
                reason_text = (
                    f"Fritextreferens {reference!r} (referenskod {code}), inget OCR-nummer: "
                    "matcha betalningen manuellt"
                )
        else:
            member = _NO_REFERENCE
            reason_code, reason_text = "no_reference", "Betalningen saknar referens"
        if text[:2] == "21":
            kind = _REFUNDED
            deduction_code = text[70]
            deduction = _DEDUCTIONS.get(deduction_code, f"Avdrag: avdragskod {deduction_code!r}")
            if reason_code is None:
                reason_code, reason_text = deduction_code, deduction
            else:
                # Both facts kept: the reference problem as the code, the deduction in the text.
                reason_text = f"{deduction} (avdragskod {deduction_code}); {reason_text}"
        else:
            kind = _SUCCEEDED
        if note is not None:
            reason_text = f"{reason_text}; {note}" if reason_text else note
        digest = base.copy()
        digest.update(f"{text}\x1f{self.count(text)}".encode())
        # Positional: a keyword call to the dataclass costs twice as much, a million times over.
        return PaymentEvent(
            _ID_PREFIX + digest.hexdigest()[:32],
            _SOURCE,
            kind,
            member,
            int(text[37:55]),
            currency,
            booked,
            text[57:69].strip() or reference,
            reason_code,
            reason_text,
            self.origin + str(line),
        )


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"
