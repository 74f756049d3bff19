"""A register for the retention analytics on the sandbox: the synthetic register of
:mod:`dynamics_bridge.retention.synthetic` (members who leave for four planted causes) written
as a union's Dataverse holds it, so the whole path (read, train, score, write back) runs on
data whose answer is known.

Each member becomes a contact (member number, joining and leaving dates, leaving reason choice
and free text, monthly fee, payment method, member type, county code, birth date and a
fictitious personnummer the analytics must never read); each monthly payment a payment row
(its status as the event kind, dated at 10:00 UTC); each activity row a row of the union's own
tables (:func:`~dynamics_bridge_sandbox.demo.union.define_union_tables`): ``event`` an attended
event registration, ``advice`` a booking, ``portal`` a sign-in, ``benefit`` a benefit use. The
register has no survey answers, so that table stays empty.

The register's words are mapped to the mapping's choices: the method ``card`` is written as
``swish`` and the member types ``regular``/``reduced`` as ``yrkesverksam``/``pensionar``
(:data:`WORDS`; the shipped choice sets lack them, and a reduced fee is what a pensioner member
pays). Where the mapping has the register's own word it is used. Regions become SCB county
codes (:data:`COUNTY_CODES`) and age bands birth dates.

With ``noise`` (the default) rows the reader must leave out are added, as a real register has
them: contacts that left before the window or never joined, one contact that left before it
joined, events registered for but not attended, payment rows that are not payments (an invoice
sent) and payments dated before the window.

Fast: the rows are written straight into the sandbox's store, the same rows its Web API would
have stored (alternate-key entries and change-tracking versions included); only the tables are
made through the API (``provision``). 20,000 members over three years are about 950,000 rows:
15 s this way, about two minutes through ``$batch`` (0.11 ms a row, measured).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np

from dynamics_bridge.activation.facts import band, whole_years
from dynamics_bridge.activation.regions import county_name
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.provision import apply_plan, plan
from dynamics_bridge.dataverse.retention_store import DEFAULT_AGE_BANDS
from dynamics_bridge.mapping import MappingFile, load_mapping
from dynamics_bridge.mapping.models import RelatedTable
from dynamics_bridge.personnummer import luhn_check_digit
from dynamics_bridge.retention.records import MemberHistory
from dynamics_bridge.retention.synthetic import SyntheticRegister, generate
from dynamics_bridge_sandbox.dataverse import DataverseSandbox, _key_entry
from dynamics_bridge_sandbox.demo.union import define_union_tables
from dynamics_bridge_sandbox.register import sandbox_settings
from dynamics_bridge_sandbox.server import SandboxInfo

__all__ = ["ACTIVITY_TABLES", "COUNTY_CODES", "WORDS", "run_retention_demo", "seed_retention"]

log = logging.getLogger("dynamics_bridge_sandbox.demo")

#: The synthetic register's regions as SCB county codes (the code the SPAR refresh stores).
COUNTY_CODES = {
    "Stockholm": "01",
    "Västra Götaland": "14",
    "Skåne": "12",
    "Uppsala": "03",
    "Östergötland": "05",
    "Norrbotten": "25",
}
#: The synthetic register's activity kinds -> the related tables (dataverse.yaml) they go to.
ACTIVITY_TABLES = {"event": "events", "advice": "advice", "portal": "portal", "benefit": "benefits"}
#: The register's words the shipped choice sets lack -> the word written instead.
WORDS = {
    "method": {"card": "swish"},
    "member_type": {"regular": "yrkesverksam", "reduced": "pensionar"},
}
#: The register's payment kinds -> the payment row's event kind.
EVENT_KINDS = {
    "paid": "payment.succeeded",
    "failed": "payment.failed",
    "overdue": "invoice.overdue",
    "refunded": "payment.refunded",
}
NOT_A_PAYMENT = "invoice.sent"


def _guid(table: int, seed: int, n: int) -> str:
    """A deterministic row id: the same seed writes the same rows (a rerun replaces them)."""
    return f"{table:08x}-{seed & 0xFFFF:04x}-4000-8000-{n:012x}"


def _choice(mapping: MappingFile, choices: str, what: str, word: str) -> int:
    options = mapping.choices[choices].options
    chosen = word if word in options else WORDS.get(what, {}).get(word, word)
    if chosen not in options:
        raise ValueError(f"choice set {choices} has no option for {word!r} ({what})")
    return options[chosen].value


def _word_read(mapping: MappingFile, choices: str, what: str, word: str | None) -> str | None:
    """The word the reader will give for the register's ``word``."""
    if word is None:
        return None
    options = mapping.choices[choices].options
    return word if word in options else WORDS.get(what, {}).get(word, word)


