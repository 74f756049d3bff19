"""The console's reads on a big poison book and a long run history, and a replay by filter.

Run: .venv/bin/python bench/console.py [--poison 100000] [--days 90] [--reps 30]
      [--replay 10000] [--old-replay 2000]

On Azurite (queue and table services), the Table Storage ops store is seeded with ``--poison``
poison records (unmatched 60 %, failed 30 %, undecodable 10 %; sources autogiro, bgmax,
billogram, swish; over 30 days; 20,000 member numbers; the files' names for file sources) and
``--days`` days of run history (400 queue runs, 20 file runs and 50 timer runs a day). Then the
store calls behind each console page are timed ``--reps`` times (p50/p95 in ms): the overview (7
days' totals, the poison count, the last files and timer runs), the history (90 days' totals),
a filtered poison page (reason, source, last 7 days, with its count), a search by member number,
and the count alone; and the console's own pages through its Starlette app when it is there.

Replay: ``PoisonBook.replay`` of about ``--replay`` records chosen by a filter (events back on
an Azurite queue in few messages, records deleted in batches) against the way before the book
(``--old-replay`` messages on an Azurite poison queue: take 32, then per message send its
events and delete it). Last line: ``RESULT overview_p95_ms=... history_p95_ms=...
poison_page_p95_ms=... search_p95_ms=... replay_per_s=... old_replay_per_s=... ratio=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import logging
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind, PaymentEvent, Source
from dynamics_bridge.ops.model import PoisonFilter, PoisonRecord, RunRecord
from dynamics_bridge.ops.tables import TableOpsStore
from dynamics_bridge.queue.azure import AzureStorageQueue
from dynamics_bridge.queue.envelope import ENVELOPE_VERSION, encode_messages
from tests.support.azurite import azurite_binary, run_azurite

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("autogiro", "bgmax", "billogram", "swish")
FILE_SOURCES = ("autogiro", "bgmax")
TIMERS = ("triggers", "segments", "reminders", "refresh", "poison", "housekeeping", "sync")
OUTCOMES = ("applied", "duplicate", "stale", "unmatched", "failed")


def event(rng: random.Random, n: int, source: str, member: str, at: datetime) -> PaymentEvent:
    file_day = at.strftime("%Y%m%d")
    origin = f"in/{source}/{source.upper()}-{file_day}.txt:{n % 5000 + 1}"
    return PaymentEvent(
        event_id=f"{source}:{n:09d}",
        source=Source(source),
        kind=EventKind.PAYMENT_SUCCEEDED,
        member_ref=MemberRef(MemberRefKind.MEMBER_NUMBER, member),
        amount_minor=rng.choice((9900, 19900, 29900)),
        currency="SEK",
        occurred_at=at - timedelta(hours=2),
        provider_ref=f"REF-{n:09d}",
        reason_code=None,
        reason_text=None,
        origin=origin if source in FILE_SOURCES else f"cb-{n:09d}",
    )


def poison_records(count: int, now: datetime, seed: int = 14) -> list[PoisonRecord]:
    rng = random.Random(seed)
    records = []
    for n in range(count):
        at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        source = rng.choice(SOURCES)
        member = f"{rng.randrange(20_000) + 100_000}"
        roll = rng.random()
        ev = event(rng, n, source, member, at)
        events: list[dict[str, Any]] = [ev.to_json()]
        if roll < 0.6:
            reason = f"unmatched: no member with number {member}"
        elif roll < 0.9:
            reason = "failed: Dataverse said 400: invalid amount (gave up after 5 attempts)"
        else:
            reason, events = "undecodable message: not JSON", []
        body = {
            "v": ENVELOPE_VERSION,
            "events": events,
            "poison": {"reason": reason, "failed_at": at.isoformat()},
        }
        file = ev.origin.rsplit(":", 1)[0] if events and source in FILE_SOURCES else ""
        records.append(
            PoisonRecord(
                message_id=f"{rng.getrandbits(128):032x}",
                failed_at=at,
                reason=reason,
                source=source if events else "",
                event_ids=(ev.event_id,) if events else (),
                member_refs=(member,) if events else (),
                file=file,
                body=json.dumps(body, separators=(",", ":")),
            )
        )
    return records


def seed_day(store: TableOpsStore) -> Callable[[list[PoisonRecord]], int]:
    """Writes one day's records in puts of 500 (as absorbs and imports would)."""

    def write(records: list[PoisonRecord]) -> int:
        for start in range(0, len(records), 500):
            store.put_poison(records[start : start + 500])
        return len(records)

    return write


