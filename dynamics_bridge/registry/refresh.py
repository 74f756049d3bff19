"""Address refresh: ask SPAR about the members who need it and write what it says to Dataverse.

Who is asked comes from the mapping's ``address.select`` (flagged for a check, returned mail,
new members, not checked for N days), in that order of priority, at most ``max_per_run``. Each
answer becomes a change of the member's mapped columns (:func:`plan_update`, pure), written
ETag-guarded through the pipeline's writer (:class:`DataverseMemberStore`).

Rules (reference soap.md §4):

- **Protected identity**: the address the register holds is left exactly as it is (it may be the
  one the person hides from; SPAR's empty address never means "clear it"); the protected flag is
  set, and the member is erased from the marketing platform. An erase that fails leaves the
  member flagged for a check, so the next run tries again.
- **Deceased, emigrated, deregistered**: the status column (and date of death) says so; the
  activation side keeps such members out of marketing by that column.
- **Where registered**: the county and municipality codes of the current population-register
  entry (``Folkbokforing``), when the mapping names columns for them; a protected member gets
  none (SPAR gives none), and a code SPAR does not give leaves the stored one as it is.
- **Audit**: the lookup time and SPAR's transaction id (``UUID``) are stored; the raw answer never.
- A dry run selects and counts; it asks SPAR nothing (every lookup tells SPAR that the person is
  probably a member) and writes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal, Protocol

from dynamics_bridge.apsis.port import MarketingPlatform
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    ConfigError,
    InputError,
)
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import AddressMapping, ChoiceSet
from dynamics_bridge.model import MemberRefKind
from dynamics_bridge.personnummer import Personnummer
from dynamics_bridge.pipeline import MemberRow, WriteUnit
from dynamics_bridge.registry.spar_errors import SparNotFoundError, SparUndantagError
from dynamics_bridge.registry.spar_mapping import AddressRecord, PostalAddress

__all__ = [
    "AddressLookup",
    "AddressRefresh",
    "Reason",
    "RefreshReport",
    "address_values",
    "plan_update",
    "selection_queries",
]

log = logging.getLogger(__name__)

Reason = Literal["flagged", "returned_mail", "new_member", "not_checked"]

#: Errors that are about our setup, not about one member: the run stops.
_STOPS_THE_RUN = (AuthError, ConfigError, SparUndantagError)

_WRITE_CHUNK = 100


class AddressLookup(Protocol):
    """What the refresh needs from SPAR (:class:`~dynamics_bridge.registry.SparClient`)."""

    def lookup(self, personnummer: Personnummer | str) -> AddressRecord: ...


# --- pure parts ----------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def selection_queries(address: AddressMapping, now: datetime) -> list[tuple[Reason, str]]:
    """The ``$filter`` of each selection reason in use, in priority order."""
    select, checked = address.select, address.checked_on
    queries: list[tuple[Reason, str]] = []
    if select.flagged:
        queries.append(("flagged", f"{select.flagged} eq true"))
    if select.returned_mail:
        queries.append(("returned_mail", f"{select.returned_mail} eq true"))
    if select.new_members:
        since = _stamp(now - timedelta(days=select.new_members.days))
        queries.append(
            ("new_member", f"{select.new_members.created} ge {since} and {checked} eq null")
        )
    if select.not_checked_days:
        before = _stamp(now - timedelta(days=select.not_checked_days))
        queries.append(("not_checked", f"{checked} lt {before}"))
    return queries


def address_values(address: PostalAddress, columns: Mapping[str, str | None]) -> dict[str, Any]:
    """One address spread over the mapped columns: c/o and street lines fill ``line1..3`` (lines
    beyond the last mapped one join it), then postcode, town and country (None when Swedish)."""
    lines = ([f"c/o {address.care_of}"] if address.care_of else []) + list(address.lines)
    line_columns = [c for c in (columns["line1"], columns["line2"], columns["line3"]) if c]
    values: dict[str, Any] = dict.fromkeys(line_columns)
    for index, column in enumerate(line_columns):
        last = index == len(line_columns) - 1
        part = lines[index:] if last else lines[index : index + 1]
        values[column] = ", ".join(part) or None
    values[str(columns["postal_code"])] = address.postal_code
    values[str(columns["city"])] = address.city
    if columns["country"]:
        values[columns["country"]] = address.country
    return values


def plan_update(
    current: Mapping[str, Any],
    address: AddressMapping,
    statuses: ChoiceSet,
    *,
    record: AddressRecord | None,
    looked_up_at: datetime,
    transaction_id: str | None,
    erase_failed: bool = False,
) -> dict[str, Any]:
    """The member columns that change after one lookup (``record`` None: SPAR has no such
    person). Columns whose value stays the same are left out."""
    select = address.select
    wanted: dict[str, Any] = {
        address.checked_on: _stamp(looked_up_at),
        address.transaction_id: transaction_id,
    }
    if select.flagged:
        wanted[select.flagged] = erase_failed  # a failed erase is tried again next run
    if select.returned_mail:
        wanted[select.returned_mail] = False
    if record is None:
        wanted[address.status] = statuses.value_of("not_found")
    else:
        wanted[address.status] = statuses.value_of(record.status)
        wanted[address.protected] = record.protected_identity
        if address.last_changed and record.last_changed:
            wanted[address.last_changed] = record.last_changed.isoformat()
        deceased = record.deceased_on and record.deceased_on[:10]
        if address.deceased_on and deceased and len(deceased) == 10 and "-00" not in deceased:
            wanted[address.deceased_on] = deceased
        mailing = record.mailing_address
        if mailing is not None and not record.protected_identity:
            wanted.update(address_values(mailing, address.columns.model_dump()))
        if not record.protected_identity:  # SPAR gives none then; a stored code stays as it is
            for column, code in (
                (address.county_code, record.county_code),
                (address.municipality_code, record.municipality_code),
            ):
                if column and code:
                    wanted[column] = code
    return {c: v for c, v in wanted.items() if current.get(c) != v}


# --- the job -------------------------------------------------------------------------------------


@dataclass
class RefreshReport:
    dry_run: bool = False
    selected: Counter[str] = field(default_factory=Counter)
    looked_up: int = 0
    updated: int = 0  # address, status or protected flag changed (audit columns alone do not)
    protected: int = 0
    erased: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # "member KEY: reason", no personnummer
    dataverse_requests: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "selected": dict(self.selected),
            "looked_up": self.looked_up,
            "updated": self.updated,
            "protected": self.protected,
            "erased_from_marketing": self.erased,
            "statuses": dict(sorted(self.statuses.items())),
            "failed": self.failed,
            "dataverse_requests": self.dataverse_requests,
            **({"would_look_up": sum(self.selected.values())} if self.dry_run else {}),
        }


@dataclass(frozen=True)
class _Candidate:
    row: MemberRow
    reason: Reason


class AddressRefresh:
    """One run over the members the mapping selects (see the module docstring for the rules)."""

    def __init__(
        self,
        client: DataverseClient,
        mapping: MappingFile,
        spar: AddressLookup,
        marketing: MarketingPlatform | None = None,
        *,
        profile_key: Callable[[MemberRow], str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if mapping.address is None:
            raise ConfigError("mapping: no 'address' section, so the address refresh is off")
        self.client = client
        self.mapping = mapping
        self.address = mapping.address
        self.statuses = mapping.choices[self.address.status_choices]
        self.store = DataverseMemberStore(client, mapping)
        self.spar = spar
        self.marketing = marketing
        self.profile_key = profile_key or (lambda row: row.key)
        self.clock = clock
        self.pnr_column = str(mapping.member.keys[MemberRefKind.PERSONNUMMER].column)

    # -- selection ---------------------------------------------------------------------------

    def _columns(self) -> list[str]:
        member = self.mapping.member
        return sorted({member.key_column, self.pnr_column, *self.address.written_columns()})

    def select(self) -> list[_Candidate]:
        """Members to look up, by priority, each once, at most ``max_per_run``."""
        member, limit = self.mapping.member, self.address.select.max_per_run
        chosen: dict[str, _Candidate] = {}
        for reason, query in selection_queries(self.address, self.clock()):
            rows = self.client.rows.query(
                member.entity_set,
                select=[*self._columns(), member.id_column],
                filter=query,
                orderby=f"{self.address.checked_on} asc" if reason == "not_checked" else None,
            )
            for row in islice(rows, limit - len(chosen)):
                key = row.get(member.key_column)
                if key is not None and str(key) not in chosen:
                    chosen[str(key)] = _Candidate(self._row(row), reason)
            if len(chosen) >= limit:
                break
        return list(chosen.values())

    def _row(self, row: Mapping[str, Any]) -> MemberRow:
        member = self.mapping.member
        return MemberRow(
            str(row.get(member.key_column)),
            str(row.get(member.id_column, "")),
            row.get("@odata.etag"),
            dict(row),
        )

    # -- the run -----------------------------------------------------------------------------

    def run(
        self, *, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> RefreshReport:
        """One run; ``progress`` hears ``(members looked up, members selected)``."""
        requests_before = self.client.requests_sent
        report = RefreshReport(dry_run=dry_run)
        candidates = self.select()
        report.selected.update(c.reason for c in candidates)
        if progress is not None:
            progress(0, len(candidates))
        if not dry_run:
            pending: list[tuple[WriteUnit, bool]] = []
            try:
                for done, candidate in enumerate(candidates, 1):
                    unit = self._look_up(candidate, report)
                    if progress is not None:
                        progress(done, len(candidates))
                    if unit is not None:
                        pending.append(unit)
                    if len(pending) >= _WRITE_CHUNK:
                        self._write(pending, report)
                        pending = []
            finally:
                self._write(pending, report)  # what was asked is stored, even on a stop
        report.dataverse_requests = self.client.requests_sent - requests_before
        return report

    def _look_up(
        self, candidate: _Candidate, report: RefreshReport
    ) -> tuple[WriteUnit, bool] | None:
        row = candidate.row
        raw = row.values.get(self.pnr_column)
        if not raw:
            report.failed.append(f"member {row.key}: no personnummer in {self.pnr_column}")
            return None
        record: AddressRecord | None
        try:
            record = self.spar.lookup(str(raw))
            transaction_id = record.spar_uuid
        except SparNotFoundError as exc:
            record, transaction_id = None, exc.request_id
        except _STOPS_THE_RUN:
            raise
        except InputError as exc:
            report.failed.append(f"member {row.key}: {exc.detail}")
            return None
        except BridgeError as exc:
            report.failed.append(f"member {row.key}: {exc}")
            return None
        report.looked_up += 1
        erase_failed = False
        if record is not None and record.protected_identity:
            report.protected += 1
            erase_failed = not self._erase(row, report)
        changes = plan_update(
            row.values,
            self.address,
            self.statuses,
            record=record,
            looked_up_at=record.looked_up_at if record else self.clock(),
            transaction_id=transaction_id,
            erase_failed=erase_failed,
        )
        report.statuses[record.status if record else "not_found"] += 1
        audit = {self.address.checked_on, self.address.transaction_id}
        return WriteUnit(row, [], changes), bool(set(changes) - audit)

    def _erase(self, row: MemberRow, report: RefreshReport) -> bool:
        """Withdraw a protected member from marketing; False when that did not happen."""
        if self.marketing is None:
            return True
        try:
            self.marketing.erase(self.profile_key(row))
        except BridgeError as exc:
            report.failed.append(f"member {row.key}: protected, erase from marketing failed: {exc}")
            log.warning(
                "protected member %s not erased from marketing: %s",
                row.key,
                type(exc).__name__,
                extra={"outcome": "erase_failed"},
            )
            return False
        report.erased += 1
        return True

    def _write(self, pending: Sequence[tuple[WriteUnit, bool]], report: RefreshReport) -> None:
        if not pending:
            return
        results = self.store.write([unit for unit, _ in pending])
        retry: list[tuple[WriteUnit, bool]] = []
        for (unit, changed), result in zip(pending, results, strict=True):
            if result.status == "ok":
                report.updated += changed
            elif result.status == "conflict":
                retry.append((unit, changed))
            else:
                report.failed.append(f"member {unit.member.key}: {result.status} {result.reason}")
        if retry:
            self._rewrite(retry, report)

    def _rewrite(self, units: Iterable[tuple[WriteUnit, bool]], report: RefreshReport) -> None:
        """Someone changed these members since they were read: write the same changes on the
        fresh row (SPAR is not asked again), once."""
        by_key = {unit.member.key: (unit, changed) for unit, changed in units}
        fresh = self.store.read_members(self.mapping.member.key_column, list(by_key), [])
        again = []
        for key, (unit, changed) in by_key.items():
            if key not in fresh:
                report.failed.append(f"member {key}: deleted during the refresh")
                continue
            again.append((WriteUnit(fresh[key], [], unit.member_changes), changed))
        for (unit, changed), result in zip(
            again, self.store.write([u for u, _ in again]), strict=True
        ):
            if result.status == "ok":
                report.updated += changed
            else:
                report.failed.append(f"member {unit.member.key}: {result.status} {result.reason}")
