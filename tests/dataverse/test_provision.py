"""provision's plan and apply on the wire, and check_metadata, held against Microsoft's documented
metadata bodies (the rules and sources are in dynamics_bridge.dataverse.metadata): cascade Merge
to a mergeable table, labels in the base language, yes/no options, DateOnly behaviour, the
solution publisher's prefix and option value range, a timed-out create read back instead of
retried, and what check reports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
import responses

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserPool
from dynamics_bridge.dataverse.provision import (
    Environment,
    ProvisionStep,
    apply_plan,
    check_metadata,
    environment,
    plan,
)
from dynamics_bridge.dataverse.schema import Publisher
from dynamics_bridge.errors import InputError, PermanentError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.settings import DataverseSettings

ORG = "https://org.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"
MAPPING = load_mapping()
DEFINITION = re.compile(re.escape(API) + r"EntityDefinitions\(LogicalName='(\w+)'\)(\?.*)?$")
CONTACT: dict[str, Any] = {
    "LogicalName": "contact",
    "EntitySetName": "contacts",
    "PrimaryIdAttribute": "contactid",
    "Attributes": [
        {"LogicalName": "contactid", "AttributeType": "Uniqueidentifier"},
        # contact's own columns the mapping names (governmentid, address1_*, birthdate): they
        # exist, birthdate as Dataverse makes it (a date-only column).
        *(
            {"LogicalName": name, "AttributeType": "String"}
            if spec.type != "date"
            else {
                "LogicalName": name,
                "AttributeType": "DateTime",
                "Format": "DateOnly",
                "DateTimeBehavior": {"Value": "DateOnly"},
            }
            for name, spec in MAPPING.member.columns.items()
            if not name.startswith("mbr_")
        ),
    ],
    "Keys": [],
}


def client_for(**settings: Any) -> DataverseClient:
    return DataverseClient(
        DataverseSettings(url=ORG, max_attempts=1, **settings),
        requests.Session(),
        AppUserPool.single(lambda: "t", AppUserGate(sleep=lambda _: None)),
    )


def serve_environment(
    tables: dict[str, dict[str, Any]],
    *,
    base: int = 1033,
    publisher: dict[str, Any] | None = None,
) -> None:
    """Dataverse's reads: the organization's base language, the solution's publisher, and the
    given table definitions (404 for any other table)."""
    responses.get(API + "organizations", json={"value": [{"languagecode": base}]})
    responses.get(
        API + "solutions",
        json={"value": [{"uniquename": "S", "publisherid": publisher}] if publisher else []},
    )

    def definition(request: requests.PreparedRequest) -> tuple[int, dict, str]:
        match = DEFINITION.match(request.url or "")
        assert match is not None
        found = tables.get(match.group(1))
        if found is None:
            error = {"error": {"code": "0x80060888", "message": "Could not find entity"}}
            return 404, {}, json.dumps(error)
        return 200, {}, json.dumps(found)

    responses.add_callback(responses.GET, DEFINITION, callback=definition)


def labels_in(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [found for item in value for found in labels_in(item)]
    if not isinstance(value, dict):
        return []
    own = [value] if "LocalizedLabels" in value else []
    return own + [f for k, v in value.items() if k != "LocalizedLabels" for f in labels_in(v)]


def steps_for(**settings: Any) -> list[ProvisionStep]:
    return plan(client_for(**settings), MAPPING)


# -- the bodies ---------------------------------------------------------------------------------


@responses.activate
def test_the_member_lookup_cascades_merge_since_contacts_can_be_merged() -> None:
    serve_environment({"contact": CONTACT})
    (lookup,) = [s for s in steps_for() if s.kind == "relationship"]
    assert lookup.body["ReferencedEntity"] == "contact"
    assert lookup.body["CascadeConfiguration"]["Merge"] == "Cascade"
    assert lookup.body["CascadeConfiguration"]["Delete"] == "RemoveLink"


@responses.activate
def test_every_label_carries_the_base_language_first_and_the_configured_ones() -> None:
    serve_environment({"contact": CONTACT}, base=1033)
    steps = steps_for(label_languages=[1053])
    labels = [found for step in steps for found in labels_in(step.body)]
    assert len(labels) > len(steps)  # options, yes/no texts, table names: all of them
    for found in labels:
        assert [x["LanguageCode"] for x in found["LocalizedLabels"]] == [1033, 1053]
        assert found["UserLocalizedLabel"]["LanguageCode"] == 1033


@responses.activate
def test_a_swedish_base_language_is_not_repeated() -> None:
    serve_environment({"contact": CONTACT}, base=1053)
    for step in steps_for(label_languages=[1053]):
        for found in labels_in(step.body):
            assert [x["LanguageCode"] for x in found["LocalizedLabels"]] == [1053]


@responses.activate
def test_yes_no_columns_carry_their_true_and_false_options() -> None:
    serve_environment({"contact": CONTACT})
    booleans = [s for s in steps_for() if s.detail == "boolean"]
    assert booleans
    for step in booleans:
        option_set = step.body["OptionSet"]
        assert option_set["@odata.type"] == "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata"
        assert (option_set["TrueOption"]["Value"], option_set["FalseOption"]["Value"]) == (1, 0)
        english = option_set["TrueOption"]["Label"]["LocalizedLabels"][0]
        assert (english["LanguageCode"], english["Label"]) == (1033, "Yes")


@responses.activate
def test_date_only_columns_send_the_date_only_behaviour_and_datetimes_user_local() -> None:
    serve_environment({"contact": CONTACT})
    steps = {s.name: s for s in steps_for() if s.kind == "column"}
    paid = steps["mbr_lastpaidon"].body
    assert (paid["Format"], paid["DateTimeBehavior"]) == ("DateOnly", {"Value": "DateOnly"})
    event = steps["mbr_lastpaymentevent"].body
    assert (event["Format"], event["DateTimeBehavior"]) == ("DateAndTime", {"Value": "UserLocal"})
    assert (
        steps["mbr_lastpaidon"].describe() == "create column mbr_lastpaidon on contact (date only)"
    )


@responses.activate
def test_the_plan_reads_the_solutions_publisher_and_accepts_what_it_allows() -> None:
    publisher = {
        "uniquename": "memberbridge",
        "customizationprefix": "mbr",
        "customizationoptionvalueprefix": 10000,
    }
    serve_environment({"contact": CONTACT}, publisher=publisher)
    c = client_for(solution="S")
    env = environment(c, MAPPING)
    assert env.publisher == Publisher("memberbridge", "mbr", 10000)
    assert env.warnings(MAPPING) == []
    assert "publisher memberbridge, prefix mbr_, choice values 100000000-100009999" in (
        env.describe()
    )
    assert plan(c, MAPPING, env)
    sent = next(str(c.request.url) for c in responses.calls if "solutions" in str(c.request.url))
    assert "uniquename+eq+%27S%27" in sent
    assert "customizationoptionvalueprefix" in sent


@responses.activate
def test_names_without_the_publishers_prefix_are_refused_before_anything_is_sent() -> None:
    publisher = {"customizationprefix": "abc", "customizationoptionvalueprefix": 10000}
    serve_environment({"contact": CONTACT}, publisher=publisher)
    with pytest.raises(InputError) as refused:
        plan(client_for(solution="S"), MAPPING, source="mappings/dataverse.yaml")
    text = str(refused.value)
    assert text.startswith("mappings/dataverse.yaml: ")
    assert "column mbr_memberno does not start with the publisher prefix abc_" in text
    assert "table mbr_payment does not start" in text
    assert not [c for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_choice_values_outside_the_publishers_option_value_range_are_refused() -> None:
    publisher = {"customizationprefix": "mbr", "customizationoptionvalueprefix": 75250}
    serve_environment({"contact": CONTACT}, publisher=publisher)
    with pytest.raises(InputError) as refused:
        plan(client_for(solution="S"), MAPPING)
    text = str(refused.value)
    assert (
        "choices.payment_method.options.swish: value 100000000 is outside the option value "
        "range 752500000-752509999"
    ) in text
    assert "renumber the set from 752500000" in text


def test_the_plan_warns_without_a_solution_or_with_another_prefix() -> None:
    (alone,) = Environment((1033,)).warnings(MAPPING)
    assert "no solution set (BRIDGE_DATAVERSE__SOLUTION)" in alone
    other = Environment((1033,), "S", Publisher("p", "abc", 10000)).warnings(MAPPING)
    assert len(other) == 1
    assert "publisher prefix is 'abc' but the mapping's publisher_prefix is 'mbr'" in other[0]


def test_the_plan_warns_when_the_solutions_publisher_has_no_prefix() -> None:
    (bare,) = Environment((1033,), "S", Publisher("p", "", 10000)).warnings(MAPPING)
    assert bare.startswith("solution S: its publisher has no customization prefix")
    assert "publisher_prefix 'mbr'" in bare
    assert Environment((1033,), "S", Publisher("p", "mbr", 10000)).warnings(MAPPING) == []


# -- applying: a create whose answer was lost ---------------------------------------------------

COLUMN_STEP = ProvisionStep(
    "column",
    "contact",
    "mbr_flag",
    {"@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata", "SchemaName": "mbr_Flag"},
)
ATTRIBUTES = API + "EntityDefinitions(LogicalName='contact')/Attributes"


def contact_with(*attributes: dict[str, Any]) -> dict[str, Any]:
    return {**CONTACT, "Attributes": [*CONTACT["Attributes"], *attributes]}


@responses.activate
def test_a_timed_out_create_that_was_applied_is_read_back_not_sent_again() -> None:
    responses.post(ATTRIBUTES, body=requests.ReadTimeout("lost"))
    serve_environment(
        {"contact": contact_with({"LogicalName": "mbr_flag", "AttributeType": "Boolean"})}
    )
    apply_plan(client_for(), [COLUMN_STEP])
    assert [c.request.method for c in responses.calls] == ["POST", "GET"]


@responses.activate
def test_a_timed_out_create_that_was_not_applied_is_sent_once_more() -> None:
    responses.post(ATTRIBUTES, body=requests.ReadTimeout("lost"))
    responses.post(ATTRIBUTES, status=204)
    serve_environment({"contact": CONTACT})
    apply_plan(client_for(), [COLUMN_STEP])
    assert [c.request.method for c in responses.calls] == ["POST", "GET", "POST"]


FLAGGED = {"LogicalName": "mbr_flagged", "EntitySetName": "mbr_flaggeds", "Attributes": []}
LOST_ANSWERS = {  # kind: (the step, where it is POSTed, the tables once it was applied)
    "table": (
        ProvisionStep("table", "mbr_flagged", "mbr_flagged", {"SchemaName": "mbr_Flagged"}),
        API + "EntityDefinitions",
        {"contact": CONTACT, "mbr_flagged": FLAGGED},
    ),
    "key": (
        ProvisionStep(
            "key",
            "contact",
            "mbr_memberno_key",
            {"SchemaName": "mbr_memberno_key", "KeyAttributes": ["mbr_memberno"]},
        ),
        API + "EntityDefinitions(LogicalName='contact')/Keys",
        {
            "contact": {
                **CONTACT,
                "Keys": [
                    {
                        "SchemaName": "mbr_memberno_key",
                        "KeyAttributes": ["mbr_memberno"],
                        "EntityKeyIndexStatus": "Active",
                    }
                ],
            }
        },
    ),
    "relationship": (
        ProvisionStep(
            "relationship",
            "contact",
            "mbr_employer",
            {
                "SchemaName": "mbr_employer_account_contact",
                "ReferencedEntity": "account",
                "Lookup": {"SchemaName": "mbr_Employer"},
            },
        ),
        API + "RelationshipDefinitions",
        {"contact": contact_with({"LogicalName": "mbr_employer", "AttributeType": "Lookup"})},
    ),
    "option": (
        ProvisionStep(
            "option",
            "contact",
            "gold",
            {"EntityLogicalName": "contact", "AttributeLogicalName": "mbr_level", "Value": 7},
        ),
        API + "InsertOptionValue",
        {
            "contact": contact_with(
                {
                    "LogicalName": "mbr_level",
                    "AttributeType": "Picklist",
                    "OptionSet": {"Options": [{"Value": 7}]},
                }
            )
        },
    ),
}
BEFORE = {  # the tables before the step was applied
    "table": {"contact": CONTACT},
    "key": {"contact": CONTACT},
    "relationship": {"contact": CONTACT},
    "option": {
        "contact": contact_with(
            {"LogicalName": "mbr_level", "AttributeType": "Picklist", "OptionSet": {"Options": []}}
        )
    },
}


@pytest.mark.parametrize("kind", list(LOST_ANSWERS))
@responses.activate
def test_a_timed_out_table_key_relationship_or_option_create_that_was_applied_is_read_back(
    kind: str,
) -> None:
    step, url, after = LOST_ANSWERS[kind]
    responses.post(url, body=requests.ReadTimeout("lost"))
    serve_environment(after)
    apply_plan(client_for(), [step], key_poll=0)
    posts = [c.request.url for c in responses.calls if c.request.method == "POST"]
    assert posts == [url]  # sent once, then read back: never again
    assert responses.calls[1].request.method == "GET"


@pytest.mark.parametrize("kind", list(LOST_ANSWERS))
@responses.activate
def test_a_timed_out_table_key_relationship_or_option_create_not_applied_is_sent_once_more(
    kind: str,
) -> None:
    step, url, after = LOST_ANSWERS[kind]
    responses.post(url, body=requests.ReadTimeout("lost"))
    responses.post(url, status=204)
    serve_environment(BEFORE[kind])  # the read-back finds nothing...
    serve_environment(after)  # ...and a new key's index is then read as Active
    apply_plan(client_for(), [step], key_poll=0)
    methods = [c.request.method for c in responses.calls]
    assert methods[:3] == ["POST", "GET", "POST"]
    assert methods.count("POST") == 2


@responses.activate
def test_a_key_that_exists_under_another_name_after_a_timeout_is_reported() -> None:
    step, url, after = LOST_ANSWERS["key"]
    responses.post(url, body=requests.ReadTimeout("lost"))
    contact = after["contact"]
    serve_environment(
        {"contact": {**contact, "Keys": [{**contact["Keys"][0], "SchemaName": "inn_memberno"}]}}
    )
    with pytest.raises(PermanentError, match="exists but is named inn_memberno"):
        apply_plan(client_for(), [step], key_poll=0)


@responses.activate
def test_already_exists_is_success_when_it_matches_and_an_error_when_it_differs() -> None:
    exists = {"error": {"code": "0x80044363", "message": "An attribute named mbr_flag exists"}}
    responses.post(ATTRIBUTES, status=400, json=exists)
    serve_environment(
        {"contact": contact_with({"LogicalName": "mbr_flag", "AttributeType": "Boolean"})}
    )
    apply_plan(client_for(), [COLUMN_STEP])  # what exists is what was wanted: done


@responses.activate
def test_already_exists_with_another_type_is_reported() -> None:
    exists = {"error": {"code": "0x80044363", "message": "An attribute named mbr_flag exists"}}
    responses.post(ATTRIBUTES, status=400, json=exists)
    serve_environment(
        {"contact": contact_with({"LogicalName": "mbr_flag", "AttributeType": "String"})}
    )
    with pytest.raises(PermanentError, match="exists but is String, not Boolean"):
        apply_plan(client_for(), [COLUMN_STEP])


# -- check_metadata -----------------------------------------------------------------------------


@responses.activate
def test_before_provisioning_check_says_to_run_provision_with_the_place() -> None:
    serve_environment({"contact": CONTACT})
    problems = check_metadata(client_for(), MAPPING, source="mappings/dataverse.yaml")
    assert (
        "table mbr_payment not found: run `dynamics-bridge provision` "
        "(mappings/dataverse.yaml: payment.table)"
    ) in problems
    assert (
        "contact.mbr_memberno: column not found: run `dynamics-bridge provision` "
        "(mappings/dataverse.yaml: member.columns.mbr_memberno)"
    ) in problems
    assert not any("404" in p for p in problems)


def provisioned_contact(**changes: dict[str, Any]) -> dict[str, Any]:
    """contact with every member column the mapping declares, as provision makes them, and
    ``changes`` merged into named columns; plus a key on the member number."""
    attributes = [dict(a) for a in CONTACT["Attributes"]]
    for name, spec in MAPPING.member.columns.items():
        if not name.startswith("mbr_"):
            continue
        kind = {"date": "DateTime", "datetime": "DateTime", "choice": "Picklist"}.get(
            spec.type, spec.type.capitalize()
        )
        attribute: dict[str, Any] = {"LogicalName": name, "AttributeType": kind}
        if spec.type == "date":
            attribute |= {"Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}}
        if spec.type == "datetime":
            attribute |= {"Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"}}
        if spec.type == "choice" and spec.choices:
            options = MAPPING.choices[spec.choices].options.values()
            attribute["OptionSet"] = {"Options": [{"Value": o.value} for o in options]}
        attributes.append(attribute | changes.get(name, {}))
    return {
        **CONTACT,
        "Attributes": attributes,
        "Keys": [{"SchemaName": "mbr_memberno_key", "KeyAttributes": ["mbr_memberno"]}],
    }


def member_problems(contact: dict[str, Any]) -> list[str]:
    serve_environment({"contact": contact})
    problems = check_metadata(client_for(), MAPPING, source="dv.yaml")
    return [p for p in problems if p.startswith("contact")]


@responses.activate
def test_a_provisioned_contact_has_no_problems() -> None:
    assert member_problems(provisioned_contact()) == []


@responses.activate
def test_a_key_on_the_member_number_under_another_name_says_to_rename_key_name() -> None:
    contact = provisioned_contact()
    contact["Keys"] = [{"SchemaName": "inn_membernumber", "KeyAttributes": ["mbr_memberno"]}]
    assert member_problems(contact) == [
        "contact: the alternate key on mbr_memberno is named inn_membernumber, the mapping says "
        "mbr_memberno_key (provision would plan a second key, which Dataverse refuses): rename "
        "key_name to inn_membernumber in dv.yaml (member.key_name)"
    ]


@responses.activate
def test_plan_does_not_plan_a_second_key_on_the_same_column() -> None:
    contact = provisioned_contact()
    contact["Keys"] = [{"SchemaName": "inn_membernumber", "KeyAttributes": ["mbr_memberno"]}]
    serve_environment({"contact": contact})
    steps = plan(client_for(), MAPPING)
    assert not [s for s in steps if s.kind == "key" and s.table == "contact"]


@responses.activate
def test_a_date_only_column_declared_as_datetime_is_reported() -> None:
    only_date = {"Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}}
    problems = member_problems(provisioned_contact(mbr_lastpaymentevent=only_date))
    assert problems == [
        "contact.mbr_lastpaymentevent: is a date-only column in Dataverse but declared "
        "`type: datetime` (the time of day would be lost): declare `type: date` in "
        "dv.yaml: member.columns.mbr_lastpaymentevent"
    ]


@responses.activate
def test_a_date_declared_column_that_is_date_and_time_or_user_local_is_reported() -> None:
    user_local = {"Format": "DateOnly", "DateTimeBehavior": {"Value": "UserLocal"}}
    date_time = {"Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"}}
    problems = member_problems(
        provisioned_contact(mbr_lastpaidon=user_local, mbr_paidthrough=date_time)
    )
    assert len(problems) == 2
    assert problems[0].startswith(
        "contact.mbr_lastpaidon: is shown as a date but behaves UserLocal, so a date written "
        "from Stockholm reads back a day early: set its behaviour to Date only"
    )
    assert problems[1].startswith(
        "contact.mbr_paidthrough: is a date-and-time column (UserLocal) but declared `type: "
        "date`: declare `type: datetime` in dv.yaml: member.columns.mbr_paidthrough"
    )


@responses.activate
def test_check_says_to_renumber_choice_values_provision_would_create_outside_the_range() -> None:
    """What provision would refuse (it creates these values, and the solution's publisher does
    not allow them), check reports first: renumber, not "run provision"."""
    publisher = {"customizationprefix": "mbr", "customizationoptionvalueprefix": 75250}
    contact = provisioned_contact()
    contact["Attributes"] = [
        a for a in contact["Attributes"] if a["LogicalName"] != "mbr_mandatestatus"
    ]
    serve_environment({"contact": contact}, publisher=publisher)
    problems = check_metadata(client_for(solution="S"), MAPPING, source="dv.yaml")
    outside = (
        "choices.mandate_status.options.{word}: value {value} is outside the option value range "
        "752500000-752509999 of solution S's publisher (option value prefix 75250): renumber "
        "the set from 752500000 in dv.yaml"
    )
    for word, option in MAPPING.choices["mandate_status"].options.items():
        assert problems.count(outside.format(word=word, value=option.value)) == 1
    # the payment table is to be created: its choice values too (payment_method once)
    assert sum(p.startswith("choices.payment_method.options.swish:") for p in problems) == 1
    assert any(p.startswith("choices.event_kind.options.") for p in problems)
    # values Dataverse already has are the column's own: never reported
    assert not any(p.startswith("choices.payment_status.") for p in problems)
    assert not any("choice value" in p and "not found" in p for p in problems)


@responses.activate
def test_check_reports_a_missing_solution_and_a_publisher_with_another_prefix() -> None:
    serve_environment({"contact": provisioned_contact()})
    problems = check_metadata(client_for(solution="S"), MAPPING)
    assert problems[0].startswith("solution S not found in Dataverse: create it")
    responses.reset()
    publisher = {"customizationprefix": "inn", "customizationoptionvalueprefix": 10000}
    serve_environment({"contact": provisioned_contact()}, publisher=publisher)
    problems = check_metadata(client_for(solution="S"), MAPPING, source="dv.yaml")
    assert problems[0] == (
        "solution S: its publisher's prefix is inn, the mapping's publisher_prefix is mbr: make "
        "them agree (dv.yaml: publisher_prefix)"
    )
