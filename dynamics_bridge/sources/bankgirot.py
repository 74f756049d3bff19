"""What Autogiro and BgMax files share: a tolerant, streaming reader of 80-character records.

Real files (reference payments.md §0) come as Latin-1, cp1252, UTF-8 or double-encoded UTF-8; with
CRLF, LF, CR or no line breaks at all (concatenated 80-byte records); with trailing blanks stripped
or extra blanks past column 80, TABs in blank areas, title lines before the first record and empty
lines at the end. The reader normalises all of that a chunk at a time, so memory does not grow
with the file, and yields ``(line, text)``: the 1-based physical line and exactly 80 characters.

Parsers slice ``text`` at fixed positions themselves (``text[start - 1 : end]`` for Bankgirot's
1-based inclusive positions): a Record object or a method call per field would cost more than the
rest of the parse.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from dynamics_bridge.errors import InputError
from dynamics_bridge.personnummer import luhn_valid

__all__ = [
    "CHUNK",
    "RECORD",
    "STOCKHOLM",
    "Anchor",
    "Occurrences",
    "Payees",
    "Readable",
    "RecordReader",
    "bgmax_fragment",
    "customer_number",
    "day",
    "decode_line",
    "digits",
    "is_digits",
    "located",
    "parse_bankgiro",
    "parse_date",
    "seal_record",
    "show_bankgiro",
    "signed_digits",
]

STOCKHOLM = ZoneInfo("Europe/Stockholm")
RECORD = 80
CHUNK = 1 << 20
#: A "line" this long without a line break is not a Bankgirot file; stop before it fills memory.
MAX_LINE = 64 * 1024
#: No line break in this much of the start means concatenated 80-byte records.
_SNIFF = 4096


class Readable(Protocol):
    """A binary stream: an open file, a blob stream, or a wrapper that counts what is read."""

    def read(self, size: int = -1, /) -> bytes: ...


def located(name: str, line: int, message: str, *, field: str | None = None) -> InputError:
    """The one error every parse problem becomes: ``FILE:LINE: message``."""
    return InputError(message, location=f"{name}:{line}", field=field)


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a chunk of records starts, so a seekable stream can be read again from there.

    BgMax holds a section's payments until its deposit record (which has their date); a huge
    section is re-read from its anchor instead of being held in memory.
    """

    offset: int  # byte offset of the chunk's first line
    line: int  # physical line number just before it
    separator: bytes  # b"\n", b"\r", or b"" for concatenated 80-byte records


def decode_line(raw: bytes) -> str:
    """cp1252/Latin-1 unless the bytes are UTF-8 with non-ASCII; undo double-encoded UTF-8."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace").replace("\ufffd", "?")
    return _undo_double_encoding(text)


def _undo_double_encoding(text: str) -> str:
    """UTF-8 bytes once read as Latin-1 and encoded again show as ``Ã¥``; repair those lines."""
    if "Ã" not in text and "Â" not in text:
        return text
    return "\n".join(_undo_line(line) for line in text.split("\n"))


def _undo_line(line: str) -> str:
    if "Ã" not in line and "Â" not in line:
        return line
    try:
        return line.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return line  # not double-encoded after all: keep it as it is


def _decode_block(raw: bytes) -> str:
    """A block of whole lines: one decode call for all of them (per line would cost double)."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return _undo_double_encoding(raw.decode("utf-8"))
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        return text.replace("\ufffd", "?") if "\ufffd" in text else text


