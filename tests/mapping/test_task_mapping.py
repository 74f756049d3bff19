"""The mapping's ``tasks`` section (Dataverse's standard task table and the bridge's columns on
it) and what retention.yaml's ``advisor`` may name there."""

from __future__ import annotations

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import DEFAULT_MAPPING, load_mapping, parse_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config, parse_config
from dynamics_bridge.mapping.retention import RetentionFile, cross_check

TEXT = DEFAULT_MAPPING.read_text(encoding="utf-8")
RETENTION = (MAPPINGS_DIR / "retention.yaml").read_text(encoding="utf-8")


def retention(text: str = RETENTION) -> RetentionFile:
    return parse_config(RetentionFile, text, name="retention.yaml", prefix="mbr")


def advisor_problems(mapping_text: str = TEXT, retention_text: str = RETENTION) -> list[str]:
    return [
        p
        for p in cross_check(retention(retention_text), parse_mapping(mapping_text))
        if "advisor" in p
    ]


def test_the_shipped_mapping_puts_tasks_in_the_standard_task_table() -> None:
    tasks = load_mapping().tasks
    assert tasks is not None
    assert (tasks.table, tasks.entity_set, tasks.id_column) == ("task", "tasks", "activityid")
    assert tasks.regarding_navigation == "regardingobjectid_contact_task"
    assert tasks.columns["mbr_retentionkey"].type == "string"
    assert tasks.columns["mbr_retentionkey"].max_length == 200
    assert tasks.columns["mbr_retentionoutcome"].choices == "retention_outcome"
    outcome = load_mapping().choices["retention_outcome"]
    assert {w: o.value for w, o in outcome.options.items()} == {
        "retained": 100000000,
        "leaving": 100000001,
        "no_answer": 100000002,
        "callback": 100000003,
    }


def test_the_shipped_files_agree() -> None:
    config = load_config(RetentionFile, MAPPINGS_DIR / "retention.yaml", prefix="mbr")
    assert config.advisor.key_column == "mbr_retentionkey"
    assert advisor_problems() == []


def test_a_task_column_with_an_unknown_choice_set_is_named() -> None:
    text = TEXT.replace("choices: retention_outcome, label: Utfall", "choices: outcome, label: U")
    with pytest.raises(ConfigError, match=r"tasks\.columns\.mbr_retentionoutcome\.choices"):
        parse_mapping(text)


def test_without_a_tasks_section_an_enabled_advisor_is_told_to_add_it() -> None:
    text = TEXT[: TEXT.index("\ntasks:")] + TEXT[TEXT.index("\n# Tables reached") :]
    assert parse_mapping(text).tasks is None
    (problem,) = advisor_problems(text)
    assert problem.startswith("retention.yaml: advisor: enabled, but dataverse.yaml has no tasks")
    assert "add it" in problem
    off = RETENTION.replace("advisor:\n  enabled: true", "advisor:\n  enabled: false")
    assert advisor_problems(text, off) == []


def test_the_key_column_must_be_a_text_column_of_the_task_table() -> None:
    missing = RETENTION.replace('key_column: "{prefix}_retentionkey"', "key_column: mbr_other")
    assert advisor_problems(retention_text=missing) == [
        "retention.yaml: advisor.key_column: 'mbr_other' is not a column of dataverse.yaml "
        "tasks.columns"
    ]
    wrong = RETENTION.replace(
        'key_column: "{prefix}_retentionkey"', 'key_column: "{prefix}_retentionoutcome"'
    )
    (problem,) = [p for p in advisor_problems(retention_text=wrong) if "key_column" in p]
    assert "must be a string column" in problem


def test_a_default_key_column_takes_the_mapping_s_prefix() -> None:
    text = RETENTION.replace('  key_column: "{prefix}_retentionkey"\n', "")
    assert retention(text).advisor.key_column == "mbr_retentionkey"  # the default, prefixed
    assert advisor_problems(retention_text=text) == []


def test_the_outcome_must_be_a_choice_column_of_the_task_table_with_its_set() -> None:
    member_column = RETENTION.replace(
        'outcome: {column: "{prefix}_retentionoutcome"', 'outcome: {column: "{prefix}_churnrisk"'
    )
    assert advisor_problems(retention_text=member_column) == [
        "retention.yaml: advisor.outcome: 'mbr_churnrisk' is not a column of dataverse.yaml "
        "tasks.columns"
    ]
    other_set = RETENTION.replace("choices: retention_outcome}", "choices: leaving_reason}")
    assert advisor_problems(retention_text=other_set) == [
        "retention.yaml: advisor.outcome: 'mbr_retentionoutcome' must be a choice column of set "
        "'leaving_reason' in dataverse.yaml tasks.columns"
    ]
