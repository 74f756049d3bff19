"""Member histories for the retention analytics, read from Dataverse in bulk, and their results
written back: the adapter between the Web API and
:class:`~dynamics_bridge.retention.records.MemberHistory`.

**Reading** (:meth:`RetentionStore.histories`) costs a request per 5,000 rows, whatever the
number of members: each source is read whole, in pages (``Prefer: odata.maxpagesize``), with
``$select`` of only the columns ``retention.yaml`` names and a ``$filter`` on the history window,
never one request per member.

- *members*: everyone who joined (``history.joined_on`` set) and is active or left within
  ``history.months``. Choice columns become words through the mapping's choice sets, the county
  code a county name (:mod:`dynamics_bridge.activation.regions`), the birth date an age band
  (:func:`dynamics_bridge.activation.facts.band`, the activation facts' bands by default). The
  free-text leaving reason is selected only when ``history.leaving_text`` names it, and the
  personnummer column never: a configuration that would select it is refused.
- *payments*: the payment table's rows in the window, their status (the ``kind`` choice column
  of ``dataverse.yaml`` ``payment``) mapped by :data:`PAYMENT_KIND_OF`; other kinds are not read.
- *activity*: each ``history.activity`` related table's rows in the window (its ``filter``
  applied), kind = the related table's name. An optional table the environment lacks is skipped
  with one warning; advisor outcomes passed in become rows ``advisor_<word>``.

Bad data never stops a run: a member whose dates cannot be a membership (left before joining,
an unreadable date) is skipped, a value that cannot be read (an unknown choice value, a county
code not in SCB's list) is left empty; both are counted in the :class:`HistoryRead`, with one
warning per kind. Whether the register can support the analysis (enough leavers, reasons) is
for the caller to judge from those counts.

**Writing** (:meth:`RetentionStore.write`) PATCHes only the columns ``retention.yaml`` says the
jobs write, by contact id with ``If-Match: *`` (never creating a contact), up to 1,000 to a
``$batch``, and only the values that differ from what was read: a weekly rerun with the same
results sends nothing. ``dry_run`` reports what would change and writes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dynamics_bridge.activation.config import Facts
from dynamics_bridge.activation.facts import band, whole_years
from dynamics_bridge.activation.regions import county_name
from dynamics_bridge.dataverse.batch import BatchRequest
from dynamics_bridge.dataverse.client import MAX_BATCH_OPERATIONS, DataverseClient
from dynamics_bridge.dataverse.odata import key_path, odata_in
from dynamics_bridge.errors import ConfigError, NotFoundError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import ColumnSpec, RelatedTable
from dynamics_bridge.mapping.retention import ChoiceColumn, RetentionFile
from dynamics_bridge.model import MemberRefKind

if TYPE_CHECKING:
    from dynamics_bridge.retention.records import MemberHistory

__all__ = [
    "DEFAULT_AGE_BANDS",
    "PAYMENT_KIND_OF",
    "HistoryRead",
    "RetentionStore",
    "WriteReport",
]

log = logging.getLogger("dynamics_bridge.retention")

PAYMENT_KIND_OF: Mapping[str, str] = MappingProxyType(
    {
        # The default payment table's status: its event_kind choice (dataverse.yaml payment).
        "payment.succeeded": "paid",
        "payment.failed": "failed",
        "payment.refunded": "refunded",
        "invoice.overdue": "overdue",
        "invoice.reminded": "overdue",
        "invoice.collection": "overdue",
        "invoice.credited": "refunded",
        # A payment table whose status column holds the payment_status choice instead.
        "paid": "paid",
        "failed": "failed",
        "overdue": "overdue",
        "reminded": "overdue",
        "collection": "overdue",
        "refunded": "refunded",
        "credited": "refunded",
    }
)
"""A payment row's status word -> its :data:`~dynamics_bridge.retention.records.PAYMENT_KINDS`
kind. Words not here (a payment scheduled or cancelled, an invoice sent, mandate events) say
nothing about paying and are not read. An invoice that is reminded, then overdue, then sent to
collection is three ``overdue`` rows: the register's rows as they are, not one per invoice."""

DEFAULT_AGE_BANDS: tuple[int, ...] = tuple(Facts().age_bands)
"""The activation facts' age bands (``segments.yaml`` ``facts``), so a member is in the same
band in a segment and in the retention report."""


