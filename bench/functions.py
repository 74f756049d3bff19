"""The queue function under the host's batching, on Azurite and the Dataverse sandbox.

Run: .venv/bin/python bench/functions.py [--events N] [--per-message K] [--latency S]
N payment events (K to a message; 1 is a webhook's shape) are queued on Azurite, then the
``payment_events`` function of deploy/azure-functions/function_app.py is driven the way the
Functions host drives it (tests/support/functions_host.py: batches of host.json's
``batchSize`` run concurrently, one instance) until the queue is empty. The sandbox answers with
``--latency`` seconds per request (default 0: this measures our own cost, not Dataverse's).
Last line: ``RESULT events=N events_per_s=X p99_ms=Y`` (p99 of one function run).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.register import payment_events, prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.app.wiring import Services
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import load_settings
from tests.support.azurite import azurite_binary, run_azurite
from tests.support.functions_host import QueueTriggerHost

ROOT = Path(__file__).resolve().parent.parent


def load_function_app():
    spec = importlib.util.spec_from_file_location(
        "function_app", ROOT / "deploy" / "azure-functions" / "function_app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--per-message", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    binary = azurite_binary(ROOT)
    if binary is None:
        sys.exit("Azurite is not installed: make test installs it into node_modules")
    mapping = load_mapping()
    fa = load_function_app()
    (function,) = [
        f.get_user_function()
        for f in fa.app.get_functions()
        if f.get_function_name() == "payment_events"
    ]
    durations: list[float] = []
    lock = threading.Lock()

    def timed(message) -> None:
        started = time.perf_counter()
        try:
            function(message)
        finally:
            with lock:
                durations.append((time.perf_counter() - started) * 1000)

    with (
        run_azurite(binary) as conn,
        run_sandbox(limits=Limits(latency_seconds=args.latency)) as box,
    ):
        settings = load_settings(
            queue={
                "backend": "azure",
                "connection_string": conn,
                "name": f"bench-{uuid.uuid4().hex[:8]}",
            },
            dataverse=sandbox_settings(box),
        )
        fa.services = Services(settings, queue_options=fa.QUEUE_OPTIONS)
        numbers = prepare_register(fa.services.dataverse, mapping, args.events)
        queue = open_queue(settings.queue)
        events = payment_events(numbers, args.events)
        for start in range(0, len(events), args.per_message):
            queue.send(events[start : start + args.per_message])
        host = QueueTriggerHost(conn, settings.queue.name, timed, fa.QUEUE_OPTIONS)
        started = time.perf_counter()
        run = host.drain()
        elapsed = time.perf_counter() - started
        rows = sum(
            1
            for _ in fa.services.dataverse.rows.query(
                mapping.payment.entity_set, select=[mapping.payment.key_column]
            )
        )
    durations.sort()
    p50 = durations[len(durations) // 2]
    p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))]
    print(
        f"{args.events} events in {run.invocations} messages ({args.per_message}/message), "
        f"batchSize {fa.QUEUE_OPTIONS.batch_size}, latency {args.latency}s: {elapsed:.1f} s, "
        f"{args.events / elapsed:.0f} events/s, run p50 {p50:.1f} ms p99 {p99:.1f} ms; "
        f"{rows} payment rows, {run.failed} failed runs, {run.poisoned} poisoned"
    )
    print(f"RESULT events={args.events} events_per_s={args.events / elapsed:.0f} p99_ms={p99:.1f}")


if __name__ == "__main__":
    main()
