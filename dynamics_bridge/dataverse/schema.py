"""Table metadata, as ``client.schema``: definitions read (cached) and written (provision):
tables, columns, alternate keys, choices, relationships. Microsoft's SDK calls this namespace
``tables``; parsing and request bodies are the pure :mod:`.metadata`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynamics_bridge.dataverse.metadata import (
    SWEDISH,
    AlternateKey,
    ChoiceOption,
    Table,
    insert_option_body,
    parse_options,
    parse_table,
)
from dynamics_bridge.dataverse.odata import key_literal
from dynamics_bridge.dataverse.transport import Transport
from dynamics_bridge.errors import NotFoundError, PermanentError, TransientError

__all__ = ["Publisher", "Schema"]

_STRONG = {"Consistency": "Strong"}  # metadata reads see what was just written
_CHOICE_CASTS = {
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
}


@dataclass(frozen=True)
class Publisher:
    """A solution publisher: schema names start with ``prefix_``, choice values it adds lie in
    ``option_value_prefix`` × 10,000 … + 9,999."""

    name: str
    prefix: str
    option_value_prefix: int

    @property
    def option_values(self) -> range:
        start = self.option_value_prefix * 10_000
        return range(start, start + 10_000)


class Schema:
    """Metadata reads (cached per client) and writes over one transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._definitions: dict[str, Any] = {}
        self._choices: dict[tuple[str, str], dict[str, tuple[ChoiceOption, ...]]] = {}
        self._tables: list[Table] | None = None
        self._base_language: int | None = None

    # -- reads ---------------------------------------------------------------------------------

    def entity(self, logical_name: str, *, refresh: bool = False) -> dict[str, Any] | None:
        """A table's raw definition with attributes and keys (None if no such table); cached."""
        if refresh or logical_name not in self._definitions:
            path = f"EntityDefinitions(LogicalName={key_literal(logical_name)})"
            try:
                self._definitions[logical_name] = self.transport.request(
                    "GET", path, params={"$expand": "Attributes,Keys"}, headers=_STRONG
                ).json()
            except NotFoundError:
                self._definitions[logical_name] = None
            self._choices = {k: v for k, v in self._choices.items() if k[0] != logical_name}
        return self._definitions[logical_name]

    def table(self, logical_name: str, *, refresh: bool = False) -> Table | None:
        """A table's columns and alternate keys, typed; cached."""
        definition = self.entity(logical_name, refresh=refresh)
        return parse_table(definition) if definition is not None else None

    def tables(self, *, refresh: bool = False) -> list[Table]:
        """Every table (names, entity set, change tracking; no columns); cached."""
        if refresh or self._tables is None:
            select = (
                "LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,"
                "PrimaryNameAttribute,ChangeTrackingEnabled"
            )
            answer = self.transport.request(
                "GET", "EntityDefinitions", params={"$select": select}, headers=_STRONG
            ).json()
            self._tables = [parse_table(d) for d in answer.get("value", [])]
        return self._tables

    def alternate_keys(self, logical_name: str) -> tuple[AlternateKey, ...]:
        table = self.table(logical_name)
        if table is None:
            raise NotFoundError(f"table {logical_name} does not exist")
        return table.keys

    def choice_options(self, logical_name: str, column: str) -> tuple[ChoiceOption, ...]:
        """A choice column's options. Dataverse does not expand them with the attributes, so the
        table's choice columns are read once by casting to their metadata type (and cached)."""
        table = self.table(logical_name)
        if table is None or column not in table.columns:
            raise NotFoundError(f"{logical_name}.{column} does not exist")
        found = table.columns[column]
        if found.options is not None:
            return found.options
        cast = _CHOICE_CASTS.get(found.attribute_type or "")
        if cast is None:
            return ()
        if (logical_name, cast) not in self._choices:
            path = (
                f"EntityDefinitions(LogicalName={key_literal(logical_name)})/Attributes/"
                f"Microsoft.Dynamics.CRM.{cast}"
            )
            expand = (
                "OptionSet($select=Options)"
                if cast != "PicklistAttributeMetadata"
                else "OptionSet($select=Options),GlobalOptionSet($select=Options)"
            )
            answer = self.transport.request(
                "GET",
                path,
                params={"$select": "LogicalName", "$expand": expand},
                headers=_STRONG,
            ).json()
            self._choices[(logical_name, cast)] = {
                str(a["LogicalName"]): parse_options(a.get("OptionSet") or a.get("GlobalOptionSet"))
                for a in answer.get("value", [])
            }
        return self._choices[(logical_name, cast)].get(column, ())

    def base_language(self) -> int:
        """The environment's base language (LCID): every label needs a text in it."""
        if self._base_language is None:
            answer = self.transport.request(
                "GET", "organizations", params={"$select": "languagecode"}
            ).json()
            rows = answer.get("value") or [{}]
            self._base_language = int(rows[0].get("languagecode") or SWEDISH)
        return self._base_language

    def publisher(self, solution: str) -> Publisher:
        """The publisher of ``solution``: the prefix its schema names need and the option value
        prefix its choice values start with."""
        answer = self.transport.request(
            "GET",
            "solutions",
            params={
                "$select": "uniquename",
                "$filter": f"uniquename eq {key_literal(solution)}",
                "$expand": "publisherid($select=customizationprefix,"
                "customizationoptionvalueprefix,uniquename)",
            },
        ).json()
        rows = answer.get("value") or []
        if not rows:
            raise NotFoundError(
                f"solution {solution} does not exist in Dataverse: create it (with your "
                "publisher) in Power Apps, or correct BRIDGE_DATAVERSE__SOLUTION"
            )
        found = rows[0].get("publisherid") or {}
        return Publisher(
            name=str(found.get("uniquename") or ""),
            prefix=str(found.get("customizationprefix") or ""),
            option_value_prefix=int(found.get("customizationoptionvalueprefix") or 0),
        )

    # -- writes (provision) -----------------------------------------------------------

    def _write(self, path: str, body: Mapping[str, Any], table: str | None) -> None:
        """One metadata create, never retried after it may have been applied (a timeout raises
        AmbiguousError): ``provision`` reads back whether it exists instead."""
        solution = self.transport.settings.solution
        headers = {"MSCRM.SolutionUniqueName": solution} if solution else {}
        try:
            self.transport.request(
                "POST",
                path,
                json_body=dict(body),
                headers=headers,
                behaviour=False,
                idempotent=False,
            )
        finally:
            self.forget(table)

    def forget(self, table: str | None) -> None:
        """Drop what is cached about ``table`` (and the table list): it may have changed."""
        if table:
            self._definitions.pop(table, None)
            self._choices = {k: v for k, v in self._choices.items() if k[0] != table}
        self._tables = None

    def create_table(self, body: Mapping[str, Any]) -> None:
        """``POST EntityDefinitions`` (see :func:`metadata.table_body`)."""
        self._write("EntityDefinitions", body, str(body.get("SchemaName", "")).lower())

    def create_column(self, table: str, body: Mapping[str, Any]) -> None:
        """A column (``*AttributeMetadata`` body) on ``table``. Lookups are made as
        relationships instead (:meth:`create_relationship`)."""
        path = f"EntityDefinitions(LogicalName={key_literal(table)})/Attributes"
        self._write(path, body, table)

    def create_alternate_key(self, table: str, body: Mapping[str, Any]) -> None:
        """An alternate key; usable once its index job is Active (:meth:`wait_for_key`)."""
        self._write(f"EntityDefinitions(LogicalName={key_literal(table)})/Keys", body, table)

    def create_global_choice(self, body: Mapping[str, Any]) -> None:
        self._write("GlobalOptionSetDefinitions", body, None)

    def insert_choice_option(
        self,
        table: str,
        column: str,
        option: ChoiceOption,
        *,
        languages: int | Sequence[int] | None = None,
    ) -> None:
        """One more option on a local choice column (the ``InsertOptionValue`` action), labelled
        in ``languages`` (default: the environment's base language)."""
        codes = languages if languages is not None else self.base_language()
        self._insert_option(insert_option_body(table, column, option, languages=codes), table)

    def _insert_option(self, body: Mapping[str, Any], table: str | None) -> None:
        """``InsertOptionValue`` takes the solution in its body, not only in the header."""
        if solution := self.transport.settings.solution:
            body = {"SolutionUniqueName": solution, **body}
        self._write("InsertOptionValue", body, table)

    def create_relationship(self, body: Mapping[str, Any], *, referencing: str = "") -> None:
        """A one-to-many relationship with its lookup column (``RelationshipDefinitions``,
        see :func:`metadata.lookup_relationship_body`)."""
        self._write(
            "RelationshipDefinitions", body, referencing or body.get("ReferencingEntity") or None
        )

    def create_metadata(
        self, kind: str, body: Mapping[str, Any], *, table: str | None = None
    ) -> None:
        """Metadata writes by kind, as ``provision`` plans them: table, column, key, choice,
        relationship, option (an ``InsertOptionValue`` body)."""
        if kind == "table":
            self.create_table(body)
        elif kind == "column":
            self.create_column(table or "", body)
        elif kind == "key":
            self.create_alternate_key(table or "", body)
        elif kind == "choice":
            self.create_global_choice(body)
        elif kind == "relationship":
            self.create_relationship(body, referencing=table or "")
        elif kind == "option":
            self._insert_option(body, table or None)
        else:
            raise ValueError(f"unknown metadata kind {kind!r}")

    def wait_for_key(
        self,
        table: str,
        columns: Sequence[str],
        *,
        timeout: float = 600.0,
        poll: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> AlternateKey:
        """Wait until the key's index job is Active (Pending → InProgress → Active | Failed)."""
        deadline = clock() + timeout
        while True:
            found = self.table(table, refresh=True)
            key = found.key_on(*columns) if found else None
            if key is None:
                raise NotFoundError(f"no alternate key on {table}({', '.join(columns)})")
            if key.usable:
                return key
            if key.status == "Failed":
                raise PermanentError(f"alternate key {key.schema_name} on {table}: index failed")
            if clock() >= deadline:
                raise TransientError(f"alternate key {key.schema_name} still {key.status}")
            self.transport.sleep(poll)
