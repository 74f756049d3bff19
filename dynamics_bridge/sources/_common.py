"""Small parsing helpers shared by the webhook sources: bounded JSON and strict field readers.

A webhook body comes from the internet. Every reader here either returns a value of the promised
type or raises :class:`InputError` naming the field; none lets a Python error (RecursionError,
ValueError of a 5,000-digit integer, decimal Overflow, OverflowError of a date) escape, and none
normalises a hostile value into an innocent-looking one (a fullwidth digit is refused, not read
as a digit).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dynamics_bridge.errors import InputError, SignatureError
from dynamics_bridge.http_policy import header
from dynamics_bridge.model import PaymentEvent

__all__ = [
    "MAX_AMOUNT",
    "ExponentNumber",
    "JsonLimits",
    "WebhookParse",
    "amount_decimal",
    "auth_header",
    "field",
    "header",
    "load_json",
    "mapping",
    "optional_text",
    "parse_timestamp",
    "reference",
    "text",
    "to_minor_units",
]

#: Dataverse's money range is ±922,337,203,685,477 (currency columns); nothing larger is booked.
MAX_AMOUNT = Decimal("922337203685477")

#: Timestamps outside these years are refused: no provider fact is that old or that far ahead,
#: and one far-future event would look like every member's latest forever.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099

#: Longest reference (member number, OCR, invoice or customer number) a provider field may hold.
REFERENCE_MAX = 64

_AMOUNT_TEXT = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?", re.ASCII)
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_STRING_LITERAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """How much JSON a body may hold before it is refused unparsed (BRIDGE_WEBHOOK__*)."""

    max_depth: int = 32
    max_number_length: int = 40


class ExponentNumber(Decimal):
    """A JSON number written with an exponent (``1e3``): kept apart so amounts can refuse it."""

    __slots__ = ()


def load_json(body: bytes, limits: JsonLimits | None = None) -> Any:
    """Decode a JSON body with decimals kept exact (never float), within ``limits``.

    Depth is measured before parsing (the parser recurses), number literals are refused by
    length before conversion, and NaN/Infinity, duplicate keys and unpaired surrogates (which
    no UTF-8 writer downstream could encode) are refused: each as an InputError on ``body``.
    """
    limits = limits or JsonLimits()
    try:
        text_ = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"body is not UTF-8 (byte {exc.start})", field="body") from None
    depth = _nesting_depth(text_, limits.max_depth)
    if depth > limits.max_depth:
        raise InputError(
            f"JSON nested deeper than {limits.max_depth} levels (BRIDGE_WEBHOOK__MAX_JSON_DEPTH)",
            field="body",
        )

    def number(literal: str, convert: Any) -> Any:
        if len(literal) > limits.max_number_length:
            raise InputError(
                f"a number in the body is {len(literal)} characters long, over "
                f"{limits.max_number_length} (BRIDGE_WEBHOOK__MAX_NUMBER_LENGTH)",
                field="body",
            )
        return convert(literal)

    try:
        data = json.loads(
            text_,
            parse_float=lambda s: number(s, _json_decimal),
            parse_int=lambda s: number(s, int),
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field="body"
        ) from None
    except RecursionError:  # the depth check above should make this unreachable
        raise InputError("JSON nested too deeply", field="body") from None
    if _ESCAPED_SURROGATE.search(text_) and _has_lone_surrogate(data):
        raise InputError("a string holds an unpaired surrogate escape (\\ud800)", field="body")
    return data


def _nesting_depth(text_: str, limit: int) -> int:
    """How deep the parser could recurse: bracket nesting outside string literals.

    Each pass removes every innermost ``[]``/``{}`` pair (in C, via str.replace), so the number
    of passes is the depth of what pairs up; it stops once the limit is passed. Brackets left
    unpaired (``[[[[`` with no end) are added on top: the parser descends into them before it
    finds the body malformed.
    """
    brackets = _NOT_BRACKET.sub("", _STRING_LITERAL.sub("", text_))
    depth = 0
    while brackets and depth <= limit:
        reduced = brackets.replace("[]", "").replace("{}", "")
        if len(reduced) == len(brackets):
            return depth + len(brackets)
        brackets = reduced
        depth += 1
    return depth


def _json_decimal(literal: str) -> Decimal:
    return ExponentNumber(literal) if "e" in literal or "E" in literal else Decimal(literal)


def _refuse_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number", field="body")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            # Parsers disagree on which copy wins; a body that needs us to choose is refused.
            raise InputError(f"key {key[:40]!r} appears twice in one object", field="body")
        found[key] = value
    return found


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def field(data: Mapping[str, Any], path: str, *, required: bool = True, within: str = "") -> Any:
    """``a.b.c`` from nested objects; a missing required field names its full path.

    ``within`` is where ``data`` itself sits in the body, so the error names the whole path. A
    step that is present but not an object is an error even when the field is optional.
    """
    value: Any = data
    walked: list[str] = [within] if within else []
    for part in path.split("."):
        if not isinstance(value, Mapping):
            where = ".".join(walked) or "body"
            raise InputError(f"'{where}' must be a JSON object", field=where)
        walked.append(part)
        if value.get(part) is None:
            if required:
                full = ".".join(walked)
                raise InputError(f"missing field '{full}'", field=full)
            return None
        value = value[part]
    return value


def mapping(value: Any, path: str, *, required: bool = True) -> Mapping[str, Any]:
    """``value`` as a JSON object; null/absent is ``{}`` unless required."""
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        if value is None:
            raise InputError(f"missing field '{path}'", field=path)
        raise InputError(f"'{path}' must be a JSON object, got {_json_type(value)}", field=path)
    return value


def text(value: Any, path: str, *, max_length: int = 200) -> str:
    """A required JSON string of at most ``max_length`` characters."""
    if not isinstance(value, str):
        if value is None:
            raise InputError(f"missing field '{path}'", field=path)
        raise InputError(f"'{path}' must be a string, got {_json_type(value)}", field=path)
    if len(value) > max_length:
        raise InputError(f"'{path}' is longer than {max_length} characters", field=path)
    return value


def optional_text(value: Any, path: str, *, max_length: int = 1000) -> str | None:
    """A string or null (absent); shown to people, so bounded in length."""
    return None if value is None else text(value, path, max_length=max_length)


def reference(value: Any, path: str, *, max_length: int = REFERENCE_MAX) -> str:
    """A reference naming a member or an object: printable ASCII, at most ``max_length``.

    JSON integers are taken as their digits. Anything else that is not plain ASCII is refused,
    never normalised: ``"１２３"`` (fullwidth), ``"١٢٣"`` (Arabic-Indic), a zero-width space or a
    right-to-left override would otherwise name a different row than the one a person reads.
    Spaces around the value are dropped; control characters anywhere (NUL, a newline) refuse it.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        if value is None:
            raise InputError(f"missing field '{path}'", field=path)
        raise InputError(
            f"'{path}' must be a string or an integer, got {_json_type(value)}", field=path
        )
    if isinstance(value, int):
        if value < 0:
            raise InputError(f"'{path}' must not be negative", field=path)
        if value >= 10**max_length:  # compared as numbers: no str() of a huge integer
            raise InputError(f"'{path}' is longer than {max_length} characters", field=path)
        return str(value)
    for position, char in enumerate(value):
        if not (" " <= char <= "~"):
            name, hint = _describe(char)
            raise InputError(
                f"'{path}' holds {name} at position {position + 1}{hint}; references must be "
                "printable ASCII",
                field=path,
            )
    stripped = value.strip(" ")
    if not stripped:
        raise InputError(f"'{path}' is empty", field=path)
    if len(stripped) > max_length:
        raise InputError(f"'{path}' is longer than {max_length} characters", field=path)
    return stripped


def _describe(char: str) -> tuple[str, str]:
    """``U+0661 ARABIC-INDIC DIGIT ONE`` and what a reader would take it for, if anything."""
    name = unicodedata.name(char, "")
    described = f"U+{ord(char):04X}{' ' + name if name else ''}"
    folded = unicodedata.normalize("NFKC", char)
    if folded != char and folded.isascii() and folded.isprintable():
        return described, f", which looks like {folded!r}"
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return described, f", a digit {digit} of another script"
    return described, ""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def amount_decimal(amount: Any, *, path: str, magnitude: bool = False) -> Decimal:
    """An amount in currency units as an exact Decimal within Dataverse's money range.

    Accepted: a JSON number without exponent, or a string of ASCII digits with an optional
    ``.`` and sign; at most two decimals (whole öre). Refused, naming the field: exponent forms
    (``1e3``), NaN and infinity, non-ASCII digits, more than 922,337,203,685,477, negatives
    (unless ``magnitude``: then the size is checked and the sign kept).
    """
    if isinstance(amount, bool) or not isinstance(amount, str | int | float | Decimal):
        raise InputError(f"'{path}' must be a number, got {_json_type(amount)}", field=path)
    if isinstance(amount, ExponentNumber):
        raise InputError(f"'{path}' is written with an exponent; send plain digits", field=path)
    if isinstance(amount, int):
        if abs(amount) > MAX_AMOUNT:  # compared as numbers: no str() of a huge integer
            raise InputError(f"'{path}' is beyond {MAX_AMOUNT:,} (Dataverse money)", field=path)
        value = Decimal(amount)
    elif isinstance(amount, str):
        raw = amount.strip(" ")
        if not _AMOUNT_TEXT.fullmatch(raw):
            shown = amount if len(amount) <= 40 else amount[:40] + "…"
            raise InputError(f"'{path}' is not a plain decimal amount: {shown!r}", field=path)
        value = Decimal(raw)
    else:
        if isinstance(amount, float):
            amount = Decimal(repr(amount))  # shortest repr: 250.1 is 250.1, not 250.0999…
            if "E" in str(amount):
                raise InputError(f"'{path}' is written with an exponent", field=path)
        if not amount.is_finite():
            raise InputError(f"'{path}' is not a finite number", field=path)
        value = amount
    if value.copy_abs() > MAX_AMOUNT:
        raise InputError(f"'{path}' is beyond {MAX_AMOUNT:,} (Dataverse money)", field=path)
    if value != value.quantize(Decimal("0.01")):
        raise InputError(f"'{path}' has fractions of an öre: {value}", field=path)
    if value < 0 and not magnitude:
        raise InputError(f"'{path}' must not be negative: {value}", field=path)
    return value


def to_minor_units(amount: Any, *, path: str, magnitude: bool = False) -> int:
    """``"100.00"``, ``100.00`` or ``100`` SEK → 10000 öre; see :func:`amount_decimal`.

    Canonical amounts are positive (the kind carries the direction), and the providers' payment
    and refund amounts are positive, so a negative amount is refused naming the field. Only
    where the provider reports a reversal as a negative allocation (Billogram's credits and
    recalls, payments.md §4.3) does ``magnitude=True`` take the amount without its sign.
    """
    value = amount_decimal(amount, path=path, magnitude=magnitude)
    return abs(int(value.scaleb(2)))


def parse_timestamp(text_: Any, *, path: str) -> datetime:
    """ISO 8601 as providers send it (``Z``, ``+0100``, ``+01:00``; naive = UTC) → UTC datetime.

    Only ASCII is read, and only years 2000-2099: a date at the edge of the calendar with an
    offset (``9999-12-31T23:59:59-23:59``) cannot be moved to UTC at all.
    """
    if not isinstance(text_, str) or not text_.strip():
        raise InputError(f"'{path}' must be a timestamp string", field=path)
    raw = text_.strip()
    if len(raw) > 40 or not raw.isascii() or not raw.isprintable():
        raise InputError(f"'{path}' is not an ISO 8601 timestamp", field=path)
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "T", 1) if "T" not in raw else raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InputError(f"'{path}' is not an ISO 8601 timestamp: {raw!r}", field=path) from None
    if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        raise InputError(
            f"'{path}' is outside the years {EARLIEST_YEAR}-{LATEST_YEAR}: {raw!r}", field=path
        )
    return parsed


@dataclass(frozen=True, slots=True)
class WebhookParse:
    """What one callback became: its events, or why it was accepted but ignored."""

    events: list[PaymentEvent]
    ignored: str | None = None


def auth_header(headers: Mapping[str, str], name: str, *, provider: str) -> str | None:
    """An authentication header that must appear once: two spellings of it are refused.

    With ``Billogram-Signature`` and ``billogram-signature`` both present, which one a reader
    takes depends on the reader (first, last, joined); a request that makes us choose is not
    authenticated. Raises SignatureError (401).
    """
    wanted = name.lower()
    found = [value for key, value in headers.items() if key.lower() == wanted]
    if len(found) > 1:
        raise SignatureError(f"{provider}: header {name} appears {len(found)} times")
    return found[0] if found else None
