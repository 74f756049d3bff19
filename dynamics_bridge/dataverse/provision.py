"""Compare the mapping with Dataverse's metadata: what is missing or wrong, and how to create it.

A plan is ordered as Dataverse needs it: tables, then plain columns, then lookup columns (each
made as a one-to-many relationship: ``POST RelationshipDefinitions`` carrying the
``LookupAttributeMetadata``, since ``POST .../Attributes`` refuses a lookup), then options an
existing choice column lacks (``InsertOptionValue``), then alternate keys; applying it waits for
each new key's index job to be Active (``EntityKeyIndexStatus``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import (
    ChoiceOption,
    alternate_key_body,
    boolean_column_body,
    date_behaviour,
    datetime_column_body,
    insert_option_body,
    label,
    lookup_relationship_body,
    table_body,
)
from dynamics_bridge.dataverse.schema import Publisher
from dynamics_bridge.errors import (
    AmbiguousError,
    BridgeError,
    InputError,
    NotFoundError,
    PermanentError,
)
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import ColumnSpec

__all__ = [
    "Environment",
    "ProvisionStep",
    "apply_plan",
    "check_metadata",
    "environment",
    "key_mismatches",
    "plan",
]

log = logging.getLogger(__name__)

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
_RUN_PROVISION = "run `dynamics-bridge provision`"


@dataclass(frozen=True)
class Environment:
    """What provisioning needs to know about the target environment: label languages (the base
    language first), the solution and its publisher."""

    languages: tuple[int, ...]
    solution: str | None = None
    publisher: Publisher | None = None

    def warnings(self, mapping: MappingFile) -> list[str]:
        """What the admin should know before ``--apply``."""
        if not self.solution:
            return [
                "no solution set (BRIDGE_DATAVERSE__SOLUTION): what provision creates goes to the "
                "Default Solution under the default publisher and cannot be moved to another "
                "environment as a solution; create a solution with your publisher first"
            ]
        if self.publisher is None or not self.publisher.prefix:
            return [
                f"solution {self.solution}: its publisher has no customization prefix, so names "
                "and choice values cannot be checked against it before they are sent; give the "
                "publisher a prefix (Power Apps → Solutions → Publishers) equal to "
                f"publisher_prefix {mapping.publisher_prefix!r}"
            ]
        if self.publisher.prefix != mapping.publisher_prefix:
            return [
                f"solution {self.solution}'s publisher prefix is {self.publisher.prefix!r} but the "
                f"mapping's publisher_prefix is {mapping.publisher_prefix!r}: Dataverse refuses "
                "names without the publisher's prefix; make them agree"
            ]
        return []

    def describe(self) -> str:
        codes = ", ".join(f"{c} (base)" if i == 0 else str(c) for i, c in enumerate(self.languages))
        where = f"solution {self.solution}" if self.solution else "no solution"
        if self.publisher is not None:
            values = self.publisher.option_values
            where += (
                f" (publisher {self.publisher.name or '?'}, prefix {self.publisher.prefix}_, "
                f"choice values {values.start}-{values.stop - 1})"
            )
        return f"{where}; labels in {codes}"


def environment(client: DataverseClient, mapping: MappingFile) -> Environment:
    """The label languages (the environment's base language always among them, first) and the
    configured solution's publisher, read from Dataverse."""
    settings = client.transport.settings
    base = client.schema.base_language()
    wanted = [int(code) for code in getattr(settings, "label_languages", None) or []]
    languages = tuple(dict.fromkeys([base, *wanted]))
    solution = settings.solution or None
    publisher = client.schema.publisher(solution) if solution else None
    return Environment(languages, solution, publisher)


@dataclass(frozen=True)
class ProvisionStep:
    kind: str  # table | column | relationship | option | key
    table: str
    name: str
    body: dict[str, Any]
    detail: str = ""  # the column's type as the mapping declares it, for the plan

    def describe(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        if self.kind == "table":
            return f"create table {self.name}{extra}"
        if self.kind == "relationship":
            target = self.body.get("ReferencedEntity")
            return f"create lookup {self.name} on {self.table} (relationship to {target})"
        if self.kind == "option":
            column = self.body.get("AttributeLogicalName")
            return (
                f"add choice value {self.body.get('Value')} ({self.name}) to {self.table}.{column}"
            )
        return f"create {self.kind} {self.name} on {self.table}{extra}"


def _detail(spec: ColumnSpec) -> str:
    if spec.type in ("string", "memo"):
        return f"{spec.type}, max {spec.max_length or 100}"
    if spec.type == "date":
        return "date only"
    if spec.type == "datetime":
        return "date and time, user local"
    if spec.type == "choice":
        return f"choice {spec.choices}"
    return spec.type


def _column_body(
    name: str, spec: ColumnSpec, mapping: MappingFile, languages: tuple[int, ...]
) -> dict[str, Any]:
    display = spec.label or name
    if spec.type == "boolean":
        return boolean_column_body(name, display, languages=languages)
    if spec.type in ("date", "datetime"):
        return datetime_column_body(
            name, display, date_only=spec.type == "date", languages=languages
        )
    body: dict[str, Any] = {
        "@odata.type": f"Microsoft.Dynamics.CRM.{_TYPES[spec.type][1]}",
        "SchemaName": name,
        "DisplayName": label(display, languages),
        "RequiredLevel": {"Value": "None"},
    }
    if spec.type in ("string", "memo"):
        body["MaxLength"] = spec.max_length or 100
    if spec.type == "choice" and spec.choices:
        body["OptionSet"] = {
            "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
            "IsGlobal": False,
            "OptionSetType": "Picklist",
            "Options": [
                {"Value": o.value, "Label": label(o.label, languages)}
                for o in mapping.choices[spec.choices].options.values()
            ],
        }
    return body


def _lookup_step(
    client: DataverseClient,
    table_map: Any,
    table: str,
    name: str,
    spec: ColumnSpec,
    languages: tuple[int, ...],
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
        languages=languages,
    )
    return ProvisionStep("relationship", table, name, body, f"lookup to {target}")


def _tables(mapping: MappingFile) -> list[tuple[str, Any, str, str]]:
    """``(section, table mapping, key column, key name)`` of every table the mapping writes."""
    tables: list[tuple[str, Any, str, str]] = [
        ("member", mapping.member, mapping.member.key_column, mapping.member.key_name),
        ("payment", mapping.payment, mapping.payment.key_column, mapping.payment.key_name),
    ]
    if mapping.state is not None:
        tables.append(("state", mapping.state, mapping.state.key_column, mapping.state.key_name))
    return tables


def _standard_tables(mapping: MappingFile) -> list[tuple[str, Any]]:
    """``(section, table mapping)`` of the standard tables the mapping adds columns to but
    provision never creates: Dataverse's ``task`` table (``tasks``), as the standard contact
    gets its custom columns."""
    return [("tasks", mapping.tasks)] if mapping.tasks is not None else []


def _column_steps(
    client: DataverseClient,
    mapping: MappingFile,
    table_map: Any,
    attributes: dict[str, Any],
    languages: tuple[int, ...],
) -> list[ProvisionStep]:
    """The columns of ``table_map`` its table lacks, and the options its choice columns lack."""
    table = table_map.table
    steps: list[ProvisionStep] = []
    for name, spec in table_map.columns.items():
        if name not in attributes:
            if spec.type == "lookup":
                steps.append(_lookup_step(client, table_map, table, name, spec, languages))
            else:
                body = _column_body(name, spec, mapping, languages)
                steps.append(ProvisionStep("column", table, name, body, _detail(spec)))
        elif (
            spec.type == "choice"
            and spec.choices
            and attributes[name].get("AttributeType") == "Picklist"
        ):
            have = {o.value for o in client.schema.choice_options(table, name)}
            for word, option in mapping.choices[spec.choices].options.items():
                if option.value not in have:
                    body = insert_option_body(
                        table,
                        name,
                        ChoiceOption(option.value, option.label),
                        languages=languages,
                    )
                    steps.append(ProvisionStep("option", table, word, body, spec.choices))
    return steps


def _key_on(definition: dict[str, Any] | None, columns: list[str]) -> str | None:
    """The schema name of the alternate key on exactly ``columns``, if one exists."""
    for key in (definition or {}).get("Keys", []):
        if set(key.get("KeyAttributes") or ()) == set(columns):
            return str(key.get("SchemaName") or key.get("LogicalName") or "")
    return None


def key_mismatches(
    client: DataverseClient, mapping: MappingFile, *, source: str = "the mapping"
) -> list[str]:
    """Keys the mapping names differently from the existing key on the same column: Dataverse
    refuses a second key on the same columns, so the mapping must use the existing name."""
    problems = []
    for section, table_map, key_column, key_name in _tables(mapping):
        existing = _key_on(client.schema.entity(table_map.table), [key_column])
        if existing and existing.lower() != key_name.lower():
            problems.append(
                f"{table_map.table}: the alternate key on {key_column} is named {existing}, the "
                f"mapping says {key_name}: rename key_name to {existing} in {source} "
                f"({section}.key_name)"
            )
    return problems


def plan(
    client: DataverseClient,
    mapping: MappingFile,
    env: Environment | None = None,
    *,
    source: str = "the mapping",
) -> list[ProvisionStep]:
    """What the mappings need and the environment lacks, in the order it must be created.

    Raises :class:`InputError` listing every name without the solution publisher's prefix and
    every choice value outside its option value range: Dataverse would refuse them."""
    env = env or environment(client, mapping)
    languages = env.languages
    steps: list[ProvisionStep] = []
    for _, table_map, key_column, key_name in _tables(mapping):
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
                        languages=languages,
                    ),
                    display,
                )
            )
            attributes = {primary: {"AttributeType": "String"}}
        else:
            attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
        steps += _column_steps(client, mapping, table_map, attributes, languages)
        # A key on the same column under another name already serves: Dataverse refuses a
        # second one (check_metadata and the plan's warnings say to rename key_name).
        if _key_on(definition, [key_column]) is None:
            body = alternate_key_body(key_name, [key_column], languages=languages)
            steps.append(ProvisionStep("key", table, key_name, body, key_column))
    # Standard tables the bridge adds columns to and never creates (tasks: Dataverse's task
    # activity table): one missing is for check to say, not for provision to make.
    for _, table_map in _standard_tables(mapping):
        definition = client.schema.entity(table_map.table)
        if definition is not None:
            attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
            steps += _column_steps(client, mapping, table_map, attributes, languages)
    problems = _publisher_problems(steps, mapping, env, source)
    if problems:
        raise InputError("\n".join(problems), location=source)
    return sorted(steps, key=lambda step: _ORDER.index(step.kind))  # stable within a kind


