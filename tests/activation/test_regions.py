"""The official list of Swedish counties and municipalities (SCB, "Län och kommuner i
kodnummerordning"): complete, and each municipality under its county."""

from __future__ import annotations

import re

import pytest

from dynamics_bridge.activation.regions import (
    COUNTIES,
    MUNICIPALITIES,
    county_name,
    municipality_name,
)


def test_sweden_has_21_counties_and_290_municipalities() -> None:
    assert len(COUNTIES) == 21
    assert len(MUNICIPALITIES) == 290


def test_every_code_has_its_digits_and_every_name_is_distinct() -> None:
    assert all(re.fullmatch(r"\d{2}", code) for code in COUNTIES)
    assert all(re.fullmatch(r"\d{4}", code) for code in MUNICIPALITIES)
    assert len(set(COUNTIES.values())) == 21
    assert len(set(MUNICIPALITIES.values())) == 290
    assert all(name.endswith(" län") for name in COUNTIES.values())


def test_every_municipality_lies_in_a_county_and_every_county_has_some() -> None:
    assert {code[:2] for code in MUNICIPALITIES} == set(COUNTIES)


def test_the_county_codes_are_scbs() -> None:
    assert sorted(COUNTIES) == [
        *("01", "03", "04", "05", "06", "07", "08", "09", "10", "12", "13", "14"),
        *("17", "18", "19", "20", "21", "22", "23", "24", "25"),
    ]


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("01", "Stockholms län"),
        ("09", "Gotlands län"),
        ("12", "Skåne län"),
        ("14", "Västra Götalands län"),
        ("25", "Norrbottens län"),
    ],
)
def test_known_counties(code: str, name: str) -> None:
    assert county_name(code) == name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("0114", "Upplands Väsby"),
        ("0180", "Stockholm"),
        ("0330", "Knivsta"),
        ("0331", "Heby"),
        ("0380", "Uppsala"),
        ("0980", "Gotland"),
        ("1280", "Malmö"),
        ("1480", "Göteborg"),
        ("2023", "Malung-Sälen"),
        ("2584", "Kiruna"),
    ],
)
def test_known_municipalities(code: str, name: str) -> None:
    assert municipality_name(code) == name


def test_a_code_not_in_the_list_has_no_name() -> None:
    assert county_name("02") is None
    assert county_name("1") is None
    assert municipality_name("1917") is None
    assert municipality_name("180") is None


def test_the_list_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        COUNTIES["26"] = "Nytt län"  # type: ignore[index]
