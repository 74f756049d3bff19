"""retention.yaml: what the retention analytics may read and write, checked against
dataverse.yaml, and never a leaving reason on its way to APSIS."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config, parse_config
from dynamics_bridge.mapping.retention import (
    FEATURE_GROUPS,
    RetentionFile,
    cross_check,
    private_columns,
)

MAPPING = load_mapping()
PREFIX = MAPPING.publisher_prefix


def shipped() -> RetentionFile:
    return load_config(RetentionFile, MAPPINGS_DIR / "retention.yaml", prefix=PREFIX)


def parse(text: str) -> RetentionFile:
    return parse_config(RetentionFile, text, name="retention.yaml", prefix=PREFIX)


MINIMAL = """
version: 1
churn: {risk_column: "{prefix}_churnrisk"}
themes: {theme_column: "{prefix}_winbacktheme"}
"""


def activation(file: str = "", old: str = "", new: str = "") -> ActivationConfig:
    """The shipped activation files, one of them with one change."""
    folder = MAPPINGS_DIR
    if file:
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp())
        for name in ("apsis.yaml", "triggers.yaml", "segments.yaml"):
            shutil.copy(MAPPINGS_DIR / name, folder / name)
        text = (folder / file).read_text(encoding="utf-8")
        assert old in text
        (folder / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_activation(MAPPING, folder)


def test_the_shipped_file_reads_and_names_only_columns_dataverse_yaml_declares() -> None:
    config = shipped()
    # the advisor's task columns live in dataverse.yaml's tasks section
    assert cross_check(config, MAPPING, activation()) == []
    assert config.churn.risk_column == "mbr_churnrisk"


def test_the_feature_groups_are_the_analytics_own() -> None:
    pytest.importorskip("sklearn")
    from dynamics_bridge.retention.features import GROUPS

    assert FEATURE_GROUPS == GROUPS


def test_feature_groups_are_opt_in_and_demographics_is_left_out_by_default() -> None:
    assert "demographics" not in parse(MINIMAL).feature_groups
    assert "demographics" not in shipped().feature_groups


def test_an_unknown_feature_group_is_refused_with_its_place() -> None:
    with pytest.raises(ConfigError, match=r"retention.yaml:\d+:\d+.*feature_groups"):
        parse(MINIMAL + "feature_groups: [payments, religion]\n")


def test_a_group_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        parse(MINIMAL + "feature_groups: [payments, payments]\n")


def test_a_column_dataverse_yaml_lacks_is_named_with_its_entry() -> None:
    config = parse(MINIMAL.replace("{prefix}_churnrisk", "{prefix}_churnriks"))
    problems = cross_check(config, MAPPING)
    assert any(
        p.startswith("retention.yaml: churn.risk_column: 'mbr_churnriks' is not a member column")
        for p in problems
    ), problems


def test_a_chosen_group_without_its_columns_is_a_problem() -> None:
    config = parse(MINIMAL + "feature_groups: [payments, engagement, demographics]\n")
    problems = cross_check(config, MAPPING)
    assert any("'engagement' is chosen but history.activity" in p for p in problems)
    assert any("'demographics' is chosen but history.birthdate" in p for p in problems)


def test_activity_must_be_a_related_table_with_dated_rows() -> None:
    config = parse(MINIMAL + "history: {activity: [events, employer, nosuch]}\n")
    problems = cross_check(config, MAPPING)
    assert any("related table 'employer' has no count" in p for p in problems)
    assert any("'nosuch' is not a related table" in p for p in problems)


def test_an_unknown_choice_set_is_a_problem() -> None:
    config = parse(
        MINIMAL
        + 'history: {leaving_reason: {column: "{prefix}_leavingreason", choices: why_left}}\n'
    )
    assert any("choice set 'why_left'" in p for p in cross_check(config, MAPPING))


def test_an_apsis_attribute_carrying_a_leaving_reason_is_refused() -> None:
    config = shipped()
    assert private_columns(config) == {"mbr_leavingreason", "mbr_leavingtext", "mbr_churnreasons"}
    leaking = activation(
        "apsis.yaml",
        "attributes:\n",
        'attributes:\n  why_left: {discriminator: x.why, column: "{prefix}_leavingtext"}\n',
    )
    assert cross_check(config, MAPPING, leaking) == [
        "apsis.yaml: attributes.why_left.column: 'mbr_leavingtext' is a leaving reason or churn "
        "reasons column (retention.yaml); reasons never go to APSIS, not as an attribute, a "
        "field or a tag"
    ]


def test_a_reminder_field_or_a_segment_rule_on_a_reason_column_is_refused_too() -> None:
    field = activation(
        "segments.yaml",
        '"{prefix}_winbackmessage": theme_message}',
        '"{prefix}_winbackmessage": theme_message, "{prefix}_churnreasons": why}',
    )
    (problem,) = cross_check(shipped(), MAPPING, field)
    assert problem.startswith("segments.yaml: reminders.winback.fields: 'mbr_churnreasons'")
    rule = activation(
        "segments.yaml",
        'pays_swish:    {rule: {column: "{prefix}_paymentmethod", eq: swish}}',
        'pays_swish:    {rule: {column: "{prefix}_leavingreason", eq: too_expensive}}',
    )
    problems = cross_check(shipped(), MAPPING, rule)
    assert any(p.startswith("segments.yaml: segments.pays_swish.rule") for p in problems)


def themes(named: str) -> str:
    return MINIMAL.replace(
        'themes: {theme_column: "{prefix}_winbacktheme"}',
        "themes:\n  theme_column: x\n  named:\n" + named,
    )


def test_theme_names_must_be_distinct() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        parse(themes("    t1: {name: price, priority: 1}\n    t2: {name: price, priority: 2}\n"))


def test_a_theme_name_is_a_short_word_since_it_goes_to_apsis() -> None:
    with pytest.raises(ConfigError, match=r"named\.t1\.name"):
        parse(themes("    t1: {name: 'Pris <b>', priority: 1}\n"))


def test_a_theme_is_written_as_its_admin_name_else_its_id() -> None:
    config = parse(themes("    t1: {name: price, priority: 1}\n"))
    assert (config.theme_name("t1"), config.theme_name("t7")) == ("price", "t7")


def test_an_owner_is_a_team_or_a_queue_not_both() -> None:
    with pytest.raises(ConfigError, match="exactly one of 'team' or 'queue'"):
        parse(MINIMAL + "advisor: {owner: {team: a, queue: b}}\n")
