"""Table metadata as small typed values, and the bodies of the metadata writes ``provision`` needs.

Pure: :func:`parse_table` reads an ``EntityDefinitions(...)?$expand=Attributes,Keys`` answer; the
``*_body`` functions build what ``POST EntityDefinitions`` / ``.../Attributes`` / ``.../Keys`` /
``RelationshipDefinitions`` / ``GlobalOptionSetDefinitions`` / ``InsertOptionValue`` expect.
The client does the I/O and caches.

Choice options are not part of an ``$expand=Attributes`` answer in Dataverse (``OptionSet`` is a
navigation property reached by casting to ``PicklistAttributeMetadata``), so a column's options
are ``None`` until read that way (:meth:`.schema.Schema.choice_options`).

Rules the bodies follow (Microsoft Learn, power-apps/developer/data-platform/...; the sandbox
refuses each break of them):

- labels: a Label holds one LocalizedLabel per language, and one in the environment's base
  language must always be there (customize-labels-support-multiple-languages);
- relationships: Merge cascades either Cascade or NoCascade, but for a referenced table that
  can be merged (contact, account) Cascade is the only valid option
  (configure-entity-relationship-cascading-behavior);
- yes/no columns: ``BooleanAttributeMetadata`` with ``OptionSet`` = ``BooleanOptionSetMetadata``
  holding ``TrueOption`` (1) and ``FalseOption`` (0) (webapi/create-update-column-definitions-
  using-web-api, "Create a boolean column");
- date-only columns: ``DateTimeBehavior`` DateOnly, not only ``Format`` DateOnly, which keeps
  UserLocal behaviour and shifts dates by the user's offset (behavior-format-date-time-attribute);
- names and choice values: a publisher's customization prefix starts every schema name, and its
  option value prefix × 10,000 starts its choice values (reference/entities/publisher;
  InsertOptionValueRequest.Value);
- alternate keys: one per column set; a second key on the same columns (0x80060894
  EntityKeyWithSelectedAttributesExists) or of the same name (0x80060893 EntityKeyNameExists)
  is refused (define-alternate-keys-entity; reference/web-service-error-codes);
- creates are not idempotent: a table, column or key sent again is refused (0x80044363
  SchemaNameisNotUnique), never replaced, so a create whose answer was lost is read back
  before anything is sent again (reference/web-service-error-codes; Azure Architecture Center,
  patterns/retry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENGLISH",
    "MERGEABLE",
    "SWEDISH",
    "AlternateKey",
    "ChoiceOption",
    "Column",
    "Table",
    "alternate_key_body",
    "boolean_column_body",
    "choice_column_body",
    "date_behaviour",
    "datetime_column_body",
    "global_choice_body",
    "insert_option_body",
    "label",
    "label_text",
    "lookup_relationship_body",
    "parse_options",
    "parse_table",
    "string_column_body",
    "table_body",
]

SWEDISH = 1053  # LCID for labels
ENGLISH = 1033
#: Tables Dataverse can merge: a relationship they are the referenced side of must cascade Merge.
MERGEABLE = frozenset({"contact", "account", "lead", "incident"})


@dataclass(frozen=True)
class ChoiceOption:
    value: int
    label: str


@dataclass(frozen=True)
class Column:
    logical_name: str
    attribute_type: str | None
    schema_name: str | None = None
    max_length: int | None = None
    required: str | None = None
    options: tuple[ChoiceOption, ...] | None = None  # None: not a choice, or not read yet


@dataclass(frozen=True)
class AlternateKey:
    schema_name: str
    columns: tuple[str, ...]
    status: str = "Active"  # EntityKeyIndexStatus: Pending | InProgress | Active | Failed

    @property
    def usable(self) -> bool:
        return self.status == "Active"


@dataclass(frozen=True)
class Table:
    logical_name: str
    entity_set: str
    primary_id: str | None = None
    primary_name: str | None = None
    schema_name: str | None = None
    change_tracking: bool = False
    columns: Mapping[str, Column] = field(default_factory=dict)
    keys: tuple[AlternateKey, ...] = ()

    def key_on(self, *columns: str) -> AlternateKey | None:
        """The declared alternate key on exactly these columns, if any."""
        wanted = set(columns)
        return next((k for k in self.keys if set(k.columns) == wanted), None)


def label_text(value: Any) -> str:
    """The text of a Label: the user's localized label, else the first localized one."""
    if not isinstance(value, dict):
        return str(value or "")
    user = value.get("UserLocalizedLabel")
    if isinstance(user, dict) and user.get("Label"):
        return str(user["Label"])
    labels = value.get("LocalizedLabels") or []
    return str(labels[0].get("Label", "")) if labels else ""


