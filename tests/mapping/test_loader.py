"""Mapping files: errors name file, line and column; the prefix is configurable."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import DEFAULT_MAPPING, load_mapping, parse_mapping

DEFAULT_TEXT = DEFAULT_MAPPING.read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_default_mapping_loads_with_its_prefix() -> None:
    mapping = load_mapping()
    assert mapping.publisher_prefix == "mbr"
    assert mapping.payment.table == "mbr_payment"
    assert "mbr_paidthrough" in mapping.member.columns


def test_another_publisher_prefix_renames_every_custom_column() -> None:
    mapping = load_mapping(prefix="fack")
    assert mapping.member.key_column == "fack_memberno"
    assert mapping.payment.entity_set == "fack_payments"
    assert "governmentid" in mapping.member.columns  # standard columns keep their names


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nmember:\n  table: [contact\n")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert f"{path}:4:1" in str(caught.value) or f"{path}:3:" in str(caught.value)


def test_a_wrong_value_names_the_line_of_its_key() -> None:
    text = DEFAULT_TEXT.replace("period: year, by_method", "period: fortnight, by_method")
    with pytest.raises(ConfigError) as caught:
        parse_mapping(text, name="dataverse.yaml")
    line = line_of(text, "fortnight")
    assert any(p.startswith(f"dataverse.yaml:{line}:") for p in caught.value.problems), (
        caught.value.problems
    )


def test_an_unknown_key_is_refused_with_its_place() -> None:
    text = DEFAULT_TEXT.replace("  id_column: contactid", "  id_column: contactid\n  colour: red")
    with pytest.raises(ConfigError) as caught:
        parse_mapping(text, name="m.yaml")
    line = line_of(text, "colour: red")
    assert any(f"m.yaml:{line}:" in p and "colour" in p for p in caught.value.problems)


def test_a_rule_for_an_undeclared_column_is_refused() -> None:
    text = DEFAULT_TEXT.replace(
        '"{prefix}_lastfailedon":  {date: occurred_at}',
        '"{prefix}_lastfailedat":  {date: occurred_at}',
    )
    with pytest.raises(ConfigError, match="mbr_lastfailedat: not a declared member column"):
        parse_mapping(text)


def test_a_choice_option_that_does_not_exist_is_refused() -> None:
    text = DEFAULT_TEXT.replace(
        "{set: payment_status, value: refunded}", "{set: payment_status, value: returned}"
    )
    with pytest.raises(ConfigError, match="'returned' is not an option of payment_status"):
        parse_mapping(text)


def test_an_unknown_event_kind_is_refused() -> None:
    text = DEFAULT_TEXT.replace("  invoice.ended: {}", "  invoice.lost: {}")
    with pytest.raises(ConfigError, match=r"rules\.invoice\.lost"):
        parse_mapping(text)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_mapping(tmp_path / "nope.yaml")


def test_problems_across_sections_are_reported_one_each_at_their_own_place() -> None:
    text = DEFAULT_TEXT.replace(
        '"{prefix}_lastfailedon":  {date: occurred_at}',
        '"{prefix}_lastfailedat":  {date: occurred_at}',
    ).replace("{set: payment_status, value: refunded}", "{set: payment_status, value: returned}")
    text = text.replace('checked_on: "{prefix}_sparcheckedon"', "checked_on: mbr_nosuchcolumn")
    with pytest.raises(ConfigError) as caught:
        parse_mapping(text, name="m.yaml")
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert not any("(root)" in p or "; " in p for p in problems), problems
    expected = {
        "lastfailedat": "mbr_lastfailedat: not a declared member column",
        "value: returned": "'returned' is not an option of payment_status",
        "checked_on: mbr_nosuchcolumn": "mbr_nosuchcolumn is not a declared member column",
    }
    for needle, message in expected.items():
        line = line_of(text, needle)
        assert any(p.startswith(f"m.yaml:{line}:") and message in p for p in problems), (
            needle,
            problems,
        )