def _born(today: date, age: int, days_before: int) -> date:
    """A birth date making the member ``age`` on ``today`` (``days_before`` < 365)."""
    try:
        birthday = today.replace(year=today.year - age)
    except ValueError:  # 29 February
        birthday = today.replace(year=today.year - age, day=28)
    return birthday - timedelta(days=days_before)


def _personnummer(born: date, n: int) -> str:
    """Fictitious: serial numbers 980-999, which pass the Luhn check but belong to nobody."""
    body = f"{born:%y%m%d}{980 + n % 20}"
    return f"{born.year // 100}{body}{luhn_check_digit(body)}"


class _Loader:
    """Rows straight into the sandbox's SQLite store, as its Web API would keep them: JSON
    data, a change-tracking version each, alternate-key index entries. Under the sandbox's
    lock, in one transaction."""

    def __init__(self, box: DataverseSandbox) -> None:
        self.box = box
        self.rows: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def add(self, logical: str, row_id: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(logical, []).append((row_id, row))

    def flush(self) -> dict[str, int]:
        box = self.box
        counts: dict[str, int] = {}
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with box._lock:  # the sandbox's own store, inside its package (module docstring)
            db = box.db
            db.execute("BEGIN")
            try:
                for logical, rows in self.rows.items():
                    definition = box.entity(logical)
                    if definition is None:
                        raise ValueError(f"the sandbox has no table {logical}")
                    primary = definition["PrimaryIdAttribute"]
                    stamped = any(a["LogicalName"] == "createdon" for a in definition["Attributes"])
                    first = self._versions(len(rows))
                    for row_id, row in rows:
                        row[primary] = row_id
                        if stamped:
                            row["createdon"] = created
                    db.executemany(
                        "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, 0)",
                        (
                            (logical, row_id, json.dumps(row), first + n)
                            for n, (row_id, row) in enumerate(rows)
                        ),
                    )
                    for declared in definition["Keys"]:
                        columns = sorted(declared["KeyAttributes"])
                        db.executemany(
                            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?)",
                            (
                                (logical, *_key_entry(columns, row), row_id)
                                for row_id, row in rows
                                if all(row.get(c) is not None for c in columns)
                            ),
                        )
                    counts[logical] = len(rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.rows.clear()
        return counts

    def _versions(self, count: int) -> int:
        """Reserve ``count`` change-tracking versions; the first one."""
        db = self.box.db
        db.execute("UPDATE counter SET version = version + ?", (count,))
        return int(db.execute("SELECT version FROM counter").fetchone()[0]) - count + 1


def _prepare(info: SandboxInfo, mapping: MappingFile) -> None:
    """The mapping's tables and columns (provision) and the union's own tables."""
    client = DataverseClient.from_settings(sandbox_settings(info))
    apply_plan(client, plan(client, mapping), key_poll=0.05)
    related = [mapping.related[name].table for name in ACTIVITY_TABLES.values()]
    if any(info.dataverse.entity(table) is None for table in related):
        define_union_tables(info.dataverse, mapping.publisher_prefix)


def seed_retention(
    sandbox: SandboxInfo,
    mapping: MappingFile | None = None,
    *,
    members: int,
    today: date,
    seed: int = 0,
    years: int = 3,
    age_bands: Sequence[int] = DEFAULT_AGE_BANDS,
    noise: bool = True,
) -> SyntheticRegister:
    """Write ``generate(members, today=today, seed=seed, years=years)`` into the sandbox.

    Returns the register as the retention reader reads it back: member ids are the contact
    ids, words are the mapping's (:data:`WORDS`), regions county names, age bands those of
    ``age_bands`` on ``today``, an empty free text none, arrears 0 (written to the arrears
    column, which the analytics do not read: records.py); the planted groups keyed alike.
    """
    mapping = mapping or load_mapping()
    started = time.monotonic()
    _prepare(sandbox, mapping)
    register = generate(members, today=today, seed=seed, years=years)
    rng = np.random.default_rng([seed, 17])
    loader = _Loader(sandbox.dataverse)
    read = _write_members(loader, mapping, register, rng, today, age_bands, seed)
    if noise:
        _write_noise(loader, mapping, register, seed)
    counts = loader.flush()
    ids = {m.member_id: r.member_id for m, r in zip(register.members, read, strict=True)}
    log.info(
        "retention register seeded: %d members, %d rows in %.1f s",
        members,
        sum(counts.values()),
        time.monotonic() - started,
        extra={"rows": counts},
    )
    return SyntheticRegister(
        read, {ids[m]: g for m, g in register.groups.items()}, today, register.observed_from
    )


class _Columns:
    """The columns the seeder writes, from the mapping (as the reader finds them)."""

    def __init__(self, mapping: MappingFile) -> None:
        payment = mapping.payment
        self.prefix = mapping.publisher_prefix
        self.kind = self.method = self.amount = self.occurred = self.currency = ""
        self.kind_set = self.method_set = ""
        for column, t in payment.values.items():
            if t.choice is not None and t.choice.from_ == "kind":
                self.kind, self.kind_set = column, t.choice.set
            elif t.choice is not None and t.choice.from_ == "method":
                self.method, self.method_set = column, t.choice.set
            elif t.money == "amount_minor":
                self.amount = column
            elif t.datetime == "occurred_at":
                self.occurred = column
            elif t.copy_ == "currency":
                self.currency = column
        if not (self.kind and self.occurred):
            raise ValueError("the mapping's payment table has no kind or occurred-at column")
        self.lookup = f"_{payment.member_lookup}_value"


def _contact(mapping: MappingFile, number: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        mapping.member.key_column: number,
        "firstname": "Medlem",
        "lastname": number,
        **{k: v for k, v in values.items() if v is not None},
    }


def _activity_columns(box: DataverseSandbox, table: RelatedTable) -> tuple[str, tuple[str, bool]]:
    """An activity table's member lookup (as stored) and its date column, and whether that
    column holds dates only (as the table's definition says)."""
    if table.count is None or table.member_lookup is None:
        raise ValueError(f"related table {table.table} has no member_lookup and count")
    column = table.count.date_column
    definition = box.entity(table.table) or {}
    day_only = any(
        a["LogicalName"] == column and a.get("Format") == "DateOnly"
        for a in definition.get("Attributes", [])
    )
    return f"_{table.member_lookup}_value", (column, day_only)


def _write_members(
    loader: _Loader,
    mapping: MappingFile,
    register: SyntheticRegister,
    rng: np.random.Generator,
    today: date,
    age_bands: Sequence[int],
    seed: int,
) -> list[MemberHistory]:
    """Contacts, payment rows and activity rows of every member; the members as read."""
    p = mapping.publisher_prefix
    cols = _Columns(mapping)
    contact, payment = mapping.member.table, mapping.payment.table
    kinds = {k: _choice(mapping, cols.kind_set, "kind", v) for k, v in EVENT_KINDS.items()}
    tables = {
        kind: (mapping.related[name].table, *_activity_columns(loader.box, mapping.related[name]))
        for kind, name in ACTIVITY_TABLES.items()
    }
    n = len(register.members)
    ages = rng.integers(0, 1 << 30, n)
    offsets = rng.integers(0, 365, n)
    stamps: dict[date, str] = {}
    read_rows: dict[tuple[date, str], tuple[date, str]] = {}
    found: list[MemberHistory] = []
    row_number = 0
    for i, m in enumerate(register.members):
        contact_id = _guid(1, seed, i)
        low, high = (int(x) for x in (m.age_band or "30-39").split("-"))
        born = _born(today, low + int(ages[i]) % (high - low + 1), int(offsets[i]))
        method = m.method or "autogiro"
        values: dict[str, Any] = {
            "birthdate": born.isoformat(),
            "governmentid": _personnummer(born, i),
            f"{p}_joinedon": m.joined_on.isoformat(),
            f"{p}_endedon": m.ended_on.isoformat() if m.ended_on else None,
            f"{p}_membershipstatus": mapping.choices["membership_status"]
            .options["ended" if m.ended_on else "active"]
            .value,
            f"{p}_leavingreason": _choice(mapping, "leaving_reason", "reason", m.reason)
            if m.reason
            else None,
            f"{p}_leavingtext": m.reason_text,
            f"{p}_monthlyfee": m.monthly_fee,
            f"{p}_paymentmethod": _choice(mapping, "payment_method", "method", method),
            f"{p}_membertype": _choice(mapping, "member_type", "member_type", m.member_type)
            if m.member_type
            else None,
            f"{p}_countycode": COUNTY_CODES[m.region] if m.region else None,
        }
        if f"{p}_arrears" in mapping.member.columns:  # the bridge's own arrears, as of today
            values[f"{p}_arrears"] = m.arrears or None
        number = f"R{seed}-{i + 1:07d}"
        loader.add(contact, contact_id, _contact(mapping, number, values))
        method_value = _choice(mapping, cols.method_set, "method", method) if cols.method else None
        for day, kind in m.payments:
            row_number += 1
            when = stamps.get(day) or stamps.setdefault(day, f"{day.isoformat()}T10:00:00Z")
            row = {
                mapping.payment.key_column: f"retention-{seed}-{row_number}",
                cols.lookup: contact_id,
                cols.kind: kinds[kind],
                cols.occurred: when,
            }
            if cols.method:
                row[cols.method] = method_value
            if cols.amount:
                row[cols.amount] = m.monthly_fee
            if cols.currency:
                row[cols.currency] = "SEK"
            loader.add(payment, _guid(2, seed, row_number), row)
        for day, kind in m.activity:
            row_number += 1
            logical, lookup, (dated, day_only) = tables[kind]
            when = day.isoformat() if day_only else f"{day.isoformat()}T09:00:00Z"
            row = {lookup: contact_id, dated: when}
            if kind == "event":
                row[f"{p}_attended"] = True
            loader.add(logical, _guid(3, seed, row_number), row)
        activity = tuple(
            read_rows.setdefault((d, ACTIVITY_TABLES[k]), (d, ACTIVITY_TABLES[k]))
            for d, k in m.activity
        )
        found.append(
            replace(
                m,
                member_id=contact_id,
                method=_word_read(mapping, "payment_method", "method", m.method),
                member_type=_word_read(mapping, "member_type", "member_type", m.member_type),
                region=county_name(COUNTY_CODES[m.region]) if m.region else None,
                age_band=band(whole_years(born, today), age_bands),
                reason_text=m.reason_text or None,
                activity=activity,
                arrears=0.0,
            )
        )
    return found


def _write_noise(
    loader: _Loader,
    mapping: MappingFile,
    register: SyntheticRegister,
    seed: int,
) -> None:
    """Rows a reader must leave out (see the module docstring); deterministic for a seed."""
    p = mapping.publisher_prefix
    cols = _Columns(mapping)
    today, since = register.today, register.observed_from
    contact, payment = mapping.member.table, mapping.payment.table
    sent = _choice(mapping, cols.kind_set, "kind", NOT_A_PAYMENT)
    paid = _choice(mapping, cols.kind_set, "kind", EVENT_KINDS["paid"])
    n = len(register.members)
    extra: list[tuple[str, dict[str, Any]]] = []
    for k in range(max(1, n // 50)):  # left before the window
        ended = since - timedelta(days=30 + k % 400)
        extra.append(
            (
                f"old-{k}",
                {
                    f"{p}_joinedon": (ended - timedelta(days=900)).isoformat(),
                    f"{p}_endedon": ended.isoformat(),
                    f"{p}_leavingreason": _choice(mapping, "leaving_reason", "reason", "other"),
                },
            )
        )
    for k in range(max(1, n // 100)):  # never joined: a contact, not a member
        extra.append((f"contact-{k}", {}))
    extra.append(  # left before joining: a data error the reader skips and counts
        (
            "error-0",
            {
                f"{p}_joinedon": (today - timedelta(days=100)).isoformat(),
                f"{p}_endedon": (today - timedelta(days=200)).isoformat(),
            },
        )
    )
    for k, (name, values) in enumerate(extra):
        contact_id = _guid(4, seed, k)
        loader.add(contact, contact_id, _contact(mapping, f"N{seed}-{name}", values))
    events = mapping.related[ACTIVITY_TABLES["event"]]
    event_lookup, event_date = _activity_columns(loader.box, events)
    row_number = 0

    def payment_row(contact_id: str, kind: int, day: date) -> None:
        nonlocal row_number
        row_number += 1
        loader.add(
            payment,
            _guid(5, seed, row_number),
            {
                mapping.payment.key_column: f"retention-{seed}-noise-{row_number}",
                cols.lookup: contact_id,
                cols.kind: kind,
                cols.occurred: f"{day.isoformat()}T10:00:00Z",
            },
        )

    for i, m in enumerate(register.members):
        contact_id = _guid(1, seed, i)
        for j, (day, _) in enumerate(m.payments):
            if (i + j) % 20 == 0:  # an invoice sent that day: not a payment
                payment_row(contact_id, sent, day)
        if m.joined_on < since and i % 10 == 0:  # paid before the window
            payment_row(contact_id, paid, since - timedelta(days=20))
        for j, day in enumerate(d for d, kind in m.activity if kind == "event"):
            if j % 8 == 0:  # registered, did not come
                row_number += 1
                loader.add(
                    events.table,
                    _guid(6, seed, row_number),
                    {
                        event_lookup: contact_id,
                        event_date[0]: day.isoformat(),
                        f"{p}_attended": False,
                    },
                )


def run_retention_demo(
    info: SandboxInfo, services: Any, mapping: MappingFile, today: date, *, members: int = 3_000
) -> dict[str, Any]:
    """The retention analytics on a seeded register beside the demo's day: train, themes,
    score (member columns, advisor tasks), report; models kept in memory. The summary names
    the model's test against the baseline and how well the themes found the planted groups."""
    from sklearn.metrics import adjusted_rand_score

    from dynamics_bridge.app.retention import run_steps

    started = time.monotonic()
    register = seed_retention(info, mapping, members=members, today=today, seed=7)
    run = services.retention_run(today)
    reports = {r.step: r for r in run_steps(run)}
    churn = run.artifacts.latest("churn")
    themes = run.artifacts.latest("themes")
    summary: dict[str, Any] = {
        "members": members,
        "steps": {step: {"done": r.done, "message": r.message} for step, r in reports.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    if churn is not None:
        summary["churn"] = {
            key: churn.meta[key] for key in ("used", "roc_auc", "baseline_roc_auc", "why")
        }
    score = reports.get("score")
    if score is not None and score.done:
        summary["score"] = score.counts
    if themes is not None:
        summary["themes"] = [
            {
                "id": t["id"],
                "leavers": t["size"],
                "reason": t["reasons"][0][0] if t["reasons"] else None,
            }
            for t in themes.meta["themes"]
        ]
        assigned = _assigned(services, mapping, run)
        shared = [m for m in register.groups if m in assigned]
        if shared:
            summary["themes_ari"] = round(
                adjusted_rand_score(
                    [register.groups[m] for m in shared], [assigned[m] for m in shared]
                ),
                3,
            )
    return summary


def _assigned(services: Any, mapping: MappingFile, run: Any) -> dict[str, str]:
    """Member id -> the theme written on the contact (what APSIS and advisors see)."""
    column = run.config.themes.theme_column
    rows = services.dataverse.rows.query(
        mapping.member.entity_set, select=[mapping.member.id_column, column]
    )
    return {r[mapping.member.id_column]: r[column] for r in rows if r.get(column)}
