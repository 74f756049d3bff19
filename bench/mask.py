"""The personnummer mask: what it lets through by chance, and what it costs per log line.

1. Chance: random numbers of 10 and 12 digits, and OCR references (Luhn check digit of their
   own), through the "could be one" test of ``mask_text`` (date + century + Luhn): the share
   that would be masked if nothing labelled them.
2. Cost: ``mask_text`` over typical log lines (no digits; an event id and an amount; a BgMax
   reason with a reference; a line with a personnummer), and the whole scrubbing filter and
   JSON formatter per record.

    .venv/bin/python bench/mask.py [--samples 1000000]
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamics_bridge.logs import configure_logging
from dynamics_bridge.personnummer import _could_be_one, luhn_check_digit, mask_text

LINES = {
    "no digits": "webhook refused: swish: callback identifier wrong",
    "event id and amount": "event queued bgmax-3f2a9c0d41be4e7a9b1c2d3e4f5a6b7c amount 25000 SEK",
    "BgMax reason": "bgmax.txt:14: Referensen '8112189876' klarade inte OCR-kontrollen",
    "personnummer": "unmatched: no member with governmentid = '19811218-9876'",
}


def chance(samples: int, rng: random.Random) -> None:
    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    def ocr(n: int) -> str:
        body = digits(n - 1)
        return body + str(luhn_check_digit(body))

    for name, make in (
        ("random 10 digits", lambda: digits(10)),
        ("random 12 digits", lambda: digits(12)),
        ("OCR reference, 10 digits", lambda: ocr(10)),
        ("OCR reference, 12 digits", lambda: ocr(12)),
    ):
        hits = sum(_could_be_one(make()) for _ in range(samples))
        share = f"1 in {samples / hits:,.0f}" if hits else "none"
        print(f"{name:<26} would be masked unlabelled: {hits:>7,} of {samples:,} ({share})")


def cost(rounds: int) -> None:
    for name, line in LINES.items():
        started = time.perf_counter()
        for _ in range(rounds):
            mask_text(line)
        micro = (time.perf_counter() - started) / rounds * 1e6
        print(f"mask_text, {name:<20} {micro:6.2f} µs per line -> {mask_text(line)}")
    stream = io.StringIO()
    handler = configure_logging("INFO", secrets=["hunter2-sign-key"], stream=stream)
    log = logging.getLogger("bench.mask")
    try:
        started = time.perf_counter()
        for i in range(rounds):
            log.info("event queued %s", LINES["personnummer"], extra={"event_id": f"swish-{i}"})
        micro = (time.perf_counter() - started) / rounds * 1e6
    finally:
        logging.getLogger().removeHandler(handler)
    print(f"filter + JSON formatter, one record: {micro:.1f} µs")
    print(
        f"RESULT mask: {micro:.1f} µs per log record with a personnummer "
        f"({1e6 / micro:,.0f} records/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    chance(args.samples, random.Random(12))
    cost(args.rounds)


if __name__ == "__main__":
    main()
