"""The sandbox's standard task, team, queue and queue item tables refuse what a tenant refuses:
a bind through an undeclared navigation property, to the wrong table, or to a row that is not
there (ObjectDoesNotExist, "team With Id = ... Does Not Exist"); and its ``$filter`` reads
``startswith`` and ``ne null`` as the task reads need."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from dynamics_bridge_sandbox.dataverse import API, DataverseSandbox, parse_filter
from dynamics_bridge_sandbox.server import STANDARD_TABLES

CONTACT_ID = str(uuid.uuid4())
TEAM_ID = str(uuid.uuid4())
QUEUE_ID = str(uuid.uuid4())


def call(box: DataverseSandbox, method: str, path: str, body: Any = None) -> Any:
    raw = json.dumps(body).encode() if body is not None else b""
    return box.handle(method, API + path, {}, raw)


@pytest.fixture
def box() -> DataverseSandbox:
    sandbox = DataverseSandbox()
    for table in STANDARD_TABLES:
        sandbox.define_entity(json.loads(json.dumps(table)))
    assert call(sandbox, "POST", "contacts", {"contactid": CONTACT_ID}).status == 204
    assert call(sandbox, "POST", "teams", {"teamid": TEAM_ID, "name": "Retention"}).status == 204
    assert call(sandbox, "POST", "queues", {"queueid": QUEUE_ID, "name": "Calls"}).status == 204
    return sandbox


def task_body(**extra: str) -> dict[str, str]:
    return {
        "subject": "Retention call",
        "regardingobjectid_contact_task@odata.bind": f"/contacts({CONTACT_ID})",
        **extra,
    }


def test_a_task_regarding_a_contact_owned_by_a_team_is_stored_as_its_lookups(box) -> None:
    task_id = str(uuid.uuid4())
    answer = call(
        box,
        "PATCH",
        f"tasks({task_id})",
        task_body(**{"ownerid@odata.bind": f"/teams({TEAM_ID})"}),
    )
    assert answer.status == 204
    row = call(box, "GET", f"tasks({task_id})").body
    assert row["_regardingobjectid_value"] == CONTACT_ID
    assert row["_ownerid_value"] == TEAM_ID
    assert row["createdon"]
    assert row["modifiedon"]


def test_an_unknown_team_is_refused_as_dataverse_does(box) -> None:
    missing = str(uuid.uuid4())
    answer = call(box, "POST", "tasks", task_body(**{"ownerid@odata.bind": f"/teams({missing})"}))
    assert answer.status == 404
    assert answer.body["error"] == {
        "code": "0x80040217",
        "message": f"team With Id = {missing} Does Not Exist",
    }
    assert call(box, "GET", "tasks").body["value"] == []


def test_an_undeclared_navigation_or_a_wrong_target_is_refused(box) -> None:
    undeclared = call(
        box,
        "POST",
        "tasks",
        {"subject": "x", "regardingobjectid_contact@odata.bind": f"/contacts({CONTACT_ID})"},
    )
    assert undeclared.status == 400
    assert "undeclared property 'regardingobjectid_contact'" in undeclared.body["error"]["message"]
    wrong = call(box, "POST", "tasks", task_body(**{"ownerid@odata.bind": f"/queues({QUEUE_ID})"}))
    assert wrong.status == 400
    assert "points to systemuser or team, not queue" in wrong.body["error"]["message"]


def test_a_task_goes_in_a_queue_through_a_queue_item(box) -> None:
    task_id = str(uuid.uuid4())
    assert call(box, "PATCH", f"tasks({task_id})", task_body()).status == 204
    item = {
        "objectid_task@odata.bind": f"/tasks({task_id})",
        "queueid@odata.bind": f"/queues({QUEUE_ID})",
    }
    assert call(box, "POST", "queueitems", item).status == 204
    (row,) = call(box, "GET", "queueitems").body["value"]
    assert (row["_objectid_value"], row["_queueid_value"]) == (task_id, QUEUE_ID)
    unknown = {**item, "queueid@odata.bind": f"/queues({uuid.uuid4()})"}
    assert call(box, "POST", "queueitems", unknown).body["error"]["code"] == "0x80040217"


def test_startswith_and_ne_null_filter_as_odata_says() -> None:
    (column, prefix), (other, not_null) = parse_filter(
        "startswith(mbr_key,'churn:2026-02-13:') and mbr_outcome ne null"
    )
    assert (column, other) == ("mbr_key", "mbr_outcome")
    assert "churn:2026-02-13:1" in prefix
    assert "winback:2026-02-13:1" not in prefix
    assert "None" not in prefix  # a null key does not start with anything
    assert "100000000" in not_null
    assert "None" not in not_null
    ((_, differs),) = parse_filter("mbr_outcome ne 100000000")
    assert "None" in differs
    assert "100000001" in differs
    assert "100000000" not in differs
