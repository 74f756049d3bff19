"""Swedish personal identity numbers: parse, validate, normalise, mask.

Rules (Skatteverket SKV 704): ``YYMMDD-NNNC`` or ``YYYYMMDDNNNC``; ``+`` instead of ``-`` in the
10-digit form means the person is 100 or older; ``C`` is a Luhn check digit over the 10-digit
form; a samordningsnummer adds 60 to the day. A 12-digit number starts with 18, 19 or 20 and no
one is born after today. Everything that logs or prints a personnummer goes through :func:`mask`
or :func:`mask_text` (the log filter uses the latter).

What :func:`mask_text` masks, exactly. A number in free text is masked (``19811218-****``,
``811218-****``: the birth date stays readable for support) when all of these hold:

1. **Written like one** (:data:`PNR_PATTERN`): 10 or 12 decimal digits of any script (ASCII,
   fullwidth ``１２``, Arabic-Indic, ...), not inside a longer run of digits, letters allowed
   on either side (``pnr198112189876``). The date may be dotted (``1981.12.18``, ``81.12.18``).
   Between date and number at most one separator: ``-``, ``+``, any Unicode dash (en dash,
   em dash, hyphen, non-breaking hyphen, U+2212 minus sign, fullwidth ``－``, ...), a fullwidth
   or small plus, a soft hyphen, ``.``, a space of any width (``19811218 9876``), a zero-width
   character, or a URL-encoded ``%2B``/``%2D``/``%20``; a dash or plus may have a space on each
   side (``811218 - 9876``).
2. **Could be one**: a 12-digit number starts with 18, 19 or 20, or with 00 (Bankgirot pads
   10-digit numbers into 12-digit fields: a Nordea personkonto is ``3300`` and the
   personnummer); the date exists (day + 60 for a samordningsnummer; for 10 digits in some
   century 1800-2099, so ``000229`` counts); the Luhn check digit over the last 10 digits is
   right. A bank serial such as BgMax's ``000000000012``, an organisation number (month 20 or
   more, also as Autogiro's ``00NNNNNNNNNN``), a Swish number (``123...``) and nine in ten of
   the date-shaped numbers fail this and stay as they are: 1 random 10-digit number in 140
   passes, 1 random 12-digit number in 3,400 (``bench/mask.py``).
3. **Not labelled as something else**: it stays visible when it is written as bare ASCII digits
   (no separator) *and* the word right before it (field name, JSON key, ``key=value``; words
   such as ``nr``, ``no``, ``number``, ``nummer``, ``id`` skipped) names a bank identifier:
   ``serial``, ``löpnummer``, ``BGC``, ``bankgiro``/``BG``, ``plusgiro``/``PG``,
   ``deposit``/``insättning``, ``transaction``/``txn``, ``request``, ``correlation``,
   ``invoice``/``faktura`` (camelCase and ``_``/``-`` parts count: ``bankSerialNumber``,
   ``BGC-löpnummer``). Not ``account``/``konto``: a Nordea personkonto *is* the personnummer.
   A payment reference (``reference``, ``referens``, ``ref``, ``ocr``: ``Referensen
   '8112189876'``, ``"payeePaymentReference":``) stays visible only with 10 digits: an OCR
   number carries a Luhn digit of its own, so 1 in 14 of the 10-digit ones passes rule 2 and
   would otherwise be hidden from the admin matching it by hand; a 12-digit one that passes
   is masked (1 OCR number in 700 does; a member who wrote a personnummer as reference is the
   likelier story). A label that also names a person (``pnr``, ``personnummer``, ``ssn``, ...)
   or free text (``fritext...``, ``free``, ``message``, ``text``) never keeps a number
   visible. ``label=`` names the field when the text is a field's whole value.
4. **Not part of an id**: inside a UUID, or a bare run inside a string of 32 or more hex digits
   with a letter among them (event ids, Swish ids, hashes), it stays.

Known limits: a union whose OCR references are the members' 10-digit personnummer shows them
where a log line labels them as a reference (rule 3); JSON ``\\uXXXX`` escapes are not decoded.
"""

from __future__ import annotations

import re
import unicodedata
from calendar import isleap
from dataclasses import dataclass
from datetime import UTC, date, datetime

from dynamics_bridge.errors import InputError

__all__ = ["PNR_PATTERN", "Personnummer", "luhn_check_digit", "luhn_valid", "mask", "mask_text"]

_SHAPE = re.compile(
    r"^(?P<century>[0-9]{2})?(?P<yymmdd>[0-9]{6})(?P<sep>[-+]?)(?P<serial>[0-9]{3})(?P<check>[0-9])$"
)

#: Dashes people and word processors type between date and number (Unicode category Pd, the
#: minus signs) and the plus signs, all read as a separator.
_DASHES = (
    "-\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a\u2e3a\u2e3b"
    "\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\U00010ead"
    "\u2212\u2796\u207b\u208b\u00ad+\uff0b\ufe62\u2795\u207a\u208a"
)
#: Spaces of every width (Unicode category Zs) and the tab.
_SPACES = (
    "\t \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
)
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"


