"""The mapping file, as models: which tables and columns an event touches, and how.

A CRM admin reads and edits ``mappings/dataverse.yaml``; these models are its contract (and the
source of its JSON Schema). Column values are *transforms*: small, named operations over the event
and the member's current row, evaluated in :mod:`dynamics_bridge.mapping.transforms`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dynamics_bridge.model import EventKind, MemberRefKind, PaymentMethod

__all__ = [
    "EVENT_FIELDS",
    "REGISTER_STATUSES",
    "AddressColumns",
    "AddressMapping",
    "AddressSelect",
    "ChoiceSet",
    "ColumnSpec",
    "KindRule",
    "MappingFile",
    "MappingProblems",
    "MemberKey",
    "MemberTable",
    "PaymentTable",
    "RelatedColumn",
    "RelatedCount",
    "RelatedTable",
    "StateTable",
    "TaskTable",
    "Transform",
]

#: What a transform may read from an event (``method`` is derived from source and kind).
EventField = Literal[
    "event_id",
    "source",
    "kind",
    "member_ref.kind",
    "member_ref.value",
    "amount_minor",
    "currency",
    "occurred_at",
    "provider_ref",
    "reason_code",
    "reason_text",
    "origin",
    "method",
]
EVENT_FIELDS: tuple[str, ...] = get_args(EventField)


Location = tuple[str | int, ...]
Problem = tuple[Location, str]  # where in the file (a path of keys), what is wrong


class MappingProblems(ValueError):
    """Several problems a validator found across sections, each at its own place in the file;
    the loader reports one error per problem (``file:line:col: path: message``)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, w))}: {m}" for w, m in self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChoiceOption(_Strict):
    value: int
    label: str


class ChoiceSet(_Strict):
    """A Dataverse choice (option set): our words → its integers, with labels for provisioning."""

    options: dict[str, ChoiceOption]

    @model_validator(mode="after")
    def _distinct_values(self) -> ChoiceSet:
        """Two words with one value read back as the same word (``invoice`` and ``bankgiro``
        both 2: every member with 2 becomes ``bankgiro`` in APSIS)."""
        seen: dict[int, str] = {}
        problems: list[Problem] = []
        for word, option in self.options.items():
            if option.value in seen:
                problems.append(
                    (
                        ("options", word, "value"),
                        f"{option.value} is also the value of {seen[option.value]!r}: give "
                        "each option its own value",
                    )
                )
            else:
                seen[option.value] = word
        if problems:
            raise MappingProblems(problems)
        return self

    def value_of(self, word: str) -> int | None:
        option = self.options.get(word)
        return option.value if option else None


class ColumnSpec(_Strict):
    """A column the mapping writes; its type is checked against metadata and used to provision."""

    type: Literal[
        "string",
        "memo",
        "integer",
        "decimal",
        "money",
        "date",
        "datetime",
        "boolean",
        "choice",
        "lookup",
    ]
    label: str | None = None
    max_length: int | None = Field(default=None, ge=1, le=4000)
    choices: str | None = Field(default=None, description="Name of a choice set (type choice).")
    target: str | None = Field(default=None, description="Table a lookup points to.")

    @model_validator(mode="after")
    def _type_extras(self) -> ColumnSpec:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice column needs 'choices: <choice set name>'")
        if self.type == "lookup" and not self.target:
            raise ValueError("a lookup column needs 'target: <table>'")
        return self