def run_history(days: int, today: date, seed: int = 90) -> list[RunRecord]:
    rng = random.Random(seed)
    runs = []
    for back in range(days):
        day = datetime.combine(today - timedelta(days=back), datetime.min.time(), tzinfo=UTC)
        for i in range(400):
            source = rng.choice(SOURCES)
            counts = {f"{source}/payment/{rng.choice(OUTCOMES)}": rng.randint(1, 32)}
            at = day + timedelta(seconds=rng.uniform(0, 86399))
            runs.append(RunRecord(f"q{back}-{i}", "queue", "sync", at, 120, counts))
        for i in range(20):
            source = rng.choice(FILE_SOURCES)
            n = rng.randint(100, 5000)
            detail = {"file": f"{source.upper()}-{i}.txt", "receipt": f"{n} payments, 1 SEK"}
            at = day + timedelta(seconds=rng.uniform(0, 86399))
            counts = {f"{source}/payment/queued": n}
            runs.append(RunRecord(f"f{back}-{i}", "file", source, at, 900, counts, (), detail))
        for i in range(50):
            name = TIMERS[i % len(TIMERS)]
            at = day + timedelta(minutes=i * 28)
            counts = {f"trigger/welcome/{rng.choice(('sent', 'skipped'))}": rng.randint(0, 9)}
            errors = ("APSIS 503",) if rng.random() < 0.02 else ()
            runs.append(RunRecord(f"t{back}-{i}", "timer", name, at, 3000, counts, errors))
    return runs


def timed(reps: int, call: Callable[[], object]) -> tuple[float, float]:
    spent = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    p95 = spent[min(len(spent) - 1, round(0.95 * (len(spent) - 1)))]
    return statistics.median(spent), p95


def replay_before(queue: AzureStorageQueue) -> int:
    """The replay before the book (``replay --all``): 32 at a time, each message alone."""
    replayed = 0
    while batch := queue.poison_receive(32, visibility_timeout=120):
        for message in batch:
            if message.envelope is None or not message.envelope.events:
                raise InputError("the old replay met a message without events")
            queue.send([PaymentEvent.from_json(e) for e in message.envelope.events])
            queue.poison_delete(message)
            replayed += 1
    return replayed


