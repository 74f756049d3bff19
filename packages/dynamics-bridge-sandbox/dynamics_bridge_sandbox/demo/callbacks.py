"""The project's own provider callbacks, generated for given members (no published sample used).

Shapes follow reference/payments.md §3.3-3.4 (Swish) and §4.3-4.2 (Billogram, signed with HMAC).
Deterministic for a given seed so the demo and the benchmarks can be repeated.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dynamics_bridge.sources.billogram import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["Callback", "billogram_callbacks", "demo_callbacks", "swish_callbacks"]

SWISH_MERCHANT = "1231181189"  # the Swish test environment's merchant number (MSS)
UNKNOWN_MEMBER = "999999"  # nobody has this number: the demo shows it is kept, not lost


@dataclass(frozen=True, slots=True)
class Callback:
    """One HTTP delivery as a provider makes it."""

    provider: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    client_ip: str | None = None
    label: str = ""


def _hex_id(rng: random.Random) -> str:
    return uuid.UUID(int=rng.getrandbits(128)).hex.upper()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def swish_callbacks(
    member_numbers: list[str],
    *,
    seed: int = 7,
    start: datetime | None = None,
    amount_sek: str = "250.00",
    failure_codes: tuple[str, ...] = ("RF07", "TM01", "BANKIDCL"),
    client_ip: str | None = None,
    identifier: str | None = None,
) -> Iterator[Callback]:
    """PAID for most members, ERROR for some, a refund of the first payment."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    first_paid: tuple[str, str] | None = None
    for i, member in enumerate(member_numbers):
        payment_id = _hex_id(rng)
        created = start + timedelta(minutes=i)
        failed = i % 7 == 3
        body = {
            "id": payment_id,
            "payeePaymentReference": member,
            "paymentReference": None if failed else _hex_id(rng),
            "callbackUrl": "https://bridge.example.org/api/webhooks/swish",
            "payerAlias": f"4670{rng.randrange(10**7):07d}",
            "payeeAlias": SWISH_MERCHANT,
            "amount": amount_sek,
            "currency": "SEK",
            "message": "Medlemsavgift",
            "status": "ERROR" if failed else "PAID",
            "dateCreated": _iso(created),
            "datePaid": None if failed else _iso(created + timedelta(seconds=9)),
            "errorCode": failure_codes[i % len(failure_codes)] if failed else None,
            "errorMessage": "" if not failed else None,
        }
        if identifier:
            body["callbackIdentifier"] = identifier
        if not failed and first_paid is None:
            first_paid = (member, str(body["paymentReference"]))
        yield Callback(
            "swish",
            json.dumps(body).encode(),
            _json_headers(),
            client_ip,
            f"swish {body['status']} {member}",
        )
    if first_paid is not None:
        member, payment_ref = first_paid
        refund = {
            "id": _hex_id(rng),
            "originalPaymentReference": payment_ref,
            "payerPaymentReference": member,
            "callbackUrl": "https://bridge.example.org/api/webhooks/swish",
            "payerAlias": SWISH_MERCHANT,
            "amount": amount_sek,
            "currency": "SEK",
            "status": "PAID",
            "dateCreated": _iso(start + timedelta(days=1)),
            "datePaid": _iso(start + timedelta(days=1, seconds=4)),
        }
        if identifier:
            refund["callbackIdentifier"] = identifier
        yield Callback(
            "swish",
            json.dumps(refund).encode(),
            _json_headers(),
            client_ip,
            f"swish refund {member}",
        )


def billogram_callbacks(
    customer_numbers: list[str],
    sign_key: str,
    *,
    seed: int = 11,
    start: datetime | None = None,
    now: float | None = None,
) -> Iterator[Callback]:
    """Per member: invoice sent, then paid (or a reminder and overdue), signed as Billogram does."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    for i, customer in enumerate(customer_numbers):
        billogram_id = "".join(
            rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789") for _ in range(8)
        )
        invoice = {
            "id": billogram_id,
            "invoice_no": 10000 + i,
            "ocr_number": f"{customer}",
            "currency": "SEK",
            "total_sum": 250.0,
            "customer": {"customer_no": customer},
        }
        types = (
            ["BillogramSent", "Payment"] if i % 5 else ["BillogramSent", "ReminderSent", "Overdue"]
        )
        for step, event_type in enumerate(types):
            paid = event_type == "Payment"
            state = "Paid" if paid else ("Overdue" if event_type == "Overdue" else "Unpaid")
            created = start + timedelta(days=step * 14, minutes=i)
            body = {
                "callback_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "callback_timestamp": _iso(created),
                "callback_type": "BillogramEvent",
                "billogram": {**invoice, "state": state, "remaining_sum": 0.0 if paid else 250.0},
                "event": {
                    "type": event_type,
                    "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
                    "event_uuid": str(uuid.UUID(int=rng.getrandbits(128))),
                    "billogram_id": billogram_id,
                    "data": {"amount": 250.0} if paid else {"reminder_count": 1},
                },
            }
            raw = json.dumps(body).encode()
            yield Callback(
                "billogram",
                raw,
                _signed_headers(raw, sign_key, now),
                None,
                f"billogram {event_type} {customer}",
            )


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _signed_headers(raw: bytes, key: str, now: float | None) -> dict[str, str]:
    timestamp = f"{now if now is not None else time.time():.6f}"
    return {
        **_json_headers(),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(key, timestamp, raw),
    }


def demo_callbacks(
    member_numbers: list[str], sign_key: str, *, swish_identifier: str | None = None
) -> list[Callback]:
    """A mixed set as the demo delivers it: one member nobody knows, one forged signature.

    ``swish_identifier`` is the callbackIdentifier the Swish callbacks carry in their body:
    without one configured (and carried) every Swish callback is refused."""
    swish_members = member_numbers[: len(member_numbers) // 2]
    invoice_members = member_numbers[len(member_numbers) // 2 :]
    signed = [*billogram_callbacks(invoice_members, sign_key)]
    forged = next(billogram_callbacks(invoice_members[:1], "a-key-an-attacker-guessed", seed=99))
    return [
        *swish_callbacks([*swish_members, UNKNOWN_MEMBER], identifier=swish_identifier),
        *signed,
        Callback(forged.provider, forged.body, forged.headers, None, "forged billogram"),
    ]
