"""The activation config files as models: ``mappings/apsis.yaml``, ``triggers.yaml``,
``segments.yaml``. These are their contract and the source of their JSON Schema.

Column names are member (or payment) columns of ``mappings/dataverse.yaml``, ``{prefix}``
included; :func:`cross_check` says which ones the mapping does not declare. Names of attributes,
events and tags are ours; ``apsis.yaml`` maps them to APSIS discriminators.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cached_property
from itertools import pairwise
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dynamics_bridge.activation.rules import Rule, matches, rule_columns
from dynamics_bridge.mapping.models import MappingFile
from dynamics_bridge.model import EventKind, PaymentMethod

__all__ = [
    "ActivationConfig",
    "ApsisFile",
    "Attribute",
    "Audience",
    "Engagement",
    "Facts",
    "FixIt",
    "Outbox",
    "Reminder",
    "ReminderText",
    "SegmentRule",
    "SegmentsFile",
    "TextVariant",
    "TriggerRule",
    "TriggersFile",
    "Yearly",
    "cross_check",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: The derived member facts (:mod:`dynamics_bridge.activation.facts`; sources in :class:`Facts`).
FactName = Literal[
    "age",
    "age_band",
    "tenure_years",
    "tenure_band",
    "county_code",
    "county",
    "region",
    "municipality_code",
    "municipality",
    "member_type",
    "payment_method",
]


# -- apsis.yaml -------------------------------------------------------------------------------


class Attribute(_Strict):
    """One APSIS attribute and where its value comes from: a member column or a computed value."""

    discriminator: str = Field(description="APSIS attribute discriminator (Data model).")
    column: str | None = Field(default=None, description="Member column (choices as words).")
    computed: Literal["engagement_score", "engagement_parts", "segments", FactName] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Attribute:
        if (self.column is None) == (self.computed is None):
            raise ValueError("give exactly one of 'column' or 'computed'")
        return self


class Audience(_Strict):
    """Who may be marketed to, and where the bridge keeps what it pushed."""

    consent_column: str = Field(description="Boolean member column: marketing consent.")
    protected_column: str | None = Field(
        default=None, description="Boolean member column: protected identity (never pushed)."
    )
    excluded_statuses: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Choice column -> words that keep a member out (deceased, emigrated, ...).",
    )
    state_column: str = Field(
        description="Memo member column: JSON of the attributes and tags APSIS holds (empty: "
        "never pushed). Differences are computed against it."
    )


class ProfileKey(_Strict):
    column: str = Field(description="Member column whose value is the APSIS profile key.")


class ApsisFile(_Strict):
    version: Literal[1] = 1
    keyspace: str = "com.apsis1.keyspaces.crm-id"
    section: str = Field(description="Section discriminator; BRIDGE_APSIS__SECTION overrides.")
    profile_key: ProfileKey
    audience: Audience
    attributes: dict[str, Attribute] = Field(default_factory=dict)
    events: dict[str, str] = Field(
        default_factory=dict,
        description="Our event type -> APSIS event discriminator (created in APSIS's UI).",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Our tag -> discriminator.")


# -- triggers.yaml ----------------------------------------------------------------------------

DataField = Literal[
    "source_event_id",
    "payment_id",
    "amount",
    "currency",
    "method",
    "member_number",
    "reason",
    "reason_code",
    "fix_it",
    "kind",
    "occurred_on",
]


#: The event's own values a trigger field can carry (filled when the payment is applied).
EVENT_FIELDS: tuple[str, ...] = get_args(DataField)


class TextVariant(_Strict):
    """A wording for the members a rule matches (any column, fact or related value)."""

    when: Rule
    text: str


class ReminderText(_Strict):
    """A message's wording, chosen per member: the first of ``variants`` whose rule matches,
    else the text for the payment method, else ``default``. ``{date}`` is the date a reminder
    is about, ``{years}`` a yearly reminder's count of years (the age, the years of
    membership)."""

    default: str = ""
    by_method: dict[PaymentMethod, str] = Field(default_factory=dict)
    variants: list[TextVariant] = Field(
        default_factory=list,
        description="Texts by rule (age band, member type, region ...), the first match wins.",
    )

    def text(
        self,
        method: str | None,
        member: Mapping[str, Any] | None = None,
        today: date | None = None,
    ) -> str:
        if member is not None and today is not None:
            for variant in self.variants:
                if matches(variant.when, member, today):
                    return variant.text
        for candidate, text in self.by_method.items():
            if candidate.value == method:
                return text
        return self.default

    def columns(self) -> set[str]:
        """The columns its rules read."""
        return set().union(*(rule_columns(v.when) for v in self.variants))


class TriggerRule(_Strict):
    """Which applied events start this trigger, and what its APSIS event carries."""

    kinds: list[EventKind] = Field(min_length=1, description="Event kinds, one or a list.")
    first_payment: bool = Field(
        default=False, description="Only a member's first payment (welcome)."
    )
    event: str | None = Field(default=None, description="Event type (apsis.yaml); default: name.")
    fields: list[str | dict[str, str]] = Field(
        default_factory=lambda: list[str | dict[str, str]](["source_event_id"]),
        description="The APSIS event's fields: a value of the event (source_event_id, amount, "
        "method ...) or of the member (a column, a derived fact such as age_band, a related "
        "value such as employer.industry), by its own name or as {field: value}.",
    )
    text: ReminderText | None = Field(
        default=None, description="A personal text, sent as the event's field 'text'."
    )

    @field_validator("kinds", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("fields")
    @classmethod
    def _carries_id(cls, v: list[str | dict[str, str]]) -> list[str | dict[str, str]]:
        for item in v:
            if isinstance(item, dict) and len(item) != 1:
                raise ValueError("a renamed field is one {field: value} pair")
        sources = [s for item in v for s in ([item] if isinstance(item, str) else item.values())]
        if "source_event_id" not in sources:
            raise ValueError("an event carries source_event_id, so flows can tell duplicates")
        return v

    def field_map(self) -> dict[str, str]:
        """APSIS field -> the value it carries (``text`` too when a text is configured)."""
        found: dict[str, str] = {}
        for item in self.fields:
            found.update({item: item} if isinstance(item, str) else item)
        if self.text is not None:
            found.setdefault("text", "text")
        return found

    def event_fields(self) -> dict[str, str]:
        """The fields filled from the payment event when it is applied."""
        return {k: v for k, v in self.field_map().items() if v in EVENT_FIELDS}

    def member_fields(self) -> dict[str, str]:
        """The fields filled from the member (and the text) when the trigger is sent."""
        return {k: v for k, v in self.field_map().items() if v not in EVENT_FIELDS}


class MethodTexts(_Strict):
    default: str | None = None
    codes: dict[str, str] = Field(default_factory=dict)


class FixIt(_Strict):
    """What a member can do about a failed payment, by payment method and reason code."""

    default: str
    by_method: dict[PaymentMethod, MethodTexts] = Field(default_factory=dict)

    def text(self, method: PaymentMethod, code: str | None) -> str:
        texts = self.by_method.get(method)
        if texts is None:
            return self.default
        if code is not None and code in texts.codes:
            return texts.codes[code]
        return texts.default or self.default


class Outbox(_Strict):
    """Payment-table columns that make the payment row the trigger outbox (written in the same
    change set as the payment, so a trigger outlives a crash before it was sent)."""

    payload_column: str = Field(description="Memo: the triggers of this event, as JSON.")
    state_column: str = Field(
        description="Choice: pending, sending, sent, skipped, failed, unconfirmed, dropped."
    )
    state_choices: str = "trigger_state"
    claimed_column: str = Field(description="Datetime: when a sender claimed the row.")
    lease_minutes: int = Field(
        default=15,
        ge=1,
        description="A claim older than this was lost in a crash (its outcome is unknown: read "
        "back, not sent again blindly); an unconfirmed send is read back after this long.",
    )


class TriggersFile(_Strict):
    version: Literal[1] = 1
    outbox: Outbox
    first_payment_column: str = Field(
        description="Member column empty until the first payment (e.g. last paid on)."
    )
    first_paid_column: str | None = Field(
        default=None,
        description="Date column the first_payment trigger(s) (welcome) fill (benefits reminder).",
    )
    triggers: dict[str, TriggerRule]
    fix_it: FixIt


# -- segments.yaml ----------------------------------------------------------------------------


class SegmentRule(_Strict):
    rule: Rule
    tag: str | None = Field(default=None, description="Tag in apsis.yaml; default: the name.")
    description: str = ""


class CountComponent(_Strict):
    weight: float = Field(ge=0)
    column: str = Field(
        description="Integer member column, or a related table's count (events.count): how "
        "many in the window."
    )
    full_at: float = Field(gt=0, description="This many counts as full marks.")


class TenureComponent(_Strict):
    weight: float = Field(ge=0)
    column: str = Field(description="Date member column: member since.")
    full_after_days: int = Field(default=1825, gt=0)


class OnTimeComponent(_Strict):
    weight: float = Field(ge=0)
    window_days: int = Field(default=365, gt=0, description="Payments of this many days count.")


class Engagement(_Strict):
    """Score 0-100: weighted mean of the components that have data (weights renormalised).

    Counts come from member columns or from related tables (``dataverse.yaml`` ``related``
    with a ``count``: event registrations, advice bookings, portal sign-ins, survey answers,
    benefit uses), the named ones below or any number under ``sources``."""

    column: str = Field(description="Integer member column the score is written to.")
    parts_column: str | None = Field(
        default=None,
        description="String member column for the score's explanation: each part's share "
        "in percent (on_time_payments=100 tenure=40 events=-), '-' for a part without data.",
    )
    on_time_payments: OnTimeComponent | None = None
    tenure: TenureComponent | None = None
    benefit_use: CountComponent | None = None
    events: CountComponent | None = None
    portal_visits: CountComponent | None = None
    surveys: CountComponent | None = None
    sources: dict[str, CountComponent] = Field(
        default_factory=dict, description="More counts by name (advice bookings, sign-ins ...)."
    )

    @model_validator(mode="after")
    def _distinct_names(self) -> Engagement:
        if clash := sorted(set(self.sources) & {*_COUNT_PARTS, "on_time_payments", "tenure"}):
            raise ValueError(f"sources: {clash} are parts of their own: configure them there")
        return self

    @cached_property
    def _counts(self) -> dict[str, CountComponent]:
        parts = {name: getattr(self, name) for name in _COUNT_PARTS}
        named = {name: part for name, part in parts.items() if part is not None}
        return {**named, **self.sources}

    def counts(self) -> dict[str, CountComponent]:
        """The count parts by name (computed once: the score asks for every member)."""
        return self._counts

    @cached_property
    def _part_names(self) -> tuple[str, ...]:
        fixed = [n for n in ("on_time_payments", "tenure") if getattr(self, n) is not None]
        return (*fixed, *self.counts())

    def part_names(self) -> tuple[str, ...]:
        """Every configured part, in the order the explanation lists them."""
        return self._part_names


_COUNT_PARTS = ("benefit_use", "events", "portal_visits", "surveys")


class Step(_Strict):
    column: str = Field(description="Date member column the reminder is timed from.")
    days: list[int] = Field(min_length=1, description="One or more steps (winback nudges).")
    catch_up_days: int = Field(
        default=7, ge=0, description="A step missed by up to this many days is still sent."
    )

    @field_validator("days", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, int) else v


#: The oldest anniversary a yearly reminder looks for (every-year birthdays stop here).
MAX_YEARS = 120


class Yearly(_Strict):
    """Once a year on a date's anniversary (birthdays, years of membership)."""

    column: str = Field(description="Date member column: a birth date, the day the member joined.")
    years: list[int] | None = Field(
        default=None,
        description="Which anniversaries (1, 5, 10, 25 ...); none: every year from the first.",
    )
    catch_up_days: int = Field(
        default=7, ge=0, le=300, description="A day missed by up to this many days is still sent."
    )
    leap_day: Literal["feb28", "mar1"] = Field(
        default="feb28",
        description="Where 29 February falls in a year without one: 28 February (the default, "
        "the last day of the same month) or 1 March.",
    )

    @field_validator("years", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, int) else v

    @field_validator("years")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 1 or max(v) > MAX_YEARS):
            raise ValueError(f"anniversaries are between 1 and {MAX_YEARS} years")
        return sorted(set(v)) if v is not None else None


