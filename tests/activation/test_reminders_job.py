"""The reminders job, specified against the in-memory store and platform (no sockets).

Each reminder due today goes once per period: claimed on the member row (ETag) before it is
sent, the claim released when the send fails.
"""

from __future__ import annotations

from datetime import timedelta

from dynamics_bridge.activation.config import Reminder
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.errors import TransientError
from dynamics_bridge.settings import ActivationSettings
from tests.activation.conftest import NOW, Clock

AUTOGIRO, SWISH = 100000001, 100000000
TODAY = NOW.date()


def due_soon(store, key: str = "1001", days: int = 7, method: int = AUTOGIRO) -> None:
    """A member whose paid-through date is ``days`` away (upcoming_payment: 7 days before)."""
    paid_through = (TODAY + timedelta(days=days)).isoformat()
    store.update_members(
        [(key, {"mbr_paidthrough": paid_through, "mbr_paymentmethod": method}, "*")]
    )


def test_a_due_reminder_is_sent_once_per_period(activation, store, platform) -> None:
    due_soon(store)
    first = activation.reminders.run()
    assert first.sent == {"upcoming_payment": 1}
    ((key, event),) = platform.events
    assert key == "1001"
    assert event.id == f"reminder:upcoming_payment:1001:{TODAY + timedelta(days=7)}-7"
    second = activation.reminders.run()
    assert (second.sent, second.already_sent) == ({}, 1)
    assert len(platform.events) == 1


def test_the_next_period_is_reminded_again(activation, store, platform, clock: Clock) -> None:
    due_soon(store)
    activation.reminders.run()
    clock.advance(days=31)  # paid for another month: the next due date is 7 days away again
    paid_through = (clock.now.date() + timedelta(days=7)).isoformat()
    store.update_members([("1001", {"mbr_paidthrough": paid_through}, "*")])
    assert activation.reminders.run().sent == {"upcoming_payment": 1}
    assert len(platform.events) == 2


def test_who_is_not_due_or_does_not_match_its_rule_gets_nothing(
    activation, store, platform
) -> None:
    due_soon(store, "1001", days=20)  # not within 7 days
    due_soon(store, "1002", method=SWISH)  # upcoming_payment: autogiro and e-faktura only
    report = activation.reminders.run()
    assert "upcoming_payment" not in report.sent
    assert [k for k, e in platform.events if e.type == "payment_reminder"] == []


def test_a_member_without_consent_is_counted_and_not_reminded(activation, store, platform) -> None:
    due_soon(store)
    store.update_members([("1001", {"mbr_marketingconsent": False}, "*")])
    report = activation.reminders.run()
    assert (report.excluded, report.sent, platform.events) == (1, {}, [])


def test_a_failed_send_releases_the_claim_so_the_next_run_sends_it(
    activation, store, platform
) -> None:
    due_soon(store)
    platform.fail["1001"] = TransientError("503")
    assert activation.reminders.run().failed
    assert not store.rows["1001"].get("mbr_reminders")  # released
    del platform.fail["1001"]
    assert activation.reminders.run().sent == {"upcoming_payment": 1}
    assert len(platform.events) == 1


def test_a_member_changed_meanwhile_is_not_reminded_in_this_run(
    activation, store, platform
) -> None:
    due_soon(store)
    store.fail_update["1001"] = TransientError("412 ETag moved")  # the claim does not hold
    report = activation.reminders.run()
    assert report.failed
    assert platform.events == []
    assert activation.reminders.run().sent == {"upcoming_payment": 1}


def test_a_reminder_creates_the_profile_and_records_it_as_pushed(
    activation, store, platform
) -> None:
    due_soon(store)
    activation.reminders.run()
    assert platform.profiles["1001"]["attributes"]["member_number"] == "1001"
    assert store.rows["1001"]["mbr_marketingstate"]


def test_a_dry_run_lists_who_is_due_and_claims_nothing(activation, store, platform) -> None:
    due_soon(store)
    report = activation.reminders.run(dry_run=True)
    assert [(i.name, i.member_key) for i in report.items] == [("upcoming_payment", "1001")]
    assert platform.events == []
    assert not store.rows["1001"].get("mbr_reminders")


def test_a_dry_run_says_what_it_would_send_by_reminder(activation, store) -> None:
    due_soon(store)
    summary = activation.reminders.run(dry_run=True).to_json()
    assert summary["would_send"] == {"upcoming_payment": 1}
    assert summary["sent"] == {}
    assert "would_send" not in activation.reminders.run().to_json()


def test_skipped_and_failed_reminders_are_counted_by_reminder(activation, store, platform) -> None:
    due_soon(store)
    platform.fail["1001"] = TransientError("503")
    assert activation.reminders.run().failed_by == {"upcoming_payment": 1}
    del platform.fail["1001"]
    activation.reminders.run()
    assert activation.reminders.run().skipped_by == {"upcoming_payment": 1}  # sent this period


def test_progress_is_told_each_reminder_looked_for_then_the_sending(activation, store) -> None:
    due_soon(store)
    calls: list[tuple[int, int]] = []
    activation.reminders.run(progress=lambda done, total: calls.append((done, total)))
    steps = len(activation.config.segments.reminders) + 1
    assert calls == [(n, steps) for n in range(steps + 1)]


def test_a_reminder_rule_may_name_a_derived_fact(mapping, config, store, platform, clock) -> None:
    # An upcoming-payment text only for members 26 and over: the age comes from the
    # personnummer (governmentid), read with the member and never sent anywhere.
    upcoming = config.segments.reminders["upcoming_payment"]
    grown_up = Reminder.model_validate(
        {**upcoming.model_dump(by_alias=True), "when": {"column": "age", "ge": 26}}
    )
    segments = config.segments.model_copy(update={"reminders": {"upcoming_payment": grown_up}})
    activation = Activation(
        store,
        mapping,
        config.model_copy(update={"segments": segments}),
        platform,
        clock=clock,
        options=ActivationSettings(first_payment_hold_minutes=0),
    )
    due_soon(store, "1001")
    due_soon(store, "1002")
    store.update_members(
        [
            ("1001", {"governmentid": "19960415-1234"}, "*"),
            ("1002", {"governmentid": "20100101-0006"}, "*"),
        ]
    )
    report = activation.reminders.run()
    assert report.sent == {"upcoming_payment": 1}
    assert [key for key, _ in platform.events] == ["1001"]
    assert "19960415" not in repr(platform.events)