def parse_options(option_set: Any) -> tuple[ChoiceOption, ...]:
    """The options of an OptionSet (local or global); none for anything else."""
    options = option_set.get("Options") or [] if isinstance(option_set, dict) else []
    return tuple(ChoiceOption(int(o["Value"]), label_text(o.get("Label"))) for o in options)


def _column(attribute: Mapping[str, Any]) -> Column:
    option_set = attribute.get("OptionSet") or attribute.get("GlobalOptionSet")
    required = attribute.get("RequiredLevel")
    return Column(
        logical_name=str(attribute["LogicalName"]),
        attribute_type=attribute.get("AttributeType"),
        schema_name=attribute.get("SchemaName"),
        max_length=attribute.get("MaxLength"),
        required=required.get("Value") if isinstance(required, dict) else required,
        options=parse_options(option_set) if isinstance(option_set, dict) else None,
    )


def parse_table(definition: Mapping[str, Any]) -> Table:
    """An EntityDefinitions answer (with expanded Attributes and Keys) as a :class:`Table`."""
    logical = str(definition["LogicalName"])
    return Table(
        logical_name=logical,
        entity_set=str(definition.get("EntitySetName") or logical + "s"),
        primary_id=definition.get("PrimaryIdAttribute"),
        primary_name=definition.get("PrimaryNameAttribute"),
        schema_name=definition.get("SchemaName"),
        change_tracking=bool(definition.get("ChangeTrackingEnabled")),
        columns={
            str(a["LogicalName"]): _column(a)
            for a in definition.get("Attributes") or []
            if a.get("LogicalName")
        },
        keys=tuple(
            AlternateKey(
                str(k.get("SchemaName") or k.get("LogicalName") or ""),
                tuple(k.get("KeyAttributes") or ()),
                str(k.get("EntityKeyIndexStatus") or "Active"),
            )
            for k in definition.get("Keys") or []
        ),
    )


# -- bodies for metadata writes ---------------------------------------------------------------


def label(text: str, languages: int | Sequence[int] = SWEDISH) -> dict[str, Any]:
    """A Label with ``text`` in every language of ``languages``, the first being the
    environment's base language: Dataverse needs a label in the base language (module notes),
    so the first is also the ``UserLocalizedLabel``."""
    codes = [languages] if isinstance(languages, int) else list(dict.fromkeys(languages))
    localized = [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
            "Label": _TRANSLATED.get((text, code), text),
            "LanguageCode": code,
        }
        for code in codes
    ]
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": localized,
        "UserLocalizedLabel": localized[0],
    }


#: The few words provisioning makes up itself, per language (the mapping's own labels are used
#: as they are in every language; translate them in Dataverse afterwards if you like).
_TRANSLATED = {
    ("Ja", 1033): "Yes",
    ("Nej", 1033): "No",
    ("Namn", 1033): "Name",
}


def _attribute(
    kind: str,
    schema_name: str,
    display: str,
    languages: int | Sequence[int],
    *,
    type_name: bool = True,
) -> dict[str, Any]:
    """What every column create body starts with: its metadata type, names and label, not
    required (``kind`` is the AttributeType: String, Boolean, DateTime, Picklist, Lookup)."""
    body: dict[str, Any] = {
        "@odata.type": f"Microsoft.Dynamics.CRM.{kind}AttributeMetadata",
        "SchemaName": schema_name,
        "AttributeType": kind,
        "DisplayName": label(display, languages),
        "RequiredLevel": {"Value": "None"},
    }
    if type_name:
        body["AttributeTypeName"] = {"Value": f"{kind}Type"}
    return body