class ChoiceFrom(_Strict):
    set: str
    value: str | None = Field(default=None, description="A fixed option of the set.")
    from_: EventField | None = Field(
        default=None, alias="from", description="Event field whose value names the option."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> ChoiceFrom:
        if (self.value is None) == (self.from_ is None):
            raise ValueError("give exactly one of 'value' or 'from'")
        return self


Period = Literal["month", "quarter", "half_year", "year"]


class PaidThrough(_Strict):
    """End of the period the payment covers; a payment made while already paid up extends it."""

    period: Period = "year"
    by_method: dict[PaymentMethod, Period] = Field(
        default_factory=dict, description="Another period for some payment methods."
    )


class Transform(_Strict):
    """Exactly one operation per column."""

    constant: Any = None
    copy_: EventField | None = Field(default=None, alias="copy")
    choice: ChoiceFrom | None = None
    date: EventField | None = None
    datetime: EventField | None = None
    money: EventField | None = None
    template: str | None = None
    paid_through: PaidThrough | None = None
    arrears: Literal["increase", "decrease", "clear"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            ops = [k for k in data if k in OPERATIONS]
            if len(ops) != 1 or len(data) != 1:
                raise ValueError(
                    f"a column takes exactly one of {', '.join(OPERATIONS)}; got {sorted(data)}"
                )
        return data

    @property
    def operation(self) -> str:
        (name,) = self.model_fields_set
        return "copy" if name == "copy_" else name


OPERATIONS = (
    "constant",
    "copy",
    "choice",
    "date",
    "datetime",
    "money",
    "template",
    "paid_through",
    "arrears",
)


class MemberKey(_Strict):
    """How a member reference of one kind finds its member row."""

    column: str | None = Field(default=None, description="Member column holding this reference.")
    via_payment: bool = Field(default=False, description="Resolve through the payment table.")

    @model_validator(mode="after")
    def _one_way(self) -> MemberKey:
        if (self.column is None) == (not self.via_payment):
            raise ValueError("give 'column' or 'via_payment: true'")
        return self


class MemberTable(_Strict):
    table: str = "contact"
    entity_set: str = "contacts"
    id_column: str = "contactid"
    key_column: str = Field(description="The member-number column with an alternate key.")
    key_name: str = Field(description="Schema name of that alternate key.")
    keys: dict[MemberRefKind, MemberKey]
    ordering_column: str = Field(description="Time of the last applied event: the ordering guard.")
    columns: dict[str, ColumnSpec]


class PaymentTable(_Strict):
    table: str
    entity_set: str
    label: str = "Payment event"
    key_column: str = Field(
        description="Holds the event id; alternate key, so writes are idempotent."
    )
    key_name: str
    member_lookup: str = Field(description="Lookup column to the member.")
    member_navigation: str = Field(description="Navigation property used with @odata.bind.")
    columns: dict[str, ColumnSpec]
    values: dict[str, Transform]
    event_column: str | None = Field(
        default=None,
        description="Memo column holding the canonical event JSON (for replays in event order).",
    )
    before_column: str | None = Field(
        default=None,
        description="Memo column holding the member's rule and guard columns as they were "
        "right before this event (JSON). With event_column, an event that arrives after newer "
        "ones of its member is replayed into place; without them it is stale.",
    )


class StateTable(_Strict):
    """A small key-value table for the bridge's own durable state (the activation side's
    Dataverse delta link): one row per name, under an alternate key."""

    table: str
    entity_set: str
    label: str = "Bridge state"
    key_column: str
    key_name: str
    value_column: str
    columns: dict[str, ColumnSpec]

    @model_validator(mode="after")
    def _declared(self) -> StateTable:
        missing: list[Problem] = [
            ((field,), f"{column} must be declared in state.columns")
            for field, column in (
                ("key_column", self.key_column),
                ("value_column", self.value_column),
            )
            if column not in self.columns
        ]
        if missing:
            raise MappingProblems(missing)
        return self


class TaskTable(_Strict):
    """Dataverse's standard ``task`` activity table, where the advisor tasks go (retention calls,
    failed mandate requests): ``provision`` adds ``columns`` to it and never creates the table;
    ``check`` compares them with the environment.

    The regarding lookup is polymorphic: a task regarding a contact binds it through the
    navigation property ``regardingobjectid_contact_task`` (Microsoft Learn, Dataverse table
    reference ``task``: relationship ``Contact_Tasks``, ReferencingAttribute
    ``regardingobjectid``, ReferencingEntityNavigationPropertyName
    ``regardingobjectid_contact_task``; powerapps-docs
    developer/data-platform/reference/entities/task.md)."""

    table: str = "task"
    entity_set: str = "tasks"
    id_column: str = "activityid"
    regarding_lookup: str = Field(
        default="regardingobjectid", description="The lookup column read as _<column>_value."
    )
    regarding_navigation: str = Field(
        default="regardingobjectid_contact_task",
        description="Navigation property that binds the regarding contact (@odata.bind).",
    )
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict,
        description="The bridge's own columns on the task table (key, outcome).",
    )


class KindRule(_Strict):
    """What one event kind changes on the member. No columns: only the payment row is written."""

    guard: str | None = Field(default=None, description="Ordering column; default the member's.")
    set: dict[str, Transform] = Field(default_factory=dict)


#: What the address refresh writes to the register-status column (options of its choice set).
REGISTER_STATUSES = ("active", "deceased", "emigrated", "deregistered", "not_found")


_ADDRESS_FIELDS = (
    "protected",
    "status",
    "checked_on",
    "transaction_id",
    "deceased_on",
    "last_changed",
    "county_code",
    "municipality_code",
)


class AddressColumns(_Strict):
    """Member columns for the postal address (Dataverse's contact has ``address1_*``)."""

    line1: str
    line2: str | None = None
    line3: str | None = None
    postal_code: str
    city: str
    country: str | None = Field(default=None, description="Written for foreign addresses.")


class NewMembers(_Strict):
    created: str = Field(default="createdon", description="When the member row was created.")
    days: int = Field(default=30, ge=1, description="Created this recently and never checked.")


class AddressSelect(_Strict):
    """Which members one refresh looks up; a reason left out is not used. Flags are cleared
    after the lookup, so a member is not asked about again the next night."""

    flagged: str | None = Field(default=None, description="Boolean column: a check was asked.")
    returned_mail: str | None = Field(default=None, description="Boolean column: post came back.")
    new_members: NewMembers | None = None
    not_checked_days: int | None = Field(
        default=None, ge=1, description="Last SPAR check older than this many days."
    )
    max_per_run: int = Field(
        default=500, ge=1, description="Lookups per run: flagged first, then returned mail, ..."
    )


class AddressMapping(_Strict):
    """SPAR address refresh: which member columns it writes. Protected identity only ever sets
    ``protected``; the address columns of such a member are never written."""

    columns: AddressColumns
    protected: str = Field(description="Boolean column: protected identity (never marketed).")
    status: str = Field(description="Choice column: active, deceased, emigrated, ...")
    status_choices: str = Field(default="register_status", description="Its choice set.")
    deceased_on: str | None = Field(default=None, description="Date column: date of death.")
    checked_on: str = Field(description="Datetime column: when SPAR was asked (audit).")
    transaction_id: str = Field(description="String column: SPAR's UUID for the lookup (audit).")
    last_changed: str | None = Field(
        default=None, description="Date column: SPAR's SenasteAndringSPAR."
    )
    county_code: str | None = Field(
        default=None,
        description="String column: the county (län) the person is registered in, two digits "
        "(SPAR's FolkbokfordLanKod); never written for protected identity.",
    )
    municipality_code: str | None = Field(
        default=None,
        description="String column: the municipality (kommun) the person is registered in, four "
        "digits, county first (0180); never written for protected identity.",
    )
    select: AddressSelect = Field(default_factory=AddressSelect)

    def written_columns(self) -> list[str]:
        """Every member column the refresh may write, for reads and checks."""
        optional = (
            self.deceased_on,
            self.last_changed,
            self.county_code,
            self.municipality_code,
            self.select.flagged,
        )
        return [
            c
            for c in (
                *self.columns.model_dump().values(),
                self.protected,
                self.status,
                self.checked_on,
                self.transaction_id,
                *optional,
                self.select.returned_mail,
            )
            if c
        ]


class RelatedColumn(_Strict):
    """One value read from a related row: its column, and the choice set its integers are
    words of (else the value as Dataverse answers it)."""

    column: str
    choices: str | None = Field(default=None, description="Choice set (read as its words).")


class RelatedCount(_Strict):
    """Count a member's rows in a window (an engagement source: registrations, sign-ins)."""

    date_column: str = Field(description="Date or date-time column of the related row.")
    window_days: int = Field(default=365, gt=0, le=3650)


class RelatedTable(_Strict):
    """A table reached from the member: through a lookup on the member (one row: the employer,
    the local branch) or through the table's own lookup to the member (many rows: memberships,
    event registrations; the latest one's columns, or a count in a window).

    Its values read as ``<name>.<column name>`` (``employer.industry``) in rules, segments,
    attributes, trigger fields and texts; a count as ``<name>.count``. These are the union's own
    tables: ``check`` compares them with live metadata, ``provision`` leaves them alone."""

    table: str = Field(description="Logical name of the related table.")
    entity_set: str = Field(description="Its entity set name (plural).")
    id_column: str = Field(description="Its primary id column.")
    lookup: str | None = Field(
        default=None, description="Lookup column on the member to this table (one row)."
    )
    member_lookup: str | None = Field(
        default=None, description="Lookup column on this table to the member (many rows)."
    )
    latest: str | None = Field(
        default=None, description="Many rows: the columns of the latest row by this column."
    )
    count: RelatedCount | None = None
    filter: str | None = Field(
        default=None, description="OData $filter the rows must also match (statecode eq 0)."
    )
    columns: dict[str, str | RelatedColumn] = Field(default_factory=dict)
    optional: bool = Field(
        default=False,
        description="A table the environment may lack: check warns, and its values stay empty "
        "(a score part on it has no data) instead of every run failing.",
    )

    @model_validator(mode="after")
    def _one_way(self) -> RelatedTable:
        if (self.lookup is None) == (self.member_lookup is None):
            raise ValueError("give 'lookup' (a column of the member) or 'member_lookup'")
        if self.lookup and self.optional:
            raise ValueError(
                "a table reached through a lookup on the member cannot be optional: every "
                "member read selects that lookup"
            )
        if self.lookup and (self.latest or self.count):
            raise ValueError("'latest' and 'count' are for many rows ('member_lookup')")
        if self.member_lookup and self.columns and not self.latest:
            raise ValueError("columns of many rows need 'latest: <column>' to pick one")
        if not self.columns and not self.count:
            raise ValueError("give 'columns' to read, or a 'count'")
        if "count" in self.columns:
            raise ValueError("'count' is the name of the count: name the column otherwise")
        return self

    def column_specs(self) -> dict[str, RelatedColumn]:
        """Each value's name -> its column (and choice set)."""
        return {
            name: spec if isinstance(spec, RelatedColumn) else RelatedColumn(column=spec)
            for name, spec in self.columns.items()
        }

    def names(self, prefix: str) -> list[str]:
        """The names its values read as: ``prefix.column`` (and ``prefix.count``)."""
        found = [f"{prefix}.{name}" for name in self.columns]
        if self.count is not None:
            found.append(f"{prefix}.count")
        return found


class MappingFile(_Strict):
    version: Literal[1] = 1
    publisher_prefix: str = Field(pattern=r"^[a-z][a-z0-9]{1,7}$")
    timezone: str = Field(
        default="Europe/Stockholm",
        description="Where calendar dates (paid through, last paid on) are cut.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        """A misspelt zone (``Europe/Stokholm``) fails here, not on every event of a sync."""
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}: give an IANA name such as Europe/Stockholm"
            ) from None
        return v

    choices: dict[str, ChoiceSet]
    member: MemberTable
    payment: PaymentTable
    rules: dict[EventKind, KindRule]
    address: AddressMapping | None = Field(
        default=None, description="SPAR address refresh; left out, the refresh is off."
    )
    state: StateTable | None = Field(
        default=None, description="The bridge's own state table (segments' delta link)."
    )
    tasks: TaskTable | None = Field(
        default=None,
        description="Advisor tasks (retention.yaml advisor): Dataverse's standard task table and "
        "the bridge's columns on it; left out, no tasks are made.",
    )
    related: dict[str, RelatedTable] = Field(
        default_factory=dict,
        description="Tables reached from the member (employer, branch, memberships, event "
        "registrations): their values usable as <name>.<column> in the activation files.",
    )

    def related_names(self) -> set[str]:
        """Every ``<table>.<value>`` name the related tables give."""
        return {n for name, table in self.related.items() for n in table.names(name)}

    @model_validator(mode="after")
    def _cross_checks(self) -> MappingFile:
        """References between sections; every problem found, each at its own place."""
        problems = self._address_problems() + self._reference_problems()
        if problems:
            raise MappingProblems(problems)
        return self

    def _address_problems(self) -> list[Problem]:
        if self.address is None:
            return []
        address, columns = self.address, self.member.columns
        problems: list[Problem] = []
        named = [
            (("address", "columns", field), value)
            for field, value in address.columns.model_dump().items()
        ] + [(("address", field), getattr(address, field)) for field in _ADDRESS_FIELDS]
        named += [
            (("address", "select", field), getattr(address.select, field))
            for field in ("flagged", "returned_mail")
        ]
        problems += [
            (where, f"{c} is not a declared member column")
            for where, c in named
            if c and c not in columns
        ]
        if MemberRefKind.PERSONNUMMER not in self.member.keys or not (
            self.member.keys[MemberRefKind.PERSONNUMMER].column
        ):
            problems.append(
                (
                    ("member", "keys", MemberRefKind.PERSONNUMMER.value),
                    "must name a column (the address refresh looks members up by it)",
                )
            )
        choice_set = self.choices.get(address.status_choices)
        if choice_set is None:
            problems.append(
                (("address", "status_choices"), f"no choice set {address.status_choices!r}")
            )
        else:
            problems += [
                (
                    ("address", "status_choices"),
                    f"{address.status_choices} needs an option {word!r}",
                )
                for word in REGISTER_STATUSES
                if word not in choice_set.options
            ]
        for where, name, wanted in (
            (("address", "protected"), address.protected, "boolean"),
            (("address", "select", "flagged"), address.select.flagged, "boolean"),
            (("address", "select", "returned_mail"), address.select.returned_mail, "boolean"),
            (("address", "status"), address.status, "choice"),
            (("address", "checked_on"), address.checked_on, "datetime"),
            (("address", "deceased_on"), address.deceased_on, "date"),
            (("address", "last_changed"), address.last_changed, "date"),
            (("address", "county_code"), address.county_code, "string"),
            (("address", "municipality_code"), address.municipality_code, "string"),
        ):
            if name and name in columns and columns[name].type != wanted:
                problems.append((where, f"{name} must be a {wanted} column"))
        for field, digits in (("county_code", 2), ("municipality_code", 4)):
            name = getattr(address, field)
            length = columns[name].max_length if name in columns else None
            if length is not None and length < digits:
                problems.append(
                    (("address", field), f"{name} must hold {digits} characters (max_length)")
                )
        return problems

    def _reference_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        for table, table_columns in (
            ("member", self.member.columns),
            ("payment", self.payment.columns),
            ("tasks", self.tasks.columns if self.tasks else {}),
        ):
            for name, spec in table_columns.items():
                if spec.choices and spec.choices not in self.choices:
                    problems.append(
                        (
                            (table, "columns", name, "choices"),
                            f"unknown choice set {spec.choices!r}",
                        )
                    )
        for kind, rule in self.rules.items():
            guard = rule.guard or self.member.ordering_column
            where: Location = ("rules", kind.value, "guard")
            if guard not in self.member.columns:
                problems.append((where, f"{guard} is not a member column"))
            for column, transform in rule.set.items():
                where = ("rules", kind.value, "set", column)
                if column not in self.member.columns:
                    problems.append((where, "not a declared member column"))
                problems.extend(_transform_problems(where, transform, self))
        for field in ("event_column", "before_column"):
            name = getattr(self.payment, field)
            if name is None:
                continue
            declared = self.payment.columns.get(name)
            if declared is None:
                problems.append((("payment", field), f"{name} is not a declared payment column"))
            elif declared.type != "memo":
                problems.append((("payment", field), f"{name} must be a memo column"))
        if (self.payment.event_column is None) != (self.payment.before_column is None):
            problems.append((("payment",), "give both event_column and before_column, or neither"))
        for column, transform in self.payment.values.items():
            where = ("payment", "values", column)
            if column not in self.payment.columns:
                problems.append((where, "not a declared payment column"))
            problems.extend(_transform_problems(where, transform, self))
        for source, related in self.related.items():
            for value, read in related.column_specs().items():
                if read.choices and read.choices not in self.choices:
                    problems.append(
                        (
                            ("related", source, "columns", value, "choices"),
                            f"unknown choice set {read.choices!r}",
                        )
                    )
        for ref_kind, key in self.member.keys.items():
            if key.column and key.column not in self.member.columns:
                problems.append(
                    (
                        ("member", "keys", ref_kind.value, "column"),
                        f"{key.column} is not a member column",
                    )
                )
        return problems


def _transform_problems(
    where: Location, transform: Transform, mapping: MappingFile
) -> list[Problem]:
    if transform.choice is None:
        return []
    choice_set = mapping.choices.get(transform.choice.set)
    if choice_set is None:
        return [((*where, "choice", "set"), f"unknown choice set {transform.choice.set!r}")]
    if transform.choice.value is not None and transform.choice.value not in choice_set.options:
        return [
            (
                (*where, "choice", "value"),
                f"{transform.choice.value!r} is not an option of {transform.choice.set}",
            )
        ]
    return []