class RecordReader:
    """Iterate ``(line, text)`` over the records of a Bankgirot file, 80 characters each.

    ``anchor`` is where the chunk holding the latest record starts (None when the stream cannot
    be re-read from there: UTF-8 without line breaks). ``last_line`` is the latest physical line
    read, for errors about something missing at the end.
    """

    def __init__(self, stream: Readable, name: str, *, resume: Anchor | None = None) -> None:
        self.name = name
        self.anchor: Anchor | None = None
        self.last_line = 0
        self._stream = stream
        self._resume = resume
        self._started = False

    def __iter__(self) -> Iterator[tuple[int, str]]:
        resume = self._resume
        if resume is not None:
            first = self._stream.read(CHUNK)
            if resume.separator:
                return self._lines(first, resume, started=True)
            return self._glued_bytes(first, resume, started=True)
        first = self._head()
        if not first:
            return iter(())
        skip = 0
        if first.startswith(codecs.BOM_UTF8):  # a Windows editor's byte-order mark
            skip, first = len(codecs.BOM_UTF8), first[len(codecs.BOM_UTF8) :]
        if b"\n" in first:
            return self._lines(first, Anchor(skip, 0, b"\n"), started=False)
        if b"\r" in first:  # old Mac line ends
            return self._lines(first, Anchor(skip, 0, b"\r"), started=False)
        try:
            utf8 = not first.isascii() and bool(
                codecs.getincrementaldecoder("utf-8")().decode(first, final=False)
            )
        except UnicodeDecodeError:
            utf8 = False
        if utf8:
            return self._glued_text(first)
        return self._glued_bytes(first, Anchor(skip, 0, b""), started=False)

    def _head(self) -> bytes:
        """Enough of the start to tell how lines end: a stream may return less than asked."""
        head = b""
        while True:
            more = self._stream.read(CHUNK)
            head += more
            if not more or b"\n" in head or len(head) >= _SNIFF:
                return head
            cr = head.find(b"\r")
            if 0 <= cr < len(head) - 1:  # a CR with something after it that is not LF
                return head

    # -- files with line breaks ---------------------------------------------------------------

    def _lines(self, buf: bytes, at: Anchor, *, started: bool) -> Iterator[tuple[int, str]]:
        sep, offset, line = at.separator, at.offset, at.line
        split_on = sep.decode()
        read = self._stream.read
        eof = not buf
        while True:
            if eof:
                if not buf:
                    return
                body, buf = buf, b""
            else:
                cut = buf.rfind(sep)
                if cut < 0:
                    if len(buf) > MAX_LINE:
                        raise located(self.name, line + 1, f"no line break within {MAX_LINE} bytes")
                    more = read(CHUNK)
                    if more:
                        buf += more
                    else:
                        eof = True
                    continue
                body, buf = buf[:cut], buf[cut + 1 :]
            self.anchor = Anchor(offset, line, sep)
            offset += len(body) + 1
            text = _decode_block(body)
            if sep == b"\n" and "\r" in text:
                text = text.replace("\r\n", "\n")
                if text.endswith("\r"):
                    text = text[:-1]
            yield from self._records(text, split_on, line, started)
            started = started or self._started
            line = self.last_line
            if eof:
                return
            more = read(CHUNK)
            if more:
                buf += more
            else:
                eof = True

    def _records(
        self, text: str, split_on: str, line: int, started: bool
    ) -> Iterator[tuple[int, str]]:
        """Normalise one block of whole lines (or, with ``split_on=""``, of 80-character records).

        The fast path is a record of exactly 80 characters; everything else is the slow path.
        """
        if "\t" in text:
            text = text.replace("\t", " ")
        if split_on != "\r" and "\r" in text:
            before = text[: text.index("\r")]
            at = line + (before.count(split_on) if split_on else len(before) // RECORD) + 1
            raise located(self.name, at, "carriage return inside a record")
        if split_on:
            lines = text.split(split_on)
        else:
            lines = [text[i : i + RECORD] for i in range(0, len(text), RECORD)]
        self._started = started
        for text in lines:
            line += 1
            if len(text) == RECORD and started:
                yield line, text
                continue
            if not text.strip():
                continue
            if not started:
                # Title lines ("Exempelfil - ...", rulers) stand before the first record.
                if not (text[:2].isascii() and text[:2].isdigit()):
                    continue
                started = self._started = True
            if len(text) < RECORD:
                text = text.ljust(RECORD)
            elif len(text) > RECORD:
                if text[RECORD:].strip():
                    raise located(
                        self.name,
                        line,
                        f"record is {len(text.rstrip())} characters; only blanks may follow "
                        "column 80",
                    )
                text = text[:RECORD]
            yield line, text
        self.last_line = line

    # -- concatenated 80-byte records -----------------------------------------------------------

    def _glued_bytes(self, buf: bytes, at: Anchor, *, started: bool) -> Iterator[tuple[int, str]]:
        """No line breaks at all: every 80 bytes is a record ("line" = record number).

        Decoded as cp1252 whatever the bytes: one character per byte keeps records aligned.
        """
        offset, line = at.offset, at.line
        read = self._stream.read
        while buf:
            more = read(CHUNK)
            usable = len(buf) if not more else len(buf) - len(buf) % RECORD
            body, rest = buf[:usable], buf[usable:]
            self.anchor = Anchor(offset, line, b"")
            offset += usable
            text = body.decode("cp1252", errors="replace")
            if "\ufffd" in text:
                text = text.replace("\ufffd", "?")
            yield from self._records(text, "", line, started)
            started = started or self._started
            line = self.last_line
            buf = rest + more

    def _glued_text(self, first: bytes) -> Iterator[tuple[int, str]]:
        """UTF-8 without line breaks: 80 characters (not bytes) a record; cannot be re-read."""
        self.anchor = None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        read = self._stream.read
        pending, raw, line, started = "", first, 0, False
        while True:
            final = not raw
            text = pending + _undo_double_encoding(decoder.decode(raw, final=final))
            if "\ufffd" in text:
                text = text.replace("\ufffd", "?")
            usable = len(text) if final else len(text) - len(text) % RECORD
            pending = text[usable:]
            yield from self._records(text[:usable], "", line, started)
            started = started or self._started
            line = self.last_line
            if final:
                return
            raw = read(CHUNK)


def is_digits(raw: str) -> bool:
    """ASCII digits only: ``'²'.isdigit()`` is True, and ``int('٣')`` is 3."""
    return raw.isdigit() and raw.isascii()


def digits(
    raw: str, name: str, line: int, what: str, start: int, end: int, *, blank_is_zero: bool = True
) -> int:
    """A zero-filled numeric field; an all-blank field counts as zero."""
    if raw.isdigit() and raw.isascii():
        return int(raw)
    if blank_is_zero and not raw.strip():
        return 0
    raise located(
        name, line, f"{what} is not a number: {raw!r} (positions {start}-{end})", field=what
    )


_OVERPUNCH = {"å": 0, "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "O": 6, "P": 7, "Q": 8, "R": 9}


def signed_digits(raw: str, name: str, line: int, what: str, start: int, end: int) -> int:
    """An amount whose last digit may be an overpunch letter meaning negative (AG-TM 8.5.3):
    ``12000å`` is -1 200,00."""
    if raw and raw[-1] in _OVERPUNCH and is_digits(raw[:-1]):
        return -(int(raw[:-1]) * 10 + _OVERPUNCH[raw[-1]])
    return digits(raw, name, line, what, start, end)


@functools.lru_cache(maxsize=4096)
def parse_date(raw: str) -> date | None:
    """``YYYYMMDD`` → date; an impossible date (Bankgirot's own ``20080631``) → None, kept raw."""
    if len(raw) != 8 or not is_digits(raw):
        return None
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def day(raw: str) -> datetime | None:
    """``YYYYMMDD`` → midnight in Stockholm (Bankgirot dates are Swedish banking days)."""
    when = parse_date(raw)
    return None if when is None else datetime(when.year, when.month, when.day, tzinfo=STOCKHOLM)


class Occurrences:
    """Numbers byte-identical records within one file: the first is 1, a repeat 2, and so on.

    Two identical records are two facts (two collections of the same fee on the same day), so
    they need two ids. Bankgirot sorts reports by payer number, so repeats stand close together;
    remembering the last ``window`` to ``2 * window`` records (two dicts, the older one dropped
    whole) keeps memory flat and numbers every repeat that close exactly.
    """

    __slots__ = ("_current", "_previous", "_window")

    def __init__(self, window: int = 10_000) -> None:
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}
        self._window = window

    def next(self, key: str) -> int:
        current = self._current
        seen = current.get(key)
        if seen is None:
            seen = self._previous.get(key, 0)
        current[key] = seen + 1
        if len(current) > self._window:
            self._previous, self._current = current, {}
        return seen + 1


# -- whose file it is -------------------------------------------------------------------------


def parse_bankgiro(value: str) -> str:
    """A bankgiro number as files write it (10 digits, zero-filled): ``991-2346``, ``9912346``
    and ``0009912346`` are all ``0009912346``. Raises ValueError for anything that is not 7-8
    significant digits with a valid check digit (10-modul, as Bankgirot computes it)."""
    raw = value.replace("-", "").replace(" ", "")
    if not raw or not is_digits(raw) or len(raw) > 10:
        raise ValueError(f"not a bankgiro number: {value!r} (7 or 8 digits, e.g. 991-2346)")
    significant = raw.lstrip("0")
    if not 7 <= len(significant) <= 8:
        raise ValueError(f"not a bankgiro number: {value!r} (7 or 8 digits, e.g. 991-2346)")
    if not luhn_valid(significant):
        raise ValueError(f"bankgiro number {value!r} has a wrong check digit (last digit)")
    return significant.rjust(10, "0")


def customer_number(value: str) -> str:
    """A Bankgirot customer number (kundnummer) as Autogiro opening records write it: 6 digits,
    zero-filled. Raises ValueError for anything else."""
    raw = value.strip()
    if not raw or not is_digits(raw) or len(raw.lstrip("0") or "0") > 6 or not raw.strip("0"):
        raise ValueError(f"not a Bankgirot customer number: {value!r} (1-6 digits)")
    return raw.lstrip("0").rjust(6, "0")


def show_bankgiro(raw: str) -> str:
    """``0009912346`` → ``991-2346`` (how people write it); anything else as it stands."""
    digits_only = raw.strip()
    significant = digits_only.lstrip("0")
    if is_digits(digits_only) and 7 <= len(significant) <= 8:
        return f"{significant[:-4]}-{significant[-4:]}"
    return repr(raw)


@dataclass(frozen=True, slots=True)
class Payees:
    """The union's own payee bankgiro numbers and Bankgirot customer numbers.

    Payer numbers are unique only per payee bankgiro, so a report for another payee (a second
    bankgiro, a misdelivered file) would book payments and mandates onto the wrong members.
    Parsers check every opening and section record that names a payee against these, and
    refuse the file at the first one that names another (nothing from it is queued).
    ``customer_numbers`` empty means customer numbers are not checked; the ``*_setting`` texts
    name where the configured values come from, for the error message.
    """

    bankgiros: frozenset[str]  # 10 digits, zero-filled
    customer_numbers: frozenset[str] = frozenset()  # 6 digits, zero-filled
    bankgiro_setting: str = "the configured payee bankgiros"
    customer_setting: str = "the configured customer numbers"

    def bankgiro(self, name: str, line: int, text: str, start: int, end: int, record: str) -> str:
        """The payee bankgiro at ``start-end`` of ``text``, if it is the union's own."""
        raw = text[start - 1 : end]
        if raw not in self.bankgiros:
            configured = ", ".join(show_bankgiro(bg) for bg in sorted(self.bankgiros))
            raise located(
                name,
                line,
                f"payee bankgiro in the {record} (positions {start}-{end}) is "
                f"{show_bankgiro(raw)}, not one of the union's ({self.bankgiro_setting} = "
                f"{configured}): a report for another payee would book onto the wrong members "
                "(payer numbers are unique per payee only); nothing from this file is queued",
                field="payee bankgiro",
            )
        return raw

    def customer(self, name: str, line: int, text: str, start: int, end: int, record: str) -> None:
        """The Bankgirot customer number at ``start-end``, if numbers are configured."""
        if not self.customer_numbers:
            return
        raw = text[start - 1 : end]
        if raw not in self.customer_numbers:
            configured = ", ".join(sorted(self.customer_numbers))
            raise located(
                name,
                line,
                f"Bankgirot customer number in the {record} (positions {start}-{end}) is "
                f"{raw.strip()!r}, not the union's ({self.customer_setting} = {configured}); "
                "nothing from this file is queued",
                field="customer number",
            )


# -- what a file is not -----------------------------------------------------------------------

#: Bankgirot's delivery seal ("leveranssigill"): a seal start record TK00 before the file and a
#: seal end record TK99 (HMAC-SHA256 or Nexus) after it ("Förändringsskydd med sigill, Teknisk
#: manual", Bankgirot, March 2014, ch. 6.1). Bg Autogiro Teknisk manual (August 2014) ch. 4:
#: tamper protection is required for every file sent TO Bankgirot; its report layouts (ch. 8-10)
#: and BgMax have no seal records.
_SEAL = {"00": "seal start record (sigillstartpost)", "99": "seal end record (sigillslutpost)"}


def seal_record(name: str, line: int, tk: str) -> InputError:
    """The error for a TK00/TK99 seal record: what it is, why a report has none, what to do."""
    return located(
        name,
        line,
        f"TK{tk} is Bankgirot's {_SEAL[tk]} of a delivery seal (leveranssigill). Bankgirot "
        "seals files sent TO Bankgirot (Bg Autogiro Teknisk manual, ch. 4; 'Förändringsskydd "
        "med sigill'); the reports and BgMax files it delivers carry no seal records. This is a "
        "sealed file meant for Bankgirot, or a report wrapped by a file-transfer program: "
        "dynamics_bridge neither strips nor verifies seals, so deliver the report exactly as "
        "Bankgirot sent it",
        field="record type",
    )


def bgmax_fragment(text: str) -> str | None:
    """What BgMax record ``text`` is when it has a BgMax record's shape (payments.md §2), else
    None: a section or records cut from a BgMax file, without its TK01 start record."""
    tk = text[:2]
    if tk == "05" and is_digits(text[2:12]) and text[22:25].isalpha() and text[22:25].isupper():
        return "a section opening record (TK05)"
    if (
        tk in ("20", "21", "22", "23")
        and is_digits(text[2:12])
        and is_digits(text[37:55])
        and text[55] in "012345"
        and text[56] in "1234"
    ):
        return {"20": "a payment record (TK20)", "21": "a deduction record (TK21)"}.get(
            tk, f"an extra reference record (TK{tk})"
        )
    if tk == "15" and is_digits(text[2:68]) and text[68:71].isalpha() and text[68:71].isupper():
        return "a deposit record (TK15, with its currency)"
    if tk == "70" and is_digits(text[2:34]) and not text[34:].strip():
        return "an end record (TK70)"
    return None
