"""Parse speed and memory for Bankgirot files: 1,000,000-record Autogiro and BgMax files.

Run: .venv/bin/python bench/parse.py [--records N]
Each file is generated, then parsed into canonical events in a fresh process so its peak RSS is
the parser's own. Memory is measured at N/10 and N records: flat means the two are close.
Last line: RESULT autogiro_records_per_s=N bgmax_records_per_s=N peak_rss_mb=N
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def generate(kind: str, path: Path, records: int) -> None:
    from dynamics_bridge.sources.bankgirot_writer import (
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
            payments = (
                BgmaxPayment(make_reference(str(100000 + i)), 25000, f"{i:012d}")
                for i in range(records)
            )
            fh.writelines(bgmax_lines(payments, per_deposit=1000))


def parse(kind: str, path: Path) -> dict:
    from dynamics_bridge.sources import autogiro, bgmax

    parser = autogiro.parse if kind == "autogiro" else bgmax.parse
    lines = 0
    with path.open("rb") as fh:
        for _ in fh:
            lines += 1
    started = time.perf_counter()
    events = 0
    with path.open("rb") as fh:
        for _ in parser(fh, str(path)):
            events += 1
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "kind": kind,
        "records": lines,
        "events": events,
        "seconds": elapsed,
        "records_per_s": lines / elapsed,
        "peak_rss_mb": rss_mb,
    }


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
            print(json.dumps(parse(kind, Path(path))))
        return

    results = {}
    peak = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("autogiro", "bgmax"):
            rss = {}
            for n in (args.records // 10, args.records):
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
                path.unlink()
            results[kind] = result["records_per_s"]
            peak = max(peak, *rss.values())
            small, large = rss[args.records // 10], rss[args.records]
            print(
                f"{kind:<9} memory: {small:.1f} MB at {args.records // 10} records, "
                f"{large:.1f} MB at {args.records}: growth {large - small:+.1f} MB"
            )
    print(
        f"RESULT autogiro_records_per_s={results['autogiro']:.0f} "
        f"bgmax_records_per_s={results['bgmax']:.0f} peak_rss_mb={peak:.0f}"
    )


if __name__ == "__main__":
    main()
