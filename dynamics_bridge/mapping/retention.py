"""``mappings/retention.yaml`` as a model: what the retention analytics may read, what they
write, and how admins name and prioritise the winback themes.

Pure (pydantic only), so ``check`` validates the file without the ``retention`` extra. Columns
are member columns of ``mappings/dataverse.yaml``, ``{prefix}`` included; :func:`cross_check`
says which ones the mapping lacks, and which APSIS attributes would carry a leaving reason, its
free text or the churn reasons to the marketing platform (never allowed: union membership is
special-category data, and reasons stay inside the union's tenant).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dynamics_bridge.mapping.models import MappingFile

if TYPE_CHECKING:
    from dynamics_bridge.activation.config import ActivationConfig

__all__ = [
    "FEATURE_GROUPS",
    "Advisor",
    "ChoiceColumn",
    "Churn",
    "FeatureGroup",
    "History",
    "NamedTheme",
    "Owner",
    "RetentionFile",
    "Themes",
    "Value",
    "add_months",
    "cross_check",
    "has_reason",
    "leaver_window",
    "private_columns",
    "training_cutoffs",
]

FeatureGroup = Literal["payments", "tenure", "engagement", "membership", "demographics"]
#: Kept equal to ``dynamics_bridge.retention.features.GROUPS`` (a test holds them together).
FEATURE_GROUPS: tuple[str, ...] = ("payments", "tenure", "engagement", "membership", "demographics")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ChoiceColumn(_Strict):
    """A choice column read as its words (the mapping's choice set)."""

    column: str
    choices: str = Field(description="Choice set in dataverse.yaml whose words the column holds.")


class History(_Strict):
    """Where each member's history is read from: member columns, the payment rows, and the
    related count tables (dataverse.yaml ``related``) as dated activity."""

    months: int = Field(default=36, ge=6, le=240, description="How far back payments are read.")
    joined_on: str = "{prefix}_joinedon"
    ended_on: str = "{prefix}_endedon"
    leaving_reason: ChoiceColumn | None = Field(
        default=None, description="The leaving reason as a choice (themes and the report)."
    )
    leaving_text: str | None = Field(
        default=None,
        description="Free-text leaving reason: read for the winback themes only, never a model "
        "feature written anywhere, never sent to APSIS.",
    )
    monthly_fee: str | None = Field(
        default=None, description="Money member column: the fee per month (lifetime value)."
    )
    default_monthly_fee: float = Field(
        default=0.0, ge=0, description="Kronor per month where the member has no fee column value."
    )
    method: ChoiceColumn | None = None
    member_type: ChoiceColumn | None = None
    county_code: str | None = Field(default=None, description="Two-digit county (region) code.")
    birthdate: str | None = Field(default=None, description="Date column: the age band.")
    activity: list[str] = Field(
        default_factory=list,
        description="Related tables (dataverse.yaml related, with count:) whose dated rows are "
        "the member's activity: events, advice, portal, surveys, benefits.",
    )


class Churn(_Strict):
    horizon_days: int = Field(default=90, ge=7, le=365, description="Leaving within this window.")
    train_months: int = Field(default=12, ge=2, le=60)
    min_leavers: int = Field(
        default=200, ge=1, description="Fewer leavers in the training period: no model."
    )
    baseline_days: int = Field(
        default=60, ge=1, description="The baseline: a missed payment within this many days."
    )
    margin: float = Field(
        default=0.0,
        ge=0,
        le=0.5,
        description="How much higher than the baseline's the model's ROC AUC and PR AUC must "
        "both be for it to be used.",
    )
    high_risk: float = Field(
        default=0.25, gt=0, lt=1, description="Probability from which a member is at high risk."
    )
    reasons: int = Field(default=3, ge=0, le=5, description="Top reasons kept per member.")
    calibration: Literal["sigmoid", "isotonic", "none"] = "sigmoid"
    risk_column: str = Field(description="Integer member column: churn risk in per cent (0-100).")
    reasons_column: str | None = Field(
        default=None,
        description="Text member column for the top reasons (read by advisors in Dynamics; "
        "never an APSIS attribute).",
    )


class Value(_Strict):
    horizon_months: int = Field(default=120, ge=12, le=600)
    value_column: str | None = Field(default=None, description="Money column: lifetime value.")
    months_column: str | None = Field(
        default=None, description="Integer column: expected remaining months."
    )


class NamedTheme(_Strict):
    """What the admin made of a theme the analysis found."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Short word, pushed to APSIS.")
    priority: int = Field(ge=1, description="1 first: advisors call leavers of top themes.")
    message: str = Field(
        default="", max_length=400, description="The winback text for this theme (APSIS)."
    )


class Themes(_Strict):
    months: int = Field(default=12, ge=1, le=60, description="Leavers of the last N months.")
    min_leavers: int = Field(default=30, ge=2)
    min_clusters: int = Field(default=2, ge=2, le=20)
    max_clusters: int = Field(default=8, ge=2, le=20)
    max_match_distance: float | None = Field(
        default=None,
        gt=0,
        description="A new theme farther than this from its best match among the last run's "
        "themes gets a new id (and no admin name) instead of the old one; none: always match.",
    )
    theme_column: str = Field(description="Text member column: the leaver's theme name.")
    message_column: str | None = Field(
        default=None, description="Text member column: the theme's winback message."
    )
    named: dict[str, NamedTheme] = Field(
        default_factory=dict,
        description="Theme id (t1, t2, ... as `retention themes` reports them) -> name, "
        "priority and message. Unnamed themes are written as their id.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Themes:
        if self.min_clusters > self.max_clusters:
            raise ValueError("min_clusters may not exceed max_clusters")
        names = [t.name for t in self.named.values()]
        if len(set(names)) != len(names):
            raise ValueError(f"theme names must be distinct: {sorted(names)}")
        return self


class Owner(_Strict):
    """Who gets the task: a team (the task's owner) or a queue (the task is added to it)."""

    team: str | None = Field(default=None, description="Team id (GUID).")
    queue: str | None = Field(default=None, description="Queue id (GUID).")

    @model_validator(mode="after")
    def _one(self) -> Owner:
        if (self.team is None) == (self.queue is None):
            raise ValueError("give exactly one of 'team' or 'queue'")
        return self


class Advisor(_Strict):
    """Tasks in Dynamics for the first retention call and for failed mandate requests."""

    enabled: bool = True
    owner: Owner | None = Field(default=None, description="None: the caller's default owner.")
    min_risk: float = Field(default=0.25, gt=0, lt=1)
    min_value: float = Field(default=0.0, ge=0, description="Lifetime value in kronor.")
    top_themes: int = Field(
        default=2, ge=0, description="Recent leavers in themes of this priority or higher."
    )
    leaver_days: int = Field(default=30, ge=1, description="A leaver is recent this many days.")
    period_days: int = Field(default=90, ge=1, description="At most one task per member per kind.")
    due_days: int = Field(default=7, ge=0)
    failed_mandates: bool = Field(default=True, description="A task per failed mandate request.")
    max_per_run: int = Field(default=200, ge=1)
    outcome: ChoiceColumn | None = Field(
        default=None,
        description="Choice column on the task where the advisor records the outcome; read "
        "back into the history as activity (advisor_<word>).",
    )
    key_column: str = Field(
        default="{prefix}_retentionkey",
        description="Text column on the task: kind, period and member, so a task is made once.",
    )


def _default_groups() -> list[FeatureGroup]:
    return ["payments", "tenure", "engagement"]


class RetentionFile(_Strict):
    version: Literal[1] = 1
    feature_groups: list[FeatureGroup] = Field(
        default_factory=_default_groups,
        description="Opt-in: the only kinds of member data the models may use.",
        min_length=1,
    )
    history: History = Field(default_factory=History)
    churn: Churn
    value: Value = Field(default_factory=Value)
    themes: Themes
    advisor: Advisor = Field(default_factory=Advisor)

    @model_validator(mode="after")
    def _groups(self) -> RetentionFile:
        if len(set(self.feature_groups)) != len(self.feature_groups):
            raise ValueError(f"feature_groups lists a group twice: {self.feature_groups}")
        return self

    def member_columns(self) -> dict[str, str]:
        """Every member column named, by where (``history.joined_on``): for ``check``."""
        h = self.history
        named: dict[str, str | None] = {
            "history.joined_on": h.joined_on,
            "history.ended_on": h.ended_on,
            "history.leaving_reason": h.leaving_reason.column if h.leaving_reason else None,
            "history.leaving_text": h.leaving_text,
            "history.monthly_fee": h.monthly_fee,
            "history.method": h.method.column if h.method else None,
            "history.member_type": h.member_type.column if h.member_type else None,
            "history.county_code": h.county_code,
            "history.birthdate": h.birthdate,
            "churn.risk_column": self.churn.risk_column,
            "churn.reasons_column": self.churn.reasons_column,
            "value.value_column": self.value.value_column,
            "value.months_column": self.value.months_column,
            "themes.theme_column": self.themes.theme_column,
            "themes.message_column": self.themes.message_column,
        }
        return {where: column for where, column in named.items() if column}

    def written_columns(self) -> list[str]:
        """The member columns the retention jobs write (and nothing else)."""
        return [
            c
            for c in (
                self.churn.risk_column,
                self.churn.reasons_column,
                self.value.value_column,
                self.value.months_column,
                self.themes.theme_column,
                self.themes.message_column,
            )
            if c
        ]

    def theme_name(self, theme_id: str) -> str:
        named = self.themes.named.get(theme_id)
        return named.name if named else theme_id


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (or earlier), clamped to the month's end."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    for last in (31, 30, 29, 28):
        try:
            return date(year, month + 1, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def training_cutoffs(split: date, months: int, horizon_days: int) -> list[date]:
    """``months`` monthly cut-offs, oldest first, each early enough that its label window
    (``horizon_days`` ahead) ends by ``split``: training never sees the held-out period."""
    found: list[date] = []
    step = 1
    while len(found) < months:
        cutoff = add_months(split, -step)
        if (split - cutoff).days >= horizon_days:
            found.append(cutoff)
        step += 1
    return found[::-1]


def leaver_window(retention: RetentionFile, today: date) -> tuple[date, date, date]:
    """(first cut-off, split, themes since): the churn model counts the leavers of
    [first cut-off, split) as it trains; the themes cluster those who left since the last."""
    churn = retention.churn
    split = today - timedelta(days=churn.horizon_days)
    first = training_cutoffs(split, churn.train_months, churn.horizon_days)[0]
    return first, split, add_months(today, -retention.themes.months)


def has_reason(choice: object, text: object) -> bool:
    """Whether a leaver said why: a reason choice, or free text that is not blank (the themes
    cluster on either; `check` warns when no recent leaver has one)."""
    return choice is not None or bool(isinstance(text, str) and text.strip())


def private_columns(retention: RetentionFile) -> set[str]:
    """Columns that must never reach APSIS: leaving reason, its free text, the churn reasons."""
    h = retention.history
    return {
        c
        for c in (
            h.leaving_reason.column if h.leaving_reason else None,
            h.leaving_text,
            retention.churn.reasons_column,
        )
        if c
    }


def cross_check(
    retention: RetentionFile, mapping: MappingFile, activation: ActivationConfig | None = None
) -> list[str]:
    """What ``retention.yaml`` names that ``dataverse.yaml`` lacks, and what would leak to APSIS
    (``activation``: apsis.yaml, triggers.yaml and segments.yaml)."""
    problems: list[str] = []
    columns = mapping.member.columns
    for where, column in retention.member_columns().items():
        if column not in columns:
            problems.append(
                f"retention.yaml: {where}: {column!r} is not a member column in dataverse.yaml"
            )
    for where, choice in (
        ("history.leaving_reason", retention.history.leaving_reason),
        ("history.method", retention.history.method),
        ("history.member_type", retention.history.member_type),
    ):
        if choice and choice.choices not in mapping.choices:
            problems.append(
                f"retention.yaml: {where}: choice set {choice.choices!r} is not in dataverse.yaml"
            )
    h = retention.history
    needs = {
        "engagement": (bool(h.activity), "history.activity (related tables with dated rows)"),
        "membership": (bool(h.method or h.member_type), "history.method or history.member_type"),
        "demographics": (bool(h.birthdate or h.county_code), "history.birthdate or county_code"),
    }
    for group in retention.feature_groups:
        present, wanted = needs.get(group, (True, ""))
        if not present:
            problems.append(
                f"retention.yaml: feature_groups: {group!r} is chosen but {wanted} is not "
                "mapped: map it or remove the group"
            )
    outcome = retention.advisor.outcome
    if outcome and outcome.choices not in mapping.choices:
        problems.append(
            f"retention.yaml: advisor.outcome: choice set {outcome.choices!r} is not in "
            "dataverse.yaml"
        )
    problems += _advisor_problems(retention, mapping)
    for name in retention.history.activity:
        table = mapping.related.get(name)
        if table is None:
            problems.append(
                f"retention.yaml: history.activity: {name!r} is not a related table in "
                "dataverse.yaml"
            )
        elif table.count is None:
            problems.append(
                f"retention.yaml: history.activity: related table {name!r} has no count "
                "(date_column), so its rows have no dates"
            )
    if activation is not None:
        problems += _leaks(retention, activation)
    return problems


def _leaks(retention: RetentionFile, activation: ActivationConfig) -> list[str]:
    """Every place in the activation files that names a reason column: an APSIS attribute, a
    trigger or reminder field, a segment or reminder rule (a tag is a pushed value too)."""
    private = private_columns(retention)
    found: list[str] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, str):
            if value in private:
                found.append(f"{path}: {value!r}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key, path)
                walk(item, f"{path}.{key}")
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, path)

    for name in ("apsis", "triggers", "segments"):
        walk(getattr(activation, name).model_dump(by_alias=True), name)
    problems = []
    for place in dict.fromkeys(found):
        where, _, column = place.rpartition(": ")
        stem, _, entry = where.partition(".")
        problems.append(
            f"{stem}.yaml: {entry}: {column} is a leaving reason or churn reasons column "
            "(retention.yaml); reasons never go to APSIS, not as an attribute, a field or a tag"
        )
    return problems


def _advisor_problems(retention: RetentionFile, mapping: MappingFile) -> list[str]:
    """The advisor's columns live on the task table (dataverse.yaml ``tasks``): its key column
    (a text column) and the outcome (a choice column of the outcome's choice set)."""
    advisor = retention.advisor
    if mapping.tasks is None:
        if not advisor.enabled:
            return []
        return [
            "retention.yaml: advisor: enabled, but dataverse.yaml has no tasks section (the task "
            "table and the bridge's key and outcome columns on it): add it (the shipped "
            "mappings/dataverse.yaml has one), or set advisor.enabled: false"
        ]
    columns = mapping.tasks.columns
    problems: list[str] = []
    key_column = advisor.key_column.replace("{prefix}", mapping.publisher_prefix)  # a default
    key = columns.get(key_column)
    if key is None:
        problems.append(
            f"retention.yaml: advisor.key_column: {key_column!r} is not a column of "
            "dataverse.yaml tasks.columns"
        )
    elif key.type != "string":
        problems.append(
            f"retention.yaml: advisor.key_column: {key_column!r} must be a string column "
            f"in dataverse.yaml tasks.columns (it is {key.type})"
        )
    outcome = advisor.outcome
    if outcome is not None:
        found = columns.get(outcome.column)
        if found is None:
            problems.append(
                f"retention.yaml: advisor.outcome: {outcome.column!r} is not a column of "
                "dataverse.yaml tasks.columns"
            )
        elif found.type != "choice" or found.choices != outcome.choices:
            problems.append(
                f"retention.yaml: advisor.outcome: {outcome.column!r} must be a choice column of "
                f"set {outcome.choices!r} in dataverse.yaml tasks.columns"
            )
    return problems
