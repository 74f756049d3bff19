"""The Table Storage store's keys and filters: order, ranges and the service's limits."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.ops.model import PoisonFilter
from dynamics_bridge.ops.tablekeys import (
    ID_SHARD_CHARS,
    MAX_COMPARISONS,
    MAX_PROPERTY_CHARS,
    comparisons,
    count_matching,
    day_key,
    day_pieces,
    decode_cursor,
    encode_cursor,
    id_partition,
    id_prefix_filter,
    join_text,
    key_day,
    key_time,
    next_prefix,
    poison_filter,
    quote,
    safe_key,
    split_text,
    time_key,
    unsafe_key,
)

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(instants, instants)
def test_later_times_and_days_sort_first_as_text(a: datetime, b: datetime) -> None:
    if a < b:
        assert time_key(a) > time_key(b)
    if a.date() < b.date():
        assert day_key(a.date()) > day_key(b.date())
    assert key_time(time_key(a)) == a
    assert key_day(day_key(a.date())) == a.date()


def test_a_time_before_1970_is_refused_by_name() -> None:
    with pytest.raises(InputError, match="out of range"):
        time_key(datetime(1960, 1, 1, tzinfo=UTC))


@given(st.text(min_size=1, max_size=30), st.text(max_size=10))
def test_safe_keys_round_trip_keep_prefixes_and_lose_forbidden_characters(
    text: str, more: str
) -> None:
    key = safe_key(text)
    assert unsafe_key(key) == text
    assert not set(key) & set("/\\#?")
    assert safe_key(text + more).startswith(key)
    assert key <= safe_key(text + more) < next_prefix(key)


@given(st.text(min_size=1, max_size=40), st.integers(1, 40))
def test_an_id_and_each_of_its_prefixes_of_two_or_more_share_an_id_index_partition(
    text: str, cut: int
) -> None:
    key = safe_key(text)
    prefix = key[: min(cut, len(key))]
    if len(prefix) >= ID_SHARD_CHARS:
        assert id_partition(prefix) == id_partition(key)
        assert f"PartitionKey eq {quote(id_partition(key))}" in id_prefix_filter(prefix)
    else:  # one character: the range of partitions it starts
        assert id_partition(prefix) <= id_partition(key) < next_prefix(id_partition(prefix))
        assert "PartitionKey ge" in id_prefix_filter(prefix)


def test_queue_message_ids_spread_over_the_id_index_partitions() -> None:
    rng = random.Random(14)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(5000)]
    assert len({id_partition(safe_key(i)) for i in ids}) == 256


@given(st.text(max_size=3 * MAX_PROPERTY_CHARS // 2))
def test_text_split_over_properties_joins_back(text: str) -> None:
    props = split_text("body", text)
    assert all(len(v) <= MAX_PROPERTY_CHARS for v in props.values() if isinstance(v, str))
    assert join_text(props, "body") == text


def test_a_long_text_takes_several_properties() -> None:
    props = split_text("body", "x" * (2 * MAX_PROPERTY_CHARS + 1))
    assert props["body_n"] == 3
    assert join_text(props, "body") == "x" * (2 * MAX_PROPERTY_CHARS + 1)


def test_odata_strings_double_their_quotes() -> None:
    assert quote("O'Brien") == "'O''Brien'"


def test_the_widest_filter_stays_within_the_services_comparison_limit() -> None:
    where = PoisonFilter(
        reason="unmatched",
        source="bgmax",
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=datetime(2026, 12, 1, tzinfo=UTC),
        search="4711",
    )
    with_cursor = poison_filter(where, after=("79738798", "0000_x"))
    assert comparisons(with_cursor) <= MAX_COMPARISONS
    assert "m0 eq '4711'" in with_cursor
    assert "failed_at ge datetime'2026-11-01T00:00:00.000000Z'" in with_cursor
    # room left: the partition bound that only narrows the read is kept
    assert "PartitionKey le" in poison_filter(PoisonFilter(since=where.since, source="x"))


def test_a_filter_with_nothing_else_leaves_out_the_counts_row() -> None:
    assert poison_filter(PoisonFilter()) == "RowKey lt '~counts'"


def test_pieces_of_a_day_are_whole_hours_and_partial_edges() -> None:
    day = date(2026, 12, 1)
    at = datetime(2026, 12, 1, tzinfo=UTC)

    assert day_pieces(day, None, None) == (range(24), [])
    hours, pieces = day_pieces(day, at + timedelta(hours=3, minutes=20), at + timedelta(hours=7))
    assert hours == range(4, 7)
    assert pieces == [(at + timedelta(hours=3, minutes=20), at + timedelta(hours=4))]
    hours, pieces = day_pieces(
        day, at + timedelta(hours=5, minutes=1), at + timedelta(hours=5, minutes=2)
    )
    assert hours == range(0)
    assert len(pieces) == 1
    assert day_pieces(day, at + timedelta(days=1), None) == (range(0), [])


def test_counters_sum_by_word_source_and_hour() -> None:
    counts = {"*|bgmax|01": 3, "unmatched|bgmax|01": 2, "*|swish|02": 4, "unmatched|swish|05": 1}

    assert count_matching(counts, PoisonFilter()) == 7
    assert count_matching(counts, PoisonFilter(source="BGMAX")) == 3
    assert count_matching(counts, PoisonFilter(reason="Unmatched")) == 3
    assert count_matching(counts, PoisonFilter(reason="unmatched"), hours=range(2, 24)) == 1


def test_cursors_round_trip_and_a_foreign_one_is_refused() -> None:
    assert decode_cursor(encode_cursor("79738798", "00_a|b")) == ("79738798", "00_a|b")
    with pytest.raises(InputError, match="cursor"):
        decode_cursor("not-a-cursor!")
