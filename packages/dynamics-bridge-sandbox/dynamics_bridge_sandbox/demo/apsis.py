"""The demo's APSIS section: triggers from the sync, segments, the score and reminders.

Runs on the demo's Dataverse sandbox and an APSIS stand-in (in-process, with APSIS's documented
limits). Before the sync, the columns a union's own process keeps are set on the fictitious
members: marketing consent (every seventh member has none), when they joined (a few 1, 5 or 10
years ago today: the anniversary reminder), a few who left (winback), member type, the county
and municipality codes, and for a few a round birthday today (the birthday reminder); their
employers, branches, memberships and activities are in the union's own tables (:mod:`.union`).
The sync then writes each applied event's triggers with its payment row and sends them; since
every input arrives twice, the stand-in's events prove that nothing was sent twice. Afterwards:
a second sweep (nothing left), segments pushed (then once more: nothing differs), one member
withdraws consent and is erased, reminders run twice (the second run sends nothing).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dynamics_bridge.activation.audience import exclusion
from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.app.wiring import apsis_platform, dataverse_activation
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.personnummer import luhn_check_digit
from dynamics_bridge.settings import ActivationSettings, ApsisSettings
from dynamics_bridge_sandbox.apsis import ApsisStandIn

__all__ = ["DEMO_NOW", "prepare_apsis_demo", "run_apsis_demo"]

#: The demo's "now": the day the last Bankgirot file of the demo is dated.
DEMO_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _settings(standin: ApsisStandIn) -> ApsisSettings:
    values = {
        name.removeprefix("BRIDGE_APSIS__").lower(): json.loads(v) if v.startswith("{") else v
        for name, v in standin.env.items()
    }
    values["import_poll_seconds"] = 0.2  # the stand-in finishes an import in two polls
    return ApsisSettings.model_validate(values)


#: Municipality codes of the demo's members (Stockholm, Göteborg, Malmö, Uppsala, Umeå,
#: Örebro, Linköping, Sundsvall): the first two digits are the county.
_TOWNS = ("0180", "1480", "1280", "0380", "2480", "1880", "0580", "2281")


def _birthday(today: date, age: int) -> date:
    return today.replace(year=today.year - age)


def _personnummer(born: date, index: int) -> str:
    """A fictitious personnummer for ``born`` (serial 980-999, as the sandbox's members)."""
    body = f"{born:%y%m%d}{980 + index % 20}"
    return f"{born.year // 100}{body}{luhn_check_digit(body)}"


def _member_columns(index: int, today: date, prefix: str) -> dict[str, Any]:
    """What the union's register says about demo member ``index`` (deterministic)."""
    joined = today - timedelta(days=(index * 37) % 2400)
    if index % 20 == 7:  # joined 1, 5 or 10 years ago today (the anniversary reminder)
        joined = today.replace(year=today.year - (1, 5, 10)[(index // 20) % 3])
    values: dict[str, Any] = {
        f"{prefix}_marketingconsent": index % 7 != 3,
        f"{prefix}_joinedon": joined.isoformat(),
        f"{prefix}_membershipstatus": 100000000,  # active
        # mostly yrkesverksam; every tenth a student, a pensionär, an egenföretagare
        f"{prefix}_membertype": 100000000 + max(0, index % 10 - 6),
        # the place of registration a SPAR refresh stored: county and municipality codes
        f"{prefix}_countycode": _TOWNS[index % len(_TOWNS)][:2],
        f"{prefix}_municipalitycode": _TOWNS[index % len(_TOWNS)],
    }
    if index % 30 == 11:  # a round birthday today (30, 40, 50 ... 80): the birthday reminder
        born = _birthday(today, (30, 40, 50, 60, 70, 80)[(index // 30) % 6])
        values["birthdate"] = born.isoformat()
        values["governmentid"] = _personnummer(born, index)
    if index % 25 == 5:  # left: 30, 90, 200 ... days ago (winback)
        ended = today - timedelta(days=(30, 90, 200, 400)[(index // 25) % 4])
        values[f"{prefix}_membershipstatus"] = 100000001
        values[f"{prefix}_endedon"] = ended.isoformat()
    return values


def prepare_apsis_demo(
    client: DataverseClient, mapping: MappingFile, numbers: list[str], standin: ApsisStandIn
) -> Activation:
    """Set the demo's register columns and build the activation side on the stand-in."""
    config = load_activation(mapping)
    platform = apsis_platform(_settings(standin), config.apsis)
    platform.bulk_threshold = 100  # first pushes of attributes go by bulk import
    # The demo's clock stands still: a welcome goes with its payment instead of being held.
    options = ActivationSettings(first_payment_hold_minutes=0)
    activation = dataverse_activation(
        client, mapping, platform, config=config, clock=lambda: DEMO_NOW, options=options
    )
    activation.store.update_members(
        [
            (number, _member_columns(i, DEMO_NOW.date(), mapping.publisher_prefix), "*")
            for i, number in enumerate(numbers)
        ]
    )
    return activation


def run_apsis_demo(activation: Activation, standin: ApsisStandIn) -> dict[str, Any]:
    """Segments, consent withdrawn, reminders; the summary for ``demo --json``."""
    sent_by_sync = dict(standin.event_counts())
    sweep = activation.triggers.sweep()
    segments = activation.segments.run()
    again = activation.segments.run()
    # One member who is in APSIS withdraws consent: the next run erases the profile.
    plain = {"payment_confirmed", "welcome"}
    withdrawn = next(
        key
        for key, p in sorted(standin.profiles().items())
        if p["tags"] and {e.type for e in standin.events(key=key)} <= plain
    )
    consent = activation.config.apsis.audience.consent_column
    activation.store.update_members([(withdrawn, {consent: False}, "*")])
    after_withdrawal = activation.segments.run()
    reminders = activation.reminders.run()
    reminders_again = activation.reminders.run()
    events = standin.events()
    ids = Counter((e.type, e.data.get("source_event_id")) for e in events)
    excluded = _excluded_members(activation)
    profiles = standin.profiles()
    welcomes = [e.data for e in standin.events("welcome")]
    return {
        "events_by_type": dict(sorted(standin.event_counts().items())),
        # The welcome is personal: what it carried, by age band, region and industry.
        "welcome_payloads": {
            field: dict(sorted(Counter(str(w.get(field, "-")) for w in welcomes).items()))
            for field in ("age_band", "region", "industry", "member_type")
        },
        "welcome_example": welcomes[0] if welcomes else None,
        "score_parts": _score_parts(activation),
        "triggers_sent_by_sync": dict(sorted(sent_by_sync.items())),
        "sent_twice": sum(1 for n in ids.values() if n > 1),
        "left_in_outbox": sweep.claimed,
        "profiles": len(profiles),
        "attribute_updates": len(standin.attribute_updates()),
        "segment_sizes": dict(sorted(standin.tag_counts().items())),
        "segments_run": segments.to_json(),
        "segments_second_run_pushed": again.pushed,
        "consent_withdrawn": {"member": withdrawn, "erased": after_withdrawal.erased},
        "reminders": reminders.to_json(),
        "reminders_second_run_sent": sum(reminders_again.sent.values()),
        "excluded_members_in_apsis": sorted(set(excluded) & set(profiles)),
        "apsis_requests": sum(standin.requests.values()),
        "throttled": dict(standin.throttled),
        "imports": len(standin.imports()),
    }


def _score_parts(activation: Activation) -> dict[str, Any]:
    """Per score part: the members it had data for and their mean share (from the parts column,
    where the segments job explains each member's score)."""
    column = activation.config.segments.engagement.parts_column
    if not column:
        return {}
    shares: dict[str, list[int]] = {}
    for row in activation.store.member_changes([column], None).changed:
        for part in str(row.get(column) or "").split():
            name, _, share = part.partition("=")
            shares.setdefault(name, [])
            if share.isdigit():
                shares[name].append(int(share))
    return {
        name: {
            "members": len(found),
            "mean_percent": round(sum(found) / len(found)) if found else None,
        }
        for name, found in shares.items()
    }


def _excluded_members(activation: Activation) -> list[str]:
    """Members who must never be in APSIS (no consent, protected identity, excluded status)."""
    audience = activation.config.apsis.audience
    member = activation.mapping.member
    members = activation.members
    rows = activation.store.member_changes(members.columns, None).changed
    return [
        str(row[member.key_column])
        for row in rows
        if exclusion(members.view(row), audience) is not None
    ]
