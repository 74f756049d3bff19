"""The run recorder: one RunRecord per unit of work, written once at its end, with counts,
masked errors and detail; the store is a courtesy that never fails or repeats the work."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from dynamics_bridge.app import runs
from dynamics_bridge.app.runs import RunRecorder
from dynamics_bridge.app.sync import SyncReport
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import ConfigError, TransientError
from dynamics_bridge.model import EventKind, Outcome
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import MAX_RUN_ERRORS
from dynamics_bridge.pipeline import EventOutcome
from dynamics_bridge.settings import load_settings
from tests.test_pipeline import ev

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
PAID = EventKind.PAYMENT_SUCCEEDED.value


class Ticks:
    """A stopwatch that moves only when told to."""

    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


class BrokenStore(InMemoryOpsStore):
    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    def record_run(self, run):  # type: ignore[no-untyped-def]
        self.tries += 1
        raise TransientError("table runs: 503 Server Busy")


def all_runs(store: InMemoryOpsStore):
    return list(store.runs(datetime(2000, 1, 1, tzinfo=UTC)))


class TestRecorder:
    def test_a_run_is_written_once_with_its_counts_detail_and_duration(self) -> None:
        store, ticks = InMemoryOpsStore(), Ticks()
        with RunRecorder("timer", "segments", store, clock=lambda: T0, timer=ticks) as run:
            run.count("segment/late-payers/size", 3)
            run.count("segment/late-payers/size", 2)
            run.count("segment/new/added", 0)  # nothing counted, no key
            run.detail["past_due"] = "yes"
            ticks.now += 1.25
        run.finish()  # a second finish writes nothing more
        (record,) = all_runs(store)
        assert (record.kind, record.name, record.started_at) == ("timer", "segments", T0)
        assert record.counts == {"segment/late-payers/size": 5}
        assert record.detail == {"past_due": "yes"}
        assert record.duration_ms == 1250
        assert record.ok

    def test_errors_are_masked_and_kept_up_to_the_limit(self) -> None:
        store = InMemoryOpsStore()
        with RunRecorder("queue", "sync", store) as run:
            run.error("unmatched: no member with personnummer 19811218-9876")
            for n in range(MAX_RUN_ERRORS + 4):
                run.error(f"failed: {n}")
        (record,) = all_runs(store)
        assert len(record.errors) == MAX_RUN_ERRORS
        assert "19811218-9876" not in record.errors[0]
        assert record.errors[0].startswith("unmatched: no member with personnummer 19811218-")
        assert record.detail["errors_not_kept"] == "5"
        assert not record.ok

    def test_the_exception_that_ends_the_work_is_recorded_masked_and_raised(self) -> None:
        store = InMemoryOpsStore()
        with pytest.raises(RuntimeError), RunRecorder("timer", "refresh", store):
            raise RuntimeError("SPAR said no to 191212121212")
        (record,) = all_runs(store)
        assert record.errors == ("RuntimeError: SPAR said no to 19121212-****",)

    def test_a_store_that_fails_is_logged_and_neither_fails_nor_repeats_the_work(
        self, caplog
    ) -> None:
        store, done = BrokenStore(), []
        with RunRecorder("timer", "reminders", store) as run:
            done.append("sent")
            run.count("reminder/renewal/sent")
        assert done == ["sent"]
        assert store.tries == 1
        assert "run timer:reminders not recorded" in caplog.text
        assert run.record is not None
        assert run.record.counts == {"reminder/renewal/sent": 1}

    def test_a_failing_store_leaves_the_works_own_error_to_the_caller(self) -> None:
        with (
            pytest.raises(ValueError, match="the work's own"),
            RunRecorder("x", "y", BrokenStore()),
        ):
            raise ValueError("the work's own")

    def test_without_a_store_nothing_is_written_and_the_counts_still_add_up(self) -> None:
        with RunRecorder("file", "bgmax", None) as run:
            run.add_counts({"bgmax/payment.succeeded/queued": 3})
        assert run.finish().counts == {"bgmax/payment.succeeded/queued": 3}

    def test_a_wiring_whose_store_cannot_be_built_gives_none_and_says_why(
        self, monkeypatch, caplog
    ) -> None:
        services = Services(load_settings())

        def broken(self):  # type: ignore[no-untyped-def]
            raise ConfigError(["BRIDGE_OPS__CONNECTION_STRING: not a connection string"])

        monkeypatch.setattr(Services, "ops", property(broken))
        assert runs.store_of(services) is None
        assert "run history is off" in caplog.text


class TestQueueCounts:
    def test_written_events_count_as_their_outcome_and_poisoned_ones_as_theirs(self) -> None:
        report = SyncReport(
            messages=1,
            results=[
                EventOutcome(ev(1), Outcome.APPLIED),
                EventOutcome(ev(2), Outcome.DUPLICATE),
                EventOutcome(ev(3), Outcome.UNMATCHED, "no member"),
                EventOutcome(ev(4), Outcome.FAILED, "400", retryable=True),  # the last attempt
            ],
        )
        events = [ev(n) for n in (1, 2, 3, 4)]
        assert runs.queue_counts(report, events) == {
            f"swish/{PAID}/applied": 1,
            f"swish/{PAID}/duplicate": 1,
            f"swish/{PAID}/unmatched": 1,
            f"swish/{PAID}/failed": 1,
        }
        errors = runs.queue_errors(report, events)
        assert errors == [
            f"{ev(3).event_id}: unmatched: no member",
            f"{ev(4).event_id}: failed: 400",
        ]

    def test_a_message_left_for_redelivery_counts_what_is_not_written_as_retry(self) -> None:
        report = SyncReport(
            messages=1,
            left=1,
            results=[
                EventOutcome(ev(1), Outcome.APPLIED),
                EventOutcome(ev(2), Outcome.FAILED, "503", retryable=True),
                EventOutcome(ev(3), Outcome.UNMATCHED, "no member"),  # poisoned on a later try
            ],
        )
        counts = runs.queue_counts(report, [ev(1), ev(2), ev(3)])
        assert counts == {f"swish/{PAID}/applied": 1, f"swish/{PAID}/retry": 2}

    @pytest.mark.parametrize(("left", "word"), [(1, "retry"), (0, "failed")])
    def test_events_without_an_outcome_count_by_the_messages_fate(self, left, word) -> None:
        report = SyncReport(messages=1, left=left)  # the batch raised: no result per event
        events = [ev(1), ev(2, kind=EventKind.PAYMENT_FAILED)]
        assert runs.queue_counts(report, events) == {
            f"swish/{PAID}/{word}": 1,
            f"swish/{EventKind.PAYMENT_FAILED.value}/{word}": 1,
        }
        fate = "left for redelivery" if left else "poisoned with the message"
        assert runs.queue_errors(report, events) == [f"2 event(s) {fate}"]

    def test_an_undecodable_message_counts_as_one_failed_unknown_message(self) -> None:
        report = SyncReport(messages=1, outcomes=Counter({"undecodable": 1}))
        assert runs.queue_counts(report, []) == {"unknown/message/failed": 1}


class TestFileAndJobCounts:
    def test_a_receipt_states_the_payments_then_each_other_kind(self) -> None:
        totals = {
            "payment.succeeded": {"SEK": [3, 60000]},
            "payment.refunded": {"SEK": [1, 5000]},
            "mandate.approved": {"SEK": [2, 0]},
        }
        assert runs.receipt_text(totals) == (
            "3 payments, 600.00 SEK; 2 mandate.approved; 1 payment.refunded 50.00 SEK"
        )
        assert runs.file_counts("autogiro", totals) == {
            "autogiro/payment.succeeded/queued": 3,
            "autogiro/payment.refunded/queued": 1,
            "autogiro/mandate.approved/queued": 2,
        }

    def test_a_file_without_payments_says_so(self) -> None:
        assert runs.receipt_text({}) == "0 payments, 0.00 SEK"

    def test_segments_count_size_added_and_removed_by_segment(self) -> None:
        summary = {
            "segment_sizes": {"late-payers": 4, "new": 2},
            "added": {"late-payers": 1},
            "removed": {"new": 3},
            "pushed": 4,
        }
        assert runs.job_counts("segments", summary) == {
            "segment/late-payers/size": 4,
            "segment/new/size": 2,
            "segment/late-payers/added": 1,
            "segment/new/removed": 3,
        }

    def test_reminders_count_by_type_and_their_outbox_sweep_as_triggers(self) -> None:
        summary = {
            "sent": {"renewal": 2},
            "skipped_by": {"renewal": 1},
            "failed_by": {"payment_due": 1},
            "failed": ["profile 100001: 400"],
            "triggers": {"sent": {"welcome": 1}, "skipped_by": {"welcome": 2}, "failed": []},
        }
        assert runs.job_counts("reminders", summary) == {
            "reminder/renewal/sent": 2,
            "reminder/renewal/skipped": 1,
            "reminder/payment_due/failed": 1,
            "trigger/welcome/sent": 1,
            "trigger/welcome/skipped": 2,
        }
        assert list(runs.failures_of(summary)) == ["profile 100001: 400"]

    def test_the_refresh_counts_each_result(self) -> None:
        summary = {
            "statuses": {"active": 5, "deceased": 1},
            "updated": 3,
            "protected": 1,
            "erased_from_marketing": 1,
            "failed": ["member 1: timeout"],
        }
        assert runs.job_counts("address_refresh", summary) == {
            "address/active/count": 5,
            "address/deceased/count": 1,
            "address/updated/count": 3,
            "address/protected/count": 1,
            "address/erased/count": 1,
            "address/failed/count": 1,
        }

    def test_the_poison_job_counts_what_it_absorbed_and_what_waits(self) -> None:
        summary = {"absorbed": 7, "waiting": 30, "oldest_minutes": 12}
        assert runs.job_counts("poison", summary) == {
            "poison/absorbed/count": 7,
            "poison/waiting/size": 30,
        }

    def test_a_job_not_listed_counts_the_whole_numbers_of_its_summary(self) -> None:
        summary = {"moved": 7, "dry_run": False, "note": "x"}
        assert runs.job_counts("other", summary) == {"other/moved/count": 7}
