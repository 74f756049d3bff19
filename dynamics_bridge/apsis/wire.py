"""APSIS wire shapes built from plain data: values, event items, tag patches, import CSV files.

Pure functions, so each shape is tested against the reference notes without HTTP.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from dynamics_bridge.errors import InputError, PayloadTooLargeError

__all__ = [
    "KEY_COLUMN",
    "TagBodyFormat",
    "chunk_items",
    "event_export_body",
    "event_items",
    "exported_events",
    "import_body",
    "import_columns",
    "import_csv_chunks",
    "rfc3339",
    "tag_patch",
    "wire_value",
]

TagBodyFormat = Literal["add_remove", "boolean", "true_null"]
KEY_COLUMN = "profile_key"


def rfc3339(moment: datetime) -> str:
    """UTC, ``Z`` suffix, seconds (milliseconds only when there are any): APSIS's event_time."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    utc = moment.astimezone(UTC)
    text = utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def wire_value(value: Any) -> Any:
    """JSON for an attribute or event field: dates as ISO strings, Decimals as numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    raise InputError(f"cannot send a {type(value).__name__} to APSIS")


def event_items(
    events: Iterable[tuple[str, datetime, Mapping[str, Any]]], *, spread_equal_times: bool = True
) -> list[dict[str, Any]]:
    """``{"event_time", "version_id", "data"}`` per ``(version_id, occurred_at, data)``.

    With ``spread_equal_times`` an event whose time is already taken moves on by whole seconds,
    as APSIS's own modules do for events sharing a timestamp; the result depends only on the
    input order, so a retry sends the same times.
    """
    taken: set[datetime] = set()
    items = []
    for version_id, occurred_at, data in events:
        moment = occurred_at.astimezone(UTC)
        while spread_equal_times and moment in taken:
            moment += timedelta(seconds=1)
        taken.add(moment)
        items.append(
            {"event_time": rfc3339(moment), "version_id": version_id, "data": wire_value(data)}
        )
    return items


def chunk_items(
    items: Sequence[dict[str, Any]], *, max_items: int, max_bytes: int
) -> list[list[dict[str, Any]]]:
    """Split ``{"items": [...]}`` bodies so each holds at most ``max_items`` and ``max_bytes``."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = len(b'{"items":[]}')
    for item in items:
        item_size = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
        if len(b'{"items":[]}') + item_size > max_bytes:
            raise PayloadTooLargeError(
                f"one event is {item_size} bytes; APSIS takes at most {max_bytes} per request",
                field="data",
            )
        extra = item_size + (1 if current else 0)
        if current and (len(current) >= max_items or size + extra > max_bytes):
            chunks.append(current)
            current, size = [], len(b'{"items":[]}')
            extra = item_size
        current.append(item)
        size += extra
    if current:
        chunks.append(current)
    return chunks


def tag_patch(
    add: Iterable[str], remove: Iterable[str], body_format: TagBodyFormat
) -> dict[str, Any]:
    """The tags merge-patch. Its value format is not verified (apsis.md §3.3), so it is chosen
    by setting: ``"add"``/``"remove"``, ``true``/``false``, or ``true``/``null``."""
    add, remove = list(dict.fromkeys(add)), list(dict.fromkeys(remove))
    if both := set(add) & set(remove):
        raise InputError(f"tags both added and removed: {sorted(both)}", field="tags")
    on, off = {
        "add_remove": ("add", "remove"),
        "boolean": (True, False),
        "true_null": (True, None),
    }[body_format]
    return {**dict.fromkeys(add, on), **dict.fromkeys(remove, off)}


def import_columns(discriminators: Iterable[str]) -> dict[str, str]:
    """A readable, unique CSV column per attribute discriminator (its last segment)."""
    columns: dict[str, str] = {}
    used = {KEY_COLUMN}
    for disc in discriminators:
        base = re.sub(r"[^a-z0-9_]+", "_", disc.rsplit(".", 1)[-1].lower()).strip("_") or "attr"
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        columns[disc] = name
    return columns


