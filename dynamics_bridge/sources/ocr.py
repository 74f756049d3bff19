"""OCR references → member references, by the scheme the union agreed with Bankgirot.

Schemes (``BRIDGE_BANKGIROT__OCR_SCHEME``):

- ``luhn``: member number + Luhn check digit (the default).
- ``luhn_length``: member number + length digit + Luhn check digit (Bankgirot's
  "checksiffra och längdsiffra": the length digit is the full length mod 10).
- ``plain``: the whole reference (digits only) is the member number; no check digit.

A reference that passes names ``{"kind": "member_number", "value": <without check digits>}``; one
that fails is kept whole as ``{"kind": "ocr", ...}`` with reason code ``ocr_check_failed`` so a
person (or a fuzzy matcher) can still place the payment.

Leading zeros, one rule for every scheme: the check digits are checked over the reference as
written (Luhn is the same with or without leading zeros; the length digit counts every digit
written, zeros included), and the member number is what is left after the check digits, with
its leading zeros dropped. So ``0001000014`` and ``1000014`` name member ``100001`` under
``luhn``, as ``000100001`` and ``100001`` do under ``plain`` (Autogiro payer numbers are read
the same way). A reference whose member part is only zeros names no member. Member numbers
therefore never start with 0: :func:`make_reference` refuses one that does.
"""

from __future__ import annotations

from itertools import product
from typing import Literal

from dynamics_bridge.model import MemberRef, MemberRefKind
from dynamics_bridge.personnummer import luhn_check_digit

__all__ = ["OCR_CHECK_FAILED", "OcrScheme", "luhn_ok", "make_reference", "member_ref_for"]

OcrScheme = Literal["luhn", "luhn_length", "plain"]
OCR_CHECK_FAILED = "ocr_check_failed"
# Enum members bound once: in Python 3.11 each ``MemberRefKind.X`` look-up costs a call.
_MEMBER_NUMBER = MemberRefKind.MEMBER_NUMBER
_OCR = MemberRefKind.OCR


def _luhn_table() -> dict[str, int]:
    """Luhn sums of every 1-4 digit string, weights 1, 2, 1, 2 from the right (2·d summed)."""
    table: dict[str, int] = {}
    for width in range(1, 5):
        for combo in product("0123456789", repeat=width):
            total = 0
            for position, char in enumerate(reversed(combo)):
                value = int(char) * (2 if position % 2 else 1)
                total += value - 9 if value > 9 else value
            table["".join(combo)] = total
    return table


_LUHN4 = _luhn_table()


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits, check digit last) passes the Luhn test.

    Four digits a look-up: this runs once per BgMax payment, where a per-digit loop would cost
    more than the rest of the record.
    """
    table = _LUHN4
    size = len(digits)
    if size <= 4:
        total = table[digits]
    elif size <= 8:
        total = table[digits[-4:]] + table[digits[:-4]]
    else:
        total = table[digits[-4:]] + table[digits[-8:-4]]
        rest = digits[:-8]
        while rest:
            total += table[rest[-4:]]
            rest = rest[:-4]
    return total % 10 == 0


def member_ref_for(reference: str, scheme: OcrScheme = "luhn") -> tuple[MemberRef, str | None]:
    """The member a reference names, and a reason code when it fails the scheme's check.

    Check digits are checked as written; the member number loses its leading zeros (the
    module's rule), and one of only zeros is no member.
    """
    ref = reference.strip()
    if ref and ref.isdigit() and ref.isascii():
        body = ""
        if scheme == "plain":
            body = ref
        elif len(ref) >= 2 and luhn_ok(ref):
            if scheme == "luhn":
                body = ref[:-1]
            elif len(ref) >= 3 and int(ref[-2]) == len(ref) % 10:
                body = ref[:-2]
        member = body.lstrip("0")
        if member:
            return MemberRef(_MEMBER_NUMBER, member), None
    return MemberRef(_OCR, ref), OCR_CHECK_FAILED


def make_reference(member_number: str, scheme: OcrScheme = "luhn") -> str:
    """The OCR reference to print on an invoice for a member (inverse of member_ref_for).

    Raises ValueError for a member number that is not digits or starts with 0: no reference
    could name it (leading zeros are never part of the member number, see the module).
    """
    if not (member_number.isdigit() and member_number.isascii()) or member_number[0] == "0":
        raise ValueError(
            f"member number {member_number!r}: digits not starting with 0 (leading zeros are "
            "dropped when a reference is read, so no reference could name it)"
        )
    if scheme == "plain":
        return member_number
    if scheme == "luhn_length":
        body = member_number + str((len(member_number) + 2) % 10)
        return body + str(luhn_check_digit(body))
    return member_number + str(luhn_check_digit(member_number))
