"""Advisor tasks on the wire: what TaskWriter asks Dataverse, held against the Web API as
Microsoft documents it (reference dataverse.md §2-5; Microsoft Learn table references ``task``
and ``queueitem``): ``$filter`` with ``startswith`` and ``ne null``, paging by nextLink, a
create-only ``PATCH tasks(<id>)`` with ``If-None-Match: *``, the regarding contact bound through
``regardingobjectid_contact_task``, the owner team through ``ownerid``, a queue item through
``objectid_task`` and ``queueid``. Batch answers are written here in the multipart shape of
dataverse.md §4."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses

from dynamics_bridge.activation.advisor import AdvisorTask
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserPool
from dynamics_bridge.dataverse.tasks import TaskWriter, task_id
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.retention import Advisor, ChoiceColumn, Owner
from dynamics_bridge.settings import DataverseSettings
from tests.support.dataverse_batch import batch_response, part

ORG = "https://org.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"
MAPPING = load_mapping()
TEAM = "6d2f9a1e-0c3b-4e5f-8a7b-1c2d3e4f5a6b"
QUEUE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CONTACT = "9e7d2c41-5a10-f011-8406-000d3a2b1c77"
OUTCOME = ChoiceColumn(column="mbr_retentionoutcome", choices="retention_outcome")


def writer(owner: Owner | None = None, **advisor: object) -> TaskWriter:
    client = DataverseClient(
        DataverseSettings(url=ORG, max_attempts=1, page_size=2),
        requests.Session(),
        AppUserPool.single(lambda: "t", AppUserGate(sleep=lambda s: None)),
    )
    settings = Advisor(owner=owner, outcome=OUTCOME, key_column="mbr_retentionkey", **advisor)  # type: ignore[arg-type]
    return TaskWriter(client, MAPPING, settings)


def task(key: str = "churn:2026-02-13:100003", **fields: object) -> AdvisorTask:
    values: dict[str, object] = {
        "kind": key.split(":")[0],
        "member_id": "100003",
        "key": key,
        "subject": "Retention call: high risk of leaving",
        "description": "Member for: 2 years",
        "due": date(2026, 3, 21),
        "contact_id": CONTACT,
    }
    values.update(fields)
    return AdvisorTask(**values)  # type: ignore[arg-type]


def answer_batch(*change_sets: list[str]) -> None:
    responses.post(
        API + "$batch",
        body=batch_response(*change_sets),
        content_type="multipart/mixed; boundary=batchresponse_1",
    )


def no_tasks_yet() -> None:
    """The check for keys already there: none."""
    responses.get(API + "tasks", json={"value": []})


def sent_operations(body: bytes) -> list[tuple[str, dict[str, str], dict]]:
    """(request line, headers, JSON body) of each operation in a ``$batch`` request body; a
    change-set part's Content-ID is among its headers."""
    found = []
    text = body.decode()
    for chunk in re.split(r"\r\n--(?:batch|changeset)_[0-9a-f]+", text):
        head, _, rest = chunk.partition("\r\n\r\n")
        if "application/http" not in head:
            continue
        lines = rest.split("\r\n")
        headers = {}
        for line in lines[1:]:
            if not line:
                break
            name, _, value = line.partition(": ")
            headers[name] = value
        if found_id := re.search(r"Content-ID: (\S+)", head):
            headers["Content-ID"] = found_id.group(1)  # a MIME header of the part
        payload = next((json.loads(x) for x in lines if x.startswith("{")), {})
        found.append((lines[0], headers, payload))
    return found


def query(call: responses.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url or "").query).items()}


# -- reads --------------------------------------------------------------------------------------


@responses.activate
def test_existing_keys_are_one_startswith_query_followed_over_its_pages() -> None:
    next_link = API + "tasks?$select=mbr_retentionkey&$skiptoken=%3Ccookie%20pagenumber=%222%22/%3E"
    responses.get(
        API + "tasks",
        match=[
            responses.matchers.query_param_matcher(
                {
                    "$select": "mbr_retentionkey",
                    "$filter": "startswith(mbr_retentionkey,'churn:2026-02-13:')",
                }
            )
        ],
        json={
            "value": [
                {"mbr_retentionkey": "churn:2026-02-13:1", "activityid": "a1"},
                {"mbr_retentionkey": "churn:2026-02-13:2", "activityid": "a2"},
            ],
            "@odata.nextLink": next_link,
        },
    )
    responses.get(next_link, json={"value": [{"mbr_retentionkey": "churn:2026-02-13:3"}]})
    keys = writer().existing_keys("churn:2026-02-13:")
    assert keys == {"churn:2026-02-13:1", "churn:2026-02-13:2", "churn:2026-02-13:3"}
    first, second = responses.calls
    assert first.request.headers["Prefer"] == "odata.maxpagesize=2"
    assert second.request.url == next_link  # followed verbatim
    assert second.request.headers["Prefer"] == "odata.maxpagesize=2"


