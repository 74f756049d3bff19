"""A member register on the local sandbox: settings, provisioning, seeded members, payment events.

Shared by the demo, the benchmarks and the integration tests, so they all measure and check the
same thing. Members are fictitious; personnummer use serial numbers 980-999, which pass the Luhn
check but belong to nobody outside the sandbox.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from dynamics_bridge.dataverse.batch import BatchRequest
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.provision import apply_plan, plan
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.personnummer import luhn_check_digit
from dynamics_bridge.settings import AppUser, DataverseSettings
from dynamics_bridge_sandbox.server import SandboxInfo

__all__ = [
    "fictitious_personnummer",
    "member_numbers",
    "payment_events",
    "prepare_register",
    "sandbox_settings",
    "seed_members",
]

FEE = 25000  # öre


def sandbox_settings(box: SandboxInfo, *, app_users: int = 1, **extra: object) -> DataverseSettings:
    """Settings for the sandbox, with ``app_users`` application users (new ones registered)."""
    users = []
    for _ in range(app_users - 1):
        client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
        box.dataverse.add_app_user(client_id, secret)
        users.append(AppUser(client_id=client_id, client_secret=secret))  # type: ignore[arg-type]
    return DataverseSettings(
        url=box.url,
        tenant_id="sandbox",
        authority=box.authority,
        client_id=box.client_id,
        client_secret=box.client_secret,  # type: ignore[arg-type]
        ca_bundle=box.ca_bundle,
        app_users=users,
        **extra,  # type: ignore[arg-type]
    )


def fictitious_personnummer(rng: random.Random) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 50))
    body = f"{born:%y%m%d}{rng.randrange(980, 1000)}"
    return f"{born.year // 100}{body}{luhn_check_digit(body)}"


def member_numbers(count: int) -> list[str]:
    return [str(100001 + i) for i in range(count)]


def seed_members(client: DataverseClient, mapping: MappingFile, numbers: Sequence[str]) -> None:
    """Create the members, 1,000 to a ``$batch``."""
    rng = random.Random(42)  # noqa: S311 - fictitious data, not security
    member = mapping.member
    requests = [
        BatchRequest(
            "POST",
            member.entity_set,
            {},
            {
                member.key_column: number,
                "firstname": "Test",
                "lastname": f"Medlem {number}",
                "governmentid": fictitious_personnummer(rng),
            },
        )
        for number in numbers
    ]
    for start in range(0, len(requests), 1000):
        client.batch.parts(requests[start : start + 1000])


def prepare_register(client: DataverseClient, mapping: MappingFile, members: int) -> list[str]:
    """Provision what the mapping needs and seed ``members`` members; their numbers."""
    apply_plan(client, plan(client, mapping))
    numbers = member_numbers(members)
    seed_members(client, mapping, numbers)
    return numbers


def payment_events(
    numbers: Sequence[str], count: int, *, seed: int = 7, mandates: float = 0.0
) -> list[PaymentEvent]:
    """``count`` Autogiro payments over the members, in time order: mostly paid, some failed,
    and a share ``mandates`` of mandate approvals and cancellations (their own ordering guard).
    More events than members: the members take turns, so each has several events."""
    rng = random.Random(seed)  # noqa: S311 - fictitious data, not security
    start = datetime(2026, 1, 28, 6, 0, tzinfo=UTC)
    events = []
    for n in range(count):
        number = numbers[n % len(numbers)]
        failed = rng.random() < 0.1
        occurred = start + timedelta(minutes=n)
        kind = EventKind.PAYMENT_FAILED if failed else EventKind.PAYMENT_SUCCEEDED
        if mandates and rng.random() < mandates:
            approved = rng.random() < 0.7
            kind = EventKind.MANDATE_APPROVED if approved else EventKind.MANDATE_CANCELLED
            failed = False
        events.append(
            PaymentEvent(
                event_id=make_event_id(Source.AUTOGIRO, f"{seed}:{n}", number, kind.value),
                source=Source.AUTOGIRO,
                kind=kind,
                member_ref=MemberRef(MemberRefKind.PAYER_NUMBER, number),
                amount_minor=0 if kind.value.startswith("mandate.") else FEE,
                currency="SEK",
                occurred_at=occurred,
                provider_ref=f"AG-{n:08d}",
                reason_code="1" if failed else None,
                reason_text="Täckning saknas" if failed else None,
                origin=f"bench:{n + 1}",
            )
        )
    return events
