"""SPAR lookups per second against the local responder: what the client itself costs per lookup.

Run: .venv/bin/python bench/spar.py [--lookups N] [--workers W]

One client (zeep, the XSD check before sending, the mapping to an AddressRecord) against the
in-process SPAR responder on 127.0.0.1, sequentially and with W threads each holding its own
client. The responder's own work (parsing, schema check, answer) is on the same machine, so the
figure is a floor for the client plus a local server, not a forecast for SPAR: real lookups add
the network and SPAR's own time, and SPAR's terms set how hard a customer may call it.

Last line: RESULT lookups_per_s=N threaded_lookups_per_s=N ms_per_lookup=N
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from dynamics_bridge_sandbox.spar import demo_people, run_spar_responder

from dynamics_bridge.registry import SparClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    numbers = [p.pnr for p in demo_people()]
    with run_spar_responder() as spar:
        client = SparClient.from_settings(spar.settings())
        client.lookup(numbers[0])  # warm: connection and schema
        start = time.perf_counter()
        for n in range(args.lookups):
            client.lookup(numbers[n % len(numbers)])
        sequential = time.perf_counter() - start

        clients = [SparClient.from_settings(spar.settings()) for _ in range(args.workers)]
        share = args.lookups // args.workers

        def work(index: int) -> None:
            for n in range(share):
                clients[index].lookup(numbers[n % len(numbers)])

        start = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(work, range(args.workers)))
        threaded = time.perf_counter() - start
    rate = args.lookups / sequential
    threaded_rate = share * args.workers / threaded
    print(f"{args.lookups} sequential lookups in {sequential:.2f} s ({rate:.0f}/s)")
    print(f"{share * args.workers} lookups on {args.workers} threads in {threaded:.2f} s")
    print(
        f"RESULT lookups_per_s={rate:.0f} threaded_lookups_per_s={threaded_rate:.0f} "
        f"ms_per_lookup={1000 / rate:.2f}"
    )


if __name__ == "__main__":
    main()
