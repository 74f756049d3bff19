"""The retention run: train, themes, score and report over one reading of the history, with
models versioned, only changed columns written, nothing written in a dry run or by a refused
step, and a model that does not beat the baseline never used."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import pytest

pytest.importorskip("sklearn")

from dynamics_bridge.app.retention import CHURN, THEMES, RetentionRun, model_state, run_steps
from dynamics_bridge.errors import InputError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config
from dynamics_bridge.mapping.retention import RetentionFile
from dynamics_bridge.ops.artifacts import MemoryArtifacts
from dynamics_bridge.retention.records import MemberHistory
from dynamics_bridge.retention.synthetic import SyntheticRegister, generate

TODAY = date(2026, 11, 28)
MAPPING = load_mapping()
SHIPPED = load_config(RetentionFile, MAPPINGS_DIR / "retention.yaml", prefix="mbr")
CONFIG = SHIPPED.model_copy(
    update={
        "churn": SHIPPED.churn.model_copy(update={"min_leavers": 50}),
        "advisor": SHIPPED.advisor.model_copy(update={"enabled": False}),
    }
)
RISK, REASONS, VALUE, MONTHS = (
    "mbr_churnrisk",
    "mbr_churnreasons",
    "mbr_lifetimevalue",
    "mbr_expectedmonths",
)
THEME, MESSAGE = "mbr_winbacktheme", "mbr_winbackmessage"


@dataclass
class Read:
    members: list[MemberHistory]
    current: dict[str, dict[str, object]] = field(default_factory=dict)


@dataclass
class Written:
    changed: int
    requests: int


class FakeDataverse:
    """The HistorySource port over a register held in memory: writes land in ``columns``."""

    def __init__(self, members: list[MemberHistory]) -> None:
        self.members = members
        self.columns: dict[str, dict[str, object]] = {}
        self.reads = 0

    def histories(
        self,
        config: RetentionFile,
        mapping: Any,
        *,
        today: date,
        outcomes: Iterable[tuple[str, date, str]] = (),
    ) -> Read:
        self.reads += 1
        return Read(self.members, {k: dict(v) for k, v in self.columns.items()})

    def write(
        self,
        results: Mapping[str, Mapping[str, object]],
        current: Mapping[str, Mapping[str, object]] | None = None,
        *,
        dry_run: bool = False,
    ) -> Written:
        current = current or {}
        changed = {
            member: {c: v for c, v in row.items() if current.get(member, {}).get(c) != v}
            for member, row in results.items()
        }
        changed = {m: row for m, row in changed.items() if row}
        if not dry_run:
            for member, row in changed.items():
                self.columns.setdefault(member, {}).update(row)
        return Written(len(changed), len(changed))


@pytest.fixture(scope="module")
def register() -> SyntheticRegister:
    return generate(4_000, today=TODAY, seed=3)


def run_on(
    members: list[MemberHistory],
    artifacts: MemoryArtifacts | None = None,
    *,
    dry_run: bool = False,
    config: RetentionFile = CONFIG,
    source: FakeDataverse | None = None,
) -> tuple[RetentionRun, FakeDataverse, MemoryArtifacts]:
    source = source or FakeDataverse(members)
    artifacts = artifacts if artifacts is not None else MemoryArtifacts()
    run = RetentionRun(config, MAPPING, source, artifacts, today=TODAY, dry_run=dry_run)
    return run, source, artifacts


def test_training_keeps_a_version_with_its_metrics_and_uses_a_model_that_beats_the_baseline(
    register: SyntheticRegister,
) -> None:
    run, _, artifacts = run_on(register.members)
    report = run.train()
    stored = artifacts.latest(CHURN)
    assert stored is not None
    assert report.version == stored.version == "v00001"
    assert stored.meta["used"] is True
    assert stored.meta["roc_auc"] > stored.meta["baseline_roc_auc"]
    assert stored.meta["feature_groups"] == ["payments", "tenure", "engagement", "membership"]
    assert report.message.startswith("used: ROC AUC")
    assert model_state(artifacts)["used"] is True


def test_a_model_that_does_not_beat_the_baseline_is_kept_for_the_record_and_not_used(
    register: SyntheticRegister,
) -> None:
    # a margin no model reaches: the evaluation is the same, the verdict is not
    strict = CONFIG.model_copy(update={"churn": CONFIG.churn.model_copy(update={"margin": 0.5})})
    run, source, artifacts = run_on(register.members, config=strict)
    report = run.train()
    assert report.detail["used"] is False
    assert "does not beat the baseline" in report.message
    state = model_state(artifacts)
    assert (state["model"], state["used"]) == ("v00001", False)
    assert "does not beat the baseline" in state["why"]
    # scoring then clears the risk of every active member instead of leaving old values
    member = next(m.member_id for m in register.members if m.ended_on is None)
    source.columns = {member: {RISK: 40}}
    later, _, _ = run_on(register.members, artifacts, config=strict, source=source)
    later.score()
    assert source.columns[member][RISK] is None
    assert not any(row.get(RISK) for row in source.columns.values())


def test_a_dry_run_computes_everything_and_writes_nothing(register: SyntheticRegister) -> None:
    run, source, artifacts = run_on(register.members, dry_run=True)
    reports = run_steps(run)
    assert [r.step for r in reports] == ["train", "themes", "score", "report"]
    assert all(r.dry_run and r.version is None for r in reports)
    assert artifacts.versions(CHURN) == artifacts.versions(THEMES) == []
    assert source.columns == {}
    assert source.reads == 1  # one reading of the history for all four steps


def test_scoring_writes_risk_value_and_theme_then_a_rerun_changes_nothing(
    register: SyntheticRegister,
) -> None:
    artifacts = MemoryArtifacts()
    run, source, _ = run_on(register.members, artifacts)
    run.train()
    run.themes()
    first = run.score()
    active = [m for m in register.members if m.ended_on is None or m.ended_on > TODAY]
    row = source.columns[active[0].member_id]
    assert 0 <= row[RISK] <= 100  # type: ignore[operator]
    assert row[VALUE] > 0  # type: ignore[operator]
    assert row[MONTHS] >= 0  # type: ignore[operator]
    assert first.counts["scored"] == len(active)
    themed = [m for m, r in source.columns.items() if r.get(THEME)]
    assert themed
    assert first.counts["themed"] == len(themed)
    assert all(source.columns[m][THEME].startswith("t") for m in themed)  # type: ignore[union-attr]
    again, _, _ = run_on(register.members, artifacts, source=source)
    assert again.score().counts["changed"] == 0


def test_named_themes_are_written_by_name_with_their_message(register: SyntheticRegister) -> None:
    artifacts = MemoryArtifacts()
    run, _, _ = run_on(register.members, artifacts)
    ids = [t["id"] for t in run.themes().detail["themes"]]
    named = {
        ids[0]: {"name": "price", "priority": 1, "message": "Avgiften är avdragsgill."},
    }
    raw = CONFIG.model_dump()
    raw["themes"]["named"] = named
    config = RetentionFile.model_validate(raw)
    rerun, source, _ = run_on(register.members, artifacts, config=config)
    rerun.score()
    rows = [r for r in source.columns.values() if r.get(THEME) == "price"]
    assert rows
    assert all(r[MESSAGE] == "Avgiften är avdragsgill." for r in rows)
    assert all(
        r.get(MESSAGE) is None for r in source.columns.values() if r.get(THEME, "price") != "price"
    )


def test_theme_ids_stay_the_same_between_runs(register: SyntheticRegister) -> None:
    artifacts = MemoryArtifacts()
    run, _, _ = run_on(register.members, artifacts)
    first = {t["id"]: t["reasons"][0][0] for t in run.themes().detail["themes"]}
    later = generate(4_000, today=TODAY, seed=4)  # another draw of the same union
    again, _, _ = run_on(later.members, artifacts)
    second = {t["id"]: t["reasons"][0][0] for t in again.themes().detail["themes"]}
    shared = set(first) & set(second)
    assert len(shared) >= 3
    assert all(first[i] == second[i] for i in shared)  # the same theme keeps its id


def test_too_few_leavers_trains_nothing_and_says_so(register: SyntheticRegister) -> None:
    few = [m for m in register.members if m.ended_on is None][:500]
    few += [m for m in register.members if m.ended_on is not None][:5]
    run, _, artifacts = run_on(few)
    with pytest.raises(InputError, match="leavers"):
        run.train()
    assert artifacts.latest(CHURN) is None


def test_a_chosen_group_with_no_data_trains_nothing(register: SyntheticRegister) -> None:
    quiet = [replace(m, activity=()) for m in register.members]
    run, _, artifacts = run_on(quiet)
    with pytest.raises(InputError, match="engagement: no activity rows"):
        run.train()
    assert artifacts.latest(CHURN) is None


def test_leavers_without_any_reason_give_no_themes_and_the_rest_goes_on(
    register: SyntheticRegister,
) -> None:
    silent = [replace(m, reason=None, reason_text=None) for m in register.members]
    run, source, artifacts = run_on(silent)
    reports = run_steps(run)
    by_step = {r.step: r for r in reports}
    assert not by_step["themes"].done
    assert "reason" in by_step["themes"].message
    assert artifacts.latest(THEMES) is None
    assert by_step["train"].done  # risk and value are still written
    assert by_step["score"].done
    assert not any(row.get(THEME) for row in source.columns.values())


def test_the_report_is_kept_and_names_the_models_verdict(register: SyntheticRegister) -> None:
    run, _, artifacts = run_on(register.members)
    run.train()
    report, html = run.report()
    assert report.version == "v00001"
    stored = artifacts.latest("report")
    assert stored is not None
    assert stored.data.decode("utf-8") == html
    assert "<svg" in html
    assert "ROC AUC" in html


class FakeTasks:
    """The TaskSink port: keys already in Dynamics, and what was made."""

    def __init__(self, existing: set[str] | None = None) -> None:
        self.existing = existing or set()
        self.made: list[Any] = []
        self.asked: list[str] = []

    def outcomes(self) -> list[tuple[str, date, str]]:
        return []

    def existing_keys(self, prefix: str) -> set[str]:
        self.asked.append(prefix)
        return {k for k in self.existing if k.startswith(prefix)}

    def create(self, tasks: Any) -> None:
        self.made.extend(tasks)
        self.existing |= {t.key for t in tasks}


def advisor_config(**advisor: Any) -> RetentionFile:
    raw = CONFIG.model_dump()
    raw["advisor"].update({"enabled": True, **advisor})
    return RetentionFile.model_validate(raw)


def test_at_risk_members_worth_the_call_get_one_task_each_per_period(
    register: SyntheticRegister,
) -> None:
    config = advisor_config(min_risk=0.05, min_value=10_000, max_per_run=1_000)
    artifacts = MemoryArtifacts()
    tasks = FakeTasks()
    run, source, _ = run_on(register.members, artifacts, config=config)
    run.tasks = tasks
    run.train()
    report = run.score()
    made = tasks.made
    assert made
    assert report.counts["tasks_created"] == len(made)
    assert {t.kind for t in made} == {"churn"}  # no theme is named, so no winback task
    for task in made:
        row = source.columns[task.member_id]
        assert row[RISK] >= 5  # type: ignore[operator]
        assert row[VALUE] >= 10_000  # type: ignore[operator]
        assert task.key.startswith("churn:")
        assert task.key.endswith(task.member_id)
        assert f"Risk of leaving within the horizon: {row[RISK]} %" in task.description
        assert "Top reasons: " in task.description  # the model's, for the advisor
    values = [source.columns[t.member_id][VALUE] for t in made]
    assert values == sorted(values, reverse=True)  # the most valuable first
    # the next run in the same period makes none again
    again, _, _ = run_on(register.members, artifacts, config=config, source=source)
    again.tasks = tasks
    second = again.score()
    assert len(tasks.made) == len(made)
    assert (second.counts["tasks_created"], second.counts["tasks_existing"]) == (0, len(made))


def test_recent_leavers_in_a_top_theme_get_a_winback_task_and_a_dry_run_makes_none(
    register: SyntheticRegister,
) -> None:
    artifacts = MemoryArtifacts()
    first, _, _ = run_on(register.members, artifacts)
    ids = [t["id"] for t in first.themes().detail["themes"]]
    raw = CONFIG.model_dump()
    raw["advisor"].update({"enabled": True, "min_risk": 0.99, "leaver_days": 60})
    raw["themes"]["named"] = {ids[0]: {"name": "price", "priority": 1}}
    config = RetentionFile.model_validate(raw)
    tasks = FakeTasks()
    dry, _, _ = run_on(register.members, artifacts, config=config, dry_run=True)
    dry.tasks = tasks
    assert dry.score().counts["tasks_created"] > 0  # what a real run would make
    assert tasks.made == []
    real, _, _ = run_on(register.members, artifacts, config=config)
    real.tasks = tasks
    real.score()
    assert tasks.made
    assert {t.kind for t in tasks.made} == {"winback"}
    assert all("(price)" in t.subject for t in tasks.made)
    leavers = {m.member_id: m.ended_on for m in register.members}
    assert all(leavers[t.member_id] >= date(2026, 9, 29) for t in tasks.made)  # type: ignore[operator]


def test_values_no_longer_true_are_cleared(register: SyntheticRegister) -> None:
    left = next(m.member_id for m in register.members if m.ended_on and m.ended_on < TODAY)
    stayed = next(m.member_id for m in register.members if m.ended_on is None)
    source = FakeDataverse(register.members)
    # last month's values: a risk on a member who has since left, a theme on one who stays
    source.columns = {left: {RISK: 35, REASONS: "payments.missed_60d"}, stayed: {THEME: "t2"}}
    run, _, _ = run_on(register.members, source=source)
    run.train()
    run.score()
    assert source.columns[left][RISK] is None
    assert source.columns[left][REASONS] is None
    assert source.columns[stayed][THEME] is None


def test_a_dry_run_scores_with_the_model_it_just_trained(register: SyntheticRegister) -> None:
    run, source, artifacts = run_on(register.members, dry_run=True)
    run.train()
    report = run.score()
    assert artifacts.latest(CHURN) is None
    assert report.counts["scored"] > 0  # what the new model would write
    assert "no churn model in use" not in report.message
    assert source.columns == {}


def test_churn_tasks_are_made_even_where_no_value_column_is_written(
    register: SyntheticRegister,
) -> None:
    raw = CONFIG.model_dump()
    raw["value"].update({"value_column": None, "months_column": None})
    raw["advisor"].update({"enabled": True, "min_risk": 0.05, "min_value": 1_000})
    config = RetentionFile.model_validate(raw)
    tasks = FakeTasks()
    run, source, _ = run_on(register.members, config=config)
    run.tasks = tasks
    run.train()
    run.score()
    assert tasks.made
    assert not any(VALUE in row for row in source.columns.values())


def test_a_bounded_match_gives_a_theme_too_far_from_the_last_run_a_new_id(
    register: SyntheticRegister,
) -> None:
    artifacts = MemoryArtifacts()
    first, _, _ = run_on(register.members, artifacts)
    before = {t["id"] for t in first.themes().detail["themes"]}
    raw = CONFIG.model_dump()
    raw["themes"]["max_match_distance"] = 1e-9  # nothing is that close
    strict = RetentionFile.model_validate(raw)
    again, _, _ = run_on(generate(4_000, today=TODAY, seed=4).members, artifacts, config=strict)
    after = {t["id"] for t in again.themes().detail["themes"]}
    assert before.isdisjoint(after)


def test_an_unreadable_stored_themes_model_starts_afresh(register: SyntheticRegister) -> None:
    artifacts = MemoryArtifacts()
    artifacts.put(THEMES, b"an older format", {})
    run, _, _ = run_on(register.members, artifacts)
    report = run.themes()
    assert report.done
    assert report.detail["themes"][0]["id"] == "t1"
