"""OData literals, key segments, lookup binds and ``$filter`` pieces (reference dataverse.md §2-3).

Pure string work, shared by the client, the ``$batch`` writer and the pipeline's store, so a key
is quoted and encoded the same way wherever it goes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from urllib.parse import quote

from dynamics_bridge.errors import InputError

__all__ = ["Key", "KeyValue", "bind", "bind_path", "key_literal", "key_path", "odata_in"]

KeyValue = str | int | Decimal | uuid.UUID
Key = Mapping[str, KeyValue]

#: Characters that break GET/PATCH by alternate key even when encoded (define-alternate-keys).
UNADDRESSABLE = frozenset("/<>*%&:\\?+")


def key_literal(value: KeyValue) -> str:
    """An OData literal: numbers and GUIDs bare, strings single-quoted with inner quotes doubled."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a key value")
    if isinstance(value, int | Decimal | uuid.UUID):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def key_path(entity_set: str, key: Key | KeyValue, *, encode: bool = True) -> str:
    """``contacts(mbr_memberno='O''Brien')``, percent-encoded for a URL or a batch request line.

    ``key`` is a mapping of alternate-key columns, or a bare primary id (GUID). ``encode=False``
    for references inside a JSON body (``@odata.bind``, ``@odata.id``), which are not URLs on
    the wire and are written plain in Microsoft's examples.
    """
    if not isinstance(key, Mapping):
        return f"{entity_set}({quote(str(key), safe='-') if encode else key})"
    if not key:
        raise ValueError("an alternate key needs at least one column")
    pairs = []
    for column, value in key.items():
        if isinstance(value, str) and (bad := sorted(UNADDRESSABLE & set(value))):
            raise InputError(
                f"key value {value!r} contains {''.join(bad)!r}: Dataverse cannot address a row "
                "by such a key",
                field=column,
            )
        pairs.append(f"{column}={key_literal(value)}")
    inner = ",".join(pairs)
    return f"{entity_set}({quote(inner, safe=chr(39) + '=,()-._~') if encode else inner})"


def bind_path(entity_set: str, key: Key | KeyValue) -> str:
    """The value of ``<navigation>@odata.bind``: ``/contacts(mbr_memberno='10023')``."""
    return "/" + key_path(entity_set, key, encode=False)


def bind(navigation: str, entity_set: str, key: Key | KeyValue) -> dict[str, str]:
    """A lookup bound by the related row's alternate key, ready to merge into a body.

    Navigation names are case-sensitive (custom ones use schema-name casing, ``mbr_Member``).
    """
    return {f"{navigation}@odata.bind": bind_path(entity_set, key)}


def odata_in(column: str, values: Sequence[KeyValue]) -> str:
    """``$filter`` for many values of one column in one request."""
    listed = ",".join(key_literal(v) for v in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='{column}',PropertyValues=[{listed}])"
