"""Table metadata as small typed values, and the bodies of the metadata writes ``provision`` needs.

Pure: :func:`parse_table` reads an ``EntityDefinitions(...)?$expand=Attributes,Keys`` answer; the
``*_body`` functions build what ``POST EntityDefinitions`` / ``.../Attributes`` / ``.../Keys`` /
``RelationshipDefinitions`` / ``GlobalOptionSetDefinitions`` / ``InsertOptionValue`` expect.
The client does the I/O and caches.

Choice options are not part of an ``$expand=Attributes`` answer in Dataverse (``OptionSet`` is a
navigation property reached by casting to ``PicklistAttributeMetadata``), so a column's options
are ``None`` until read that way (:meth:`.schema.Schema.choice_options`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SWEDISH",
    "AlternateKey",
    "ChoiceOption",
    "Column",
    "Table",
    "alternate_key_body",
    "choice_column_body",
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


def label(text: str, language: int = SWEDISH) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
                "Label": text,
                "LanguageCode": language,
            }
        ],
    }


def string_column_body(
    schema_name: str, display: str, *, max_length: int = 100, primary: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "SchemaName": schema_name,
        "AttributeType": "String",
        "AttributeTypeName": {"Value": "StringType"},
        "FormatName": {"Value": "Text"},
        "MaxLength": max_length,
        "DisplayName": label(display),
        "RequiredLevel": {"Value": "None"},
    }
    if primary:
        body["IsPrimaryName"] = True
    return body


def table_body(
    schema_name: str,
    display: str,
    plural: str,
    *,
    primary_name: str,
    entity_set: str | None = None,
    change_tracking: bool = True,
    ownership: str = "OrganizationOwned",
) -> dict[str, Any]:
    """A new table with its primary name column (a table cannot be created without one)."""
    body: dict[str, Any] = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": schema_name,
        "DisplayName": label(display),
        "DisplayCollectionName": label(plural),
        "OwnershipType": ownership,
        "HasActivities": False,
        "HasNotes": False,
        "IsActivity": False,
        "ChangeTrackingEnabled": change_tracking,
        "Attributes": [
            {
                **string_column_body(primary_name, "Namn", max_length=200, primary=True),
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
) -> dict[str, Any]:
    """A choice column with its own options, or bound to a global choice by name."""
    body: dict[str, Any] = {
        "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        "SchemaName": schema_name,
        "AttributeType": "Picklist",
        "DisplayName": label(display),
        "RequiredLevel": {"Value": "None"},
    }
    if global_choice:
        body["GlobalOptionSet@odata.bind"] = f"/GlobalOptionSetDefinitions(Name='{global_choice}')"
    else:
        body["OptionSet"] = {
            "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
            "IsGlobal": False,
            "OptionSetType": "Picklist",
            "Options": [{"Value": o.value, "Label": label(o.label)} for o in options],
        }
    return body


def global_choice_body(name: str, display: str, options: Sequence[ChoiceOption]) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
        "Name": name,
        "DisplayName": label(display),
        "IsGlobal": True,
        "OptionSetType": "Picklist",
        "Options": [{"Value": o.value, "Label": label(o.label)} for o in options],
    }


def insert_option_body(
    table: str, column: str, option: ChoiceOption, *, solution: str | None = None
) -> dict[str, Any]:
    """The ``InsertOptionValue`` action: one more option on an existing local choice column."""
    body: dict[str, Any] = {
        "EntityLogicalName": table,
        "AttributeLogicalName": column,
        "Value": option.value,
        "Label": label(option.label),
    }
    if solution:
        body["SolutionUniqueName"] = solution
    return body


def alternate_key_body(schema_name: str, columns: Sequence[str], display: str = "") -> dict:
    return {
        "SchemaName": schema_name,
        "DisplayName": label(display or schema_name),
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
) -> dict[str, Any]:
    """A one-to-many relationship carrying its lookup column: the only way Dataverse creates a
    lookup (``POST RelationshipDefinitions``; ``POST .../Attributes`` refuses one). The lookup's
    navigation property takes its schema name (``mbr_Member@odata.bind``)."""
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
            "Merge": "NoCascade",
            "Reparent": "NoCascade",
            "Share": "NoCascade",
            "Unshare": "NoCascade",
        },
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": lookup_schema_name,
            "DisplayName": label(display),
            "RequiredLevel": {"Value": "None"},
        },
    }
