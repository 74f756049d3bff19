"""The demo union's own register, as an Innofactor-style Dataverse has it beside the bridge's
columns: employers (the standard account, with an SNI code), the local branch (a lookup on the
contact), membership rows, and what members do: event registrations, advice bookings, portal
sign-ins, survey answers and benefit uses.

These are the tables ``dataverse.yaml`` ``related`` names (the branch is this union's addition,
:func:`demo_mapping`); the bridge reads them and creates none of them, so the demo defines them
in the sandbox as the union's own, then fills them for the fictitious members.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from dynamics_bridge.dataverse.batch import BatchRequest
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.odata import bind_path, key_path
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import RelatedTable
from dynamics_bridge_sandbox.dataverse import DataverseSandbox

__all__ = ["EMPLOYERS", "define_union_tables", "demo_mapping", "seed_union"]

#: Demo employers: name and SNI 2007 code (Statistics Sweden's industry classification).
EMPLOYERS = (
    ("Norrby sjukhus", "86.101"),
    ("Ekskolan", "85.201"),
    ("Torgets livs", "47.111"),
    ("Kodverket AB", "62.010"),
    ("Bygg & Bo AB", "41.200"),
    ("Åkeri Nord", "49.410"),
    ("Vårdcentralen Sol", "86.211"),
    ("Kommunens äldreboende", "87.301"),
)
BRANCHES = ("Avdelning Norr", "Avdelning Mitt", "Avdelning Syd", "Klubb Storstad")


def _attribute(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"LogicalName": name, "AttributeType": kind, **extra}


def _table(prefix: str, name: str, plural: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    logical = f"{prefix}_{name}"
    return {
        "LogicalName": logical,
        "SchemaName": logical,
        "EntitySetName": f"{prefix}_{plural}",
        "PrimaryIdAttribute": f"{logical}id",
        "PrimaryNameAttribute": f"{prefix}_name",
        "Attributes": [
            _attribute(f"{logical}id", "Uniqueidentifier"),
            _attribute(f"{prefix}_name", "String", MaxLength=200),
            *columns,
        ],
        "Keys": [],
    }


def define_union_tables(box: DataverseSandbox, prefix: str) -> None:
    """The union's own tables in the sandbox, and the branch lookup on its contacts."""
    member = _attribute(f"{prefix}_contactid", "Lookup", Targets=["contact"])
    day = {"Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}}
    for name, plural, columns in (
        ("branch", "branchs", []),
        (
            "membership",
            "memberships",
            [
                member,
                _attribute(f"{prefix}_type", "Picklist"),
                _attribute(f"{prefix}_startdate", "DateTime", **day),
                _attribute(f"{prefix}_fee", "Money"),
            ],
        ),
        (
            "eventregistration",
            "eventregistrations",
            [
                member,
                _attribute(f"{prefix}_attended", "Boolean"),
                _attribute(f"{prefix}_eventdate", "DateTime", **day),
            ],
        ),
        ("advicebooking", "advicebookings", [member, _attribute(f"{prefix}_bookedon", "DateTime")]),
        ("portalsignin", "portalsignins", [member, _attribute(f"{prefix}_signedinon", "DateTime")]),
        (
            "surveyresponse",
            "surveyresponses",
            [member, _attribute(f"{prefix}_answeredon", "DateTime")],
        ),
        ("benefituse", "benefituses", [member, _attribute(f"{prefix}_usedon", "DateTime")]),
    ):
        box.define_entity(_table(prefix, name, plural, columns))
    contact = box.entity("contact")
    if contact is not None and not any(
        a["LogicalName"] == f"{prefix}_branchid" for a in contact["Attributes"]
    ):
        contact["Attributes"].append(
            _attribute(f"{prefix}_branchid", "Lookup", Targets=[f"{prefix}_branch"])
        )
        box.define_entity(json.loads(json.dumps(contact)))


def demo_mapping(mapping: MappingFile) -> MappingFile:
    """The shipped mapping with this union's branch lookup (dataverse.yaml shows it commented)."""
    prefix = mapping.publisher_prefix
    branch = RelatedTable(
        table=f"{prefix}_branch",
        entity_set=f"{prefix}_branchs",
        id_column=f"{prefix}_branchid",
        lookup=f"{prefix}_branchid",
        columns={"name": f"{prefix}_name"},
    )
    return mapping.model_copy(update={"related": {**mapping.related, "branch": branch}})


def _rows(index: int, today: date, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """Demo member ``index``'s rows in the activity tables (deterministic): some members do a
    lot, some nothing at all, so the score's parts differ."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if index % 9 == 4:  # never does anything: parts at 0
        return rows
    for n in range(index % 4):
        held = today - timedelta(days=20 + 97 * n + index % 30)
        rows.append(
            (
                "eventregistrations",
                {f"{prefix}_attended": n % 3 != 2, f"{prefix}_eventdate": held.isoformat()},
            )
        )
    for n in range(index % 2):
        rows.append(("advicebookings", {f"{prefix}_bookedon": _at(today, 40 + 90 * n)}))
    for n in range(index % 11):
        rows.append(("portalsignins", {f"{prefix}_signedinon": _at(today, 3 + 8 * n)}))
    for n in range(index % 3):
        rows.append(("surveyresponses", {f"{prefix}_answeredon": _at(today, 60 + 120 * n)}))
    for n in range(index % 6):
        rows.append(("benefituses", {f"{prefix}_usedon": _at(today, 10 + 55 * n)}))
    return rows


def _at(today: date, days_ago: int) -> str:
    return f"{today - timedelta(days=days_ago)}T09:00:00Z"


def seed_union(
    client: DataverseClient, mapping: MappingFile, numbers: Sequence[str], today: date
) -> dict[str, int]:
    """Employers, branches and each member's rows; how many rows each table got."""
    prefix = mapping.publisher_prefix
    accounts = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"demo-employer-{n}")) for n in EMPLOYERS]
    branches = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"demo-branch-{n}")) for n in BRANCHES]
    requests = [
        BatchRequest("POST", "accounts", {}, {"accountid": a, "name": name, "sic": sni})
        for a, (name, sni) in zip(accounts, EMPLOYERS, strict=True)
    ] + [
        BatchRequest(
            "POST", f"{prefix}_branchs", {}, {f"{prefix}_branchid": b, f"{prefix}_name": name}
        )
        for b, name in zip(branches, BRANCHES, strict=True)
    ]
    counts: dict[str, int] = {"accounts": len(accounts), f"{prefix}_branchs": len(branches)}
    key = mapping.member.key_column
    for index, number in enumerate(numbers):
        member = bind_path(mapping.member.entity_set, {key: number})
        link: dict[str, Any] = {
            f"{prefix}_branchid@odata.bind": f"/{prefix}_branchs({branches[index % 4]})"
        }
        if index % 10 != 9:  # every tenth has no employer on record
            link["parentcustomerid_account@odata.bind"] = f"/accounts({accounts[index % 8]})"
        path = key_path(mapping.member.entity_set, {key: number})
        requests.append(BatchRequest("PATCH", path, {"If-Match": "*"}, link))
        started = today - timedelta(days=(index * 37) % 2400)
        membership = {
            f"{prefix}_contactid@odata.bind": member,
            f"{prefix}_type": 100000000 + max(0, index % 10 - 6),
            f"{prefix}_startdate": started.isoformat(),
            f"{prefix}_fee": 250.0 if index % 10 != 7 else 90.0,
        }
        requests.append(BatchRequest("POST", f"{prefix}_memberships", {}, membership))
        counts[f"{prefix}_memberships"] = counts.get(f"{prefix}_memberships", 0) + 1
        for entity_set, body in _rows(index, today, prefix):
            body = {f"{prefix}_contactid@odata.bind": member, **body}
            requests.append(BatchRequest("POST", f"{prefix}_{entity_set}", {}, body))
            counts[f"{prefix}_{entity_set}"] = counts.get(f"{prefix}_{entity_set}", 0) + 1
    for start in range(0, len(requests), 1000):
        for part in client.batch.parts(requests[start : start + 1000]):
            if part.status >= 400:
                raise RuntimeError(f"the demo's union tables were refused: {part.body}")
    return counts
