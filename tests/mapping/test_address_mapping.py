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
