"""Keys, filters and property encodings of the Table Storage ops store (pure: no SDK, no I/O).

Table Storage returns rows ordered by PartitionKey, then RowKey, ascending, and can only compare
(``eq``, ``lt``, ``ge``...): no substring, no descending order. So the keys carry the order the
console wants: a *day key* is the day inverted (newer days sort first) and a *time key* the
microsecond timestamp inverted (newer rows sort first), and one ascending range query reads
"newest first" across days. Every filter the console uses becomes comparisons the service
evaluates (real Azure allows 15 in one filter: :func:`poison_filter` stays under it).
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dynamics_bridge.errors import InputError
from dynamics_bridge.ops.model import PoisonFilter, PoisonRecord

__all__ = [
    "COUNTS_ROW",
    "ID_SHARD_CHARS",
    "MAX_COMPARISONS",
    "REASON_WORDS",
    "comparisons",
    "count_keys",
    "count_matching",
    "day_key",
    "day_pieces",
    "decode_cursor",
    "encode_cursor",
    "id_partition",
    "id_prefix_filter",
    "join_text",
    "key_day",
    "key_time",
    "next_prefix",
    "odata_time",
    "poison_filter",
    "poison_search_props",
    "quote",
    "safe_key",
    "split_text",
    "time_key",
    "unsafe_key",
]

#: Real Table Storage refuses a filter with more discrete comparisons than this.
MAX_COMPARISONS = 15

#: The RowKey of the per-day counts row, sorting after every record row (time keys are digits).
COUNTS_ROW = "~counts"

#: Words a reason filter usually is (the categories the sync writes). Each record flags the ones
#: its reason contains (``w_<word>``), and the day's counts keep a count per word, so a filter by
#: one of them is answered by the service and counted without reading records. Other text is
#: matched by reading the reasons.
REASON_WORDS = ("unmatched", "failed", "undecodable", "dequeued")

#: Member numbers and event ids kept as separate properties (the rest: ``sx`` flags the row for
#: a check after reading), so a search is a comparison the service evaluates.
SEARCH_SLOTS = 2

#: One string property holds at most 64 KiB: 32K UTF-16 characters.
MAX_PROPERTY_CHARS = 32_000

_DAY_BASE = 99_999_999
_TIME_BASE = 9_999_999_999_999_999  # microseconds: 16 digits, good past the year 2286
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSAFE = re.compile(r"[%/\\#?\x00-\x1f\x7f-\x9f]")


def day_key(day: date) -> str:
    """A day's PartitionKey: ``99999999 - yyyymmdd``, so newer days sort first."""
    return f"{_DAY_BASE - int(day.strftime('%Y%m%d')):08d}"


def key_day(key: str) -> date:
    n = _DAY_BASE - int(key)
    return date(n // 10_000, n // 100 % 100, n % 100)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def time_key(at: datetime) -> str:
    """The inverted microsecond timestamp: newer times sort first within a day."""
    micros = (_utc(at) - _EPOCH) // timedelta(microseconds=1)
    if not 0 <= micros <= _TIME_BASE:
        raise InputError(f"time {at.isoformat()} is out of range", location="ops store key")
    return f"{_TIME_BASE - micros:016d}"


def safe_key(text: str) -> str:
    """``text`` made fit for a key (no ``/ \\ # ?`` or control characters): those characters and
    ``%`` are percent-encoded one by one, so a prefix of ``text`` encodes to a prefix."""
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", text)


#: Characters of a message id that name its id index partition.
ID_SHARD_CHARS = 2


def id_partition(key: str) -> str:
    """The id index's partition of a message id's (safe) key: ``i`` and its first two
    characters.

    One partition for every id made deletes slow as the book grew (Azurite: 8 ms a delete in a
    40,000-row partition, and the cost grows with the partition) and is one hot spot on Table
    Storage (a partition serves about 2,000 entities a second); queue message ids are GUIDs, so
    hex ids spread over 256 partitions."""
    return f"i{key[:ID_SHARD_CHARS]}"


def id_prefix_filter(low: str) -> str:
    """The id index rows whose key starts with ``low`` (a non-empty safe key prefix): in one
    partition, or for a one-character prefix a range of partitions; one query either way."""
    rows = f"RowKey ge {quote(low)} and RowKey lt {quote(next_prefix(low))}"
    if len(low) >= ID_SHARD_CHARS:
        return f"PartitionKey eq {quote(id_partition(low))} and {rows}"
    first = id_partition(low)
    return (
        f"PartitionKey ge {quote(first)} and PartitionKey lt {quote(next_prefix(first))} and {rows}"
    )


def unsafe_key(key: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), key)