ReminderField = Literal["source_event_id", "member_number", "date", "method", "text", "years"]
#: A reminder's own values (the others a field can carry are the member's).
REMINDER_FIELDS: tuple[str, ...] = get_args(ReminderField)


def _default_reminder_fields() -> dict[str, str]:
    return {"source_event_id": "source_event_id", "member_number": "member_number", "date": "date"}


class Reminder(_Strict):
    """Sent once per period: ``before`` a date (payment due, expiry), ``after`` one (first
    payment, membership ended), or on its anniversary ``every_year`` (birthday, years of
    membership)."""

    before: Step | None = None
    after: Step | None = None
    every_year: Yearly | None = None
    when: Rule | None = Field(default=None, description="Only members matching this rule.")
    event: str = Field(description="Event type (apsis.yaml).")
    text: ReminderText = Field(default_factory=ReminderText)
    fields: dict[str, str] = Field(
        default_factory=_default_reminder_fields,
        description="Our value -> the field name of the APSIS event version. Our values: "
        "source_event_id, member_number, date, method, text, years, or any of the member's "
        "(a column, a derived fact such as age_band, a related value such as employer.industry).",
    )

    @field_validator("fields")
    @classmethod
    def _carries_id(cls, v: dict[str, str]) -> dict[str, str]:
        if "source_event_id" not in v:
            raise ValueError("a reminder carries source_event_id, so flows can tell duplicates")
        return v

    @model_validator(mode="after")
    def _one_timing(self) -> Reminder:
        if sum(t is not None for t in (self.before, self.after, self.every_year)) != 1:
            raise ValueError("give exactly one of 'before', 'after' or 'every_year'")
        return self

    @property
    def step(self) -> Step | Yearly:
        return self.before or self.after or self.every_year  # type: ignore[return-value]


