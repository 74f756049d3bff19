"""Small parsing helpers shared by the webhook sources."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent

__all__ = ["WebhookParse", "field", "header", "load_json", "parse_timestamp", "to_minor_units"]


def load_json(body: bytes) -> Any:
    """Decode a JSON body with decimals kept exact (never float)."""
    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal)
    except UnicodeDecodeError as exc:
        raise InputError(f"body is not UTF-8 (byte {exc.start})", field="body") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field="body"
        ) from None


def field(data: Mapping[str, Any], path: str, *, required: bool = True, within: str = "") -> Any:
    """``a.b.c`` from nested objects; a missing required field names its full path.

    ``within`` is where ``data`` itself sits in the body, so the error names the whole path.
    """
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            if required:
                full = f"{within}.{path}" if within else path
                raise InputError(f"missing field '{full}'", field=full)
            return None
        value = value[part]
    return value


def to_minor_units(amount: Any, *, path: str, magnitude: bool = False) -> int:
    """``"100.00"``, ``100.00`` or ``100`` SEK → 10000 öre; refuses fractions of an öre.

    A float goes through its shortest repr, so ``250.1`` is 25010 and never 25009.

    Canonical amounts are positive (the kind carries the direction), and the providers' payment
    and refund amounts are positive, so a negative amount is refused naming the field. Only
    where the provider reports a reversal as a negative allocation (Billogram's credits and
    recalls, payments.md §4.3) does ``magnitude=True`` take the amount without its sign.
    """
    if isinstance(amount, bool) or not isinstance(amount, str | int | float | Decimal):
        raise InputError(f"'{path}' must be a number, got {type(amount).__name__}", field=path)
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise InputError(f"'{path}' is not a number: {amount!r}", field=path) from None
    if not value.is_finite():
        raise InputError(f"'{path}' is not a finite number", field=path)
    minor = value * 100
    if minor != minor.to_integral_value():
        raise InputError(f"'{path}' has fractions of an öre: {amount}", field=path)
    if minor < 0 and not magnitude:
        raise InputError(f"'{path}' must not be negative: {amount}", field=path)
    return abs(int(minor))


def parse_timestamp(text: Any, *, path: str) -> datetime:
    """ISO 8601 as providers send it (``Z``, ``+0100``, ``+01:00``; naive = UTC) → UTC datetime."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"'{path}' must be a timestamp string", field=path)
    raw = text.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "T", 1) if "T" not in raw else raw)
    except ValueError:
        raise InputError(f"'{path}' is not an ISO 8601 timestamp: {raw!r}", field=path) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class WebhookParse:
    """What one callback became: its events, or why it was accepted but ignored."""

    events: list[PaymentEvent]
    ignored: str | None = None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header look-up (HTTP header names are case-insensitive)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
