"""A MemberStore with Dataverse's semantics (atomic change sets, ETags, create-only keys).

Used to specify the pipeline without sockets; the real adapter is tested against the sandbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.pipeline import MemberRow, PaymentHistory, UnitResult, WriteUnit


class FakeMemberStore:
    def __init__(self, members: dict[str, dict[str, Any]], key_column: str = "mbr_memberno"):
        self.key_column = key_column
        self.rows = {key: {**values, key_column: key} for key, values in members.items()}
        self.versions = dict.fromkeys(members, 1)
        self.payments: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.fail_payment: dict[str, str] = {}  # event id → reason (a 400 on that row)
        self.conflicts_left = 0  # the next N member updates meet a concurrent change
        self.transient_left = 0
        self.history_reads = 0

    def row(self, key: str) -> MemberRow:
        return MemberRow(key, f"id-{key}", f'W/"{self.versions[key]}"', dict(self.rows[key]))

    def read_members(self, column: str, values: Sequence[str], columns: Sequence[str]):
        self.requests += 1
        found = {}
        for key, row in self.rows.items():
            if str(row.get(column)) in values:
                found[str(row[column])] = self.row(key)
        return found

    def members_of_payments(self, provider_refs: Sequence[str]) -> dict[str, str]:
        self.requests += 1
        out = {}
        for row in self.payments.values():
            if row.get("mbr_providerref") in provider_refs:
                bind = row["mbr_Member@odata.bind"]
                out[row["mbr_providerref"]] = re.search(r"='(.*)'\)", bind).group(1)
        return out

    def existing_payments(self, event_ids: Sequence[str]) -> set[str]:
        self.requests += 1
        return {e for e in event_ids if e in self.payments}

    def payment_history(
        self, wanted: Sequence[tuple[MemberRow, datetime]]
    ) -> dict[str, list[PaymentHistory]]:
        self.requests += 1
        self.history_reads += 1
        found: dict[str, list[PaymentHistory]] = {}
        for member, since in wanted:
            rows = found.setdefault(member.key, [])
            for event_id, row in self.payments.items():
                if row["mbr_Member@odata.bind"] != f"/contacts(mbr_memberno='{member.key}')":
                    continue
                if row.get("mbr_occurredon", "") < since.strftime("%Y-%m-%dT%H:%M:%SZ"):
                    continue
                event = row.get("mbr_event")
                before = row.get("mbr_memberbefore")
                rows.append(
                    PaymentHistory(
                        event_id,
                        PaymentEvent.from_json(json.loads(event)) if event else None,
                        json.loads(before) if before else None,
                    )
                )
        return found

    def write(self, units: Sequence[WriteUnit]) -> list[UnitResult]:
        self.requests += 1
        return [self._write_one(unit) for unit in units]

    def _write_one(self, unit: WriteUnit) -> UnitResult:
        if self.transient_left:
            self.transient_left -= 1
            return UnitResult("transient", reason="503 Service Unavailable")
        key = unit.member.key
        if key not in self.rows:
            return UnitResult("member_missing")
        for event_id, _ in unit.payments:
            if event_id in self.payments:
                return UnitResult("duplicate", event_id)
            if event_id in self.fail_payment:
                return UnitResult("failed", event_id, self.fail_payment[event_id])
        if unit.member_changes:
            if self.conflicts_left:
                self.conflicts_left -= 1
                self.versions[key] += 1
                self.rows[key]["touched_by_someone_else"] = True
                return UnitResult("conflict")
            if unit.member.etag != f'W/"{self.versions[key]}"':
                return UnitResult("conflict")
        for event_id, _ in unit.payment_updates:
            if event_id not in self.payments:
                return UnitResult("failed", event_id, "404 payment row not found")
        for event_id, body in unit.payments:
            self.payments[event_id] = dict(body)
        for event_id, body in unit.payment_updates:
            self.payments[event_id].update(body)
        if unit.member_changes:
            self.rows[key].update(unit.member_changes)
            self.versions[key] += 1
        return UnitResult("ok")