def _cls(chars: str) -> str:
    return "[" + "".join(re.escape(c) for c in chars) + "]"


_SEPARATOR = (
    f"(?:{_cls(_SPACES)}?(?:{_cls(_DASHES + '.')}){_cls(_SPACES)}?"
    f"|{_cls(_SPACES + _ZERO_WIDTH)}|%2[0BbDd])"
)

#: What a personnummer may look like in text (rule 1 of the module docstring); whether it is one
#: is decided by :func:`mask_text`. ``\d`` is every script's decimal digit.
PNR_PATTERN = re.compile(
    r"(?<!\d)(?P<century>\d\d)?(?P<yy>\d\d)(?P<dot>[.\uff0e]?)(?P<mm>\d\d)(?P=dot)(?P<dd>\d\d)"
    f"(?P<sep>{_SEPARATOR})?"
    r"(?P<last4>\d{4})(?!\d)"
)


_CENTURIES = (18, 19, 20)

_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2·d with its digits summed


def luhn_check_digit(digits: str) -> int:
    """The digit that makes ``digits + it`` pass the Luhn test (weights 2,1,2,… from the right)."""
    backwards = digits[::-1]
    total = sum(map(int, backwards[0::2].translate(_DOUBLED))) + sum(map(int, backwards[1::2]))
    return (10 - total % 10) % 10


def luhn_valid(digits: str) -> bool:
    return (
        digits.isascii()
        and digits.isdigit()
        and len(digits) >= 2
        and luhn_check_digit(digits[:-1]) == int(digits[-1])
    )


@dataclass(frozen=True, slots=True)
class Personnummer:
    """A validated personnummer or samordningsnummer, kept as 12 digits."""

    digits: str

    @property
    def is_coordination_number(self) -> bool:
        return int(self.digits[6:8]) > 60

    @property
    def birth_date(self) -> date:
        day = int(self.digits[6:8])
        return date(int(self.digits[:4]), int(self.digits[4:6]), day - 60 if day > 60 else day)

    @property
    def masked(self) -> str:
        return mask(self.digits)

    def __str__(self) -> str:
        return self.digits

    def __repr__(self) -> str:
        return f"Personnummer({self.masked!r})"

    @classmethod
    def parse(cls, raw: str, *, today: date | None = None) -> Personnummer:
        """Validate and normalise; the error never repeats the number in full."""
        text = raw.strip().replace(" ", "")
        m = _SHAPE.match(text)
        if not m:
            raise InputError("not a personnummer: expected 10 or 12 digits", field="personnummer")
        yymmdd, serial, check = m["yymmdd"], m["serial"], m["check"]
        today = today or datetime.now(UTC).date()
        if m["century"]:
            if m["sep"] == "+":
                raise InputError("'+' is only used in the 10-digit form", field="personnummer")
            century = int(m["century"])
            if century not in _CENTURIES:
                raise InputError(
                    f"century must be 18, 19 or 20 in {mask(text)}", field="personnummer"
                )
        else:
            century = _infer_century(
                int(yymmdd[:2]), yymmdd, centenarian=m["sep"] == "+", today=today
            )
        if not luhn_valid(yymmdd + serial + check):
            raise InputError(f"check digit wrong in {mask(text)}", field="personnummer")
        digits = f"{century:02d}{yymmdd}{serial}{check}"
        day = int(digits[6:8])
        try:
            born = date(int(digits[:4]), int(digits[4:6]), day - 60 if day > 60 else day)
        except ValueError:
            raise InputError(f"no such date in {mask(text)}", field="personnummer") from None
        if born > today:
            raise InputError(f"birth date after today in {mask(text)}", field="personnummer")
        return cls(digits)


def _infer_century(yy: int, yymmdd: str, *, centenarian: bool, today: date) -> int:
    # The latest year ending in yy that is not after today, then 100 years back for '+'.
    # A samordningsnummer's day is the birth day + 60: compare the birth day itself.
    year = today.year - ((today.year - yy) % 100)
    day = int(yymmdd[4:6])
    birthday = f"{yymmdd[2:4]}{day - 60 if day > 60 else day:02d}"
    if year == today.year and birthday > f"{today.month:02d}{today.day:02d}":
        year -= 100
    if centenarian:
        year -= 100
    return year // 100


_FOUR_DIGITS = re.compile(r"\d{4}")


def _ascii_digits(value: str) -> str:
    """The decimal digits of ``value`` in ASCII, whatever their script (``１`` -> ``1``)."""
    if value.isascii():
        return value if value.isdigit() else "".join(c for c in value if c.isdigit())
    return "".join(str(unicodedata.decimal(c)) for c in value if c.isdecimal())


def mask(value: str) -> str:
    """Keep the birth date, hide the serial and check digits: ``19811218-****``."""
    digits = _ascii_digits(value)
    if len(digits) not in (10, 12):
        return "*" * len(value)
    return digits[:-4] + "-****"


