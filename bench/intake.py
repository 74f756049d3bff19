"""Webhook intake throughput and latency: verify + parse + queue, for the memory and Azurite queues.

Run: .venv/bin/python bench/intake.py [--requests N]
Prints one row per queue and a last line ``RESULT memory_per_s=N memory_p50_ms=X
memory_p99_ms=Y azurite_per_s=N azurite_p50_ms=X azurite_p99_ms=Y``. Each request is verified
(HMAC for Billogram), parsed and queued; Azurite adds one HTTP round trip per request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from dynamics_bridge_sandbox.demo.callbacks import Callback, billogram_callbacks, swish_callbacks

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.queue import InMemoryQueue, open_queue
from dynamics_bridge.settings import Settings, load_settings
from tests.support.azurite import azurite_binary, run_azurite

ROOT = Path(__file__).resolve().parent.parent
SIGN_KEY = "bench-sign-key"
SWISH_IDENTIFIER = "bench-swish-identifier"


def callbacks(n: int) -> list[Callback]:
    members = [str(200000 + i) for i in range(n)]
    half = n // 2
    swish = [
        c
        for c in swish_callbacks(members[:half], identifier=SWISH_IDENTIFIER)
        if "refund" not in c.label
    ]
    return swish + list(billogram_callbacks(members[half:], SIGN_KEY))[: n - len(swish)]


def measure(
    label: str, settings: Settings, queue, items: list[Callback]
) -> tuple[float, float, float]:
    latencies = []
    started = time.perf_counter()
    for c in items:
        t0 = time.perf_counter()
        result = handle_webhook(
            c.provider, c.body, c.headers, c.client_ip, settings=settings, queue=queue
        )
        latencies.append((time.perf_counter() - t0) * 1000)
        assert result.status == 202, result
    elapsed = time.perf_counter() - started
    latencies.sort()
    per_s = len(items) / elapsed
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{label:<10} {len(items):>7} requests  {per_s:>9.0f} req/s  p50 {p50:6.2f} ms  "
        f"p99 {p99:6.2f} ms"
    )
    return per_s, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--azurite-requests", type=int, default=1000)
    args = parser.parse_args()

    settings = load_settings(
        billogram={"sign_key": SIGN_KEY, "tolerance_seconds": 3600},
        swish={"callback_identifier": SWISH_IDENTIFIER},
    )
    memory = measure("memory", settings, InMemoryQueue(), callbacks(args.requests))

    binary = azurite_binary(ROOT)
    azurite = (0.0, 0.0, 0.0)
    if binary is None:
        print("azurite    not installed (make test installs it); skipped")
    else:
        with run_azurite(binary) as conn:
            az = load_settings(
                billogram={"sign_key": SIGN_KEY, "tolerance_seconds": 3600},
                swish={"callback_identifier": SWISH_IDENTIFIER},
                queue={
                    "backend": "azure",
                    "connection_string": conn,
                    "name": f"bench-{uuid.uuid4().hex[:8]}",
                },
            )
            azurite = measure("azurite", az, open_queue(az.queue), callbacks(args.azurite_requests))
    print(
        "RESULT "
        f"memory_per_s={memory[0]:.0f} memory_p50_ms={memory[1]:.2f} memory_p99_ms={memory[2]:.2f} "
        f"azurite_per_s={azurite[0]:.0f} azurite_p50_ms={azurite[1]:.2f} "
        f"azurite_p99_ms={azurite[2]:.2f}"
    )


if __name__ == "__main__":
    main()