def _publisher_problems(
    steps: list[ProvisionStep], mapping: MappingFile, env: Environment, source: str
) -> list[str]:
    """Names and choice values the solution's publisher does not allow, each with its place."""
    publisher = env.publisher
    if publisher is None or not publisher.prefix:
        return []
    problems = []
    prefix = publisher.prefix.lower() + "_"
    for step in steps:
        names = [str(step.body.get("SchemaName") or "")]
        if step.kind == "relationship":
            names.append(str(step.body["Lookup"]["SchemaName"]))
        if step.kind == "option":
            names = []
        for name in names:
            if name and not name.lower().startswith(prefix):
                problems.append(
                    f"{step.table}: {step.kind} {name} does not start with the publisher prefix "
                    f"{prefix} of solution {env.solution}: rename it (or use publisher_prefix "
                    f"{publisher.prefix})"
                )
    allowed = publisher.option_values
    for step in steps:
        values: list[tuple[str, int]] = []
        if step.kind == "option":
            values = [(step.name, int(step.body["Value"]))]
        elif step.kind == "column" and step.body.get("OptionSet", {}).get("Options"):
            spec_choices = step.detail.removeprefix("choice ")
            words = {o.value: w for w, o in mapping.choices[spec_choices].options.items()}
            values = [
                (words.get(o["Value"], "?"), int(o["Value"]))
                for o in step.body["OptionSet"]["Options"]
            ]
        for word, value in values:
            if value not in allowed:
                choice_set = step.detail.removeprefix("choice ")
                problems.append(
                    _out_of_range(choice_set, word, value, publisher, env.solution or "")
                )
    return list(dict.fromkeys(problems))