def _csv_cell(value: Any) -> str:
    value = wire_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def import_csv_chunks(
    rows: Sequence[tuple[str, Mapping[str, Any]]], columns: Mapping[str, str], max_bytes: int
) -> Iterator[tuple[bytes, list[str]]]:
    """CSV files (UTF-8, header row) of at most ``max_bytes``, each with the keys it carries.

    ``rows`` are ``(profile key, {discriminator: value})``; a row without a discriminator leaves
    that cell empty.
    """
    header = [KEY_COLUMN, *columns.values()]

    def line(cells: list[str]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(cells)
        return buffer.getvalue().encode("utf-8")

    head = line(header)
    parts, size = [head], len(head)
    keys: list[str] = []
    for key, values in rows:
        row = line([key, *(_csv_cell(values.get(d)) for d in columns)])
        if len(head) + len(row) > max_bytes:
            raise PayloadTooLargeError(f"one import row is {len(row)} bytes", field="attributes")
        if keys and size + len(row) > max_bytes:
            yield b"".join(parts), keys
            parts, keys, size = [head], [], len(head)
        parts.append(row)
        keys.append(key)
        size += len(row)
    if keys:
        yield b"".join(parts), keys


def import_body(
    keyspace: str, version_ids: Mapping[str, str], *, update_existing: bool = True
) -> dict[str, Any]:
    """The create-import request (apsis.md §3.6): ``version_ids`` maps CSV column → attribute
    version id. Existing attributes not in the file are kept."""
    return {
        "keyspace_mapping": {"keyspace_discriminator": keyspace, "field_selector": KEY_COLUMN},
        "options": {
            "update_existing_profiles": update_existing,
            "clear_existing_attributes": False,
        },
        "attribute_mappings": [
            {"field_selector": column, "attribute_version_id": version_id}
            for column, version_id in version_ids.items()
        ],
    }


# -- event export (the trigger sweep's read-back) ------------------------------------------------
#
# APSIS documents a profile data export (``POST /audience/profiles/exports``, reference apsis.md
# §3.7): asynchronous, a poll URL answering 404 until the file is ready, then 200 with a JSON
# file; events only of the types asked for, in a ``start_at``/``end_at`` window of event time,
# and no profile at all unless an attribute or tag is asked for too. The request's field names
# and the shape of one event in the file are NOT verified: the request below and the file layout
# (``profiles`` → export key → ``sections`` → section → ``events``, the layout APSIS shows for a
# single-profile export) are our reading. Events are matched by their ``source_event_id``.


def event_export_body(
    section: str,
    attribute: str,
    event_discriminators: Iterable[str],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """The event export request [unverified field names]."""
    return {
        "section_discriminator": section,
        "attributes": [attribute],
        "events": sorted(set(event_discriminators)),
        "start_at": rfc3339(start),
        "end_at": rfc3339(end),
    }


def exported_events(file: Any, section: str) -> list[tuple[str, str]]:
    """``(event type, source_event_id)`` of every event in an export file's ``section``; the
    type is the event's ``discriminator`` or, failing that, its ``version_id``. InputError when
    the file does not have the expected layout (better no answer than a wrong one: a misread
    "absent" would send an event twice)."""
    if not isinstance(file, dict) or not isinstance(file.get("profiles"), dict):
        raise InputError("the export has no 'profiles' object", field="profiles")
    found: list[tuple[str, str]] = []
    for key, profile in file["profiles"].items():
        sections = profile.get("sections") if isinstance(profile, dict) else None
        if not isinstance(sections, dict):
            raise InputError(f"profile {key}: no 'sections' object", field="sections")
        events = (sections.get(section) or {}).get("events", [])
        if not isinstance(events, list):
            raise InputError(f"profile {key}: 'events' is not a list", field="events")
        for n, event in enumerate(events):
            data = event.get("data") if isinstance(event, dict) else None
            kind = event.get("discriminator") or event.get("version_id") if data else None
            if not isinstance(data, dict) or not isinstance(kind, str):
                raise InputError(
                    f"profile {key}: events[{n}] has no data and discriminator or version_id",
                    field="events",
                )
            source = data.get("source_event_id")
            if isinstance(source, str) and source:
                found.append((kind, source))
    return found
