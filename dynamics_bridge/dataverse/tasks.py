"""Advisor tasks in Dataverse's standard ``task`` table: made once, read back for their outcome.

A task is written create-only under an id derived from its key (``PATCH tasks(<id>)`` with
``If-None-Match: *``; the task table supports Upsert by ``activityid``, Microsoft Learn, table
reference ``task``, Messages), so a ``$batch`` sent again after a lost answer, or two runs at
once, make no second task: the replay meets 412 and counts as already there. The key itself
(``kind:period:member``, :mod:`dynamics_bridge.activation.advisor`) is written to the bridge's
key column, which is what :meth:`TaskWriter.existing_keys` and the check before each write read.

Who gets it (``retention.yaml`` ``advisor.owner``): a team owns the task (``ownerid@odata.bind``
to ``/teams(<id>)``, the Assign message: update ``ownerid``), or the task is put in a queue by
creating a queue item in the same change set (``POST queueitems`` with
``objectid_task@odata.bind`` and ``queueid@odata.bind``: queueitem's Create message and its
navigation properties ``objectid_task`` and ``queueid``). Without an owner the task belongs to
the app user. A team or queue that does not exist is refused before anything is written.

Every request goes through the client's transport (pacing per app user, 429 + Retry-After,
retries); writes go as change sets of one task (and its queue item) in ``$batch`` requests of
at most 1,000 operations, continuing past a failed task.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from dynamics_bridge.activation.advisor import AdvisorTask
from dynamics_bridge.dataverse.batch import BatchRequest, ChangeSet, OperationResult
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.odata import bind_path, key_literal, key_path
from dynamics_bridge.dataverse.transport import MAX_BATCH_OPERATIONS
from dynamics_bridge.errors import BridgeError, ConfigError, DuplicateKeyError, InputError
from dynamics_bridge.mapping.models import MappingFile, TaskTable
from dynamics_bridge.mapping.retention import Advisor

__all__ = ["DUE_AT", "TaskOutcome", "TaskReport", "TaskWriter", "task_id"]

log = logging.getLogger(__name__)

#: A task is due at the end of the working day, local time (``scheduledend`` is UserLocal).
DUE_AT = time(17, 0)
#: The namespace of task ids derived from keys (fixed: the same key always gives the same id).
_TASK_IDS = uuid.UUID("5f0c2a4e-7d1b-4c55-9a7e-2b8f3c1d6e90")


def task_id(key: str) -> uuid.UUID:
    """The task's ``activityid`` for ``key``: the same on every run, so a create sent twice
    meets the first (412) instead of making a second task."""
    return uuid.uuid5(_TASK_IDS, key)


class TaskOutcome(NamedTuple):
    """What an advisor recorded on a task the bridge made: the contact, the day, the word."""

    contact_id: str
    on: date
    word: str


@dataclass
class TaskReport:
    """What :meth:`TaskWriter.create` did, by key: made, already there, or failed (why)."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def status(self, key: str) -> str | None:
        """``created``, ``existing`` or ``failed: <why>`` for ``key`` (None: not asked)."""
        if key in self.failed:
            return f"failed: {self.failed[key]}"
        if key in self.created:
            return "created"
        if key in self.existing:
            return "existing"
        return None