class Facts(_Strict):
    """Where the derived member facts come from (``age``, ``age_band``, ``tenure_years``,
    ``tenure_band``, ``county_code``, ``county``, ``region``, ``municipality_code``,
    ``municipality``, ``member_type``; ``payment_method`` is read from ``method_column``):
    usable wherever a column is."""

    birth_date_column: str | None = Field(
        default=None, description="Date member column with the birth date (tried first)."
    )
    personnummer_column: str | None = Field(
        default=None,
        description="Member column with the personnummer or samordningsnummer: the birth date "
        "it encodes (the number itself is never used for anything else).",
    )
    age_bands: list[int] = Field(
        default_factory=lambda: [18, 26, 36, 51, 66],
        description="Lower bounds of the age bands: [18, 26] gives 0-17, 18-25 and 26+.",
    )
    joined_column: str | None = Field(
        default=None, description="Date member column: the day the member joined (tenure)."
    )
    tenure_bands: list[int] = Field(
        default_factory=lambda: [1, 3, 5, 10],
        description="Lower bounds of the tenure bands in whole years: 0, 1-2, 3-4, 5-9, 10+.",
    )
    county_column: str | None = Field(
        default=None,
        description="String member column with the county code (two digits, SPAR's "
        "FolkbokfordLanKod): county_code, county and region (the county's name). Without a "
        "value there, the county is the municipality code's first two digits.",
    )
    municipality_column: str | None = Field(
        default=None,
        description="String member column with the municipality code (four digits, 0180): "
        "municipality_code and municipality (its name).",
    )
    member_type_column: str | None = Field(
        default=None, description="Member column (a choice) with the member type: member_type."
    )

    @field_validator("age_bands", "tenure_bands")
    @classmethod
    def _rising(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1 or any(b <= a for a, b in pairwise(v)):
            raise ValueError("bounds are rising whole numbers from 1")
        return v


class SegmentsFile(_Strict):
    version: Literal[1] = 1
    method_column: str = Field(description="Member column: payment method (a choice).")
    engagement: Engagement
    facts: Facts = Field(default_factory=Facts)
    segments: dict[str, SegmentRule]
    reminders: dict[str, Reminder] = Field(default_factory=dict)
    reminders_column: str = Field(
        description="Memo member column: JSON of the period each reminder was last sent for."
    )
    segments_column: str | None = Field(
        default=None, description="String member column: the member's segments, for CRM users."
    )
    full_run_hours: float = Field(
        default=24,
        gt=0,
        description="The segments job evaluates every member when its last full run is older "
        "than this (time windows move without the row changing); otherwise only the changed.",
    )


class ActivationConfig(_Strict):
    """The three files together (see :func:`dynamics_bridge.activation.loader.load_activation`)."""

    apsis: ApsisFile
    triggers: TriggersFile
    segments: SegmentsFile


#: The derived member facts (:mod:`dynamics_bridge.activation.facts`).
FACT_NAMES: tuple[str, ...] = get_args(FactName)
COMPUTED = {"engagement_score", "engagement_parts", *FACT_NAMES}


def cross_check(config: ActivationConfig, mapping: MappingFile) -> list[str]:
    """Every name one file uses that another does not define (``file: where: problem``)."""
    member, payment = mapping.member.columns, mapping.payment.columns
    apsis, triggers, segments = config.apsis, config.triggers, config.segments
    problems: list[str] = []
    related = mapping.related_names()

    def column(file: str, where: str, name: str | None, *, computed: bool = False) -> None:
        # computed: a place that also takes a derived fact or a related table's value
        if name and name not in member and not (computed and name in COMPUTED | related):
            problems.append(f"{file}: {where}: {name} is not a member column in dataverse.yaml")

    column("apsis.yaml", "profile_key.column", apsis.profile_key.column)
    for field_name in ("consent_column", "protected_column", "state_column"):
        column("apsis.yaml", f"audience.{field_name}", getattr(apsis.audience, field_name))
    for name in apsis.audience.excluded_statuses:
        column("apsis.yaml", "audience.excluded_statuses", name)
    for name, attribute in apsis.attributes.items():
        column("apsis.yaml", f"attributes.{name}.column", attribute.column, computed=True)
    outbox = triggers.outbox
    for field_name in ("payload_column", "state_column", "claimed_column"):
        name = getattr(outbox, field_name)
        if name not in payment:
            problems.append(f"triggers.yaml: outbox.{field_name}: {name} is not a payment column")
    choice_set = mapping.choices.get(outbox.state_choices)
    for word in ("pending", "sending", "sent", "skipped", "failed", "unconfirmed", "dropped"):
        if choice_set is None or word not in choice_set.options:
            problems.append(f"triggers.yaml: outbox.state_choices needs an option {word!r}")
    column("triggers.yaml", "first_payment_column", triggers.first_payment_column)
    column("triggers.yaml", "first_paid_column", triggers.first_paid_column)
    if triggers.first_paid_column and not any(t.first_payment for t in triggers.triggers.values()):
        problems.append(
            "triggers.yaml: first_paid_column: no trigger has first_payment: true to fill it"
        )
    for name, trigger in triggers.triggers.items():
        for field_name, source in trigger.member_fields().items():
            if source != "text" or trigger.text is None:
                column(
                    "triggers.yaml", f"triggers.{name}.fields.{field_name}", source, computed=True
                )
        for used in sorted(trigger.text.columns() if trigger.text else ()):
            column("triggers.yaml", f"triggers.{name}.text.variants", used, computed=True)
        if (trigger.event or name) not in apsis.events:
            problems.append(
                f"triggers.yaml: triggers.{name}: no event {trigger.event or name!r} "
                "in apsis.yaml events"
            )
    column("segments.yaml", "method_column", segments.method_column)
    for field_name in (
        "birth_date_column",
        "personnummer_column",
        "joined_column",
        "county_column",
        "municipality_column",
        "member_type_column",
    ):
        column("segments.yaml", f"facts.{field_name}", getattr(segments.facts, field_name))
    column("segments.yaml", "reminders_column", segments.reminders_column)
    column("segments.yaml", "segments_column", segments.segments_column)

    def typed(where: str, name: str, wanted: tuple[str, ...], why: str) -> None:
        # A part whose column holds no number (or date) would drop out of every score unsaid.
        if name in related:
            return
        column("segments.yaml", where, name)
        spec = member.get(name)
        if spec is not None and spec.type not in wanted:
            problems.append(
                f"segments.yaml: {where}: {name} is a {spec.type} column in dataverse.yaml; "
                f"{why} needs {' or '.join(wanted)}"
            )

    numbers = ("integer", "decimal", "money")
    engagement = segments.engagement
    typed("engagement.column", engagement.column, ("integer", "decimal"), "the score")
    if engagement.parts_column:
        typed("engagement.parts_column", engagement.parts_column, ("string", "memo"), "the parts")
    if engagement.tenure:
        typed("engagement.tenure.column", engagement.tenure.column, ("date", "datetime"), "tenure")
    for name, part in engagement.counts().items():
        typed(f"engagement.{name}.column", part.column, numbers, "a count")
    for name, segment in segments.segments.items():
        for used in sorted(rule_columns(segment.rule)):
            column("segments.yaml", f"segments.{name}.rule", used, computed=True)
        if (segment.tag or name) not in apsis.tags:
            problems.append(
                f"segments.yaml: segments.{name}: no tag {segment.tag or name!r} in apsis.yaml tags"
            )
    for name, reminder in segments.reminders.items():
        column("segments.yaml", f"reminders.{name}", reminder.step.column)
        for used in sorted(rule_columns(reminder.when) if reminder.when else ()):
            column("segments.yaml", f"reminders.{name}.when", used, computed=True)
        for used in sorted(reminder.text.columns()):
            column("segments.yaml", f"reminders.{name}.text.variants", used, computed=True)
        for ours in reminder.fields:
            if ours not in REMINDER_FIELDS:
                column("segments.yaml", f"reminders.{name}.fields", ours, computed=True)
        if reminder.event not in apsis.events:
            problems.append(
                f"segments.yaml: reminders.{name}: no event {reminder.event!r} in apsis.yaml events"
            )
    return problems