def next_prefix(prefix: str) -> str:
    """The smallest string after every string starting with ``prefix`` (its range's end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def quote(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def odata_time(at: datetime) -> str:
    return "datetime'" + _utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def split_text(name: str, text: str) -> dict[str, Any]:
    """``text`` as properties ``name``, ``name_1``... of at most 32K characters each, plus
    ``name_n`` (how many) when it takes more than one."""
    parts = [text[i : i + MAX_PROPERTY_CHARS] for i in range(0, len(text), MAX_PROPERTY_CHARS)]
    if len(parts) <= 1:
        return {name: text}
    props: dict[str, Any] = {name: parts[0], f"{name}_n": len(parts)}
    props.update({f"{name}_{i}": part for i, part in enumerate(parts[1:], start=1)})
    return props


def join_text(entity: Mapping[str, Any], name: str) -> str:
    count = int(entity.get(f"{name}_n") or 1)
    first = entity.get(name) or ""
    return str(first) + "".join(str(entity.get(f"{name}_{i}") or "") for i in range(1, count))


# --- poison records ---------------------------------------------------------------------------


def reason_words(reason: str) -> list[str]:
    low = reason.lower()
    return [w for w in REASON_WORDS if w in low]


def count_keys(record: PoisonRecord) -> list[str]:
    """The day's counters one record adds to: ``*|<source>|<hour>`` and
    ``<word>|<source>|<hour>`` for each reason word it contains."""
    where = f"{record.source.lower()}|{_utc(record.failed_at).hour:02d}"
    return [f"*|{where}"] + [f"{w}|{where}" for w in reason_words(record.reason)]


def poison_search_props(record: PoisonRecord) -> dict[str, Any]:
    """The properties a search compares: member numbers and event ids one a property, the
    file's last part, and ``sx`` when some did not fit (the row is then checked after reading)."""
    props: dict[str, Any] = {"fbase": record.file.rsplit("/", 1)[-1] if record.file else ""}
    for prefix, values in (("m", record.member_refs), ("e", record.event_ids)):
        for i, value in enumerate(values[:SEARCH_SLOTS]):
            props[f"{prefix}{i}"] = value
        if len(values) > SEARCH_SLOTS:
            props["sx"] = True
    for word in reason_words(record.reason):
        props[f"w_{word}"] = True
    return props


def word_of(where: PoisonFilter) -> str | None:
    """The reason word a filter's reason is, if it is one (then the service can filter it)."""
    needle = (where.reason or "").strip().lower()
    return needle if needle in REASON_WORDS else None


def exact_on_service(where: PoisonFilter) -> bool:
    """True when the service's answer to :func:`poison_filter` needs no check after reading."""
    return not where.search and (not where.reason or word_of(where) is not None)


