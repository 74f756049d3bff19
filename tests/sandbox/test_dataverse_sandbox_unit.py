"""The Dataverse sandbox as a pure request → answer function, and its app users and limits."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from dynamics_bridge_sandbox.dataverse import (
    API,
    DataverseSandbox,
    Limits,
    matches,
    parse_alternatives,
)
from dynamics_bridge_sandbox.server import CONTACT, run_sandbox
from typer.testing import CliRunner

from dynamics_bridge.dataverse.batch import (
    BatchRequest,
    ChangeSet,
    build_batch,
    parse_batch_response,
)
from dynamics_bridge.dataverse.metadata import (
    ChoiceOption,
    alternate_key_body,
    choice_column_body,
    insert_option_body,
    lookup_relationship_body,
    string_column_body,
    table_body,
)

OPTIONS = [ChoiceOption(100000000, "Betald"), ChoiceOption(100000001, "Obetald")]


def call(box: DataverseSandbox, method: str, path: str, body: Any = None, **headers: str):
    raw = json.dumps(body).encode() if body is not None else b""
    return box.handle(method, API + path, headers, raw)


@pytest.fixture
def box() -> DataverseSandbox:
    sandbox = DataverseSandbox(base_language=1053)  # the bodies' labels are Swedish only
    sandbox.define_entity(json.loads(json.dumps(CONTACT)))
    call(
        sandbox,
        "POST",
        "EntityDefinitions",
        table_body("mbr_payment", "Betalning", "Betalningar", primary_name="mbr_name"),
    )
    call(
        sandbox,
        "POST",
        "EntityDefinitions(LogicalName='contact')/Attributes",
        choice_column_body("mbr_status", "Status", OPTIONS),
    )
    call(
        sandbox,
        "POST",
        "EntityDefinitions(LogicalName='contact')/Attributes",
        string_column_body("mbr_memberno", "Medlemsnummer"),
    )
    call(
        sandbox,
        "POST",
        "EntityDefinitions(LogicalName='contact')/Keys",
        alternate_key_body("mbr_memberno_key", ["mbr_memberno"]),
    )
    return sandbox


# -- metadata -----------------------------------------------------------------------------------


def test_the_list_of_tables_honours_select_and_filter(box) -> None:
    answer = call(box, "GET", "EntityDefinitions?$select=LogicalName,EntitySetName")
    assert answer.status == 200
    assert {t["LogicalName"]: t["EntitySetName"] for t in answer.body["value"]} == {
        "contact": "contacts",
        "mbr_payment": "mbr_payments",
    }
    assert all("Attributes" not in t for t in answer.body["value"])
    box.define_entity(
        {
            **CONTACT,
            "LogicalName": "account",
            "EntitySetName": "accounts",
            "ChangeTrackingEnabled": False,
        }
    )
    tracked = call(
        box,
        "GET",
        "EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled%20eq%20true",
    )
    assert [t["LogicalName"] for t in tracked.body["value"]] == ["contact", "mbr_payment"]


def test_expanded_attributes_carry_no_option_sets_and_the_cast_does(box) -> None:
    table = call(
        box, "GET", "EntityDefinitions(LogicalName='contact')?$expand=Attributes,Keys"
    ).body
    status = next(a for a in table["Attributes"] if a["LogicalName"] == "mbr_status")
    assert "OptionSet" not in status
    assert table["Keys"][0]["EntityKeyIndexStatus"] == "Active"
    bare = call(box, "GET", "EntityDefinitions(LogicalName='contact')").body
    assert "Attributes" not in bare
    cast = call(
        box,
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
        "&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)",
    )
    assert cast.status == 200
    (only,) = cast.body["value"]
    assert only["LogicalName"] == "mbr_status"
    assert [o["Value"] for o in only["OptionSet"]["Options"]] == [100000000, 100000001]
    state = call(
        box,
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes/"
        "Microsoft.Dynamics.CRM.StateAttributeMetadata?$expand=OptionSet",
    )
    assert [a["LogicalName"] for a in state.body["value"]] == ["statecode"]


def test_a_lookup_comes_only_with_its_relationship(box) -> None:
    refused = call(
        box,
        "POST",
        "EntityDefinitions(LogicalName='mbr_payment')/Attributes",
        {"@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata", "SchemaName": "mbr_X"},
    )
    assert refused.status == 400
    body = lookup_relationship_body(
        "mbr_contact_mbr_payment",
        referenced="contact",
        referenced_attribute="contactid",
        referencing="mbr_payment",
        lookup_schema_name="mbr_Member",
        display="Medlem",
    )
    created = call(box, "POST", "RelationshipDefinitions", body)
    assert created.status == 204
    assert "RelationshipDefinitions(" in created.headers["OData-EntityId"]
    payment = box.entity("mbr_payment")
    assert payment is not None
    lookup = next(a for a in payment["Attributes"] if a["LogicalName"] == "mbr_member")
    assert lookup["Targets"] == ["contact"]
    assert call(box, "POST", "RelationshipDefinitions", body).status == 400  # exists already
    missing = call(box, "POST", "RelationshipDefinitions", {**body, "ReferencedEntity": "nope"})
    assert missing.status == 404


def test_insert_option_value_adds_an_option_once(box) -> None:
    body = insert_option_body(
        "contact", "mbr_status", ChoiceOption(100000002, "Spärrad"), solution="Bridge"
    )
    added = call(box, "POST", "InsertOptionValue", body)
    assert (added.status, added.body["NewOptionValue"]) == (200, 100000002)
    assert box.solution_components == {"Bridge": ["InsertOptionValue"]}
    again = call(box, "POST", "InsertOptionValue", body)
    assert again.status == 400
    not_a_choice = call(
        box, "POST", "InsertOptionValue", {**body, "AttributeLogicalName": "lastname"}
    )
    assert not_a_choice.status == 400
    cast = call(
        box,
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$expand=OptionSet",
    )
    values = [o["Value"] for o in cast.body["value"][0]["OptionSet"]["Options"]]
    assert values == [100000000, 100000001, 100000002]


def test_metadata_writes_are_added_to_the_named_solution(box) -> None:
    call(
        box,
        "POST",
        "EntityDefinitions(LogicalName='contact')/Attributes",
        string_column_body("mbr_note", "Not"),
        **{"MSCRM.SolutionUniqueName": "Bridge"},
    )
    assert box.solution_components == {"Bridge": ["mbr_note"]}


# -- $batch Content-ID references ---------------------------------------------------------------


def batch(box: DataverseSandbox, items: list[BatchRequest | ChangeSet]):
    content_type, body = build_batch(items)
    headers = {"Content-Type": content_type, "Prefer": "odata.continue-on-error"}
    answer = box.handle("POST", API + "$batch", headers, body)
    if answer.status != 200:
        return answer
    return parse_batch_response(answer.headers["Content-Type"], answer.payload()[0])


def test_dollar_references_resolve_inside_their_change_set(box) -> None:
    parts = batch(
        box,
        [
            ChangeSet(
                [
                    BatchRequest("POST", "contacts", {}, {"lastname": "A"}, content_id="1"),
                    BatchRequest("PATCH", "$1", {}, {"firstname": "B"}, content_id="2"),
                    BatchRequest(
                        "POST",
                        "mbr_payments",
                        {},
                        {"mbr_name": "p", "mbr_Member@odata.bind": "$1"},
                        content_id="3",
                    ),
                ]
            )
        ],
    )
    assert [p.status for p in parts] == [204, 204, 204]
    contact_id = parts[0].headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert parts[1].headers["OData-EntityId"] == parts[0].headers["OData-EntityId"]
    row = call(box, "GET", f"contacts({contact_id})").body
    assert (row["firstname"], row["lastname"]) == ("B", "A")
    payments = call(box, "GET", "mbr_payments").body["value"]
    assert payments[0]["_mbr_member_value"] == contact_id


def test_an_undeclared_reference_fails_and_ids_must_be_unique(box) -> None:
    parts = batch(
        box,
        [ChangeSet([BatchRequest("PATCH", "$9", {}, {"firstname": "x"}, content_id="1")])],
    )
    assert parts[0].status == 400
    assert "'$9' does not exist in the batch context" in parts[0].body["error"]["message"]
    duplicate = batch(
        box,
        [
            ChangeSet([BatchRequest("POST", "contacts", {}, {}, content_id="1")]),
            ChangeSet([BatchRequest("POST", "contacts", {}, {}, content_id="1")]),
        ],
    )
    assert duplicate.status == 400


# -- app users and their budgets ----------------------------------------------------------------


def test_each_app_user_has_its_own_budget() -> None:
    now = [0.0]
    limits = Limits(requests_per_window=2, clock=lambda: now[0])
    for _ in range(2):
        assert limits.admit("a") is None
        limits.done("a", 0.0)
    refused = limits.admit("a")
    assert refused is not None
    assert refused.code == "0x80072322"
    assert limits.admit("b") is None  # another app user is not held back by a's use
    assert limits.throttled_by_user == {"a": 1}
    assert limits.refusals["a"][0] == (0.0, refused.retry_after)


def test_run_sandbox_registers_extra_app_users_and_exports_them() -> None:
    with run_sandbox(app_users=3) as info:
        assert len(info.extra_users) == 2
        users = json.loads(info.env["BRIDGE_DATAVERSE__APP_USERS"])
        assert {u["client_id"] for u in users} == set(info.extra_users)
        for user in users:
            assert info.dataverse.issue_token(user["client_id"], user["client_secret"])
    with run_sandbox() as single:
        assert "BRIDGE_DATAVERSE__APP_USERS" not in single.env


def test_the_sandbox_command_prints_every_app_user(tmp_path, monkeypatch) -> None:
    from dynamics_bridge.cli import app
    from dynamics_bridge.cli import dataverse as cli

    class StopAtOnce:
        @staticmethod
        def sleep(_: float) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "time", StopAtOnce)
    result = CliRunner().invoke(
        app, ["sandbox", "--db", str(tmp_path / "dv.sqlite"), "--app-users", "3"]
    )
    assert result.exit_code == 0, result.output
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in result.stdout.splitlines()
        if line.startswith("export ")
    )
    users = json.loads(exports["BRIDGE_DATAVERSE__APP_USERS"])
    assert len(users) == 2
    assert all(u["client_id"] != exports["BRIDGE_DATAVERSE__CLIENT_ID"] for u in users)


def test_a_filter_of_or_ed_groups_matches_a_row_in_any_of_them() -> None:
    groups = parse_alternatives(
        "(d ge 2025-11-27 and d le 2025-11-29) or (d ge 1950-11-27 and d le 1950-11-29)"
    )
    assert len(groups) == 2
    hit = [
        d
        for d in ("2025-11-28", "1950-11-29", "1950-11-30", None)
        if any(matches({"d": d}, g) for g in groups)
    ]
    assert hit == ["2025-11-28", "1950-11-29"]
    assert len(parse_alternatives("d ge 2025-01-01 and d le 2025-02-01")) == 1
    assert len(parse_alternatives("name eq 'this or that'")) == 1
