"""The sandbox refuses what Dataverse refuses in a metadata create (the rules and sources are in
dynamics_bridge.dataverse.metadata), so the bodies provision sent before are refused here and
today's are accepted: Merge on a relationship to contact, labels without the base language,
yes/no columns without options, date-only columns without the DateOnly behaviour, names and
choice values outside the solution publisher's prefix and range."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox
from typer.testing import CliRunner

from dynamics_bridge.cli import app
from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import (
    SWEDISH,
    ChoiceOption,
    alternate_key_body,
    boolean_column_body,
    choice_column_body,
    datetime_column_body,
    label,
    lookup_relationship_body,
    string_column_body,
)
from dynamics_bridge.dataverse.pacing import AppUserPool
from dynamics_bridge.dataverse.provision import apply_plan, check_metadata, plan
from dynamics_bridge.errors import InputError, PermanentError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.settings import DataverseSettings

pytestmark = pytest.mark.integration
MAPPING = load_mapping()


@pytest.fixture
def sandbox() -> Iterator[SandboxInfo]:
    with run_sandbox() as box:  # base language 1033, as a tenant set up in English
        yield box


def client_for(sandbox: SandboxInfo, **extra: object) -> DataverseClient:
    settings = DataverseSettings(
        url=sandbox.url,
        tenant_id="t",
        authority=sandbox.authority,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        ca_bundle=sandbox.ca_bundle,
        **extra,  # type: ignore[arg-type]
    )
    return DataverseClient(
        settings, session_for(settings), AppUserPool.single(msal_token_provider(settings))
    )


BOTH = (1033, SWEDISH)


def test_provision_against_an_english_base_environment_is_accepted_and_checks_clean(
    sandbox,
) -> None:
    c = client_for(sandbox, label_languages=[SWEDISH])
    steps = plan(c, MAPPING)
    apply_plan(c, steps, key_poll=0.01)
    assert check_metadata(c, MAPPING) == []
    contact = sandbox.dataverse.entity("contact")
    paid = next(a for a in contact["Attributes"] if a["LogicalName"] == "mbr_lastpaidon")
    assert paid["DateTimeBehavior"] == {"Value": "DateOnly"}
    codes = [x["LanguageCode"] for x in paid["DisplayName"]["LocalizedLabels"]]
    assert codes == [1033, SWEDISH]


def test_a_swedish_only_label_is_refused_where_the_base_language_is_english(sandbox) -> None:
    c = client_for(sandbox)
    with pytest.raises(PermanentError, match="label for base language code 1033 is not set"):
        c.schema.create_column("contact", string_column_body("mbr_x", "X"))  # 1053 only
    c.schema.create_column("contact", string_column_body("mbr_x", "X", languages=BOTH))


def relationship(merge: str) -> dict:
    body = lookup_relationship_body(
        "mbr_member_contact_mbr_note",
        referenced="contact",
        referenced_attribute="contactid",
        referencing="mbr_payment",
        lookup_schema_name="mbr_Other",
        display="Medlem",
        languages=BOTH,
    )
    body["CascadeConfiguration"]["Merge"] = merge
    return body


def test_a_relationship_to_contact_must_cascade_merge(sandbox) -> None:
    c = client_for(sandbox)
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    with pytest.raises(PermanentError, match="Cascade is the only valid option"):
        c.schema.create_relationship(relationship("NoCascade"))
    c.schema.create_relationship(relationship("Cascade"))


def test_a_yes_no_column_needs_its_options(sandbox) -> None:
    c = client_for(sandbox)
    old = {
        "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
        "SchemaName": "mbr_Flag",
        "DisplayName": label("Flagga", BOTH),
        "RequiredLevel": {"Value": "None"},
    }
    with pytest.raises(PermanentError, match="TrueOption and FalseOption"):
        c.schema.create_column("contact", old)
    c.schema.create_column("contact", boolean_column_body("mbr_Flag", "Flagga", languages=BOTH))


def test_a_date_only_column_needs_the_date_only_behaviour(sandbox) -> None:
    c = client_for(sandbox)
    old = datetime_column_body("mbr_Day", "Dag", date_only=True, languages=BOTH)
    del old["DateTimeBehavior"]  # as provision sent it: a user-local column shown as a date
    with pytest.raises(PermanentError, match="DateTimeBehavior UserLocal"):
        c.schema.create_column("contact", old)
    new = datetime_column_body("mbr_Day", "Dag", date_only=True, languages=BOTH)
    c.schema.create_column("contact", new)


def test_a_solution_refuses_names_and_choice_values_its_publisher_does_not_allow(
    sandbox,
) -> None:
    sandbox.dataverse.add_solution(
        "Union", publisher="union", prefix="uni", option_value_prefix=75250
    )
    c = client_for(sandbox, solution="Union")
    with pytest.raises(PermanentError, match="does not start with the customization prefix uni_"):
        c.schema.create_column("contact", string_column_body("mbr_x", "X", languages=BOTH))
    c.schema.create_column("contact", string_column_body("uni_x", "X", languages=BOTH))
    c.schema.create_column(
        "contact",
        {
            "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
            "SchemaName": "uni_Kind",
            "DisplayName": label("Sort", BOTH),
            "OptionSet": {"IsGlobal": False, "OptionSetType": "Picklist", "Options": []},
        },
    )
    outside = ChoiceOption(100000000, "Betald")
    with pytest.raises(PermanentError, match="outside the range 752500000-752509999"):
        c.schema.insert_choice_option("contact", "uni_kind", outside)
    c.schema.insert_choice_option("contact", "uni_kind", ChoiceOption(752500000, "Betald"))


def test_provision_stops_before_sending_what_the_solution_would_refuse(sandbox) -> None:
    sandbox.dataverse.add_solution(
        "Union", publisher="union", prefix="mbr", option_value_prefix=75250
    )
    c = client_for(sandbox, solution="Union")
    with pytest.raises(InputError, match="outside the option value range 752500000-752509999"):
        plan(c, MAPPING)
    assert sandbox.dataverse.entity("mbr_payment") is None


def test_the_provision_command_shows_types_solution_and_warnings(sandbox, monkeypatch) -> None:
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BRIDGE_DATAVERSE__SOLUTION", raising=False)
    plain = CliRunner().invoke(app, ["provision"])
    assert plain.exit_code == 0, plain.output
    assert "target: no solution; labels in 1033 (base), 1053" in plain.stdout
    assert "no solution set (BRIDGE_DATAVERSE__SOLUTION)" in plain.stderr
    assert "would create column mbr_memberno on contact (string, max 20)" in plain.stdout
    assert "would create column mbr_lastpaidon on contact (date only)" in plain.stdout
    monkeypatch.setenv("BRIDGE_DATAVERSE__SOLUTION", "MemberBridge")
    inside = CliRunner().invoke(app, ["provision"])
    assert inside.exit_code == 0, inside.output
    assert "target: solution MemberBridge (publisher memberbridge, prefix mbr_" in inside.stdout
    assert "no solution set" not in inside.stderr


def test_a_timed_out_create_is_read_back_and_provision_goes_on(sandbox, monkeypatch) -> None:
    """The sandbox applies the column, then the answer is lost: provision sees it exists."""
    import requests

    c = client_for(sandbox)
    steps = plan(c, MAPPING)
    real = c.transport.session.request
    lost: list[str] = []

    def lose_the_first_column_answer(method, url, **kwargs):
        answer = real(method, url, **kwargs)
        if method == "POST" and url.endswith("/Attributes") and not lost:
            lost.append(json.loads(kwargs["data"])["SchemaName"])
            raise requests.ReadTimeout("the answer was lost")
        return answer

    monkeypatch.setattr(c.transport.session, "request", lose_the_first_column_answer)
    apply_plan(c, steps, key_poll=0.01)
    assert lost
    assert check_metadata(c, MAPPING) == []


def test_an_existing_key_under_another_name_is_reported_not_planned_again(
    sandbox, monkeypatch
) -> None:
    """An Innofactor-style contact: the member number already has its key, named their way."""
    c = client_for(sandbox)
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    contact = sandbox.dataverse.entity("contact")
    contact["Keys"] = [
        {**k, "SchemaName": "inn_membernumber", "LogicalName": "inn_membernumber"}
        for k in contact["Keys"]
    ]
    sandbox.dataverse.define_entity(contact)
    c.schema.entity("contact", refresh=True)
    assert check_metadata(c, MAPPING, source="dataverse.yaml") == [
        "contact: the alternate key on mbr_memberno is named inn_membernumber, the mapping says "
        "mbr_memberno_key (provision would plan a second key, which Dataverse refuses): rename "
        "key_name to inn_membernumber in dataverse.yaml (member.key_name)"
    ]
    assert plan(c, MAPPING) == []
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["provision"])
    assert result.exit_code == 0, result.output
    assert "rename key_name to inn_membernumber" in result.stderr
    assert "0 step(s)" in result.stdout


def test_a_second_key_on_the_same_column_is_refused_as_dataverse_refuses_it(sandbox) -> None:
    c = client_for(sandbox)
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    second = alternate_key_body("mbr_other_key", ["mbr_memberno"], languages=BOTH)
    with pytest.raises(PermanentError, match=r"0x80060894.*selected attributes already exists"):
        c.schema.create_alternate_key("contact", second)
    same_name = alternate_key_body("mbr_memberno_key", ["mbr_firstpaidon"], languages=BOTH)
    with pytest.raises(PermanentError, match=r"0x80060893.*mbr_memberno_key already exists"):
        c.schema.create_alternate_key("contact", same_name)
    keys = sandbox.dataverse.entity("contact")["Keys"]
    assert [k["SchemaName"] for k in keys] == ["mbr_memberno_key"]


def test_creating_a_table_that_exists_is_refused_and_never_replaces_it(sandbox) -> None:
    c = client_for(sandbox)
    steps = plan(c, MAPPING)
    apply_plan(c, steps, key_poll=0.01)
    columns = len(sandbox.dataverse.entity("mbr_payment")["Attributes"])
    (table,) = [s for s in steps if s.kind == "table" and s.name == "mbr_payment"]
    with pytest.raises(PermanentError, match=r"0x80044363.*not unique"):
        c.schema.create_table(table.body)
    assert len(sandbox.dataverse.entity("mbr_payment")["Attributes"]) == columns


def test_a_plan_applied_twice_finds_everything_there_and_sends_nothing_twice(sandbox) -> None:
    """Two admins (or a re-run after a crash) apply the same plan: each create is refused as
    already there, read back, and counts as done; nothing is replaced or duplicated."""
    c = client_for(sandbox)
    steps = plan(c, MAPPING)
    apply_plan(c, steps, key_poll=0.01)
    payment = sandbox.dataverse.entity("mbr_payment")
    apply_plan(c, steps, key_poll=0.01)
    assert sandbox.dataverse.entity("mbr_payment") == payment
    assert len(sandbox.dataverse.entity("contact")["Keys"]) == 1
    assert check_metadata(c, MAPPING) == []


def test_a_timed_out_table_and_key_create_are_read_back_and_provision_goes_on(
    sandbox, monkeypatch
) -> None:
    """The sandbox creates the table and the key, then both answers are lost: provision reads
    each back instead of sending it again (which the sandbox would refuse)."""
    import requests

    c = client_for(sandbox)
    steps = plan(c, MAPPING)
    real = c.transport.session.request
    lost: list[str] = []

    def lose_table_and_key_answers(method, url, **kwargs):
        answer = real(method, url, **kwargs)
        if method == "POST" and (url.endswith("/EntityDefinitions") or url.endswith("/Keys")):
            lost.append(json.loads(kwargs["data"])["SchemaName"])
            raise requests.ReadTimeout("the answer was lost")
        return answer

    monkeypatch.setattr(c.transport.session, "request", lose_table_and_key_answers)
    apply_plan(c, steps, key_poll=0.01)
    assert "mbr_Payment" in lost or "mbr_payment" in lost
    assert "mbr_memberno_key" in lost
    assert len(lost) == len({s.name for s in steps if s.kind in ("table", "key")})
    assert check_metadata(c, MAPPING) == []


def test_a_choice_column_with_options_outside_the_publishers_range_is_refused(sandbox) -> None:
    """The range holds inside a column create body too, not only for InsertOptionValue."""
    sandbox.dataverse.add_solution(
        "Union", publisher="union", prefix="mbr", option_value_prefix=75250
    )
    c = client_for(sandbox, solution="Union")

    def kind_column(value: int) -> dict:
        return choice_column_body(
            "mbr_Kind", "Sort", options=[ChoiceOption(value, "Betald")], languages=BOTH
        )

    with pytest.raises(PermanentError, match="option value 100000000 is outside the range"):
        c.schema.create_column("contact", kind_column(100000000))
    assert sandbox.dataverse.entity("contact") is not None
    attributes = {a["LogicalName"] for a in sandbox.dataverse.entity("contact")["Attributes"]}
    assert "mbr_kind" not in attributes
    c.schema.create_column("contact", kind_column(752500000))