def console_pages(
    store: TableOpsStore, queue: AzureStorageQueue, reps: int
) -> dict[str, tuple[float, float]]:
    """The console's own pages through its Starlette app (when the console is there)."""
    try:
        from starlette.testclient import TestClient

        from dynamics_bridge.app.console import create_app
        from dynamics_bridge.app.wiring import Services
        from dynamics_bridge.settings import load_settings
    except ImportError as exc:
        print(f"console pages: not timed ({exc})")
        return {}
    services = Services(load_settings(), queue=queue, ops=store)
    token = "bench-token"
    app = create_app(services, login_token=token, local_user="bench")
    out = {}
    with TestClient(app, headers={"accept": "text/html"}) as client:
        client.get(f"/login?token={token}", follow_redirects=False)
        for name, path in (
            ("console page: overview", "/"),
            ("console page: history 90 days", "/history?days=90"),
            ("console page: poison, filtered", "/poison?reason=unmatched&source=bgmax&since=7d"),
            ("console page: poison, member search", "/poison?search=100042"),
        ):
            status = client.get(path).status_code
            if status != 200:
                print(f"{name}: answered {status}; not timed")
                continue
            out[name] = timed(reps, functools.partial(client.get, path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--poison", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--replay", type=int, default=10_000)
    parser.add_argument("--old-replay", type=int, default=2_000)
    args = parser.parse_args()
    logging.getLogger("dynamics_bridge").setLevel(logging.WARNING)
    binary = azurite_binary(ROOT)
    if binary is None:
        sys.exit("Azurite is not installed: make test installs it into node_modules")
    now = datetime.now(UTC)
    today = now.date()
    with run_azurite(binary, tables=True) as conn:
        store = TableOpsStore.from_connection_string(conn, prefix="bench")

        started = time.perf_counter()
        records = poison_records(args.poison, now)
        by_day: dict[date, list[PoisonRecord]] = {}
        for record in records:
            by_day.setdefault(record.failed_at.date(), []).append(record)
        done = 0
        with ThreadPoolExecutor(2) as pool:  # one day per writer: no counts row contention
            for day_records in pool.map(seed_day(store), by_day.values()):
                done += day_records
                print(f"  {done} poison records written", end="\r", flush=True)
        seeded = time.perf_counter() - started
        print(f"seeded {len(records)} poison records in {seeded:.0f} s")
        started = time.perf_counter()
        history = run_history(args.days, today)
        day_runs: dict[date, list[RunRecord]] = {}
        for run in history:
            day_runs.setdefault(run.started_at.date(), []).append(run)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(store.record_runs, day_runs.values()))
        spent = time.perf_counter() - started
        print(f"seeded {len(history)} runs over {args.days} days in {spent:.0f} s")

        week = [today - timedelta(days=d) for d in range(6, -1, -1)]
        quarter = [today - timedelta(days=d) for d in range(args.days - 1, -1, -1)]
        members = [m for r in records[:50] for m in r.member_refs]
        filtered = PoisonFilter(reason="unmatched", source="bgmax", since=now - timedelta(days=7))

        def overview() -> None:
            store.day_totals(week)
            store.poison_count(PoisonFilter())
            list(itertools.islice(store.runs(now - timedelta(days=7), kind="file"), 10))
            list(store.runs(now - timedelta(days=1), kind="timer"))

        def poison_page() -> None:
            store.poison_page(filtered, limit=50)
            store.poison_count(filtered)

        picks = itertools.cycle(members)

        def search() -> None:
            where = PoisonFilter(search=next(picks))
            store.poison_page(where, limit=50)
            store.poison_count(where)

        started = time.perf_counter()
        store.day_totals(quarter)
        spent = (time.perf_counter() - started) * 1000
        print(f"history, first ask (the closed days' roll-ups made): {spent:.0f} ms")
        results = {
            "overview": timed(args.reps, overview),
            "history (90 days)": timed(args.reps, lambda: store.day_totals(quarter)),
            "poison page (unmatched, bgmax, 7 days) + count": timed(args.reps, poison_page),
            "search by member number + count": timed(args.reps, search),
            "poison count (all)": timed(args.reps, lambda: store.poison_count(PoisonFilter())),
        }
        queue = AzureStorageQueue.from_connection_string(conn, "bench-replay", "bench-old-poison")
        results.update(console_pages(store, queue, args.reps))
        for name, (p50, p95) in results.items():
            print(f"{name:50s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
        print(f"poison count: {store.poison_count(PoisonFilter())}")

        # --- replay: the book by filter, against the old replay of the poison queue ---------
        from dynamics_bridge.app.poison import PoisonBook

        share = args.replay / max(1, sum(1 for r in records if r.reason.startswith("failed")))
        since = now - timedelta(days=30 * min(1.0, share))
        where = PoisonFilter(reason="failed", since=since)
        book = PoisonBook(queue, store)
        started = time.perf_counter()
        report = book.replay(where, who="bench", via="bench")
        spent = time.perf_counter() - started
        new_rate = report.messages / spent
        print(
            f"replay by filter: {report.messages} records, {report.events} events in "
            f"{report.queue_messages} queue messages, {spent:.1f} s: {new_rate:.0f} records/s"
        )

        old_poison = QueueClient.from_connection_string(conn, "bench-old-poison")
        with contextlib.suppress(ResourceExistsError):  # the replay above made it
            old_poison.create_queue()
        rng = random.Random(3)
        texts = [
            text
            for n in range(args.old_replay)
            for text in encode_messages([event(rng, n, "bgmax", f"{100000 + n}", now)])
        ]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(old_poison.send_message, texts))
        started = time.perf_counter()
        old = replay_before(queue)
        spent = time.perf_counter() - started
        old_rate = old / spent
        print(
            f"replay as before (--all): {old} messages in {spent:.1f} s: {old_rate:.0f} messages/s"
        )
        ratio = new_rate / old_rate
        print(f"replay speed-up: {ratio:.1f}x")
    tails = {name: p for name, (_, p) in results.items()}
    pages = " ".join(
        f"{key}_p95_ms={tails[name]:.0f}"
        for key, name in (
            ("page_overview", "console page: overview"),
            ("page_history", "console page: history 90 days"),
            ("page_poison", "console page: poison, filtered"),
        )
        if name in tails
    )
    print(
        f"RESULT overview_p95_ms={tails['overview']:.0f} "
        f"history_p95_ms={tails['history (90 days)']:.0f} "
        f"poison_page_p95_ms={tails['poison page (unmatched, bgmax, 7 days) + count']:.0f} "
        f"search_p95_ms={tails['search by member number + count']:.0f} {pages} "
        f"replay_per_s={new_rate:.0f} old_replay_per_s={old_rate:.0f} ratio={ratio:.1f}"
    )


if __name__ == "__main__":
    main()
