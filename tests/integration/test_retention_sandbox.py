"""Member histories read from the Dataverse sandbox, and retention results written back.

A synthetic register of 2,000 members over three years (with the rows a reader must leave out)
is seeded once; every member must read back as it was written, in one request per 5,000 rows,
without the personnummer ever being asked for; writing results twice must write once."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

import pytest
import requests
from dynamics_bridge_sandbox.dataverse import DataverseSandbox
from dynamics_bridge_sandbox.demo.retention import ACTIVITY_TABLES, WORDS, seed_retention
from dynamics_bridge_sandbox.register import sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.dataverse.auth import session_for
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.retention_store import HistoryRead, RetentionStore
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config
from dynamics_bridge.mapping.retention import RetentionFile
from dynamics_bridge.retention.synthetic import SyntheticRegister, generate

pytestmark = pytest.mark.integration
MAPPING = load_mapping()
CONFIG = load_config(RetentionFile, MAPPINGS_DIR / "retention.yaml", prefix="mbr")
TODAY = date(2026, 11, 28)
MEMBERS, SEED = 2000, 5
RISK, REASONS, VALUE, MONTHS, THEME, MESSAGE = CONFIG.written_columns()


@dataclass
class Seeded:
    register: SyntheticRegister
    client: DataverseClient
    box: DataverseSandbox
    sent: list[tuple[str, str, str]]  # method, URL, body of every request
    answers: list[str]  # every answer's text

    def store(self, **options: Any) -> RetentionStore:
        return RetentionStore(self.client, MAPPING, CONFIG, **options)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    with run_sandbox() as box:
        register = seed_retention(box, MAPPING, members=MEMBERS, today=TODAY, seed=SEED)
        settings = sandbox_settings(box)
        session = session_for(settings)
        sent: list[tuple[str, str, str]] = []
        answers: list[str] = []
        plain = session.request

        def recording(method: str, url: str, **kwargs: Any) -> requests.Response:
            body = kwargs.get("data") or b""
            sent.append((method, url, body.decode() if isinstance(body, bytes) else str(body)))
            response = plain(method, url, **kwargs)
            answers.append(response.text)
            return response

        session.request = recording  # type: ignore[method-assign]
        client = DataverseClient.from_settings(settings, session)
        yield Seeded(register, client, box.dataverse, sent, answers)


@pytest.fixture(scope="module")
def first_read(seeded: Seeded) -> HistoryRead:
    seeded.sent.clear()
    seeded.answers.clear()
    return seeded.store().histories(today=TODAY)


def test_every_member_reads_back_as_written(seeded: Seeded, first_read: HistoryRead) -> None:
    read = {m.member_id: m for m in first_read.members}
    assert set(read) == {m.member_id for m in seeded.register.members}
    for written in seeded.register.members:
        got = read[written.member_id]
        for f in fields(written):
            want, have = getattr(written, f.name), getattr(got, f.name)
            if f.name in ("payments", "activity"):
                want, have = sorted(want), sorted(have)
            assert have == want, (written.member_id, f.name)
    # The rows a reader must leave out were there to be left out: only the data error is told.
    assert first_read.skipped == {"left_before_joining": 1}
    assert first_read.unreadable == {}
    assert first_read.absent == ()
    assert first_read.leavers == sum(1 for m in seeded.register.members if m.ended_on)
    assert first_read.leavers_with_reason == sum(1 for m in seeded.register.members if m.reason)


def test_the_register_written_is_the_generated_one_in_the_mappings_words(
    seeded: Seeded,
) -> None:
    generated = generate(MEMBERS, today=TODAY, seed=SEED).members
    for made, written in zip(generated, seeded.register.members, strict=True):
        assert (made.joined_on, made.ended_on, made.reason) == (
            written.joined_on,
            written.ended_on,
            written.reason,
        )
        assert made.payments == written.payments
        assert [(d, ACTIVITY_TABLES[k]) for d, k in made.activity] == list(written.activity)
        assert written.method == WORDS["method"].get(str(made.method), made.method)
        assert written.reason_text == (made.reason_text or None)
    assert Counter(m.method for m in seeded.register.members)["swish"] > 0
    assert seeded.register.groups  # the planted causes, keyed by contact id
    assert set(seeded.register.groups) <= {m.member_id for m in seeded.register.members}


def test_the_personnummer_is_never_asked_for_nor_answered(
    seeded: Seeded, first_read: HistoryRead
) -> None:
    held = seeded.box.db.execute(
        "SELECT count(*) FROM rows WHERE entity = 'contact' AND data LIKE '%governmentid%'"
    ).fetchone()[0]
    assert held == MEMBERS  # the sandbox has one for every member
    assert seeded.sent
    assert not [url for _, url, _ in seeded.sent if "governmentid" in url]
    assert not [a for a in seeded.answers if "governmentid" in a]


def test_one_request_per_5000_rows_of_each_source(seeded: Seeded, first_read: HistoryRead) -> None:
    members = seeded.register.members
    payments = sum(len(m.payments) for m in members)
    activity = Counter(kind for m in members for _, kind in m.activity)
    expected = (
        1  # about 2,060 member rows: one page
        + math.ceil(payments / 5000)
        + sum(max(1, math.ceil(activity[name] / 5000)) for name in CONFIG.history.activity)
    )
    assert first_read.requests == expected == len(seeded.sent)
    assert first_read.requests < 30  # for 2,000 members over three years


def test_results_are_written_once_and_a_rerun_writes_nothing(
    seeded: Seeded, first_read: HistoryRead
) -> None:
    ids = sorted(first_read.current)
    results = {
        member_id: {
            RISK: n % 100,
            REASONS: "payments.missed tenure.years",
            VALUE: 1000 + n * 1.255,
            MONTHS: 12 + n % 60,
            THEME: "t1" if n % 3 else None,
            MESSAGE: "Välkommen tillbaka" if n % 3 else None,
        }
        for n, member_id in enumerate(ids)
    }
    first = seeded.store().write(results, first_read.current)
    assert (first.written, first.failed) == (MEMBERS, {})
    assert first.requests == 2  # 1,000 PATCHes to a $batch

    after = seeded.store().histories(today=TODAY)
    sample = after.current[ids[7]]
    assert (sample[RISK], sample[VALUE], sample[THEME]) == (7, round(1000 + 7 * 1.255, 2), "t1")
    served = seeded.box.requests
    again = seeded.store().write(results, after.current)
    assert (again.changed, again.requests, again.unchanged) == (0, 0, MEMBERS)
    assert seeded.box.requests == served

    # Without the current values they are read first: still nothing to write.
    fresh = seeded.store().write(results)
    assert fresh.changed == 0
    assert fresh.requests == 1  # the In queries by contact id, in one $batch


def test_a_dry_run_writes_nothing(seeded: Seeded, first_read: HistoryRead) -> None:
    target = sorted(first_read.current)[:50]
    results = {member_id: {RISK: 99, THEME: "dry"} for member_id in target}
    seeded.sent.clear()
    report = seeded.store(dry_run=True).write(results)
    assert report.dry_run
    assert report.changed == len(report.changes) == 50
    assert report.columns[RISK] == 50
    assert report.written == 0
    assert [method for method, _, _ in seeded.sent] == ["GET"]  # the current values, no write
    rows = seeded.client.rows.by_values("contacts", "contactid", target, [RISK, THEME])
    assert len(rows) == 50
    assert all(row[THEME] != "dry" and row[RISK] != 99 for row in rows.values())