def poison_filter(where: PoisonFilter, after: tuple[str, str] | None = None) -> str:
    """The OData filter selecting (a superset of) the records ``where`` matches, after the
    cursor position ``after`` = (PartitionKey, RowKey). At most :data:`MAX_COMPARISONS`."""
    parts: list[str] = []
    prune: list[str] = []  # only narrow the partitions read: dropped when over the limit
    if after is not None:
        pk, rk = (quote(k) for k in after)
        parts.append(f"(PartitionKey gt {pk} or (PartitionKey eq {pk} and RowKey gt {rk}))")
    elif where.until is not None:
        prune.append(f"PartitionKey ge {quote(day_key(_utc(where.until).date()))}")
    if where.until is not None:
        parts.append(f"failed_at lt {odata_time(where.until)}")
    if where.since is not None:
        prune.append(f"PartitionKey le {quote(day_key(_utc(where.since).date()))}")
        parts.append(f"failed_at ge {odata_time(where.since)}")
    if where.source:
        parts.append(f"src eq {quote(where.source.lower())}")
    word = word_of(where)
    if word:
        parts.append(f"w_{word} eq true")
    if where.search and where.search.strip():
        needle = where.search.strip()
        base = quote(needle.rsplit("/", 1)[-1])
        q = quote(needle)
        either = [f"{p}{i} eq {q}" for p in ("m", "e") for i in range(SEARCH_SLOTS)]
        either += ["sx eq true", f"fbase eq {base}"]
        either.append(f"(mid ge {q} and mid lt {quote(next_prefix(needle))})")
        parts.append("(" + " or ".join(either) + ")")
    if len(parts) == (1 if after is not None else 0):
        # nothing above excludes the counts row (it has none of those properties)
        parts.append(f"RowKey lt {quote(COUNTS_ROW)}")
    for extra in prune:
        if comparisons(" and ".join([*parts, extra])) <= MAX_COMPARISONS:
            parts.insert(0, extra)
    return " and ".join(parts)


def comparisons(odata: str) -> int:
    """How many comparisons a filter makes (what the service's limit counts)."""
    return len(re.findall(r" (?:eq|ne|gt|ge|lt|le) ", odata))


def count_matching(
    counts: Mapping[str, int], where: PoisonFilter, hours: Iterable[int] | None = None
) -> int:
    """How many of one day's records ``where`` (source and reason word only) counts, from the
    day's counters, within ``hours`` (all when None)."""
    word = word_of(where) or "*"
    source = where.source.lower() if where.source else None
    wanted = set(hours) if hours is not None else None
    total = 0
    for key, n in counts.items():
        w, src, hour = key.split("|")
        if w != word or (source is not None and src != source):
            continue
        if wanted is not None and int(hour) not in wanted:
            continue
        total += n
    return total


def day_pieces(
    day: date, since: datetime | None, until: datetime | None
) -> tuple[range, list[tuple[datetime, datetime]]]:
    """The part of ``day`` inside [since, until): the whole hours (their counters answer), and
    at most two partial pieces at the edges, [start, end), whose records must be counted."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    lo = max(start, _utc(since)) if since is not None else start
    hi = min(start + timedelta(days=1), _utc(until)) if until is not None else start + timedelta(1)
    if lo >= hi:
        return range(0), []
    hour = timedelta(hours=1)
    first = -(-(lo - start) // hour)  # the first whole hour: ceil
    end = (hi - start) // hour  # the end of the whole hours: floor
    if first >= end:  # no whole hour: one piece
        return range(0), [(lo, hi)]
    pieces = []
    if lo < start + first * hour:
        pieces.append((lo, start + first * hour))
    if start + end * hour < hi:
        pieces.append((start + end * hour, hi))
    return range(first, end), pieces


def key_time(key: str) -> datetime:
    """The time a :func:`time_key` (the first 16 characters of a RowKey) stands for."""
    return _EPOCH + timedelta(microseconds=_TIME_BASE - int(key[:16]))


def bump(counts: Counter[str], keys: Iterable[str], by: int) -> None:
    for key in keys:
        counts[key] += by
        if counts[key] <= 0:
            del counts[key]


def encode_cursor(pk: str, rk: str) -> str:
    raw = json.dumps([pk, rk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        pk, rk = json.loads(raw)
        return str(pk), str(rk)
    except (ValueError, TypeError) as exc:
        raise InputError("not a cursor this store gave", location="poison page cursor") from exc