def _out_of_range(
    choice_set: str, word: str, value: int, publisher: Publisher, solution: str, source: str = ""
) -> str:
    """A choice value the solution's publisher does not allow: what provision refuses to send
    and check reports (Dataverse refuses option values outside the option value prefix range)."""
    allowed = publisher.option_values
    where = f" in {source}" if source else ""
    return (
        f"choices.{choice_set}.options.{word}: value {value} is outside the option value range "
        f"{allowed.start}-{allowed.stop - 1} of solution {solution}'s publisher (option value "
        f"prefix {publisher.option_value_prefix}): renumber the set from {allowed.start}{where}"
    )


# -- applying ---------------------------------------------------------------------------------


def apply_plan(
    client: DataverseClient,
    steps: list[ProvisionStep],
    *,
    key_timeout: float = 600.0,
    key_poll: float = 5.0,
) -> None:
    """Create what the plan lists (in its order); wait for each new alternate key to be Active,
    since Dataverse refuses a key it is still indexing.

    A create whose answer was lost (AmbiguousError) is not sent again blindly: what exists is
    read back; a create refused because the thing already exists counts as done when what
    exists is what the step wanted."""
    for step in steps:
        _apply(client, step)
    for step in steps:
        if step.kind == "key":
            client.schema.wait_for_key(
                step.table, step.body["KeyAttributes"], timeout=key_timeout, poll=key_poll
            )


