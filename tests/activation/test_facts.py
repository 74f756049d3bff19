"""Derived member facts: age and tenure in whole calendar years, and the bands they fall in;
county and municipality by their official names, member type and payment method."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamics_bridge.activation.config import (
    FACT_NAMES,
    Attribute,
    Facts,
    SegmentRule,
    cross_check,
)
from dynamics_bridge.activation.facts import band, birth_date, member_facts, whole_years
from dynamics_bridge.activation.segments import SegmentEvaluator
from dynamics_bridge.personnummer import luhn_check_digit

TODAY = date(2026, 11, 28)
FACTS = Facts(birth_date_column="born", personnummer_column="pnr", joined_column="joined")


def pnr(yymmdd: str, serial: str = "123") -> str:
    """A 10-digit personnummer with a correct check digit (samordningsnummer: day + 60)."""
    return f"{yymmdd}-{serial}{luhn_check_digit(yymmdd + serial)}"


def test_an_age_counts_whole_years_on_the_calendar() -> None:
    assert whole_years(date(1996, 11, 28), TODAY) == 30
    assert whole_years(date(1996, 11, 29), TODAY) == 29  # the birthday is tomorrow
    assert whole_years(TODAY, TODAY) == 0


def test_a_leap_day_birthday_comes_of_age_on_1_march_in_other_years() -> None:
    born = date(2008, 2, 29)
    assert whole_years(born, date(2026, 2, 28)) == 17
    assert whole_years(born, date(2026, 3, 1)) == 18
    assert whole_years(born, date(2028, 2, 29)) == 20


@given(st.dates(min_value=date(1900, 1, 1), max_value=TODAY), st.integers(0, 400))
def test_age_never_falls_and_rises_by_one_a_year(born: date, days: int) -> None:
    later = TODAY + timedelta(days=days)
    assert 0 <= whole_years(born, later) - whole_years(born, TODAY) <= 2
    assert whole_years(born, later) >= whole_years(born, TODAY)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0, "0-17"),
        (17, "0-17"),
        (18, "18-25"),
        (25, "18-25"),
        (65, "51-65"),
        (66, "66+"),
        (99, "66+"),
    ],
)
def test_an_age_band_is_named_by_its_first_and_last_age(value: int, label: str) -> None:
    assert band(value, [18, 26, 36, 51, 66]) == label


def test_a_tenure_band_of_one_year_is_that_year() -> None:
    bounds = [1, 3, 5, 10]
    assert [band(y, bounds) for y in (0, 1, 2, 3, 4, 5, 9, 10, 40)] == [
        "0",
        "1-2",
        "1-2",
        "3-4",
        "3-4",
        "5-9",
        "5-9",
        "10+",
        "10+",
    ]


def test_the_birth_date_column_comes_before_the_personnummer() -> None:
    member = {"born": date(1990, 5, 17), "pnr": pnr("800101")}
    assert birth_date(member, FACTS, TODAY) == date(1990, 5, 17)
    assert birth_date({"born": None, "pnr": pnr("800101")}, FACTS, TODAY) == date(1980, 1, 1)
    assert birth_date({"born": datetime(1990, 5, 17, 0, 0)}, FACTS, TODAY) == date(1990, 5, 17)


def test_a_samordningsnummer_gives_the_birth_day_less_60() -> None:
    assert birth_date({"pnr": pnr("850677")}, FACTS, TODAY) == date(1985, 6, 17)


@pytest.mark.parametrize("raw", ["", "   ", "8001011234", "19800101-0000", "not a number", 12])
def test_an_empty_or_invalid_personnummer_gives_no_age_and_no_error(raw: object) -> None:
    assert member_facts({"pnr": raw}, FACTS, TODAY) == {}


def test_the_facts_of_a_member_with_every_source() -> None:
    member = {"pnr": pnr("960415"), "joined": date(2021, 11, 28)}
    assert member_facts(member, FACTS, TODAY) == {
        "age": 30,
        "age_band": "26-35",
        "tenure_years": 5,
        "tenure_band": "5-9",
    }


def test_a_member_who_joins_in_the_future_has_no_tenure_yet() -> None:
    assert "tenure_years" not in member_facts({"joined": date(2027, 1, 1)}, FACTS, TODAY)


def test_no_source_configured_gives_no_facts() -> None:
    assert member_facts({"pnr": pnr("960415"), "joined": TODAY}, Facts(), TODAY) == {}


def test_bands_must_rise() -> None:
    with pytest.raises(ValueError, match="rising"):
        Facts(age_bands=[26, 18])
    with pytest.raises(ValueError, match="rising"):
        Facts(tenure_bands=[0, 1])


def test_check_names_a_fact_source_that_is_not_a_member_column(mapping, config) -> None:
    facts = config.segments.facts.model_copy(update={"birth_date_column": "mbr_birthdate"})
    segments = config.segments.model_copy(update={"facts": facts})
    problems = cross_check(config.model_copy(update={"segments": segments}), mapping)
    assert problems == [
        "segments.yaml: facts.birth_date_column: mbr_birthdate is not a member column in "
        "dataverse.yaml"
    ]


def test_the_shipped_files_derive_age_from_the_personnummer_and_tenure_from_joining(
    config,
) -> None:
    facts = config.segments.facts
    assert (facts.personnummer_column, facts.joined_column) == ("governmentid", "mbr_joinedon")
    assert {"age_band", "tenure_band"} <= {
        a.computed for a in config.apsis.attributes.values() if a.computed
    }


# -- where the member is registered, member type, payment method ------------------------------

PLACE = Facts(county_column="county", municipality_column="kommun", member_type_column="type")


def test_the_codes_give_the_county_and_municipality_by_their_official_names() -> None:
    member = {"county": "14", "kommun": "1480"}
    assert member_facts(member, PLACE, TODAY) == {
        "county_code": "14",
        "county": "Västra Götalands län",
        "region": "Västra Götalands län",
        "municipality_code": "1480",
        "municipality": "Göteborg",
    }


def test_the_region_is_the_county() -> None:
    facts = member_facts({"county": "25", "kommun": "2584"}, PLACE, TODAY)
    assert (facts["region"], facts["municipality"]) == ("Norrbottens län", "Kiruna")


def test_without_a_county_code_the_county_is_the_municipalitys_first_two_digits() -> None:
    facts = member_facts({"kommun": "1280"}, PLACE, TODAY)
    assert (facts["county_code"], facts["county"], facts["municipality"]) == (
        "12",
        "Skåne län",
        "Malmö",
    )
    only_municipality = Facts(municipality_column="kommun")
    assert member_facts({"kommun": "0180"}, only_municipality, TODAY)["region"] == "Stockholms län"


def test_an_unknown_code_gives_the_code_and_no_name() -> None:
    facts = member_facts({"county": "99", "kommun": "0199"}, PLACE, TODAY)
    assert facts == {"county_code": "99", "municipality_code": "0199"}
    assert member_facts({"county": "ST"}, PLACE, TODAY) == {"county_code": "ST"}


@pytest.mark.parametrize("value", [None, "", "  ", True, 1.5, ["01"]])
def test_an_empty_or_odd_code_gives_no_region_and_no_error(value: object) -> None:
    assert member_facts({"county": value, "kommun": value}, PLACE, TODAY) == {}


def test_a_code_is_read_as_text_trimmed_and_a_number_zero_padded() -> None:
    facts = member_facts({"county": " 01 ", "kommun": 180}, PLACE, TODAY)
    assert (facts["county"], facts["municipality"]) == ("Stockholms län", "Stockholm")


def test_member_type_and_payment_method_are_their_choice_words() -> None:
    member = {"type": "student", "method": "autogiro"}
    assert member_facts(member, PLACE, TODAY, method_column="method") == {
        "member_type": "student",
        "payment_method": "autogiro",
    }
    assert "payment_method" not in member_facts(member, PLACE, TODAY)  # no method column given


def test_a_choice_value_without_a_word_gives_no_fact() -> None:
    member = {"type": 100000099, "method": None}
    assert member_facts(member, PLACE, TODAY, method_column="method") == {}


def test_the_new_facts_are_names_a_rule_and_an_attribute_may_use() -> None:
    names = {"county_code", "county", "region", "municipality_code", "municipality"}
    assert names | {"member_type", "payment_method"} <= set(FACT_NAMES)
    assert Attribute(discriminator="a", computed="region").computed == "region"
    with pytest.raises(ValueError, match="computed"):
        Attribute(discriminator="a", computed="kommun")  # type: ignore[arg-type]


def test_check_names_a_region_or_member_type_source_that_is_not_a_member_column(
    mapping, config
) -> None:
    facts = config.segments.facts.model_copy(
        update={"county_column": "mbr_lan", "member_type_column": "mbr_kind"}
    )
    segments = config.segments.model_copy(update={"facts": facts})
    problems = cross_check(config.model_copy(update={"segments": segments}), mapping)
    assert problems == [
        "segments.yaml: facts.county_column: mbr_lan is not a member column in dataverse.yaml",
        "segments.yaml: facts.member_type_column: mbr_kind is not a member column in "
        "dataverse.yaml",
    ]


def test_a_rule_on_a_region_passes_the_check(mapping, config) -> None:
    rule = {"column": "region", "eq": "Skåne län"}
    segment = SegmentRule.model_validate({"rule": rule, "tag": "onboarding"})
    segments = config.segments.model_copy(
        update={"segments": {**config.segments.segments, "in_skane": segment}}
    )
    assert cross_check(config.model_copy(update={"segments": segments}), mapping) == []


def test_the_shipped_files_push_region_and_member_type_from_the_stored_codes(
    mapping, config
) -> None:
    facts = config.segments.facts
    assert (facts.county_column, facts.municipality_column, facts.member_type_column) == (
        "mbr_countycode",
        "mbr_municipalitycode",
        "mbr_membertype",
    )
    assert mapping.address is not None
    assert (mapping.address.county_code, mapping.address.municipality_code) == (
        "mbr_countycode",
        "mbr_municipalitycode",
    )
    assert set(mapping.choices["member_type"].options) == {
        "yrkesverksam",
        "student",
        "pensionar",
        "egenforetagare",
    }
    evaluator = SegmentEvaluator(config, mapping)
    row = {
        "mbr_memberno": "1001",
        "mbr_countycode": "14",
        "mbr_municipalitycode": "1480",
        "mbr_membertype": 100000001,
        "mbr_paymentmethod": 100000000,
    }
    attributes = evaluator.evaluate(evaluator.view(row), None, TODAY).attributes
    assert (attributes["region"], attributes["member_type"]) == ("Västra Götalands län", "student")
    assert attributes["payment_method"] == "swish"
