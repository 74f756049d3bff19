"""The segments job, specified against the in-memory store and platform (no sockets).

Members changed since the last run are scored and segmented; only differences against what
APSIS holds are pushed; the delta link moves only when nothing that may pass held a member back.
"""

from __future__ import annotations

from datetime import timedelta

from dynamics_bridge.activation.config import Attribute, SegmentRule
from dynamics_bridge.activation.segments_job import DELTA_NAME, FULL_RUN_NAME
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.errors import PermanentError, TransientError
from dynamics_bridge.settings import ActivationSettings
from tests.activation.conftest import ENDED, NOW, Clock
from tests.activation.test_related import related_mapping

AUTOGIRO = 100000001
STATE = "mbr_marketingstate"


def test_the_first_run_is_full_pushes_each_consenting_member_and_keeps_the_link(
    activation, store, platform
) -> None:
    report = activation.segments.run()
    assert (report.full, report.evaluated, report.pushed) == (True, 3, 3)
    assert "onboarding" in platform.profiles["1001"]["tags"]
    assert store.rows["1001"][STATE]  # what APSIS holds now
    assert store.rows["1001"]["mbr_segments"]
    assert isinstance(store.rows["1001"]["mbr_engagementscore"], int)
    assert report.delta_saved
    assert store.get_state(DELTA_NAME)
    assert store.get_state(FULL_RUN_NAME) == NOW.isoformat()


def test_a_second_run_pushes_nothing_and_a_third_reads_nothing(activation, platform) -> None:
    activation.segments.run()
    calls = platform.calls["apply_changes"]
    second = activation.segments.run()  # our own writes come back once in the delta
    assert (second.full, second.pushed, second.unchanged) == (False, 0, 3)
    assert activation.segments.run().evaluated == 0
    assert platform.calls["apply_changes"] == calls


def test_only_the_member_who_changed_is_pushed_with_the_tags_that_differ(
    activation, store, platform
) -> None:
    activation.segments.run()
    activation.segments.run()
    store.update_members([("1002", {"mbr_paymentmethod": AUTOGIRO}, "*")])
    report = activation.segments.run()
    assert (report.evaluated, report.pushed) == (1, 1)
    (diff,) = report.diffs
    assert diff.member == "1002"
    assert list(diff.plan.tags_add) == ["pays_autogiro"]
    assert "pays_autogiro" in platform.profiles["1002"]["tags"]


def test_a_member_who_withdraws_consent_is_erased_and_stays_out(
    activation, store, platform
) -> None:
    activation.segments.run()
    store.update_members([("1003", {"mbr_marketingconsent": False}, "*")])
    report = activation.segments.run()
    assert (report.erased, report.excluded) == (1, 1)
    assert "1003" not in platform.profiles
    assert store.rows["1003"][STATE] is None
    store.update_members([("1003", {"mbr_arrears": 250}, "*")])
    assert activation.segments.run().erased == 0


def test_a_member_never_pushed_without_consent_is_not_created(activation, store, platform) -> None:
    store.update_members([("1001", {"mbr_marketingconsent": False}, "*")])
    report = activation.segments.run()
    assert report.excluded == 1
    assert "1001" not in platform.profiles
    assert platform.erased == []


def test_a_dry_run_sends_and_writes_nothing(activation, store, platform) -> None:
    report = activation.segments.run(dry_run=True)
    assert len(report.diffs) == 3
    assert platform.profiles == {}
    assert store.get_state(DELTA_NAME) is None
    assert STATE not in store.rows["1001"]


def test_an_outage_holds_the_delta_link_so_the_member_is_read_again(
    activation, store, platform
) -> None:
    activation.segments.run()
    activation.segments.run()
    link = store.get_state(DELTA_NAME)
    store.update_members([("1002", {"mbr_paymentmethod": AUTOGIRO}, "*")])
    platform.fail["1002"] = TransientError("503")
    report = activation.segments.run()
    assert report.failed
    assert not report.delta_saved
    assert store.get_state(DELTA_NAME) == link
    del platform.fail["1002"]
    retry = activation.segments.run()
    assert retry.pushed == 1
    assert "pays_autogiro" in platform.profiles["1002"]["tags"]


def test_a_permanent_failure_does_not_hold_the_others_back(activation, store, platform) -> None:
    activation.segments.run()
    activation.segments.run()
    link = store.get_state(DELTA_NAME)
    store.update_members([("1002", {"mbr_paymentmethod": AUTOGIRO}, "*")])
    platform.fail["1002"] = PermanentError("400 attribute")
    report = activation.segments.run()
    assert report.permanent == 1
    assert report.delta_saved
    assert store.get_state(DELTA_NAME) != link


def test_a_failed_member_write_holds_the_link_too(activation, store, platform) -> None:
    store.fail_update["1001"] = TransientError("Dataverse 503")
    report = activation.segments.run()
    assert any(f.startswith("member 1001") for f in report.failed)
    assert store.get_state(DELTA_NAME) is None


def test_a_full_run_comes_again_once_full_run_hours_passed(
    activation, store, platform, config, clock: Clock
) -> None:
    activation.segments.run()
    activation.segments.run()
    clock.advance(hours=config.segments.full_run_hours - 1)
    assert not activation.segments.run().full
    clock.now = NOW + timedelta(days=96)  # joined 2026-10-01: onboarding is over
    later = activation.segments.run()
    assert (later.full, later.evaluated) == (True, 3)
    assert "onboarding" not in platform.profiles["1001"]["tags"]
    assert store.get_state(FULL_RUN_NAME) == clock.now.isoformat()


