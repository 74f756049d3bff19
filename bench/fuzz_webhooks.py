"""Fuzz webhook intake: the hostile catalogue, then N generated bodies per parser and provider.

Run: .venv/bin/python bench/fuzz_webhooks.py [--examples N]

1. Every request of the hostile catalogue (tests/support/hostile_webhooks.py) through
   ``handle_webhook``: how many were tried and how many held (the documented answer, the field
   named, nothing queued).
2. N hypothesis examples each for the Swish parser, the Billogram parser, and ``handle_webhook``
   per provider (Billogram requests signed, Swish ones with the identifier, so the parsers are
   reached). The same generators as tests/sources/test_webhook_properties.py, more examples.
   A parser outcome is ``events``, ``ignored`` (accepted, nothing to book), ``refused``
   (InputError naming a field) or ``crash`` (anything else). A request outcome is its status;
   ``queue_mismatch`` counts requests whose queue did not hold exactly the answered events.

Last line: RESULT hostile_tried=N hostile_held=N swish_parser=N billogram_parser=N
swish_requests=N billogram_requests=N crashes=N queue_mismatches=N unexpected_statuses=N
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.errors import InputError
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import BillogramSettings, SwishSettings
from dynamics_bridge.sources import billogram, swish
from tests.support.hostile_webhooks import (
    ALLOWED_STATUSES,
    FuzzRequest,
    fuzz_settings,
    hostile_requests,
    webhook_bodies,
    webhook_requests,
)


def fuzz(strategy: st.SearchStrategy[Any], examples: int, check: Callable[[Any], None]) -> None:
    """Run ``check`` over ``examples`` generated values; no shrinking, no example database."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    run()


def catalogue() -> tuple[int, int]:
    tried = held = 0
    for request in hostile_requests():
        queue = InMemoryQueue()
        result = handle_webhook(
            request.provider,
            request.body,
            request.headers,
            request.client_ip,
            settings=fuzz_settings(**request.settings),
            queue=queue,
        )
        tried += 1
        why = request.held(result.status, result.body, len(queue))
        if why is None:
            held += 1
        else:
            print(f"  NOT HELD {request.name}: {why}")
    return tried, held


def parser_outcomes(name: str, parse: Callable[[bytes], Any], examples: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []

    def check(raw: bytes) -> None:
        try:
            parsed = parse(raw)
        except InputError:
            outcomes["refused"] += 1
            return
        except Exception as exc:  # noqa: BLE001 - counted and shown: the point of the run
            outcomes["crash"] += 1
            if len(crashes) < 3:
                crashes.append(f"{type(exc).__name__}: {exc!s:.120} <- {raw[:120]!r}")
            return
        outcomes["events" if parsed.events else "ignored"] += 1

    started = time.perf_counter()
    fuzz(webhook_bodies(name), examples, check)
    elapsed = time.perf_counter() - started
    print(
        f"{name + ' parser':<20} {sum(outcomes.values()):>7} executions in {elapsed:6.1f} s  "
        + "  ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    )
    for crash in crashes:
        print(f"  CRASH {crash}")
    return outcomes


def request_outcomes(provider: str, examples: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    configured = fuzz_settings()

    def check(request: FuzzRequest) -> None:
        queue = InMemoryQueue()
        result = handle_webhook(
            request.provider, request.body, request.headers, settings=configured, queue=queue
        )
        outcomes[str(result.status)] += 1
        queued = [e["event_id"] for e in queue.peek_events()]
        expected = result.body.get("event_ids", []) if result.status == 202 else []
        if queued != expected:
            outcomes["queue_mismatch"] += 1

    started = time.perf_counter()
    fuzz(webhook_requests(provider), examples, check)
    elapsed = time.perf_counter() - started
    runs = sum(v for k, v in outcomes.items() if k.isdigit())
    print(
        f"{provider + ' requests':<20} {runs:>7} executions in {elapsed:6.1f} s  "
        + "  ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    )
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=20_000, help="per parser and provider")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # refusals log a warning each; the counts say it all

    tried, held = catalogue()
    print(f"hostile catalogue    {tried:>7} requests tried, {held} held")
    swish_parsed = parser_outcomes(
        "swish", lambda raw: swish.parse_callback(raw, SwishSettings()), args.examples
    )
    billogram_parsed = parser_outcomes(
        "billogram", lambda raw: billogram.parse_callback(raw, BillogramSettings()), args.examples
    )
    swish_answers = request_outcomes("swish", args.examples)
    billogram_answers = request_outcomes("billogram", args.examples)

    crashes = swish_parsed["crash"] + billogram_parsed["crash"]
    mismatches = swish_answers["queue_mismatch"] + billogram_answers["queue_mismatch"]
    unexpected = sum(
        v
        for answers in (swish_answers, billogram_answers)
        for k, v in answers.items()
        if k.isdigit() and int(k) not in ALLOWED_STATUSES
    )
    print(
        f"RESULT hostile_tried={tried} hostile_held={held} "
        f"swish_parser={sum(swish_parsed.values())} "
        f"billogram_parser={sum(billogram_parsed.values())} "
        f"swish_requests={sum(v for k, v in swish_answers.items() if k.isdigit())} "
        f"billogram_requests={sum(v for k, v in billogram_answers.items() if k.isdigit())} "
        f"crashes={crashes} queue_mismatches={mismatches} unexpected_statuses={unexpected}"
    )


if __name__ == "__main__":
    main()