def _create(client: DataverseClient, step: ProvisionStep) -> None:
    client.schema.create_metadata(
        step.kind, step.body, table=None if step.kind == "table" else step.table
    )


def _apply(client: DataverseClient, step: ProvisionStep) -> None:
    try:
        _create(client, step)
        return
    except AmbiguousError:
        found = _existing(client, step)
        if found is None:
            log.warning("%s: no answer and not there; creating it again", step.describe())
            _create(client, step)
            return
        if found:
            raise PermanentError(f"{step.describe()}: exists but {found}") from None
        log.info("%s: no answer, but it exists: done", step.describe())
    except PermanentError as refused:
        found = _existing(client, step)
        if found is None:
            raise
        if found:
            raise PermanentError(f"{step.describe()}: exists but {found}") from refused
        log.info("%s: already exists as planned", step.describe())


def _existing(client: DataverseClient, step: ProvisionStep) -> str | None:
    """Read back what ``step`` creates: None when absent, "" when it exists as the step wants,
    else how it differs."""
    try:
        if step.kind == "table":
            return None if client.schema.entity(step.name, refresh=True) is None else ""
        definition = client.schema.entity(step.table, refresh=True)
        if definition is None:
            return None
        attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
        if step.kind == "column":
            found = attributes.get(str(step.body["SchemaName"]).lower())
            if found is None:
                return None
            wanted = (
                str(step.body["@odata.type"]).rsplit(".", 1)[-1].removesuffix("AttributeMetadata")
            )
            have = found.get("AttributeType")
            return "" if have in (wanted, None) else f"is {have}, not {wanted}"
        if step.kind == "relationship":
            found = attributes.get(str(step.body["Lookup"]["SchemaName"]).lower())
            if found is None:
                return None
            return "" if found.get("AttributeType") in ("Lookup", None) else "is not a lookup"
        if step.kind == "option":
            column = str(step.body["AttributeLogicalName"])
            have = {o.value for o in client.schema.choice_options(step.table, column)}
            return "" if int(step.body["Value"]) in have else None
        if step.kind == "key":
            name = _key_on(definition, list(step.body["KeyAttributes"]))
            if name is None:
                return None
            wanted_name = str(step.body["SchemaName"])
            return "" if name.lower() == wanted_name.lower() else f"is named {name}"
    except BridgeError:
        return None
    return None


# -- checking ---------------------------------------------------------------------------------


def check_metadata(
    client: DataverseClient, mapping: MappingFile, *, source: str = "the mapping"
) -> list[str]:
    """Every mapped table, column, type, date behaviour, choice value and alternate key the
    environment lacks or has differently, each with its place in ``source`` and what to do."""
    problems, publisher = _solution_problems(client, mapping, source)
    solution = str(client.transport.settings.solution or "")

    def refused(choice_set: str, word: str) -> str | None:
        """An option provision would create but the solution's publisher does not allow (so
        provision refuses it): renumber, not "run provision"."""
        value = mapping.choices[choice_set].options[word].value
        if publisher is None or value in publisher.option_values:
            return None
        return _out_of_range(choice_set, word, value, publisher, solution, source)

    for section, table_map, key_column, key_name in _tables(mapping):
        table = table_map.table
        definition = client.schema.entity(table)
        if definition is None:
            problems.append(
                f"table {table} not found: {_RUN_PROVISION} ({source}: {section}.table)"
            )
            problems += [
                outside
                for spec in table_map.columns.values()
                if spec.type == "choice" and spec.choices
                for word in mapping.choices[spec.choices].options
                if (outside := refused(spec.choices, word))
            ]
            continue
        problems += _column_problems(
            client, mapping, section, table_map, definition, refused, source
        )
        existing = _key_on(definition, [key_column])
        if existing is None:
            problems.append(
                f"{table}: no alternate key on {key_column}: {_RUN_PROVISION} "
                f"({source}: {section}.key_name)"
            )
        elif existing.lower() != key_name.lower():
            problems.append(
                f"{table}: the alternate key on {key_column} is named {existing}, the mapping "
                f"says {key_name} (provision would plan a second key, which Dataverse refuses): "
                f"rename key_name to {existing} in {source} ({section}.key_name)"
            )
    for section, table_map in _standard_tables(mapping):
        problems += _standard_table_problems(client, mapping, section, table_map, refused, source)
    problems = list(dict.fromkeys(problems))  # a choice set two columns use: said once
    return problems


