"""Ingest and the advisor tasks for failed mandate requests, over fakes: asked for only once a
file is queued, one task per notice regarding the member its payer number finds, a notice whose
member is not found (or whose task cannot be made) still reported as needing a task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from dynamics_bridge.activation.advisor import AdvisorTask
from dynamics_bridge.app.ingest import MandateTaskMaker, ingest_file
from dynamics_bridge.dataverse.tasks import TaskReport
from dynamics_bridge.errors import ConfigError, TransientError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.models import MemberKey
from dynamics_bridge.mapping.retention import Advisor
from dynamics_bridge.model import MemberRefKind
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.pipeline import MemberRow
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import BankgirotSettings
from tests.fixtures.bankgirot import BG, CUSTOMER
from tests.fixtures.bankgirot import build as fixtures

OURS = BankgirotSettings(payee_bankgiros=[BG], customer_numbers=[CUSTOMER])
MAPPING = load_mapping()
CONTACT = "9e7d2c41-5a10-f011-8406-000d3a2b1c77"


class Members:
    """The pipeline's member store, as far as the task maker reads it."""

    def __init__(self, **rows: str) -> None:
        self.rows = rows
        self.asked: list[tuple[str, list[str]]] = []

    def read_members(
        self, column: str, values: Sequence[str], columns: Sequence[str]
    ) -> dict[str, MemberRow]:
        self.asked.append((column, list(values)))
        return {v: MemberRow(v, self.rows[v], None, {}) for v in values if v in self.rows}


class Writer:
    """A task writer that remembers what it was given; keys in ``existing`` are there."""

    def __init__(self, existing: Sequence[str] = ()) -> None:
        self.existing = set(existing)
        self.made: list[AdvisorTask] = []

    def create(self, tasks: Sequence[AdvisorTask]) -> TaskReport:
        report = TaskReport()
        for task in tasks:
            if task.key in self.existing:
                report.existing.append(task.key)
            else:
                self.made.append(task)
                report.created.append(task.key)
        return report


def maker(members: Members, writer: Writer, mapping: Any = MAPPING) -> MandateTaskMaker:
    return MandateTaskMaker(
        members, writer, mapping, Advisor(due_days=3), today=lambda: date(2026, 3, 14)
    )


@pytest.fixture
def medavi(tmp_path: Path) -> Path:
    path = tmp_path / "medavi.txt"
    path.write_bytes(fixtures.mandate_notices())  # one 04/21, payer 100003, line 5
    return path


def test_a_queued_file_s_failed_request_becomes_one_task_regarding_its_member(medavi) -> None:
    members, writer, ops = Members(**{"100003": CONTACT}), Writer(), InMemoryOpsStore()
    report = ingest_file(
        medavi, queue=InMemoryQueue(), settings=OURS, ops=ops, tasks=lambda: maker(members, writer)
    )
    assert members.asked == [("mbr_memberno", ["100003"])]  # the payer number's member column
    (task,) = writer.made
    assert (task.kind, task.key, task.contact_id) == (
        "mandate",
        "mandate:medavi.txt:100003",
        CONTACT,
    )
    assert task.due == date(2026, 3, 17)
    assert report.mandate_tasks == {f"{medavi}:5": "created"}
    assert report.to_json()["mandate_tasks"] == {f"{medavi}:5": "created"}
    (run,) = ops.runs(datetime(2000, 1, 1, tzinfo=UTC))
    assert run.detail["mandate_tasks_made"] == "1"


def test_a_personnummer_payer_number_finds_its_member_and_keys_apart_from_its_twin(
    tmp_path: Path,
) -> None:
    from tests.fixtures.bankgirot import ag_count_closing, ag_notice, ag_opening, lines

    path = tmp_path / "medavi.txt"
    path.write_bytes(
        lines(
            ag_opening("AG-MEDAVI"),
            ag_notice("198112189876", "04", "20"),
            ag_notice("198112189884", "04", "20"),  # born the same day: the same masked text
            ag_count_closing("20261128", 2),
        )
    )
    members = Members(**{"198112189876": CONTACT, "198112189884": "other-contact"})
    writer = Writer()
    report = ingest_file(
        path, queue=InMemoryQueue(), settings=OURS, tasks=lambda: maker(members, writer)
    )
    assert members.asked == [("mbr_memberno", ["198112189876", "198112189884"])]
    assert [t.contact_id for t in writer.made] == [CONTACT, "other-contact"]
    keys = [t.key for t in writer.made]
    assert len(set(keys)) == 2
    assert not any("9876" in k or "9884" in k for k in keys)  # no personnummer in a key
    assert all("9876" not in t.description for t in writer.made)
    assert set(report.mandate_tasks.values()) == {"created"}


