"""Compare the mapping with Dataverse's metadata: what is missing or wrong, and how to create it.

A plan is ordered as Dataverse needs it: tables, then plain columns, then lookup columns (each
made as a one-to-many relationship: ``POST RelationshipDefinitions`` carrying the
``LookupAttributeMetadata``, since ``POST .../Attributes`` refuses a lookup), then options an
existing choice column lacks (``InsertOptionValue``), then alternate keys; applying it waits for
each new key's index job to be Active (``EntityKeyIndexStatus``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import (
    ChoiceOption,
    insert_option_body,
    label,
    lookup_relationship_body,
    table_body,
)
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import ColumnSpec

__all__ = ["ProvisionStep", "apply_plan", "check_metadata", "plan"]

_TYPES = {  # mapping type → (AttributeType as Dataverse reports it, metadata class)
    "string": ("String", "StringAttributeMetadata"),
    "memo": ("Memo", "MemoAttributeMetadata"),
    "integer": ("Integer", "IntegerAttributeMetadata"),
    "decimal": ("Decimal", "DecimalAttributeMetadata"),
    "money": ("Money", "MoneyAttributeMetadata"),
    "date": ("DateTime", "DateTimeAttributeMetadata"),
    "datetime": ("DateTime", "DateTimeAttributeMetadata"),
    "boolean": ("Boolean", "BooleanAttributeMetadata"),
    "choice": ("Picklist", "PicklistAttributeMetadata"),
    "lookup": ("Lookup", "LookupAttributeMetadata"),
}

_ORDER = ("table", "column", "relationship", "option", "key")


@dataclass(frozen=True)
class ProvisionStep:
    kind: str  # table | column | relationship | option | key
    table: str
    name: str
    body: dict[str, Any]

    def describe(self) -> str:
        if self.kind == "table":
            return f"create table {self.name}"
        if self.kind == "relationship":
            target = self.body.get("ReferencedEntity")
            return f"create lookup {self.name} on {self.table} (relationship to {target})"
        if self.kind == "option":
            column = self.body.get("AttributeLogicalName")
            return (
                f"add choice value {self.body.get('Value')} ({self.name}) to {self.table}.{column}"
            )
        return f"create {self.kind} {self.name} on {self.table}"


def _column_body(name: str, spec: ColumnSpec, mapping: MappingFile) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": f"Microsoft.Dynamics.CRM.{_TYPES[spec.type][1]}",
        "SchemaName": name,
        "DisplayName": label(spec.label or name),
        "RequiredLevel": {"Value": "None"},
    }
    if spec.type in ("string", "memo"):
        body["MaxLength"] = spec.max_length or 100
    if spec.type == "date":
        body["Format"] = "DateOnly"
    if spec.type == "datetime":
        body["Format"] = "DateAndTime"
    if spec.type == "choice" and spec.choices:
        body["OptionSet"] = {
            "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
            "IsGlobal": False,
            "OptionSetType": "Picklist",
            "Options": [
                {"Value": o.value, "Label": label(o.label)}
                for o in mapping.choices[spec.choices].options.values()
            ],
        }
    return body


def _lookup_step(
    client: DataverseClient, table_map: Any, table: str, name: str, spec: ColumnSpec
) -> ProvisionStep:
    """A lookup column as its one-to-many relationship (the target is the "one" side)."""
    target = spec.target or ""
    navigation = getattr(table_map, "member_navigation", None)
    schema = (
        navigation if getattr(table_map, "member_lookup", None) == name and navigation else name
    )
    definition = client.schema.entity(target)
    primary = (definition or {}).get("PrimaryIdAttribute") or f"{target}id"
    body = lookup_relationship_body(
        f"{name}_{target}_{table}"[:100],
        referenced=target,
        referenced_attribute=primary,
        referencing=table,
        lookup_schema_name=schema,
        display=spec.label or name,
    )
    return ProvisionStep("relationship", table, name, body)


def _tables(mapping: MappingFile) -> list[tuple[Any, str, str]]:
    """``(table mapping, key column, key name)`` of every table the mapping writes."""
    tables: list[tuple[Any, str, str]] = [
        (mapping.member, mapping.member.key_column, mapping.member.key_name),
        (mapping.payment, mapping.payment.key_column, mapping.payment.key_name),
    ]
    if mapping.state is not None:
        tables.append((mapping.state, mapping.state.key_column, mapping.state.key_name))
    return tables


def plan(client: DataverseClient, mapping: MappingFile) -> list[ProvisionStep]:
    """What the mappings need and the environment lacks, in the order it must be created."""
    steps: list[ProvisionStep] = []
    for table_map, key_column, key_name in _tables(mapping):
        table = table_map.table
        definition = client.schema.entity(table)
        attributes: dict[str, Any] = {}
        if definition is None:
            primary = f"{mapping.publisher_prefix}_name"
            display = getattr(table_map, "label", table)
            steps.append(
                ProvisionStep(
                    "table",
                    table,
                    table,
                    table_body(
                        table,
                        display,
                        display,
                        primary_name=primary,
                        entity_set=table_map.entity_set,
                    ),
                )
            )
            attributes = {primary: {"AttributeType": "String"}}
        else:
            attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
        for name, spec in table_map.columns.items():
            if name not in attributes:
                if spec.type == "lookup":
                    steps.append(_lookup_step(client, table_map, table, name, spec))
                else:
                    steps.append(
                        ProvisionStep("column", table, name, _column_body(name, spec, mapping))
                    )
            elif (
                spec.type == "choice"
                and spec.choices
                and attributes[name].get("AttributeType") == "Picklist"
            ):
                have = {o.value for o in client.schema.choice_options(table, name)}
                for word, option in mapping.choices[spec.choices].options.items():
                    if option.value not in have:
                        body = insert_option_body(
                            table, name, ChoiceOption(option.value, option.label)
                        )
                        steps.append(ProvisionStep("option", table, word, body))
        keys = {k.get("SchemaName", "").lower() for k in (definition or {}).get("Keys", [])}
        if key_name.lower() not in keys:
            steps.append(
                ProvisionStep(
                    "key",
                    table,
                    key_name,
                    {
                        "SchemaName": key_name,
                        "DisplayName": label(key_name),
                        "KeyAttributes": [key_column],
                    },
                )
            )
    return sorted(steps, key=lambda step: _ORDER.index(step.kind))  # stable within a kind


def apply_plan(
    client: DataverseClient,
    steps: list[ProvisionStep],
    *,
    key_timeout: float = 600.0,
    key_poll: float = 5.0,
) -> None:
    """Create what the plan lists (in its order); wait for each new alternate key to be Active,
    since Dataverse refuses a key it is still indexing."""
    for step in steps:
        client.schema.create_metadata(
            step.kind, step.body, table=None if step.kind == "table" else step.table
        )
    for step in steps:
        if step.kind == "key":
            client.schema.wait_for_key(
                step.table, step.body["KeyAttributes"], timeout=key_timeout, poll=key_poll
            )


def check_metadata(client: DataverseClient, mapping: MappingFile) -> list[str]:
    """Every mapped table, column, type, choice value and alternate key the environment lacks."""
    problems = []
    for table_map, key_column, _ in _tables(mapping):
        definition = client.schema.entity(table_map.table)
        if definition is None:
            problems.append(f"table {table_map.table}: does not exist (run provision)")
            continue
        attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
        for name, spec in table_map.columns.items():
            attribute = attributes.get(name)
            if attribute is None:
                problems.append(f"{table_map.table}.{name}: column does not exist")
                continue
            expected = _TYPES[spec.type][0]
            if attribute.get("AttributeType") not in (expected, None):
                problems.append(
                    f"{table_map.table}.{name}: is {attribute.get('AttributeType')}, "
                    f"the mapping needs {expected}"
                )
            if spec.type == "choice" and spec.choices:
                have = {o.value for o in client.schema.choice_options(table_map.table, name)}
                for word, option in mapping.choices[spec.choices].options.items():
                    if option.value not in have:
                        problems.append(
                            f"{table_map.table}.{name}: choice value {option.value} "
                            f"({word}) does not exist"
                        )
        keys = [k.get("KeyAttributes", []) for k in definition.get("Keys", [])]
        if [key_column] not in keys:
            problems.append(f"{table_map.table}: no alternate key on {key_column}")
    return problems
