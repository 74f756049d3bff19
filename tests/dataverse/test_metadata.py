"""Metadata: typed reads with caching (choice options by cast), and the writes provision needs."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from responses import matchers

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import (
    ChoiceOption,
    alternate_key_body,
    choice_column_body,
    global_choice_body,
    insert_option_body,
    label_text,
    lookup_relationship_body,
    parse_table,
    table_body,
)
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserPool
from dynamics_bridge.errors import NotFoundError, PermanentError, TransientError
from dynamics_bridge.settings import DataverseSettings

ORG = "https://org.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"
CONTACT = API + "EntityDefinitions(LogicalName='contact')"
LABEL = {"UserLocalizedLabel": {"Label": "Betald"}, "LocalizedLabels": [{"Label": "Paid"}]}
DEFINITION = {
    "LogicalName": "contact",
    "SchemaName": "Contact",
    "EntitySetName": "contacts",
    "PrimaryIdAttribute": "contactid",
    "PrimaryNameAttribute": "fullname",
    "ChangeTrackingEnabled": True,
    "Attributes": [
        {"LogicalName": "contactid", "AttributeType": "Uniqueidentifier"},
        {
            "LogicalName": "mbr_memberno",
            "AttributeType": "String",
            "MaxLength": 20,
            "RequiredLevel": {"Value": "ApplicationRequired"},
        },
        {"LogicalName": "mbr_paymentstatus", "AttributeType": "Picklist"},
        {"LogicalName": "statecode", "AttributeType": "State"},
    ],
    "Keys": [
        {
            "SchemaName": "mbr_memberno_key",
            "KeyAttributes": ["mbr_memberno"],
            "EntityKeyIndexStatus": "Active",
        }
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock) -> DataverseClient:
    return DataverseClient(
        DataverseSettings(url=ORG, solution="MemberBridge", suppress_flows=True),
        requests.Session(),
        AppUserPool.single(lambda: "t", AppUserGate(clock=clock, sleep=clock.sleep)),
    )


def test_a_definition_becomes_a_typed_table() -> None:
    table = parse_table(DEFINITION)
    assert (table.entity_set, table.primary_id, table.change_tracking) == (
        "contacts",
        "contactid",
        True,
    )
    column = table.columns["mbr_memberno"]
    assert (column.attribute_type, column.max_length, column.required) == (
        "String",
        20,
        "ApplicationRequired",
    )
    assert table.columns["mbr_paymentstatus"].options is None  # not expanded by Dataverse
    key = table.key_on("mbr_memberno")
    assert key is not None
    assert key.usable
    assert table.key_on("emailaddress1") is None


def test_labels_prefer_the_users_language() -> None:
    assert label_text(LABEL) == "Betald"
    assert label_text({"LocalizedLabels": [{"Label": "Paid"}]}) == "Paid"
    assert label_text(None) == ""


@responses.activate
def test_a_table_is_read_once_and_cached_and_a_missing_one_is_none(client) -> None:
    responses.get(
        CONTACT,
        json=DEFINITION,
        match=[
            matchers.query_param_matcher({"$expand": "Attributes,Keys"}),
            matchers.header_matcher({"Consistency": "Strong"}),
        ],
    )
    responses.get(API + "EntityDefinitions(LogicalName='mbr_payment')", status=404)
    assert client.schema.table("contact").logical_name == "contact"
    assert client.schema.alternate_keys("contact")[0].columns == ("mbr_memberno",)
    assert client.schema.table("mbr_payment") is None
    assert client.schema.table("mbr_payment") is None
    assert len(responses.calls) == 2


@responses.activate
def test_choice_options_are_read_by_casting_once_per_table(client) -> None:
    responses.get(CONTACT, json=DEFINITION)
    responses.get(
        CONTACT + "/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        json={
            "value": [
                {
                    "LogicalName": "mbr_paymentstatus",
                    "OptionSet": {"Options": [{"Value": 100000000, "Label": LABEL}]},
                    "GlobalOptionSet": None,
                },
                {
                    "LogicalName": "mbr_method",
                    "OptionSet": None,
                    "GlobalOptionSet": {"Options": [{"Value": 1, "Label": LABEL}]},
                },
            ]
        },
        match=[
            matchers.query_param_matcher(
                {
                    "$select": "LogicalName",
                    "$expand": "OptionSet($select=Options),GlobalOptionSet($select=Options)",
                }
            )
        ],
    )
    assert client.schema.choice_options("contact", "mbr_paymentstatus") == (
        ChoiceOption(100000000, "Betald"),
    )
    client.schema.choice_options("contact", "mbr_paymentstatus")
    assert len(responses.calls) == 2
    assert client.schema.choice_options("contact", "mbr_memberno") == ()  # not a choice
    with pytest.raises(NotFoundError):
        client.schema.choice_options("contact", "nope")


@responses.activate
def test_options_already_in_the_definition_need_no_second_read(client) -> None:
    inline = json.loads(json.dumps(DEFINITION))
    inline["Attributes"][2]["OptionSet"] = {"Options": [{"Value": 5, "Label": LABEL}]}
    responses.get(CONTACT, json=inline)
    assert client.schema.choice_options("contact", "mbr_paymentstatus") == (
        ChoiceOption(5, "Betald"),
    )
    assert len(responses.calls) == 1


@responses.activate
def test_the_table_list_is_cached(client) -> None:
    responses.get(API + "EntityDefinitions", json={"value": [DEFINITION]})
    assert [t.entity_set for t in client.schema.tables()] == ["contacts"]
    client.schema.tables()
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("kind", "table", "path"),
    [
        ("table", None, "EntityDefinitions"),
        ("column", "contact", "EntityDefinitions(LogicalName='contact')/Attributes"),
        ("key", "contact", "EntityDefinitions(LogicalName='contact')/Keys"),
        ("choice", None, "GlobalOptionSetDefinitions"),
        ("relationship", "mbr_payment", "RelationshipDefinitions"),
    ],
)
@responses.activate
def test_metadata_writes_go_to_their_collection_in_the_solution(client, kind, table, path) -> None:
    responses.post(API + path, status=204)
    client.schema.create_metadata(kind, {"SchemaName": "x"}, table=table)
    sent = responses.calls[0].request
    assert sent.headers["MSCRM.SolutionUniqueName"] == "MemberBridge"
    assert "MSCRM.SuppressCallbackRegistrationExpanderJob" not in sent.headers
    assert json.loads(sent.body) == {"SchemaName": "x"}


@responses.activate
def test_a_planned_option_step_goes_to_insert_option_value_in_the_solution(client) -> None:
    responses.post(API + "InsertOptionValue", status=200, json={"NewOptionValue": 100000003})
    body = insert_option_body("contact", "mbr_paymentstatus", ChoiceOption(100000003, "Skuld"))
    client.schema.create_metadata("option", body, table="contact")
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {**body, "SolutionUniqueName": "MemberBridge"}
    assert responses.calls[0].request.headers["MSCRM.SolutionUniqueName"] == "MemberBridge"


def test_a_lookup_is_made_as_a_one_to_many_relationship() -> None:
    body = lookup_relationship_body(
        "mbr_member_contact_mbr_payment",
        referenced="contact",
        referenced_attribute="contactid",
        referencing="mbr_payment",
        lookup_schema_name="mbr_Member",
        display="Medlem",
    )
    assert body["@odata.type"] == "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
    assert (body["ReferencedEntity"], body["ReferencingEntity"]) == ("contact", "mbr_payment")
    assert body["ReferencedAttribute"] == "contactid"
    lookup = body["Lookup"]
    assert lookup["@odata.type"] == "Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    assert (lookup["SchemaName"], lookup["AttributeType"]) == ("mbr_Member", "Lookup")
    assert "Targets" not in lookup  # the relationship names the target


@responses.activate
def test_a_metadata_write_drops_the_cached_definition(client) -> None:
    responses.get(CONTACT, json=DEFINITION)
    responses.post(CONTACT + "/Attributes", status=204)
    client.schema.table("contact")
    client.schema.create_column("contact", choice_column_body("mbr_x", "X", [ChoiceOption(1, "a")]))
    client.schema.table("contact")
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET"]


@responses.activate
def test_an_option_is_added_with_insert_option_value(client) -> None:
    responses.get(API + "organizations", json={"value": [{"languagecode": 1033}]})
    responses.post(API + "InsertOptionValue", status=200, json={"NewOptionValue": 100000003})
    client.schema.insert_choice_option(
        "contact", "mbr_paymentstatus", ChoiceOption(100000003, "Skuld")
    )
    body = json.loads(responses.calls[-1].request.body)
    assert body["EntityLogicalName"] == "contact"
    assert body["AttributeLogicalName"] == "mbr_paymentstatus"
    assert body["Value"] == 100000003
    assert body["SolutionUniqueName"] == "MemberBridge"
    # labelled in the environment's base language, read from the organization
    assert body["Label"]["UserLocalizedLabel"]["LanguageCode"] == 1033


def with_key_status(status: str) -> dict:
    definition = json.loads(json.dumps(DEFINITION))
    definition["Keys"][0]["EntityKeyIndexStatus"] = status
    return definition


@responses.activate
def test_waiting_for_a_key_polls_until_the_index_is_active(client, clock) -> None:
    for status in ("Pending", "InProgress", "Active"):
        responses.get(CONTACT, json=with_key_status(status))
    key = client.schema.wait_for_key("contact", ["mbr_memberno"], poll=5, clock=clock)
    assert key.status == "Active"
    assert clock.now == 10.0


@pytest.mark.parametrize(
    ("status", "expected"), [("Failed", PermanentError), ("Pending", TransientError)]
)
@responses.activate
def test_a_key_that_fails_or_never_activates_raises(client, clock, status, expected) -> None:
    responses.get(CONTACT, json=with_key_status(status))
    with pytest.raises(expected):
        client.schema.wait_for_key("contact", ["mbr_memberno"], timeout=12, poll=5, clock=clock)


def test_bodies_for_provisioning_name_their_metadata_types() -> None:
    table = table_body("mbr_payment", "Betalning", "Betalningar", primary_name="mbr_name")
    assert table["@odata.type"] == "Microsoft.Dynamics.CRM.EntityMetadata"
    (primary,) = table["Attributes"]
    assert primary["IsPrimaryName"] is True
    assert table["DisplayCollectionName"]["LocalizedLabels"][0]["Label"] == "Betalningar"
    assert table["HasActivities"] is False
    assert table["IsActivity"] is False
    bound = choice_column_body("mbr_method", "Metod", global_choice="mbr_paymentmethod")
    assert bound["GlobalOptionSet@odata.bind"] == (
        "/GlobalOptionSetDefinitions(Name='mbr_paymentmethod')"
    )
    assert "OptionSet" not in bound
    choice = global_choice_body("mbr_paymentmethod", "Metod", [ChoiceOption(100000000, "Swish")])
    assert choice["IsGlobal"] is True
    assert choice["Options"][0]["Value"] == 100000000
    assert alternate_key_body("mbr_eventid_key", ["mbr_eventid"])["KeyAttributes"] == [
        "mbr_eventid"
    ]