def string_column_body(
    schema_name: str,
    display: str,
    *,
    max_length: int = 100,
    primary: bool = False,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    body = _attribute("String", schema_name, display, languages)
    body.update({"FormatName": {"Value": "Text"}, "MaxLength": max_length})
    if primary:
        body["IsPrimaryName"] = True
    return body


def boolean_column_body(
    schema_name: str,
    display: str,
    *,
    true_label: str = "Ja",
    false_label: str = "Nej",
    default: bool = False,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    """A yes/no column: Dataverse needs its two options (``BooleanOptionSetMetadata`` with
    ``TrueOption`` 1 and ``FalseOption`` 0) in the create body (module notes)."""
    return {
        **_attribute("Boolean", schema_name, display, languages),
        "DefaultValue": default,
        "OptionSet": {
            "@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata",
            "OptionSetType": "Boolean",
            "TrueOption": {"Value": 1, "Label": label(true_label, languages)},
            "FalseOption": {"Value": 0, "Label": label(false_label, languages)},
        },
    }


def datetime_column_body(
    schema_name: str,
    display: str,
    *,
    date_only: bool,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    """A date-only column is ``Format: DateOnly`` *and* ``DateTimeBehavior: DateOnly``: with the
    format alone it behaves as UserLocal, stores midnight local time as UTC and a date entered in
    Stockholm reads back a day early (module notes). A date-and-time column keeps
    UserLocal (stored in UTC, the bridge writes UTC)."""
    return {
        **_attribute("DateTime", schema_name, display, languages),
        "Format": "DateOnly" if date_only else "DateAndTime",
        "DateTimeBehavior": {"Value": "DateOnly" if date_only else "UserLocal"},
    }


def date_behaviour(attribute: Mapping[str, Any]) -> str | None:
    """A date column's ``DateTimeBehavior`` (``UserLocal``, ``DateOnly``,
    ``TimeZoneIndependent``), or None when the definition does not say."""
    behaviour = attribute.get("DateTimeBehavior")
    value = behaviour.get("Value") if isinstance(behaviour, dict) else behaviour
    return str(value) if value else None


def table_body(
    schema_name: str,
    display: str,
    plural: str,
    *,
    primary_name: str,
    entity_set: str | None = None,
    change_tracking: bool = True,
    ownership: str = "OrganizationOwned",
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    """A new table with its primary name column (a table cannot be created without one)."""
    body: dict[str, Any] = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": schema_name,
        "DisplayName": label(display, languages),
        "DisplayCollectionName": label(plural, languages),
        "OwnershipType": ownership,
        "HasActivities": False,
        "HasNotes": False,
        "IsActivity": False,
        "ChangeTrackingEnabled": change_tracking,
        "Attributes": [
            {
                **string_column_body(
                    primary_name, "Namn", max_length=200, primary=True, languages=languages
                ),
                "LogicalName": primary_name.lower(),
            }
        ],
    }
    if entity_set:
        body["EntitySetName"] = entity_set
    return body


def choice_column_body(
    schema_name: str,
    display: str,
    options: Sequence[ChoiceOption] = (),
    *,
    global_choice: str | None = None,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    """A choice column with its own options, or bound to a global choice by name."""
    body = _attribute("Picklist", schema_name, display, languages, type_name=False)
    if global_choice:
        body["GlobalOptionSet@odata.bind"] = f"/GlobalOptionSetDefinitions(Name='{global_choice}')"
    else:
        body["OptionSet"] = {
            "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
            "IsGlobal": False,
            "OptionSetType": "Picklist",
            "Options": [{"Value": o.value, "Label": label(o.label, languages)} for o in options],
        }
    return body


def global_choice_body(
    name: str,
    display: str,
    options: Sequence[ChoiceOption],
    *,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
        "Name": name,
        "DisplayName": label(display, languages),
        "IsGlobal": True,
        "OptionSetType": "Picklist",
        "Options": [{"Value": o.value, "Label": label(o.label, languages)} for o in options],
    }


def insert_option_body(
    table: str,
    column: str,
    option: ChoiceOption,
    *,
    solution: str | None = None,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    """The ``InsertOptionValue`` action: one more option on an existing local choice column."""
    body: dict[str, Any] = {
        "EntityLogicalName": table,
        "AttributeLogicalName": column,
        "Value": option.value,
        "Label": label(option.label, languages),
    }
    if solution:
        body["SolutionUniqueName"] = solution
    return body


def alternate_key_body(
    schema_name: str,
    columns: Sequence[str],
    display: str = "",
    *,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    return {
        "SchemaName": schema_name,
        "DisplayName": label(display or schema_name, languages),
        "KeyAttributes": list(columns),
    }


def lookup_relationship_body(
    schema_name: str,
    *,
    referenced: str,
    referenced_attribute: str,
    referencing: str,
    lookup_schema_name: str,
    display: str,
    languages: int | Sequence[int] = SWEDISH,
) -> dict[str, Any]:
    """A one-to-many relationship carrying its lookup column: the only way Dataverse creates a
    lookup (``POST RelationshipDefinitions``; ``POST .../Attributes`` refuses one). The lookup's
    navigation property takes its schema name (``mbr_Member@odata.bind``).

    ``Merge`` is ``Cascade``: for a referenced table that can be merged (contact, account) it is
    the only valid option (module notes); ``NoCascade`` is kept for the others."""
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": schema_name,
        "ReferencedEntity": referenced,
        "ReferencedAttribute": referenced_attribute,
        "ReferencingEntity": referencing,
        "ReferencingEntityNavigationPropertyName": lookup_schema_name,
        "CascadeConfiguration": {
            "Assign": "NoCascade",
            "Delete": "RemoveLink",
            "Merge": "Cascade" if referenced in MERGEABLE else "NoCascade",
            "Reparent": "NoCascade",
            "Share": "NoCascade",
            "Unshare": "NoCascade",
        },
        "Lookup": _attribute("Lookup", lookup_schema_name, display, languages),
    }
