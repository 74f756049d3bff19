"""What Autogiro and BgMax files share: a tolerant, streaming reader of 80-character records.

Real files (reference payments.md §0) come as Latin-1, cp1252, UTF-8 or double-encoded UTF-8; with
CRLF, LF or no line breaks at all (concatenated 80-byte records); with trailing blanks stripped or
extra blanks past column 80, TABs in blank areas, title lines before the first record and empty
lines at the end. The reader normalises all of that line by line, so memory does not grow with
the file, and keeps the 1-based physical line number for every record.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from dynamics_bridge.errors import InputError

__all__ = [
    "STOCKHOLM",
    "Readable",
    "Record",
    "RunCounter",
    "amount",
    "day_start",
    "decode_line",
    "number",
    "parse_date",
    "read_records",
    "signed_amount",
]

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class Readable(Protocol):
    """A binary stream: an open file, or a wrapper that counts what is read."""

    def read(self, size: int = -1, /) -> bytes: ...


RECORD = 80
_SNIFF = 64 * 1024


@dataclass(slots=True)
class Record:
    """One 80-character record and where it stood."""

    line: int
    text: str
    name: str

    @property
    def tk(self) -> str:
        return self.text[:2]

    @property
    def where(self) -> str:
        return f"{self.name}:{self.line}"

    def field(self, start: int, end: int) -> str:
        """Positions as in Bankgirot's manuals: 1-based, inclusive."""
        return self.text[start - 1 : end]

    def error(self, message: str, *, field: str | None = None) -> InputError:
        return InputError(message, location=self.where, field=field)


def decode_line(raw: bytes) -> str:
    """cp1252/Latin-1 unless the bytes are UTF-8 with non-ASCII; undo double-encoded UTF-8."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace").replace("\ufffd", "?")
    if "Ã" in text or "Â" in text:  # UTF-8 bytes that were read as Latin-1 and encoded again
        try:
            return text.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return text
    return text


def _physical_lines(stream: Readable) -> Iterator[bytes]:
    head = stream.read(_SNIFF)
    if not head:
        return
    if b"\n" not in head and b"\r" not in head:
        # No line breaks: concatenated 80-byte records.
        buffer = head
        while True:
            while len(buffer) >= RECORD:
                yield buffer[:RECORD]
                buffer = buffer[RECORD:]
            more = stream.read(_SNIFF)
            if not more:
                break
            buffer += more
        if buffer.strip():
            yield buffer
        return
    pending = head
    while True:
        *lines, pending = pending.split(b"\n")
        yield from lines
        more = stream.read(_SNIFF)
        if not more:
            break
        pending += more
    if pending:
        yield pending


def read_records(stream: Readable, name: str) -> Iterator[Record]:
    """Normalised 80-character records; title lines before the first record are skipped."""
    started = False
    for line_no, raw in enumerate(_physical_lines(stream), start=1):
        raw = raw.rstrip(b"\r\n")
        if b"\r" in raw:  # old Mac line ends inside one "line"
            raise InputError("carriage return inside a record", location=f"{name}:{line_no}")
        text = decode_line(raw)
        if "\t" in text:
            text = text.replace("\t", " ")
        if not text.strip():
            continue
        if not started:
            # Title lines ("Exempelfil - ...", rulers) stand before the first record.
            if not text[:2].isdigit():
                continue
            started = True
        if len(text) < RECORD:
            text = text.ljust(RECORD)
        elif len(text) > RECORD:
            if text[RECORD:].strip():
                raise InputError(
                    f"record is {len(text.rstrip())} characters; only blanks may follow column 80",
                    location=f"{name}:{line_no}",
                )
            text = text[:RECORD]
        yield Record(line_no, text, name)


class RunCounter:
    """Numbers byte-identical records that stand together: 1, 2, 3 … then 1 again.

    Identical records in one file are distinct payments and need distinct ids. Bankgirot sorts
    reports (by payer number, or by BGC serial), so repeats are adjacent; counting runs instead
    of remembering every record keeps memory flat.
    """

    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.last: str | None = None
        self.count = 0

    def next(self, key: str) -> int:
        if key == self.last:
            self.count += 1
        else:
            self.last, self.count = key, 1
        return self.count


def number(record: Record, start: int, end: int, what: str) -> int:
    """A zero-filled numeric field; blanks count as zero only when the whole field is blank."""
    raw = record.text[start - 1 : end]
    if raw.isascii() and raw.isdigit():
        return int(raw)
    if not raw.strip():
        return 0
    raise record.error(f"{what} is not a number: {raw!r} (positions {start}-{end})", field=what)


def amount(record: Record, start: int, end: int, what: str = "amount") -> int:
    """Öre, as an int: Bankgirot amounts carry no decimal point."""
    return number(record, start, end, what)


_OVERPUNCH = {"å": 0, "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "O": 6, "P": 7, "Q": 8, "R": 9}


def signed_amount(record: Record, start: int, end: int, what: str) -> int:
    """An amount whose last digit may be an overpunch letter meaning negative (AG-TM 8.5.3)."""
    raw = record.text[start - 1 : end]
    if raw and raw[-1] in _OVERPUNCH and raw[:-1].isascii() and raw[:-1].isdigit():
        return -(int(raw[:-1]) * 10 + _OVERPUNCH[raw[-1]])
    return number(record, start, end, what)


@functools.lru_cache(maxsize=4096)
def parse_date(raw: str) -> date | None:
    """``YYYYMMDD`` → date; an impossible date (Bankgirot's own ``20080631``) → None, kept raw."""
    if len(raw) != 8 or not (raw.isascii() and raw.isdigit()):
        return None
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def day_start(day: date) -> datetime:
    """Bankgirot dates are Swedish banking days: midnight in Stockholm."""
    return datetime(day.year, day.month, day.day, tzinfo=STOCKHOLM)
