"""Segments over 100,000 members, and APSIS requests for a 10 % change.

1. Evaluation: 100,000 fictitious member rows (as Dataverse returns them) through the member
   view, the engagement score and every segment of mappings/segments.yaml: members per second.
2. Requests: every member pushed once (their state is what APSIS then holds), then 10 % of them
   change (a payment, a failed payment, a new method, benefit use); only the differences are
   planned and applied through ApsisPlatform.apply_changes, in-process against the APSIS
   stand-in's request handling (no sockets, its limits raised so only requests are counted).
   A profile already pushed is not created again: its diff is one attribute PATCH and/or one
   tag PATCH (a new or returning profile also costs the create POST). Compared with one request
   per changed profile (the least a per-profile API needs).
3. A small change (1 %, under the bulk threshold, as a typical timer run): per-profile
   requests, and how many create POSTs the ``create`` flag saved.

    .venv/bin/python bench/activation.py [--members 100000] [--change 0.1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamics_bridge_sandbox.apsis import ApsisLimits, ApsisStandIn
from dynamics_bridge_sandbox.demo.union import define_union_tables, demo_mapping, seed_union
from dynamics_bridge_sandbox.register import prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.activation.audience import exclusion, plan_profile
from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.members import MemberViews
from dynamics_bridge.activation.related import assemble, reads
from dynamics_bridge.activation.score import PaymentCounts
from dynamics_bridge.activation.segments import SegmentEvaluator
from dynamics_bridge.app.wiring import apsis_platform
from dynamics_bridge.apsis.models import ProfileChange
from dynamics_bridge.dataverse.activation_store import DataverseActivationStore
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.personnummer import luhn_check_digit
from dynamics_bridge.settings import ApsisSettings

TODAY = date(2026, 11, 28)
METHODS = [100000000, 100000001, 100000002, 100000003, 100000004]


EMPLOYERS = 2_000
SNI = ("86.101", "85.201", "47.111", "62.010", "41.200", "49.410", "86.211", "87.301", "84.111")


def member_row(n: int, rng: random.Random) -> dict[str, Any]:
    ended = rng.random() < 0.05
    employer = f"acc-{rng.randrange(EMPLOYERS)}" if rng.random() < 0.9 else None
    return {
        "contactid": f"c-{n}",
        "_parentcustomerid_value": employer,
        "mbr_memberno": str(100001 + n),
        "mbr_marketingconsent": rng.random() < 0.9,
        "mbr_protectedidentity": rng.random() < 0.002,
        "mbr_paymentmethod": rng.choice(METHODS),
        "mbr_paymentstatus": 100000000,
        "mbr_lastpaidon": (TODAY - timedelta(days=rng.randrange(400))).isoformat(),
        "mbr_lastfailedon": (TODAY - timedelta(days=rng.randrange(400))).isoformat()
        if rng.random() < 0.1
        else None,
        "mbr_paidthrough": (TODAY + timedelta(days=rng.randrange(-30, 365))).isoformat(),
        "mbr_arrears": 250.0 if rng.random() < 0.05 else 0.0,
        "mbr_joinedon": (TODAY - timedelta(days=rng.randrange(4000))).isoformat(),
        "mbr_endedon": (TODAY - timedelta(days=rng.randrange(500))).isoformat() if ended else None,
        "mbr_membershipstatus": 100000001 if ended else 100000000,
        "mbr_membertype": 100000000 + max(0, rng.randrange(10) - 6),
        "mbr_municipalitycode": rng.choice(("0180", "1480", "1280", "0380", "2480", "1880")),
        "mbr_registerstatus": 100000000,
        "governmentid": personnummer(rng),  # the age bands are derived from it
    }


def personnummer(rng: random.Random) -> str:
    """A valid 12-digit personnummer (born 1940-2008), as a union's register holds them."""
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(68 * 365))
    head = born.strftime("%y%m%d") + f"{rng.randrange(1000):03d}"
    return f"{born.year // 100}{head[:6]}-{head[6:]}{luhn_check_digit(head)}"


