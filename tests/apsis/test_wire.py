"""Wire shapes, compared with the examples in reference apsis.md (§3.2-§3.6)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from dynamics_bridge.apsis.wire import (
    chunk_items,
    event_items,
    import_body,
    import_columns,
    import_csv_chunks,
    rfc3339,
    tag_patch,
    wire_value,
)
from dynamics_bridge.errors import InputError, PayloadTooLargeError

CET = timezone(timedelta(hours=1))


def test_event_time_is_utc_with_a_z() -> None:
    assert rfc3339(datetime(2025, 3, 14, 10, 12, tzinfo=CET)) == "2025-03-14T09:12:00Z"


def test_event_time_keeps_milliseconds_only_when_there_are_some() -> None:
    assert (
        rfc3339(datetime(2025, 3, 14, 9, 12, 0, 250000, tzinfo=UTC)) == "2025-03-14T09:12:00.250Z"
    )


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2025, 3, 14, 9, 12))


def test_attribute_values_keep_their_type_and_dates_become_strings() -> None:
    assert wire_value(
        {"end": date(2025, 6, 30), "winback": True, "arrears": Decimal("450.00"), "x": None}
    ) == {"end": "2025-06-30", "winback": True, "arrears": 450, "x": None}
    assert wire_value(Decimal("12.5")) == 12.5


def test_a_value_apsis_cannot_hold_is_an_input_error() -> None:
    with pytest.raises(InputError):
        wire_value(object())


def test_event_items_have_the_documented_shape() -> None:
    items = event_items(
        [
            (
                "v-paid",
                datetime(2025, 3, 14, 9, 12, tzinfo=UTC),
                {"payment_id": "PAY-10093", "amount": Decimal("450.0"), "currency": "SEK"},
            )
        ]
    )
    assert items == [
        {
            "event_time": "2025-03-14T09:12:00Z",
            "version_id": "v-paid",
            "data": {"payment_id": "PAY-10093", "amount": 450, "currency": "SEK"},
        }
    ]


def test_events_sharing_a_time_are_moved_on_by_whole_seconds() -> None:
    t = datetime(2025, 3, 14, 9, 12, tzinfo=UTC)
    items = event_items([("a", t, {}), ("b", t, {}), ("c", t + timedelta(seconds=1), {})])
    assert [i["event_time"] for i in items] == [
        "2025-03-14T09:12:00Z",
        "2025-03-14T09:12:01Z",
        "2025-03-14T09:12:02Z",
    ]


def test_spreading_equal_times_can_be_switched_off() -> None:
    t = datetime(2025, 3, 14, 9, 12, tzinfo=UTC)
    items = event_items([("a", t, {}), ("b", t, {})], spread_equal_times=False)
    assert {i["event_time"] for i in items} == {"2025-03-14T09:12:00Z"}


def _body_size(chunk: list[dict]) -> int:
    return len(json.dumps({"items": chunk}, separators=(",", ":")).encode())


def test_events_are_split_by_count() -> None:
    items = [{"n": i} for i in range(5)]
    assert [len(c) for c in chunk_items(items, max_items=2, max_bytes=100_000)] == [2, 2, 1]


def test_events_are_split_so_no_body_exceeds_the_size_cap() -> None:
    items = [{"data": "x" * 40} for _ in range(10)]
    chunks = chunk_items(items, max_items=100, max_bytes=200)
    assert [i for c in chunks for i in c] == items
    assert all(_body_size(c) <= 200 for c in chunks)
    assert _body_size(chunks[0] + chunks[1][:1]) > 200  # each chunk is as full as it may be


def test_one_event_over_the_cap_is_a_payload_error() -> None:
    with pytest.raises(PayloadTooLargeError):
        chunk_items([{"data": "x" * 300}], max_items=100, max_bytes=200)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("add_remove", {"t.a": "add", "t.b": "remove"}),
        ("boolean", {"t.a": True, "t.b": False}),
        ("true_null", {"t.a": True, "t.b": None}),
    ],
)
def test_the_tag_patch_body_follows_the_configured_format(fmt, expected) -> None:
    assert tag_patch(["t.a"], ["t.b"], fmt) == expected


def test_a_tag_both_added_and_removed_is_refused() -> None:
    with pytest.raises(InputError, match="both"):
        tag_patch(["t.a"], ["t.a"], "boolean")


def test_import_columns_are_readable_and_unique() -> None:
    assert import_columns(
        [
            "usercreated.attributes.membership_end-ab12cd",
            "com.apsis1.attributes.email",
            "other.attributes.email",
            "x.profile_key",
        ]
    ) == {
        "usercreated.attributes.membership_end-ab12cd": "membership_end_ab12cd",
        "com.apsis1.attributes.email": "email",
        "other.attributes.email": "email_2",
        "x.profile_key": "profile_key_2",
    }


def test_the_import_request_has_the_documented_shape() -> None:
    assert import_body("com.apsis1.keyspaces.crm-id", {"email": "v-email"}) == {
        "keyspace_mapping": {
            "keyspace_discriminator": "com.apsis1.keyspaces.crm-id",
            "field_selector": "profile_key",
        },
        "options": {"update_existing_profiles": True, "clear_existing_attributes": False},
        "attribute_mappings": [{"field_selector": "email", "attribute_version_id": "v-email"}],
    }


def _read(csv_bytes: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8"))))


def test_the_import_file_has_a_header_and_one_row_per_profile() -> None:
    columns = {"a.email": "email", "a.winback": "winback", "a.end": "end"}
    rows = [
        ("M-1", {"a.email": "ann@example.org", "a.winback": True, "a.end": date(2025, 6, 30)}),
        ("M-2", {"a.email": 'Åsa "Q", Öberg'}),
    ]
    [(data, keys)] = list(import_csv_chunks(rows, columns, 10_000))
    assert keys == ["M-1", "M-2"]
    assert _read(data) == [
        {"profile_key": "M-1", "email": "ann@example.org", "winback": "true", "end": "2025-06-30"},
        {"profile_key": "M-2", "email": 'Åsa "Q", Öberg', "winback": "", "end": ""},
    ]


def test_large_imports_are_split_into_files_under_the_cap_each_with_the_header() -> None:
    rows = [(f"M-{i}", {"a.email": f"member{i}@example.org"}) for i in range(100)]
    files = list(import_csv_chunks(rows, {"a.email": "email"}, 600))
    assert len(files) > 1
    assert all(len(data) <= 600 for data, _ in files)
    assert [k for _, keys in files for k in keys] == [k for k, _ in rows]
    assert [r["profile_key"] for data, _ in files for r in _read(data)] == [k for k, _ in rows]