def mask_text(text: str, *, label: str | None = None) -> str:
    """Mask every personnummer in free text (log lines, error messages, field values).

    The rule is the module docstring's; ``label`` names the field whose value ``text`` is
    (a JSON key, a log field), read as if it were written right before the text.
    """
    if not _FOUR_DIGITS.search(text):  # every form ends in four digits; most lines have none
        return text

    def replace(m: re.Match[str]) -> str:
        # The digits from the groups: a separator such as ``%2B`` holds a digit of its own.
        parts = m.group("century", "yy", "mm", "dd", "last4")
        digits = _ascii_digits("".join(p or "" for p in parts))
        return digits[:-4] + "-****" if _is_personnummer(text, m, digits, label) else m.group(0)

    return PNR_PATTERN.sub(replace, text)


def _is_personnummer(text: str, m: re.Match[str], digits: str, label: str | None) -> bool:
    if not _could_be_one(digits):
        return False
    bare = m["sep"] is None and not m["dot"] and m.group(0).isascii()
    if bare:
        kind = _label_kind(_label_before(text, m.start(), label))
        if kind == "identifier" or (kind == "reference" and len(digits) == 10):
            return False
    return not _inside_an_id(text, m.start(), m.end(), bare=bare)


def _could_be_one(digits: str) -> bool:
    """Rule 2: century, a real date (day - 60 for a samordningsnummer), Luhn."""
    centuries: tuple[int, ...] = (18, 19, 20)
    if len(digits) == 12:
        if digits[:2] in ("18", "19", "20"):
            centuries = (int(digits[:2]),)
        elif digits[:2] != "00":  # 00: a 10-digit number zero-padded into a 12-digit field
            return False
        digits = digits[2:]
    month, day = int(digits[2:4]), int(digits[4:6])
    if day > 60:
        day -= 60
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS[month]:
        return False
    if month == 2 and day == 29 and not any(isleap(c * 100 + int(digits[:2])) for c in centuries):
        return False
    return luhn_check_digit(digits[:9]) == int(digits[9])


_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


_TOKEN = re.compile(r"[\w.\-]+")
_CAMEL = re.compile(r"(?<=[a-zåäö0-9])(?=[A-ZÅÄÖ])")
_FILLERS = frozenset({"nr", "no", "number", "nummer", "num", "id"})
_IDENTIFIER_EXACT = frozenset({"bg", "bgnr", "pg", "pgnr", "bgc", "txn"})
_IDENTIFIER_PREFIXES = (
    "serial",
    "löpnummer",
    "lopnummer",
    "löpnr",
    "bankgiro",
    "plusgiro",
    "deposit",
    "insättning",
    "transaction",
    "request",
    "correlation",
    "invoice",
    "faktura",
)
_REFERENCE_EXACT = frozenset({"ref", "refnr", "ocr", "ocrnr"})
_REFERENCE_PREFIXES = ("reference", "referens", "ocrnummer", "ocrreferens")
_NEVER_PREFIXES = (
    "pnr",
    "personnummer",
    "personnr",
    "persnr",
    "person",
    "ssn",
    "samordning",
    "government",
    "civic",
    "fritext",
    "free",
    "message",
    "meddelande",
    "text",
)


def _label_before(text: str, start: int, label: str | None) -> str | None:
    """The last word before ``start`` that is not a filler, else ``label``."""
    tokens = [t.strip(".-") for t in _TOKEN.findall(text[max(0, start - 48) : start])]
    for token in reversed(tokens[-3:]):
        if token and token.lower() not in _FILLERS:
            return token
    return label if not text[:start].strip(" \t\"'`:=") else None


def _label_kind(label: str | None) -> str | None:
    """``identifier`` (bank ids), ``reference`` (payment references) or None (rule 3)."""
    if not label:
        return None
    parts = [p for p in re.split(r"[_.\-]+", _CAMEL.sub("_", label).lower()) if p]
    if any(p.startswith(_NEVER_PREFIXES) for p in parts):
        return None
    if any(p in _IDENTIFIER_EXACT or p.startswith(_IDENTIFIER_PREFIXES) for p in parts):
        return "identifier"
    if any(p in _REFERENCE_EXACT or p.startswith(_REFERENCE_PREFIXES) for p in parts):
        return "reference"
    return None


_HEX = frozenset("0123456789abcdefABCDEF")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _inside_an_id(text: str, start: int, end: int, *, bare: bool) -> bool:
    """Rule 4: part of a UUID, or a bare run inside 32+ hex digits with a letter."""
    if not text[start:end].isascii():
        return False
    left, right = start, end
    while left > 0 and (text[left - 1] in _HEX or text[left - 1] == "-"):
        left -= 1
    while right < len(text) and (text[right] in _HEX or text[right] == "-"):
        right += 1
    for uuid in _UUID.finditer(text, left, right):
        if uuid.start() <= start and end <= uuid.end():
            return True
    if not bare:
        return False
    left, right = start, end
    while left > 0 and text[left - 1] in _HEX:
        left -= 1
    while right < len(text) and text[right] in _HEX:
        right += 1
    run = text[left:right]
    return len(run) >= 32 and not run.isdigit()