@dataclass(frozen=True, eq=False)
class HistoryRead:
    """What :meth:`RetentionStore.histories` read, and how well.

    ``members``: the histories (``member_id`` is the contact id); ``current``: per member, the
    columns the retention jobs write, as they are now (what :meth:`RetentionStore.write` diffs
    against); ``requests``: requests sent; ``skipped``: members left out, by why; ``unreadable``:
    values left empty, by field; ``rows``: rows read per source (``payments_ignored``: rows of
    members not read); ``absent``: optional activity tables the environment lacks; the leaver
    counts let the caller say whether the register supports the analysis.
    """

    members: list[MemberHistory]
    current: dict[str, dict[str, Any]]
    requests: int
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    leavers: int = 0
    leavers_with_reason: int = 0
    leavers_with_text: int = 0


@dataclass(frozen=True, eq=False)
class WriteReport:
    """What :meth:`RetentionStore.write` wrote, or with ``dry_run`` would have written.

    ``changes``: member id -> the columns that differ, with their new values (sent, or to be
    sent), and ``changed`` how many members that is; ``unchanged``: members whose values were
    already there; ``written``: members updated; ``failed``: member id -> why (a contact
    deleted since the read is ``not found``); ``requests``: requests sent (reading the current
    values included, when not given).
    """

    dry_run: bool
    changes: dict[str, dict[str, Any]]
    unchanged: int
    written: int
    failed: dict[str, str]
    requests: int

    @property
    def changed(self) -> int:
        return len(self.changes)

    @property
    def columns(self) -> Counter[str]:
        """How many members each column changes for."""
        return Counter(column for values in self.changes.values() for column in values)


class _Days:
    """Dataverse dates as days of the mapping's time zone, fast enough for a million rows.

    A date-only value (``2025-03-14``) is its own day. A UTC date-time (``...T22:30:00Z``) is
    the local day it falls in, found by bisecting the UTC instants of the local midnights of
    the window (exact across summer time, and no parsing per row); outside the window, and for
    other shapes, it is parsed.
    """

    def __init__(self, zone: ZoneInfo, first: date, last: date) -> None:
        self.zone = zone
        count = (last - first).days + 2
        self.days = [first + timedelta(days=n) for n in range(count)]
        self.midnights = [
            datetime.combine(d, day_time(), zone).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
            for d in self.days
        ]
        self._plain: dict[str, date | None] = {}

    def __call__(self, raw: Any) -> date | None:
        if not isinstance(raw, str):
            return None
        if len(raw) == 10:
            if raw not in self._plain:
                try:
                    self._plain[raw] = date.fromisoformat(raw)
                except ValueError:
                    self._plain[raw] = None
            return self._plain[raw]
        if raw.endswith("Z") and len(raw) >= 20 and raw[10] == "T":
            index = bisect_right(self.midnights, raw[:19]) - 1
            if 0 <= index < len(self.days) - 1:
                return self.days[index]
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(self.zone).date()


def _words(mapping: MappingFile, choice: ChoiceColumn | None, where: str) -> dict[int, str]:
    """A choice column's values -> words; empty when the column is not configured."""
    if choice is None:
        return {}
    choices = mapping.choices.get(choice.choices)
    if choices is None:
        raise ConfigError(
            f"retention.yaml {where}: choice set {choice.choices!r} is not in dataverse.yaml"
        )
    return {option.value: word for word, option in choices.options.items()}


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _word(raw: Any, words: Mapping[int, str]) -> str | None:
    """A choice value's word (None for none, or for a value the set has no word for)."""
    value = _int(raw)
    return words.get(value) if value is not None else None


def _unusable(
    member_id: Any, joined: date | None, ended: date | None, raw_ended: Any
) -> str | None:
    """Why a member row cannot be a membership history, or None when it can."""
    if not member_id:
        return "no_contact_id"
    if joined is None:
        return "joining_date_unreadable"
    if ended is None and raw_ended is not None:
        return "leaving_date_unreadable"
    if ended is not None and ended < joined:
        return "left_before_joining"
    return None


