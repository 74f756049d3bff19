"""The retention run: read the history, train, find themes, score, make advisor tasks, report.

One :class:`RetentionRun` per invocation (a CLI command, the weekly timer): it reads the member
history from Dataverse once and hands it to the pure analytics in :mod:`dynamics_bridge.retention`
(imported here, so a deployment without the ``retention`` extra starts and says what to install
only when this runs). Models, their metrics and the report are versioned in an
:class:`~dynamics_bridge.ops.artifacts.ArtifactStore`; member columns are written only where a
value changed; a dry run reads and computes everything and writes nothing.

What never leaves the tenant: the leaving reasons and their free text (themes only), the churn
reasons (a member column for advisors). APSIS sees what ``apsis.yaml`` maps of the written
columns (shipped: the risk and the theme's name), like any other attribute, and only for
members the audience rules allow (never protected identities).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dynamics_bridge.activation.advisor import AdvisorTask, summary, task_key
from dynamics_bridge.errors import BridgeError, InputError
from dynamics_bridge.mapping.retention import RetentionFile

if TYPE_CHECKING:
    from dynamics_bridge.mapping.models import MappingFile
    from dynamics_bridge.ops.artifacts import ArtifactStore
    from dynamics_bridge.retention.features import HistoryArrays
    from dynamics_bridge.retention.model import ChurnModel
    from dynamics_bridge.retention.records import MemberHistory
    from dynamics_bridge.retention.survival import SurvivalCurve
    from dynamics_bridge.retention.themes import ThemeModel

__all__ = [
    "CHURN",
    "REPORT",
    "THEMES",
    "HistorySource",
    "RetentionRun",
    "StepReport",
    "TaskSink",
    "model_state",
    "reports_json",
    "run_steps",
]

log = logging.getLogger("dynamics_bridge.retention")

CHURN, THEMES, REPORT = "churn", "themes", "report"
STEPS = ("train", "themes", "score", "report")


class HistorySource(Protocol):
    """Where the history comes from and where results go (Dataverse)."""

    def histories(
        self,
        config: RetentionFile,
        mapping: MappingFile,
        *,
        today: date,
        outcomes: Iterable[tuple[str, date, str]] = (),
    ) -> Any: ...

    def write(
        self,
        results: Mapping[str, Mapping[str, object]],
        current: Mapping[str, Mapping[str, object]] | None = None,
        *,
        dry_run: bool = False,
    ) -> Any: ...


class TaskSink(Protocol):
    def outcomes(self) -> list[tuple[str, date, str]]: ...

    def existing_keys(self, prefix: str) -> set[str]: ...

    def create(self, tasks: Sequence[Any]) -> Any: ...


@dataclass
class StepReport:
    """What one step did, for the CLI, the run history and health."""

    step: str
    dry_run: bool
    done: bool = True
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "dry_run": self.dry_run,
            "done": self.done,
            "message": self.message,
            "counts": self.counts,
            "version": self.version,
            "detail": self.detail,
        }


def model_state(artifacts: ArtifactStore) -> dict[str, Any]:
    """The latest churn model's state for health and the CLI, without loading the model."""
    versions = artifacts.versions(CHURN, limit=1)
    if not versions:
        return {"model": None, "used": False, "why": "no churn model trained yet"}
    meta = versions[0].meta
    return {
        "model": versions[0].version,
        "trained_on": meta.get("trained_on"),
        "used": bool(meta.get("used")),
        "why": meta.get("why", ""),
        "roc_auc": meta.get("roc_auc"),
        "baseline_roc_auc": meta.get("baseline_roc_auc"),
    }


