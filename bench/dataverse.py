"""Dataverse client throughput against the sandbox's limit model: N workers, 429s and pacing.

Run: .venv/bin/python bench/dataverse.py [--workers 16] [--rows 600] [--users 1]
     [--requests-per-window 40] [--window 0.5] [--per-thread-pause]

Each worker writes create-only rows (one PATCH by alternate key each) through one shared client.
The sandbox allows ``--requests-per-window`` requests per app user in a sliding window that lasts
``--window`` real seconds (Dataverse's 300 s window on the sandbox's time scale) and answers 429
with Retry-After beyond it. ``--users`` spreads the work over that many app users, each with its
own budget. ``--per-thread-pause`` gives every worker its own gate (a 429 then holds back only
the thread that got it), to compare with the shared pause. Prints one row and a last line
``RESULT requests_per_s=N throttled=N`` (throttled = 429 answers the client saw).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid

from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import alternate_key_body
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
from dynamics_bridge.settings import AppUser, DataverseSettings

WINDOW = 300.0  # Dataverse's service-protection window, in (scaled) seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--requests-per-window", type=int, default=40)
    parser.add_argument("--window", type=float, default=0.5, help="real seconds per window")
    parser.add_argument("--concurrency", type=int, default=8, help="per app user, at most 52")
    parser.add_argument("--per-thread-pause", action="store_true")
    args = parser.parse_args()
    logging.getLogger("dynamics_bridge").setLevel(logging.ERROR)  # one 429 line each is noise

    limits = Limits(
        requests_per_window=10**9,  # no limit while the key is declared
        window_seconds=WINDOW,
        time_scale=WINDOW / args.window,
    )
    with run_sandbox(limits=limits) as box:
        users = [AppUser(client_id=box.client_id, client_secret=box.client_secret)]  # type: ignore[arg-type]
        for _ in range(args.users - 1):
            client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
            box.dataverse.add_app_user(client_id, secret)
            users.append(AppUser(client_id=client_id, client_secret=secret))  # type: ignore[arg-type]
        settings = DataverseSettings(
            url=box.url,
            authority=box.authority,
            client_id=box.client_id,
            client_secret=box.client_secret,  # type: ignore[arg-type]
            ca_bundle=box.ca_bundle,
        )
        tokens = [msal_token_provider(settings, user) for user in users]
        session = session_for(settings)

        def new_client() -> DataverseClient:
            lanes = [
                AppUserLane(u.client_id, t, AppUserGate(max_concurrency=args.concurrency))
                for u, t in zip(users, tokens, strict=True)
            ]
            return DataverseClient(settings, session, AppUserPool(lanes))

        shared = new_client()
        shared.schema.create_alternate_key(
            "contact", alternate_key_body("mbr_memberno_key", ["mbr_memberno"])
        )
        for token in tokens:
            token()  # msal's first token is not part of the figure
        limits.requests_per_window = args.requests_per_window
        clients = [new_client() if args.per_thread_pause else shared for _ in range(args.workers)]
        per_worker = args.rows // args.workers
        errors: list[Exception] = []
        written_by = [0] * args.workers  # rows each worker actually wrote

        def worker(index: int) -> None:
            client = clients[index]
            try:
                for n in range(per_worker):
                    client.rows.create_only("contacts", {"mbr_memberno": f"{index}-{n}"}, {})
                    written_by[index] += 1
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        distinct = {id(c): c for c in clients}.values()
        requests = sum(c.requests_sent for c in distinct)
        throttled = sum(c.throttled for c in distinct)
        written = sum(written_by)  # a failed worker stops: its remaining rows are not written
        limit_per_s = args.requests_per_window * args.users / args.window
        mode = "per-thread pause" if args.per_thread_pause else "shared pause"
        print(
            f"{args.workers} workers, {args.users} app user(s), {mode}: {written} rows, "
            f"{requests} requests in {elapsed:.2f} s = {requests / elapsed:.0f} req/s, "
            f"{written / elapsed:.0f} rows/s (limit {limit_per_s:.0f} req/s), "
            f"{throttled} x 429, {len(errors)} error(s)"
        )
        if errors:
            print(f"first error: {errors[0]!r}")
        print(f"RESULT requests_per_s={requests / elapsed:.0f} throttled={throttled}")


if __name__ == "__main__":
    main()
