"""The same events applied cleanly and under chaos: does anything get lost or written twice?

Run: .venv/bin/python bench/chaos.py [--events 100000] [--workers 4] [--per-member 4]

The events: ``--per-member`` events for each member (payments, failures, mandate changes; 1 is
a monthly run). Clean: one worker, messages in order, no faults. Chaos: a fifth of the events
delivered twice, every message in random order (so a member's events arrive out of order),
``--workers`` workers, and the sandbox answering 429s (a small request budget), 503s and
dropped connections (half of them after the work was done). Both
registers are read back and compared column by column. Last line
``RESULT lost=N duplicate_rows=N state_equal=true|false``.
"""

from __future__ import annotations

import argparse
import logging
import time

from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.sandbox.dataverse import Limits
from dynamics_bridge.testing.chaos import compare, deliveries, out_of_order_members, run_register
from dynamics_bridge.testing.dataverse import member_numbers, payment_events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--reset-rate", type=float, default=0.05)
    parser.add_argument("--per-member", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("dynamics_bridge").setLevel(logging.CRITICAL)  # retries are the point
    mapping = load_mapping()
    members = max(1, args.events // max(1, args.per_member))
    mandates = 0.15 if args.per_member > 1 else 0.0
    events = payment_events(member_numbers(members), args.events, mandates=mandates)

    started = time.perf_counter()
    in_order = [events[i : i + 100] for i in range(0, len(events), 100)]
    clean, clean_poisoned = run_register(mapping, members, in_order, workers=1)
    clean_s = time.perf_counter() - started

    limits = Limits(
        requests_per_window=20,
        window_seconds=300,
        time_scale=300,  # 20 requests a second: 429s all along
        fault_rate=args.fault_rate,
        reset_rate=args.reset_rate,
    )
    messages = deliveries(events, per_message=100, again=0.2, seed=1)
    started = time.perf_counter()
    chaotic, poisoned = run_register(
        mapping, members, messages, limits=limits, workers=args.workers, max_attempts=20
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
    print(
        f"RESULT lost={result.lost} duplicate_rows={result.duplicate_rows} "
        f"state_equal={str(result.state_equal and poisoned == 0).lower()}"
    )


if __name__ == "__main__":
    main()