def change(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    row = dict(row)
    what = rng.random()
    if what < 0.6:  # paid
        row.update(mbr_lastpaidon=TODAY.isoformat(), mbr_arrears=0.0, mbr_paymentstatus=100000000)
    elif what < 0.8:  # failed
        row.update(
            mbr_lastfailedon=TODAY.isoformat(), mbr_arrears=250.0, mbr_paymentstatus=100000001
        )
    elif what < 0.9:
        row["mbr_paymentmethod"] = rng.choice(METHODS)
    else:
        row["mbr_membertype"] = 100000001  # became a student member
    return row


def related_rows(members: list[dict[str, Any]], rng: random.Random) -> dict[str, list[Any]]:
    """The union's related tables as Dataverse answers them: employers, a membership row per
    member, and each member's activities (0 to a dozen rows a table, dates in the window)."""
    day = TODAY.isoformat()
    found: dict[str, list[Any]] = {
        "employer": [
            {"accountid": f"acc-{n}", "sic": SNI[n % len(SNI)], "name": f"Arbetsplats {n}"}
            for n in range(EMPLOYERS)
        ]
    }
    for table, column, most in (
        ("events", "mbr_eventdate", 4),
        ("advice", "mbr_bookedon", 2),
        ("portal", "mbr_signedinon", 12),
        ("surveys", "mbr_answeredon", 3),
        ("benefits", "mbr_usedon", 6),
    ):
        found[table] = [
            {"_mbr_contactid_value": m["contactid"], column: day}
            for m in members
            for _ in range(rng.randrange(most))
        ]
    found["membership"] = [
        {"_mbr_contactid_value": m["contactid"], "mbr_type": 100000000, "mbr_startdate": day}
        for m in members
    ]
    return found


class InProcess(requests.Session):
    """A session answered by the stand-in's request handling directly (no sockets)."""

    def __init__(self, standin: ApsisStandIn) -> None:
        super().__init__()
        self.standin = standin

    def request(self, method, url, data=None, headers=None, files=None, json=None, **_: Any):  # type: ignore[override]
        prepared = requests.Request(
            method, url, data=data, headers=headers, files=files, json=json
        ).prepare()
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        lower = {k.lower(): v for k, v in prepared.headers.items()}
        answer = self.standin.handle(method, "/" + path, lower, body)
        response = requests.Response()
        response.status_code = answer.status
        payload, kind = answer.payload()
        response._content = payload
        response.headers.update(answer.headers)
        if kind:
            response.headers["Content-Type"] = kind
        response.url = url
        return response


def platform_for(standin: ApsisStandIn, apsis: Any) -> Any:
    values = {
        k.removeprefix("BRIDGE_APSIS__").lower(): json.loads(v) if v.startswith("{") else v
        for k, v in standin.env.items()
    }
    values.update(account_rate="1000000/1s", profile_rate="100000/1s", import_poll_seconds=0.001)
    platform = apsis_platform(ApsisSettings.model_validate(values), apsis, InProcess(standin))
    platform.concurrency = 1
    return platform


def plans(
    evaluator: SegmentEvaluator,
    rows: list[dict[str, Any]],
    states: dict[str, Any],
    related: dict[str, dict[str, Any]],
):
    audience = evaluator.config.apsis.audience
    out = []
    for row in rows:
        view = {**evaluator.view(row), **related.get(row["contactid"], {})}
        payments = PaymentCounts(10, 1)
        result = evaluator.evaluate(view, payments, TODAY)
        names, attributes = result.names, result.attributes
        key = row["mbr_memberno"]
        plan = plan_profile(
            states.get(key), attributes, evaluator.tags(names), exclusion(view, audience)
        )
        out.append((key, plan))
    return out


def to_changes(planned) -> list[ProfileChange]:
    return [
        ProfileChange(
            key,
            attributes=plan.attributes,
            tags_add=plan.tags_add,
            tags_remove=plan.tags_remove,
            erase=plan.erase,
            create=plan.create,  # only profiles not pushed before are created
        )
        for key, plan in planned
        if plan.sends
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--change", type=float, default=0.1)
    parser.add_argument(
        "--dataverse-members",
        type=int,
        default=10_000,
        help="members on the Dataverse sandbox for the related tables' request count",
    )
    args = parser.parse_args()
    mapping = load_mapping()
    config = load_activation(mapping)
    evaluator = SegmentEvaluator(config, mapping)
    rng = random.Random(6)  # fictitious data
    rows = [member_row(n, rng) for n in range(args.members)]
    found = related_rows(rows, rng)

    started = time.perf_counter()
    sizes: dict[str, int] = {}
    related = assemble(mapping, rows, found, TODAY)
    for row in rows:
        view = {**evaluator.view(row), **related[row["contactid"]]}
        names = evaluator.evaluate(view, PaymentCounts(10, 1), TODAY).names
        for name in names:
            sizes[name] = sizes.get(name, 0) + 1
    elapsed = time.perf_counter() - started
    members_per_s = args.members / elapsed
    print(
        f"evaluated {args.members} members with {sum(map(len, found.values())):,} related rows "
        f"({len(found)} tables), {len(evaluator.rules)} segments + score: "
        f"{elapsed:.2f} s, {members_per_s:,.0f} members/s"
    )
    print("segment sizes: " + ", ".join(f"{k} {v}" for k, v in sorted(sizes.items())))

    standin = ApsisStandIn(limits=ApsisLimits(account=(10**6, 1.0), profile=(10**5, 1.0)))
    platform = platform_for(standin, config.apsis)
    initial = plans(evaluator, rows, {}, related)
    platform.apply_changes(to_changes(initial))
    states = {key: plan.state for key, plan in initial if plan.state is not None}
    before = sum(standin.requests.values())
    requested_before = dict(standin.requests)

    changed_rows = [change(row, rng) for row in rng.sample(rows, int(args.members * args.change))]
    planned = plans(evaluator, changed_rows, states, related)
    changes = to_changes(planned)
    report = platform.apply_changes(changes)
    requests_made = sum(standin.requests.values()) - before
    tag_changes = sum(1 for c in changes if c.tags_add or c.tags_remove)
    naive = len(changed_rows)
    print(
        f"{args.change:.0%} change: {len(changed_rows)} members changed in Dataverse, "
        f"{len(changes)} profiles differ in APSIS ({tag_changes} with tag changes, "
        f"{sum(1 for c in changes if c.erase)} erased), {len(report.imports)} bulk import(s), "
        f"{len(report.failed)} failed"
    )
    kinds = {k: v - requested_before.get(k, 0) for k, v in standin.requests.items()}
    print(
        f"APSIS requests: {requests_made} (one per changed profile: {naive}, "
        f"{requests_made / max(naive, 1):.2f}x); by endpoint: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()) if v)
    )
    # A small change (a typical timer run: under the bulk threshold) goes per profile.
    for key, plan in planned:
        if plan.state is not None or plan.erase:
            states[key] = plan.state
    small = min(int(args.members * 0.01), platform.bulk_threshold)
    before = sum(standin.requests.values())
    small_rows = [change(row, rng) for row in rng.sample(rows, small)]
    small_changes = to_changes(plans(evaluator, small_rows, states, related))
    small_report = platform.apply_changes(small_changes)
    small_requests = sum(standin.requests.values()) - before
    known = sum(1 for c in small_changes if not c.create and not c.erase)
    print(
        f"small change: {small} members changed, {len(small_changes)} profiles differ, "
        f"{small_requests} requests per profile ({len(small_report.failed)} failed); "
        f"{known} already in APSIS were not created again (before: {small_requests + known})"
    )
    per_1000 = dataverse_related_requests(args.dataverse_members)
    print(
        f"RESULT members_per_s={members_per_s:.0f} requests={requests_made} naive_requests={naive}"
        f" related_requests_per_1000={per_1000:.2f}"
    )


def dataverse_related_requests(members: int) -> float:
    """Dataverse requests per 1,000 members to read every related table of a full segments
    run, measured on the sandbox with the demo union's tables (employers, branches,
    memberships, five activity tables) and ``members`` members."""
    mapping = demo_mapping(load_mapping())
    with run_sandbox() as box:
        define_union_tables(box.dataverse, mapping.publisher_prefix)
        client = DataverseClient.from_settings(sandbox_settings(box))
        numbers = prepare_register(client, mapping, members)
        rows_seeded = seed_union(client, mapping, numbers, TODAY)
        config = load_activation(mapping)
        store = DataverseActivationStore(client, mapping, config.triggers.outbox)
        columns = MemberViews(mapping, config).columns
        before = box.dataverse.requests
        rows = store.member_changes(columns, None).changed
        member_reads = box.dataverse.requests - before
        before = box.dataverse.requests
        found = store.related_rows(reads(mapping, rows, TODAY))
        spent = box.dataverse.requests - before
    per_1000 = spent * 1000 / members
    print(
        f"Dataverse, {members} members on the sandbox: reading them {member_reads} request(s); "
        f"their related tables ({len(found)} tables, {sum(rows_seeded.values()):,} rows "
        f"seeded, {sum(map(len, found.values())):,} read) {spent} request(s): "
        f"{per_1000:.2f} per 1,000 members"
    )
    return per_1000


if __name__ == "__main__":
    main()