@responses.activate
def test_outcomes_are_read_from_the_bridge_s_tasks_as_contact_day_and_word() -> None:
    responses.get(
        API + "tasks",
        json={
            "value": [
                {  # completed: the day it was completed, in Stockholm
                    "activityid": "a1",
                    "mbr_retentionkey": "churn:2026-02-13:1",
                    "mbr_retentionoutcome": 100000000,
                    "_regardingobjectid_value": CONTACT,
                    "actualend": "2026-03-02T23:30:00Z",
                    "modifiedon": "2026-03-05T10:00:00Z",
                },
                {  # open: the day it was last changed
                    "activityid": "a2",
                    "mbr_retentionkey": "winback:2026-02-13:2",
                    "mbr_retentionoutcome": 100000003,
                    "_regardingobjectid_value": "c2",
                    "actualend": None,
                    "modifiedon": "2026-03-04T08:00:00Z",
                },
                {  # a value the choice set does not know: not read as anything
                    "activityid": "a3",
                    "mbr_retentionkey": "churn:2026-02-13:3",
                    "mbr_retentionoutcome": 999,
                    "_regardingobjectid_value": "c3",
                    "modifiedon": "2026-03-04T08:00:00Z",
                },
            ]
        },
    )
    assert writer().outcomes() == [
        (CONTACT, date(2026, 3, 3), "retained"),
        ("c2", date(2026, 3, 4), "callback"),
    ]
    sent = query(responses.calls[0])
    assert sent["$filter"] == "mbr_retentionkey ne null and mbr_retentionoutcome ne null"
    assert set(sent["$select"].split(",")) == {
        "mbr_retentionkey",
        "mbr_retentionoutcome",
        "_regardingobjectid_value",
        "actualend",
        "modifiedon",
    }


def test_without_an_outcome_column_nothing_is_read() -> None:
    w = writer()
    w.advisor = w.advisor.model_copy(update={"outcome": None})
    assert w.outcomes() == []  # no request: responses is not active, one would fail


# -- writes -------------------------------------------------------------------------------------


@responses.activate
def test_a_task_is_created_once_under_an_id_from_its_key_regarding_its_contact() -> None:
    responses.get(API + f"teams({TEAM})", json={"teamid": TEAM})
    no_tasks_yet()
    answer_batch([part("204 No Content", "1")])
    report = writer(Owner(team=TEAM)).create([task()])
    assert (report.created, report.existing, report.failed) == (
        ["churn:2026-02-13:100003"],
        [],
        {},
    )
    check, team, post = responses.calls
    assert "Microsoft.Dynamics.CRM.In(PropertyName='mbr_retentionkey'" in unquote(
        check.request.url or ""
    )
    assert team.request.url.startswith(API + f"teams({TEAM})")
    assert post.request.headers["Content-Type"].startswith("multipart/mixed")
    ((line, headers, body),) = sent_operations(post.request.body)
    activity = uuid.uuid5(uuid.UUID("5f0c2a4e-7d1b-4c55-9a7e-2b8f3c1d6e90"), task().key)
    assert task_id(task().key) == activity
    assert line == f"PATCH /api/data/v9.2/tasks({activity}) HTTP/1.1"
    assert headers["If-None-Match"] == "*"
    assert body == {
        "mbr_retentionkey": "churn:2026-02-13:100003",
        "subject": "Retention call: high risk of leaving",
        "description": "Member for: 2 years",
        "scheduledend": "2026-03-21T16:00:00Z",  # 17:00 in Stockholm (CET, UTC+1)
        "prioritycode": 1,
        "regardingobjectid_contact_task@odata.bind": f"/contacts({CONTACT})",
        "ownerid@odata.bind": f"/teams({TEAM})",
    }


@responses.activate
def test_keys_already_there_are_skipped_and_a_replayed_create_counts_as_there() -> None:
    responses.get(API + "tasks", json={"value": [{"mbr_retentionkey": "churn:2026-02-13:1"}]})
    duplicate = (
        '{"error":{"code":"0x80040237",'
        '"message":"A record with matching key values already exists."}}'
    )
    answer_batch([part("412 Precondition Failed", "1", duplicate)], [part("204 No Content", "2")])
    tasks = [task("churn:2026-02-13:1"), task("churn:2026-02-13:2"), task("churn:2026-02-13:3")]
    report = writer().create([*tasks, tasks[2]])  # the same key twice: one task
    assert report.existing == ["churn:2026-02-13:1", "churn:2026-02-13:2"]
    assert report.created == ["churn:2026-02-13:3"]
    sent = [line for line, _, _ in sent_operations(responses.calls[1].request.body)]
    assert sent == [
        f"PATCH /api/data/v9.2/tasks({task_id('churn:2026-02-13:2')}) HTTP/1.1",
        f"PATCH /api/data/v9.2/tasks({task_id('churn:2026-02-13:3')}) HTTP/1.1",
    ]


