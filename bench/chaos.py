"""The same events applied cleanly and under chaos: does anything get lost or written twice?

Run: .venv/bin/python bench/chaos.py [--events 100000] [--workers 4] [--per-member 4] [--no-apsis]

The events: ``--per-member`` events for each member (payments, failures, mandate changes; 1 is
a monthly run). Clean: one worker, messages in order, no faults. Chaos: a share ``--again`` of
the events delivered twice, every message in random order (so a member's events arrive out of
order), ``--workers`` workers, and the sandbox answering 429s (a small request budget), 503s and
dropped connections (half of them after the work was done). Both registers are read back and
compared column by column.

The APSIS side (unless ``--no-apsis``): the activation hooks on in both runs, each against its
own APSIS stand-in; under chaos the stand-in answers 10 % of requests 429 and 2 % 503 before any
work, and stores 3 % of event POSTs before answering 503. After the queue is empty the outbox is
swept as its timer would (each sweep a lease and the welcome hold later; the read-back on), and
the triggers APSIS holds are compared by (type, source event) with the clean run's. Last line
``RESULT lost=N duplicate_rows=N state_equal=true|false lost_triggers=N duplicate_triggers=N
wrong_event_triggers=N``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from dynamics_bridge_sandbox.apsis import ApsisChaos
from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.register import member_numbers, payment_events

from dynamics_bridge.mapping import load_mapping
from tests.support.chaos import (
    ApsisSide,
    Register,
    compare,
    compare_triggers,
    deliveries,
    out_of_order_members,
    run_register,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--reset-rate", type=float, default=0.05)
    parser.add_argument("--per-member", type=int, default=4)
    parser.add_argument("--again", type=float, default=0.2, help="Share delivered twice.")
    parser.add_argument("--no-apsis", action="store_true", help="Dataverse side only.")
    args = parser.parse_args()
    logging.getLogger("dynamics_bridge").setLevel(logging.CRITICAL)  # retries are the point
    mapping = load_mapping()
    members = max(1, args.events // max(1, args.per_member))
    mandates = 0.15 if args.per_member > 1 else 0.0
    events = payment_events(member_numbers(members), args.events, mandates=mandates)

    # The freshness window covers the whole event span: what is measured here is exactly-once
    # under reordering and lost answers (the window itself has its own tests).
    span = (events[-1].occurred_at - events[0].occurred_at).days + 2
    apsis = None if args.no_apsis else ApsisSide(late_trigger_days=max(7, span))

    started = time.perf_counter()
    in_order = [events[i : i + 100] for i in range(0, len(events), 100)]
    clean, clean_poisoned = run_register(mapping, members, in_order, workers=1, apsis=apsis)
    clean_s = time.perf_counter() - started

    limits = Limits(
        requests_per_window=20,
        window_seconds=300,
        time_scale=300,  # 20 requests a second: 429s all along
        fault_rate=args.fault_rate,
        reset_rate=args.reset_rate,
    )
    messages = deliveries(events, per_message=100, again=args.again, seed=1)
    if apsis is not None:
        apsis.chaos = ApsisChaos(throttled=0.10, unavailable=0.02, stored_then_unavailable=0.03)
    started = time.perf_counter()
    chaotic, poisoned = run_register(
        mapping,
        members,
        messages,
        limits=limits,
        workers=args.workers,
        max_attempts=20,
        apsis=apsis,
    )
    chaos_s = time.perf_counter() - started
    result = compare(clean, chaotic, args.events)

    delivered = sum(len(m) for m in messages)
    print(
        f"clean: {args.events} events of {members} members in {clean_s:.0f} s, "
        f"{clean_poisoned} poisoned"
    )
    print(
        f"chaos: {delivered} deliveries in {len(messages)} shuffled messages, {args.workers} "
        f"workers, {chaos_s:.0f} s; sandbox answered {limits.throttled.total()} x 429, "
        f"{limits.chaos_seen['fault']} x 503, dropped {limits.chaos_seen['reset_before']} "
        f"connections before and {limits.chaos_seen['reset_after']} after the work; "
        f"{poisoned} poisoned; {out_of_order_members(messages)} members had events out of order"
    )
    for line in result.differences:
        print(f"  differs: {line}")
    figures = (
        f"RESULT lost={result.lost} duplicate_rows={result.duplicate_rows} "
        f"state_equal={str(result.state_equal and poisoned == 0).lower()}"
    )
    if apsis is not None:
        triggers = compare_triggers(clean.triggers, chaotic.triggers)
        _apsis_lines(clean, chaotic)
        for line in triggers.examples:
            print(f"  trigger: {line}")
        figures += (
            f" lost_triggers={triggers.lost} duplicate_triggers={triggers.duplicate} "
            f"wrong_event_triggers={triggers.wrong_event}"
        )
    print(figures)


def _apsis_lines(clean: Register, chaotic: Register) -> None:
    for name, run in (("clean", clean), ("chaos", chaotic)):
        sweeps = run.sweeps
        print(
            f"apsis {name}: {sum(run.triggers.values())} triggers held by APSIS "
            f"({len(run.triggers)} distinct); faults {dict(sorted(run.apsis_chaos.items()))}; "
            f"{run.sweep_count} sweeps after the run: sent {sum(sweeps.sent.values())}, "
            f"withdrawn {sweeps.withdrawn} first-payment triggers, unconfirmed read back: "
            f"{sweeps.confirmed} held, {sweeps.resent} sent again; outbox left {run.outbox}"
        )


if __name__ == "__main__":
    main()
