"""Compare the mapping with Dataverse's metadata: what is missing or wrong, and how to create it.

Lookup columns are created here through ``.../Attributes`` as the sandbox accepts them; real
Dataverse creates a lookup only with its relationship (``DataverseClient.create_relationship``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import label, table_body
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


@dataclass(frozen=True)
class ProvisionStep:
    kind: str  # table | column | key
    table: str
    name: str
    body: dict[str, Any]

    def describe(self) -> str:
        return f"create {self.kind} {self.name}" + (
            f" on {self.table}" if self.kind != "table" else ""
        )


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
    if spec.type == "lookup":
        body["Targets"] = [spec.target]
    return body


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
        definition = client.entity(table)
        existing: set[str] = set()
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
            existing = {f"{mapping.publisher_prefix}_name"}
        else:
            existing = {a["LogicalName"] for a in definition.get("Attributes", [])}
        for name, spec in table_map.columns.items():
            if name not in existing:
                steps.append(
                    ProvisionStep("column", table, name, _column_body(name, spec, mapping))
                )
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
    return steps


def apply_plan(client: DataverseClient, steps: list[ProvisionStep]) -> None:
    for step in steps:
        client.create_metadata(
            step.kind, step.body, table=None if step.kind == "table" else step.table
        )


def check_metadata(client: DataverseClient, mapping: MappingFile) -> list[str]:
    """Every mapped table, column, type, choice value and alternate key the environment lacks."""
    problems = []
    for table_map, key_column, _ in _tables(mapping):
        definition = client.entity(table_map.table)
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
                have = {o.value for o in client.choice_options(table_map.table, name)}
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
