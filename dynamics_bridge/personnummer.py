"""Swedish personal identity numbers: parse, validate, normalise, mask.

Rules (Skatteverket SKV 704): ``YYMMDD-NNNC`` or ``YYYYMMDDNNNC``; ``+`` instead of ``-`` in the
10-digit form means the person is 100 or older; ``C`` is a Luhn check digit over the 10-digit
form; a samordningsnummer adds 60 to the day. A 12-digit number starts with 18, 19 or 20 and no
one is born after today. Everything that logs or prints a personnummer goes through :func:`mask`
(or the log filter built on :data:`PNR_PATTERN`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from dynamics_bridge.errors import InputError

__all__ = ["PNR_PATTERN", "Personnummer", "luhn_check_digit", "luhn_valid", "mask", "mask_text"]

_SHAPE = re.compile(
    r"^(?P<century>[0-9]{2})?(?P<yymmdd>[0-9]{6})(?P<sep>[-+]?)(?P<serial>[0-9]{3})(?P<check>[0-9])$"
)

#: 10 or 12 digits with an optional ``-``/``+`` before the last four, not inside a longer number.
PNR_PATTERN = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{2})?[0-9]{6}[-+]?[0-9]{4}(?![0-9A-Za-z])")


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


def mask(value: str) -> str:
    """Keep the birth date, hide the serial and check digits: ``19811218-****``."""
    digits = re.sub(r"\D", "", value)
    if len(digits) not in (10, 12):
        return "*" * len(value)
    return digits[:-4] + "-****"


def mask_text(text: str) -> str:
    """Mask every personnummer-shaped number in free text (log lines, error messages)."""
    return PNR_PATTERN.sub(lambda m: mask(m.group(0)), text)