class RetentionRun:
    """One run over one reading of the history; each step may be called alone or in order."""

    def __init__(
        self,
        config: RetentionFile,
        mapping: MappingFile,
        source: HistorySource,
        artifacts: ArtifactStore,
        *,
        today: date,
        tasks: TaskSink | None = None,
        dry_run: bool = False,
    ) -> None:
        self.config = config
        self.mapping = mapping
        self.source = source
        self.artifacts = artifacts
        self.tasks = tasks
        self.today = today
        self.dry_run = dry_run
        self._read: Any = None
        self._arrays: HistoryArrays | None = None
        self._curve: SurvivalCurve | None = None
        #: what this run trained or found: a dry run keeps nothing, yet its score and report
        #: show what the new models would do, not what the stored ones did
        self._churn: tuple[ChurnModel, Mapping[str, Any]] | None = None
        self._themes: ThemeModel | None = None
        self.reports: list[StepReport] = []

    # --- reading ---------------------------------------------------------------------
    @property
    def history(self) -> Any:
        if self._read is None:
            outcomes = self.tasks.outcomes() if self.tasks is not None else []
            self._read = self.source.histories(
                self.config, self.mapping, today=self.today, outcomes=outcomes
            )
        return self._read

    @property
    def members(self) -> list[MemberHistory]:
        return list(self.history.members)

    @property
    def arrays(self) -> HistoryArrays:
        if self._arrays is None:
            from dynamics_bridge.retention.features import HistoryArrays

            self._arrays = HistoryArrays.from_records(self.members)
        return self._arrays

    @property
    def observed_from(self) -> date:
        from dynamics_bridge.mapping.retention import add_months

        return add_months(self.today, -self.config.history.months)

    @property
    def curve(self) -> SurvivalCurve:
        if self._curve is None:
            from dynamics_bridge.retention.survival import survival_curve

            self._curve = survival_curve(self.arrays, self.today, self.observed_from)
        return self._curve

    def _done(self, report: StepReport) -> StepReport:
        self.reports.append(report)
        log.info(
            "retention %s%s: %s",
            report.step,
            " (dry run)" if report.dry_run else "",
            report.message,
            extra={"counts": report.counts},
        )
        return report

    # --- train -------------------------------------------------------------------------
    def train(self) -> StepReport:
        """Train the churn model, test it on the held-out period against the baseline, and
        keep it (a new version) with its metrics; used only when it beats the baseline."""
        from dynamics_bridge.retention.model import ChurnConfig, train_churn

        churn = self.config.churn
        self._refuse_empty_groups()
        model = train_churn(
            self.arrays,
            today=self.today,
            config=ChurnConfig(
                horizon_days=churn.horizon_days,
                train_months=churn.train_months,
                groups=tuple(self.config.feature_groups),
                min_leavers=churn.min_leavers,
                calibration=churn.calibration,
                baseline_days=churn.baseline_days,
            ),
        )
        evaluation = model.evaluation
        used = model.beats_baseline(churn.margin)
        why = (
            f"ROC AUC {evaluation.model.roc_auc:.3f} against the baseline's "
            f"{evaluation.baseline.roc_auc:.3f} ({evaluation.baseline_rule})"
        )
        if not used:
            why = f"does not beat the baseline: {why}; the previous risk values are cleared"
        meta = {
            "trained_on": self.today.isoformat(),
            "used": used,
            "why": why,
            "roc_auc": round(evaluation.model.roc_auc, 4),
            "baseline_roc_auc": round(evaluation.baseline.roc_auc, 4),
            "feature_groups": list(self.config.feature_groups),
            "members": len(self.arrays),
            "evaluation": evaluation.to_dict(),
            "weights": [[n, round(w, 4)] for n, w in model.weights()[:12]],
        }
        version = None
        if not self.dry_run:
            version = self.artifacts.put(CHURN, model.to_bytes(), meta).version
        self._churn = (model, meta)
        return self._done(
            StepReport(
                "train",
                self.dry_run,
                done=True,
                message=("used: " if used else "not used: ") + why,
                counts={
                    "members": len(self.arrays),
                    "train_rows": evaluation.train_rows,
                    "train_leavers": evaluation.train_leavers,
                    "held_out_leavers": evaluation.model.leavers,
                },
                version=version,
                detail={"used": used, **{k: meta[k] for k in ("roc_auc", "baseline_roc_auc")}},
            )
        )

    def _refuse_empty_groups(self) -> None:
        """A chosen feature group with no data at all (no activity rows for ``engagement``, no
        method or member type for ``membership``) would train on a constant: say which."""
        members = self.members
        empty = []
        groups = set(self.config.feature_groups)
        if "engagement" in groups and not any(m.activity for m in members):
            empty.append(
                "engagement: no activity rows (retention.yaml history.activity, and the related "
                "tables in dataverse.yaml)"
            )
        if "payments" in groups and not any(m.payments for m in members):
            empty.append("payments: no payment rows in the history window")
        if "membership" in groups and not any(m.method or m.member_type for m in members):
            empty.append("membership: no payment method or member type on any member")
        if "demographics" in groups and not any(m.age_band or m.region for m in members):
            empty.append("demographics: no age band or region on any member")
        if empty:
            raise InputError(
                "retention.yaml feature_groups: no data for "
                + "; ".join(empty)
                + ". Map the columns or remove the group; nothing was trained."
            )

    # --- themes ------------------------------------------------------------------------
    def themes(self) -> StepReport:
        """Cluster the recent leavers into themes, keeping the ids of themes seen before."""
        from dynamics_bridge.retention.themes import (
            ThemeConfig,
            fit_themes,
            match_previous,
        )

        cfg = self.config.themes
        model = fit_themes(
            self.members,
            self.today,
            ThemeConfig(
                months=cfg.months,
                k_min=cfg.min_clusters,
                k_max=cfg.max_clusters,
                min_leavers=cfg.min_leavers,
            ),
            curve=self.curve,
        )
        previous = self._stored_themes()
        if previous is not None:
            model = match_previous(previous, model, max_distance=cfg.max_match_distance)
        unnamed = [t.id for t in model.themes if t.id not in cfg.named]
        summary = [
            {
                "id": t.id,
                "name": self.config.theme_name(t.id),
                "size": t.size,
                "share": round(t.share, 4),
                "mean_value": None if t.mean_value is None else round(t.mean_value),
                "reasons": [list(r) for r in t.reasons[:3]],
                "words": list(t.words[:6]),
                "behaviour": [[n, round(v, 2)] for n, v in t.behaviour[:3]],
            }
            for t in model.themes
        ]
        meta = {
            "found_on": self.today.isoformat(),
            "silhouette": round(model.silhouette, 4),
            "themes": summary,
        }
        version = None
        if not self.dry_run:
            version = self.artifacts.put(THEMES, model.to_bytes(), meta).version
        self._themes = model
        message = f"{len(model.themes)} themes (silhouette {model.silhouette:.2f})"
        if unnamed:
            message += (
                f"; not yet named in retention.yaml themes.named: {', '.join(unnamed)} "
                "(written as their ids until then)"
            )
        return self._done(
            StepReport(
                "themes",
                self.dry_run,
                message=message,
                counts={"themes": len(model.themes), "leavers": sum(t.size for t in model.themes)},
                version=version,
                detail={"themes": summary},
            )
        )

    # --- score -------------------------------------------------------------------------
    def _latest_churn(self) -> tuple[ChurnModel | None, Mapping[str, Any] | None]:
        """The churn model this run trained, else the stored one; (None, its metadata) when
        it is not used (it does not beat the baseline)."""
        from dynamics_bridge.retention.model import ChurnModel

        model: ChurnModel | None
        if self._churn is not None:
            model, meta = self._churn
        else:
            artifact = self.artifacts.latest(CHURN)
            if artifact is None:
                return None, None
            meta = {**artifact.meta, "version": artifact.version}
            model = ChurnModel.from_bytes(artifact.data) if artifact.meta.get("used") else None
        return (model if meta.get("used") else None), meta

    def _stored_themes(self) -> ThemeModel | None:
        """The themes kept last; one this version cannot read (an older format) is left
        behind, logged: the themes then start afresh, with new ids."""
        from dynamics_bridge.retention.themes import ThemeModel

        artifact = self.artifacts.latest(THEMES)
        if artifact is None:
            return None
        try:
            return ThemeModel.from_bytes(artifact.data)
        except BridgeError as exc:
            log.warning("themes %s not readable, starting afresh: %s", artifact.version, exc)
            return None

    def _latest_themes(self) -> ThemeModel | None:
        return self._themes if self._themes is not None else self._stored_themes()

    def results(self) -> tuple[dict[str, dict[str, object]], dict[str, Any]]:
        """The member columns to write, by member id, and what went into them. Every member
        read gets every written column: a value no longer true (a risk on a member who left, a
        theme on one who came back) is cleared, never left to go stale in APSIS."""
        from dynamics_bridge.retention.survival import lifetime_values
        from dynamics_bridge.retention.themes import recent_leavers

        cfg = self.config
        written = cfg.written_columns()
        results: dict[str, dict[str, object]] = {
            m.member_id: dict.fromkeys(written) for m in self.members
        }
        info: dict[str, Any] = {"risks": {}, "reasons": {}, "values": {}, "themes": {}}
        model, meta = self._latest_churn()
        if model is not None:
            for risk in model.score(self.arrays, self.today, reasons=cfg.churn.reasons):
                row = results[risk.member_id]
                row[cfg.churn.risk_column] = round(risk.probability * 100)
                if cfg.churn.reasons_column:
                    row[cfg.churn.reasons_column] = ", ".join(risk.reasons)[:400] or None
                info["risks"][risk.member_id] = risk.probability
                info["reasons"][risk.member_id] = risk.reasons
        info["model"] = (meta or {}).get("version")
        info["used"] = model is not None
        for value in lifetime_values(
            self.arrays, self.today, self.curve, horizon=float(cfg.value.horizon_months)
        ):
            row = results[value.member_id]
            if cfg.value.value_column:
                row[cfg.value.value_column] = round(value.value, 2)
            if cfg.value.months_column:
                row[cfg.value.months_column] = round(value.remaining_months)
            info["values"][value.member_id] = value.value
        themes = self._latest_themes()
        if themes is not None:
            recent = recent_leavers(self.members, self.today, cfg.themes.months)
            for member_id, theme_id in themes.assign(recent).items():
                row = results[member_id]
                named = cfg.themes.named.get(theme_id)
                row[cfg.themes.theme_column] = cfg.theme_name(theme_id)
                if cfg.themes.message_column:
                    row[cfg.themes.message_column] = (named.message if named else "") or None
                info["themes"][member_id] = theme_id
        return results, info

    def score(self) -> StepReport:
        """Write churn risk, lifetime value and themes to the member columns; make tasks."""
        results, info = self.results()
        written = self.source.write(results, self.history.current, dry_run=self.dry_run)
        high = sum(1 for p in info["risks"].values() if p >= self.config.churn.high_risk)
        counts = {
            "scored": len(info["risks"]),
            "high_risk": high,
            "valued": len(info["values"]),
            "themed": len(info["themes"]),
            "changed": int(getattr(written, "changed", 0)),
            "requests": int(getattr(written, "requests", 0)),
        }
        message = (
            f"{counts['scored']:,} members scored ({high:,} at high risk), "
            f"{counts['valued']:,} valued, {counts['themed']:,} leavers themed; "
            f"{counts['changed']:,} members changed"
        )
        if not info["used"]:
            message = "no churn model in use (risk cleared); " + message
        tasks = self._advisor_tasks(info)
        if tasks is not None:
            counts["tasks_created"] = tasks[0]
            counts["tasks_existing"] = tasks[1]
            message += f"; {tasks[0]:,} advisor tasks made ({tasks[1]:,} already there)"
        return self._done(StepReport("score", self.dry_run, message=message, counts=counts))

    # --- advisor tasks -----------------------------------------------------------------
    def _advisor_tasks(self, info: Mapping[str, Any]) -> tuple[int, int] | None:
        """Tasks for at-risk members worth the call and for recent leavers in the top themes,
        most valuable first, each once per member per period. Returns (made, already there)."""
        advisor = self.config.advisor
        if not advisor.enabled or self.tasks is None:
            return None
        by_id = {m.member_id: m for m in self.members}
        wanted: list[tuple[float, AdvisorTask]] = []
        for member_id, probability in info["risks"].items():
            value = info["values"].get(member_id, 0.0)
            if probability >= advisor.min_risk and value >= advisor.min_value:
                task = self._task("churn", by_id[member_id], info, probability=probability)
                wanted.append((value, task))
        top = {
            theme_id
            for theme_id, named in self.config.themes.named.items()
            if named.priority <= advisor.top_themes
        }
        since = self.today - timedelta(days=advisor.leaver_days)
        for member_id, theme_id in info["themes"].items():
            member = by_id[member_id]
            if theme_id in top and member.ended_on is not None and member.ended_on >= since:
                wanted.append((self._value_lost(member), self._task("winback", member, info)))
        wanted.sort(key=lambda pair: -pair[0])
        existing: set[str] = set()
        for kind in ("churn", "winback"):
            prefix = task_key(kind, "", self.today, advisor.period_days)
            existing |= self.tasks.existing_keys(prefix)
        new = [task for _, task in wanted if task.key not in existing]
        made = new[: advisor.max_per_run]
        if made and not self.dry_run:
            self.tasks.create(made)
        return len(made), len(wanted) - len(new)

    def _value_lost(self, member: MemberHistory) -> float:
        """A leaver's lifetime value had they stayed (the months the curve expected of them at
        their tenure, times the fee): the same measure as an active member's, so winback and
        retention calls are ordered together."""
        assert member.ended_on is not None
        tenure = (member.ended_on - member.joined_on).days / (365.25 / 12)
        horizon = float(self.config.value.horizon_months)
        months = float(self.curve.remaining_months([tenure], horizon)[0])
        return months * member.monthly_fee

    def _task(
        self,
        kind: str,
        member: MemberHistory,
        info: Mapping[str, Any],
        *,
        probability: float | None = None,
    ) -> AdvisorTask:
        advisor = self.config.advisor
        theme_id = info["themes"].get(member.member_id)
        theme = self.config.theme_name(theme_id) if theme_id else None
        subject = (
            "Retention call: high risk of leaving"
            if kind == "churn"
            else f"Winback call: left recently ({theme})"
        )
        return AdvisorTask(
            kind=kind,
            member_id=member.member_id,
            key=task_key(kind, member.member_id, self.today, advisor.period_days),
            subject=subject,
            description=summary(
                member,
                self.today,
                probability=probability,
                value=info["values"].get(member.member_id),
                theme=theme,
                reasons=info["reasons"].get(member.member_id, ()),
            ),
            due=self.today + timedelta(days=advisor.due_days),
        )

    # --- report ------------------------------------------------------------------------
    def report(self) -> tuple[StepReport, str]:
        """The HTML report of the latest models over this history (kept as a new version)."""
        from dynamics_bridge.retention.report import build_report_data, render

        model, meta = self._latest_churn()
        html = render(
            build_report_data(
                today=self.today,
                config=self.config,
                members=self.members,
                arrays=self.arrays,
                observed_from=self.observed_from,
                curve=self.curve,
                churn=model,
                churn_meta=meta,
                themes=self._latest_themes(),
                counts={k: v for r in self.reports for k, v in r.counts.items()},
            )
        )
        version = None
        if not self.dry_run:
            version = self.artifacts.put(
                REPORT, html.encode("utf-8"), {"made_on": self.today.isoformat()}
            ).version
        report = StepReport(
            "report", self.dry_run, message=f"{len(html):,} characters", version=version
        )
        return self._done(report), html


def run_steps(run: RetentionRun) -> list[StepReport]:
    """Train, themes, score, report, in that order: what the weekly timer does. A step the
    history cannot support (too few leavers, no reasons, an empty feature group) is reported
    as not done, with why, and the later steps go on with the models kept before; nothing of
    the refused step is written."""
    for name in STEPS:
        try:
            if name == "report":
                run.report()
            else:
                getattr(run, name)()
        except InputError as exc:
            run.reports.append(StepReport(name, run.dry_run, done=False, message=str(exc)))
            log.warning("retention %s not done: %s", name, exc)
    return run.reports


def reports_json(reports: Sequence[StepReport]) -> str:
    return json.dumps([r.to_dict() for r in reports], ensure_ascii=False, indent=2)
