"""The mapping's ``address`` section: every column it names is a declared member column of the
right type, and the status choice set has every status the refresh writes."""

from __future__ import annotations

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import DEFAULT_MAPPING, load_mapping, parse_mapping

TEXT = DEFAULT_MAPPING.read_text(encoding="utf-8")


def test_default_mapping_has_the_address_refresh() -> None:
    address = load_mapping().address
    assert address is not None
    assert address.protected == "mbr_protectedidentity"
    assert "address1_city" in address.written_columns()


def test_undeclared_column_is_named() -> None:
    text = TEXT.replace('checked_on: "{prefix}_sparcheckedon"', "checked_on: mbr_nosuchcolumn")
    with pytest.raises(ConfigError, match="mbr_nosuchcolumn is not a declared member column"):
        parse_mapping(text)


def test_protected_flag_must_be_boolean() -> None:
    text = TEXT.replace('protected: "{prefix}_protectedidentity"', "protected: address1_city")
    with pytest.raises(ConfigError, match="address1_city must be a boolean column"):
        parse_mapping(text)


def test_status_choice_set_needs_every_status() -> None:
    text = TEXT.replace("      not_found:    {value: 100000004, label: Saknas i SPAR}\n", "")
    with pytest.raises(ConfigError, match="needs an option 'not_found'"):
        parse_mapping(text)


def test_without_the_section_the_refresh_is_off() -> None:
    text = TEXT[: TEXT.index("\naddress:")]
    assert parse_mapping(text).address is None


def test_the_refresh_writes_the_county_and_municipality_codes() -> None:
    address = load_mapping().address
    assert address is not None
    assert {"mbr_countycode", "mbr_municipalitycode"} <= set(address.written_columns())


def test_a_code_column_must_be_declared_and_a_string_column() -> None:
    line = 'county_code: "{prefix}_countycode"'
    with pytest.raises(ConfigError, match="mbr_lan is not a declared member column"):
        parse_mapping(TEXT.replace(line, "county_code: mbr_lan"))
    with pytest.raises(ConfigError, match="mbr_deceasedon must be a string column"):
        parse_mapping(TEXT.replace(line, 'county_code: "{prefix}_deceasedon"'))


def test_a_code_column_must_hold_every_digit() -> None:
    text = TEXT.replace(
        '"{prefix}_municipalitycode": {type: string, max_length: 4,',
        '"{prefix}_municipalitycode": {type: string, max_length: 2,',
    )
    assert text != TEXT
    with pytest.raises(ConfigError, match="mbr_municipalitycode must hold 4 characters"):
        parse_mapping(text)


def test_the_code_columns_are_optional() -> None:
    text = TEXT.replace('  county_code: "{prefix}_countycode"', "").replace(
        '  municipality_code: "{prefix}_municipalitycode"', ""
    )
    address = parse_mapping(text).address
    assert address is not None
    assert (address.county_code, address.municipality_code) == (None, None)
    assert "mbr_countycode" not in address.written_columns()
