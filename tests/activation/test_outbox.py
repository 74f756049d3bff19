"""The trigger outbox, specified against the in-memory store and platform (no sockets).

A payment's triggers are written with it, sent once after the batch, and what a crash or an
outage leaves behind is swept: never lost, never sent twice without knowing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dynamics_bridge.activation.service import Activation
from dynamics_bridge.activation.triggers import decode_payload
from dynamics_bridge.errors import AmbiguousError, InputError, PermanentError, TransientError
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    Outcome,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.pipeline import EventOutcome
from dynamics_bridge.settings import ActivationSettings
from tests.activation.conftest import NOW, Clock
from tests.activation.fakes import FakeActivationStore

STATE = "mbr_marketingstate"


def paid(
    number: str,
    n: int = 1,
    *,
    first: bool = True,
    kind: EventKind = EventKind.PAYMENT_SUCCEEDED,
    replayed: bool = False,
    days_ago: float = 1,
) -> EventOutcome:
    """An applied payment as the pipeline reports it (``first``: the member had none before)."""
    event = PaymentEvent(
        event_id=make_event_id(Source.SWISH, number, str(n), kind.value),
        source=Source.SWISH,
        kind=kind,
        member_ref=MemberRef(MemberRefKind.MEMBER_NUMBER, number),
        amount_minor=25000,
        currency="SEK",
        occurred_at=NOW - timedelta(days=days_ago) + timedelta(minutes=n),
        provider_ref=f"PAY-{number}-{n}",
        reason_code="RF07" if kind is EventKind.PAYMENT_FAILED else None,
        reason_text=None,
        origin="test",
    )
    day = event.occurred_at.date().isoformat()
    changes = {"mbr_lastpaidon": (None if first else "2026-01-01", day)}
    return EventOutcome(
        event, Outcome.APPLIED, member_key=number, changes=changes, replayed=replayed
    )


def apply(activation: Activation, store: FakeActivationStore, *outcomes: EventOutcome):
    """The pipeline's part: each payment row written with the hook's outbox columns, then the
    hook called once the batch is written."""
    for o in outcomes:
        assert o.member_key is not None
        extras = activation.triggers.payment_extras(o)
        store.write_payment(
            o.event.event_id,
            o.member_key,
            extras,
            kind=o.event.kind.value,
            occurred=o.event.occurred_at,
        )
    return activation.triggers.after_apply(list(outcomes))


def crash_after_write(activation: Activation, store: FakeActivationStore, *outcomes):
    """The process dies once the payment rows are written, before anything is sent."""
    for o in outcomes:
        extras = activation.triggers.payment_extras(o)
        store.write_payment(o.event.event_id, o.member_key, extras, occurred=o.event.occurred_at)


def state_of(store: FakeActivationStore, event_id: str) -> str | None:
    return store.payments[event_id].state


# -- written with the payment, sent once ------------------------------------------------------


def test_a_payments_triggers_are_sent_once_after_the_batch_and_never_again(
    activation, store, platform
) -> None:
    first = paid("1001")
    report = apply(activation, store, first)
    assert report.sent == {"payment_confirmed": 1, "welcome": 1}
    assert platform.sent() == {
        ("payment_confirmed", first.event.event_id): 1,
        ("welcome", first.event.event_id): 1,
    }
    assert state_of(store, first.event.event_id) == "sent"
    # The same batch reported again (a redelivered message) and the sweep send nothing more.
    assert activation.triggers.after_apply([first]).claimed == 0
    assert activation.triggers.sweep().claimed == 0
    assert sum(platform.sent().values()) == 2


def test_a_first_push_creates_the_profile_and_records_what_apsis_holds(
    activation, store, platform
) -> None:
    apply(activation, store, paid("1001"))
    assert platform.profiles["1001"]["attributes"]["member_number"] == "1001"
    assert store.rows["1001"][STATE]  # pushed: a later exclusion knows to erase it
    assert store.rows["1001"]["mbr_firstpaidon"] == (NOW - timedelta(days=1)).date().isoformat()


def test_a_later_payment_sends_no_welcome(activation, store, platform) -> None:
    apply(activation, store, paid("1001"))
    second = paid("1001", 2, first=False)
    assert apply(activation, store, second).sent == {"payment_confirmed": 1}


def test_of_two_first_payments_in_one_batch_only_the_earlier_welcomes(
    activation, store, platform
) -> None:
    early, later = paid("1001", 1), paid("1001", 2)
    report = apply(activation, store, later, early)
    assert platform.sent()[("welcome", early.event.event_id)] == 1
    assert ("welcome", later.event.event_id) not in platform.sent()
    assert report.withdrawn == 1


def test_a_member_without_consent_gets_no_triggers_and_a_pushed_one_is_erased(
    activation, store, platform
) -> None:
    store.rows["1002"]["mbr_marketingconsent"] = False
    report = apply(activation, store, paid("1002"))
    assert (report.skipped, platform.events) == (2, [])
    apply(activation, store, paid("1001"))
    store.rows["1001"]["mbr_marketingconsent"] = False
    report = apply(activation, store, paid("1001", 2, first=False))
    assert report.erased == 1
    assert platform.erased == ["1001"]
    assert store.rows["1001"][STATE] is None  # cleared once the erase went through


def test_an_unreadable_payload_is_settled_failed_not_sent(activation, store, platform) -> None:
    crash_after_write(activation, store, paid("1001"))
    (event_id,) = store.payments
    store.payments[event_id].payload = "{not json"
    activation.triggers.sweep()
    assert state_of(store, event_id) == "failed"
    assert platform.events == []
    assert activation.triggers.sweep().claimed == 0


# -- held, late --------------------------------------------------------------------------------


def test_a_welcome_is_held_and_goes_with_the_first_sweep_after_the_hold(
    activation, store, platform, clock: Clock
) -> None:
    activation.triggers.options = ActivationSettings(first_payment_hold_minutes=30)
    first = paid("1001")
    assert apply(activation, store, first).sent == {"payment_confirmed": 1}
    assert activation.triggers.sweep().claimed == 0  # still held: left unclaimed
    clock.advance(minutes=31)
    assert activation.triggers.sweep().sent == {"welcome": 1}
    assert state_of(store, first.event.event_id) == "sent"


def test_a_late_payment_arriving_during_the_hold_takes_the_welcome_over(
    activation, store, platform, clock: Clock
) -> None:
    activation.triggers.options = ActivationSettings(first_payment_hold_minutes=30)
    later = paid("1001", 2)
    apply(activation, store, later)
    early = paid("1001", 1)  # came in after it, happened before it
    apply(activation, store, early)
    clock.advance(minutes=31)
    activation.triggers.sweep()
    welcomes = [e.id for _, e in platform.events if e.type == "welcome"]
    assert welcomes == [early.event.event_id]


def test_a_held_earlier_payment_in_another_row_keeps_the_welcome_from_a_later_one(
    activation, store, platform, clock: Clock
) -> None:
    activation.triggers.options = ActivationSettings(first_payment_hold_minutes=30)
    later = paid("1001", 2)
    apply(activation, store, later)
    clock.advance(minutes=20)
    early = paid("1001", 1)  # happened first, arrived 20 minutes after the later one
    apply(activation, store, early)
    clock.advance(minutes=11)  # the later one's hold is over, the earlier one's is not
    activation.triggers.sweep()
    assert [e.id for _, e in platform.events if e.type == "welcome"] == []
    clock.advance(minutes=20)
    activation.triggers.sweep()
    welcomes = [e.id for _, e in platform.events if e.type == "welcome"]
    assert welcomes == [early.event.event_id]


def test_a_replayed_event_older_than_the_window_keeps_its_triggers_late_never_sent(
    activation, store, platform
) -> None:
    activation.triggers.options = ActivationSettings(late_trigger_days=7)
    old = paid("1001", days_ago=30, replayed=True)
    report = apply(activation, store, old)
    assert report.late == 2
    assert state_of(store, old.event.event_id) == "skipped"
    assert activation.triggers.sweep().claimed == 0
    assert platform.events == []


# -- outages, crashes, lost answers ------------------------------------------------------------


def test_a_failure_that_may_pass_stays_pending_and_the_sweep_sends_it_once(
    activation, store, platform
) -> None:
    platform.fail["1001"] = TransientError("503")
    event = paid("1001")
    report = apply(activation, store, event)
    assert report.failed
    assert state_of(store, event.event.event_id) == "pending"
    del platform.fail["1001"]
    assert activation.triggers.sweep().sent == {"payment_confirmed": 1, "welcome": 1}
    assert activation.triggers.sweep().claimed == 0
    assert sum(platform.sent().values()) == 2


def test_a_permanent_failure_is_settled_failed_and_not_retried(activation, store, platform) -> None:
    platform.fail["1001"] = PermanentError("400 bad attribute")
    event = paid("1001")
    apply(activation, store, event)
    assert state_of(store, event.event.event_id) == "failed"
    del platform.fail["1001"]
    assert activation.triggers.sweep().claimed == 0


def test_a_crash_after_the_write_leaves_the_triggers_for_the_sweep(
    activation, store, platform
) -> None:
    event = paid("1001")
    crash_after_write(activation, store, event)
    assert platform.events == []
    assert activation.triggers.sweep().sent == {"payment_confirmed": 1, "welcome": 1}
    assert activation.triggers.sweep().claimed == 0


def test_of_two_senders_only_one_wins_a_row(activation, store, platform) -> None:
    event = paid("1001")
    crash_after_write(activation, store, event)
    rows = store.outbox_rows([event.event.event_id])
    assert len(store.claim(rows, NOW)) == 1
    assert store.claim(rows, NOW) == []  # the ETag moved on
    # The sender holding it is alive (within the lease): the sweep leaves it alone.
    assert activation.triggers.sweep().claimed == 0


def test_a_claim_older_than_the_lease_becomes_unconfirmed_never_sent_blindly(
    activation, store, platform, clock: Clock
) -> None:
    event = paid("1001")
    crash_after_write(activation, store, event)
    store.claim(store.outbox_rows([event.event.event_id]), NOW)  # then the sender dies
    clock.advance(minutes=16)
    report = activation.triggers.sweep()
    assert report.unconfirmed == 2
    assert platform.events == []
    assert state_of(store, event.event.event_id) == "unconfirmed"
    (listed,) = activation.triggers.unconfirmed()
    assert (listed.event_id, listed.member) == (event.event.event_id, "1001")
    clock.advance(minutes=16)
    assert activation.triggers.sweep().claimed == 0  # without the read-back: the admin's


def test_an_admin_sends_an_unconfirmed_row_again_once_or_drops_it(
    activation, store, platform, clock: Clock
) -> None:
    sent, dropped = paid("1001"), paid("1002")
    crash_after_write(activation, store, sent, dropped)
    store.claim(store.outbox_rows([sent.event.event_id, dropped.event.event_id]), NOW)
    clock.advance(minutes=16)
    activation.triggers.sweep()
    report = activation.triggers.resolve(sent.event.event_id, send=True)
    assert report.sent == {"payment_confirmed": 1, "welcome": 1}
    activation.triggers.resolve(dropped.event.event_id, send=False)
    assert state_of(store, dropped.event.event_id) == "dropped"
    assert activation.triggers.unconfirmed() == []
    assert {k for k, _ in platform.events} == {"1001"}
    with pytest.raises(InputError):
        activation.triggers.resolve(sent.event.event_id, send=True)


@pytest.mark.parametrize("stored", [True, False])
def test_a_lost_answer_is_read_back_and_only_what_apsis_lacks_is_sent(
    activation, store, platform, clock: Clock, stored: bool
) -> None:
    activation.triggers.options = ActivationSettings(first_payment_hold_minutes=0, readback=True)
    event = paid("1001")
    if stored:
        platform.lose_answer.add("1001")  # APSIS stored the events, the answer was lost
    else:
        platform.fail["1001"] = AmbiguousError("timeout before APSIS stored anything")
    report = apply(activation, store, event)
    assert report.unconfirmed == 2
    assert state_of(store, event.event.event_id) == "unconfirmed"
    platform.fail.clear()
    clock.advance(minutes=16)
    report = activation.triggers.sweep()
    assert (report.confirmed, report.resent) == ((2, 0) if stored else (0, 2))
    assert platform.sent() == {
        ("payment_confirmed", event.event.event_id): 1,
        ("welcome", event.event.event_id): 1,
    }
    assert state_of(store, event.event.event_id) == "sent"


def test_when_the_read_back_fails_the_triggers_stay_unconfirmed(
    activation, store, platform, clock: Clock
) -> None:
    activation.triggers.options = ActivationSettings(first_payment_hold_minutes=0, readback=True)
    platform.lose_answer.add("1001")
    event = paid("1001")
    apply(activation, store, event)
    platform.readback_error = TransientError("export failed")
    clock.advance(minutes=16)
    report = activation.triggers.sweep()
    assert report.readback == "TransientError: export failed"
    assert state_of(store, event.event.event_id) == "unconfirmed"
    assert sum(platform.sent().values()) == 2  # nothing sent twice


def test_the_outbox_age_counts_pending_and_unconfirmed_rows(
    activation, store, platform, clock: Clock
) -> None:
    platform.fail["1001"] = TransientError("503")
    apply(activation, store, paid("1001"))
    age = activation.triggers.age()
    assert age["pending"]["count"] == 1
    assert age["pending"]["oldest_seconds"] == round(timedelta(days=1).total_seconds()) - 60
    assert age["unconfirmed"] == {"count": 0, "oldest_seconds": None}


def test_the_payload_keeps_each_triggers_state(activation, store, platform) -> None:
    platform.fail["1001"] = PermanentError("400")
    event = paid("1001")
    apply(activation, store, event)
    payload = decode_payload(store.payments[event.event.event_id].payload or "")
    assert {t.name: t.state for t in payload.triggers} == {
        "payment_confirmed": "failed",
        "welcome": "failed",
    }


# -- counted by type, for the run history -------------------------------------------------------


def test_skipped_and_failed_triggers_are_counted_by_type(activation, store, platform) -> None:
    store.rows["1002"]["mbr_marketingconsent"] = False
    skipped = apply(activation, store, paid("1002"))
    assert skipped.skipped_by == {"payment_confirmed": 1, "welcome": 1}
    assert sum(skipped.skipped_by.values()) == skipped.skipped
    platform.fail["1001"] = TransientError("503")
    failed = apply(activation, store, paid("1001"))
    assert failed.failed_by == {"payment_confirmed": 1, "welcome": 1}
    assert failed.to_json()["failed_by"] == {"payment_confirmed": 1, "welcome": 1}
