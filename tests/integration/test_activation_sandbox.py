"""Triggers, segments and reminders against the Dataverse sandbox and the APSIS stand-in."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dynamics_bridge_sandbox.apsis import (
    ApsisChaos,
    ApsisLimits,
    ApsisStandIn,
    run_apsis_standin,
)
from dynamics_bridge_sandbox.register import prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.activation.config import Reminder
from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.related import assemble, reads
from dynamics_bridge.activation.reminders import query_windows
from dynamics_bridge.activation.segments_job import DELTA_NAME, FULL_RUN_NAME
from dynamics_bridge.activation.service import Activation, check_apsis
from dynamics_bridge.activation.triggers import decode_payload
from dynamics_bridge.app.wiring import apsis_platform, dataverse_activation
from dynamics_bridge.apsis.models import ProfileChange
from dynamics_bridge.apsis.pacing import Pacer
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.errors import InputError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    Outcome,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.pipeline import EventOutcome, Pipeline
from dynamics_bridge.settings import ActivationSettings, ApsisSettings

pytestmark = pytest.mark.integration
MAPPING = load_mapping()
CONFIG = load_activation(MAPPING)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ACTIVE, ENDED = 100000000, 100000001


@dataclass
class World:
    client: DataverseClient
    apsis: ApsisStandIn
    activation: Activation
    numbers: list[str]
    now: list[datetime]
    sandbox: Any = None  # the Dataverse sandbox (its request count)

    def pipeline(self, hooks: Any = None) -> Pipeline:
        store = DataverseMemberStore(self.client, MAPPING)
        return Pipeline(store, MAPPING, hooks=self.activation.triggers if hooks is None else hooks)

    def set_member(self, number: str, **values: Any) -> None:
        self.activation.store.update_members([(number, values, "*")])

    def outbox_state(self, event_id: str) -> str:
        (row,) = self.activation.store.outbox_rows([event_id])
        return row.state

    def sent(self) -> Counter[str]:
        return Counter(e.type for e in self.apsis.events())


@pytest.fixture
def world() -> Iterator[World]:
    limits = ApsisLimits(event_exports=(100, 1.0))  # APSIS: one a minute; tests need more
    with run_sandbox() as box, run_apsis_standin(limits=limits) as apsis:
        client = DataverseClient.from_settings(sandbox_settings(box))
        numbers = prepare_register(client, MAPPING, 6)
        values = {k.removeprefix("BRIDGE_APSIS__").lower(): v for k, v in apsis.env.items()}
        values = {k: json.loads(v) if v.startswith("{") else v for k, v in values.items()}
        platform = apsis_platform(ApsisSettings.model_validate(values), CONFIG.apsis)
        # An outage fails at once instead of backing off; exports are polled at once.
        platform.client.settings = platform.client.settings.model_copy(
            update={"max_attempts": 1, "event_export_poll_seconds": 0.01}
        )
        platform.client.export_pacer = Pacer((100, 1.0))
        now = [NOW]
        # No hold on first-payment triggers unless a test asks: a welcome goes with its payment.
        options = ActivationSettings(first_payment_hold_minutes=0)
        activation = dataverse_activation(
            client, MAPPING, platform, config=CONFIG, clock=lambda: now[0], options=options
        )
        world = World(client, apsis, activation, numbers, now, box.dataverse)
        for number in numbers:
            world.set_member(
                number,
                mbr_marketingconsent=True,
                mbr_joinedon="2026-10-01",
                mbr_membershipstatus=ACTIVE,
            )
        yield world


def paid(number: str, n: int = 1, kind: EventKind = EventKind.PAYMENT_SUCCEEDED) -> PaymentEvent:
    return PaymentEvent(
        event_id=make_event_id(Source.SWISH, number, str(n), kind.value),
        source=Source.SWISH,
        kind=kind,
        member_ref=MemberRef(MemberRefKind.MEMBER_NUMBER, number),
        amount_minor=25000,
        currency="SEK",
        occurred_at=NOW - timedelta(days=30) + timedelta(minutes=n),
        provider_ref=f"PAY-{number}-{n}",
        reason_code="RF07" if kind is EventKind.PAYMENT_FAILED else None,
        reason_text=None,
        origin="test",
    )


class CrashAfterWrite:
    """The process dies after Dataverse committed the batch and before anything was sent."""

    def __init__(self, activation: Activation) -> None:
        self.activation = activation

    def payment_extras(self, outcome: EventOutcome) -> dict[str, Any]:
        return self.activation.triggers.payment_extras(outcome)

    def after_apply(self, outcomes: Sequence[EventOutcome]) -> None:
        return None


# -- triggers --------------------------------------------------------------------------------


def test_an_applied_payment_triggers_once_and_its_redelivery_never(world: World) -> None:
    event = paid(world.numbers[0])
    (first,) = world.pipeline().apply([event])
    (again,) = world.pipeline().apply([event])
    assert (first.outcome, again.outcome) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}
    (confirmed,) = world.apsis.events("payment_confirmed")
    assert confirmed.data["source_event_id"] == event.event_id
    assert confirmed.key == world.numbers[0]
    assert world.outbox_state(event.event_id) == "sent"
    assert world.activation.triggers.sweep().claimed == 0
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}


def test_a_second_payment_is_confirmed_without_a_second_welcome(world: World) -> None:
    world.pipeline().apply([paid(world.numbers[0], 1)])
    world.pipeline().apply([paid(world.numbers[0], 2)])
    assert world.sent() == {"payment_confirmed": 2, "welcome": 1}
    member = world.activation.store.members([world.numbers[0]], ["mbr_firstpaidon"])
    assert member[world.numbers[0]]["mbr_firstpaidon"] == "2026-10-29"


def test_a_failed_payment_carries_the_fix_it_text_for_its_method_and_code(world: World) -> None:
    world.pipeline().apply([paid(world.numbers[1], kind=EventKind.PAYMENT_FAILED)])
    (failed,) = world.apsis.events("payment_failed")
    assert failed.data["reason_code"] == "RF07"
    assert failed.data["fix_it"] == CONFIG.triggers.fix_it.by_method["swish"].codes["RF07"]


def test_a_crash_between_the_write_and_the_send_is_sent_by_the_sweep_once(world: World) -> None:
    event = paid(world.numbers[0])
    world.pipeline(CrashAfterWrite(world.activation)).apply([event])
    assert world.sent() == {}
    assert world.outbox_state(event.event_id) == "pending"
    (retry,) = world.pipeline().apply([event])  # the queue redelivers the message
    assert retry.outcome is Outcome.DUPLICATE
    assert world.sent() == {}  # a duplicate never triggers: the outbox row does
    assert world.activation.triggers.sweep().sent == {"payment_confirmed": 1, "welcome": 1}
    assert world.activation.triggers.sweep().claimed == 0
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}


LEASE = timedelta(minutes=CONFIG.triggers.outbox.lease_minutes + 1)


def test_a_claim_lost_in_a_crash_is_unconfirmed_never_sent_again_blindly(world: World) -> None:
    event = paid(world.numbers[0])
    world.pipeline(CrashAfterWrite(world.activation)).apply([event])
    store = world.activation.store
    assert len(store.claim(store.outbox_rows([event.event_id]), NOW)) == 1  # then it dies
    assert world.activation.triggers.sweep().claimed == 0  # another sender may be sending it
    world.now[0] = NOW + LEASE
    report = world.activation.triggers.sweep()
    assert (report.unconfirmed, report.claimed) == (2, 0)  # no read-back: left for an admin
    assert world.outbox_state(event.event_id) == "unconfirmed"
    assert world.sent() == {}
    (listed,) = world.activation.triggers.unconfirmed()
    assert (listed.event_id, listed.member) == (event.event_id, world.numbers[0])
    assert len(listed.triggers) == 2
    assert world.activation.triggers.sweep().claimed == 0  # still the admin's
    world.activation.triggers.resolve(event.event_id, send=True)
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}
    assert world.outbox_state(event.event_id) == "sent"
    assert world.activation.triggers.unconfirmed() == []


def test_an_admin_may_drop_an_unconfirmed_row_and_nothing_is_sent(world: World) -> None:
    event = paid(world.numbers[0])
    world.pipeline(CrashAfterWrite(world.activation)).apply([event])
    store = world.activation.store
    store.claim(store.outbox_rows([event.event_id]), NOW)
    world.now[0] = NOW + LEASE
    world.activation.triggers.sweep()
    world.activation.triggers.resolve(event.event_id, send=False)
    assert world.outbox_state(event.event_id) == "dropped"
    assert world.sent() == {}
    with pytest.raises(InputError, match="no unconfirmed triggers"):
        world.activation.triggers.resolve(event.event_id, send=True)


def test_two_senders_racing_for_a_row_send_it_once(world: World) -> None:
    event = paid(world.numbers[0])
    world.pipeline(CrashAfterWrite(world.activation)).apply([event])
    store = world.activation.store
    rows = store.outbox_rows([event.event_id])  # both read the same row and ETag
    assert len(store.claim(rows, NOW)) == 1
    assert store.claim(rows, NOW) == []  # 412: the ETag moved on


# -- unknown answers: the read-back ------------------------------------------------------------


def test_an_event_post_stored_but_answered_503_is_unconfirmed_not_resent(world: World) -> None:
    world.apsis.chaos = ApsisChaos(stored_then_unavailable=1.0)
    event = paid(world.numbers[0])
    (outcome,) = world.pipeline().apply([event])
    world.apsis.chaos = ApsisChaos()
    assert outcome.outcome is Outcome.APPLIED
    assert world.outbox_state(event.event_id) == "unconfirmed"
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}  # APSIS has them
    world.now[0] = NOW + LEASE
    world.activation.triggers.sweep()  # read-back off: nothing sent again
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}
    world.activation.triggers.options = ActivationSettings(
        first_payment_hold_minutes=0, readback=True
    )
    report = world.activation.triggers.sweep()
    assert (report.confirmed, report.resent) == (2, 0)
    assert world.outbox_state(event.event_id) == "sent"
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}


@pytest.mark.parametrize("stored", [True, False], ids=["posted, then died", "died before"])
def test_the_read_back_settles_a_crashed_send_by_what_apsis_holds(
    world: World, stored: bool
) -> None:
    world.activation.triggers.options = ActivationSettings(
        first_payment_hold_minutes=0, readback=True
    )
    number = world.numbers[0]
    event = paid(number)
    world.pipeline(CrashAfterWrite(world.activation)).apply([event])
    store = world.activation.store
    ((_, payload),) = world.activation.triggers._claimed(
        [(r, decode_payload(r.payload)) for r in store.outbox_rows([event.event_id])], NOW
    )
    if stored:  # the crashed sender's POST went through; its settle never happened
        events = [t.marketing_event(event.event_id) for t in payload.triggers]
        world.activation.platform.apply_changes([ProfileChange(number, events=events)])
    world.now[0] = NOW + LEASE
    report = world.activation.triggers.sweep()
    assert (report.confirmed, report.resent) == ((2, 0) if stored else (0, 2))
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}
    assert world.outbox_state(event.event_id) == "sent"


def test_when_the_read_back_fails_the_triggers_stay_unconfirmed(world: World) -> None:
    world.activation.triggers.options = ActivationSettings(
        first_payment_hold_minutes=0, readback=True
    )
    world.apsis.chaos = ApsisChaos(stored_then_unavailable=1.0)
    event = paid(world.numbers[0])
    world.pipeline().apply([event])
    world.apsis.chaos = ApsisChaos()
    world.apsis.fail_next(400, path="/profiles/exports")
    world.now[0] = NOW + LEASE
    report = world.activation.triggers.sweep()
    assert "400" in (report.readback or "")
    assert world.outbox_state(event.event_id) == "unconfirmed"
    assert world.sent() == {"payment_confirmed": 1, "welcome": 1}


# -- late events ---------------------------------------------------------------------------------


def test_a_late_payment_still_confirms_and_does_not_welcome_twice(world: World) -> None:
    world.activation.triggers.options = ActivationSettings(
        first_payment_hold_minutes=0, late_trigger_days=60
    )
    number = world.numbers[0]
    later, earlier = paid(number, 2), paid(number, 1)
    world.pipeline().apply([later])
    (late,) = world.pipeline().apply([earlier])
    assert late.replayed
    confirmed = {e.data["source_event_id"] for e in world.apsis.events("payment_confirmed")}
    assert confirmed == {later.event_id, earlier.event_id}
    (welcome,) = world.apsis.events("welcome")  # sent with the first to arrive, not again
    assert welcome.data["source_event_id"] == later.event_id
    assert world.outbox_state(earlier.event_id) == "sent"


def test_a_late_failure_still_says_what_to_do(world: World) -> None:
    world.activation.triggers.options = ActivationSettings(late_trigger_days=60)
    number = world.numbers[1]
    world.pipeline().apply([paid(number, 2)])
    failure = paid(number, 1, kind=EventKind.PAYMENT_FAILED)
    (late,) = world.pipeline().apply([failure])
    assert late.replayed
    (failed,) = world.apsis.events("payment_failed")
    assert failed.data["source_event_id"] == failure.event_id
    assert failed.data["fix_it"] == CONFIG.triggers.fix_it.by_method["swish"].codes["RF07"]


def test_an_event_later_than_the_freshness_window_is_kept_unsent_and_counted(
    world: World,
) -> None:
    # the events: 30 days
    world.activation.triggers.options = ActivationSettings(late_trigger_days=7)
    number = world.numbers[1]
    world.pipeline().apply([paid(number, 2)])
    failure = paid(number, 1, kind=EventKind.PAYMENT_FAILED)
    pipeline = world.pipeline()
    (late,) = pipeline.apply([failure])
    assert late.replayed
    assert world.apsis.events("payment_failed") == []
    assert world.outbox_state(failure.event_id) == "skipped"
    (row,) = world.activation.store.outbox_rows([failure.event_id])
    assert {t.state for t in decode_payload(row.payload).triggers} == {"late"}
    assert world.activation.triggers.after_apply([late]).late == 1
    assert world.activation.triggers.sweep().claimed == 0


def test_the_welcome_is_held_and_goes_to_the_earliest_payment_that_arrives_in_time(
    world: World,
) -> None:
    world.activation.triggers.options = ActivationSettings(
        first_payment_hold_minutes=30, late_trigger_days=60
    )
    number = world.numbers[0]
    later, earlier = paid(number, 2), paid(number, 1)
    world.pipeline().apply([later])
    assert world.sent() == {"payment_confirmed": 1}  # the welcome waits
    world.now[0] = NOW + timedelta(minutes=10)
    world.pipeline().apply([earlier])
    assert world.sent() == {"payment_confirmed": 2}
    world.now[0] = NOW + timedelta(minutes=41)
    report = world.activation.triggers.sweep()
    assert report.withdrawn == 1
    (welcome,) = world.apsis.events("welcome")
    assert welcome.data["source_event_id"] == earlier.event_id
    assert {world.outbox_state(e.event_id) for e in (later, earlier)} == {"sent"}
    member = world.activation.store.members([number], ["mbr_firstpaidon"])
    assert member[number]["mbr_firstpaidon"] == "2026-10-29"
    assert world.activation.triggers.sweep().claimed == 0
    assert world.sent() == {"payment_confirmed": 2, "welcome": 1}


def test_a_welcome_that_went_out_is_not_sent_again_for_an_earlier_payment(world: World) -> None:
    world.activation.triggers.options = ActivationSettings(
        first_payment_hold_minutes=30, late_trigger_days=60
    )
    number = world.numbers[0]
    later, earlier = paid(number, 2), paid(number, 1)
    world.pipeline().apply([later])
    world.now[0] = NOW + timedelta(minutes=31)
    world.activation.triggers.sweep()
    world.pipeline().apply([earlier])  # after the hold: too late to take the welcome over
    world.now[0] = NOW + timedelta(minutes=62)
    assert world.activation.triggers.sweep().withdrawn == 1
    (welcome,) = world.apsis.events("welcome")
    assert welcome.data["source_event_id"] == later.event_id


def test_the_outbox_age_counts_pending_and_unconfirmed_rows(world: World) -> None:
    event = paid(world.numbers[0])
    world.pipeline(CrashAfterWrite(world.activation)).apply([event])
    age = world.activation.store.outbox_age(datetime.now(UTC) + timedelta(minutes=5))
    assert age["pending"]["count"] == 1
    assert 5 * 60 - 60 <= age["pending"]["oldest_seconds"] <= 5 * 60 + 60
    assert age["unconfirmed"] == {"count": 0, "oldest_seconds": None}


def test_apsis_down_leaves_the_trigger_pending_for_the_next_sweep(world: World) -> None:
    world.apsis.fail_next(503)
    event = paid(world.numbers[0])
    (outcome,) = world.pipeline().apply([event])
    assert outcome.outcome is Outcome.APPLIED  # the payment is booked all the same
    assert world.outbox_state(event.event_id) == "pending"
    assert world.sent() == {}
    assert world.activation.triggers.sweep().sent == {"payment_confirmed": 1, "welcome": 1}


# -- consent and protected identity ------------------------------------------------------------


def test_a_member_without_consent_is_never_pushed_and_the_trigger_skipped(world: World) -> None:
    number = world.numbers[2]
    world.set_member(number, mbr_marketingconsent=False)
    event = paid(number)
    world.pipeline().apply([event])
    assert world.apsis.profile(number) is None
    assert world.outbox_state(event.event_id) == "skipped"
    world.activation.segments.run()
    assert world.apsis.profile(number) is None


def test_protected_identity_after_a_push_erases_the_profile(world: World) -> None:
    number = world.numbers[3]
    world.pipeline().apply([paid(number)])
    assert world.apsis.profile(number) is not None
    world.set_member(number, mbr_protectedidentity=True)
    report = world.activation.segments.run()
    assert report.erased == 1
    assert world.apsis.profile(number) is None
    assert (number, "delete") in world.apsis.erasures()
    world.pipeline().apply([paid(number, 2)])  # a later payment triggers nothing for them
    assert world.apsis.profile(number) is None


# -- segments ----------------------------------------------------------------------------------


def test_segments_are_pushed_as_tags_then_only_differences(world: World) -> None:
    number = world.numbers[0]
    world.pipeline().apply([paid(number)])
    first = world.activation.segments.run()
    assert first.evaluated == 6
    assert set(world.apsis.profile(number)["tags"]) >= {"onboarding", "pays_swish"}
    assert world.activation.store.get_state(DELTA_NAME)  # kept for the next run
    requests = sum(world.apsis.requests.values())
    second = world.activation.segments.run()
    assert second.pushed == 0
    assert sum(world.apsis.requests.values()) == requests  # nothing sent at all
    world.set_member(number, mbr_arrears=250)
    third = world.activation.segments.run()
    assert third.evaluated == 1  # only the member that changed
    assert third.pushed == 1
    assert "at_risk" in world.apsis.profile(number)["tags"]
    row = world.activation.store.members([number], ["mbr_segments", "mbr_engagementscore"])
    assert "at_risk" in row[number]["mbr_segments"]
    assert world.apsis.profile(number)["attributes"]["engagement_score"] == int(
        row[number]["mbr_engagementscore"]
    )


def test_a_dry_run_shows_the_differences_and_sends_nothing(world: World) -> None:
    report = world.activation.segments.run(dry_run=True)
    assert len(report.diffs) == 6
    assert all(d.plan.create for d in report.diffs)
    assert world.apsis.profiles() == {}
    assert world.activation.store.get_state(DELTA_NAME) is None


def test_age_and_tenure_bands_reach_apsis_and_the_personnummer_does_not(world: World) -> None:
    number = world.numbers[2]
    born = "19960415-1234"  # 30 on NOW; the check digit is right (Luhn)
    world.set_member(number, governmentid=born, mbr_joinedon="2021-11-28")
    world.activation.segments.run()
    attributes = world.apsis.profile(number)["attributes"]
    assert attributes["age_band"] == "26-35"
    assert attributes["tenure_band"] == "5-9"
    sent = json.dumps(world.apsis.profiles())
    assert "960415" not in sent  # nor any part of the personnummer


def test_region_and_member_type_reach_apsis_by_their_names(world: World) -> None:
    number = world.numbers[3]
    world.set_member(
        number, mbr_countycode="12", mbr_municipalitycode="1280", mbr_membertype=100000002
    )
    world.activation.segments.run()
    attributes = world.apsis.profile(number)["attributes"]
    assert (attributes["region"], attributes["member_type"]) == ("Skåne län", "pensionar")


def test_a_lapsed_member_is_tagged_for_winback(world: World) -> None:
    number = world.numbers[4]
    world.set_member(number, mbr_membershipstatus=ENDED, mbr_endedon="2026-06-01")
    world.activation.segments.run()
    assert "lapsed" in world.apsis.profile(number)["tags"]
    assert "onboarding" not in world.apsis.profile(number)["tags"]


# -- reminders ---------------------------------------------------------------------------------


def test_a_reminder_is_sent_once_per_period(world: World) -> None:
    number = world.numbers[5]
    world.set_member(number, mbr_paymentmethod=100000001, mbr_paidthrough="2026-12-02")
    first = world.activation.reminders.run()
    second = world.activation.reminders.run()
    assert first.sent == {"upcoming_payment": 1}
    assert second.sent == {}
    assert second.already_sent == 1
    (reminder,) = world.apsis.events("payment_reminder")
    assert reminder.data["due_on"] == "2026-12-02"
    assert "autogiro" in reminder.data["text"]
    world.set_member(number, mbr_paidthrough="2026-12-31")  # the next period
    world.now[0] = datetime(2026, 12, 26, 12, 0, tzinfo=UTC)
    assert world.activation.reminders.run().sent == {"upcoming_payment": 1}


def test_a_membership_anniversary_is_sent_on_the_day_once_a_year(world: World) -> None:
    five_years, four_years = world.numbers[4], world.numbers[3]
    world.set_member(five_years, mbr_joinedon="2021-11-26")  # two days ago: caught up
    world.set_member(four_years, mbr_joinedon="2022-11-28")  # not an anniversary listed
    first = world.activation.reminders.run()
    assert first.sent == {"anniversary": 1}
    (sent,) = world.apsis.events("anniversary")
    assert sent.data["member_number"] == five_years
    assert sent.data["anniversary_on"] == "2026-11-26"
    assert sent.data["years"] == 5
    assert "5 år" in sent.data["text"]
    assert world.activation.reminders.run().sent == {}  # once a year
    world.now[0] = datetime(2027, 11, 26, 12, 0, tzinfo=UTC)  # six years: not listed
    assert world.activation.reminders.run().sent == {}
    world.now[0] = datetime(2030, 11, 26, 12, 0, tzinfo=UTC)  # nine years, no; four: ten? no
    world.set_member(four_years, mbr_joinedon="2020-11-26")
    assert world.activation.reminders.run().sent == {"anniversary": 1}  # ten years


def test_an_every_year_query_reads_only_the_members_whose_day_it_is(world: World) -> None:
    every_year = Reminder.model_validate(
        {"every_year": {"column": "mbr_joinedon", "catch_up_days": 0}, "event": "anniversary"}
    )
    days = ["1950-11-28", "2025-11-28", "2025-11-29", "2024-06-01", "1930-11-27", "2026-11-28"]
    for number, day in zip(world.numbers, days, strict=True):
        world.set_member(number, mbr_joinedon=day)
    windows = query_windows(every_year, NOW.date())
    assert len(windows) == 120  # one a year back: six or-ed queries of 20
    rows = world.activation.store.members_dated("mbr_joinedon", windows, ["mbr_joinedon"])
    found = sorted(str(r["mbr_joinedon"])[:10] for r in rows)
    # the day itself and a day either side (29 February); never the member who joined today
    assert found == ["1930-11-27", "1950-11-28", "2025-11-28", "2025-11-29"]


def test_a_failed_reminder_send_is_released_for_the_next_run(world: World) -> None:
    number = world.numbers[5]
    world.set_member(number, mbr_paymentmethod=100000001, mbr_paidthrough="2026-12-02")
    world.apsis.fail_next(503)
    assert world.activation.reminders.run().failed
    assert world.activation.reminders.run().sent == {"upcoming_payment": 1}


def test_no_reminder_reaches_a_member_without_consent(world: World) -> None:
    number = world.numbers[5]
    world.set_member(
        number,
        mbr_paymentmethod=100000001,
        mbr_paidthrough="2026-12-02",
        mbr_marketingconsent=False,
    )
    report = world.activation.reminders.run()
    assert report.sent == {}
    assert report.excluded == 1


# -- apsis check -------------------------------------------------------------------------------


def test_apsis_check_passes_on_the_stand_in_and_names_what_is_missing(world: World) -> None:
    assert check_apsis(world.activation.platform, CONFIG.apsis) == []
    world.activation.platform.names["tags"]["lapsed"] = "usercreated.tags.nope-x"
    assert check_apsis(world.activation.platform, CONFIG.apsis) == [
        "tag lapsed: usercreated.tags.nope-x not in section usercreated.sections.members-sbx01"
    ]


# -- the commands ------------------------------------------------------------------------------


def test_segments_push_dry_run_prints_the_diff_table_and_sends_nothing(
    world: World, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from dynamics_bridge.cli import activation as commands
    from dynamics_bridge.cli import app

    monkeypatch.setattr(commands, "_activation", lambda dry_run=False: world.activation)
    result = CliRunner().invoke(app, ["segments", "push", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Differences (dry run: nothing sent)" in result.output
    assert world.numbers[0] in result.output
    assert world.apsis.profiles() == {}
    result = CliRunner().invoke(app, ["apsis", "check"])
    assert result.exit_code == 0
    assert "every configured APSIS name exists" in result.output


def test_apsis_check_names_a_trigger_field_the_apsis_event_lacks(world: World, monkeypatch) -> None:
    from typer.testing import CliRunner

    from dynamics_bridge.cli import activation as commands
    from dynamics_bridge.cli import app

    welcome = CONFIG.triggers.triggers["welcome"]
    more = welcome.model_copy(update={"fields": [*welcome.fields, {"branch": "branch.name"}]})
    triggers = CONFIG.triggers.model_copy(
        update={"triggers": {**CONFIG.triggers.triggers, "welcome": more}}
    )
    world.activation.config = CONFIG.model_copy(update={"triggers": triggers})
    monkeypatch.setattr(commands, "_activation", lambda dry_run=False: world.activation)
    result = CliRunner().invoke(app, ["apsis", "check"])
    assert result.exit_code == 1
    assert "triggers.yaml: triggers.welcome.fields" in result.output
    assert "['branch']" in result.output


# -- member state follows what APSIS holds, not what was attempted ------------------------------

STATE = CONFIG.apsis.audience.state_column


def state_of(world: World, number: str) -> Any:
    return world.activation.store.members([number], [STATE])[number].get(STATE)


def test_an_erase_that_failed_leaves_the_member_marked_pushed_so_it_is_erased_later(
    world: World,
) -> None:
    number = world.numbers[3]
    world.pipeline().apply([paid(number)])
    assert state_of(world, number)
    world.set_member(number, mbr_marketingconsent=False)
    world.apsis.fail_next(503, path=f"profiles/{number}")  # the DELETE
    report = world.pipeline().apply([paid(number, 2)])
    assert report[0].outcome is Outcome.APPLIED
    assert world.apsis.profile(number) is not None  # not erased yet...
    assert state_of(world, number)  # ...so it still looks pushed
    segments = world.activation.segments.run()
    assert segments.erased == 1
    assert world.apsis.profile(number) is None
    assert (number, "delete") in world.apsis.erasures()
    assert not state_of(world, number)


def test_a_first_push_that_failed_writes_no_state_and_the_retry_does(world: World) -> None:
    number = world.numbers[0]
    world.apsis.fail_next(503, path="/profiles")  # the create
    event = paid(number)
    world.pipeline().apply([event])
    assert world.outbox_state(event.event_id) == "pending"
    assert not state_of(world, number)  # APSIS holds nothing: a withdrawal needs no erase
    row = world.activation.store.members([number], ["mbr_firstpaidon"])[number]
    assert row["mbr_firstpaidon"] == "2026-10-29"  # a fact of the register all the same
    assert world.activation.triggers.sweep().sent == {"payment_confirmed": 1, "welcome": 1}
    assert state_of(world, number)
    assert world.apsis.profile(number)["attributes"]


def test_a_first_push_that_failed_for_good_writes_no_state(world: World) -> None:
    number = world.numbers[0]
    world.apsis.fail_next(400, path="/profiles")
    event = paid(number)
    world.pipeline().apply([event])
    assert world.outbox_state(event.event_id) == "failed"
    assert not state_of(world, number)
    world.activation.segments.run()  # the segments job creates it in full
    assert world.apsis.profile(number)["attributes"]
    assert state_of(world, number)


def test_the_first_payment_trigger_is_found_by_its_flag_not_its_name(world: World) -> None:
    triggers = dict(CONFIG.triggers.triggers)
    triggers["hello_member"] = triggers.pop("welcome")
    renamed = CONFIG.model_copy(
        update={"triggers": CONFIG.triggers.model_copy(update={"triggers": triggers})}
    )
    activation = dataverse_activation(
        world.client,
        MAPPING,
        world.activation.platform,
        config=renamed,
        clock=lambda: NOW,
        options=world.activation.triggers.options,
    )
    assert activation.triggers.first_payment_triggers == {"hello_member"}
    number = world.numbers[1]
    store = DataverseMemberStore(world.client, MAPPING)
    Pipeline(store, MAPPING, hooks=activation.triggers).apply([paid(number)])
    row = activation.store.members([number], ["mbr_firstpaidon"])[number]
    assert row["mbr_firstpaidon"] == "2026-10-29"


# -- the segments job: time windows, and failures that do not block ------------------------------


def test_time_based_segments_are_refreshed_by_a_full_run_once_the_interval_passed(
    world: World,
) -> None:
    number = world.numbers[0]  # joined 2026-10-01: onboarding for 90 days
    first = world.activation.segments.run()
    assert first.full
    assert first.delta_saved
    assert "onboarding" in world.apsis.profile(number)["tags"]
    assert world.activation.store.get_state(FULL_RUN_NAME) == NOW.isoformat()
    world.activation.segments.run()  # our own writes come back once in the delta
    world.now[0] = NOW + timedelta(hours=23)
    within = world.activation.segments.run()
    assert not within.full
    assert within.evaluated == 0
    world.now[0] = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)  # 96 days after joining
    later = world.activation.segments.run()
    assert later.full
    assert later.evaluated == 6
    assert "onboarding" not in world.apsis.profile(number)["tags"]
    assert world.activation.store.get_state(FULL_RUN_NAME) == world.now[0].isoformat()
    after = world.activation.segments.run()
    assert not after.full


def test_the_full_run_interval_is_read_from_segments_yaml(world: World) -> None:
    hourly = CONFIG.model_copy(
        update={"segments": CONFIG.segments.model_copy(update={"full_run_hours": 1})}
    )
    activation = dataverse_activation(
        world.client, MAPPING, world.activation.platform, config=hourly, clock=lambda: world.now[0]
    )
    assert activation.segments.run().full
    world.now[0] = NOW + timedelta(minutes=30)
    assert not activation.segments.run().full
    world.now[0] = NOW + timedelta(minutes=61)
    assert activation.segments.run().full


def test_a_profile_failing_for_good_does_not_hold_the_delta_link_back(world: World) -> None:
    world.activation.segments.run()
    link = world.activation.store.get_state(DELTA_NAME)
    bad, good = world.numbers[1], world.numbers[2]
    world.set_member(bad, mbr_arrears=250)
    world.set_member(good, mbr_arrears=250)
    world.apsis.fail_next(400, path=f"/profiles/{bad}/")
    report = world.activation.segments.run()
    assert report.permanent == 1
    assert len(report.failed) == 1
    assert bad in report.failed[0]
    assert "400" in report.failed[0]
    assert report.delta_saved
    assert world.activation.store.get_state(DELTA_NAME) != link
    assert "at_risk" in world.apsis.profile(good)["tags"]
    assert "at_risk" not in world.apsis.profile(bad)["tags"]  # its state was not moved on


def test_a_passing_failure_holds_the_delta_link_back_until_it_went_through(world: World) -> None:
    world.activation.segments.run()
    world.activation.segments.run()
    link = world.activation.store.get_state(DELTA_NAME)
    number = world.numbers[1]
    world.set_member(number, mbr_arrears=250)
    world.apsis.fail_next(503, path=f"/profiles/{number}/")
    report = world.activation.segments.run()
    assert report.failed
    assert report.permanent == 0
    assert not report.delta_saved
    assert world.activation.store.get_state(DELTA_NAME) == link
    retry = world.activation.segments.run()
    assert retry.pushed == 1
    assert retry.delta_saved
    assert "at_risk" in world.apsis.profile(number)["tags"]


def test_a_diff_on_a_known_profile_sends_no_create(world: World) -> None:
    world.activation.segments.run()
    creates = world.apsis.requests["POST profiles"]
    world.set_member(world.numbers[1], mbr_arrears=250)
    assert world.activation.segments.run().pushed == 1
    assert world.apsis.requests["POST profiles"] == creates


def test_a_profile_deleted_in_apsis_is_created_again_and_then_pushed_in_full(
    world: World,
) -> None:
    number = world.numbers[1]
    world.activation.segments.run()
    world.apsis.forget_profile(number)
    world.set_member(number, mbr_arrears=250)
    report = world.activation.segments.run()
    assert report.pushed == 1
    assert not report.failed
    assert "at_risk" in world.apsis.profile(number)["tags"]
    assert not state_of(world, number)  # APSIS holds only that diff: push everything next
    world.activation.segments.run()
    profile = world.apsis.profile(number)
    assert set(profile["attributes"]) >= {"engagement_score"}
    assert "onboarding" in profile["tags"]
    assert "at_risk" in profile["tags"]
    assert state_of(world, number)


# -- reminders record the profile they create ---------------------------------------------------


def test_a_reminder_that_creates_the_profile_records_it_so_a_withdrawal_erases_it(
    world: World,
) -> None:
    number = world.numbers[5]
    world.set_member(number, mbr_paymentmethod=100000001, mbr_paidthrough="2026-12-02")
    assert world.apsis.profile(number) is None
    assert world.activation.reminders.run().sent == {"upcoming_payment": 1}
    assert world.apsis.profile(number)["attributes"]  # created with its attributes
    assert state_of(world, number)
    world.set_member(number, mbr_marketingconsent=False)
    report = world.activation.segments.run()
    assert report.erased == 1
    assert world.apsis.profile(number) is None


def test_a_reminder_to_a_known_profile_sends_only_its_event(world: World) -> None:
    number = world.numbers[5]
    world.set_member(number, mbr_paymentmethod=100000001, mbr_paidthrough="2026-12-02")
    world.activation.segments.run()
    before = Counter(world.apsis.requests)
    assert world.activation.reminders.run().sent == {"upcoming_payment": 1}
    sent = Counter(world.apsis.requests) - before
    assert sent["POST events"] == 1
    assert sent["POST profiles"] == 0
    assert sent["PATCH attributes"] == 0


# -- personal journeys: the member's facts and related tables ---------------------------------

STUDENT = 100000001  # member_type choice (mappings/dataverse.yaml)


def employ(world: World, number: str, name: str, sni: str) -> None:
    """The member works at a new account (the standard parentcustomerid lookup)."""
    created = world.client.rows.create("accounts", {"name": name, "sic": sni})  # its OData-EntityId
    account = str(created).rsplit("(", 1)[1].rstrip(")")
    world.set_member(number, **{"parentcustomerid_account@odata.bind": f"/accounts({account})"})


def test_the_welcome_carries_the_members_facts_related_values_and_personal_text(
    world: World,
) -> None:
    number = world.numbers[0]
    employ(world, number, "Sjukhuset", "86.101")
    world.set_member(number, mbr_membertype=STUDENT)

    world.pipeline().apply([paid(number)])

    (welcome,) = world.apsis.events("welcome")
    data = welcome.data
    assert data["industry"] == "86.101"
    assert data["member_type"] == "student"
    assert data["age_band"] in {"18-25", "26-35", "36-50", "51-65", "66+"}
    assert data["text"].startswith("Välkommen som studentmedlem")
    assert data["method"] == "swish"
    # The personnummer the age band comes from goes nowhere.
    assert not any("19" in str(v) and len(str(v)) >= 10 for v in data.values())


def test_a_member_without_an_employer_gets_a_welcome_without_an_industry(world: World) -> None:
    world.pipeline().apply([paid(world.numbers[1])])
    (welcome,) = world.apsis.events("welcome")
    assert "industry" not in welcome.data
    assert welcome.data["text"]


def test_related_rows_are_read_by_id_lists_or_whole_tables_in_few_requests(world: World) -> None:
    for n, number in enumerate(world.numbers):
        employ(world, number, f"Arbetsplats {n}", f"85.{n:03d}")
    world.client.rows.create("accounts", {"name": "Ingen medlem här", "sic": "01.110"})
    rows = list(world.activation.store.members(world.numbers, ["_parentcustomerid_value"]).values())
    wanted = [f"85.{n:03d}" for n in range(len(world.numbers))]

    def industries(keys_per_query: int) -> tuple[list[str], int]:
        world.client.transport.settings = world.client.settings.model_copy(
            update={"keys_per_query": keys_per_query}
        )
        (employer,) = [r for r in reads(MAPPING, rows, NOW.date()) if r.name == "employer"]
        before = world.sandbox.requests
        found = world.activation.store.related_rows([employer])
        spent = world.sandbox.requests - before
        values = assemble(MAPPING, rows, found, NOW.date())
        return sorted(v["employer.industry"] for v in values.values()), spent

    # Six employers: In queries of 2 ids (3 requests); of 1 id they would be 6, so the whole
    # account table is read in one request and the account nobody works at is left out.
    assert industries(2) == (wanted, 3)
    assert industries(1) == (wanted, 1)


def test_optional_tables_the_environment_lacks_give_no_values_and_are_warned_of_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    rows = list(world.activation.store.members(world.numbers, ["_parentcustomerid_value"]).values())
    with caplog.at_level("WARNING", logger="dynamics_bridge.activation"):
        first = world.activation.segments.related(rows, NOW.date())
        again = world.activation.segments.related(rows, NOW.date())
    assert first == again == {str(r["contactid"]): {} for r in rows}  # no counts of 0 either
    warned = [r.getMessage() for r in caplog.records if "not in the environment" in r.getMessage()]
    optional = sorted(n for n, t in MAPPING.related.items() if t.optional)
    assert sorted(m.split()[2] for m in warned) == optional