def test_an_expired_delta_link_is_a_full_read(activation, store) -> None:
    store.set_state(DELTA_NAME, "delta-expired")
    store.set_state(FULL_RUN_NAME, NOW.isoformat())
    report = activation.segments.run()
    assert (report.resynced, report.full, report.evaluated) == (True, True, 3)


def test_a_profile_apsis_lost_is_created_again_and_pushed_in_full_next_time(
    activation, store, platform
) -> None:
    activation.segments.run()
    activation.segments.run()
    del platform.profiles["1001"]  # deleted in APSIS
    store.update_members([("1001", {"mbr_membershipstatus": ENDED}, "*")])
    activation.segments.run()
    assert store.rows["1001"][STATE] is None  # cleared: APSIS holds only that change
    activation.segments.run()
    assert platform.profiles["1001"]["attributes"]["member_number"] == "1001"


def test_a_dry_run_counts_what_the_real_run_then_pushes_and_erases(activation, store) -> None:
    dry = activation.segments.run(dry_run=True)
    real = activation.segments.run()
    assert (dry.would_push, dry.would_erase, dry.pushed) == (real.pushed, 0, 0)
    assert dry.to_json()["would_push"] == real.pushed == 3
    assert "would_push" not in real.to_json()
    store.update_members([("1003", {"mbr_marketingconsent": False}, "*")])
    dry = activation.segments.run(dry_run=True)
    assert (dry.would_push, dry.would_erase) == (0, 1)
    assert activation.segments.run().erased == 1


def test_segments_added_and_removed_are_counted_by_segment(activation, store) -> None:
    first = activation.segments.run()
    assert first.added == first.segment_sizes  # every member's segments are new to APSIS
    assert first.removed == {}
    activation.segments.run()
    store.update_members([("1002", {"mbr_paymentmethod": AUTOGIRO}, "*")])
    report = activation.segments.run()
    segment = {tag: name for name, (_, tag) in activation.members.evaluator.rules.items()}
    assert report.added == {segment["pays_autogiro"]: 1}


def test_progress_grows_to_the_members_evaluated(activation) -> None:
    calls: list[tuple[int, int]] = []
    activation.segments.run(progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 3)
    assert calls[-1] == (3, 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_rules_and_attributes_read_related_tables_in_one_bulk_read(
    store, mapping, config, platform, clock
) -> None:
    related = related_mapping(mapping)
    rule = SegmentRule.model_validate(
        {"rule": {"column": "employer.industry", "in": ["86.101", "86.102"]}}
    )
    attribute = Attribute(discriminator="attr-industry", column="employer.industry")
    configured = config.model_copy(
        update={
            "segments": config.segments.model_copy(
                update={"segments": {**config.segments.segments, "healthcare": rule}}
            ),
            "apsis": config.apsis.model_copy(
                update={
                    "attributes": {**config.apsis.attributes, "industry": attribute},
                    "tags": {**config.apsis.tags, "healthcare": "tag-healthcare"},
                }
            ),
        }
    )
    store.update_members([("1001", {"_parentcustomerid_value": "acc-a"}, "*")])
    store.update_members([("1002", {"_parentcustomerid_value": "acc-b"}, "*")])
    store.related["employer"] = [
        {"accountid": "acc-a", "sic": "86.101", "name": "Sjukhuset"},
        {"accountid": "acc-b", "sic": "85.201", "name": "Skolan"},
    ]
    activation = Activation(
        store,
        related,
        configured,
        platform,
        clock=clock,
        options=ActivationSettings(first_payment_hold_minutes=0),
    )

    report = activation.segments.run()

    assert report.segment_sizes["healthcare"] == 1
    assert "healthcare" in platform.profiles["1001"]["tags"]
    assert "healthcare" not in platform.profiles["1002"]["tags"]
    assert platform.profiles["1001"]["attributes"]["industry"] == "86.101"
    assert "industry" not in platform.profiles["1003"]["attributes"]  # no employer
    assert store.calls["related_rows"] == 1  # every table, for every member, in one read


def test_the_scores_parts_are_stored_and_pushed_and_parts_without_data_counted(
    activation, store, platform
) -> None:
    # Events attended (a related table's count): 1001 went to three this year, 1002 to none.
    store.related["events"] = [
        {"_mbr_contactid_value": "id-1001", "mbr_eventdate": day}
        for day in ("2026-02-01", "2026-06-01", "2026-11-01")
    ]
    report = activation.segments.run()
    explanation = store.rows["1001"]["mbr_engagementparts"]
    assert explanation == (
        "on_time_payments=- tenure=3 benefit_use=- events=100 portal_visits=- surveys=- advice=-"
    )
    assert store.rows["1002"]["mbr_engagementparts"].split()[3] == "events=0"
    assert platform.profiles["1001"]["attributes"]["engagement_parts"] == explanation
    # The tables the environment lacks give no data: counted per part, not silently dropped.
    assert report.score_without_data == {
        "on_time_payments": 3,
        "benefit_use": 3,
        "portal_visits": 3,
        "surveys": 3,
        "advice": 3,
    }
    assert report.to_json()["score_without_data"]["benefit_use"] == 3


def test_a_part_no_member_has_data_for_is_warned_of(activation, store, caplog) -> None:
    for n in range(20):
        store.add_member(f"2{n:03d}", mbr_marketingconsent=True, mbr_joinedon="2020-01-01")
    with caplog.at_level("WARNING", logger="dynamics_bridge.activation"):
        activation.segments.run()
    warned = {r.getMessage().split()[3] for r in caplog.records if "had no data" in r.getMessage()}
    assert warned == {
        "advice",
        "benefit_use",
        "events",
        "on_time_payments",
        "portal_visits",
        "surveys",
    }