class TaskWriter:
    """Advisor tasks over one Dataverse client, as ``mapping.tasks`` and ``advisor`` say."""

    def __init__(
        self,
        client: DataverseClient,
        mapping: MappingFile,
        advisor: Advisor,
    ) -> None:
        if mapping.tasks is None:
            raise ConfigError(
                "dataverse.yaml: tasks: missing; advisor tasks need the task table and the "
                "bridge's columns on it (the shipped mappings/dataverse.yaml has the section)"
            )
        self.client = client
        self.mapping = mapping
        self.advisor = advisor
        self.table: TaskTable = mapping.tasks
        self.zone = ZoneInfo(mapping.timezone)
        self._owner_checked = False

    @property
    def key_column(self) -> str:
        """The key column on the task (``{prefix}`` of a default not written in the file is
        the mapping's publisher prefix)."""
        return self.advisor.key_column.replace("{prefix}", self.mapping.publisher_prefix)

    # -- reads ---------------------------------------------------------------------------------

    def existing_keys(self, prefix: str) -> set[str]:
        """The keys of the tasks whose key starts with ``prefix`` (``churn:2026-02-13:``): one
        query, paged, however many members."""
        column = self.key_column
        rows = self.client.rows.query(
            self.table.entity_set,
            select=[column],
            filter=f"startswith({column},{key_literal(prefix)})",
        )
        return {str(row[column]) for row in rows if row.get(column)}

    def outcomes(self) -> list[tuple[str, date, str]]:
        """The outcome advisors recorded on the tasks the bridge made (key and outcome set):
        the contact, the day (completed, else last changed) and the outcome's word, each a
        :class:`TaskOutcome`."""
        outcome = self.advisor.outcome
        if outcome is None:
            return []
        words = {o.value: w for w, o in self.mapping.choices[outcome.choices].options.items()}
        regarding = f"_{self.table.regarding_lookup}_value"
        rows = self.client.rows.query(
            self.table.entity_set,
            select=[self.key_column, outcome.column, regarding, "actualend", "modifiedon"],
            filter=f"{self.key_column} ne null and {outcome.column} ne null",
        )
        found: list[tuple[str, date, str]] = []
        for row in rows:
            value = _int(row.get(outcome.column))
            word = words.get(value) if value is not None else None
            day = _day(row.get("actualend"), self.zone) or _day(row.get("modifiedon"), self.zone)
            if word is None or day is None or not row.get(regarding):
                log.debug("task %s: outcome not readable", row.get(self.table.id_column))
                continue
            found.append(TaskOutcome(str(row[regarding]), day, word))
        return found

    # -- writes --------------------------------------------------------------------------------

    def create(self, tasks: Sequence[AdvisorTask]) -> TaskReport:
        """Make each task whose key is not there yet; one report entry per distinct key.

        Raises :class:`ConfigError` when the owner team or queue does not exist (nothing is
        written then), and what the transport raises when Dataverse cannot be reached."""
        report = TaskReport()
        wanted = list({task.key: task for task in tasks}.values())
        if not wanted:
            return report
        present = set(
            self.client.rows.by_values(
                self.table.entity_set, self.key_column, [t.key for t in wanted], [self.key_column]
            )
        )
        report.existing += [t.key for t in wanted if t.key in present]
        new = [t for t in wanted if t.key not in present]
        if not new:
            return report
        self._check_owner()
        units: list[tuple[AdvisorTask, ChangeSet]] = []
        for task in new:
            try:
                units.append((task, self._change_set(task)))
            except InputError as exc:  # a member number Dataverse cannot address
                report.failed[task.key] = exc.detail
        batch: list[tuple[AdvisorTask, ChangeSet]] = []
        size = 0
        for task, change_set in units:
            ops = len(change_set.requests)
            if batch and size + ops > MAX_BATCH_OPERATIONS:
                self._send(batch, report)
                batch, size = [], 0
            batch.append((task, change_set))
            size += ops
        if batch:
            self._send(batch, report)
        log.info(
            "advisor tasks: %d made, %d already there, %d failed",
            len(report.created),
            len(report.existing),
            len(report.failed),
            extra={"outcome": "tasks", "count": len(report.created)},
        )
        return report

    def _send(self, batch: list[tuple[AdvisorTask, ChangeSet]], report: TaskReport) -> None:
        outcome = self.client.batch.execute([cs for _, cs in batch], continue_on_error=True)
        operations = iter(outcome.operations)
        for task, change_set in batch:
            ops = [next(operations) for _ in change_set.requests]
            if all(op.ok for op in ops):
                report.created.append(task.key)
                continue
            own = ops[0]
            if own.state == "failed" and isinstance(own.error, DuplicateKeyError):
                report.existing.append(task.key)  # made by an earlier send of this batch
                continue
            report.failed[task.key] = _reason(ops)

    def _change_set(self, task: AdvisorTask) -> ChangeSet:
        """The task (create-only under its derived id) and, for a queue, its queue item."""
        table, member = self.table, self.mapping.member
        activity = task_id(task.key)
        if task.contact_id:
            if not _is_guid(task.contact_id):
                raise InputError(f"contact id {task.contact_id!r} is not a GUID")
            regarding = bind_path(member.entity_set, uuid.UUID(task.contact_id))
        elif _is_guid(task.member_id):
            regarding = bind_path(member.entity_set, uuid.UUID(task.member_id))
        else:
            key_path(member.entity_set, {member.key_column: task.member_id})  # addressable?
            regarding = bind_path(member.entity_set, {member.key_column: task.member_id})
        due = datetime.combine(task.due, DUE_AT, self.zone).astimezone(UTC)
        body: dict[str, Any] = {
            self.key_column: task.key,
            "subject": task.subject,
            "description": task.description,
            "scheduledend": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "prioritycode": task.priority,
            f"{table.regarding_navigation}@odata.bind": regarding,
        }
        owner = self.advisor.owner
        if owner is not None and owner.team:
            body["ownerid@odata.bind"] = bind_path("teams", uuid.UUID(owner.team))
        requests = [
            BatchRequest(
                "PATCH", key_path(table.entity_set, activity), {"If-None-Match": "*"}, body
            )
        ]
        if owner is not None and owner.queue:
            requests.append(
                BatchRequest(
                    "POST",
                    "queueitems",
                    {},
                    {
                        f"objectid_{table.table}@odata.bind": bind_path(table.entity_set, activity),
                        "queueid@odata.bind": bind_path("queues", uuid.UUID(owner.queue)),
                    },
                )
            )
        return ChangeSet(requests)

    def _check_owner(self) -> None:
        """The owner team or queue must exist: a task bound to a missing one is refused by
        Dataverse (404, ObjectDoesNotExist) one by one; this says so once, before writing."""
        owner = self.advisor.owner
        if self._owner_checked or owner is None:
            return
        field_, entity_set, column, given = (
            ("team", "teams", "teamid", owner.team)
            if owner.team
            else ("queue", "queues", "queueid", owner.queue)
        )
        where = f"retention.yaml: advisor.owner.{field_}"
        if not _is_guid(str(given)):
            raise ConfigError(f"{where}: {given!r} is not an id (a GUID)")
        if self.client.rows.get(entity_set, str(uuid.UUID(str(given))), [column]) is None:
            raise ConfigError(
                f"{where}: no {field_} {given} in Dataverse: give the id of an existing "
                f"{field_} (Power Platform admin center, or the {entity_set} table), or leave "
                "advisor.owner out to keep tasks with the app user"
            )
        self._owner_checked = True


def _reason(ops: list[OperationResult]) -> str:
    """Why a task's change set was not saved, as Dataverse said it."""
    failed = next((op for op in ops if op.state == "failed"), None)
    error: BridgeError | None = (failed or ops[0]).error
    if error is None:
        return "not executed by Dataverse"
    return f"{error.status or ''} {error.code or ''} {error.message}".strip()


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _day(value: object, zone: ZoneInfo) -> date | None:
    """A Dataverse date or date-time (UTC) as the calendar day in ``zone``."""
    if not value:
        return None
    text = str(value)
    try:
        if "T" not in text:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).date()
