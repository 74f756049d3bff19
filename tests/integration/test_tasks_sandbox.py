"""Advisor tasks against the local sandbox over HTTPS: provision adds the bridge's columns to the
standard task table (never the table), a task is made once however often it is asked for,
owned by a team or put in a queue, an unknown team is refused with a clear error, the outcome an
advisor records is read back, and a failed Autogiro mandate request in an ingested file becomes
a task regarding its member (once, and never in a dry run)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from dynamics_bridge_sandbox.register import sandbox_settings
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox
from typer.testing import CliRunner

from dynamics_bridge.activation.advisor import AdvisorTask, task_key
from dynamics_bridge.app.ingest import MandateTaskMaker, ingest_file
from dynamics_bridge.cli import app
from dynamics_bridge.dataverse.auth import session_for
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.provision import apply_plan, check_metadata, plan
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.dataverse.tasks import TaskWriter, task_id
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config
from dynamics_bridge.mapping.retention import Advisor, Owner, RetentionFile
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import BankgirotSettings
from tests.fixtures.bankgirot import BG, CUSTOMER
from tests.fixtures.bankgirot import build as fixtures

pytestmark = pytest.mark.integration
MAPPING = load_mapping()
ADVISOR = load_config(RetentionFile, MAPPINGS_DIR / "retention.yaml", prefix="mbr").advisor
OURS = BankgirotSettings(payee_bankgiros=[BG], customer_numbers=[CUSTOMER])
TODAY = date(2026, 3, 14)


@pytest.fixture
def sandbox() -> Iterator[SandboxInfo]:
    with run_sandbox() as box:
        yield box


@pytest.fixture
def client(sandbox: SandboxInfo) -> DataverseClient:
    c = new_client(sandbox, page_size=2)
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    return c


def new_client(sandbox: SandboxInfo, **extra: object) -> DataverseClient:
    settings = sandbox_settings(sandbox, **extra)
    return DataverseClient.from_settings(settings, session_for(settings))


def member(client: DataverseClient, number: str) -> str:
    """A contact with member number ``number``; its id."""
    client.rows.create_only("contacts", {"mbr_memberno": number}, {"lastname": "Ek"})
    row = client.rows.get("contacts", {"mbr_memberno": number}, ["contactid"])
    assert row is not None
    return str(row["contactid"])


def team(client: DataverseClient) -> str:
    team_id = str(uuid.uuid4())
    client.rows.create("teams", {"teamid": team_id, "name": "Medlemsvård"})
    return team_id


def churn_task(number: str, contact_id: str | None = None) -> AdvisorTask:
    return AdvisorTask(
        kind="churn",
        member_id=number,
        key=task_key("churn", number, TODAY, ADVISOR.period_days),
        subject="Retention call: high risk of leaving",
        description="Member for: 3 years\nRisk of leaving within the horizon: 41 %",
        due=date(2026, 3, 21),
        contact_id=contact_id,
    )


def tasks_in(sandbox: SandboxInfo) -> list[dict]:
    return [row for _, row, _ in sandbox.dataverse._rows("task")]


def test_provision_adds_the_columns_to_the_standard_task_table_and_check_is_clean(
    sandbox: SandboxInfo,
) -> None:
    c = new_client(sandbox)
    problems = check_metadata(c, MAPPING)
    assert any(p.startswith("task.mbr_retentionkey: column not found: run") for p in problems)
    assert any(p.startswith("task.mbr_retentionoutcome: column not found") for p in problems)
    assert not any(p.startswith("table task") for p in problems)
    on_task = [s for s in plan(c, MAPPING) if s.table == "task"]
    assert sorted((s.kind, s.name) for s in on_task) == [
        ("column", "mbr_retentionkey"),
        ("column", "mbr_retentionoutcome"),
    ]
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    assert check_metadata(c, MAPPING) == []
    assert plan(c, MAPPING) == []
    columns = {a["LogicalName"] for a in sandbox.dataverse.entity("task")["Attributes"]}
    assert {"mbr_retentionkey", "mbr_retentionoutcome", "activityid", "subject"} <= columns


def test_a_missing_task_table_is_for_check_to_say_never_for_provision_to_create(
    client: DataverseClient, sandbox: SandboxInfo
) -> None:
    moved = MAPPING.model_copy(
        update={"tasks": MAPPING.tasks.model_copy(update={"table": "mbr_task"})}  # type: ignore[union-attr]
    )
    assert [s for s in plan(client, moved) if s.table == "mbr_task"] == []
    assert any(
        p.startswith("table mbr_task not found: it is Dataverse's standard activity table")
        for p in check_metadata(client, moved)
    )


def test_a_task_is_made_once_for_its_team_and_the_second_run_makes_none(
    client: DataverseClient, sandbox: SandboxInfo
) -> None:
    contact = member(client, "100003")
    team_id = team(client)
    writer = TaskWriter(client, MAPPING, ADVISOR.model_copy(update={"owner": Owner(team=team_id)}))
    first = writer.create([churn_task("100003", contact)])
    assert (first.created, first.existing) == ([churn_task("100003").key], [])
    second = writer.create([churn_task("100003", contact)])
    assert (second.created, second.existing) == ([], [churn_task("100003").key])
    (row,) = tasks_in(sandbox)
    assert row["activityid"] == str(task_id(churn_task("100003").key))
    assert row["_regardingobjectid_value"] == contact
    assert row["_ownerid_value"] == team_id
    assert row["mbr_retentionkey"] == churn_task("100003").key
    assert row["scheduledend"] == "2026-03-21T16:00:00Z"
    prefix = task_key("churn", "", TODAY, ADVISOR.period_days)
    assert writer.existing_keys(prefix) == {churn_task("100003").key}
    assert writer.existing_keys(task_key("winback", "", TODAY, ADVISOR.period_days)) == set()


def test_a_member_named_by_number_is_bound_through_the_member_key(
    client: DataverseClient, sandbox: SandboxInfo
) -> None:
    contact = member(client, "100007")
    assert TaskWriter(client, MAPPING, ADVISOR).create([churn_task("100007")]).created
    (row,) = tasks_in(sandbox)
    assert row["_regardingobjectid_value"] == contact


def test_for_a_queue_the_task_is_put_in_it(client: DataverseClient, sandbox: SandboxInfo) -> None:
    contact = member(client, "100003")
    queue_id = str(uuid.uuid4())
    client.rows.create("queues", {"queueid": queue_id, "name": "Retention calls"})
    writer = TaskWriter(
        client, MAPPING, ADVISOR.model_copy(update={"owner": Owner(queue=queue_id)})
    )
    assert writer.create([churn_task("100003", contact)]).created
    assert writer.create([churn_task("100003", contact)]).created == []
    (item,) = [row for _, row, _ in sandbox.dataverse._rows("queueitem")]
    assert item["_objectid_value"] == str(task_id(churn_task("100003").key))
    assert item["_queueid_value"] == queue_id


def test_an_unknown_team_is_refused_with_a_clear_error_and_nothing_is_made(
    client: DataverseClient, sandbox: SandboxInfo
) -> None:
    contact = member(client, "100003")
    missing = str(uuid.uuid4())
    writer = TaskWriter(client, MAPPING, ADVISOR.model_copy(update={"owner": Owner(team=missing)}))
    with pytest.raises(ConfigError) as refused:
        writer.create([churn_task("100003", contact)])
    assert refused.value.problems == [
        f"retention.yaml: advisor.owner.team: no team {missing} in Dataverse: give the id of an "
        "existing team (Power Platform admin center, or the teams table), or leave "
        "advisor.owner out to keep tasks with the app user"
    ]
    assert tasks_in(sandbox) == []


def test_the_outcome_an_advisor_records_is_read_back(
    client: DataverseClient, sandbox: SandboxInfo
) -> None:
    contact = member(client, "100003")
    other = member(client, "100004")
    writer = TaskWriter(client, MAPPING, ADVISOR)
    writer.create([churn_task("100003", contact), churn_task("100004", other)])
    assert writer.outcomes() == []  # nothing recorded yet
    client.transport.request(  # the advisor, in Dynamics: "leaving"
        "PATCH",
        f"tasks({task_id(churn_task('100003').key)})",
        json_body={"mbr_retentionoutcome": 100000001},
        headers={"If-Match": "*"},
    )
    client.rows.create(
        "tasks", {"subject": "the advisor's own task", "mbr_retentionoutcome": 100000000}
    )
    ((contact_id, day, word),) = writer.outcomes()
    assert (contact_id, word) == (contact, "leaving")
    assert isinstance(day, date)


def mandate_maker(client: DataverseClient, advisor: Advisor = ADVISOR) -> MandateTaskMaker:
    return MandateTaskMaker(
        DataverseMemberStore(client, MAPPING),
        TaskWriter(client, MAPPING, advisor),
        MAPPING,
        advisor,
        today=lambda: TODAY,
    )


def test_a_failed_mandate_request_in_an_autogiro_file_becomes_a_task_once(
    client: DataverseClient, sandbox: SandboxInfo, tmp_path: Path
) -> None:
    contact = member(client, "100003")  # the payer of the notice 04/21 (line 5)
    path = tmp_path / "medavi.txt"
    path.write_bytes(fixtures.mandate_notices())
    maker = mandate_maker(client)
    report = ingest_file(path, queue=InMemoryQueue(), settings=OURS, tasks=lambda: maker)
    assert report.mandate_tasks == {f"{path}:5": "created"}
    assert report.tasks_made() == 1
    (row,) = tasks_in(sandbox)
    assert row["mbr_retentionkey"] == "mandate:medavi.txt:100003"
    assert row["_regardingobjectid_value"] == contact
    assert row["scheduledend"] == "2026-03-21T16:00:00Z"  # due_days 7, 17:00 in Stockholm
    assert "04/21" in row["subject"]
    assert "payer number 100003" in row["description"]
    again = ingest_file(path, queue=InMemoryQueue(), settings=OURS, tasks=lambda: maker)
    assert again.mandate_tasks == {f"{path}:5": "existing"}
    assert len(tasks_in(sandbox)) == 1


def test_a_dry_run_makes_no_task_and_an_unknown_payer_is_reported_as_before(
    client: DataverseClient, sandbox: SandboxInfo
) -> None:
    asked = []

    def tasks() -> MandateTaskMaker:
        asked.append(1)
        return mandate_maker(client)

    dry = ingest_file(
        io.BytesIO(fixtures.mandate_notices()), name="medavi.txt", settings=OURS, tasks=tasks
    )
    assert (asked, dry.mandate_tasks, len(dry.requests_failed)) == ([], {}, 1)
    report = ingest_file(
        io.BytesIO(fixtures.mandate_notices()),
        name="medavi.txt",
        queue=InMemoryQueue(),
        settings=OURS,
        tasks=tasks,
    )
    assert report.mandate_tasks == {"medavi.txt:5": "member not found"}
    assert report.tasks_made() == 0
    assert tasks_in(sandbox) == []


def test_the_ingest_command_makes_the_task_through_the_wiring(
    client: DataverseClient, sandbox: SandboxInfo, tmp_path: Path, monkeypatch
) -> None:
    member(client, "100003")
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRIDGE_BANKGIROT__PAYEE_BANKGIROS", BG)
    monkeypatch.setenv("BRIDGE_BANKGIROT__CUSTOMER_NUMBERS", CUSTOMER)
    path = tmp_path / "medavi.txt"
    path.write_bytes(fixtures.mandate_notices())
    result = CliRunner().invoke(app, ["ingest", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "task in Dynamics" in line)
    assert row.rstrip(" │|").split()[-1] == "1"
    assert "needs a task" not in result.stdout
    (task,) = tasks_in(sandbox)
    assert task["mbr_retentionkey"] == "mandate:medavi.txt:100003"