def _standard_table_problems(
    client: DataverseClient,
    mapping: MappingFile,
    section: str,
    table_map: Any,
    refused: Callable[[str, str], str | None],
    source: str,
) -> list[str]:
    """A standard table the mapping adds columns to (``tasks``): it must be there with the
    named entity set, id and regarding lookup (provision never creates it), and its mapped
    columns are checked like any other's."""
    place = f"{source}: {section}"
    definition = client.schema.entity(table_map.table)
    if definition is None:
        return [
            f"table {table_map.table} not found: it is Dataverse's standard activity table, "
            f"which provision does not create; correct {section}.table ({place}), or remove the "
            f"{section} section"
        ]
    problems: list[str] = []
    entity_set = definition.get("EntitySetName")
    if entity_set and entity_set != table_map.entity_set:
        problems.append(
            f"{table_map.table}: its entity set is {entity_set}, the mapping says "
            f"{table_map.entity_set}: correct {section}.entity_set ({place})"
        )
    attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
    for field, column, kinds in (
        ("id_column", table_map.id_column, None),
        ("regarding_lookup", table_map.regarding_lookup, _LOOKUPS),
    ):
        found = attributes.get(column)
        if found is None:
            problems.append(
                f"{table_map.table}.{column}: column not found: correct {section}.{field} ({place})"
            )
        elif kinds and found.get("AttributeType") not in (*kinds, None):
            problems.append(
                f"{table_map.table}.{column}: is not a lookup: correct {section}.{field} ({place})"
            )
    problems += _column_problems(client, mapping, section, table_map, definition, refused, source)
    return problems


def _column_problems(
    client: DataverseClient,
    mapping: MappingFile,
    section: str,
    table_map: Any,
    definition: dict[str, Any],
    refused: Callable[[str, str], str | None],
    source: str,
) -> list[str]:
    """Each mapped column of an existing table: there, of the declared type, date behaviour
    and with every choice value."""
    table = table_map.table
    attributes = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
    problems: list[str] = []
    for name, spec in table_map.columns.items():
        place = f"{source}: {section}.columns.{name}"
        attribute = attributes.get(name)
        if attribute is None:
            problems.append(f"{table}.{name}: column not found: {_RUN_PROVISION} ({place})")
            if spec.type == "choice" and spec.choices:
                for word in mapping.choices[spec.choices].options:
                    if outside := refused(spec.choices, word):
                        problems.append(outside)
            continue
        expected = _TYPES[spec.type][0]
        if attribute.get("AttributeType") not in (expected, None):
            problems.append(
                f"{table}.{name}: is {attribute.get('AttributeType')}, the mapping declares "
                f"type {spec.type} ({expected}): correct the type in {place}"
            )
            continue
        if spec.type in ("date", "datetime"):
            problems += _date_problems(table, name, spec.type, attribute, place)
        if spec.type == "choice" and spec.choices:
            have = {o.value for o in client.schema.choice_options(table, name)}
            for word, option in mapping.choices[spec.choices].options.items():
                if option.value in have:
                    continue
                problems.append(
                    refused(spec.choices, word)
                    or f"{table}.{name}: choice value {option.value} ({word}) not found: "
                    f"{_RUN_PROVISION} ({source}: choices.{spec.choices}.options.{word})"
                )
    return problems


_LOOKUPS = ("Lookup", "Customer", "Owner")


