"""OCR references → member references, by the scheme the union agreed with Bankgirot.

Schemes:
- ``luhn``: member number + Luhn check digit (the default).
- ``luhn_length``: member number + length digit + Luhn check digit (Bankgirot's
  "checksiffra och längdsiffra": the length digit is the full length mod 10).
- ``plain``: the whole reference is the member number; no check.
"""

from __future__ import annotations

from typing import Literal

from dynamics_bridge.model import MemberRef, MemberRefKind
from dynamics_bridge.personnummer import luhn_check_digit, luhn_valid

__all__ = ["OCR_CHECK_FAILED", "OcrScheme", "make_reference", "member_ref_for"]

OcrScheme = Literal["luhn", "luhn_length", "plain"]
OCR_CHECK_FAILED = "ocr_check_failed"


def member_ref_for(reference: str, scheme: OcrScheme = "luhn") -> tuple[MemberRef, str | None]:
    """The member a reference names, and a reason code when it fails the scheme's check."""
    ref = reference.strip()
    if scheme == "plain" and ref:
        return MemberRef(MemberRefKind.MEMBER_NUMBER, ref.lstrip("0") or "0"), None
    if ref.isascii() and ref.isdigit() and len(ref) >= 2 and luhn_valid(ref):
        if scheme == "luhn":
            return MemberRef(MemberRefKind.MEMBER_NUMBER, ref[:-1]), None
        if len(ref) >= 3 and int(ref[-2]) == len(ref) % 10:
            return MemberRef(MemberRefKind.MEMBER_NUMBER, ref[:-2]), None
    return MemberRef(MemberRefKind.OCR, ref), OCR_CHECK_FAILED


def make_reference(member_number: str, scheme: OcrScheme = "luhn") -> str:
    """The OCR reference to print on an invoice for a member (inverse of member_ref_for)."""
    if scheme == "plain":
        return member_number
    if scheme == "luhn_length":
        body = member_number + str((len(member_number) + 2) % 10)
        return body + str(luhn_check_digit(body))
    return member_number + str(luhn_check_digit(member_number))