@responses.activate
def test_for_a_queue_the_task_and_its_queue_item_are_one_change_set() -> None:
    responses.get(API + f"queues({QUEUE})", json={"queueid": QUEUE})
    no_tasks_yet()
    answer_batch([part("204 No Content", "1"), part("204 No Content", "2")])
    report = writer(Owner(queue=QUEUE)).create([task()])
    assert report.created == [task().key]
    body = responses.calls[2].request.body.decode()
    assert body.count("Content-Type: multipart/mixed; boundary=") == 1  # one change set
    (task_line, _, task_body), (item_line, _, item_body) = sent_operations(
        responses.calls[2].request.body
    )
    activity = task_id(task().key)
    assert task_line == f"PATCH /api/data/v9.2/tasks({activity}) HTTP/1.1"
    assert "ownerid@odata.bind" not in task_body
    assert item_line == "POST /api/data/v9.2/queueitems HTTP/1.1"
    assert item_body == {
        "objectid_task@odata.bind": f"/tasks({activity})",
        "queueid@odata.bind": f"/queues({QUEUE})",
    }


@responses.activate
def test_an_unknown_owner_team_is_refused_before_anything_is_written() -> None:
    no_tasks_yet()
    responses.get(
        API + f"teams({TEAM})",
        status=404,
        json={"error": {"code": "0x80040217", "message": f"team With Id = {TEAM} Does Not Exist"}},
    )
    with pytest.raises(ConfigError, match=r"advisor\.owner\.team: no team " + TEAM):
        writer(Owner(team=TEAM)).create([task()])
    assert not any("$batch" in (c.request.url or "") for c in responses.calls)


@responses.activate
def test_an_owner_that_is_not_an_id_is_refused() -> None:
    no_tasks_yet()
    w = writer(Owner(team="Retention team"))
    with pytest.raises(ConfigError, match=r"advisor\.owner\.team: 'Retention team' is not an id"):
        w.create([task()])
    assert len(responses.calls) == 1  # the check for keys already there, nothing after it


@responses.activate
def test_without_a_contact_id_the_member_is_bound_by_its_number_or_its_guid() -> None:
    no_tasks_yet()
    answer_batch([part("204 No Content", "1")], [part("204 No Content", "2")])
    writer().create(
        [
            task("churn:p:100003", contact_id=None, member_id="100003"),
            task("churn:p:g", contact_id=None, member_id=CONTACT),
        ]
    )
    binds = [
        b["regardingobjectid_contact_task@odata.bind"]
        for _, _, b in sent_operations(responses.calls[1].request.body)
    ]
    assert binds == ["/contacts(mbr_memberno='100003')", f"/contacts({CONTACT})"]


@responses.activate
def test_a_member_that_is_gone_fails_its_task_only() -> None:
    no_tasks_yet()
    gone = '{"error":{"code":"0x80040217","message":"contact With Id = x Does Not Exist"}}'
    answer_batch([part("404 Not Found", "1", gone)], [part("204 No Content", "2")])
    report = writer().create([task("churn:p:1"), task("churn:p:2")])
    assert report.created == ["churn:p:2"]
    assert report.failed["churn:p:1"].startswith("404 0x80040217")
    assert report.status("churn:p:1") == f"failed: {report.failed['churn:p:1']}"
    assert report.status("churn:p:2") == "created"


@responses.activate
def test_more_tasks_than_a_batch_holds_go_in_several_batches() -> None:
    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        operations = sent_operations(request.body)  # type: ignore[arg-type]
        if all(line.startswith("GET ") for line, _, _ in operations):
            # the check for keys already there: In-queries as GET parts, none found
            parts = "".join(
                "--batchresponse_1\r\nContent-Type: application/http\r\n"
                "Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 200 OK\r\n"
                'Content-Type: application/json\r\n\r\n{"value":[]}\r\n'
                for _ in operations
            )
            body = (parts + "--batchresponse_1--\r\n").encode()
        else:
            body = batch_response(
                *[[part("204 No Content", h["Content-ID"])] for _, h, _ in operations]
            )
        return 200, {"Content-Type": "multipart/mixed; boundary=batchresponse_1"}, body

    responses.add_callback(responses.POST, API + "$batch", callback=answer)
    many = [task(f"churn:p:{n}", contact_id=str(uuid.uuid4())) for n in range(1001)]
    report = writer().create(many)
    assert len(report.created) == 1001
    posts = [c for c in responses.calls if c.request.url == API + "$batch"]
    assert [len(sent_operations(c.request.body)) for c in posts] == [11, 1000, 1]


def test_a_mapping_without_tasks_is_refused() -> None:
    client = DataverseClient(
        DataverseSettings(url=ORG), requests.Session(), AppUserPool.single(lambda: "t")
    )
    with pytest.raises(ConfigError, match="tasks: missing"):
        TaskWriter(client, MAPPING.model_copy(update={"tasks": None}), Advisor())