def related_problems(
    client: DataverseClient, mapping: MappingFile, *, source: str = "the mapping"
) -> tuple[list[str], list[str]]:
    """The related tables (``related``: the union's own employer, branch, membership tables)
    against live metadata: each table, entity set, lookup and column must exist. Provision
    creates none of them, so each problem says to correct the mapping. Returns (errors,
    warnings): an ``optional`` table the environment lacks is a warning (its values stay
    empty)."""
    problems: list[str] = []
    warnings: list[str] = []
    member = client.schema.entity(mapping.member.table)
    member_columns = {a["LogicalName"]: a for a in (member or {}).get("Attributes", [])}
    for name, related in mapping.related.items():
        place = f"{source}: related.{name}"
        definition = client.schema.entity(related.table)
        if definition is None:
            (warnings if related.optional else problems).append(
                f"related table {related.table} not found"
                + (": its values stay empty" if related.optional else "")
                + f": correct related.{name}.table ({place}), or remove the entry"
            )
            continue
        entity_set = definition.get("EntitySetName")
        if entity_set and entity_set != related.entity_set:
            problems.append(
                f"{related.table}: its entity set is {entity_set}, the mapping says "
                f"{related.entity_set}: correct related.{name}.entity_set ({place})"
            )
        columns = {a["LogicalName"]: a for a in definition.get("Attributes", [])}
        if related.lookup and member is not None:
            lookup = member_columns.get(related.lookup)
            if lookup is None or lookup.get("AttributeType") not in _LOOKUPS:
                problems.append(
                    f"{mapping.member.table}.{related.lookup}: no lookup column to "
                    f"{related.table}: correct related.{name}.lookup ({place})"
                )
        wanted = [("id_column", related.id_column)]
        if related.member_lookup:
            wanted.append(("member_lookup", related.member_lookup))
        if related.latest:
            wanted.append(("latest", related.latest))
        if related.count is not None:
            wanted.append(("count.date_column", related.count.date_column))
        wanted += [(f"columns.{v}", spec.column) for v, spec in related.column_specs().items()]
        for where, column in wanted:
            if column not in columns:
                problems.append(
                    f"{related.table}.{column}: column not found: correct "
                    f"related.{name}.{where} ({place})"
                )
        if related.member_lookup in columns and (
            columns[related.member_lookup].get("AttributeType") not in _LOOKUPS
        ):
            problems.append(
                f"{related.table}.{related.member_lookup}: is not a lookup: correct "
                f"related.{name}.member_lookup ({place})"
            )
    return problems, warnings


def _solution_problems(
    client: DataverseClient, mapping: MappingFile, source: str
) -> tuple[list[str], Publisher | None]:
    """The configured solution must exist, and its publisher's prefix be the mapping's; with
    the publisher (when it has a prefix), whose option value range new choice values need."""
    solution = client.transport.settings.solution
    if not solution:
        return [], None
    try:
        publisher = client.schema.publisher(solution)
    except NotFoundError:
        return [
            f"solution {solution} not found in Dataverse: create it with your publisher in Power "
            "Apps (Solutions → New solution), or correct BRIDGE_DATAVERSE__SOLUTION"
        ], None
    if not publisher.prefix:
        return [], None
    if publisher.prefix != mapping.publisher_prefix:
        return [
            f"solution {solution}: its publisher's prefix is {publisher.prefix}, the mapping's "
            f"publisher_prefix is {mapping.publisher_prefix}: make them agree "
            f"({source}: publisher_prefix)"
        ], publisher
    return [], publisher


def _date_problems(
    table: str, name: str, declared: str, attribute: dict[str, Any], place: str
) -> list[str]:
    behaviour = date_behaviour(attribute)
    date_format = attribute.get("Format")
    if declared == "datetime" and (behaviour == "DateOnly" or date_format == "DateOnly"):
        return [
            f"{table}.{name}: is a date-only column in Dataverse but declared `type: datetime` "
            f"(the time of day would be lost): declare `type: date` in {place}"
        ]
    if declared == "date" and behaviour == "DateOnly":
        return []
    if declared == "date" and date_format == "DateOnly":
        return [
            f"{table}.{name}: is shown as a date but behaves {behaviour or 'UserLocal'}, so a "
            f"date written from Stockholm reads back a day early: set its behaviour to Date "
            f"only in Power Apps (column → Advanced options → Behavior), or declare "
            f"`type: datetime` in {place}"
        ]
    if declared == "date" and (behaviour or date_format):
        return [
            f"{table}.{name}: is a date-and-time column ({behaviour or date_format}) but declared "
            f"`type: date`: declare `type: datetime` in {place}, or use a date-only column"
        ]
    return []
