"""The address refresh's pure parts: whom to select, and which columns one answer changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.personnummer import Personnummer
from dynamics_bridge.registry import AddressRecord, PostalAddress
from dynamics_bridge.registry.refresh import address_values, plan_update, selection_queries

MAPPING = load_mapping()
ADDRESS = MAPPING.address
STATUSES = MAPPING.choices["register_status"]
AT = datetime(2026, 11, 23, 7, 30, 5, tzinfo=UTC)
PNR = Personnummer("191212121212")
STREET = PostalAddress("swedish", ("Storgatan 1",), postal_code="11122", city="STOCKHOLM")


def record(**changes: object) -> AddressRecord:
    base = AddressRecord(
        requested=PNR,
        personnummer=PNR,
        id_type="PERSONNUMMER",
        confidentiality_marked=False,
        protected_registration=False,
        marker_set_by_spar=False,
        protected_since=None,
        name=None,
        registered_address=STREET,
        special_address=None,
        foreign_address=None,
        contact_address=None,
        county_code=None,
        municipality_code=None,
        deregistration_code=None,
        deregistered_on=None,
        deceased_on=None,
        new_personnummer=None,
        last_changed=None,
        spar_uuid="u-1",
        looked_up_at=AT,
    )
    return replace(base, **changes)


def plan(current: dict, rec: AddressRecord | None, **kw: object) -> dict:
    return plan_update(
        current, ADDRESS, STATUSES, record=rec, looked_up_at=AT, transaction_id="u-1", **kw
    )


def test_selection_reasons_in_priority_order_with_odata_filters() -> None:
    queries = selection_queries(ADDRESS, AT)
    assert queries == [
        ("flagged", "mbr_addresscheck eq true"),
        ("returned_mail", "mbr_returnedmail eq true"),
        ("new_member", "createdon ge 2026-10-24T07:30:05Z and mbr_sparcheckedon eq null"),
        ("not_checked", "mbr_sparcheckedon lt 2025-11-23T07:30:05Z"),
    ]


def test_found_person_gets_address_status_audit_and_flags_cleared() -> None:
    changes = plan({"mbr_addresscheck": True}, record())
    assert changes == {
        "mbr_sparcheckedon": "2026-11-23T07:30:05Z",
        "mbr_spartransaction": "u-1",
        "mbr_addresscheck": False,
        "mbr_returnedmail": False,
        "mbr_registerstatus": 100000000,
        "mbr_protectedidentity": False,
        "address1_line1": "Storgatan 1",
        "address1_postalcode": "11122",
        "address1_city": "STOCKHOLM",
    }


def test_lines_the_new_address_lacks_are_cleared() -> None:
    current = {"address1_line2": "LGH 1101", "address1_country": "NORGE"}
    changes = plan(current, record())
    assert changes["address1_line2"] is None
    assert changes["address1_country"] is None


def test_unchanged_columns_are_left_out() -> None:
    current = plan({}, record())
    again = plan(current | {"mbr_sparcheckedon": "earlier", "mbr_spartransaction": "u-0"}, record())
    assert again == {"mbr_sparcheckedon": "2026-11-23T07:30:05Z", "mbr_spartransaction": "u-1"}


def test_protected_identity_writes_no_address_column_at_all() -> None:
    protected = record(
        confidentiality_marked=True, registered_address=None, name=None, spar_uuid="u-2"
    )
    changes = plan({"address1_line1": "Gömd väg 1"}, protected)
    assert changes["mbr_protectedidentity"] is True
    assert not [c for c in changes if c.startswith("address1_")]


def test_protected_identity_never_writes_an_address_even_if_a_record_had_one() -> None:
    changes = plan({}, record(protected_registration=True))
    assert not [c for c in changes if c.startswith("address1_")]


def test_failed_erase_keeps_the_check_flag() -> None:
    changes = plan(
        {"mbr_addresscheck": True}, record(confidentiality_marked=True), erase_failed=True
    )
    assert "mbr_addresscheck" not in changes  # stays True


def test_not_found_sets_the_status_and_leaves_the_address() -> None:
    changes = plan({"address1_line1": "Kvar 1"}, None)
    assert changes["mbr_registerstatus"] == 100000004
    assert not [c for c in changes if c.startswith("address1_")]
    assert "mbr_protectedidentity" not in changes


def test_deceased_date_written_only_when_complete() -> None:
    assert plan({}, record(deceased_on="2025-02-03"))["mbr_deceasedon"] == "2025-02-03"
    assert "mbr_deceasedon" not in plan({}, record(deceased_on="2025-02-00"))
    assert plan({}, record(deceased_on="2025-02-00"))["mbr_registerstatus"] == 100000001


def test_the_county_and_municipality_of_registration_are_written() -> None:
    changes = plan({}, record(county_code="14", municipality_code="1480"))
    assert (changes["mbr_countycode"], changes["mbr_municipalitycode"]) == ("14", "1480")
    stored = {"mbr_countycode": "14", "mbr_municipalitycode": "1480"}
    assert "mbr_countycode" not in plan(stored, record(county_code="14", municipality_code="1480"))
    moved = plan(stored, record(county_code="12", municipality_code="1280"))
    assert (moved["mbr_countycode"], moved["mbr_municipalitycode"]) == ("12", "1280")


def test_protected_identity_gets_no_codes_and_keeps_the_stored_ones() -> None:
    stored = {"mbr_countycode": "01", "mbr_municipalitycode": "0180"}
    # SPAR gives none for a protected person; even a record that had some writes none.
    for protected in (
        record(confidentiality_marked=True, registered_address=None),
        record(protected_registration=True, county_code="14", municipality_code="1480"),
    ):
        changes = plan(stored, protected)
        assert "mbr_countycode" not in changes
        assert "mbr_municipalitycode" not in changes


def test_a_code_spar_does_not_give_is_not_cleared() -> None:
    stored = {"mbr_countycode": "01", "mbr_municipalitycode": "0180"}
    changes = plan(stored, record(foreign_address=STREET, registered_address=None))
    assert "mbr_countycode" not in changes
    assert "mbr_municipalitycode" not in changes


def test_without_code_columns_in_the_mapping_no_code_is_written() -> None:
    address = ADDRESS.model_copy(update={"county_code": None, "municipality_code": None})
    changes = plan_update(
        {},
        address,
        STATUSES,
        record=record(county_code="14", municipality_code="1480"),
        looked_up_at=AT,
        transaction_id="u-1",
    )
    assert not {"mbr_countycode", "mbr_municipalitycode"} & set(changes)


@pytest.mark.parametrize(
    ("address", "lines"),
    [
        (
            PostalAddress("swedish", ("Box 77",), care_of="Facket", postal_code="1", city="X"),
            ("c/o Facket", "Box 77", None),
        ),
        (
            PostalAddress("international", ("a", "b", "c"), country="NORGE"),
            ("a", "b", "c"),
        ),
        (
            PostalAddress("international", ("a", "b", "c"), care_of="d", country="NORGE"),
            ("c/o d", "a", "b, c"),
        ),
    ],
)
def test_address_lines_fill_the_line_columns(address: PostalAddress, lines: tuple) -> None:
    values = address_values(address, ADDRESS.columns.model_dump())
    assert (values["address1_line1"], values["address1_line2"], values["address1_line3"]) == lines