def _county(value: Any) -> str | None:
    """A county code as stored (``1``, ``"01"``, ``" 01 "``) -> two digits, or None."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text.zfill(2) if text.isdigit() and len(text) <= 2 else None


def _window_filter(column: str, since: date, today: date, *clauses: str) -> str:
    """``clauses`` and rows dated in the window: a day either side, since a date-time compares
    in UTC; the exact local day is checked on each row."""
    clauses = (*clauses, f"{column} ge {(since - timedelta(days=1)).isoformat()}")
    return " and ".join((*clauses, f"{column} lt {(today + timedelta(days=2)).isoformat()}"))


class _Reader:
    """One read of the histories: the client, the mapping and ``retention.yaml`` it is read
    by, and the optional tables already found missing (the store's, so it warns once)."""

    def __init__(
        self,
        client: DataverseClient,
        mapping: MappingFile,
        config: RetentionFile,
        age_bands: tuple[int, ...],
        absent: set[str],
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.config = config
        self.age_bands = age_bands
        self.zone = ZoneInfo(mapping.timezone)
        self._absent = absent
        self._status_column, self._status_words = self._payment_status()
        self._date_column = self._payment_date()

    # -- configuration --------------------------------------------------------------------------

    def _payment_status(self) -> tuple[str, dict[int, str]]:
        """The payment table's status column (its ``kind`` choice, else a ``payment_status``
        choice column) and its values' words."""
        payment, choices = self.mapping.payment, self.mapping.choices
        for column, transform in payment.values.items():
            chosen = transform.choice
            if chosen is not None and chosen.from_ == "kind" and chosen.set in choices:
                options = choices[chosen.set].options
                return column, {o.value: word for word, o in options.items()}
        for column, spec in payment.columns.items():
            if (
                spec.type == "choice"
                and spec.choices == "payment_status"
                and spec.choices in choices
            ):
                options = choices[spec.choices].options
                return column, {o.value: word for word, o in options.items()}
        raise ConfigError(
            "dataverse.yaml payment: no status column (a choice from the event kind, or a "
            "payment_status choice column), so payment rows cannot be read as paid or missed"
        )

    def _payment_date(self) -> str:
        """The payment table's date column: the one the event's time is written to."""
        for column, transform in self.mapping.payment.values.items():
            if "occurred_at" in (transform.datetime, transform.date):
                return column
        raise ConfigError(
            "dataverse.yaml payment: no column takes the event's occurred_at (datetime: or "
            "date:), so payment rows have no date"
        )

    def _member_select(self) -> list[str]:
        """The member columns read: those ``retention.yaml`` names for the history and the
        written ones; refused if the personnummer column is among them."""
        h, member = self.config.history, self.mapping.member
        wanted = [
            member.id_column,
            h.joined_on,
            h.ended_on,
            h.leaving_reason and h.leaving_reason.column,
            h.leaving_text,
            h.monthly_fee,
            h.method and h.method.column,
            h.member_type and h.member_type.column,
            h.county_code,
            h.birthdate,
            *self.config.written_columns(),
        ]
        select = list(dict.fromkeys(c for c in wanted if c))
        personal = {
            key.column
            for kind, key in member.keys.items()
            if kind == MemberRefKind.PERSONNUMMER and key.column
        }
        if found := sorted(personal & set(select)):
            raise ConfigError(
                f"retention.yaml names the personnummer column {', '.join(found)}: the "
                "retention analytics never read it"
            )
        return select

    # -- reading --------------------------------------------------------------------------------

    def read(self, today: date, outcomes: Iterable[tuple[str, date, str]]) -> HistoryRead:
        """What :meth:`RetentionStore.histories` returns."""
        # the retention extra, imported when a history is read (this module is imported by
        # the wiring, which a deployment without the extra also runs)
        from dynamics_bridge.mapping.retention import add_months
        from dynamics_bridge.retention.records import MemberHistory

        started, sent = time.monotonic(), self.client.requests_sent
        h = self.config.history
        since = add_months(today, -h.months)
        days = _Days(self.zone, since - timedelta(days=2), today + timedelta(days=2))
        skipped: Counter[str] = Counter()
        unreadable: Counter[str] = Counter()
        rows: Counter[str] = Counter()
        members, current = self._members(today, since, days, skipped, unreadable, rows)
        interned: dict[tuple[date, str], tuple[date, str]] = {}
        payments = self._payments(members, since, today, days, interned, rows)
        activity = self._activity(members, since, today, days, interned, rows)
        for member_id, day, word in outcomes:
            if member_id in members and since <= day <= today:
                row = (day, f"advisor_{word}")
                activity[member_id].append(interned.setdefault(row, row))
                rows["advisor"] += 1
            else:
                rows["advisor_ignored"] += 1
        found = [
            MemberHistory(
                member_id=member_id,
                payments=tuple(sorted(payments.get(member_id, ()))),
                activity=tuple(sorted(activity.get(member_id, ()))),
                **values,
            )
            for member_id, values in members.items()
        ]
        leavers = [m for m in found if m.ended_on is not None]
        for reason, count in sorted(skipped.items()):
            log.warning(
                "%d members skipped: %s",
                count,
                reason.replace("_", " "),
                extra={"outcome": "warning", "reason": reason, "count": count},
            )
        for what, count in sorted(unreadable.items()):
            log.warning(
                "%d members' %s could not be read: left empty",
                count,
                what,
                extra={"outcome": "warning", "field": what, "count": count},
            )
        read = HistoryRead(
            members=found,
            current=current,
            requests=self.client.requests_sent - sent,
            seconds=time.monotonic() - started,
            skipped=dict(skipped),
            unreadable=dict(unreadable),
            rows=dict(rows),
            absent=tuple(sorted(self._absent & set(h.activity))),
            leavers=len(leavers),
            leavers_with_reason=sum(1 for m in leavers if m.reason),
            leavers_with_text=sum(1 for m in leavers if m.reason_text),
        )
        log.info(
            "retention history read: %d members, %d requests",
            len(found),
            read.requests,
            extra={"members": len(found), "requests": read.requests, "rows": read.rows},
        )
        return read

    def _members(
        self,
        today: date,
        since: date,
        days: _Days,
        skipped: Counter[str],
        unreadable: Counter[str],
        rows: Counter[str],
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Member id -> MemberHistory fields (without the dated rows), and -> written columns."""
        h, member, mapping = self.config.history, self.mapping.member, self.mapping
        joined, ended = h.joined_on, h.ended_on
        limit = f"{joined} le {today.isoformat()}"
        query = f"({limit} and {ended} eq null) or ({limit} and {ended} ge {since.isoformat()})"
        reasons = _words(mapping, h.leaving_reason, "history.leaving_reason")
        methods = _words(mapping, h.method, "history.method")
        types = _words(mapping, h.member_type, "history.member_type")
        written = self.config.written_columns()
        found: dict[str, dict[str, Any]] = {}
        current: dict[str, dict[str, Any]] = {}
        for row in self.client.rows.query(
            member.entity_set, select=self._member_select(), filter=query
        ):
            rows["members"] += 1
            member_id = row.get(member.id_column)
            joined_on, ended_on = days(row.get(joined)), days(row.get(ended))
            why = _unusable(member_id, joined_on, ended_on, row.get(ended))
            if why is not None:
                skipped[why] += 1
                continue
            values: dict[str, Any] = {"joined_on": joined_on, "ended_on": ended_on}
            for name, column, words in (
                ("reason", h.leaving_reason, reasons),
                ("method", h.method, methods),
                ("member_type", h.member_type, types),
            ):
                raw = row.get(column.column) if column else None
                values[name] = _word(raw, words)
                if raw is not None and values[name] is None:
                    unreadable[name] += 1
            if h.leaving_text:
                text = row.get(h.leaving_text)
                values["reason_text"] = text.strip() or None if isinstance(text, str) else None
            values["monthly_fee"] = self._fee(row, unreadable)
            values["region"] = self._region(row, unreadable)
            values["age_band"] = self._age_band(row, days, today, unreadable)
            found[str(member_id)] = values
            current[str(member_id)] = {c: row.get(c) for c in written}
        return found, current

    def _fee(self, row: Mapping[str, Any], unreadable: Counter[str]) -> float:
        h = self.config.history
        raw = row.get(h.monthly_fee) if h.monthly_fee else None
        if raw is None:
            return h.default_monthly_fee
        try:
            fee = float(raw)
        except (TypeError, ValueError):
            fee = -1.0
        if fee < 0 or math.isnan(fee):
            unreadable["monthly_fee"] += 1
            return h.default_monthly_fee
        return fee

    def _region(self, row: Mapping[str, Any], unreadable: Counter[str]) -> str | None:
        column = self.config.history.county_code
        raw = row.get(column) if column else None
        if raw is None or raw == "":
            return None
        code = _county(raw)
        name = county_name(code) if code else None
        if name is None:
            unreadable["county_code"] += 1
        return name

    def _age_band(
        self, row: Mapping[str, Any], days: _Days, today: date, unreadable: Counter[str]
    ) -> str | None:
        column = self.config.history.birthdate
        raw = row.get(column) if column else None
        if raw is None:
            return None
        born = days(raw)
        if born is None or born > today:
            unreadable["birthdate"] += 1
            return None
        return band(whole_years(born, today), self.age_bands)

    def _payments(
        self,
        members: Mapping[str, Any],
        since: date,
        today: date,
        days: _Days,
        interned: dict[tuple[date, str], tuple[date, str]],
        rows: Counter[str],
    ) -> dict[str, list[tuple[date, str]]]:
        """Member id -> (day, kind) of its payment rows in the window."""
        payment = self.mapping.payment
        lookup = f"_{payment.member_lookup}_value"
        kinds = {
            value: PAYMENT_KIND_OF[word]
            for value, word in self._status_words.items()
            if word in PAYMENT_KIND_OF
        }
        if not kinds:
            return {}
        statuses = odata_in(self._status_column, [str(v) for v in sorted(kinds)])
        query = _window_filter(self._date_column, since, today, statuses)
        select = [lookup, self._status_column, self._date_column]
        found: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for row in self.client.rows.query(payment.entity_set, select=select, filter=query):
            member_id = str(row.get(lookup))
            kind = _word(row.get(self._status_column), kinds)
            day = days(row.get(self._date_column))
            if member_id not in members or kind is None or day is None:
                rows["payments_ignored"] += 1
                continue
            if not since <= day <= today:
                continue
            rows["payments"] += 1
            found[member_id].append(interned.setdefault((day, kind), (day, kind)))
        return found

    def _activity(
        self,
        members: Mapping[str, Any],
        since: date,
        today: date,
        days: _Days,
        interned: dict[tuple[date, str], tuple[date, str]],
        rows: Counter[str],
    ) -> dict[str, list[tuple[date, str]]]:
        """Member id -> (day, related table name) of its activity rows in the window."""
        found: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for name in self.config.history.activity:
            table = self.mapping.related.get(name)
            if table is None or table.count is None or not table.member_lookup:
                raise ConfigError(
                    f"retention.yaml history.activity: {name!r} is not a related table with "
                    "member_lookup and count (date_column) in dataverse.yaml"
                )
            for member_id, day in self._related_rows(name, table, since, today, days, rows):
                if member_id in members:
                    found[member_id].append(interned.setdefault((day, name), (day, name)))
        return found

    def _related_rows(
        self,
        name: str,
        table: RelatedTable,
        since: date,
        today: date,
        days: _Days,
        rows: Counter[str],
    ) -> Iterator[tuple[str, date]]:
        """(member id, day) of one activity table's rows in the window; nothing, after one
        warning, when an optional table is not in the environment."""
        assert table.count is not None  # checked by the caller
        lookup = f"_{table.member_lookup}_value"
        column = table.count.date_column
        query = _window_filter(
            column, since, today, *([f"({table.filter})"] if table.filter else [])
        )
        rows[name] = 0
        try:
            for row in self.client.rows.query(
                table.entity_set, select=[lookup, column], filter=query
            ):
                day = days(row.get(column))
                if day is not None and since <= day <= today:
                    rows[name] += 1
                    yield str(row.get(lookup)), day
        except NotFoundError:
            if not table.optional:
                raise
            del rows[name]
            if name not in self._absent:
                self._absent.add(name)
                log.warning(
                    "activity table %s (%s) is not in the environment: no %s activity is read",
                    name,
                    table.entity_set,
                    name,
                    extra={"outcome": "warning", "table": table.table},
                )


class RetentionStore:
    """Histories in, results out, over one Dataverse client (the one network seam).

    ``config``: ``retention.yaml``, when not given with each read; ``dry_run``: :meth:`write`
    reports and writes nothing (unless a call says otherwise); ``age_bands``: lower bounds of
    the age bands (the activation facts' by default).
    """

    def __init__(
        self,
        client: DataverseClient,
        mapping: MappingFile,
        config: RetentionFile | None = None,
        *,
        dry_run: bool = False,
        age_bands: Sequence[int] = DEFAULT_AGE_BANDS,
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.config = config
        self.dry_run = dry_run
        self.age_bands = tuple(age_bands)
        self._absent: set[str] = set()  # optional activity tables found missing (warned once)

    def _config(self, config: RetentionFile | None) -> RetentionFile:
        chosen = config or self.config
        if chosen is None:
            raise ConfigError("the retention store needs retention.yaml (its config)")
        return chosen

    # -- reading --------------------------------------------------------------------------------

    def histories(
        self,
        config: RetentionFile | None = None,
        mapping: MappingFile | None = None,
        *,
        today: date,
        outcomes: Iterable[tuple[str, date, str]] = (),
    ) -> HistoryRead:
        """Every member active, or who left within ``history.months`` before ``today``, with
        their payments and activity in that window; ``outcomes`` are advisor task outcomes
        ``(contact id, date, word)``, read by the caller from the tasks.

        ``config`` and ``mapping`` default to the store's; the config read by is also the one
        :meth:`write` then checks columns against.
        """
        self.config = self._config(config)
        reader = _Reader(
            self.client, mapping or self.mapping, self.config, self.age_bands, self._absent
        )
        return reader.read(today, outcomes)

    # -- writing --------------------------------------------------------------------------------

    def _normal(self, column: str, value: Any) -> Any:
        """A value as Dataverse keeps it, so what was read and what is written compare: whole
        numbers, money to the öre, text cut to the column's length, empty text as null (and a
        number that is none, NaN, as null too)."""
        spec: ColumnSpec | None = self.mapping.member.columns.get(column)
        if value is None:
            return None
        kind = spec.type if spec else None
        if kind in ("integer", "choice", "money", "decimal"):
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            if not math.isfinite(number):
                return None
            return round(number) if kind in ("integer", "choice") else round(number, 2)
        if kind in ("string", "memo"):
            text = str(value)
            if spec and spec.max_length:
                text = text[: spec.max_length]
            return text or None
        return value

    def write(
        self,
        results: Mapping[str, Mapping[str, object]],
        current: Mapping[str, Mapping[str, object]] | None = None,
        *,
        dry_run: bool | None = None,
    ) -> WriteReport:
        """Write ``results`` (contact id -> written column -> value) where they differ from
        ``current`` (as :attr:`HistoryRead.current` gives; read now when None). A member
        missing from ``current`` gets every value. ``dry_run``: the store's unless given.
        Raises ConfigError for a column ``retention.yaml`` does not say the jobs write."""
        dry = self.dry_run if dry_run is None else dry_run
        sent = self.client.requests_sent
        config = self._config(None)
        allowed = set(config.written_columns())
        if stray := sorted({c for values in results.values() for c in values} - allowed):
            raise ConfigError(
                f"not a column the retention jobs write (retention.yaml): {', '.join(stray)}"
            )
        if current is None:
            current = self._current(list(results), config.written_columns())
        changed: dict[str, dict[str, Any]] = {}
        for member_id, values in results.items():
            before = current.get(member_id)
            diff: dict[str, Any] = {}
            for column, value in values.items():
                new = self._normal(column, value)
                if before is None or new != self._normal(column, before.get(column)):
                    diff[column] = new
            if diff:
                changed[member_id] = diff
        failed: dict[str, str] = {}
        if not dry:
            failed = self._patch(changed)
        return WriteReport(
            dry_run=dry,
            changes=changed,
            unchanged=len(results) - len(changed),
            written=0 if dry else len(changed) - len(failed),
            failed=failed,
            requests=self.client.requests_sent - sent,
        )

    def _current(
        self, member_ids: Sequence[str], columns: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """The written columns of these members as they are now (``In`` queries by contact
        id, sent together in ``$batch`` requests)."""
        if not member_ids:
            return {}
        member = self.mapping.member
        return self.client.rows.by_values(member.entity_set, member.id_column, member_ids, columns)

    def _patch(self, changed: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """PATCH each member's changes by contact id, update only: member id -> why it
        failed."""
        entity_set = self.mapping.member.entity_set
        ids = list(changed)
        failed: dict[str, str] = {}
        for start in range(0, len(ids), MAX_BATCH_OPERATIONS):
            chunk = ids[start : start + MAX_BATCH_OPERATIONS]
            requests = [
                BatchRequest(
                    "PATCH",
                    key_path(entity_set, member_id),
                    {"If-Match": "*"},
                    dict(changed[member_id]),
                )
                for member_id in chunk
            ]
            for member_id, op in zip(
                chunk, self.client.batch.execute(requests).operations, strict=True
            ):
                if not op.ok:
                    failed[member_id] = (
                        "not found"
                        if isinstance(op.error, NotFoundError)
                        else str(op.error or op.state.replace("_", " "))
                    )
        if failed:
            log.warning(
                "%d of %d members' retention columns were not written",
                len(failed),
                len(ids),
                extra={"outcome": "warning", "failed": len(failed)},
            )
        return failed