def test_a_file_ingested_again_finds_its_task_there(medavi) -> None:
    writer = Writer(existing=["mandate:medavi.txt:100003"])
    members = Members(**{"100003": CONTACT})
    report = ingest_file(
        medavi, queue=InMemoryQueue(), settings=OURS, tasks=lambda: maker(members, writer)
    )
    assert (writer.made, report.mandate_tasks) == ([], {f"{medavi}:5": "existing"})
    assert report.tasks_made() == 1


def test_a_dry_run_asks_for_no_task(medavi) -> None:
    def refuse() -> MandateTaskMaker:
        raise AssertionError("a dry run makes no task")

    report = ingest_file(medavi, settings=OURS, tasks=refuse)
    assert (len(report.requests_failed), report.mandate_tasks) == (1, {})


def test_a_file_without_failed_requests_asks_for_nothing(tmp_path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes(fixtures.mandate_extract())

    def refuse() -> MandateTaskMaker:
        raise AssertionError("nothing to make")

    assert ingest_file(path, queue=InMemoryQueue(), settings=OURS, tasks=refuse).mandate_tasks == {}


def test_a_payer_whose_member_is_not_found_is_reported_as_before(medavi) -> None:
    writer = Writer()
    report = ingest_file(
        medavi, queue=InMemoryQueue(), settings=OURS, tasks=lambda: maker(Members(), writer)
    )
    assert (writer.made, report.mandate_tasks) == ([], {f"{medavi}:5": "member not found"})
    assert report.tasks_made() == 0
    assert report.to_json()["mandate_requests_failed"] == [f"{medavi}:5"]


def test_payer_numbers_resolved_through_payments_find_no_member_to_read(medavi) -> None:
    keys = {**MAPPING.member.keys, MemberRefKind.PAYER_NUMBER: MemberKey(via_payment=True)}
    mapping = MAPPING.model_copy(
        update={"member": MAPPING.member.model_copy(update={"keys": keys})}
    )
    members = Members(**{"100003": CONTACT})
    report = ingest_file(
        medavi,
        queue=InMemoryQueue(),
        settings=OURS,
        tasks=lambda: maker(members, Writer(), mapping),
    )
    assert (members.asked, report.mandate_tasks) == ([], {f"{medavi}:5": "member not found"})


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ConfigError("BRIDGE_DATAVERSE__URL: required"), "BRIDGE_DATAVERSE__URL: required"),
        (TransientError("Dataverse unreachable: ConnectTimeout"), "Dataverse unreachable"),
    ],
)
def test_tasks_that_cannot_be_made_never_fail_the_file(medavi, caplog, error, said) -> None:
    def broken() -> MandateTaskMaker:
        raise error

    queue = InMemoryQueue()
    with caplog.at_level("WARNING"):
        report = ingest_file(medavi, queue=queue, settings=OURS, tasks=broken)
    assert report.queued == 5
    assert report.mandate_tasks[f"{medavi}:5"].startswith(f"failed: {said}")
    assert report.tasks_made() == 0
    (warning,) = [r for r in caplog.records if getattr(r, "outcome", "") == "tasks_failed"]
    assert "no advisor task made for 1 failed mandate request(s)" in warning.getMessage()


def test_tasks_off_leave_the_notices_as_they_were(medavi) -> None:
    report = ingest_file(medavi, queue=InMemoryQueue(), settings=OURS, tasks=lambda: None)
    assert (len(report.requests_failed), report.mandate_tasks) == (1, {})
    assert "mandate_tasks" not in report.to_json()
