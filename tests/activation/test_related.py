"""Values from related tables: what is read for a set of members, and how the rows become each
member's ``<table>.<value>`` values (dataverse.yaml ``related``)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from dynamics_bridge.activation.config import (
    ActivationConfig,
    Attribute,
    CountComponent,
    SegmentRule,
    cross_check,
)
from dynamics_bridge.activation.related import assemble, member_columns, reads
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import ChoiceOption, ChoiceSet, RelatedTable

TODAY = date(2026, 11, 28)


def related_mapping(mapping: MappingFile) -> MappingFile:
    """The shipped mapping with an employer, memberships and event registrations as here."""
    related = {
        "employer": RelatedTable.model_validate(
            {
                "table": "account",
                "entity_set": "accounts",
                "id_column": "accountid",
                "lookup": "parentcustomerid",
                "columns": {"industry": "sic", "workplace": "name"},
            }
        ),
        "membership": RelatedTable.model_validate(
            {
                "table": "mbr_membership",
                "entity_set": "mbr_memberships",
                "id_column": "mbr_membershipid",
                "member_lookup": "mbr_contactid",
                "latest": "mbr_startdate",
                "columns": {
                    "type": {"column": "mbr_type", "choices": "membership_type"},
                    "start": "mbr_startdate",
                },
            }
        ),
        "events": RelatedTable.model_validate(
            {
                "table": "mbr_eventregistration",
                "entity_set": "mbr_eventregistrations",
                "id_column": "mbr_eventregistrationid",
                "member_lookup": "mbr_contactid",
                "filter": "mbr_attended eq true",
                "count": {"date_column": "mbr_eventdate", "window_days": 365},
            }
        ),
    }
    choices = {
        **mapping.choices,
        "membership_type": ChoiceSet(
            options={
                "ordinary": ChoiceOption(value=1, label="Ordinarie"),
                "student": ChoiceOption(value=2, label="Student"),
            }
        ),
    }
    return mapping.model_copy(
        update={"related": {**mapping.related, **related}, "choices": choices}
    )


def member(key: str, employer: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"contactid": f"id-{key}", "mbr_memberno": key}
    if employer:
        row["_parentcustomerid_value"] = employer
    return row


def test_a_member_read_carries_the_lookups_of_tables_reached_from_the_member(
    mapping: MappingFile,
) -> None:
    assert member_columns(related_mapping(mapping)) == ["_parentcustomerid_value"]
    assert member_columns(mapping.model_copy(update={"related": {}})) == []


def test_one_read_per_table_by_the_related_ids_or_the_member_ids(mapping: MappingFile) -> None:
    m = related_mapping(mapping)
    rows = [member("1", "acc-a"), member("2", "acc-a"), member("3")]
    by_name = {r.name: r for r in reads(m, rows, TODAY)}

    employer = by_name["employer"]
    assert (employer.by, employer.ids) == ("accountid", ("acc-a",))
    assert set(employer.select) == {"accountid", "sic", "name"}
    assert employer.filter is None

    membership = by_name["membership"]
    assert (membership.by, membership.ids) == ("_mbr_contactid_value", ("id-1", "id-2", "id-3"))
    assert {"mbr_type", "mbr_startdate", "_mbr_contactid_value"} <= set(membership.select)

    events = by_name["events"]
    assert events.filter == "(mbr_attended eq true) and mbr_eventdate ge 2025-11-28"


def test_rows_become_each_members_values_by_table_and_name(mapping: MappingFile) -> None:
    m = related_mapping(mapping)
    rows = [member("1", "acc-a"), member("2", "acc-b"), member("3")]
    found = {
        "employer": [
            {"accountid": "acc-a", "sic": "86.101", "name": "Sjukhuset"},
            {"accountid": "acc-b", "name": "Skolan"},
        ],
        "membership": [
            {"_mbr_contactid_value": "id-1", "mbr_type": 1, "mbr_startdate": "2019-01-01"},
            {"_mbr_contactid_value": "id-1", "mbr_type": 2, "mbr_startdate": "2024-09-01"},
            {"_mbr_contactid_value": "id-2", "mbr_type": 7, "mbr_startdate": "2020-05-01"},
        ],
        "events": [
            {"_mbr_contactid_value": "id-1", "mbr_eventdate": "2026-03-01"},
            {"_mbr_contactid_value": "id-1", "mbr_eventdate": "2026-11-28"},
            {"_mbr_contactid_value": "id-1", "mbr_eventdate": "2025-11-27"},  # outside the year
            {"_mbr_contactid_value": "id-2", "mbr_eventdate": None},
        ],
    }

    values = assemble(m, rows, found, TODAY)

    assert values["id-1"] == {
        "employer.industry": "86.101",
        "employer.workplace": "Sjukhuset",
        "membership.type": "student",  # the latest membership, its choice as a word
        "membership.start": "2024-09-01",
        "events.count": 2,
    }
    # No SNI code on the employer: no industry value; an unknown choice value stays a number.
    assert values["id-2"] == {
        "employer.workplace": "Skolan",
        "membership.type": 7,
        "membership.start": "2020-05-01",
        "events.count": 0,
    }
    # No employer and no rows: no values, but a count of 0.
    assert values["id-3"] == {"events.count": 0}


def test_a_lookup_to_a_row_that_was_not_read_gives_no_values(mapping: MappingFile) -> None:
    m = related_mapping(mapping)
    values = assemble(m, [member("1", "acc-gone")], {"employer": [], "events": []}, TODAY)
    assert values["id-1"] == {"events.count": 0}


def test_a_table_that_was_not_read_gives_no_values_not_even_a_count(mapping: MappingFile) -> None:
    # An optional table the environment lacks: its score part has no data (not a 0).
    m = related_mapping(mapping)
    assert assemble(m, [member("1", "acc-a")], {}, TODAY) == {"id-1": {}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"columns": {"a": "b"}}, "give 'lookup'"),
        ({"lookup": "x", "member_lookup": "y", "columns": {"a": "b"}}, "give 'lookup'"),
        ({"lookup": "x", "latest": "d", "columns": {"a": "b"}}, "for many rows"),
        ({"member_lookup": "y", "columns": {"a": "b"}}, "latest"),
        ({"lookup": "x"}, "give 'columns'"),
        ({"lookup": "x", "columns": {"count": "c"}}, "name the column otherwise"),
        ({"lookup": "x", "optional": True, "columns": {"a": "b"}}, "cannot be optional"),
    ],
)
def test_a_related_table_must_say_how_it_is_reached_and_what_it_gives(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RelatedTable.model_validate({"table": "t", "entity_set": "ts", "id_column": "tid", **body})


def test_rules_attributes_and_score_parts_may_name_related_values_the_mapping_gives(
    mapping: MappingFile, config: ActivationConfig
) -> None:
    rule = SegmentRule.model_validate({"rule": {"column": "employer.industry", "eq": "86.101"}})
    events = CountComponent(weight=10, column="events.count", full_at=3)
    configured = config.model_copy(
        update={
            "segments": config.segments.model_copy(
                update={
                    "segments": {**config.segments.segments, "healthcare": rule},
                    "engagement": config.segments.engagement.model_copy(update={"events": events}),
                }
            ),
            "apsis": config.apsis.model_copy(
                update={
                    "attributes": {
                        **config.apsis.attributes,
                        "membership_type": Attribute(discriminator="a", column="membership.type"),
                    },
                    "tags": {**config.apsis.tags, "healthcare": "t"},
                }
            ),
        }
    )
    assert cross_check(configured, related_mapping(mapping)) == []
    # Without the related tables in the mapping, each use is named.
    problems = cross_check(configured, mapping.model_copy(update={"related": {}}))
    assert any("segments.healthcare.rule: employer.industry is not" in p for p in problems)
    assert any("attributes.membership_type.column: membership.type" in p for p in problems)
    assert any("engagement.events.column: events.count" in p for p in problems)
