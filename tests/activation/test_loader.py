"""The activation files: loaded with the mapping's prefix, errors by file:line:column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dynamics_bridge.activation.loader import activation_configured, load_activation
from dynamics_bridge.app.schema import MAPPING_MODELS
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping.loader import MAPPINGS_DIR


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for stem in ("apsis", "triggers", "segments"):
        shutil.copy(MAPPINGS_DIR / f"{stem}.yaml", tmp_path / f"{stem}.yaml")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_shipped_files_load_with_the_mapping_prefix(config) -> None:
    assert config.apsis.profile_key.column == "mbr_memberno"
    assert config.triggers.outbox.payload_column == "mbr_triggers"
    assert {"onboarding", "at_risk", "lapsed", "pays_autogiro", "engagement_high"} <= set(
        config.segments.segments
    )


def test_each_file_has_a_json_schema_for_editors() -> None:
    assert {"apsis", "triggers", "segments"} <= set(MAPPING_MODELS)
    for stem in ("apsis", "triggers", "segments"):
        assert (MAPPINGS_DIR / "schema" / f"{stem}.schema.json").is_file()


def test_a_bad_rule_is_reported_with_its_file_line_and_column(mapping, files) -> None:
    edit(
        files / "segments.yaml",
        '{column: "{prefix}_arrears", gt: 0}',
        '{column: "{prefix}_arrears"}',
    )
    with pytest.raises(ConfigError) as caught:
        load_activation(mapping, files)
    (problem,) = caught.value.problems
    line = next(
        n
        for n, text in enumerate((files / "segments.yaml").read_text().splitlines(), 1)
        if '{column: "{prefix}_arrears"}' in text
    )
    assert problem.startswith(f"{files / 'segments.yaml'}:{line}:")
    assert "exactly one of" in problem


def test_a_name_another_file_lacks_is_a_problem_naming_both(mapping, files) -> None:
    edit(files / "apsis.yaml", "  welcome:", "  welcomed:")
    edit(files / "segments.yaml", '"{prefix}_joinedon", days: 90', '"{prefix}_startdate", days: 90')
    with pytest.raises(ConfigError) as caught:
        load_activation(mapping, files)
    assert sorted(caught.value.problems) == [
        "segments.yaml: segments.onboarding.rule: mbr_startdate is not a member column in "
        "dataverse.yaml",
        "triggers.yaml: triggers.welcome: no event 'welcome' in apsis.yaml events",
    ]


def test_without_the_files_activation_is_simply_off(tmp_path) -> None:
    assert not activation_configured(tmp_path)
    assert activation_configured(MAPPINGS_DIR)


def test_a_renamed_welcome_trigger_still_fills_the_first_paid_column(mapping, files) -> None:
    edit(files / "triggers.yaml", "  welcome:\n", "  hello_member:\n    event: welcome\n")
    config = load_activation(mapping, files)
    assert config.triggers.triggers["hello_member"].first_payment


def test_a_first_paid_column_without_a_first_payment_trigger_is_a_problem(mapping, files) -> None:
    edit(files / "triggers.yaml", "    first_payment: true\n", "")
    with pytest.raises(ConfigError) as caught:
        load_activation(mapping, files)
    assert caught.value.problems == [
        "triggers.yaml: first_paid_column: no trigger has first_payment: true to fill it"
    ]


def test_the_full_run_interval_defaults_to_a_day_and_is_configurable(mapping, files) -> None:
    assert load_activation(mapping, files).segments.full_run_hours == 24
    edit(files / "segments.yaml", "full_run_hours: 24", "full_run_hours: 6")
    assert load_activation(mapping, files).segments.full_run_hours == 6
    edit(files / "segments.yaml", "full_run_hours: 6", "full_run_hours: 0")
    with pytest.raises(ConfigError):
        load_activation(mapping, files)
