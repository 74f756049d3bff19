"""Parse speed and memory for Bankgirot files: 1,000,000-record Autogiro and BgMax files.

Run: .venv/bin/python bench/parse.py [--records N]

Each file is generated with the package's writer, then parsed into canonical events in a fresh
process, so its peak RSS is the parser's own. Memory is measured at N/10 and N records: flat
means the two are close. The Autogiro file is a payment specification (one record per payment,
90 % approved). The BgMax file has one record per payment, all in ONE deposit as a real day's
file has: the worst case, since the parser cannot hold the section and reads it twice.

Besides the parse, each format prints what ``ingest`` costs (check the whole file, then read it
again to hand on the events) and a floor: how long reading the records alone, and making one
PaymentEvent with its id per record alone, take on this machine. Those two bound what any
parser producing canonical events can reach here.

Last line: RESULT autogiro_records_per_s=N bgmax_records_per_s=N peak_rss_mb=N
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def generate(kind: str, path: Path, records: int) -> None:
    from dynamics_bridge_sandbox.bankgirot_writer import (
        AutogiroPayment,
        BgmaxPayment,
        bgmax_lines,
        payment_spec_lines,
    )

    from dynamics_bridge.sources.ocr import make_reference

    with path.open("wb") as fh:
        if kind == "autogiro":
            start = date(2026, 11, 2)
            statuses = "0000000019"
            payments = (
                AutogiroPayment(
                    str(100000 + i),
                    25000,
                    start + timedelta(days=i % 20),
                    status=statuses[i % 10],
                    reference="MEDLEMSAVGIFT",
                )
                for i in range(records)
            )
            fh.writelines(payment_spec_lines(payments))
        else:
            deposits = (
                BgmaxPayment(make_reference(str(100000 + i)), 25000, f"{i:012d}")
                for i in range(records)
            )
            fh.writelines(bgmax_lines(deposits, per_deposit=None))


def count_records(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse(kind: str, path: Path) -> dict:
    from dynamics_bridge.sources import autogiro, bgmax

    parser = autogiro.parse if kind == "autogiro" else bgmax.parse
    records = count_records(path)
    started = time.perf_counter()
    events = 0
    with path.open("rb") as fh:
        for _ in parser(fh, str(path)):
            events += 1
    elapsed = time.perf_counter() - started
    return {
        "records": records,
        "events": events,
        "seconds": elapsed,
        "records_per_s": records / elapsed,
        "peak_rss_mb": peak_rss_mb(),
    }


def ingest(kind: str, path: Path) -> dict:
    from dynamics_bridge_sandbox.bankgirot_writer import EXAMPLE_PAYEE_BANKGIRO

    from dynamics_bridge.app.ingest import ingest_file
    from dynamics_bridge.settings import BankgirotSettings

    union = BankgirotSettings(payee_bankgiros=[EXAMPLE_PAYEE_BANKGIRO])  # the files' payee
    records = count_records(path)
    handed_on = 0

    def take(_event: object) -> None:
        nonlocal handed_on
        handed_on += 1

    started = time.perf_counter()
    report = ingest_file(path, format=kind, settings=union, on_event=take)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert handed_on == report.events
    return {"records_per_s": records / elapsed, "peak_rss_mb": peak_rss_mb()}


def floor(kind: str, path: Path) -> dict:
    """Per record: reading alone, and making an event with its id alone (no field parsing)."""
    from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind, PaymentEvent, Source
    from dynamics_bridge.sources.bankgirot import RecordReader, day

    records = count_records(path)
    started = time.perf_counter()
    with path.open("rb") as fh:
        texts = sum(1 for _ in RecordReader(fh, str(path)))
    reading = time.perf_counter() - started

    source, kind_, ref_kind = Source.AUTOGIRO, EventKind.PAYMENT_SUCCEEDED, MemberRefKind.OCR
    when = day("20261128")
    assert when is not None  # a fixed, valid banking day
    base = hashlib.sha256(b"0009912346|")
    text = "8" * 80
    started = time.perf_counter()
    for line in range(texts):
        digest = base.copy()
        digest.update(f"{text}\x1f1".encode())
        PaymentEvent(
            "autogiro-" + digest.hexdigest()[:32],
            source,
            kind_,
            MemberRef(ref_kind, "100001"),
            25000,
            "SEK",
            when,
            "MEDLEMSAVGIFT",
            None,
            None,
            "bench:" + str(line),
        )
    making = time.perf_counter() - started
    return {"read_us": reading / records * 1e6, "event_us": making / records * 1e6}


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("ACTION", "KIND", "PATH"))
    parser.add_argument("--child-records", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        action, kind, path = args.child
        if action == "generate":
            generate(kind, Path(path), args.child_records)
            print("{}")
        else:
            work = {"parse": parse, "ingest": ingest, "floor": floor}[action]
            print(json.dumps(work(kind, Path(path))))
        return

    results = {}
    peak = 0.0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("autogiro", "bgmax"):
            rss = {}
            sizes = (args.records // 10, args.records)
            for n in sizes:
                path = Path(tmp) / f"{kind}-{n}.txt"
                run_child("--child", "generate", kind, str(path), "--child-records", str(n))
                result = run_child("--child", "parse", kind, str(path))
                rss[n] = result["peak_rss_mb"]
                print(
                    f"{kind:<9} {result['records']:>9} records  {result['events']:>9} events  "
                    f"{result['seconds']:6.2f} s  {result['records_per_s']:>9.0f} records/s  "
                    f"peak RSS {result['peak_rss_mb']:.1f} MB  "
                    f"({path.stat().st_size / 1e6:.0f} MB file)"
                )
                if n == sizes[-1]:
                    both = run_child("--child", "ingest", kind, str(path))
                    least = run_child("--child", "floor", kind, str(path))
                    print(
                        f"{kind:<9} ingest (check, then read again to hand on): "
                        f"{both['records_per_s']:.0f} records/s, peak RSS "
                        f"{both['peak_rss_mb']:.1f} MB"
                    )
                    print(
                        f"{kind:<9} floor on this machine: reading records "
                        f"{least['read_us']:.2f} µs + one event with its id "
                        f"{least['event_us']:.2f} µs per record"
                    )
                path.unlink()
            results[kind] = result["records_per_s"]
            peak = max(peak, *rss.values())
            small, large = rss[sizes[0]], rss[sizes[-1]]
            print(
                f"{kind:<9} memory: {small:.1f} MB at {sizes[0]} records, "
                f"{large:.1f} MB at {sizes[-1]}: growth {large - small:+.1f} MB"
            )
    print(
        f"RESULT autogiro_records_per_s={results['autogiro']:.0f} "
        f"bgmax_records_per_s={results['bgmax']:.0f} peak_rss_mb={peak:.0f}"
    )


if __name__ == "__main__":
    main()
