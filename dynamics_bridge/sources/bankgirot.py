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

__all__ = [
    "CHUNK",
    "RECORD",
    "STOCKHOLM",
    "Anchor",
    "Occurrences",
    "Readable",
    "RecordReader",
    "day",
    "decode_line",
    "digits",
    "is_digits",
    "located",
    "parse_date",
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
